// The runs list: filters, cursor pagination, counts per state and live
// updates from the tenant's stream.
import { get, tpath } from './api.js';
import { h, fill, afterPaint, badge, originBadge, fmtTime, fmtDur, since, qs, field, timeInput } from './dom.js';
import { openStream, liveStatus } from './sse.js';

export const ORIGIN_KINDS = ['schedule', 'webhook', 'nats', 'kafka'];
export const RUN_STATES = ['pending', 'running', 'paused', 'completed', 'failed', 'cancelled', 'timed_out'];
const PAGE = 50;

function matches(run, f) {
  if (f.status && run.state !== f.status) return false;
  if (f.workflow && run.workflow !== f.workflow) return false;
  if (f.created_after && run.created_at < f.created_after) return false;
  if (f.created_before && run.created_at >= f.created_before) return false;
  const o = run.origin || {};
  if (f.origin_kind && o.kind !== f.origin_kind) return false;
  if (f.origin_id && o.id !== f.origin_id) return false;
  return true;
}

function row(run) {
  const end = run.ended_at || null;
  return h('tr', { 'data-run': run.id, 'data-state': run.state },
    h('td', {}, h('a', { href: `#/runs/${encodeURIComponent(run.id)}`, class: 'mono' }, run.id)),
    h('td', {}, `${run.workflow} v${run.version}`, run.alias ? h('span', { class: 'muted' }, ` @${run.alias}`) : null),
    h('td', { class: 'origin-cell' }, originBadge(run.origin) || h('span', { class: 'muted' }, 'api')),
    h('td', { class: 'state-cell' }, badge(run.state)),
    h('td', {}, fmtTime(run.created_at)),
    h('td', {}, fmtTime(run.started_at)),
    h('td', {}, fmtTime(end)),
    h('td', {}, run.started_at && end ? fmtDur(since(run.started_at, end)) : '—'));
}

export async function runsPage(main, params) {
  const f = {
    status: params.get('status') || '', workflow: params.get('workflow') || '',
    created_after: params.get('created_after') || '', created_before: params.get('created_before') || '',
    origin_kind: params.get('origin_kind') || '', origin_id: params.get('origin_id') || '',
  };
  const tokens = params.get('page_token') ? [params.get('page_token')] : [''];
  let runs = [];
  let next = '';
  let totals = null; // the server's counts by state, once read

  const status = h('select', { name: 'status' }, h('option', { value: '' }, 'any'),
    RUN_STATES.map((s) => h('option', { value: s, selected: s === f.status }, s)));
  const workflow = h('input', { name: 'workflow', value: f.workflow, placeholder: 'name', size: 16 });
  const after = timeInput('created_after', f.created_after);
  const before = timeInput('created_before', f.created_before);
  const okind = h('select', { name: 'origin_kind' }, h('option', { value: '' }, 'any'),
    ORIGIN_KINDS.map((k) => h('option', { value: k, selected: k === f.origin_kind }, k)));
  const oid = h('input', { name: 'origin_id', value: f.origin_id, placeholder: 'schedule or trigger', size: 14 });
  const form = h('form', { class: 'filters', id: 'run-filters' }, field('Status', status), field('Workflow', workflow),
    field('Origin', okind), field('Origin id', oid),
    field('Created after', after.input), field('Created before', before.input), h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = '#/runs' + qs({ status: status.value, workflow: workflow.value.trim(),
      created_after: after.timeOf(), created_before: before.timeOf(),
      origin_kind: okind.value, origin_id: okind.value ? oid.value.trim() : '' });
  });

  const counts = h('div', { class: 'counts', id: 'run-counts' });
  const body = h('tbody', { id: 'runs-body' });
  const prev = h('button', { type: 'button', id: 'prev-page', onclick: () => { tokens.pop(); load(); } }, '← Newer');
  const more = h('button', { type: 'button', id: 'next-page', onclick: () => { tokens.push(next); load(); } }, 'Older →');
  const live = h('span', { class: 'live muted', id: 'live' }, '');
  main.append(h('h1', {}, 'Runs'), form, counts,
    h('table', { class: 'list' }, h('thead', {}, h('tr', {},
      ['Run', 'Workflow', 'Origin', 'State', 'Created', 'Started', 'Ended', 'Duration'].map((c) => h('th', {}, c)))), body),
    h('div', { class: 'pager' }, prev, more, live));

  function paint() {
    fill(body, ...runs.map(row));
    if (!runs.length) body.append(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No run matches.')));
    let c = totals && totals.counts;
    if (!c) {
      c = {};
      for (const r of runs) c[r.state] = (c[r.state] || 0) + 1;
    }
    fill(counts, h('span', { class: 'muted' }, totals ? `${totals.total} runs:` : `${runs.length} runs on this page:`),
      ...RUN_STATES.map((s) => h('span', { class: 'count', 'data-count': s }, badge(s), ` ${c[s] || 0}`)));
    prev.disabled = tokens.length < 2;
    more.disabled = !next;
  }

  // recount reads the totals by state of every run the filters (but the
  // status) select; at most one read at a time, and one more if something
  // changed meanwhile.
  let counting = false;
  let recountAgain = false;
  async function recount() {
    if (counting) { recountAgain = true; return; }
    counting = true;
    try {
      const { status, ...rest } = f;
      totals = await get(tpath('/run-counts') + qs(rest));
      paint();
    } catch { /* the page's own counts stay */ }
    counting = false;
    if (recountAgain) { recountAgain = false; recount(); }
  }

  async function load() {
    recount();
    const page = await get(tpath('/workflows') + qs({ ...f, limit: PAGE, page_token: tokens[tokens.length - 1] }));
    runs = page.runs;
    next = page.next_page_token || '';
    paint();
    if (!performance.getEntriesByName('runs-painted').length) afterPaint().then(() => performance.mark('runs-painted'));
  }

  // update takes a changed or new run from the stream or a poll.
  function update(run) {
    recount();
    const i = runs.findIndex((r) => r.id === run.id);
    if (i >= 0) {
      if (matches(run, f)) runs[i] = run;
      else runs.splice(i, 1); // it left the filter (a running run that ended)
      paint();
    } else if (tokens.length === 1 && matches(run, f)) {
      // In its place, newest first; past the end of a full page it is on a later page.
      let at = runs.findIndex((r) => r.created_at < run.created_at || (r.created_at === run.created_at && r.id < run.id));
      if (at < 0) at = runs.length;
      if (at >= PAGE) return;
      runs.splice(at, 0, run);
      if (runs.length > PAGE) {
        runs.pop();
        if (!next) { load().catch(() => {}); return; } // a page now follows: read its token
      }
      paint();
    }
  }

  await load();
  const s = openStream(tpath('/stream'), {
    ...liveStatus(live),
    onEvent: (type, data) => {
      if (type === 'run' && data && data.id) update(data);
      else if (type === 'resync') load().catch(() => {}); // runs changed that the stream did not send
    },
  });
  return () => s.close();
}
