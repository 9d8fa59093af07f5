// Small DOM helpers: element builders, formatting, the state badge.

const SVG_NS = 'http://www.w3.org/2000/svg';

// build makes an element: attrs may hold class, text, on<Event> handlers
// and any attribute; children are nodes, strings, arrays or null.
function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// fill replaces el's children with children (null and false are skipped).
export function fill(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// fmtTime shows an RFC 3339 time in local time, to the millisecond.
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

// toISO turns a datetime-local value into RFC 3339 (UTC); toLocal is
// the other way, for an input's value.
export function toISO(v) { return v ? new Date(v).toISOString() : ''; }
export function toLocal(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return '';
  return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

// timeInput is a datetime-local input showing the time iso to the minute,
// and timeOf what a search should send for it: left as shown, iso itself
// (its seconds and milliseconds kept); changed, the new time; emptied,
// nothing.
export function timeInput(name, iso) {
  const input = h('input', { name, type: 'datetime-local', value: toLocal(iso) });
  const timeOf = () => (input.value && input.value === toLocal(iso) ? iso : toISO(input.value));
  return { input, timeOf };
}

export function fmtDur(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  if (ms < 3600000) return `${Math.floor(ms / 60000)} m ${Math.round((ms % 60000) / 1000)} s`;
  return `${Math.floor(ms / 3600000)} h ${Math.round((ms % 3600000) / 60000)} m`;
}

export function since(a, b) {
  if (!a) return null;
  return (b ? new Date(b) : new Date()) - new Date(a);
}

// A glyph per state, so that colour is never the only signal.
const GLYPHS = {
  pending: '○', ready: '◔', running: '▶', paused: '‖', completed: '✓', failed: '✗',
  skipped: '↷', cancelled: '⊘', timed_out: '◷', invalid: '✗',
};

export function glyph(state) { return GLYPHS[state] || '•'; }

export function badge(state) {
  return h('span', { class: `badge state-${state}`, 'data-state': state }, `${glyph(state)} ${state}`);
}

export function jsonBlock(v, empty = 'none') {
  if (v === undefined || v === null) return h('p', { class: 'muted' }, empty);
  return h('pre', { class: 'json' }, JSON.stringify(v, null, 2));
}

// qs builds a query string from the non-empty values of params.
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') u.set(k, v);
  }
  const s = u.toString();
  return s ? `?${s}` : '';
}

export function field(label, input) {
  return h('label', { class: 'field' }, h('span', {}, label), input);
}

// problemText is what a refusal says: the problem's detail and its field errors.
export function problemText(err) {
  const p = err && err.problem;
  if (!p) return String(err && err.message || err);
  const parts = [p.detail || p.title || `HTTP ${err.status}`];
  for (const fe of p.errors || []) parts.push(`${fe.task ? fe.task + ' · ' : ''}${fe.field}: ${fe.message}`);
  return parts.join('\n');
}

// afterPaint resolves once the browser has drawn what is in the DOM.
export function afterPaint() {
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

// originText says what started a run: "schedule nightly 12:00" (the slot
// in local time), "webhook github", "kafka orders"; '' for a direct call.
export function originText(o) {
  if (!o || !o.kind) return '';
  let slot = '';
  if (o.slot) {
    const d = new Date(o.slot);
    if (!isNaN(d)) slot = ` ${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  }
  return `${o.kind} ${o.id}${slot}`;
}

export function originBadge(o) {
  if (!o || !o.kind) return null;
  return h('span', { class: 'badge origin', 'data-origin': `${o.kind}/${o.id}`, title: o.slot ? `slot ${fmtTime(o.slot)}${o.ref ? ` · ${o.ref}` : ''}` : (o.ref || '') }, originText(o));
}
