// A tiny observable state container and the hook that re-renders on change.
import { useEffect, useReducer, useRef } from './html.js';

export class Store {
  constructor(state) {
    this.state = state;
    this.subscribers = new Set();
  }

  /** Merge `patch` (an object, or a function of the state giving one). */
  set(patch) {
    const next = typeof patch === 'function' ? patch(this.state) : patch;
    this.state = { ...this.state, ...next };
    for (const fn of [...this.subscribers]) fn(this.state);
  }

  subscribe(fn) {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }
}

/** The part of `store` chosen by `select`; the component re-renders when it changes. */
export function useStore(store, select = (s) => s) {
  const [, force] = useReducer((n) => n + 1, 0);
  const selector = useRef(select);
  selector.current = select;
  const value = select(store.state);
  const last = useRef(value);
  last.current = value;
  useEffect(() => store.subscribe((state) => {
    const next = selector.current(state);
    if (next !== last.current) {
      last.current = next;
      force();
    }
  }), [store]);
  return value;
}

/** A value persisted in localStorage under `key`. */
export function stored(key, fallback) {
  try {
    const raw = localStorage.getItem(`llamaswap.${key}`);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

export function remember(key, value) {
  try {
    localStorage.setItem(`llamaswap.${key}`, JSON.stringify(value));
  } catch {
    // private mode: the setting lasts for this page only
  }
}
