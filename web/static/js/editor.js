// The definition editor: a textarea validated as you type (debounced)
// through POST /api/v1/dag/validate, each problem shown at its task and
// field, a live DAG preview, and registration.
import { get, post, tpath } from './api.js';
import { h, clear, fill, problemText } from './dom.js';
import { drawDag } from './dag.js';

const DEBOUNCE_MS = 300;
const SAMPLE = {
  name: 'hello',
  tasks: [
    { id: 'fetch', type: 'noop', input: { url: '${workflow.input.url}' } },
    { id: 'parse', type: 'noop', depends_on: ['fetch'] },
    { id: 'store', type: 'noop', depends_on: ['parse'] },
  ],
};

// selectTask puts the cursor on the task's "id" in the text.
function selectTask(area, task) {
  const m = new RegExp(`"id"\\s*:\\s*"${task.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"`).exec(area.value);
  if (!m) return;
  area.focus();
  area.setSelectionRange(m.index, m.index + m[0].length);
}

export async function editorPage(main, params) {
  let text = JSON.stringify(SAMPLE, null, 2);
  if (params.get('name')) {
    const v = await get(tpath(`/definitions/${encodeURIComponent(params.get('name'))}/versions/${encodeURIComponent(params.get('version') || 'latest')}`));
    text = JSON.stringify(v.definition, null, 2);
  }
  const area = h('textarea', { id: 'definition', spellcheck: 'false', rows: 28, cols: 70, 'aria-label': 'Definition JSON' });
  area.value = text;
  const status = h('p', { id: 'validity', 'aria-live': 'polite' });
  const problems = h('ul', { id: 'problems', class: 'problems' });
  const preview = h('div', { class: 'scroll dag-box', id: 'preview' });
  const result = h('p', { id: 'register-result', role: 'status' });
  const register = h('button', { type: 'button', class: 'primary', id: 'register' }, 'Register');
  main.append(h('h1', {}, 'Editor'),
    h('div', { class: 'cols' },
      h('div', {}, area, h('p', {}, register, ' ', result)),
      h('div', { class: 'grow' }, status, problems, h('h2', {}, 'Preview'), preview)));

  let seq = 0;
  let timer = null;
  async function validate() {
    const mine = ++seq;
    let out;
    try {
      out = await post('/api/v1/dag/validate', area.value);
    } catch (err) {
      if (mine !== seq) return;
      status.className = 'error';
      status.textContent = `Not JSON: ${problemText(err)}`;
      clear(problems);
      return;
    }
    if (mine !== seq) return; // a newer text is being checked
    status.className = out.valid ? 'ok' : 'error';
    status.textContent = out.valid ? `✓ valid: ${out.levels.length} levels` : `✗ ${out.errors.length} problem${out.errors.length === 1 ? '' : 's'}`;
    fill(problems, ...out.errors.map((e) => h('li', { 'data-task': e.task || '', 'data-field': e.field },
      e.task ? h('a', { href: '#', onclick: (ev) => { ev.preventDefault(); selectTask(area, e.task); } }, `task ${e.task}`) : h('span', {}, 'definition'),
      ' · ', h('code', {}, e.field), `: ${e.message}`)));
    let def = null;
    try { def = JSON.parse(area.value); } catch { def = null; }
    const tasks = def && Array.isArray(def.tasks) ? def.tasks.filter((t) => t && typeof t.id === 'string') : [];
    const bad = {};
    for (const e of out.errors) if (e.task) bad[e.task] = (bad[e.task] || 0) + 1;
    const states = Object.fromEntries(tasks.map((t) => [t.id, bad[t.id] ? 'invalid' : 'preview']));
    const notes = Object.fromEntries(tasks.map((t) => [t.id, bad[t.id] ? `${bad[t.id]} problem${bad[t.id] > 1 ? 's' : ''}` : t.type || '']));
    fill(preview, drawDag({ tasks, levels: out.valid ? out.levels : null, states, notes, box: preview }).el);
  }
  area.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(validate, DEBOUNCE_MS); });
  register.addEventListener('click', async () => {
    try {
      const r = await post(tpath('/definitions'), area.value);
      result.className = 'ok';
      result.textContent = `${r.created ? 'Registered' : 'Unchanged'}: ${r.name} v${r.version}`;
    } catch (err) {
      result.className = 'error';
      result.textContent = problemText(err);
    }
  });
  await validate();
  return () => clearTimeout(timer);
}
