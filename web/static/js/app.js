// The UI's entry point: hash routing, the login form and the tenant
// picker (the flash banner and the confirmation dialog are in ui.js).
import { bus, get, session } from './api.js';
import { h, clear, field, problemText } from './dom.js';
import { flash } from './ui.js';

const main = document.getElementById('main');
let cleanup = null;
let loginShown = false;

// route parses the hash: #/runs/ID?status=running -> ['runs','ID'], params.
function route() {
  const hash = location.hash.replace(/^#\/?/, '') || 'runs';
  const [path, query = ''] = hash.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

// pages load their modules when first shown (import() caches them), so
// that the runs list, the page most visits start on, waits for no other
// page's code; index.html preloads the runs list's modules.
const pages = {
  runs: async (el, [id], params) => (id
    ? (await import('./run.js')).runPage(el, id, params)
    : (await import('./runs.js')).runsPage(el, params)),
  definitions: async (el, [name, version], params) => {
    const m = await import('./definitions.js');
    return name ? m.definitionPage(el, name, version, params) : m.definitionsPage(el, params);
  },
  editor: async (el, _, params) => (await import('./editor.js')).editorPage(el, params),
  audit: async (el, _, params) => (await import('./audit.js')).auditPage(el, params),
  schedules: async (el, _, params) => (await import('./schedules.js')).schedulesPage(el, params),
  triggers: async (el, _, params) => (await import('./triggers.js')).triggersPage(el, params),
  keys: async (el, _, params) => (await import('./keys.js')).keysPage(el, params),
  login: (el) => loginPage(el),
};

// render shows the page of the hash in a view of its own: a render that a
// newer one overtook draws into a view no longer on screen, and its page's
// cleanup (closing its stream) runs at once.
let generation = 0;
async function render() {
  const gen = ++generation;
  if (cleanup) { try { cleanup(); } catch { /* the old page is gone */ } cleanup = null; }
  flash('');
  const { parts, params } = route();
  const page = pages[parts[0]] || pages.runs;
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === parts[0]);
  loginShown = parts[0] === 'login';
  const view = h('div', { class: 'view' });
  clear(main).append(view);
  try {
    const done = (await page(view, parts.slice(1), params)) || null;
    if (gen === generation) cleanup = done;
    else if (done) done();
  } catch (err) {
    if (err.status === 401 || gen !== generation) return; // the login form is on its way, or another page
    view.append(h('p', { class: 'error', role: 'alert' }, problemText(err)));
  }
}

function loginPage(main) {
  const input = h('input', { type: 'password', name: 'key', autocomplete: 'off', placeholder: 'orch_…', required: true, size: 60 });
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'login', id: 'login-form' },
    h('h1', {}, 'Log in'),
    h('p', {}, 'This server needs an API key. It is kept in this tab\'s session storage only and sent as Authorization: Bearer.'),
    field('API key', input),
    h('button', { type: 'submit', class: 'primary' }, 'Log in'), err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    session.key = input.value.trim();
    try {
      await get('/openapi.json');
      renderSession();
      pickTenant();
      const next = sessionStorage.getItem('orchestrator.next') || '#/runs';
      location.hash = next.startsWith('#/login') ? '#/runs' : next;
    } catch (e2) {
      session.key = '';
      err.textContent = problemText(e2);
    }
  });
  main.append(form);
  input.focus();
}

function renderSession() {
  const el = clear(document.getElementById('session'));
  if (session.key) {
    el.append(h('button', { type: 'button', id: 'logout', onclick: () => { session.key = ''; renderSession(); location.hash = '#/login'; } }, 'Log out'));
  }
}

// pickTenant offers the tenants an admin may list, or a free text field.
async function pickTenant() {
  const el = clear(document.getElementById('tenant-picker'));
  const change = (v) => { session.tenant = v; render(); };
  let tenants = null;
  try { tenants = (await get('/api/v1/tenants')).tenants.map((t) => t.id); } catch { tenants = null; }
  if (tenants && tenants.length) {
    if (!tenants.includes(session.tenant)) tenants.unshift(session.tenant);
    const sel = h('select', { id: 'tenant', onchange: (e) => change(e.target.value) },
      tenants.map((t) => h('option', { value: t, selected: t === session.tenant }, t)));
    el.append(sel);
  } else {
    const inp = h('input', { id: 'tenant', value: session.tenant, size: 12, onchange: (e) => change(e.target.value.trim()) });
    el.append(inp);
  }
}

bus.addEventListener('unauthenticated', () => {
  if (loginShown || location.hash.startsWith('#/login')) return;
  loginShown = true;
  sessionStorage.setItem('orchestrator.next', location.hash || '#/runs');
  location.hash = '#/login';
});

window.addEventListener('hashchange', render);
renderSession();
pickTenant();
render();
