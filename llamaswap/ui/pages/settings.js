// Settings: theme, display options, version and build information.
import { html, useState } from '../lib/html.js';
import { useStore, stored, remember } from '../lib/store.js';
import { live } from '../lib/live.js';
import { Card, Facts, Toggle } from '../lib/components.js';

/** Apply `mode` (light, dark or system) to the page. */
export function applyTheme(mode) {
  const root = document.documentElement;
  if (mode === 'light' || mode === 'dark') root.dataset.theme = mode;
  else delete root.dataset.theme;
}

export function SettingsPage() {
  const [theme, setTheme] = useState(stored('theme', 'system'));
  const [caps, setCaps] = useState(stored('showCapabilities', true));
  const version = useStore(live, (s) => s.version);
  const connection = useStore(live, (s) => s.connection);
  const chooseTheme = (mode) => {
    setTheme(mode);
    remember('theme', mode);
    applyTheme(mode);
  };
  return html`<div class="page grid-2">
    <${Card} title="Appearance">
      <fieldset class="radio-group"><legend>Theme</legend>
        ${['system', 'light', 'dark'].map((mode) => html`<label><input type="radio" name="theme" value=${mode}
          checked=${theme === mode} onChange=${() => chooseTheme(mode)} /> ${mode[0].toUpperCase() + mode.slice(1)}</label>`)}
      </fieldset>
      <${Toggle} checked=${caps} label="Show capability tags on models"
        onChange=${(v) => { setCaps(v); remember('showCapabilities', v); }} />
    </${Card}>
    <${Card} title="About">
      <${Facts} items=${[['Version', version?.version], ['Commit', version?.commit], ['Build date', version?.build_date],
        ['Event stream', connection], ['UI', 'Preact + htm, no build step']]} />
    </${Card}>
  </div>`;
}
