// drawDag draws a DAG as SVG: one column per topological level, edges from
// each dependency, each task a node coloured, labelled and marked with a
// glyph by its state (colour is never the only signal).
import { svg, glyph } from './dom.js';

const W = 168, H = 42, GAP_X = 56, GAP_Y = 12, PAD = 12;

// levelsOf computes topological levels from depends_on when the server gave
// none (a definition that does not validate).
export function levelsOf(tasks) {
  const deps = new Map(tasks.map((t) => [t.id, t.depends_on || []]));
  const level = new Map();
  const visit = (id, stack) => {
    if (level.has(id)) return level.get(id);
    if (stack.has(id) || !deps.has(id)) return 0;
    stack.add(id);
    let l = 0;
    for (const d of deps.get(id)) l = Math.max(l, visit(d, stack) + 1);
    stack.delete(id);
    level.set(id, l);
    return l;
  };
  const out = [];
  for (const t of tasks) {
    const l = visit(t.id, new Set());
    (out[l] = out[l] || []).push(t.id);
  }
  return out.filter(Boolean);
}

// layout places the nodes: levels left to right, each level ordered by the
// mean row of its dependencies (one barycentre pass) to keep edges short.
function layout(tasks, levels) {
  const deps = new Map(tasks.map((t) => [t.id, t.depends_on || []]));
  const pos = new Map();
  levels.forEach((ids, li) => {
    let order = ids;
    if (li > 0) {
      const key = (id) => {
        const ys = deps.get(id).map((d) => (pos.has(d) ? pos.get(d).row : 0));
        return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : 0;
      };
      order = ids.map((id) => [key(id), id]).sort((a, b) => a[0] - b[0]).map((x) => x[1]);
    }
    order.forEach((id, row) => pos.set(id, { x: PAD + li * (W + GAP_X), y: PAD + row * (H + GAP_Y), row }));
  });
  const rows = Math.max(1, ...levels.map((l) => l.length));
  return { pos, width: PAD * 2 + levels.length * (W + GAP_X) - GAP_X, height: PAD * 2 + rows * (H + GAP_Y) - GAP_Y };
}

function short(s, n) { return s.length > n ? s.slice(0, n - 1) + '…' : s; }

// drawDag returns the SVG and a handle to change a node's state or the
// selection without drawing again.
export function drawDag({ tasks, levels, states = {}, notes = {}, critical = [], onSelect }) {
  if (!levels || !levels.length) levels = levelsOf(tasks);
  const { pos, width, height } = layout(tasks, levels);
  let crit = new Set(critical);
  const root = svg('svg', { class: 'dag', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `DAG of ${tasks.length} tasks` });
  const edges = svg('g', { class: 'edges' });
  const nodes = svg('g', { class: 'nodes' });
  root.append(svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 8 8', refX: 8, refY: 4, markerWidth: 6, markerHeight: 6, orient: 'auto' },
    svg('path', { d: 'M0,0 L8,4 L0,8 z', class: 'arrowhead' }))), edges, nodes);
  for (const t of tasks) {
    const b = pos.get(t.id);
    if (!b) continue;
    for (const d of t.depends_on || []) {
      const a = pos.get(d);
      if (!a) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      const cls = crit.has(d) && crit.has(t.id) ? 'edge critical' : 'edge';
      edges.append(svg('path', { class: cls, d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, 'marker-end': 'url(#arrow)', 'data-from': d, 'data-to': t.id }));
    }
  }
  const byId = new Map();
  for (const t of tasks) {
    const p = pos.get(t.id);
    if (!p) continue;
    const state = states[t.id] || 'pending';
    const label = svg('text', { x: p.x + 8, y: p.y + 16, class: 'node-id' }, short(t.id, 22));
    const sub = svg('text', { x: p.x + 8, y: p.y + 33, class: 'node-state' });
    const g = svg('g', { class: `node state-${state}${crit.has(t.id) ? ' critical' : ''}`, 'data-task': t.id, 'data-state': state, tabindex: 0, role: 'button' },
      svg('title', {}, t.id), svg('rect', { x: p.x, y: p.y, width: W, height: H, rx: 6 }), label, sub);
    const setState = (s) => {
      g.setAttribute('class', `node state-${s}${crit.has(t.id) ? ' critical' : ''}${g.classList.contains('selected') ? ' selected' : ''}`);
      g.setAttribute('data-state', s);
      sub.textContent = s === 'preview' ? notes[t.id] || ''
        : `${glyph(s)} ${s}${notes[t.id] ? ' · ' + notes[t.id] : ''}${crit.has(t.id) ? ' ★' : ''}`;
    };
    setState(state);
    if (onSelect) {
      g.addEventListener('click', () => onSelect(t.id));
      g.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); onSelect(t.id); } });
    }
    byId.set(t.id, { g, setState });
    nodes.append(g);
  }
  return {
    el: root,
    setState(id, s) { const n = byId.get(id); if (n) n.setState(s); },
    // setCritical marks another critical path (it changes as tasks end).
    setCritical(ids) {
      crit = new Set(ids);
      for (const [, n] of byId) n.setState(n.g.dataset.state);
      for (const e of edges.children) e.setAttribute('class', crit.has(e.dataset.from) && crit.has(e.dataset.to) ? 'edge critical' : 'edge');
    },
    select(id) { for (const [k, n] of byId) n.g.classList.toggle('selected', k === id); },
  };
}
