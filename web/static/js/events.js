// The event history of a run, newest last, with the hash-chain badge.
import { h, fmtTime } from './dom.js';

const SHOWN = 100; // rows drawn at first; the rest on request

export function eventRow(ev, withRun = false) {
  const data = ev.data ? JSON.stringify(ev.data) : '';
  return h('tr', { 'data-seq': ev.seq, 'data-type': ev.type },
    withRun ? h('td', {}, h('a', { href: `#/runs/${encodeURIComponent(ev.run_id)}`, class: 'mono' }, ev.run_id)) : null,
    h('td', { class: 'num' }, ev.seq),
    h('td', {}, fmtTime(ev.at)),
    h('td', {}, h('span', { class: `etype ${ev.type.replace('.', '-')}` }, ev.type)),
    h('td', {}, ev.task_id || ''),
    h('td', { class: 'num' }, ev.attempt || ''),
    h('td', { class: 'mono' }, ev.actor, ev.on_behalf ? ` for ${ev.on_behalf}` : ''),
    h('td', { class: 'data' }, data.length > 160 ? h('details', {}, h('summary', {}, data.slice(0, 120) + '…'), h('pre', {}, JSON.stringify(ev.data, null, 2))) : data));
}

export function verifyBadge(page) {
  if (page.verified === true) return h('span', { class: 'badge verified', id: 'chain' }, '✓ hash chain verified');
  if (page.verified === false) return h('span', { class: 'badge broken', id: 'chain' }, `✗ hash chain broken: ${page.verify_error || ''}`);
  return h('span', { class: 'badge', id: 'chain' }, '? not verified');
}

export function eventHead(withRun = false) {
  return h('thead', {}, h('tr', {}, (withRun ? ['Run'] : []).concat(['Seq', 'At', 'Type', 'Task', 'Attempt', 'Actor', 'Data']).map((c) => h('th', {}, c))));
}

// historyView shows events and takes more as they arrive.
export function historyView(events) {
  const body = h('tbody', { id: 'events-body' });
  const older = h('button', { type: 'button', hidden: true }, '');
  const hidden = Math.max(0, events.length - SHOWN);
  body.append(...events.slice(hidden).map((e) => eventRow(e)));
  if (hidden) {
    older.hidden = false;
    older.textContent = `Show ${hidden} older events`;
    older.addEventListener('click', () => {
      body.prepend(...events.slice(0, hidden).map((e) => eventRow(e)));
      older.remove();
    });
  }
  const el = h('div', {}, older, h('div', { class: 'scroll events-box' }, h('table', { class: 'list events' }, eventHead(), body)));
  return { el, add(ev) { body.append(eventRow(ev)); } };
}
