// Playground: chat, images, speech, transcription, rerank and a load test.
import { html, useState } from '../lib/html.js';
import { getJSON, request, sendJSON } from '../lib/api.js';
import { Card, Note, Tabs } from '../lib/components.js';
import { fmtRate } from '../lib/format.js';
import { ChatTab } from './chat.js';
import { LoadTestTab } from './loadtest.js';
import { ModelPicker } from './picker.js';

/** A form that runs `action()` and shows its error. */
function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const run = (action) => async (e) => {
    if (e) e.preventDefault();
    setBusy(true);
    setError('');
    try {
      await action();
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, run };
}

function ImagesTab() {
  const [model, setModel] = useState('');
  const [prompt, setPrompt] = useState('');
  const [size, setSize] = useState('512x512');
  const [images, setImages] = useState([]);
  const { busy, error, run } = useAction();
  const submit = run(async () => {
    const result = await sendJSON('POST', 'v1/images/generations', { model, prompt, size, n: 1, response_format: 'b64_json' });
    setImages((result.data || []).map((d) => (d.b64_json ? `data:image/png;base64,${d.b64_json}` : d.url)));
  });
  return html`<form class="form-grid" onSubmit=${submit}>
    <${ModelPicker} value=${model} onChange=${setModel} />
    <label>Size <select value=${size} onChange=${(e) => setSize(e.target.value)}>
      ${['256x256', '512x512', '768x768', '1024x1024'].map((s) => html`<option>${s}</option>`)}</select></label>
    <label class="span-2">Prompt <textarea rows="3" value=${prompt} onInput=${(e) => setPrompt(e.target.value)} required></textarea></label>
    <div><button type="submit" class="primary" disabled=${busy || !model}>${busy ? 'Generating…' : 'Generate'}</button></div>
    ${error && html`<${Note} kind="error">${error}</${Note}>`}
    <div class="span-2 gallery">${images.map((src) => html`<img src=${src} alt=${prompt} />`)}</div>
  </form>`;
}

function SpeechTab() {
  const [model, setModel] = useState('');
  const [input, setInput] = useState('');
  const [voice, setVoice] = useState('');
  const [voices, setVoices] = useState([]);
  const [audio, setAudio] = useState('');
  const { busy, error, run } = useAction();
  const pick = async (m) => {
    setModel(m);
    setVoices([]);
    if (!m) return;
    try {
      const result = await getJSON(`v1/audio/voices?model=${encodeURIComponent(m)}`);
      const list = Array.isArray(result) ? result : result.voices || result.data || [];
      setVoices(list.map((v) => (typeof v === 'string' ? v : v.id || v.name)).filter(Boolean));
    } catch {
      // voices are optional
    }
  };
  const submit = run(async () => {
    const response = await request('POST', 'v1/audio/speech', { json: { model, input, voice: voice || undefined } });
    if (audio) URL.revokeObjectURL(audio);
    setAudio(URL.createObjectURL(await response.blob()));
  });
  return html`<form class="form-grid" onSubmit=${submit}>
    <${ModelPicker} value=${model} onChange=${pick} />
    <label>Voice ${voices.length ? html`<select value=${voice} onChange=${(e) => setVoice(e.target.value)}>
      <option value="">default</option>${voices.map((v) => html`<option>${v}</option>`)}</select>`
      : html`<input value=${voice} onInput=${(e) => setVoice(e.target.value)} placeholder="default" />`}</label>
    <label class="span-2">Text <textarea rows="3" value=${input} onInput=${(e) => setInput(e.target.value)} required></textarea></label>
    <div><button type="submit" class="primary" disabled=${busy || !model}>${busy ? 'Speaking…' : 'Speak'}</button></div>
    ${error && html`<${Note} kind="error">${error}</${Note}>`}
    ${audio && html`<audio class="span-2" controls autoplay src=${audio}></audio>`}
  </form>`;
}

function TranscriptionTab() {
  const [model, setModel] = useState('');
  const [file, setFile] = useState(null);
  const [text, setText] = useState('');
  const { busy, error, run } = useAction();
  const submit = run(async () => {
    const form = new FormData();
    form.append('model', model);
    form.append('file', file);
    const response = await request('POST', 'v1/audio/transcriptions', { body: form });
    const body = await response.text();
    try {
      setText(JSON.parse(body).text ?? body);
    } catch {
      setText(body);
    }
  });
  return html`<form class="form-grid" onSubmit=${submit}>
    <${ModelPicker} value=${model} onChange=${setModel} />
    <label>Audio file <input type="file" accept="audio/*" onChange=${(e) => setFile(e.target.files[0] || null)} required /></label>
    <div><button type="submit" class="primary" disabled=${busy || !model || !file}>${busy ? 'Transcribing…' : 'Transcribe'}</button></div>
    ${error && html`<${Note} kind="error">${error}</${Note}>`}
    ${text && html`<pre class="code-block wrap span-2">${text}</pre>`}
  </form>`;
}

function RerankTab() {
  const [model, setModel] = useState('');
  const [query, setQuery] = useState('');
  const [documents, setDocuments] = useState('');
  const [results, setResults] = useState(null);
  const { busy, error, run } = useAction();
  const docs = documents.split('\n').map((d) => d.trim()).filter(Boolean);
  const submit = run(async () => {
    const result = await sendJSON('POST', 'v1/rerank', { model, query, documents: docs });
    const rows = (result.results || result.data || []).map((r) => ({ index: r.index, score: r.relevance_score ?? r.score }));
    rows.sort((a, b) => b.score - a.score);
    setResults(rows);
  });
  return html`<form class="form-grid" onSubmit=${submit}>
    <${ModelPicker} value=${model} onChange=${setModel} />
    <label>Query <input value=${query} onInput=${(e) => setQuery(e.target.value)} required /></label>
    <label class="span-2">Documents, one per line <textarea rows="5" value=${documents} onInput=${(e) => setDocuments(e.target.value)}></textarea></label>
    <div><button type="submit" class="primary" disabled=${busy || !model || !docs.length}>${busy ? 'Ranking…' : 'Rerank'}</button></div>
    ${error && html`<${Note} kind="error">${error}</${Note}>`}
    ${results && html`<table class="span-2"><thead><tr><th class="num">Score</th><th>Document</th></tr></thead>
      <tbody>${results.map((r) => html`<tr><td class="num">${fmtRate(r.score) === '–' ? r.score : Number(r.score).toFixed(3)}</td><td>${docs[r.index]}</td></tr>`)}</tbody></table>`}
  </form>`;
}

const TABS = [
  { id: 'chat', label: 'Chat' }, { id: 'images', label: 'Images' }, { id: 'speech', label: 'Speech' },
  { id: 'transcription', label: 'Transcription' }, { id: 'rerank', label: 'Rerank' }, { id: 'loadtest', label: 'Load test' },
];

export function PlaygroundPage() {
  const [tab, setTab] = useState('chat');
  return html`<div class="page playground">
    <${Tabs} label="Playground tools" tabs=${TABS} value=${tab} onChange=${setTab} />
    ${tab === 'chat' && html`<${ChatTab} />`}
    ${tab === 'images' && html`<${Card}><${ImagesTab} /></${Card}>`}
    ${tab === 'speech' && html`<${Card}><${SpeechTab} /></${Card}>`}
    ${tab === 'transcription' && html`<${Card}><${TranscriptionTab} /></${Card}>`}
    ${tab === 'rerank' && html`<${Card}><${RerankTab} /></${Card}>`}
    ${tab === 'loadtest' && html`<${LoadTestTab} />`}
  </div>`;
}
