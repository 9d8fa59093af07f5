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

// WINDOWED is the size past which only the nodes and edges near the
// visible part of the box are in the DOM (drawn again as it scrolls): a
// DAG of thousands of tasks then costs what a screenful does.
export const WINDOWED = 300;
const MARGIN = 400; // px drawn around the visible part

// drawDag returns the SVG and a handle to change a node's state, the
// critical path or the selection without drawing again. box, when given,
// is the scrolling element the SVG goes in (the window follows it).
export function drawDag({ tasks, levels, states = {}, notes = {}, critical = [], onSelect, box = null }) {
  if (!levels || !levels.length) levels = levelsOf(tasks);
  const { pos, width, height } = layout(tasks, levels);
  let crit = new Set(critical);
  let selected = null;
  const windowed = tasks.length > WINDOWED;
  const root = svg('svg', { class: 'dag', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `DAG of ${tasks.length} tasks`, 'data-tasks': tasks.length });
  const edgeLayer = svg('g', { class: 'edges' });
  const nodeLayer = svg('g', { class: 'nodes' });
  // Edges always run left to right; past WINDOWED tasks arrowheads cost
  // more to draw than they tell.
  root.append(svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 8 8', refX: 8, refY: 4, markerWidth: 6, markerHeight: 6, orient: 'auto' },
    svg('path', { d: 'M0,0 L8,4 L0,8 z', class: 'arrowhead' }))), edgeLayer, nodeLayer);

  const state = new Map(tasks.map((t) => [t.id, states[t.id] || 'pending']));
  const edges = [];
  for (const t of tasks) {
    const b = pos.get(t.id);
    for (const d of t.depends_on || []) {
      const a = pos.get(d);
      if (a && b) edges.push({ from: d, to: t.id, x1: a.x + W, y1: a.y + H / 2, x2: b.x, y2: b.y + H / 2 });
    }
  }
  const shownNodes = new Map(); // id -> {g, sub}
  const shownEdges = new Map(); // edge -> path

  const nodeClass = (id) => `node state-${state.get(id)}${crit.has(id) ? ' critical' : ''}${selected === id ? ' selected' : ''}`;
  const edgeClass = (e) => (crit.has(e.from) && crit.has(e.to) ? 'edge critical' : 'edge');
  function paintNode(id) {
    const n = shownNodes.get(id);
    if (!n) return;
    const s = state.get(id);
    n.g.setAttribute('class', nodeClass(id));
    n.g.setAttribute('data-state', s);
    n.sub.textContent = s === 'preview' ? notes[id] || ''
      : `${glyph(s)} ${s}${notes[id] ? ' · ' + notes[id] : ''}${crit.has(id) ? ' ★' : ''}`;
  }
  function makeNode(id) {
    const p = pos.get(id);
    const sub = svg('text', { x: p.x + 8, y: p.y + 33, class: 'node-state' });
    const g = svg('g', { 'data-task': id, tabindex: 0, role: 'button' },
      svg('title', {}, id), svg('rect', { x: p.x, y: p.y, width: W, height: H, rx: 6 }),
      svg('text', { x: p.x + 8, y: p.y + 16, class: 'node-id' }, short(id, 22)), sub);
    if (onSelect) {
      g.addEventListener('click', () => onSelect(id));
      g.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); onSelect(id); } });
    }
    shownNodes.set(id, { g, sub });
    paintNode(id);
    return g;
  }
  function makeEdge(e) {
    const mx = (e.x1 + e.x2) / 2;
    const path = svg('path', { class: edgeClass(e), d: `M${e.x1},${e.y1} C${mx},${e.y1} ${mx},${e.y2} ${e.x2},${e.y2}`,
      'marker-end': windowed ? null : 'url(#arrow)', 'data-from': e.from, 'data-to': e.to });
    shownEdges.set(e, path);
    return path;
  }

  // draw puts in the DOM what lies within the view (everything when the
  // DAG is small) and takes out what left it.
  function draw(view) {
    const inView = (x0, y0, x1, y1) => !view || (x1 >= view.x0 && x0 <= view.x1 && y1 >= view.y0 && y0 <= view.y1);
    const addN = [];
    for (const [id, p] of pos) {
      const vis = inView(p.x, p.y, p.x + W, p.y + H);
      if (vis && !shownNodes.has(id)) addN.push(makeNode(id));
      else if (!vis && shownNodes.has(id)) { shownNodes.get(id).g.remove(); shownNodes.delete(id); }
    }
    const addE = [];
    for (const e of edges) {
      const vis = inView(Math.min(e.x1, e.x2), Math.min(e.y1, e.y2), Math.max(e.x1, e.x2), Math.max(e.y1, e.y2));
      if (vis && !shownEdges.has(e)) addE.push(makeEdge(e));
      else if (!vis && shownEdges.has(e)) { shownEdges.get(e).remove(); shownEdges.delete(e); }
    }
    nodeLayer.append(...addN);
    edgeLayer.append(...addE);
  }
  function viewOf() {
    const w = box && box.clientWidth ? box.clientWidth : window.innerWidth;
    const h = box && box.clientHeight ? box.clientHeight : 600;
    const x = box ? box.scrollLeft : 0, y = box ? box.scrollTop : 0;
    return { x0: x - MARGIN, y0: y - MARGIN, x1: x + w + MARGIN, y1: y + h + MARGIN };
  }
  draw(windowed ? viewOf() : null);
  if (windowed && box) {
    let queued = false;
    box.onscroll = () => { // replaces the handler of a DAG drawn before in this box
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => { queued = false; draw(viewOf()); });
    };
  }
  return {
    el: root,
    setState(id, s) { if (state.has(id)) { state.set(id, s); paintNode(id); } },
    // setCritical marks another critical path (it changes as tasks end).
    setCritical(ids) {
      crit = new Set(ids);
      for (const id of shownNodes.keys()) paintNode(id);
      for (const [e, path] of shownEdges) path.setAttribute('class', edgeClass(e));
    },
    select(id) {
      const old = selected;
      selected = id;
      paintNode(old);
      paintNode(id);
      const p = pos.get(id);
      if (box && p && windowed && !shownNodes.has(id)) { box.scrollTo(p.x - 40, p.y - 40); draw(viewOf()); paintNode(id); }
    },
  };
}
