// The login form shown instead of the browser's password dialog when
// llamaswap has apiKeys. Server side: llamaswap/web/login.py; rules:
// docs/security.rst. The key is posted once to api/login and never stored:
// the server answers with an HttpOnly session cookie, which every later
// same-origin fetch() carries.
import { html, useEffect, useState } from './html.js';
import { getJSON, sendJSON, HTTPError } from './api.js';
import { Card } from './components.js';

/** {authenticated, name, scopes, keysRequired}, or null when unknown. */
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

/** Whether the session holds `scope` (admin includes monitor). */
export function allowed(session, scope) {
  return !session?.keysRequired || (session.scopes || []).includes(scope);
}

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
      const session = await login(key);
      setKey('');
      onLogin(session);
    } catch (err) {
      setError(err.status === 401 ? 'That key is not valid.' : err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="page login-page">
    <${Card} title="Sign in to llamaswap">
      <form onSubmit=${submit}>
        <label>API key
          <input type="password" autocomplete="current-password" value=${key} required autofocus
            onInput=${(e) => setKey(e.target.value)} />
        </label>
        <button class="primary" type="submit" disabled=${busy || !key}>Sign in</button>
        ${error && html`<p class="error-text" role="alert">${error}</p>`}
      </form>
    </${Card}>
  </div>`;
}

/**
 * Renders `children(session)` once signed in (or when no keys are set),
 * the login form otherwise. A 'llamaswap:unauthorized' window event (a 401
 * seen elsewhere, e.g. after the session expired) shows the form again.
 */
export function LoginGate({ children }) {
  const [session, setSession] = useState(null);
  const [error, setError] = useState('');
  const refresh = () => getSession().then(setSession, (e) => setError(e.message));
  useEffect(() => {
    refresh();
    const expired = () => refresh();
    window.addEventListener('llamaswap:unauthorized', expired);
    return () => window.removeEventListener('llamaswap:unauthorized', expired);
  }, []);
  if (error) return html`<p class="error-text" role="alert">${error}</p>`;
  if (!session) return null;
  if (session.keysRequired && !session.authenticated) {
    return html`<${LoginForm} onLogin=${setSession} />`;
  }
  return children(session);
}
