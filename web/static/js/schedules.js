// Schedules: the tenant's schedules with their next fire time and counts,
// and pause, unpause and trigger-now, each confirmed; a refusal (a 409
// when the schedule changed meanwhile) is shown as the server words it.
import { get, tpath } from './api.js';
import { h, fill, fmtTime, qs } from './dom.js';
import { confirmAndPost } from './ui.js';

const enc = encodeURIComponent;
const MAX_PAGES = 10; // 1000 schedules at 100 a page
const MAX_NEXT = 100; // the schedules whose next fire time is read, one request each

// listAll reads the schedules page by page, up to MAX_PAGES.
async function listAll() {
  const out = [];
  let token = '';
  for (let i = 0; i < MAX_PAGES; i++) {
    const page = await get(tpath('/schedules') + qs({ limit: 100, page_token: token }));
    out.push(...page.schedules);
    token = page.next_page_token || '';
    if (!token) break;
  }
  return { schedules: out, more: !!token };
}

// nextFire is an active schedule's next fire time (GET .../{id}?next=1).
async function nextFire(sc) {
  if (sc.state !== 'active') return null;
  try {
    const full = await get(tpath(`/schedules/${enc(sc.id)}`) + qs({ next: 1 }));
    return (full.next && full.next[0]) || null;
  } catch { return null; }
}

export async function schedulesPage(main) {
  const body = h('tbody', { id: 'schedules-body' });
  const note = h('p', { class: 'muted', id: 'schedules-note' });
  main.append(h('h1', {}, 'Schedules'),
    h('table', { class: 'list', id: 'schedules' }, h('thead', {}, h('tr', {},
      ['Schedule', 'Cron', 'Time zone', 'Workflow', 'State', 'Next fire', 'Fired', 'Missed', 'Skipped', 'Failed', 'Last run', '']
        .map((c) => h('th', {}, c)))), body), note);

  // act is a control action on sc; the list is read again after it,
  // whether done or refused (a 409 means the schedule changed meanwhile).
  function act(sc, verb, text) {
    return () => confirmAndPost(text, { verb, path: tpath(`/schedules/${enc(sc.id)}/${verb}`), body: {},
      update: load,
      done: (out) => (verb === 'trigger' ? `trigger: started run ${out && out.id}` : `${verb}: done, the schedule is ${out && out.state}`) });
  }

  function row(sc, next) {
    const btn = (verb, label, text) => h('button', { type: 'button', 'data-action': verb, onclick: act(sc, verb, text) }, label);
    const runs = '#/runs' + qs({ origin_kind: 'schedule', origin_id: sc.id });
    return h('tr', { 'data-schedule': sc.id, 'data-state': sc.state },
      h('td', {}, h('a', { href: runs, class: 'mono', title: 'its runs' }, sc.id)),
      h('td', { class: 'mono' }, sc.cron), h('td', {}, sc.time_zone || 'UTC'),
      h('td', {}, h('a', { href: `#/definitions/${enc(sc.workflow.split('@')[0])}` }, sc.workflow)),
      h('td', { class: 'schedule-state' }, h('span', { class: `badge sched-${sc.state}` }, sc.state)),
      h('td', { class: 'next-fire' }, next ? fmtTime(next.at) : '—'),
      h('td', { class: 'num' }, sc.fired || 0), h('td', { class: 'num missed' }, sc.missed || 0),
      h('td', { class: 'num' }, sc.skipped || 0), h('td', { class: 'num' }, sc.failed || 0),
      h('td', {}, sc.last_run_id ? h('a', { href: `#/runs/${enc(sc.last_run_id)}`, class: 'mono' }, sc.last_run_id) : '—'),
      h('td', { class: 'controls' },
        sc.state === 'paused'
          ? btn('unpause', 'Unpause', `Unpause schedule ${sc.id}? Slots of the pause do not fire.`)
          : btn('pause', 'Pause', `Pause schedule ${sc.id}?`),
        ' ', btn('trigger', 'Trigger now', `Start a run of schedule ${sc.id} now?`)));
  }

  async function load() {
    const { schedules, more } = await listAll();
    const nexts = await Promise.all(schedules.map((sc, i) => (i < MAX_NEXT ? nextFire(sc) : null)));
    fill(body, ...schedules.map((sc, i) => row(sc, nexts[i])));
    if (!schedules.length) body.append(h('tr', {}, h('td', { colspan: 12, class: 'muted' }, 'No schedule yet (POST .../schedules).')));
    note.textContent = (more ? `The first ${schedules.length} schedules are shown. ` : '') +
      (schedules.length > MAX_NEXT ? `Next fire times are read for the first ${MAX_NEXT}.` : '');
  }
  await load();
}
