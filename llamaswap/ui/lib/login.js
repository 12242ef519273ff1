// The login form shown instead of the browser's password dialog when
// llamaswap has apiKeys. Server side: llamaswap/web/login.py; rules:
// docs/security.rst. The key is posted once to api/login and never stored:
// the server answers with an HttpOnly session cookie, which every later
// same-origin fetch() and the EventSource carry.
import { html, useEffect, useState } from './html.js';
import { getJSON, sendJSON, HTTPError } from './api.js';
import { useStore } from './store.js';
import { disconnect } from './live.js';
import { session } from './session.js';
import { Card } from './components.js';

/** {authenticated, name, scopes, keysRequired}; no keys when the server predates sessions. */
export async function getSession() {
  try {
    return await getJSON('api/session');
  } catch (e) {
    if (e instanceof HTTPError && e.missing) {
      return { authenticated: false, name: null, scopes: [], keysRequired: false };
    }
    throw e;
  }
}

export const login = (key) => sendJSON('POST', 'api/login', { key });
export const logout = () => sendJSON('POST', 'api/logout', {});

/** The login form; `onLogin(session)` once a key was accepted. */
export function LoginForm({ onLogin }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      const current = await login(key);
      setKey('');
      onLogin(current);
    } catch (err) {
      setError(err.status === 401 ? 'That key is not valid.' : err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="login-page" id="main">
    <${Card} title=${html`<img src="./favicon.svg" alt="" width="22" height="22" /> Sign in to llamaswap`}>
      <form class="login-form" onSubmit=${submit} aria-describedby="login-help">
        <p id="login-help" class="muted small">This llamaswap needs an API key. Enter one of its keys
          (<code>apiKeys</code> in the configuration); the browser keeps a session cookie, not the key.</p>
        <label for="login-key">API key</label>
        <input id="login-key" name="key" type="password" autocomplete="current-password" value=${key} required autofocus
          aria-invalid=${error ? 'true' : undefined} aria-describedby=${error ? 'login-error' : undefined}
          onInput=${(e) => setKey(e.target.value)} />
        <button class="primary" type="submit" disabled=${busy || !key}>${busy ? 'Signing in…' : 'Sign in'}</button>
        ${error && html`<p id="login-error" class="note note-error" role="alert">${error}</p>`}
      </form>
    </${Card}>
  </main>`;
}

/**
 * Renders `children(session)` once signed in (or when no keys are set),
 * the login form otherwise. A 'llamaswap:unauthorized' window event (a 401
 * seen elsewhere, e.g. after the session expired) shows the form again.
 */
export function LoginGate({ children }) {
  const current = useStore(session, (s) => s.current);
  const [error, setError] = useState('');
  const set = (value) => session.set({ current: value });
  const signedOut = current?.keysRequired && !current.authenticated;
  useEffect(() => { if (signedOut) disconnect(); }, [signedOut]);
  const refresh = () => getSession().then((value) => { setError(''); set(value); }, (e) => setError(e.message));
  useEffect(() => {
    refresh();
    window.addEventListener('llamaswap:unauthorized', refresh);
    return () => window.removeEventListener('llamaswap:unauthorized', refresh);
  }, []);
  if (error) {
    return html`<main class="login-page" id="main"><p class="note note-error" role="alert">${error}</p>
      <button type="button" onClick=${refresh}>Try again</button></main>`;
  }
  if (!current) return null;
  if (signedOut) {
    return html`<${LoginForm} onLogin=${set} />`;
  }
  return children(current);
}

/** Sign out: the cookie is cleared, the event stream closed, the login form shown. */
export async function signOut() {
  try {
    await logout();
  } finally {
    session.set({ current: await getSession().catch(() => null) });
  }
}
