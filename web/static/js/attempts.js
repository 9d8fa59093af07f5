// attemptsOf folds a run's events into every task's attempts: when each
// was queued (ready, past any backoff), started and ended, how it ended,
// its error and worker, and the backoff that followed a failure.
// The timeline and the task panel both read it.

const ENDS = {
  'task.completed': 'completed', 'task.attempt_failed': 'retried', 'task.failed': 'failed',
  'task.timed_out': 'timed_out', 'task.cancelled': 'cancelled',
};

export function attemptsOf(events) {
  const byTask = new Map();
  const queued = new Map(); // task -> when it may start: ready, or past its backoff
  const list = (t) => { if (!byTask.has(t)) byTask.set(t, []); return byTask.get(t); };
  for (const ev of events) {
    const t = ev.task_id;
    if (!t) continue;
    const d = ev.data || {};
    const atts = list(t);
    const open = atts.length && !atts[atts.length - 1].endedAt ? atts[atts.length - 1] : null;
    switch (ev.type) {
      case 'task.ready':
        queued.set(t, d.not_before && d.not_before > ev.at ? d.not_before : ev.at);
        break;
      case 'task.started':
        atts.push({ attempt: ev.attempt, queuedAt: queued.get(t) || ev.at, startedAt: ev.at, endedAt: null,
          outcome: 'running', error: null, workerId: d.worker_id || '', actor: ev.actor });
        queued.delete(t);
        break;
      case 'task.reset':
        queued.delete(t);
        break;
      default:
        if (ENDS[ev.type]) {
          const a = open;
          if (a) {
            a.endedAt = ev.at;
            a.outcome = ENDS[ev.type];
            a.error = d.error || null;
            if (d.reason) a.reason = d.reason;
          }
          if (ev.type === 'task.attempt_failed') {
            const until = d.not_before || ev.at;
            queued.set(t, until);
            if (a) { a.backoffUntil = until; a.backoffFrom = ev.at; }
            else atts.push({ attempt: ev.attempt || 0, queuedAt: ev.at, startedAt: null, endedAt: ev.at,
              outcome: 'not_started', reason: d.reason || '', error: d.error || null, backoffFrom: ev.at, backoffUntil: until });
          }
        }
    }
  }
  return byTask;
}

// TASK_STATE_AFTER is the task state an event leaves its task in, so an
// open page can follow a run from its events alone.
export const TASK_STATE_AFTER = {
  'task.ready': 'ready', 'task.started': 'running', 'task.completed': 'completed',
  'task.attempt_failed': 'ready', 'task.failed': 'failed', 'task.timed_out': 'timed_out',
  'task.skipped': 'skipped', 'task.cancelled': 'cancelled', 'task.reset': 'pending',
};

export const RUN_STATE_AFTER = {
  'run.started': 'running', 'run.paused': 'paused', 'run.resumed': 'running', 'run.completed': 'completed',
  'run.failed': 'failed', 'run.cancelled': 'cancelled', 'run.timed_out': 'timed_out', 'run.retried': 'running',
};

export const CONTROL_EVENTS = ['run.created', 'run.paused', 'run.resumed', 'run.cancelled', 'run.retried'];
