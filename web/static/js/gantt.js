// drawGantt draws the timeline of a run: one row per attempt, its queue
// wait (ready to started) and its run time (started to ended, or now),
// the backoff after a failed attempt, and the critical path's rows marked.
import { svg, h, fmtDur } from './dom.js';

const LABEL = 190, ROW = 18, CHART = 760, AXIS = 22;
const WINDOWED = 300; // rows past which only those near the visible part are in the DOM
const MARGIN = 400; // px drawn around it

export function drawGantt({ order, attempts, start, end, critical = [] }) {
  const crit = new Set(critical);
  const rows = [];
  for (const id of order) for (const a of attempts.get(id) || []) rows.push({ id, a });
  if (!rows.length) return h('p', { class: 'muted', id: 'gantt-empty' }, 'No attempt yet.');
  const t0 = new Date(start).getTime();
  let t1 = end ? new Date(end).getTime() : Date.now();
  for (const { a } of rows) {
    for (const t of [a.endedAt, a.backoffUntil]) if (t) t1 = Math.max(t1, new Date(t).getTime());
  }
  const span = Math.max(1, t1 - t0);
  const x = (t) => LABEL + ((new Date(t).getTime() - t0) / span) * CHART;
  const now = end || new Date(t1).toISOString();
  const height = AXIS + rows.length * ROW + 4;
  const root = svg('svg', { class: 'gantt', width: LABEL + CHART + 10, height, role: 'img', 'aria-label': `Timeline of ${rows.length} attempts` });

  const axis = svg('g', { class: 'axis' });
  for (let i = 0; i <= 5; i++) {
    const px = LABEL + (CHART * i) / 5;
    axis.append(svg('line', { x1: px, x2: px, y1: AXIS - 4, y2: height, class: 'tick' }),
      svg('text', { x: px, y: 12, 'text-anchor': i === 0 ? 'start' : i === 5 ? 'end' : 'middle' }, `+${fmtDur((span * i) / 5)}`));
  }
  root.append(axis);

  const drawRow = ({ id, a }, i) => {
    const y = AXIS + i * ROW;
    const c = crit.has(id);
    const g = svg('g', { class: `row${c ? ' critical' : ''}`, 'data-task': id, 'data-attempt': a.attempt });
    const tips = [];
    g.append(svg('text', { x: 4, y: y + 13, class: 'row-label' }, `${c ? '★ ' : ''}${id.length > 20 ? id.slice(0, 19) + '…' : id} #${a.attempt}`));
    const bar = (cls, from, to, title) => {
      const x1 = x(from), x2 = Math.max(x(to), x1 + 1);
      g.append(svg('rect', { class: cls, x: x1, y: y + 3, width: x2 - x1, height: ROW - 6 }));
      tips.push(title);
    };
    if (a.queuedAt && a.startedAt && a.startedAt > a.queuedAt) {
      bar('bar queue', a.queuedAt, a.startedAt, `${id} #${a.attempt} queued ${fmtDur(new Date(a.startedAt) - new Date(a.queuedAt))}`);
    }
    if (a.startedAt) {
      const stop = a.endedAt || now;
      bar(`bar run outcome-${a.outcome}`, a.startedAt, stop, `${id} #${a.attempt} ${a.outcome} after ${fmtDur(new Date(stop) - new Date(a.startedAt))}`);
    }
    if (a.backoffFrom && a.backoffUntil && a.backoffUntil > a.backoffFrom) {
      bar('bar backoff', a.backoffFrom, a.backoffUntil, `${id} backoff ${fmtDur(new Date(a.backoffUntil) - new Date(a.backoffFrom))}${a.reason ? ' (' + a.reason + ')' : ''}`);
    }
    g.prepend(svg('title', {}, tips.join('\n')));
    return g;
  };
  const box = h('div', { class: 'scroll gantt-box' }, root);
  const shown = new Map(); // row index -> g
  const draw = () => {
    const top = box.scrollTop - MARGIN, bottom = box.scrollTop + (box.clientHeight || 480) + MARGIN;
    const add = [];
    rows.forEach((r, i) => {
      const y = AXIS + i * ROW;
      const vis = rows.length <= WINDOWED || (y + ROW >= top && y <= bottom);
      if (vis && !shown.has(i)) { const g = drawRow(r, i); shown.set(i, g); add.push(g); }
      else if (!vis && shown.has(i)) { shown.get(i).remove(); shown.delete(i); }
    });
    root.append(...add);
  };
  draw();
  if (rows.length > WINDOWED) {
    let queued = false;
    box.onscroll = () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => { queued = false; draw(); });
    };
  }
  root.setAttribute('data-rows', rows.length);
  return h('div', {},
    h('p', { class: 'legend' }, h('span', { class: 'key queue' }), ' queue wait ', h('span', { class: 'key run' }), ' running ',
      h('span', { class: 'key done' }), ' completed ', h('span', { class: 'key fail' }), ' failed / retried ',
      h('span', { class: 'key backoff' }), ' backoff ', '★ critical path'),
    box);
}
