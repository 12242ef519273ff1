// A log panel: follow (autoscroll), filter, wrap, font size; fed either with
// text from the event stream or by streaming a logs/stream/<id> response.
import { html, useEffect, useMemo, useRef, useState } from './html.js';
import { request, readText } from './api.js';
import { stored, remember } from './store.js';
import { stripAnsi, textFilter } from './format.js';

const LIMIT = 200 * 1024;

/** Follow `logs/stream/<id>` while mounted; returns {text, error}. */
export function useLogStream(id) {
  const [text, setText] = useState('');
  const [error, setError] = useState('');
  useEffect(() => {
    const abort = new AbortController();
    let buffer = '';
    let timer = null;
    setText('');
    setError('');
    const flush = () => {
      timer = null;
      setText(buffer);
    };
    request('GET', `logs/stream/${encodeURIComponent(id).replace(/%2F/g, '/')}`, { signal: abort.signal })
      .then((response) => readText(response, (chunk) => {
        buffer += chunk;
        if (buffer.length > LIMIT) buffer = buffer.slice(buffer.length - LIMIT);
        if (timer === null) timer = setTimeout(flush, 50);
      }))
      .then(() => setError('log stream ended'), (e) => e.name !== 'AbortError' && setError(e.message));
    return () => {
      abort.abort();
      clearTimeout(timer);
    };
  }, [id]);
  return { text, error };
}

export function LogView({ text, title, label }) {
  const [query, setQuery] = useState('');
  const [wrap, setWrap] = useState(stored('logWrap', true));
  const [follow, setFollow] = useState(true);
  const [size, setSize] = useState(stored('logFont', 13));
  const pre = useRef(null);
  const lines = useMemo(() => {
    const match = textFilter(query);
    return stripAnsi(text || '').split('\n').filter((l) => l && match(l));
  }, [text, query]);
  useEffect(() => {
    if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [lines, follow]);
  const onScroll = () => {
    const el = pre.current;
    if (!el) return;
    const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
    if (atBottom !== follow) setFollow(atBottom);
  };
  const setOption = (key, setter) => (value) => {
    setter(value);
    remember(key, value);
  };
  return html`<div class="logview">
    <div class="toolbar">
      ${title && html`<strong>${title}</strong>`}
      <input type="search" placeholder="Filter (text or /regex/)" value=${query}
        onInput=${(e) => setQuery(e.target.value)} aria-label=${`Filter ${label || title || 'log'}`} />
      <label class="toggle"><input type="checkbox" checked=${follow} onChange=${(e) => setFollow(e.target.checked)} /> Follow</label>
      <label class="toggle"><input type="checkbox" checked=${wrap} onChange=${(e) => setOption('logWrap', setWrap)(e.target.checked)} /> Wrap</label>
      <label class="small">Size <select value=${size} onChange=${(e) => setOption('logFont', setSize)(Number(e.target.value))}>
        ${[11, 12, 13, 14, 16].map((n) => html`<option value=${n}>${n}</option>`)}</select></label>
      <span class="muted small">${lines.length} lines</span>
    </div>
    <pre ref=${pre} class=${wrap ? 'log wrap' : 'log'} style=${{ fontSize: `${size}px` }} onScroll=${onScroll}
      tabindex="0" aria-label=${label || title || 'log'} aria-live="off">${lines.join('\n')}</pre>
  </div>`;
}
