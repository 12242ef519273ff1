// Playground chat: streamed answers with markdown, reasoning apart, three APIs.
import { html, useEffect, useRef, useState } from '../lib/html.js';
import { Store, useStore, stored, remember } from '../lib/store.js';
import { renderMarkdown } from '../lib/markdown.js';
import { ENDPOINTS, chatBody, streamGeneration } from '../lib/streaming.js';
import { CopyButton, Note } from '../lib/components.js';
import { fmtRate, randomID } from '../lib/format.js';
import { ModelPicker } from './picker.js';

// Module state: the conversation survives leaving the page.
export const chat = new Store({
  messages: [], // {role, content, reasoning?, images?, error?, stats?, raw?}
  busy: false,
  settings: stored('chatSettings', { endpoint: 'v1/chat/completions', system: '', temperature: '', maxTokens: '' }),
  model: stored('chatModel', ''),
});
const sessionID = `lspg-${randomID()}`;
let controller = null;

async function generate() {
  const { messages, settings, model } = chat.state;
  const history = messages.map(({ role, content, images }) => ({ role, content, images }));
  const answer = { role: 'assistant', content: '', reasoning: '', raw: '', started: performance.now() };
  chat.set({ messages: [...messages, answer], busy: true });
  controller = new AbortController();
  const update = (patch) => chat.set((s) => ({ messages: [...s.messages.slice(0, -1), { ...s.messages[s.messages.length - 1], ...patch }] }));
  let content = '';
  let reasoning = '';
  let first = null;
  let tokens = 0;
  let usage = null;
  let timings = null;
  try {
    await streamGeneration(settings.endpoint, chatBody(settings.endpoint, { model, messages: history, ...settings }), {
      signal: controller.signal,
      headers: { 'X-Session-ID': sessionID },
      onDelta: (d) => {
        if (d.error) throw new Error(d.error);
        if (d.content || d.reasoning) {
          if (first === null) first = performance.now();
          tokens += 1;
        }
        content += d.content;
        reasoning += d.reasoning;
        usage = d.usage || usage;
        timings = d.timings || timings;
        update({ content, reasoning });
      },
    });
    const end = performance.now();
    const generated = usage?.completion_tokens ?? usage?.output_tokens ?? tokens;
    update({
      stats: {
        tokens: generated,
        ttft: first === null ? null : first - answer.started,
        speed: timings?.predicted_per_second ?? (first !== null && end > first ? (generated / ((end - first) / 1000)) : null),
      },
    });
  } catch (e) {
    update({ error: e.name === 'AbortError' ? 'cancelled' : e.message });
  } finally {
    controller = null;
    chat.set({ busy: false });
  }
}

/** Send a message; false when nothing was sent (busy, empty, no model). */
function send(text, images) {
  if (chat.state.busy || !chat.state.model || (!text.trim() && !images.length)) return false;
  chat.set((s) => ({ messages: [...s.messages, { role: 'user', content: text, images }] }));
  generate();
  return true;
}

function retry() {
  if (chat.state.busy) return;
  const messages = [...chat.state.messages];
  while (messages.length && messages[messages.length - 1].role === 'assistant') messages.pop();
  if (!messages.length) return;
  chat.set({ messages });
  generate();
}

function Message({ message, last }) {
  const [raw, setRaw] = useState(false);
  const busy = useStore(chat, (s) => s.busy);
  const streaming = last && busy && message.role === 'assistant';
  return html`<div class=${`bubble ${message.role}`} aria-busy=${streaming ? 'true' : 'false'}>
    <div class="bubble-role">${message.role === 'user' ? 'You' : 'Assistant'}</div>
    ${message.images?.map((src) => html`<img class="attachment" src=${src} alt="attached image" />`)}
    ${message.reasoning && html`<details class="reasoning" open=${streaming && !message.content}>
      <summary>Reasoning${streaming && !message.content ? '…' : ''}</summary><div class="reasoning-text">${message.reasoning}</div></details>`}
    ${message.role === 'user' || raw
      ? html`<div class="plain">${message.content}</div>`
      : html`<div class="markdown" dangerouslySetInnerHTML=${{ __html: renderMarkdown(message.content) }}></div>`}
    ${streaming && !message.content && !message.reasoning && html`<span class="typing" aria-label="waiting for the first token">●●●</span>`}
    ${message.error && html`<${Note} kind="error">${message.error}</${Note}>`}
    ${message.role === 'assistant' && !streaming && html`<div class="bubble-tools">
      ${message.stats && html`<span class="muted small">${message.stats.tokens} tokens${message.stats.speed ? ` · ${fmtRate(message.stats.speed)} tok/s` : ''}${message.stats.ttft !== null ? ` · first token ${Math.round(message.stats.ttft)} ms` : ''}</span>`}
      <${CopyButton} text=${message.content} />
      <button type="button" class="small" onClick=${() => setRaw(!raw)}>${raw ? 'Rendered' : 'Raw'}</button>
      ${last && html`<button type="button" class="small" onClick=${retry}>Retry</button>`}
    </div>`}
  </div>`;
}

function Settings() {
  const settings = useStore(chat, (s) => s.settings);
  const set = (key) => (e) => {
    const next = { ...chat.state.settings, [key]: e.target.value };
    chat.set({ settings: next });
    remember('chatSettings', next);
  };
  return html`<details class="chat-settings">
    <summary>Settings</summary>
    <div class="form-grid">
      <label>Endpoint <select value=${settings.endpoint} onChange=${set('endpoint')}>
        ${ENDPOINTS.map((e) => html`<option value=${e.id}>/${e.id} (${e.label})</option>`)}</select></label>
      <label>Temperature <input type="number" min="0" max="2" step="0.1" placeholder="server default" value=${settings.temperature} onInput=${set('temperature')} /></label>
      <label>Max tokens <input type="number" min="1" placeholder="server default" value=${settings.maxTokens} onInput=${set('maxTokens')} /></label>
      <label class="span-2">System prompt <textarea rows="2" value=${settings.system} onInput=${set('system')}></textarea></label>
    </div>
  </details>`;
}

export function ChatTab() {
  const { messages, busy, model } = useStore(chat);
  const [text, setText] = useState('');
  const [images, setImages] = useState([]);
  const list = useRef(null);
  useEffect(() => {
    if (list.current) list.current.scrollTop = list.current.scrollHeight;
  }, [messages]);
  const submit = (e) => {
    e.preventDefault();
    if (send(text, images)) {
      setText('');
      setImages([]);
    }
  };
  const attach = (e) => {
    for (const file of e.target.files) {
      const reader = new FileReader();
      reader.onload = () => setImages((list2) => [...list2, reader.result]);
      reader.readAsDataURL(file);
    }
    e.target.value = '';
  };
  return html`<div class="chat">
    <div class="toolbar">
      <${ModelPicker} value=${model} onChange=${(m) => { chat.set({ model: m }); remember('chatModel', m); }} label="Chat model" />
      <button type="button" onClick=${() => !busy && chat.set({ messages: [] })} disabled=${busy || !messages.length}>New chat</button>
    </div>
    <${Settings} />
    <div class="messages" ref=${list} aria-live="polite">
      ${messages.length === 0 && html`<p class="muted empty">Pick a model and say something. Answers stream token by token.</p>`}
      ${messages.map((m, i) => html`<${Message} key=${i} message=${m} last=${i === messages.length - 1} />`)}
    </div>
    <form class="composer" onSubmit=${submit}>
      ${images.length > 0 && html`<div class="attachments">${images.map((src, i) => html`<button type="button" class="attachment-chip"
        onClick=${() => setImages(images.filter((_, j) => j !== i))} aria-label="Remove image"><img src=${src} alt="" /> ✕</button>`)}</div>`}
      <textarea rows="3" placeholder="Message (Enter sends, Shift+Enter for a new line)" value=${text} aria-label="Message"
        onInput=${(e) => setText(e.target.value)}
        onKeyDown=${(e) => { if (e.key === 'Enter' && !e.shiftKey) submit(e); }}></textarea>
      <div class="composer-actions">
        <label class="button small">Image <input type="file" accept="image/*" multiple class="sr-only" onChange=${attach} /></label>
        ${busy ? html`<button type="button" class="danger" onClick=${() => controller && controller.abort()}>Cancel</button>`
          : html`<button type="submit" class="primary" disabled=${!model}>Send</button>`}
      </div>
    </form>
  </div>`;
}
