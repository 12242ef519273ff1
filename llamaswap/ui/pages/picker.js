// The model picker: local models (with aliases), selectors, profile models, peers.
import { html } from '../lib/html.js';
import { useStore } from '../lib/store.js';
import { live } from '../lib/live.js';

/** Options grouped by kind from the v1/models listing (falls back to modelStatus). */
export function modelGroups(listing, models) {
  const groups = { Models: [], Selectors: [], Profile: [], Peers: [] };
  const records = listing.length ? listing : models.filter((m) => !m.unlisted).map((m) => ({
    id: m.id, name: m.name, meta: { llamaswap: { type: m.peerID ? 'peer' : 'model', aliases: m.aliases } },
  }));
  for (const r of records) {
    const info = r.meta?.llamaswap || {};
    const type = info.type || 'model';
    if (type === 'selector') groups.Selectors.push({ id: r.id, label: `${r.id} (${info.strategy || 'selector'})` });
    else if (type === 'profile') groups.Profile.push({ id: r.id, label: r.id });
    else if (type === 'peer') groups.Peers.push({ id: r.id, label: r.name || r.id });
    else if (type === 'alias') continue;
    else {
      groups.Models.push({ id: r.id, label: r.name && r.name !== r.id ? `${r.id} — ${r.name}` : r.id });
      for (const alias of info.aliases || []) groups.Models.push({ id: alias, label: `${alias} → ${r.id}` });
    }
  }
  return Object.entries(groups).filter(([, options]) => options.length);
}

export function ModelPicker({ value, onChange, label = 'Model' }) {
  const listing = useStore(live, (s) => s.listing);
  const models = useStore(live, (s) => s.models);
  const groups = modelGroups(listing, models);
  return html`<label class="picker">${label}
    <select value=${value} onChange=${(e) => onChange(e.target.value)} aria-label=${label}>
      <option value="">choose a model…</option>
      ${groups.map(([name, options]) => html`<optgroup label=${name}>
        ${options.map((o) => html`<option value=${o.id}>${o.label}</option>`)}</optgroup>`)}
    </select></label>`;
}
