// The llamaswap web UI: frame (sidebar, top bar), hash routing, theme.
import { html, render, useEffect, useState } from './lib/html.js';
import { useStore, stored } from './lib/store.js';
import { PAGES, router, href, parseHash } from './lib/router.js';
import { live, connect, isLoaded } from './lib/live.js';
import { StateDot } from './lib/components.js';
import { useProfiles } from './lib/profiles.js';
import { ActivityPage } from './pages/activity.js';
import { ModelsPage } from './pages/models.js';
import { ModelPage } from './pages/model.js';
import { LogsPage } from './pages/logs.js';
import { PlaygroundPage } from './pages/playground.js';
import { PerformancePage } from './pages/performance.js';
import { HardwarePage } from './pages/hardware.js';
import { ConfigPage } from './pages/config.js';
import { SettingsPage, applyTheme } from './pages/settings.js';
import { LoginGate, signOut } from './lib/login.js';
import { ScopeGate } from './lib/session.js';

// Opened as /ui/models (a path, not a hash)? Move the path into the hash.
const base = new URL('./', import.meta.url);
if (location.href.startsWith(base.href) && !location.hash) {
  const rest = location.pathname.slice(base.pathname.length).replace(/^index\.html$/, '');
  if (rest) history.replaceState(null, '', `${base.pathname}#/${rest}`);
  router.set(parseHash(location.hash));
}

function ProfilePicker() {
  const { profiles, activeProfile, error, activate } = useProfiles();
  if (!profiles.length) return null;
  const change = (e) => activate(e.target.value || null);
  return html`<label class="profile-picker">
    <span>Profile</span>
    <select value=${activeProfile || ''} onChange=${change} aria-label="Active profile">
      <option value="">(none)</option>
      ${profiles.map((p) => html`<option value=${p.id}>${p.id}</option>`)}
    </select>
    ${error && html`<span class="error-text" role="alert">${error}</span>`}
  </label>`;
}

/** Who is signed in, and the way out (only with a session: keys configured). */
function SessionBox({ session }) {
  if (!session?.keysRequired || !session.authenticated) return null;
  return html`<div class="session-box">
    <span class="muted small">Signed in as <strong>${session.name || 'key'}</strong>
      <span class="scopes">scopes: ${(session.scopes || []).join(', ') || 'none'}</span></span>
    <button type="button" class="small" onClick=${signOut}>Sign out</button>
  </div>`;
}

function Sidebar({ route, open, onNavigate, session }) {
  const connection = useStore(live, (s) => s.connection);
  const models = useStore(live, (s) => s.models);
  const local = models.filter((m) => !m.peerID && !m.unlisted);
  return html`<nav class=${open ? 'sidebar open' : 'sidebar'} aria-label="Main">
    <div class="brand">
      <img src="./favicon.svg" alt="" width="22" height="22" />
      <span>llamaswap</span>
      <${StateDot} state=${connection === 'open' ? 'ready' : connection === 'connecting' ? 'starting' : 'failed'}
        label=${`event stream ${connection}`} />
    </div>
    <ul>
      ${PAGES.map((p) => html`<li key=${p.id}>
        <a href=${href(p.id)} onClick=${onNavigate} aria-current=${route.page === p.id && !route.rest ? 'page' : undefined}
          class=${route.page === p.id ? 'active' : ''}><span class="icon" aria-hidden="true">${p.icon}</span>${p.label}</a>
        ${p.id === 'models' && local.length > 0 && html`<ul class="submenu">
          ${local.map((m) => html`<li key=${m.id}><a href=${href('models', m.id)} onClick=${onNavigate}
            class=${route.page === 'models' && route.rest === m.id ? 'active' : ''}
            aria-current=${route.page === 'models' && route.rest === m.id ? 'page' : undefined}>
            <${StateDot} state=${m.state} label=${`${m.id}: ${m.state}`} /><span class="truncate">${m.id}</span></a></li>`)}
        </ul>`}
      </li>`)}
    </ul>
    <${SessionBox} session=${session} />
  </nav>`;
}

function Page({ route }) {
  switch (route.page) {
    case 'models': return route.rest ? html`<${ModelPage} id=${route.rest} />` : html`<${ModelsPage} />`;
    case 'logs': return html`<${LogsPage} />`;
    case 'performance': return html`<${PerformancePage} />`;
    case 'hardware': return html`<${HardwarePage} />`;
    case 'config': return html`<${ConfigPage} />`;
    case 'settings': return html`<${SettingsPage} />`;
    case 'playground': return null;
    default: return html`<${ActivityPage} />`;
  }
}

function App({ session }) {
  const route = useStore(router);
  const connection = useStore(live, (s) => s.connection);
  const models = useStore(live, (s) => s.models);
  const [menu, setMenu] = useState(false);
  const [playgroundSeen, setPlaygroundSeen] = useState(route.page === 'playground');
  const label = PAGES.find((p) => p.id === route.page)?.label || 'Activity';

  // Opened once signed in (the login gate closes it on sign-out).
  useEffect(() => { connect(); }, []);

  useEffect(() => {
    if (route.page === 'playground') setPlaygroundSeen(true);
    const main = document.getElementById('main');
    if (main) main.focus({ preventScroll: true });
  }, [route.page, route.rest]);

  useEffect(() => {
    const ready = models.filter((m) => !m.peerID && isLoaded(m.state)).length;
    const prefix = connection === 'open' ? '' : connection === 'connecting' ? '… ' : '⚠ offline · ';
    document.title = `${prefix}${route.rest || label}${ready ? ` (${ready} loaded)` : ''} · llamaswap`;
  }, [connection, label, route.rest, models]);

  return html`<div class="frame">
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById('main').focus(); }}>Skip to content</a>
    <${Sidebar} route=${route} open=${menu} onNavigate=${() => setMenu(false)} session=${session} />
    <div class="content">
      <header class="topbar">
        <button type="button" class="icon menu-button" aria-label="Menu" aria-expanded=${menu ? 'true' : 'false'}
          onClick=${() => setMenu(!menu)}>☰</button>
        <ol class="breadcrumb" aria-label="Breadcrumb">
          <li><a href=${href(route.page)}>${label}</a></li>
          ${route.rest && html`<li aria-current="page">${route.rest}</li>`}
        </ol>
        ${connection !== 'open' && html`<span class="badge badge-warn" role="status">${connection === 'connecting' ? 'connecting…' : 'offline, reconnecting'}</span>`}
        <${ScopeGate} scope="admin" what="Switching profiles" quiet><${ProfilePicker} /></${ScopeGate}>
      </header>
      <main id="main" tabindex="-1">
        <${Page} route=${route} />
        ${playgroundSeen && html`<div hidden=${route.page !== 'playground'}><${PlaygroundPage} /></div>`}
      </main>
    </div>
  </div>`;
}

applyTheme(stored('theme', 'system'));
const root = document.getElementById('app');
root.textContent = '';
render(html`<${LoginGate}>${(session) => html`<${App} session=${session} />`}</${LoginGate}>`, root);
