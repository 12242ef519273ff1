// Models: every model with its live state, load progress, load / unload,
// profiles, selectors and peers.
import { html, useState } from '../lib/html.js';
import { useStore, stored, remember } from '../lib/store.js';
import { live, isLoaded } from '../lib/live.js';
import { href } from '../lib/router.js';
import { useAllowed, needsScope, ScopeGate } from '../lib/session.js';
import { request, sendJSON, url } from '../lib/api.js';
import { Card, Note, Progress, StateDot, Toggle, useTicker } from '../lib/components.js';
import { fmtBytes, fmtMs } from '../lib/format.js';
import { redactCommand } from '../lib/redact.js';
import { useProfiles } from '../lib/profiles.js';

/** Start a model: any request through /upstream/<id>/ loads it. */
export async function loadModel(id) {
  try {
    const response = await request('GET', `upstream/${encodeURIComponent(id)}/health?_=${Date.now()}`);
    await response.text();
  } catch (e) {
    // Failures to start show up as the model's state and its loadProgress
    // message; a refused request (no key, no scope) only here.
    if (e.status === 401 || e.status === 403) throw e;
  }
}

export async function unloadModel(id) {
  await sendJSON('POST', `api/models/unload/${encodeURIComponent(id)}`);
}

/** The load progress bar with ETA for a starting model. */
export function LoadProgress({ id }) {
  const load = useStore(live, (s) => s.loads[id]);
  const state = useStore(live, (s) => s.models.find((m) => m.id === id)?.state);
  useTicker(250, !!load || state === 'starting');
  if (state !== 'starting' && !load) return null;
  const elapsed = load ? load.elapsed_ms + (Date.now() - load.at) : null;
  const expected = load?.expected_ms;
  const fraction = expected ? Math.min(0.99, elapsed / expected) : null;
  const eta = expected ? Math.max(0, expected - elapsed) : null;
  let text = 'Loading…';
  if (elapsed !== null) {
    text = expected
      ? `Loading… ${Math.round(fraction * 100)}% · ${eta > 0 ? `about ${fmtMs(eta)} left` : 'almost ready'}`
      : `Loading… ${fmtMs(elapsed)} (first load: no estimate yet)`;
  }
  return html`<div class="load-progress">
    <${Progress} value=${fraction} label=${`Loading ${id}`} />
    <div class="load-text"><span>${text}</span>${load?.message && html`<code class="truncate" title=${redactCommand(load.message)}>${redactCommand(load.message)}</code>`}</div>
  </div>`;
}

export function LoadButton({ model }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const loaded = isLoaded(model.state);
  // Loading goes through /upstream (inference), unloading is management (admin).
  const scope = loaded ? 'admin' : 'inference';
  const permitted = useAllowed(scope);
  const act = async () => {
    setError('');
    setBusy(true);
    try {
      if (loaded) await unloadModel(model.id);
      else loadModel(model.id).catch((e) => setError(e.message)); // resolves when ready; the state shows progress
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };
  const label = model.state === 'starting' ? 'Loading…' : model.state === 'stopping' ? 'Unloading…'
    : loaded ? 'Unload' : 'Load';
  return html`<span class="load-button">
    <button type="button" class=${loaded ? '' : 'primary'} disabled=${busy || model.state === 'stopping' || !permitted}
      onClick=${act} aria-label=${`${label} ${model.id}`} title=${permitted ? undefined : needsScope(scope)}>${label}</button>
    ${!permitted && html`<span class="muted needs-scope">${needsScope(scope)}</span>`}
    ${error && html`<span class="error-text" role="alert">${error}</span>`}
  </span>`;
}

/**
 * A model's capability names: modelStatus carries them as an object of flags
 * (llama-swap's `{"vision": true}`), older llamaswaps as a list.
 */
export function capabilityList(capabilities) {
  if (!capabilities) return [];
  if (Array.isArray(capabilities)) return capabilities;
  return Object.keys(capabilities).filter((name) => capabilities[name]);
}

export function CapabilityTags({ model }) {
  const show = stored('showCapabilities', true);
  if (!show) return null;
  return html`${capabilityList(model.capabilities).map((c) => html`<span class="tag">${c.replace(/_/g, ' ')}</span>`)}
    ${model.context_length > 0 && html`<span class="tag tag-muted">ctx ${model.context_length.toLocaleString('en-US')}</span>`}
    ${model.memory > 0 && html`<span class="tag tag-muted" title=${model.memory_estimated ? 'estimated from the GGUF file (weights, KV cache, overhead)' : 'memory from the configuration'}>mem ${fmtBytes(model.memory)}${model.memory_estimated ? ' (est.)' : ''}</span>`}`;
}

function ModelRow({ model }) {
  const failure = useStore(live, (s) => s.failures[model.id]);
  const upstream = model.id === 'comfyui_auto' ? url('comfyui/') : url(`upstream/${encodeURIComponent(model.id)}/`);
  return html`<li class="model-row">
    <div class="model-main">
      <${StateDot} state=${model.state} label=${model.state} />
      <div class="model-names">
        <a class="model-name" href=${href('models', model.id)}>${model.name || model.id}</a>
        <span class="muted">${model.id}${model.aliases?.length ? ` · ${model.aliases.join(', ')}` : ''}</span>
        ${model.description && html`<span class="muted small">${model.description}</span>`}
      </div>
      <div class="model-tags"><${CapabilityTags} model=${model} />${model.unlisted && html`<span class="tag tag-muted">unlisted</span>`}</div>
      <span class=${`state state-${model.state}`}>${model.state}</span>
      <a class="small" href=${upstream} target="_blank" rel="noopener" title="The upstream's own page">upstream ↗</a>
      <${LoadButton} model=${model} />
    </div>
    <${LoadProgress} id=${model.id} />
    ${failure && model.state !== 'ready' && html`<${Note} kind="error">Failed to start: ${redactCommand(failure)}</${Note}>`}
  </li>`;
}

function ProfilesCard() {
  const { profiles, activeProfile, error, activate } = useProfiles();
  if (!profiles.length) return null;
  return html`<${Card} title="Profiles">
    <ul class="plain-list">
      ${profiles.map((p) => html`<li class=${p.id === activeProfile ? 'selected' : ''}>
        <div><strong>${p.id}</strong>${p.id === activeProfile && html` <span class="tag">active</span>`}
          ${p.description && html`<span class="muted"> — ${p.description}</span>`}</div>
        <div class="muted small">${Object.entries(p.pins || {}).map(([k, v]) => `${k} → ${v || '(disabled)'}`).join(' · ')}</div>
        <button type="button" class="small" onClick=${() => activate(p.id === activeProfile ? null : p.id)}>
          ${p.id === activeProfile ? 'Deactivate' : 'Activate'}</button>
      </li>`)}
    </ul>
    ${error && html`<${Note} kind="error">${error}</${Note}>`}
  </${Card}>`;
}

function SelectorsCard() {
  const listing = useStore(live, (s) => s.listing);
  const selectors = listing.filter((r) => r.meta?.llamaswap?.type === 'selector');
  if (!selectors.length) return null;
  return html`<${Card} title="Selectors">
    <ul class="plain-list">${selectors.map((r) => {
      const info = r.meta.llamaswap;
      return html`<li><strong>${r.id}</strong> <span class="tag">${info.strategy}</span>
        <span class="muted"> → ${(info.targets || []).join(', ')}</span>
        ${r.description && html`<div class="muted small">${r.description}</div>`}</li>`;
    })}</ul>
  </${Card}>`;
}

function PeersCard({ peers }) {
  if (!peers.length) return null;
  const byPeer = {};
  for (const m of peers) (byPeer[m.peerID] ||= []).push(m.id);
  return html`<${Card} title="Peer models">
    <ul class="plain-list">${Object.entries(byPeer).map(([peer, ids]) => html`<li>
      <strong>${peer}</strong><div class="muted small">${ids.join(', ')}</div></li>`)}</ul>
  </${Card}>`;
}

export function ModelsPage() {
  const models = useStore(live, (s) => s.models);
  const connection = useStore(live, (s) => s.connection);
  const [showUnlisted, setShowUnlisted] = useState(stored('showUnlisted', false));
  const [error, setError] = useState('');
  const admin = useAllowed('admin');
  const local = models.filter((m) => !m.peerID);
  const peers = models.filter((m) => m.peerID);
  const shown = local.filter((m) => showUnlisted || !m.unlisted);
  const ready = local.filter((m) => m.state === 'ready').length;
  const loaded = local.filter((m) => isLoaded(m.state)).length;
  const unloadAll = async () => {
    setError('');
    try {
      await sendJSON('POST', 'api/models/unload');
    } catch (e) {
      setError(e.message);
    }
  };
  const toggle = (v) => {
    setShowUnlisted(v);
    remember('showUnlisted', v);
  };
  return html`<div class="page">
    <${Card} className="models-card" title=${html`Models <span class="muted">(${shown.length} of ${local.length})</span> · <span class="ready-count">${ready} ready</span>`}
      actions=${html`<${Toggle} checked=${showUnlisted} onChange=${toggle} label="Show unlisted" />
        <button type="button" onClick=${unloadAll} disabled=${!loaded || !admin}
          title=${admin ? undefined : needsScope('admin')}>Unload all</button>`}>
      ${error && html`<${Note} kind="error">${error}</${Note}>`}
      ${models.length === 0 && html`<${Note}>${connection === 'open' ? 'No models configured.' : 'Waiting for the event stream…'}</${Note}>`}
      <ul class="model-list">${shown.map((m) => html`<${ModelRow} key=${m.id} model=${m} />`)}</ul>
    </${Card}>
    <div class="grid-2">
      <${ScopeGate} scope="admin" what="Switching profiles"><${ProfilesCard} /></${ScopeGate}>
      <${SelectorsCard} />
      <${PeersCard} peers=${peers} />
    </div>
  </div>`;
}
