// The page of one run: header and controls, why it waits, the DAG, the
// selected task, the timeline and the event history, kept live by the
// run's event stream.
import { get, post, tpath } from './api.js';
import { h, fill, afterPaint, badge, originBadge, fmtTime, fmtDur, since, jsonBlock } from './dom.js';
import { openStream, liveStatus } from './sse.js';
import { confirmAndPost } from './ui.js';
import { drawDag } from './dag.js';
import { drawGantt } from './gantt.js';
import { historyView, verifyBadge } from './events.js';
import { attemptsOf, TASK_STATE_AFTER, RUN_STATE_AFTER, CONTROL_EVENTS } from './attempts.js';
import { taskPanel, waitingText } from './taskpanel.js';

const MAX_EVENT_PAGES = 100;
const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'timed_out']);

// loadEvents reads the run's history up to lastSeq, the seq of the run as
// read: seqs run 1..lastSeq, so its pages are read at once, and a page the
// byte bound cut short is read on from where it stopped. Events past
// lastSeq are left to the stream.
async function loadEvents(base, lastSeq) {
  const PAGE = 1000;
  const n = Math.min(MAX_EVENT_PAGES, Math.max(1, Math.ceil(lastSeq / PAGE)));
  const pages = await Promise.all(Array.from({ length: n }, (_, i) =>
    get(`${base}/events?${i === 0 ? 'verify=true&' : ''}after=${i * PAGE}&limit=${PAGE}`)));
  const events = [];
  for (let i = 0; i < n; i++) {
    let page = pages[i];
    events.push(...page.events);
    const end = Math.min((i + 1) * PAGE, lastSeq);
    while (page.next_after && page.next_after < end) {
      page = await get(`${base}/events?after=${page.next_after}&limit=${end - page.next_after}`);
      events.push(...page.events);
    }
  }
  while (events.length && events[events.length - 1].seq > lastSeq) events.pop();
  return { events, verified: pages[0].verified, verify_error: pages[0].verify_error };
}

export async function runPage(main, id) {
  const base = tpath(`/workflows/${encodeURIComponent(id)}`);
  const details = await get(base);
  const defPath = tpath(`/definitions/${encodeURIComponent(details.workflow)}/versions/${details.version}`);
  const defAndLevels = get(defPath).catch(() => null).then(async (defv) => {
    const def = defv && defv.definition;
    return [def, def ? await post('/api/v1/dag/validate', def).catch(() => null) : null];
  });
  const [history, metrics, explain, [def, validation]] = await Promise.all([loadEvents(base, details.last_seq),
    get(`${base}/metrics`).catch(() => null),
    TERMINAL.has(details.state) ? null : get(`${base}/explain`).catch(() => null), defAndLevels]);
  const tasks = def && def.tasks ? def.tasks : details.tasks.map((t) => ({ id: t.id }));

  // The page starts from the run as read: its details at last_seq and the
  // history up to there (up to MAX_EVENT_PAGES pages of it). The stream,
  // resumed from the last event read, brings every later event through
  // apply, which reads the run again: no event is missed or applied twice,
  // however many commit while the page loads, and no timer is needed.
  const s = { run: details, events: history.events, metrics, selected: null, explain };
  s.lastSeq = s.events.length ? s.events[s.events.length - 1].seq : 0;
  const states = Object.fromEntries(details.tasks.map((t) => [t.id, t.state]));

  const header = h('section', { class: 'run-header', id: 'run-header' });
  const explainBox = h('section', { id: 'explain' });
  const panel = h('section', { id: 'task-panel' });
  const timeline = h('div', { id: 'timeline' });
  const hist = historyView(s.events);
  const live = h('span', { class: 'live muted', id: 'live' });
  const dagBox = h('div', { class: 'scroll dag-box', id: 'dag' });
  const dag = drawDag({ tasks, levels: validation && validation.levels, states,
    critical: metrics ? metrics.critical_path : [], onSelect: select, box: dagBox });
  dagBox.append(dag.el);

  main.append(header, explainBox,
    h('section', {}, h('h2', {}, `DAG (${tasks.length} tasks)`), dagBox),
    panel,
    h('section', { class: 'lazy' }, h('h2', {}, 'Timeline'), timeline),
    h('section', { class: 'lazy' }, h('h2', {}, 'History ', verifyBadge(history), ' ', live), hist.el));

  function action(verb, body, text) {
    return () => confirmAndPost(text, { verb, path: `${base}/${verb}`, body,
      update: (run) => { if (run && run.state) { s.run.state = run.state; paintHeader(); } },
      done: (run) => `${verb}: done, the run is ${run && run.state}` });
  }

  function paintHeader() {
    const r = s.run;
    const p = r.progress || { total: 0, done: 0, percent: 0, states: {} };
    const controls = s.events.filter((e) => CONTROL_EVENTS.includes(e.type));
    const btn = (verb, label) => h('button', { type: 'button', 'data-action': verb,
      onclick: action(verb, {}, `${label} run ${r.id}?`) }, label);
    fill(header, 
      h('h1', {}, 'Run ', h('span', { class: 'mono' }, r.id), ' ', h('span', { id: 'run-state', 'data-state': r.state }, badge(r.state))),
      h('p', {}, h('a', { href: `#/definitions/${encodeURIComponent(r.workflow)}/${r.version}` }, `${r.workflow} v${r.version}`),
        r.alias ? h('span', { id: 'run-alias' }, ` via alias ${r.alias}`) : null,
        r.origin ? h('span', { id: 'run-origin' }, ' · started by ', originBadge(r.origin)) : null,
        ` · created ${fmtTime(r.created_at)} · started ${fmtTime(r.started_at)} · ended ${fmtTime(r.ended_at)}`,
        r.deadline ? ` · deadline ${fmtTime(r.deadline)}` : '',
        r.started_at ? ` · ${fmtDur(since(r.started_at, r.ended_at))}` : ''),
      h('div', { class: 'progress', title: `${p.done} of ${p.total} tasks done` },
        h('progress', { max: p.total || 1, value: p.done }), ` ${p.done}/${p.total} done (${p.percent}%) `,
        Object.entries(p.states || {}).filter(([, n]) => n).map(([st, n]) => h('span', { class: 'count' }, badge(st), ` ${n}`))),
      h('div', { class: 'controls' }, btn('pause', 'Pause'), btn('resume', 'Resume'), btn('cancel', 'Cancel'), btn('retry', 'Retry')),
      h('ul', { class: 'actions', id: 'control-actions' }, controls.map((e) =>
        h('li', {}, `${e.type.replace('run.', '')} by `, h('span', { class: 'mono actor' }, e.actor),
          e.on_behalf ? ` on behalf of ${e.on_behalf}` : '', ` at ${fmtTime(e.at)}`))),
      r.error ? h('p', { class: 'error' }, `${r.error.code}: ${r.error.message}`) : null,
      h('div', { class: 'cols' },
        h('details', { open: true }, h('summary', {}, 'Input'), jsonBlock(r.input)),
        h('details', { open: true }, h('summary', {}, 'Output'), jsonBlock(r.output))));
  }

  function paintExplain() {
    fill(explainBox, h('h2', {}, 'Why is this waiting?'));
    const x = s.explain;
    if (!x) return;
    const r = x.run || {};
    explainBox.append(h('div', {},
      r.reason ? h('p', { id: 'explain-run' }, badge(r.state), ` ${r.reason}${r.detail ? ': ' + r.detail : ''}`) : null,
      x.stalled ? h('p', { class: 'error', id: 'stalled' }, '! The run is stalled: nothing it waits for will move it without help.') : null,
      !x.waiting || !x.waiting.length ? h('p', { class: 'muted' }, TERMINAL.has(r.state) ? 'The run is over.' : 'No task waits.') : null,
      h('ul', { class: 'waiting-list' }, (x.waiting || []).map((w) => h('li', { 'data-task': w.task, 'data-reason': w.reason },
        h('a', { href: '#', onclick: (e) => { e.preventDefault(); select(w.task); } }, w.task), ' ', badge(w.state), ` ${waitingText(w)}`)))));
  }

  function paintPanel() {
    const task = s.selected && s.run.tasks.find((t) => t.id === s.selected);
    const waiting = s.explain && s.explain.waiting ? s.explain.waiting.find((w) => w.task === s.selected) : null;
    // The events are folded only for a selected task: the panel shows none otherwise.
    const attempts = task ? attemptsOf(s.events).get(task.id) || [] : [];
    fill(panel, taskPanel({ task, attempts, waiting,
      onRetry: (tid) => action('retry', { task_id: tid }, `Retry task ${tid} and every task that depends on it?`)() }));
  }

  function paintTimeline() {
    const old = timeline.querySelector('.gantt-box');
    const top = old ? old.scrollTop : 0;
    fill(timeline, drawGantt({ order: tasks.map((t) => t.id), attempts: attemptsOf(s.events),
      start: s.run.created_at, end: s.run.ended_at, critical: s.metrics ? s.metrics.critical_path : [] }));
    const box = timeline.querySelector('.gantt-box');
    if (box && top) box.scrollTop = top; // the timeline drawn again keeps its place
  }

  function select(tid) { s.selected = tid; dag.select(tid); paintPanel(); }

  async function refresh() {
    try {
      const [d, m, x] = await Promise.all([get(base), get(`${base}/metrics`).catch(() => s.metrics),
        get(`${base}/explain`).catch(() => null)]);
      s.run = d; s.metrics = m; s.explain = x;
      if (m) dag.setCritical(m.critical_path || []);
      for (const t of d.tasks) dag.setState(t.id, t.state);
      paintHeader(); paintExplain(); paintPanel(); paintTimeline();
    } catch { /* the next event refreshes again */ }
  }
  // later reads the run, its metrics and why it waits again after events:
  // at most once per 250 ms, so that a burst of events (tasks finishing
  // together) costs one read, not one per event.
  let timer = null;
  const later = () => { if (!timer) timer = setTimeout(() => { timer = null; refresh(); }, 250); };

  // apply takes one event of the run, from the stream.
  function apply(ev) {
    if (!ev || ev.seq <= s.lastSeq) return;
    s.lastSeq = ev.seq;
    s.events.push(ev);
    hist.add(ev);
    if (ev.task_id && TASK_STATE_AFTER[ev.type]) dag.setState(ev.task_id, TASK_STATE_AFTER[ev.type]);
    if (RUN_STATE_AFTER[ev.type]) s.run.state = RUN_STATE_AFTER[ev.type];
    if (!ev.task_id) paintHeader();
    performance.mark('event', { detail: { seq: ev.seq, at: ev.at } });
    later();
  }

  paintHeader(); paintExplain(); paintPanel(); paintTimeline();
  performance.mark('run-rendered');
  afterPaint().then(() => performance.mark('run-painted'));

  // The run's stream, from the last event seen. At an end event (the run
  // is terminal) the stream stays open: a retry's events follow on it.
  const stream = openStream(`${base}/stream`, { lastEventId: String(s.lastSeq),
    ...liveStatus(live),
    onEvent: (type, data) => {
      if (type === 'end') { live.textContent = '● live (run ended)'; later(); } else apply(data);
    } });
  return () => { stream.close(); clearTimeout(timer); };
}
