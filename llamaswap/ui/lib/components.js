// Small shared building blocks.
import { html, useEffect, useRef, useState } from './html.js';

export function StateDot({ state, label }) {
  const s = state || 'peer';
  return html`<span class=${`dot dot-${s}`} role="img" aria-label=${label || s} title=${label || s}></span>`;
}

export function Card({ title, actions, children, className = '' }) {
  return html`<section class=${`card ${className}`}>
    ${(title || actions) && html`<header class="card-head">
      ${title && html`<h2>${title}</h2>`}
      <div class="card-actions">${actions}</div>
    </header>`}
    ${children}
  </section>`;
}

export function Note({ kind = 'info', children }) {
  return html`<p class=${`note note-${kind}`} role=${kind === 'error' ? 'alert' : 'status'}>${children}</p>`;
}

export function Tabs({ tabs, value, onChange, label }) {
  const onKey = (e) => {
    const step = { ArrowRight: 1, ArrowLeft: tabs.length - 1 }[e.key];
    if (!step) return;
    e.preventDefault();
    const buttons = [...e.currentTarget.querySelectorAll('[role=tab]')];
    const focused = buttons.indexOf(document.activeElement);
    const i = focused >= 0 ? focused : tabs.findIndex((t) => t.id === value);
    const next = (i + step) % tabs.length;
    onChange(tabs[next].id);
    buttons[next]?.focus();
  };
  return html`<div class="tabs" role="tablist" aria-label=${label} onKeyDown=${onKey}>
    ${tabs.map((t) => html`<button type="button" role="tab" key=${t.id}
      aria-selected=${t.id === value ? 'true' : 'false'} tabindex=${t.id === value ? 0 : -1}
      class=${t.id === value ? 'tab active' : 'tab'} onClick=${() => onChange(t.id)}>${t.label}</button>`)}
  </div>`;
}

export function Toggle({ checked, onChange, label }) {
  return html`<label class="toggle">
    <input type="checkbox" role="switch" checked=${checked} onChange=${(e) => onChange(e.target.checked)} />
    <span>${label}</span>
  </label>`;
}

/** A modal dialog (native <dialog>: focus trap and Escape for free). */
export function Dialog({ title, onClose, children, wide }) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
    return () => dialog && dialog.open && dialog.close();
  }, []);
  return html`<dialog ref=${ref} class=${wide ? 'dialog wide' : 'dialog'} onClose=${onClose}
      onClick=${(e) => e.target === ref.current && onClose()} aria-label=${title}>
    <header class="card-head"><h2>${title}</h2>
      <button type="button" class="icon" onClick=${onClose} aria-label="Close">✕</button></header>
    <div class="dialog-body">${children}</div>
  </dialog>`;
}

/** A progress bar; `value` null draws an indeterminate one. */
export function Progress({ value, label }) {
  const pct = value === null || value === undefined ? null : Math.max(0, Math.min(1, value)) * 100;
  return html`<div class=${pct === null ? 'progress indeterminate' : 'progress'} role="progressbar"
      aria-label=${label} aria-valuemin="0" aria-valuemax="100" aria-valuenow=${pct === null ? undefined : Math.round(pct)}>
    <div class="progress-bar" style=${pct === null ? undefined : { width: `${pct.toFixed(1)}%` }}></div>
  </div>`;
}

/** Re-render every `ms` while mounted (for live clocks such as elapsed times). */
export function useTicker(ms = 1000, active = true) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return undefined;
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms, active]);
  return now;
}

export function CopyButton({ text, label = 'Copy' }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(typeof text === 'function' ? text() : text);
      setDone(true);
      setTimeout(() => setDone(false), 1200);
    } catch {
      // clipboard refused (insecure context)
    }
  };
  return html`<button type="button" class="small" onClick=${copy}>${done ? 'Copied' : label}</button>`;
}

/** Definition list of [label, value] pairs (skips empty values). */
export function Facts({ items }) {
  const rows = items.filter(([, v]) => v !== undefined && v !== null && v !== '');
  return html`<dl class="facts">${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>`;
}
