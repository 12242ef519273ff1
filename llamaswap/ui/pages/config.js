// Config: the effective configuration (secrets masked), problems in the file
// on disk, the last reload's outcome, and a Reload button (admin scope).
// Server side: llamaswap/web/configapi.py (GET api/config, POST api/config/reload).
import { html, useEffect, useState } from '../lib/html.js';
import { getJSON, errorMessage, refusal, url, SCRIPT_HEADERS } from '../lib/api.js';
import { useAllowed, needsScope, ScopeGate } from '../lib/session.js';
import { redactValue } from '../lib/redact.js';
import { Card, Note } from '../lib/components.js';

function Problems({ errors }) {
  if (!errors || !errors.length) return null;
  return html`<ul class="problems" role="alert">${errors.map((e) => html`<li><code>${typeof e === 'string' ? e
    : [e.file && `${e.file}${e.line ? `:${e.line}` : ''}`, e.path || e.key, e.message].filter(Boolean).join(': ')}</code></li>`)}</ul>`;
}

/** What a reload changed (the reload endpoint's summary). */
export function ReloadSummary({ summary }) {
  const list = (v) => (Array.isArray(v) ? v : Object.keys(v || {}));
  const withReasons = (v) => Object.entries(v || {}).map(([m, r]) => (r && r.length ? `${m} (${r.join(', ')})` : m));
  const rows = [
    ['Added', list(summary.added)], ['Removed', list(summary.removed)],
    ['Restarted', withReasons(summary.restarted)], ['Updated in place', withReasons(summary.updated)],
    ['Settings', list(summary.settings)], ['Needs a llamaswap restart', list(summary.needsRestart)],
  ].filter(([, v]) => v.length);
  return html`<div class="reload-summary" role="status">
    <${Note}>Reloaded${summary.changed === false || (!rows.length && summary.changed === undefined) ? ': no changes' : ''}${summary.kept?.length ? ` · ${summary.kept.length} models unchanged` : ''}.</${Note}>
    ${rows.length > 0 && html`<dl class="facts">${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v.join(', ')}</dd>`)}</dl>`}
    ${summary.warnings?.length > 0 && html`<h3>Warnings</h3><ul>${summary.warnings.map((w) => html`<li>${w}</li>`)}</ul>`}
  </div>`;
}

/** The reload before this page was opened (SIGHUP, the file watcher, another client). */
function LastReload({ last }) {
  if (!last) return null;
  const how = last.trigger ? ` (${last.trigger})` : '';
  if (last.ok) return html`<details class="last-reload"><summary>Last reload${how}: applied</summary><${ReloadSummary} summary=${last} /></details>`;
  return html`<div class="last-reload"><${Note} kind="error">Last reload${how} failed; the running configuration is unchanged.</${Note}>
    <${Problems} errors=${last.errors} /></div>`;
}

function ReloadRefused({ reload }) {
  const errors = reload.body?.errors ?? reload.body?.reload?.errors ?? [];
  return html`<${Note} kind="error">${errors.length
    ? `Not reloaded: ${errors.length} error${errors.length > 1 ? 's' : ''} in the configuration; the running configuration is unchanged.`
    : `Reload refused: ${reload.message}`}</${Note}>
    <${Problems} errors=${errors} />`;
}

export function ConfigPage() {
  const [config, setConfig] = useState(null);
  const [problem, setProblem] = useState(null);
  const [reload, setReload] = useState(null);
  const [busy, setBusy] = useState(false);
  const admin = useAllowed('admin');
  const load = () => getJSON('api/config').then((c) => { setConfig(c); setProblem(null); }, setProblem);
  useEffect(() => { if (admin) load(); }, [admin]);
  const doReload = async () => {
    setBusy(true);
    setReload(null);
    try {
      const response = await fetch(url('api/config/reload'), { method: 'POST', credentials: 'same-origin', headers: SCRIPT_HEADERS });
      const text = await response.text();
      let body = null;
      try { body = JSON.parse(text); } catch { body = null; }
      if (response.ok) setReload({ ok: true, body });
      else if (response.status === 404 || response.status === 405) setReload({ ok: false, missing: true });
      else setReload({ ok: false, body, message: refusal(response.status, errorMessage(text, response.status)) });
      load();
    } catch (e) {
      setReload({ ok: false, message: e.message });
    } finally {
      setBusy(false);
    }
  };
  // A refused reload lists the file's errors already.
  const refused = reload && !reload.ok && !reload.missing;
  const shown = config ? redactValue(config.config ?? config) : null;
  return html`<div class="page">
    <${Card} title="Configuration" actions=${html`${!admin && html`<span class="muted needs-scope">Reloading ${needsScope('admin')}</span>`}
      <button type="button" class="primary" onClick=${doReload} disabled=${busy || !admin}
        title=${admin ? undefined : needsScope('admin')}>${busy ? 'Reloading…' : 'Reload from disk'}</button>`}>
      ${reload?.ok && html`<${ReloadSummary} summary=${reload.body || {}} />`}
      ${reload?.missing && html`<${Note}>Reloading from the UI is not available on this llamaswap; send SIGHUP instead.</${Note}>`}
      ${reload && !reload.ok && !reload.missing && html`<${ReloadRefused} reload=${reload} />`}
      ${!admin && html`<${Note}>Viewing the configuration ${needsScope('admin')}; your API key does not have it.</${Note}>`}
      ${problem && (problem.missing
        ? html`<${Note}>Viewing the effective configuration is not available on this llamaswap (no <code>/api/config</code>).</${Note}>`
        : html`<${Note} kind="error">${problem.message}</${Note}>`)}
      ${config && html`${config.errors?.length > 0 && !refused && html`<${Note} kind="error">The configuration file on disk has ${config.errors.length} error${config.errors.length > 1 ? 's' : ''}; a reload would be refused. Shown below: the configuration running now.</${Note}>
        <${Problems} errors=${config.errors} />`}
        ${!reload && html`<${LastReload} last=${config.lastReload} />`}
        ${(config.path || config.dir) && html`<p class="muted small">${config.path && html`File: <code>${config.path}</code>`}${config.dir && html` · directory: <code>${config.dir}</code>`}</p>`}
        <pre class="code-block config">${typeof shown === 'string' ? shown : JSON.stringify(shown, null, 2)}</pre>`}
    </${Card}>
  </div>`;
}
