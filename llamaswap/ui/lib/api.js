// HTTP helpers. Every URL is relative to the directory above /ui/, so the UI
// works behind a reverse proxy that mounts llamaswap under a path prefix.

const ROOT = new URL('../../', import.meta.url);

/** The absolute URL of a llamaswap path such as `api/events` or `/v1/models`. */
export function url(path) {
  return new URL(path.replace(/^\/+/, ''), ROOT).toString();
}

/**
 * Sent with every fetch: tells llamaswap a page's script asks, so a 401
 * carries no `WWW-Authenticate: Basic` (no browser password dialog; the
 * UI shows its login form instead).
 */
export const SCRIPT_HEADERS = { 'x-requested-with': 'llamaswap-ui' };

/** A failed request: `status` 0 when the network failed. */
export class HTTPError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }

  /** Whether the endpoint does not exist on this server (an older llamaswap). */
  get missing() {
    return this.status === 404 || this.status === 405;
  }

  /** Whether the key lacks the scope (or other right) the action needs. */
  get forbidden() {
    return this.status === 403;
  }
}

/** The scope a 403 names ("this API key lacks the 'admin' scope"), if any. */
export function missingScope(message) {
  return /lacks the '(\w+)' scope/.exec(message || '')?.[1] ?? null;
}

/** What to tell the user about a refused action. */
export function refusal(status, message) {
  const scope = status === 403 ? missingScope(message) : null;
  return scope ? `This needs the ${scope} scope; your API key does not have it.` : message;
}

/** Tell the login gate a request was refused for want of a key (session expired). */
function unauthorized(path) {
  if (!/^\/?api\/(login|session)$/.test(path)) {
    window.dispatchEvent(new CustomEvent('llamaswap:unauthorized'));
  }
}

/** The message inside an OpenAI-style error envelope, or the text itself. */
export function errorMessage(text, status) {
  try {
    const body = JSON.parse(text);
    const msg = body?.error?.message ?? body?.error ?? body?.message ?? body?.detail;
    if (typeof msg === 'string' && msg.trim()) return msg;
  } catch {
    // not JSON
  }
  const plain = (text || '').trim();
  return plain ? plain.slice(0, 500) : `HTTP ${status}`;
}

/** fetch() that throws HTTPError for non-2xx answers. */
export async function request(method, path, { json, body, headers = {}, signal } = {}) {
  const init = { method, headers: { ...SCRIPT_HEADERS, ...headers }, signal, credentials: 'same-origin' };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers['content-type'] = 'application/json';
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(url(path), init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new HTTPError(0, `network error: ${e.message}`);
  }
  if (!response.ok) {
    if (response.status === 401) unauthorized(path);
    throw new HTTPError(response.status, refusal(response.status, errorMessage(await response.text(), response.status)));
  }
  return response;
}

export async function getJSON(path, opts) {
  return (await request('GET', path, opts)).json();
}

export async function sendJSON(method, path, json, opts = {}) {
  const response = await request(method, path, { ...opts, json });
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Read a streamed text response chunk by chunk: `onText(text)` per chunk.
 * Resolves when the stream ends; rejects with AbortError when aborted.
 */
export async function readText(response, onText) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    onText(decoder.decode(value, { stream: true }));
  }
  const tail = decoder.decode();
  if (tail) onText(tail);
}

/** Split server-sent events out of text chunks: `onEvent({event, data})`. */
export function sseParser(onEvent) {
  let buffer = '';
  let event = 'message';
  let data = [];
  return (chunk) => {
    buffer += chunk;
    let newline;
    while ((newline = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(buffer[newline] === '\r' ? newline + 2 : newline + 1);
      if (line === '') {
        if (data.length) onEvent({ event, data: data.join('\n') });
        event = 'message';
        data = [];
      } else if (line.startsWith(':')) {
        // comment
      } else {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
    }
  };
}
