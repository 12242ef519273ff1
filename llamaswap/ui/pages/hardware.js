// Hardware: the snapshot of CPU, memory, accelerators and OS taken at start.
import { html, useEffect, useState } from '../lib/html.js';
import { getJSON } from '../lib/api.js';
import { Card, Facts, Note } from '../lib/components.js';
import { fmtBytes } from '../lib/format.js';

function label(key) {
  return key.replace(/_/g, ' ').replace(/^\w/, (c) => c.toUpperCase());
}

/** Any JSON value as nested facts (for the parts whose shape may grow). */
function Value({ value, name = '' }) {
  if (value === null || value === undefined || value === '') return '–';
  if (typeof value === 'number' && /(^|_)bytes$/.test(name)) return fmtBytes(value);
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v !== 'object')) return value.join(', ');
    return html`<ul class="plain-list">${value.map((v) => html`<li><${Value} value=${v} /></li>`)}</ul>`;
  }
  if (typeof value === 'object') {
    return html`<${Facts} items=${Object.entries(value).map(([k, v]) => [label(k).replace(/ bytes$/, ''), html`<${Value} value=${v} name=${k} />`])} />`;
  }
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  return String(value);
}

function bytesOf(obj) {
  if (!obj) return null;
  const entry = Object.entries(obj).find(([k, v]) => /bytes$/.test(k) && typeof v === 'number');
  return entry ? fmtBytes(entry[1]) : null;
}

export function HardwarePage() {
  const [data, setData] = useState(null);
  const [problem, setProblem] = useState(null);
  useEffect(() => {
    getJSON('api/hardware').then(setData, (e) => setProblem(e));
  }, []);
  if (problem) {
    const text = problem.missing ? 'Hardware detection is not available on this llamaswap (no /api/hardware).'
      : problem.status === 503 ? 'Hardware detection unavailable.' : problem.message;
    return html`<div class="page"><${Note} kind=${problem.missing || problem.status === 503 ? 'info' : 'error'}>${text}</${Note}></div>`;
  }
  if (!data) return html`<div class="page"><p class="muted">Loading…</p></div>`;
  const accelerators = data.accelerators || [];
  const known = ['cpu', 'memory', 'accelerators', 'operating_system', 'architecture', 'environment'];
  const rest = Object.fromEntries(Object.entries(data).filter(([k]) => !known.includes(k)));
  return html`<div class="page">
    <div class="grid-2">
      <${Card} title="CPU"><${Value} value=${data.cpu} />${data.architecture && html`<${Facts} items=${[['Architecture', html`<${Value} value=${data.architecture} />`]]} />`}</${Card}>
      <${Card} title="Memory">${bytesOf(data.memory) ? html`<p class="stat-value">${bytesOf(data.memory)}</p>` : ''}<${Value} value=${data.memory} /></${Card}>
      <${Card} title="Operating system"><${Value} value=${data.operating_system} />${data.environment && html`<h3>Environment</h3><${Value} value=${data.environment} />`}</${Card}>
      <${Card} title=${`Accelerators (${accelerators.length})`}>
        ${accelerators.length === 0 ? html`<p class="muted">None detected.</p>`
          : accelerators.map((a) => html`<div class="accelerator"><${Value} value=${a} /></div>`)}
      </${Card}>
    </div>
    <${Card} title="Snapshot"><${Value} value=${rest} /></${Card}>
  </div>`;
}
