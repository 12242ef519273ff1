// Preact + htm: components written as tagged templates, no build step.
import { h } from '../vendor/preact-10.29.8.js';
import htm from '../vendor/htm-3.1.1.js';

export { h, render, Fragment } from '../vendor/preact-10.29.8.js';
export {
  useState, useEffect, useRef, useMemo, useCallback, useReducer, useLayoutEffect,
} from '../vendor/preact-hooks-10.29.8.js';

export const html = htm.bind(h);
