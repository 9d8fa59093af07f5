// Triggers: the tenant's webhooks and stream triggers (NATS, Kafka) with
// their state and, for a stream trigger, what its consumer reports
// (connected, lag, last error). Secrets are never shown: the server gives
// them in the answer of a create or rotation only.
import { get, tpath } from './api.js';
import { h, fmtTime, qs, problemText } from './dom.js';

const enc = encodeURIComponent;

function runsLink(t) {
  return h('a', { href: '#/runs' + qs({ origin_kind: t.kind, origin_id: t.name }), title: 'its runs' }, 'runs');
}

function wfLink(t) {
  return h('a', { href: `#/definitions/${enc(t.workflow.split('@')[0])}` }, t.workflow);
}

function stateBadge(t) {
  return h('span', { class: `badge trig-${t.state}` }, t.state);
}

// statusCells are a stream trigger's consumer figures.
function statusCells(st) {
  if (!st) return [h('td', { class: 'muted', colspan: 5 }, 'no consumer report')];
  return [
    h('td', { class: 'connected', 'data-connected': String(st.connected) }, st.connected ? '● connected' : '○ disconnected'),
    h('td', { class: 'num lag' }, st.lag),
    h('td', { class: 'num' }, `${st.messages} / ${st.runs_started}`),
    h('td', { class: 'num' }, st.errors),
    h('td', { class: 'last-error error' }, st.last_error ? `${st.last_error} (${fmtTime(st.last_error_at)})` : ''),
  ];
}

function source(t) {
  if (t.nats) return `${t.nats.stream} · ${t.nats.subject || '*'}`;
  if (t.kafka) return `${t.kafka.topic} @ ${(t.kafka.brokers || []).join(',')}`;
  return '';
}

export async function triggersPage(main) {
  const err = h('p', { class: 'error', role: 'alert' });
  const [hooks, streams] = await Promise.all([
    get(tpath('/webhooks')).catch((e) => { err.append(problemText(e), '\n'); return { triggers: [] }; }),
    get(tpath('/triggers')).catch((e) => { err.append(problemText(e), '\n'); return { triggers: [] }; }),
  ]);
  const empty = (n, text) => h('tr', {}, h('td', { colspan: n, class: 'muted' }, text));
  main.append(h('h1', {}, 'Triggers'), err,
    h('h2', {}, 'Webhooks'),
    h('table', { class: 'list', id: 'webhooks' }, h('thead', {}, h('tr', {},
      ['Name', 'Verify', 'Workflow', 'State', 'Delivery URL', 'Updated', ''].map((c) => h('th', {}, c)))),
    h('tbody', {}, hooks.triggers.length ? hooks.triggers.map((t) => h('tr', { 'data-trigger': t.name, 'data-state': t.state },
      h('td', { class: 'mono' }, t.name), h('td', {}, (t.webhook && t.webhook.verify) || '—'), h('td', {}, wfLink(t)),
      h('td', {}, stateBadge(t)), h('td', { class: 'mono' }, t.url || ''), h('td', {}, fmtTime(t.updated_at)), h('td', {}, runsLink(t))))
      : empty(7, 'No webhook.'))),
    h('h2', {}, 'Stream triggers'),
    h('table', { class: 'list', id: 'stream-triggers' }, h('thead', {}, h('tr', {},
      ['Name', 'Kind', 'Source', 'Workflow', 'State', 'Consumer', 'Lag', 'Messages / runs', 'Errors', 'Last error', '']
        .map((c) => h('th', {}, c)))),
    h('tbody', {}, streams.triggers.length ? streams.triggers.map((t) => h('tr', { 'data-trigger': t.name, 'data-state': t.state },
      h('td', { class: 'mono' }, t.name), h('td', {}, t.kind), h('td', { class: 'mono' }, source(t)), h('td', {}, wfLink(t)),
      h('td', {}, stateBadge(t)), statusCells(t.status), h('td', {}, runsLink(t))))
      : empty(11, 'No stream trigger.'))));
}
