// Everything live comes from one EventSource on api/events; this module owns
// it, reconnects with back-off, and keeps the state pages render from.
import { Store } from './store.js';
import { url, getJSON } from './api.js';
import { allowed, session } from './session.js';

const LOG_LIMIT = 100 * 1024;
const RETRY_FIRST = 500;
const RETRY_MAX = 10000;

export const live = new Store({
  connection: 'connecting', // connecting | open | closed
  models: [], // modelStatus entries (local then peers)
  logs: { proxy: '', upstream: '' },
  inflight: {}, // id -> in-flight request
  uiConfig: {},
  activeProfile: null,
  profiles: [], // from api/profiles
  listing: [], // records from v1/models
  loads: {}, // model -> last loadProgress payload (+ at: ms timestamp)
  failures: {}, // model -> message of its last failed start
  activitySeq: 0, // bumped on every `activity` event
  version: null,
});

const listeners = new Map();

/** Call `fn(data)` for each event of `kind` (also ones this module does not know). */
export function onEvent(kind, fn) {
  if (!listeners.has(kind)) listeners.set(kind, new Set());
  listeners.get(kind).add(fn);
  return () => listeners.get(kind).delete(fn);
}

function appendLog(text, chunk) {
  const joined = text + chunk;
  if (joined.length <= LOG_LIMIT) return joined;
  const cut = joined.slice(joined.length - LOG_LIMIT);
  const newline = cut.indexOf('\n');
  return newline >= 0 ? cut.slice(newline + 1) : cut;
}

/** Re-read the model listing and profiles (after connect, reload, profile change). */
export async function refreshListing() {
  try {
    // The listing is an inference route: a monitor-only key goes without.
    const inference = allowed(session.state.current, 'inference');
    const [models, profiles] = await Promise.all([
      inference ? getJSON('v1/models') : { data: [] },
      getJSON('api/profiles'),
    ]);
    live.set({ listing: models.data || [], profiles: profiles.profiles || [], activeProfile: profiles.active ?? null });
  } catch {
    // the event stream's state shows the problem
  }
}

const handlers = {
  modelStatus(models) {
    const before = live.state.models.map((m) => m.id).join('\n');
    live.set({ models });
    if (before && before !== models.map((m) => m.id).join('\n')) refreshListing();
  },
  logData({ source, data }) {
    if (source !== 'proxy' && source !== 'upstream') return;
    live.set((s) => ({ logs: { ...s.logs, [source]: appendLog(s.logs[source], data) } }));
  },
  activity() {
    live.set((s) => ({ activitySeq: s.activitySeq + 1 }));
  },
  inflight(message) {
    live.set((s) => {
      if (message.operation === 'snapshot') {
        return { inflight: Object.fromEntries((message.requests || []).map((r) => [r.id, r])) };
      }
      const inflight = { ...s.inflight };
      if (message.operation === 'upsert') inflight[message.request.id] = message.request;
      else if (message.operation === 'remove') delete inflight[message.id];
      return { inflight };
    });
  },
  uiConfig(config) {
    live.set({ uiConfig: config || {} });
  },
  profileChanged({ active }) {
    live.set({ activeProfile: active ?? null });
    refreshListing();
  },
  loadProgress(progress) {
    const { model, phase } = progress;
    live.set((s) => {
      const loads = { ...s.loads, [model]: { ...progress, at: Date.now() } };
      const failures = { ...s.failures };
      if (phase === 'failed') failures[model] = progress.message || 'the model failed to start';
      else delete failures[model];
      if (phase !== 'starting') delete loads[model];
      return { loads, failures };
    });
  },
};

let source = null;
let retry = RETRY_FIRST;
let timer = null;

function dispatch(message) {
  let envelope;
  let data;
  try {
    envelope = JSON.parse(message.data);
    data = typeof envelope.data === 'string' ? JSON.parse(envelope.data) : envelope.data;
  } catch {
    return;
  }
  const handler = handlers[envelope.type];
  if (handler) handler(data);
  for (const fn of listeners.get(envelope.type) || []) fn(data);
}

/** Open the event stream (idempotent). */
export function connect() {
  if (source) return;
  clearTimeout(timer);
  live.set({ connection: 'connecting' });
  source = new EventSource(url('api/events'));
  source.onopen = () => {
    retry = RETRY_FIRST;
    live.set({ connection: 'open', logs: { proxy: '', upstream: '' }, inflight: {}, loads: {} });
    refreshListing();
    if (!live.state.version) {
      getJSON('api/version').then((version) => live.set({ version }), () => {});
    }
  };
  source.onmessage = dispatch;
  source.onerror = () => {
    // Take reconnection over from the browser, with our own back-off (it
    // gives up for good on an HTTP error such as a restart's 502).
    source.close();
    source = null;
    live.set({ connection: 'closed' });
    timer = setTimeout(connect, retry);
    retry = Math.min(retry * 2, RETRY_MAX);
    // An EventSource cannot tell a 401 from a dropped connection: ask
    // whether the session ended (the login gate then shows its form).
    getJSON('api/session').then((s) => {
      if (s.keysRequired && !s.authenticated) window.dispatchEvent(new CustomEvent('llamaswap:unauthorized'));
    }, () => {});
  };
}

/** Close the event stream (signed out); `connect()` opens it again. */
export function disconnect() {
  clearTimeout(timer);
  retry = RETRY_FIRST;
  if (source) {
    source.close();
    source = null;
  }
  live.set({ connection: 'closed' });
}

/** Whether a model's state counts as loaded (llama-swap's rule). */
export function isLoaded(state) {
  return state === 'starting' || state === 'ready' || state === 'stopping';
}
