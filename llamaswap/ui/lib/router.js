// Hash routing: #/page/rest (rest may contain slashes, as model IDs do).
import { Store } from './store.js';

export const PAGES = [
  { id: 'activity', label: 'Activity', icon: '◔' },
  { id: 'models', label: 'Models', icon: '▦' },
  { id: 'playground', label: 'Playground', icon: '✎' },
  { id: 'logs', label: 'Logs', icon: '≡' },
  { id: 'performance', label: 'Performance', icon: '↗' },
  { id: 'hardware', label: 'Hardware', icon: '⌂' },
  { id: 'config', label: 'Config', icon: '⚙' },
  { id: 'settings', label: 'Settings', icon: '☰' },
];

/** The route in a hash: {page, rest} from `#/models/a/b`. */
export function parseHash(hash) {
  let path = (hash || '').replace(/^#\/?/, '');
  try {
    path = decodeURIComponent(path);
  } catch {
    // keep it as typed
  }
  const [page, ...rest] = path.split('/');
  const known = PAGES.some((p) => p.id === page);
  return { page: known ? page : 'activity', rest: known ? rest.join('/') : '' };
}

export const router = new Store(parseHash(location.hash));
window.addEventListener('hashchange', () => router.set(parseHash(location.hash)));

/** A link into the app: `href('models', id)`. */
export function href(page, rest) {
  return `#/${page}${rest ? `/${encodeURIComponent(rest).replace(/%2F/g, '/')}` : ''}`;
}
