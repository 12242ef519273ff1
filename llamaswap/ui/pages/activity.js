// Activity: totals, speed histograms, in-flight requests, history, captures.
import { html, useEffect, useState } from '../lib/html.js';
import { useStore, stored, remember } from '../lib/store.js';
import { live } from '../lib/live.js';
import { href } from '../lib/router.js';
import { getJSON, sendJSON } from '../lib/api.js';
import { useAllowed, needsScope, ScopeGate } from '../lib/session.js';
import { Card, CopyButton, Dialog, Note, Tabs, useTicker } from '../lib/components.js';
import { Histogram } from '../lib/charts.js';
import { fmtBytes, fmtInt, fmtMs, fmtRate, fmtDateTime } from '../lib/format.js';

/** Refetch-on-activity: `load()` runs on mount, on `deps` change and after each activity event (debounced). */
function useActivityData(load, deps) {
  const seq = useStore(live, (s) => s.activitySeq);
  const [state, setState] = useState({ data: null, error: '' });
  const [debounced, setDebounced] = useState(seq);
  useEffect(() => {
    const t = setTimeout(() => setDebounced(seq), 300);
    return () => clearTimeout(t);
  }, [seq]);
  useEffect(() => {
    let stale = false;
    load().then((data) => !stale && setState({ data, error: '' }),
      (e) => !stale && setState((s) => ({ data: s.data, error: e.message })));
    return () => { stale = true; };
  }, [debounced, ...deps]);
  return state;
}

function sessionOf(req, headers) {
  const names = headers && headers.length ? headers : ['X-Session-ID', 'X-Litellm-Session-Id'];
  const reqHeaders = req.req_headers || {};
  for (const name of names) {
    const hit = Object.keys(reqHeaders).find((k) => k.toLowerCase() === name.toLowerCase());
    if (hit && reqHeaders[hit]) return reqHeaders[hit];
  }
  return '';
}

export function InflightTable({ model }) {
  const inflight = useStore(live, (s) => s.inflight);
  const uiConfig = useStore(live, (s) => s.uiConfig);
  const rows = Object.values(inflight).filter((r) => !model || r.model === model);
  const now = useTicker(500, rows.length > 0);
  const [error, setError] = useState('');
  const admin = useAllowed('admin');
  const cancel = async (id) => {
    setError('');
    try {
      await sendJSON('POST', `api/inflight/${encodeURIComponent(id)}/cancel`);
    } catch (e) {
      setError(e.message);
    }
  };
  return html`<${Card} title=${`In flight (${rows.length})`}>
    ${error && html`<${Note} kind="error">${error}</${Note}>`}
    ${rows.length === 0 ? html`<p class="muted empty">No requests in flight.</p>` : html`
    <div class="table-wrap"><table class="inflight-table">
      <thead><tr><th></th><th>Elapsed</th><th>Phase</th><th>Model</th><th>Request</th><th>Client</th><th>Session</th><th class="num">Received</th></tr></thead>
      <tbody>${rows.map((r) => {
        const started = Date.parse(r.timestamp);
        const elapsed = Number.isFinite(started) ? Math.max(r.elapsed_ms, now - started) : r.elapsed_ms;
        const agent = Object.entries(r.req_headers || {}).find(([k]) => k.toLowerCase() === 'user-agent')?.[1] || '';
        return html`<tr key=${r.id}>
          <td><button type="button" class="small danger" onClick=${() => cancel(r.id)} aria-label=${`Cancel request ${r.id}`}
            disabled=${!admin} title=${admin ? undefined : `Cancelling ${needsScope('admin')}`}>Cancel</button></td>
          <td class="num">${fmtMs(elapsed)}</td>
          <td><span class=${`tag phase-${r.phase || 'running'}`}>${r.phase || 'running'}</span></td>
          <td><a href=${href('models', r.model)}>${r.model}</a></td>
          <td><code>${r.method} ${r.req_path || r.path}</code></td>
          <td title=${agent}>${r.remote_ip}</td>
          <td>${sessionOf(r, uiConfig?.activity?.session_id)}</td>
          <td class="num">${fmtBytes(r.resp_bytes)}</td>
        </tr>`;
      })}</tbody>
    </table></div>`}
  </${Card}>`;
}

const COLUMNS = [
  { id: 'id', label: 'ID', sort: 'id' },
  { id: 'time', label: 'Time', sort: 'time' },
  { id: 'model', label: 'Model', sort: 'model' },
  { id: 'path', label: 'Path', sort: 'req_path' },
  { id: 'status', label: 'Status', sort: 'resp_status_code' },
  { id: 'cached', label: 'Cached', sort: 'cached', num: true },
  { id: 'prompt', label: 'Prompt', sort: 'prompt', num: true },
  { id: 'generated', label: 'Generated', sort: 'generated', num: true },
  { id: 'pp', label: 'Prefill tok/s', sort: 'prompt_speed', num: true },
  { id: 'tg', label: 'Decode tok/s', sort: 'gen_speed', num: true },
  { id: 'ttfb', label: 'TTFB', sort: 'ttfb', num: true },
  { id: 'queue', label: 'Queue', sort: 'queue', num: true },
  { id: 'duration', label: 'Duration', sort: 'duration', num: true },
];

function cell(column, row, onView) {
  const t = row.tokens || {};
  switch (column) {
    case 'id': return row.has_capture
      ? html`<button type="button" class="link" onClick=${() => onView(row.id)} aria-label=${`View capture ${row.id}`}>${row.id}</button>`
      : row.id;
    case 'time': return fmtDateTime(row.timestamp);
    case 'model': return html`<a href=${href('models', row.model)}>${row.model}</a>`;
    case 'path': return html`<code>${row.req_path}</code>`;
    case 'status': return html`<span class=${row.resp_status_code === 200 ? 'status-ok' : 'status-bad'}
      title=${row.error_msg || ''}>${row.resp_status_code}${row.error_msg ? html` <span class="error-text small">${row.error_msg}</span>` : ''}</span>`;
    case 'cached': return fmtInt(t.cache_tokens);
    case 'prompt': return fmtInt(t.input_tokens);
    case 'generated': return fmtInt(t.output_tokens);
    case 'pp': return fmtRate(t.prompt_per_second);
    case 'tg': return fmtRate(t.tokens_per_second);
    case 'ttfb': return fmtMs(row.ttfb_ms);
    case 'queue': return row.queue_ms > 0 ? fmtMs(row.queue_ms) : '–';
    case 'duration': return fmtMs(row.duration_ms);
    default: return '';
  }
}

function Filters({ filter, onChange, models, fixedModel }) {
  const set = (key) => (e) => onChange({ ...filter, [key]: e.target.value });
  return html`<div class="toolbar filters">
    ${!fixedModel && html`<label>Model <select value=${filter.model} onChange=${set('model')}>
      <option value="">all</option>${models.map((m) => html`<option value=${m}>${m}</option>`)}</select></label>`}
    <label>From ID <input type="number" min="1" class="narrow" value=${filter.minID} onInput=${set('minID')} /></label>
    <label>to <input type="number" min="1" class="narrow" value=${filter.maxID} onInput=${set('maxID')} aria-label="To ID" /></label>
    ${(filter.model || filter.minID || filter.maxID) && html`<button type="button" class="small"
      onClick=${() => onChange({ model: '', minID: '', maxID: '' })}>Clear filters</button>`}
  </div>`;
}

function ColumnPicker({ hidden, onChange }) {
  return html`<details class="column-picker"><summary>Columns</summary>
    <div class="column-list">${COLUMNS.map((c) => html`<label><input type="checkbox" checked=${!hidden.includes(c.id)}
      onChange=${(e) => onChange(e.target.checked ? hidden.filter((h) => h !== c.id) : [...hidden, c.id])} /> ${c.label}</label>`)}</div>
  </details>`;
}

export function ActivityTable({ model }) {
  const [page, setPage] = useState(1);
  const [sort, setSort] = useState({ by: 'id', order: 'desc' });
  const [limit, setLimit] = useState(25);
  const [viewing, setViewing] = useState(null);
  const [filter, setFilter] = useState({ model: '', minID: '', maxID: '' });
  const [hidden, setHidden] = useState(stored('hiddenColumns', []));
  const localModels = useStore(live, (s) => s.models).filter((m) => !m.peerID).map((m) => m.id);
  const columns = COLUMNS.filter((c) => !hidden.includes(c.id));
  const query = () => {
    const q = new URLSearchParams({ page, limit, sort: sort.by, order: sort.order });
    if (model || filter.model) q.append('model', model || filter.model);
    const min = Number(filter.minID);
    const max = Number(filter.maxID);
    if (min >= 1) q.append('min_id', min);
    if (max >= 1 && (!(min >= 1) || max >= min)) q.append('max_id', max);
    return getJSON(`api/metrics/activity?${q}`);
  };
  const { data, error } = useActivityData(query, [page, sort.by, sort.order, limit, model, filter.model, filter.minID, filter.maxID]);
  const rows = data?.data || [];
  const setSortBy = (by) => setSort((s) => ({ by, order: s.by === by && s.order === 'desc' ? 'asc' : 'desc' }));
  const changeFilter = (next) => {
    setFilter(next);
    setPage(1);
  };
  const changeHidden = (next) => {
    setHidden(next);
    remember('hiddenColumns', next);
  };
  const filtered = Boolean(filter.model || filter.minID || filter.maxID);
  const exportCSV = () => {
    const lines = [COLUMNS.map((c) => c.label).join(',')];
    for (const r of rows) {
      const t = r.tokens || {};
      lines.push([r.id, r.timestamp, r.model, r.req_path, r.resp_status_code, t.cache_tokens, t.input_tokens,
        t.output_tokens, t.prompt_per_second, t.tokens_per_second, r.ttfb_ms, r.queue_ms, r.duration_ms]
        .map((v) => JSON.stringify(v ?? '')).join(','));
    }
    return lines.join('\n');
  };
  return html`<${Card} title=${`History${data ? ` (${data.total})` : ''}`}
      actions=${html`<${ColumnPicker} hidden=${hidden} onChange=${changeHidden} /><${CopyButton} text=${exportCSV} label="Copy CSV" />`}>
    <${Filters} filter=${filter} onChange=${changeFilter} models=${localModels} fixedModel=${model} />
    ${error && html`<${Note} kind="error">${error}</${Note}>`}
    ${data && rows.length === 0 ? html`<p class="muted empty">${filtered ? 'No requests match the filters.' : 'No requests recorded yet.'}</p>` : html`
    <div class="table-wrap"><table class="activity-table">
      <thead><tr>${columns.map((c) => html`<th class=${c.num ? 'num' : ''}
        aria-sort=${sort.by === c.sort ? (sort.order === 'asc' ? 'ascending' : 'descending') : undefined}>
        <button type="button" class="link" onClick=${() => setSortBy(c.sort)}>${c.label}${sort.by === c.sort ? (sort.order === 'asc' ? ' ▲' : ' ▼') : ''}</button></th>`)}
        <th><span class="sr-only">Capture</span></th></tr></thead>
      <tbody>${rows.map((r) => html`<tr key=${r.id} class=${r.resp_status_code === 200 ? '' : 'row-error'}>
        ${columns.map((c) => html`<td class=${c.num ? 'num' : ''}>${cell(c.id, r, setViewing)}</td>`)}
        <td>${r.has_capture && html`<button type="button" class="small" onClick=${() => setViewing(r.id)}>View</button>`}</td>
      </tr>`)}</tbody>
    </table></div>
    <div class="pager">
      <button type="button" class="small" disabled=${page <= 1} onClick=${() => setPage(page - 1)}>‹ Newer</button>
      <span>Page ${data?.page || page} of ${Math.max(1, data?.total_pages || 1)}</span>
      <button type="button" class="small" disabled=${!data || page >= data.total_pages} onClick=${() => setPage(page + 1)}>Older ›</button>
      <label class="small">Rows <select value=${limit} onChange=${(e) => { setLimit(Number(e.target.value)); setPage(1); }}>
        ${[10, 25, 50, 100].map((n) => html`<option value=${n}>${n}</option>`)}</select></label>
    </div>`}
    ${viewing !== null && html`<${CaptureDialog} id=${viewing} onClose=${() => setViewing(null)} />`}
  </${Card}>`;
}

function decodeBody(b64) {
  if (b64 === null || b64 === undefined) return null;
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return { bytes, text: new TextDecoder().decode(bytes) };
}

function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return null;
  }
}

/** The text an SSE response streamed (chat, messages or responses deltas). */
export function streamedText(text) {
  let content = '';
  let reasoning = '';
  for (const line of text.split('\n')) {
    const m = /^data:\s*(.*)$/.exec(line.trim());
    if (!m || m[1] === '[DONE]') continue;
    try {
      const ev = JSON.parse(m[1]);
      const delta = ev.choices?.[0]?.delta;
      if (delta) {
        content += delta.content || '';
        reasoning += delta.reasoning_content || delta.reasoning || '';
      } else if (ev.type === 'content_block_delta') {
        content += ev.delta?.text || '';
        reasoning += ev.delta?.thinking || '';
      } else if (ev.type === 'response.output_text.delta') {
        content += ev.delta || '';
      } else if (ev.choices?.[0]?.text) {
        content += ev.choices[0].text;
      }
    } catch {
      // not JSON
    }
  }
  return { content, reasoning };
}

function headerValue(headers, name) {
  const key = Object.keys(headers || {}).find((k) => k.toLowerCase() === name);
  return key ? headers[key] : '';
}

function Body({ body, headers }) {
  const [mode, setMode] = useState('pretty');
  if (!body) return html`<p class="muted">Not captured.</p>`;
  const type = headerValue(headers, 'content-type');
  if (type.startsWith('image/') || type.startsWith('audio/')) {
    const src = URL.createObjectURL(new Blob([body.bytes], { type }));
    return type.startsWith('image/') ? html`<img class="capture-image" src=${src} alt="captured image" />`
      : html`<audio controls src=${src}></audio>`;
  }
  const json = pretty(body.text);
  const sse = type.includes('event-stream') ? streamedText(body.text) : null;
  const formatted = sse ? `${sse.reasoning ? `[reasoning]\n${sse.reasoning}\n\n[content]\n` : ''}${sse.content}` : json;
  return html`<div>
    <div class="toolbar">
      ${formatted !== null && html`<${Tabs} label="Body view" value=${mode} onChange=${setMode}
        tabs=${[{ id: 'pretty', label: sse ? 'Text' : 'Pretty' }, { id: 'raw', label: 'Raw' }]} />`}
      <${CopyButton} text=${body.text} />
      <span class="muted small">${fmtBytes(body.bytes.length)}</span>
    </div>
    <pre class="code-block">${mode === 'pretty' && formatted !== null ? formatted : body.text}</pre>
  </div>`;
}

function Headers({ headers }) {
  if (!headers) return html`<p class="muted">Not captured.</p>`;
  return html`<table class="headers-table"><tbody>${Object.entries(headers).map(([k, v]) => html`<tr><th>${k}</th><td>${v}</td></tr>`)}</tbody></table>`;
}

export function CaptureDialog({ id, onClose }) {
  const [capture, setCapture] = useState(null);
  const [error, setError] = useState('');
  const [tab, setTab] = useState('request');
  useEffect(() => {
    getJSON(`api/captures/${id}`).then(setCapture, (e) => setError(e.message));
  }, [id]);
  return html`<${Dialog} title=${`Capture #${id}${capture ? ` · ${capture.req_path}` : ''}`} onClose=${onClose} wide>
    ${error && html`<${Note} kind="error">${error}</${Note}>`}
    ${!capture && !error && html`<p class="muted">Loading…</p>`}
    ${capture && html`<div class="capture">
      <${Tabs} label="Capture part" value=${tab} onChange=${setTab}
        tabs=${[{ id: 'request', label: 'Request' }, { id: 'response', label: 'Response' }]} />
      ${tab === 'request' ? html`<h3>Headers</h3><${Headers} headers=${capture.req_headers} />
        <h3>Body</h3><${Body} body=${decodeBody(capture.req_body)} headers=${capture.req_headers} />`
      : html`<h3>Headers</h3><${Headers} headers=${capture.resp_headers} />
        <h3>Body</h3><${Body} body=${decodeBody(capture.resp_body)} headers=${capture.resp_headers} />`}
    </div>`}
  </${Dialog}>`;
}

export function ActivityPage() {
  const { data: stats, error } = useActivityData(() => getJSON('api/metrics/stats'), []);
  return html`<div class="page">
    ${error && html`<${Note} kind="error">${error}</${Note}>`}
    <div class="stats">
      ${[['Requests', stats?.total_requests], ['Cached tokens', stats?.total_cache_tokens],
        ['Prompt tokens', stats?.total_input_tokens], ['Generated tokens', stats?.total_output_tokens]]
        .map(([label, value]) => html`<div class="stat"><span class="stat-value">${fmtInt(value ?? 0)}</span><span class="stat-label">${label}</span></div>`)}
    </div>
    <div class="grid-2">
      <${Card} title="Prompt processing"><${Histogram} data=${stats?.prompt_histogram} title="Prompt speed" /></${Card}>
      <${Card} title="Token generation"><${Histogram} data=${stats?.gen_histogram} title="Generation speed" /></${Card}>
    </div>
    <${InflightTable} />
    <${ActivityTable} />
  </div>`;
}
