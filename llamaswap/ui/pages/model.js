// One model: header with load / unload and progress, then its activity,
// live log and details (capabilities, metadata, the running command).
import { html, useEffect, useState } from '../lib/html.js';
import { useStore } from '../lib/store.js';
import { live } from '../lib/live.js';
import { getJSON, url } from '../lib/api.js';
import { redactCommand, redactValue } from '../lib/redact.js';
import { Card, Facts, Note, StateDot, Tabs } from '../lib/components.js';
import { LogView, useLogStream } from '../lib/logview.js';
import { ActivityTable, InflightTable } from './activity.js';
import { CapabilityTags, LoadButton, LoadProgress, capabilityList } from './models.js';

function ModelLog({ id }) {
  const { text, error } = useLogStream(id);
  return html`${error && html`<${Note} kind="error">${error}</${Note}>`}<${LogView} text=${text} label=${`${id} log`} />`;
}

function Details({ model }) {
  const listing = useStore(live, (s) => s.listing.find((r) => r.id === model.id));
  const [running, setRunning] = useState(null);
  useEffect(() => {
    getJSON('running').then((r) => setRunning((r.running || []).find((p) => p.model === model.id) || null), () => {});
  }, [model.id, model.state]);
  const meta = listing?.meta?.llamaswap ? redactValue(listing.meta.llamaswap) : null;
  const metadata = meta ? Object.fromEntries(Object.entries(meta).filter(([k]) => !['type', 'aliases'].includes(k))) : {};
  return html`<div class="grid-2">
    <${Card} title="Model">
      <${Facts} items=${[
        ['ID', model.id], ['Name', model.name], ['Description', model.description],
        ['Aliases', (model.aliases || []).join(', ')],
        ['Capabilities', capabilityList(model.capabilities).join(', ') || 'none declared'],
        ['Context', model.context_length ? model.context_length.toLocaleString('en-US') : ''],
        ['Modality', listing?.architecture?.modality],
        ['Unlisted', model.unlisted ? 'yes' : ''],
      ]} />
      ${Object.keys(metadata).length > 0 && html`<h3>Metadata</h3><pre class="code-block">${JSON.stringify(metadata, null, 2)}</pre>`}
    </${Card}>
    <${Card} title="Process">
      ${running ? html`<${Facts} items=${[['State', running.state], ['Proxy', running.proxy],
        ['TTL', running.ttl ? `${running.ttl} s idle` : 'never unloads']]} />
        <h3>Command</h3><pre class="code-block wrap">${redactCommand(running.cmd)}</pre>`
        : html`<p class="muted">Not running. The command shows while it runs.</p>`}
    </${Card}>
  </div>`;
}

export function ModelPage({ id }) {
  const model = useStore(live, (s) => s.models.find((m) => m.id === id));
  const connection = useStore(live, (s) => s.connection);
  const [tab, setTab] = useState('activity');
  if (!model) {
    return html`<div class="page"><${Note} kind=${connection === 'open' ? 'error' : 'info'}>
      ${connection === 'open' ? `No model "${id}".` : 'Waiting for the event stream…'}</${Note}></div>`;
  }
  const tabs = [{ id: 'activity', label: 'Activity' }, { id: 'logs', label: 'Logs' }, { id: 'details', label: 'Details' }];
  return html`<div class="page">
    <${Card} className="model-header">
      <div class="model-main">
        <${StateDot} state=${model.state} />
        <div class="model-names">
          <h1>${model.name || model.id}</h1>
          <span class="muted">${model.id}${model.aliases?.length ? ` · ${model.aliases.join(', ')}` : ''}</span>
          ${model.description && html`<span>${model.description}</span>`}
        </div>
        <div class="model-tags"><${CapabilityTags} model=${model} /></div>
        <span class=${`state state-${model.state}`}>${model.state || 'peer'}</span>
        ${!model.peerID && html`<a class="small" href=${url(`upstream/${encodeURIComponent(model.id)}/`)} target="_blank" rel="noopener">upstream ↗</a>
        <${LoadButton} model=${model} />`}
      </div>
      <${LoadProgress} id=${model.id} />
    </${Card}>
    <${Tabs} label="Model sections" tabs=${tabs} value=${tab} onChange=${setTab} />
    ${tab === 'activity' && html`<${InflightTable} model=${id} /><${ActivityTable} model=${id} />`}
    ${tab === 'logs' && (model.peerID ? html`<${Note}>Peer models have no local log.</${Note}>` : html`<${ModelLog} key=${id} id=${id} />`)}
    ${tab === 'details' && html`<${Details} model=${model} />`}
  </div>`;
}
