// Performance: CPU, memory, load and GPU charts from api/performance, which
// keeps an hour of samples; this page polls it for new ones (`after=`).
import { html, useEffect, useState } from '../lib/html.js';
import { getJSON } from '../lib/api.js';
import { Card, Note } from '../lib/components.js';
import { LineChart } from '../lib/charts.js';
import { fmtInt } from '../lib/format.js';

const WINDOWS = [['5 min', 5], ['15 min', 15], ['1 h', 60]];
const REFRESH = [['off', 0], ['5 s', 5], ['10 s', 10], ['30 s', 30], ['60 s', 60]];
const KEEP_MS = 60 * 60 * 1000;

function merge(old, fresh, key = (s) => s.timestamp) {
  const seen = new Set(old.map(key));
  const all = old.concat((fresh || []).filter((s) => !seen.has(key(s))));
  const cutoff = Date.now() - KEEP_MS;
  return all.filter((s) => Date.parse(s.timestamp) >= cutoff);
}

function avg(values) {
  return values && values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0;
}

export function PerformancePage() {
  const [minutes, setMinutes] = useState(5);
  const [refresh, setRefresh] = useState(5);
  const [sys, setSys] = useState([]);
  const [gpu, setGpu] = useState([]);
  const [status, setStatus] = useState('loading'); // loading | ok | disabled | missing | error
  const [error, setError] = useState('');
  const [last, setLast] = useState(null);

  const fetchSamples = async (after) => {
    try {
      const data = await getJSON(`api/performance${after ? `?after=${encodeURIComponent(after)}` : ''}`);
      setSys((s) => merge(s, data.sys_stats));
      setGpu((g) => merge(g, data.gpu_stats, (x) => `${x.id}@${x.timestamp}`));
      const newest = [...(data.sys_stats || []), ...(data.gpu_stats || [])].map((s) => s.timestamp).sort().pop();
      if (newest) setLast(newest);
      setStatus('ok');
      setError('');
    } catch (e) {
      if (e.status === 503) setStatus('disabled');
      else if (e.missing) setStatus('missing');
      else {
        setStatus((s) => (s === 'ok' ? s : 'error'));
        setError(e.message);
      }
    }
  };

  useEffect(() => { fetchSamples(null); }, []);
  useEffect(() => {
    if (!refresh || status !== 'ok') return undefined;
    const t = setInterval(() => fetchSamples(last), refresh * 1000);
    return () => clearInterval(t);
  }, [refresh, status, last]);

  if (status === 'missing') {
    return html`<div class="page"><${Note}>Performance monitoring is not available on this llamaswap (no <code>/api/performance</code>).</${Note}></div>`;
  }
  if (status === 'disabled') {
    return html`<div class="page"><${Note}>Performance monitoring is disabled in the configuration (<code>performance.disabled</code>).</${Note}></div>`;
  }
  const to = Date.now();
  const from = to - minutes * 60000;
  const inWindow = (s) => Date.parse(s.timestamp) >= from;
  const sysW = sys.filter(inWindow);
  const point = (f) => sysW.map((s) => [Date.parse(s.timestamp), f(s)]);
  const latest = sys[sys.length - 1];
  const gpus = [...new Set(gpu.map((g) => g.id))];
  const gpuSeries = (f) => gpus.map((id) => {
    const rows = gpu.filter((g) => g.id === id && inWindow(g));
    return { name: `GPU ${id}${rows[0]?.name ? ` ${rows[0].name}` : ''}`, points: rows.map((g) => [Date.parse(g.timestamp), f(g)]) };
  });
  return html`<div class="page">
    <div class="toolbar">
      <label>Window <select value=${minutes} onChange=${(e) => setMinutes(Number(e.target.value))}>
        ${WINDOWS.map(([l, v]) => html`<option value=${v}>${l}</option>`)}</select></label>
      <label>Refresh <select value=${refresh} onChange=${(e) => setRefresh(Number(e.target.value))}>
        ${REFRESH.map(([l, v]) => html`<option value=${v}>${l}</option>`)}</select></label>
      ${latest && html`<span class="muted small">${latest.cpu_util_per_core?.length || 0} cores · ${fmtInt(latest.mem_total_mb)} MB memory</span>`}
    </div>
    ${error && html`<${Note} kind="error">${error}</${Note}>`}
    ${status === 'loading' && html`<p class="muted">Loading…</p>`}
    ${status === 'ok' && sys.length === 0 && gpu.length === 0 && html`<${Note}>No samples yet: the first arrives within one sampling interval.</${Note}>`}
    <div class="grid-2">
      <${Card} title="CPU"><${LineChart} title="Utilisation (mean of cores)" from=${from} to=${to} max=${100} unit="%"
        series=${[{ name: 'CPU', points: point((s) => avg(s.cpu_util_per_core)) }]} /></${Card}>
      <${Card} title="Memory"><${LineChart} title="Used (MB)" from=${from} to=${to}
        max=${latest ? Math.max(latest.mem_total_mb, 1) : undefined}
        series=${[{ name: 'memory', points: point((s) => s.mem_used_mb) }, { name: 'swap', points: point((s) => s.swap_used_mb) }]} /></${Card}>
      <${Card} title="Load average"><${LineChart} title="Runnable tasks" from=${from} to=${to} format=${(v) => v.toFixed(1)}
        series=${[{ name: '1 min', points: point((s) => s.load_avg_1) }, { name: '5 min', points: point((s) => s.load_avg_5) },
          { name: '15 min', points: point((s) => s.load_avg_15) }]} /></${Card}>
      ${gpus.length > 0 && html`
        <${Card} title="GPU utilisation"><${LineChart} title="Utilisation" from=${from} to=${to} max=${100} unit="%" series=${gpuSeries((g) => g.gpu_util_pct)} /></${Card}>
        <${Card} title="GPU memory"><${LineChart} title="Used (MB)" from=${from} to=${to} series=${gpuSeries((g) => g.mem_used_mb)} /></${Card}>
        <${Card} title="GPU temperature"><${LineChart} title="°C" from=${from} to=${to} series=${gpuSeries((g) => g.temp_c)} /></${Card}>
        <${Card} title="GPU power"><${LineChart} title="Watts" from=${from} to=${to} series=${gpuSeries((g) => g.power_draw_w)} /></${Card}>`}
    </div>
    ${status === 'ok' && gpus.length === 0 && html`<p class="muted small">No GPU samples (no supported GPU found).</p>`}
  </div>`;
}
