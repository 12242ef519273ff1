// Load test: N concurrent streamed chats over chosen models, drawn as a
// timeline of waiting / loading / streaming per request.
import { html, useState } from '../lib/html.js';
import { Store, useStore } from '../lib/store.js';
import { live } from '../lib/live.js';
import { chatBody, streamGeneration } from '../lib/streaming.js';
import { Card, Note, useTicker } from '../lib/components.js';
import { fmtMs, randomID } from '../lib/format.js';
import { ModelPicker } from './picker.js';

export const loadTest = new Store({ queue: [], prompt: 'Write a haiku about swapping models.', maxTokens: 64, runs: [], running: false });
let controllers = [];

function modelState(id) {
  const m = live.state.models.find((x) => x.id === id || (x.aliases || []).includes(id));
  return m ? m.state : '';
}

async function runOne(index, model, prompt, maxTokens) {
  const patch = (p) => loadTest.set((s) => ({ runs: s.runs.map((r, i) => (i === index ? { ...r, ...p } : r)) }));
  const controller = new AbortController();
  controllers.push(controller);
  const t0 = performance.now();
  const wasReady = modelState(model) === 'ready';
  patch({ t0, wasReady });
  let readyAt = wasReady ? t0 : null;
  const unsubscribe = live.subscribe(() => {
    if (readyAt === null && modelState(model) === 'ready') {
      readyAt = performance.now();
      patch({ readyAt });
    }
  });
  let firstAt = null;
  let reasoningAt = null;
  let tokens = 0;
  try {
    await streamGeneration('v1/chat/completions',
      chatBody('v1/chat/completions', { model, messages: [{ role: 'user', content: prompt }], maxTokens }), {
        signal: controller.signal,
        headers: { 'X-Session-ID': `lspg-load-${randomID()}` },
        onHeaders: () => patch({ headersAt: performance.now() }),
        onDelta: (d) => {
          if (d.reasoning && reasoningAt === null) {
            reasoningAt = performance.now();
            patch({ reasoningAt });
          }
          if (d.content && firstAt === null) {
            firstAt = performance.now();
            patch({ firstAt });
          }
          if (d.content || d.reasoning) tokens += 1;
        },
      });
    patch({ endAt: performance.now(), tokens, status: 'done' });
  } catch (e) {
    patch({ endAt: performance.now(), tokens, status: e.name === 'AbortError' ? 'stopped' : 'error', error: e.message });
  } finally {
    unsubscribe();
  }
}

async function go() {
  const { queue, prompt, maxTokens } = loadTest.state;
  if (!queue.length) return;
  controllers = [];
  loadTest.set({ running: true, runs: queue.map((model) => ({ model, status: 'running' })), started: performance.now() });
  await Promise.all(queue.map((model, i) => runOne(i, model, prompt, Number(maxTokens) || undefined)));
  loadTest.set({ running: false });
}

function stop() {
  for (const c of controllers) c.abort();
}

/** Segments [from, to, kind] of one run. */
export function segments(run, now) {
  if (run.t0 === undefined) return [];
  const end = run.endAt ?? now;
  const headers = run.headersAt ?? end;
  const out = [];
  if (!run.wasReady && run.readyAt !== undefined && run.readyAt < headers) {
    out.push([run.t0, run.readyAt, 'loading'], [run.readyAt, headers, 'waiting']);
  } else {
    out.push([run.t0, headers, run.wasReady ? 'waiting' : 'loading']);
  }
  const streamStart = run.firstAt ?? end;
  if (run.reasoningAt !== undefined) out.push([headers, run.reasoningAt, 'waiting'], [run.reasoningAt, streamStart, 'reasoning']);
  else out.push([headers, streamStart, 'waiting']);
  out.push([streamStart, end, run.status === 'error' ? 'error' : 'streaming']);
  return out.filter(([a, b]) => b > a);
}

function Timeline({ runs, started }) {
  const now = performance.now();
  const end = Math.max(now, ...runs.map((r) => r.endAt || 0));
  const span = Math.max(end - started, 1);
  const W = 600;
  const row = 22;
  const left = 110;
  const x = (t) => left + ((t - started) / span) * (W - left - 10);
  return html`<figure class="chart timeline">
    <svg viewBox=${`0 0 ${W} ${runs.length * row + 24}`} role="img" aria-label="Load test timeline">
      ${runs.map((r, i) => html`<g>
        <text class="tick" x="4" y=${i * row + 15}>${`#${i + 1} ${r.model}`.slice(0, 16)}</text>
        ${segments(r, now).map(([a, b, kind]) => html`<rect class=${`seg seg-${kind}`} x=${x(a)} y=${i * row + 4}
          width=${Math.max(x(b) - x(a), 1)} height=${row - 8}><title>${`${kind}: ${fmtMs(b - a)}`}</title></rect>`)}
      </g>`)}
      <text class="tick" x=${left} y=${runs.length * row + 18}>0</text>
      <text class="tick" x=${W - 10} y=${runs.length * row + 18} text-anchor="end">${fmtMs(span)}</text>
    </svg>
    <ul class="legend">${['waiting', 'loading', 'reasoning', 'streaming', 'error'].map((k) => html`<li><span class=${`swatch seg-${k}`}></span>${k}</li>`)}</ul>
  </figure>`;
}

export function LoadTestTab() {
  const state = useStore(loadTest);
  useTicker(200, state.running);
  const [pick, setPick] = useState('');
  const [count, setCount] = useState(1);
  const add = () => pick && loadTest.set((s) => ({ queue: [...s.queue, ...Array(Math.max(1, count)).fill(pick)] }));
  return html`<div class="loadtest">
    <${Card} title="Requests">
      <div class="toolbar">
        <${ModelPicker} value=${pick} onChange=${setPick} />
        <label>× <input type="number" min="1" max="64" value=${count} class="narrow" onInput=${(e) => setCount(Number(e.target.value))} aria-label="Requests to add" /></label>
        <button type="button" onClick=${add} disabled=${!pick}>Add</button>
        <button type="button" onClick=${() => loadTest.set({ queue: [] })} disabled=${!state.queue.length || state.running}>Clear</button>
      </div>
      <p class="muted small">${state.queue.length ? `Queue: ${state.queue.join(', ')}` : 'Add models; repeats send concurrent requests to the same model.'}</p>
      <div class="form-grid">
        <label class="span-2">Prompt <textarea rows="2" value=${state.prompt} onInput=${(e) => loadTest.set({ prompt: e.target.value })}></textarea></label>
        <label>Max tokens <input type="number" min="1" value=${state.maxTokens} onInput=${(e) => loadTest.set({ maxTokens: e.target.value })} /></label>
      </div>
      <div class="toolbar">
        ${state.running ? html`<button type="button" class="danger" onClick=${stop}>Stop</button>`
          : html`<button type="button" class="primary" onClick=${go} disabled=${!state.queue.length}>Go (${state.queue.length} at once)</button>`}
      </div>
    </${Card}>
    ${state.runs.length > 0 && html`<${Card} title="Timeline">
      <${Timeline} runs=${state.runs} started=${state.started} />
      <div class="table-wrap"><table><thead><tr><th>#</th><th>Model</th><th>Status</th><th class="num">Wait</th><th class="num">First token</th><th class="num">Total</th><th class="num">Tokens</th></tr></thead>
      <tbody>${state.runs.map((r, i) => html`<tr><td>${i + 1}</td><td>${r.model}</td>
        <td>${r.status}${r.error ? html` <span class="error-text small">${r.error}</span>` : ''}</td>
        <td class="num">${r.headersAt ? fmtMs(r.headersAt - r.t0) : '–'}</td>
        <td class="num">${r.firstAt ? fmtMs(r.firstAt - r.t0) : '–'}</td>
        <td class="num">${r.endAt ? fmtMs(r.endAt - r.t0) : '–'}</td>
        <td class="num">${r.tokens ?? '–'}</td></tr>`)}</tbody></table></div>
    </${Card}>`}
    ${state.running && html`<${Note}>Running…</${Note}>`}
  </div>`;
}
