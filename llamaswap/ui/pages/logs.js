// Logs: the proxy's and the upstreams' output live, or one model's log.
import { html, useState } from '../lib/html.js';
import { useStore } from '../lib/store.js';
import { live } from '../lib/live.js';
import { LogView, useLogStream } from '../lib/logview.js';
import { Note, Tabs } from '../lib/components.js';

function ModelLog({ id }) {
  const { text, error } = useLogStream(id);
  return html`${error && html`<${Note} kind="error">${error}</${Note}>`}<${LogView} text=${text} title=${id} label=${`${id} log`} />`;
}

export function LogsPage() {
  const logs = useStore(live, (s) => s.logs);
  const models = useStore(live, (s) => s.models.filter((m) => !m.peerID));
  const [view, setView] = useState('both');
  const [model, setModel] = useState('');
  const tabs = [{ id: 'both', label: 'Both' }, { id: 'proxy', label: 'Proxy' }, { id: 'upstream', label: 'Upstream' },
    { id: 'model', label: 'One model' }];
  return html`<div class="page logs-page">
    <div class="toolbar">
      <${Tabs} label="Log source" tabs=${tabs} value=${view} onChange=${setView} />
      ${view === 'model' && html`<label>Model <select value=${model} onChange=${(e) => setModel(e.target.value)}>
        <option value="">choose…</option>
        ${models.map((m) => html`<option value=${m.id}>${m.id}</option>`)}</select></label>`}
    </div>
    ${view === 'both' && html`<div class="log-split">
      <${LogView} text=${logs.proxy} title="Proxy" label="proxy log" />
      <${LogView} text=${logs.upstream} title="Upstream" label="upstream log" /></div>`}
    ${view === 'proxy' && html`<${LogView} text=${logs.proxy} title="Proxy" label="proxy log" />`}
    ${view === 'upstream' && html`<${LogView} text=${logs.upstream} title="Upstream" label="upstream log" />`}
    ${view === 'model' && (model ? html`<${ModelLog} key=${model} id=${model} />` : html`<${Note}>Choose a model to follow its output.</${Note}>`)}
  </div>`;
}
