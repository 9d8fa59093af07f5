// The panel of one task of a run: its state, attempts (with errors,
// worker and lease), resolved input, output, why it waits, and retry from
// this task.
import { h, badge, fmtTime, fmtDur, jsonBlock } from './dom.js';

function attemptRow(a) {
  const ran = a.startedAt ? fmtDur(new Date(a.endedAt || Date.now()) - new Date(a.startedAt)) : '—';
  const queued = a.startedAt && a.queuedAt ? fmtDur(new Date(a.startedAt) - new Date(a.queuedAt)) : '—';
  return h('tr', { 'data-attempt': a.attempt },
    h('td', { class: 'num' }, a.attempt),
    h('td', {}, a.outcome),
    h('td', {}, fmtTime(a.startedAt)),
    h('td', {}, fmtTime(a.endedAt)),
    h('td', {}, queued),
    h('td', {}, ran),
    h('td', { class: 'mono' }, a.workerId || a.actor || ''),
    h('td', {}, a.error ? `${a.error.code}: ${a.error.message}` : (a.reason || '')),
    h('td', {}, a.backoffUntil ? `until ${fmtTime(a.backoffUntil)}` : ''));
}

export function waitingText(w) {
  const parts = [w.reason];
  if (w.detail) parts.push(w.detail);
  if (w.until) parts.push(`until ${fmtTime(w.until)}`);
  if (w.since) parts.push(`since ${fmtTime(w.since)}`);
  return parts.join(' · ');
}

export function taskPanel({ task, attempts = [], waiting, onRetry }) {
  if (!task) return h('p', { class: 'muted' }, 'Click a task of the DAG to see its attempts, input and output.');
  return h('div', { class: 'task-panel', 'data-task': task.id },
    h('h3', {}, `Task ${task.id} `, badge(task.state), h('span', { class: 'muted' }, ` ${task.type}`)),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Attempts'), h('dd', {}, String(task.attempts || 0)),
      h('dt', {}, 'Ready'), h('dd', {}, fmtTime(task.ready_at)),
      h('dt', {}, 'Not before'), h('dd', {}, fmtTime(task.not_before)),
      h('dt', {}, 'Started'), h('dd', {}, fmtTime(task.started_at)),
      h('dt', {}, 'Ended'), h('dd', {}, fmtTime(task.ended_at)),
      task.wake_at ? [h('dt', {}, 'Wakes'), h('dd', {}, fmtTime(task.wake_at))] : null,
      h('dt', {}, 'Worker'), h('dd', { class: 'mono' }, task.worker_id || '—'),
      h('dt', {}, 'Lease until'), h('dd', {}, fmtTime(task.lease_expires_at)),
      waiting ? [h('dt', {}, 'Waiting'), h('dd', { class: 'waiting' }, waitingText(waiting))] : null),
    task.error ? h('p', { class: 'error' }, `${task.error.code}: ${task.error.message}`) : null,
    h('table', { class: 'list attempts' }, h('thead', {}, h('tr', {},
      ['#', 'Outcome', 'Started', 'Ended', 'Queued', 'Ran', 'Worker', 'Error', 'Backoff'].map((c) => h('th', {}, c)))),
    h('tbody', {}, attempts.length ? attempts.map(attemptRow) : h('tr', {}, h('td', { colspan: 9, class: 'muted' }, 'No attempt yet.')))),
    h('div', { class: 'cols' },
      h('div', {}, h('h4', {}, 'Input (resolved)'), jsonBlock(task.input, task.state === 'pending' ? 'not resolved yet' : 'none')),
      h('div', {}, h('h4', {}, 'Output'), jsonBlock(task.output))),
    h('p', {}, h('button', { type: 'button', id: 'retry-task', 'data-action': 'retry-task', onclick: () => onRetry(task.id) },
      `Retry from ${task.id} (and what depends on it)`)));
}
