// Number, time and size formatting shared by the pages.

export function fmtInt(n) {
  return n === null || n === undefined || n < 0 ? '–' : Math.round(n).toLocaleString('en-US');
}

export function fmtRate(n) {
  if (n === null || n === undefined || n <= 0 || !Number.isFinite(n)) return '–';
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || ms < 0) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const minutes = Math.floor(ms / 60000);
  return `${minutes} m ${Math.round((ms % 60000) / 1000)} s`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function fmtTime(value) {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value ?? '');
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** A timestamp: the time alone when it is today, else date and time. */
export function fmtDateTime(value) {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value ?? '');
  if (d.toDateString() === new Date().toDateString()) return d.toLocaleTimeString();
  return d.toLocaleString([], { dateStyle: 'short', timeStyle: 'medium' });
}

/** Strip ANSI colour/cursor escapes from log text. */
export function stripAnsi(text) {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '');
}

/** A filter predicate from user text: `/re/flags` is a regex, else a case-insensitive substring. */
export function textFilter(query) {
  const q = (query || '').trim();
  if (!q) return () => true;
  const re = /^\/(.+)\/([a-z]*)$/.exec(q);
  if (re) {
    try {
      const rx = new RegExp(re[1], re[2]);
      return (line) => rx.test(line);
    } catch {
      // fall back to a substring
    }
  }
  const needle = q.toLowerCase();
  return (line) => line.toLowerCase().includes(needle);
}

/** A short random ID (playground session IDs: lspg-xxxxx). */
export function randomID(length = 5) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return [...bytes].map((b) => alphabet[b % alphabet.length]).join('');
}
