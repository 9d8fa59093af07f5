// Definitions: the list of the latest of each, a definition's versions, a
// DAG preview of one version and the difference between two.
import { get, post, tpath } from './api.js';
import { h, fill, fmtTime, qs } from './dom.js';
import { drawDag } from './dag.js';

const enc = encodeURIComponent;

export async function definitionsPage(main) {
  const page = await get(tpath('/definitions'));
  main.append(h('h1', {}, 'Definitions'),
    h('p', {}, h('a', { href: '#/editor' }, 'New definition in the editor')),
    h('table', { class: 'list', id: 'definitions' }, h('thead', {}, h('tr', {}, ['Name', 'Latest version', 'Registered', 'Hash'].map((c) => h('th', {}, c)))),
      h('tbody', {}, page.definitions.length ? page.definitions.map((d) => h('tr', { 'data-name': d.name },
        h('td', {}, h('a', { href: `#/definitions/${enc(d.name)}` }, d.name)),
        h('td', { class: 'num' }, d.version), h('td', {}, fmtTime(d.created_at)), h('td', { class: 'mono' }, d.hash.slice(0, 16))))
        : h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No definition yet.')))));
}

// versionsOf lists a definition's versions, newest first (pages of
// GET .../versions, up to 20).
async function versionsOf(name) {
  const out = [];
  let after = 0;
  for (let i = 0; i < 20; i++) {
    const page = await get(tpath(`/definitions/${enc(name)}/versions`) + qs({ after: after || '' }));
    out.push(...(page.versions || []));
    if (!page.next_after) break;
    after = page.next_after;
  }
  return out.sort((a, b) => b.version - a.version);
}

// diffOf is the difference from version a to b, from the server's
// GET .../diff (a DefinitionDiff).
async function diffOf(name, a, b) {
  const d = await get(tpath(`/definitions/${enc(name)}/diff`) + qs({ from: a, to: b }));
  const out = [];
  for (const c of d.workflow || []) out.push({ kind: 'changed', what: c.field, from: c.from, to: c.to });
  for (const id of d.tasks_added || []) out.push({ kind: 'added', what: `task ${id}` });
  for (const id of d.tasks_removed || []) out.push({ kind: 'removed', what: `task ${id}` });
  for (const t of d.tasks_changed || []) {
    for (const c of t.fields || []) out.push({ kind: 'changed', what: `task ${t.id} · ${c.field}`, from: c.from, to: c.to });
  }
  return out;
}

// aliasesOf lists the aliases of a definition name ([] when they cannot
// be read).
async function aliasesOf(name) {
  const page = await get(tpath(`/definitions/${enc(name)}/aliases`)).catch(() => null);
  return (page && page.aliases) || [];
}

// aliasView shows each alias: name -> versions with their weights, its
// sticky key, and its last automatic rollback.
function aliasView(name, aliases) {
  const target = (t) => h('a', { href: `#/definitions/${enc(name)}/${t.version}` }, `v${t.version}`);
  return h('ul', { id: 'aliases' }, aliases.length ? aliases.map((a) => h('li', { 'data-alias': a.alias },
    h('span', { class: 'mono' }, a.alias), ' → ',
    a.versions.map((t, i) => [i ? ' + ' : '', target(t), a.versions.length > 1 ? ` ${t.weight}%` : '']),
    a.sticky_key ? h('span', { class: 'muted' }, ` sticky on ${a.sticky_key}`) : null,
    a.rolled_back ? h('span', { class: 'error', title: `newer failed ${a.rolled_back.newer.failed}/${a.rolled_back.newer.runs}` },
      ` rolled back ${fmtTime(a.rolled_back.at)}`) : null,
    h('div', { class: 'muted' }, `revision ${a.revision} · ${a.updated_by || '—'} · ${fmtTime(a.updated_at)}`)))
    : h('li', { class: 'muted' }, 'No alias.'));
}

const show = (v) => (v === undefined ? '—' : JSON.stringify(v));

// previewDag draws a version's DAG, without states, in its scrolling box.
export function previewDag(def, levels) {
  const tasks = (def.tasks || []).filter((t) => t && typeof t.id === 'string');
  const states = Object.fromEntries(tasks.map((t) => [t.id, 'preview']));
  const notes = Object.fromEntries(tasks.map((t) => [t.id, t.type || '']));
  const box = h('div', { class: 'scroll dag-box', id: 'dag' });
  box.append(drawDag({ tasks, levels, states, notes, box }).el);
  return box;
}

export async function definitionPage(main, name, version, params) {
  const latest = await get(tpath(`/definitions/${enc(name)}/versions/latest`));
  const v = Number(version) || latest.version;
  const cur = v === latest.version ? latest : await get(tpath(`/definitions/${enc(name)}/versions/${v}`));
  const [versions, aliases] = await Promise.all([versionsOf(name), aliasesOf(name)]);
  const aliasesAt = (ver) => aliases.filter((a) => a.versions.some((t) => t.version === ver)).map((a) => a.alias);
  const validation = await post('/api/v1/dag/validate', cur.definition).catch(() => null);
  const compare = h('select', { id: 'compare', onchange: (e) => {
    location.hash = `#/definitions/${enc(name)}/${v}` + qs({ compare: e.target.value });
  } }, h('option', { value: '' }, '—'), versions.filter((x) => x.version !== v).map((x) =>
    h('option', { value: x.version, selected: String(x.version) === params.get('compare') }, `v${x.version}`)));
  const diffBox = h('div', { id: 'diff' });
  main.append(h('h1', {}, `Definition ${name}`),
    h('div', { class: 'cols' },
      h('nav', { class: 'versions' }, h('h2', {}, 'Versions'), h('ul', { id: 'versions' }, versions.map((x) =>
        h('li', { class: x.version === v ? 'current' : '' }, h('a', { href: `#/definitions/${enc(name)}/${x.version}` }, `v${x.version}`),
          x.created_at ? h('span', { class: 'muted' }, ` ${fmtTime(x.created_at)}`) : null,
          aliasesAt(x.version).map((a) => h('span', { class: 'badge alias', 'data-alias': a }, a))))),
        h('h2', {}, 'Aliases'), aliasView(name, aliases)),
      h('div', { class: 'grow' },
        h('h2', {}, `Version ${v}`, ' ', h('a', { href: '#/editor' + qs({ name, version: v }) }, 'open in the editor')),
        h('p', { class: 'muted' }, `registered ${fmtTime(cur.created_at)} · hash ${cur.hash}`),
        previewDag(cur.definition, validation && validation.levels),
        h('h2', {}, 'Compare with ', compare), diffBox,
        h('details', {}, h('summary', {}, 'Definition JSON'), h('pre', { class: 'json' }, JSON.stringify(cur.definition, null, 2))))));
  const other = Number(params.get('compare'));
  if (other) {
    const changes = await diffOf(name, other, v);
    fill(diffBox, changes.length ? h('table', { class: 'list diff' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Change'), h('th', {}, 'What'), h('th', {}, `v${other}`), h('th', {}, `v${v}`))),
      h('tbody', {}, changes.map((c) => h('tr', { class: `diff-${c.kind}` }, h('td', {}, c.kind), h('td', {}, c.what),
        h('td', { class: 'mono' }, show(c.from)), h('td', { class: 'mono' }, show(c.to))))))
      : h('p', { class: 'muted' }, 'The two versions are the same.'));
  }
}
