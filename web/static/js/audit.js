// Audit: the tenant-wide event search with its filters, paged by
// next_page_token, and the NDJSON export of every match.
import { get, tpath } from './api.js';
import { h, clear, qs, field, problemText, timeInput } from './dom.js';
import { eventHead, eventRow } from './events.js';

const EVENT_TYPES = ['run.created', 'run.started', 'run.paused', 'run.resumed', 'run.completed', 'run.failed',
  'run.cancelled', 'run.timed_out', 'run.retried', 'run.stalled', 'task.ready', 'task.started', 'task.completed',
  'task.attempt_failed', 'task.failed', 'task.timed_out', 'task.skipped', 'task.cancelled', 'task.reset', 'task.lease_extended'];
const FILTERS = ['type', 'run', 'task_id', 'actor', 'on_behalf', 'since', 'until'];

export async function auditPage(main, params) {
  const f = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || '']));
  const inputs = {
    type: h('select', { name: 'type' }, h('option', { value: '' }, 'any'), EVENT_TYPES.map((t) => h('option', { value: t, selected: t === f.type }, t))),
    run: h('input', { name: 'run', value: f.run, size: 14 }),
    task_id: h('input', { name: 'task_id', value: f.task_id, size: 10 }),
    actor: h('input', { name: 'actor', value: f.actor, size: 14 }),
    on_behalf: h('input', { name: 'on_behalf', value: f.on_behalf, size: 10 }),
  };
  const times = { since: timeInput('since', f.since), until: timeInput('until', f.until) };
  inputs.since = times.since.input;
  inputs.until = times.until.input;
  const form = h('form', { class: 'filters', id: 'audit-filters' },
    FILTERS.map((k) => field(k, inputs[k])), h('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = {};
    for (const k of FILTERS) q[k] = times[k] ? times[k].timeOf() : inputs[k].value.trim();
    location.hash = '#/audit' + qs(q);
  });
  const exportURL = tpath('/events') + qs(f);
  const exportLink = h('a', { href: exportURL, id: 'export', download: 'events.ndjson' }, 'Export every match as NDJSON');
  const note = h('span', { class: 'muted' });
  exportLink.addEventListener('click', async (e) => {
    e.preventDefault(); // the export needs the key, which a plain link cannot send
    note.textContent = ' exporting…';
    try {
      const res = await get(exportURL, { accept: 'application/x-ndjson', raw: true });
      const url = URL.createObjectURL(await res.blob());
      const a = h('a', { href: url, download: 'events.ndjson' });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      note.textContent = ' done';
    } catch (err) { note.textContent = ` ${problemText(err)}`; }
  });
  const body = h('tbody', { id: 'audit-body' });
  const more = h('button', { type: 'button', id: 'audit-more', hidden: true }, 'More');
  const err = h('p', { class: 'error', role: 'alert' });
  main.append(h('h1', {}, 'Audit'), form,
    h('p', {}, exportLink, note, h('br'), h('code', { class: 'muted' }, `curl -H 'Accept: application/x-ndjson' '${location.origin}${exportURL}'`)),
    h('table', { class: 'list events' }, eventHead(true), body), more, err);

  let token = '';
  async function load() {
    try {
      const page = await get(tpath('/events') + qs({ ...f, limit: 100, page_token: token }));
      body.append(...page.events.map((ev) => eventRow(ev, true)));
      if (!page.events.length && !token) body.append(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No event matches.')));
      token = page.next_page_token || '';
      more.hidden = !token;
    } catch (e) {
      err.textContent = problemText(e);
    }
  }
  more.addEventListener('click', load);
  clear(body);
  await load();
}
