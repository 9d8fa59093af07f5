// Keys: the tenant's API keys for its owners and admins: name, role,
// status and times. The list never holds a secret (the server shows a key
// once, in the answer that made it); a caller without the right sees the
// server's refusal.
import { get, session, tpath } from './api.js';
import { h, fmtTime } from './dom.js';

export async function keysPage(main) {
  const page = await get(tpath('/keys'));
  main.append(h('h1', {}, `API keys of ${session.tenant}`),
    h('p', { class: 'muted' }, 'Create and revoke keys with orchestrator keys or POST .../keys; a key\'s secret is shown once, when it is made.'),
    h('table', { class: 'list', id: 'keys' }, h('thead', {}, h('tr', {},
      ['Id', 'Name', 'Role', 'Task types', 'Status', 'Created', 'Expires', 'Revoked', 'Last used'].map((c) => h('th', {}, c)))),
    h('tbody', {}, page.keys.length ? page.keys.map((k) => h('tr', { 'data-key': k.id, 'data-status': k.status },
      h('td', { class: 'mono' }, k.id), h('td', {}, k.name), h('td', {}, k.role),
      h('td', {}, (k.task_types || []).join(', ') || (k.role === 'worker' ? 'any' : '—')),
      h('td', {}, h('span', { class: `badge key-${k.status}` }, k.status)),
      h('td', {}, fmtTime(k.created_at)), h('td', {}, fmtTime(k.expires_at)), h('td', {}, fmtTime(k.revoked_at)),
      h('td', {}, fmtTime(k.last_used_at))))
      : h('tr', {}, h('td', { colspan: 9, class: 'muted' }, 'No key.')))));
}
