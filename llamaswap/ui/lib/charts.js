// Hand-drawn SVG charts: a histogram and a multi-series line chart.
import { html } from './html.js';
import { fmtRate } from './format.js';

/** Marks [name, x] with whether their label fits (not within 28 px of the last shown). */
function labelled(marks) {
  let last = -Infinity;
  return marks.map(([name, px]) => {
    const show = Math.abs(px - last) >= 28;
    if (show) last = px;
    return [name, px, show];
  });
}

/** A speed histogram from api/metrics/stats ({bins, min, max, binSize, p50, p95, p99}). */
export function Histogram({ data, title, unit = 'tok/s' }) {
  if (!data || !data.bins || !data.bins.length) {
    return html`<div class="chart-empty">No ${title.toLowerCase()} samples yet</div>`;
  }
  const W = 320;
  const H = 120;
  const pad = 18;
  const bins = data.bins;
  const peak = Math.max(...bins, 1);
  // One bin (every sample equal) is one slim bar, not a wall.
  const bw = bins.length === 1 ? 48 : (W - 2 * pad) / bins.length;
  const x0 = bins.length === 1 ? W / 2 - bw / 2 : pad;
  const span = data.max - data.min;
  const x = (v) => (span > 0 ? pad + ((v - data.min) / span) * (W - 2 * pad) : W / 2);
  const marks = [['p50', data.p50], ['p95', data.p95], ['p99', data.p99]]
    .filter(([, v]) => Number.isFinite(v) && v > 0);
  return html`<figure class="chart">
    <svg viewBox=${`0 0 ${W} ${H + 22}`} role="img" aria-label=${`${title} histogram`}>
      ${bins.map((count, i) => {
        const h = (count / peak) * (H - pad);
        const lo = data.min + i * (data.binSize || 0);
        return html`<rect class="bar" x=${x0 + i * bw + 1} y=${H - h} width=${Math.max(bw - 2, 1)} height=${h}>
          <title>${`${fmtRate(lo)}–${fmtRate(lo + (data.binSize || 0))} ${unit}: ${count}`}</title></rect>`;
      })}
      ${span > 0 && labelled(marks.map(([name, v]) => [name, x(v)])).map(([name, px, show]) => html`<g class="mark">
        <line x1=${px} x2=${px} y1=${pad / 2} y2=${H} />
        ${show && html`<text x=${px > W / 2 ? px - 2 : px + 2} y=${pad - 4} text-anchor=${px > W / 2 ? 'end' : 'start'}>${name}</text>`}</g>`)}
      <line class="axis" x1=${pad} x2=${W - pad} y1=${H} y2=${H} />
      <text class="tick" x=${pad} y=${H + 14}>${fmtRate(data.min)}</text>
      <text class="tick" x=${W - pad} y=${H + 14} text-anchor="end">${fmtRate(data.max)} ${unit}</text>
    </svg>
    <figcaption>p50 ${fmtRate(data.p50)} · p95 ${fmtRate(data.p95)} · p99 ${fmtRate(data.p99)} ${unit}</figcaption>
  </figure>`;
}

/**
 * A line chart: `series` = [{name, points: [[t, v], ...]}], x in ms; `max`
 * fixes the y range (percentages), else it is the data's maximum.
 */
export function LineChart({ title, series, from, to, max, unit = '', format = (v) => v.toFixed(0) }) {
  const W = 480;
  const H = 160;
  const left = 40;
  const bottom = 18;
  const all = series.flatMap((s) => s.points);
  const top = max ?? Math.max(1, ...all.map((p) => p[1])) * 1.1;
  const sx = (t) => left + ((t - from) / Math.max(to - from, 1)) * (W - left - 4);
  const sy = (v) => H - bottom - (Math.max(0, v) / top) * (H - bottom - 6);
  const grid = [0, 0.5, 1].map((f) => f * top);
  return html`<figure class="chart line-chart">
    <figcaption>${title}</figcaption>
    ${all.length === 0 ? html`<div class="chart-empty">No samples in this window</div>` : html`
    <svg viewBox=${`0 0 ${W} ${H}`} role="img" aria-label=${title}>
      ${grid.map((g) => html`<g><line class="grid" x1=${left} x2=${W - 4} y1=${sy(g)} y2=${sy(g)} />
        <text class="tick" x=${left - 4} y=${sy(g) + 4} text-anchor="end">${format(g)}${unit}</text></g>`)}
      ${series.map((s, i) => s.points.length > 0 && html`<g>
        <polyline class=${`series s${i % 6}`}
          points=${s.points.map(([t, v]) => `${sx(t).toFixed(1)},${sy(v).toFixed(1)}`).join(' ')}>
          <title>${s.name}</title></polyline>
        <circle class=${`point s${i % 6}`} r="3" cx=${sx(s.points[s.points.length - 1][0])} cy=${sy(s.points[s.points.length - 1][1])}>
          <title>${`${s.name}: ${format(s.points[s.points.length - 1][1])}${unit}`}</title></circle></g>`)}
      <text class="tick" x=${left} y=${H - 2}>${new Date(from).toLocaleTimeString()}</text>
      <text class="tick" x=${W - 4} y=${H - 2} text-anchor="end">${new Date(to).toLocaleTimeString()}</text>
    </svg>`}
    ${series.length > 1 && all.length > 0 && html`<ul class="legend">${series.map((s, i) => html`<li><span class=${`swatch s${i % 6}`}></span>${s.name}</li>`)}</ul>`}
  </figure>`;
}
