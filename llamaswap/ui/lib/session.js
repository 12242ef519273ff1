// Who is signed in (with apiKeys) and what their key's scopes allow; the
// login form itself is lib/login.js. Buttons a key may not use are
// disabled and say which scope they need, instead of failing with a 403.
import { html } from './html.js';
import { Store, useStore } from './store.js';

/** The current session: {authenticated, name, scopes, keysRequired}, or null before it is known. */
export const session = new Store({ current: null });

/** Whether the session holds `scope` (admin includes monitor; no keys: everything). */
export function allowed(current, scope) {
  return !current?.keysRequired || (current.scopes || []).includes(scope);
}

/** Whether the signed-in key holds `scope` (re-renders when the session changes). */
export function useAllowed(scope) {
  return useStore(session, (s) => allowed(s.current, scope));
}

/** Why a control is disabled for want of `scope`. */
export function needsScope(scope) {
  return `needs the ${scope} scope`;
}

/**
 * `children` as they are when the key holds `scope`; otherwise inside a
 * disabled fieldset (every control in it disabled natively) with a hint
 * "<what> needs the <scope> scope" (shown, or only as a tooltip when
 * `quiet`).
 */
export function ScopeGate({ scope, what, quiet = false, children }) {
  const permitted = useAllowed(scope);
  if (permitted) return children;
  const hint = `${what} ${needsScope(scope)}`;
  return html`<fieldset class="scope-gate" disabled title=${hint}>
    ${children}
    ${!quiet && html`<p class="muted needs-scope">${hint}.</p>`}
  </fieldset>`;
}
