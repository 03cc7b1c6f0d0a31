// The retrieved subgraph as SVG: a small deterministic force layout (bounded iterations), labelled
// entity nodes, image nodes as thumbnails, edge labels "relation · score", the answer highlighted,
// pan (drag) and zoom (wheel / pinch) through the viewBox. No library: works offline.
"use strict";
const SVGNS = "http://www.w3.org/2000/svg";

function el(name, attrs, parent) {
  const e = document.createElementNS(SVGNS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

function layout(n, edges, width, height) {
  // Fruchterman-Reingold: nodes start on a circle (deterministic), springs along edges, repulsion
  // between all pairs, a cooling step size; positions stay inside the frame, so loose nodes and
  // separate components spread over it instead of flying off. 300 iterations, bounded.
  const pos = [], m = 40;
  for (let i = 0; i < n; i++) {
    const a = (2 * Math.PI * i) / Math.max(n, 1);
    pos.push({ x: width / 2 + 0.3 * width * Math.cos(a), y: height / 2 + 0.3 * height * Math.sin(a), dx: 0, dy: 0 });
  }
  const k = 0.6 * Math.sqrt((width * height) / Math.max(n, 1));
  let temp = width / 8;
  for (let it = 0; it < 300; it++) {
    for (const p of pos) { p.dx = 0; p.dy = 0; }
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) {
      let dx = pos[i].x - pos[j].x, dy = pos[i].y - pos[j].y, d = Math.sqrt(dx * dx + dy * dy);
      if (d < 0.01) { dx = 0.01 * (1 + i); dy = 0.01; d = 0.014; }
      const f = (k * k) / d;
      pos[i].dx += (dx / d) * f; pos[i].dy += (dy / d) * f; pos[j].dx -= (dx / d) * f; pos[j].dy -= (dy / d) * f;
    }
    for (const e of edges) {
      const a = pos[e.source], b = pos[e.target];
      if (!a || !b || a === b) continue;
      const dx = a.x - b.x, dy = a.y - b.y, d = Math.sqrt(dx * dx + dy * dy) || 0.01, f = (d * d) / k;
      a.dx -= (dx / d) * f; a.dy -= (dy / d) * f; b.dx += (dx / d) * f; b.dy += (dy / d) * f;
    }
    for (const p of pos) {
      p.dx += (width / 2 - p.x) * 0.12; p.dy += (height / 2 - p.y) * 0.12;  // weak gravity
      const d = Math.sqrt(p.dx * p.dx + p.dy * p.dy) || 1, s = Math.min(d, temp);
      p.x = Math.min(width - m, Math.max(m, p.x + (p.dx / d) * s));
      p.y = Math.min(height - m, Math.max(m, p.y + (p.dy / d) * s));
    }
    temp = Math.max(temp * 0.985, 1);
  }
  return pos;
}

function drawGraph(svg, sg, answerId, onEmpty) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const nodes = (sg && sg.nodes) || [], edges = (sg && sg.edges) || [];
  onEmpty(nodes.length === 0);
  if (!nodes.length) return;
  // the layout frame follows the panel's shape (a phone's panel is tall and narrow), a bit larger than it
  const r = svg.getBoundingClientRect();
  const f = (r.width || 900) < 500 ? 1.6 : 1.2;  // a phone's frame: more room per node, smaller type
  const W = Math.max(r.width || 900, 320) * f, H = Math.max(r.height || 520, 300) * f;
  const pos = layout(nodes.length, edges, W, H);
  const defs = el("defs", {}, svg);
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, defs);
  el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#adb5bd" }, marker);
  const view = el("g", { class: "view" }, svg);
  const seeds = new Set((sg.seeds || []));
  const radius = (nd) => (nd.kind === "image" ? 24 : 9);
  // edges first (under the nodes); the label sits at the middle, rotated along the edge but never upside down
  edges.forEach((e) => {
    const a = pos[e.source], b = pos[e.target];
    if (!a || !b) return;
    const g = el("g", { class: "edge" + (e.triple === -1 ? " img" : ""), "data-triple": e.triple }, view);
    const dx = b.x - a.x, dy = b.y - a.y, d = Math.sqrt(dx * dx + dy * dy) || 1;
    const ra = radius(nodes[e.source]) + 2, rb = radius(nodes[e.target]) + 3;
    el("line", { x1: a.x + (dx / d) * ra, y1: a.y + (dy / d) * ra, x2: b.x - (dx / d) * rb, y2: b.y - (dy / d) * rb,
                 "marker-end": "url(#arrow)" }, g);
    if (e.triple !== -1) {
      let ang = (Math.atan2(dy, dx) * 180) / Math.PI;
      if (ang > 90) ang -= 180; if (ang < -90) ang += 180;
      const mx = (a.x + b.x) / 2, my = (a.y + b.y) / 2;
      const t = el("text", { x: mx, y: my - 4, "text-anchor": "middle", transform: `rotate(${ang.toFixed(1)} ${mx} ${my})` }, g);
      t.textContent = `${e.relation_name} · ${Number(e.score).toFixed(2)}`;
      el("title", {}, g).textContent = `triple ${e.triple}: ${e.relation_name} (retrieval score ${e.score})`;
    }
  });
  nodes.forEach((nd, i) => {
    const p = pos[i];
    const isAnswer = nd.kind === "entity" && nd.id === answerId;
    const cls = ["node", nd.kind, isAnswer ? "answer" : "", seeds.has(nd.id) ? "seed" : ""].join(" ").trim();
    const g = el("g", { class: cls, "data-id": nd.kind === "entity" ? nd.id : "image:" + nd.of,
                        transform: `translate(${p.x.toFixed(1)},${p.y.toFixed(1)})` }, view);
    if (nd.kind === "image") {
      el("rect", { class: "frame", x: -25, y: -25, width: 50, height: 50, rx: 6 }, g);
      if (nd.image_url) el("image", { href: nd.image_url, x: -22, y: -22, width: 44, height: 44, preserveAspectRatio: "xMidYMid slice" }, g);
      el("title", {}, g).textContent = `picture of ${nd.of}`;
    } else {
      el("circle", { r: isAnswer ? 12 : 9 }, g);
      const t = el("text", { x: 0, y: -15, "text-anchor": "middle" }, g);
      t.textContent = nd.name || nd.id;
      el("title", {}, g).textContent = `${nd.name} (${nd.id})${isAnswer ? " — the answer" : ""}`;
    }
  });
  // fit the drawing, then pan/zoom by changing the viewBox
  const xs = pos.map((p) => p.x), ys = pos.map((p) => p.y), pad = 60;
  const box = { x: Math.min(...xs) - pad, y: Math.min(...ys) - pad - 10, w: 0, h: 0 };
  box.w = Math.max(...xs) + pad - box.x; box.h = Math.max(...ys) + pad - box.y;
  svg._fit = Object.assign({}, box);
  setView(svg, box);
}

function setView(svg, b) { svg._view = b; svg.setAttribute("viewBox", `${b.x} ${b.y} ${b.w} ${b.h}`); }

function enablePanZoom(svg) {
  const pointers = new Map();
  let last = null, pinch = null;
  const toUser = (cx, cy) => {
    const r = svg.getBoundingClientRect(), v = svg._view;
    const s = Math.max(v.w / r.width, v.h / r.height);  // preserveAspectRatio meet
    const ox = (r.width * s - v.w) / 2, oy = (r.height * s - v.h) / 2;
    return { x: v.x - ox + (cx - r.left) * s, y: v.y - oy + (cy - r.top) * s, s };
  };
  const zoom = (factor, cx, cy) => {
    const v = svg._view; if (!v) return;
    const p = toUser(cx, cy);
    const w = Math.min(Math.max(v.w * factor, 60), 20000), f = w / v.w;
    setView(svg, { x: p.x - (p.x - v.x) * f, y: p.y - (p.y - v.y) * f, w, h: v.h * f });
  };
  svg.addEventListener("wheel", (ev) => { ev.preventDefault(); zoom(ev.deltaY > 0 ? 1.15 : 1 / 1.15, ev.clientX, ev.clientY); }, { passive: false });
  svg.addEventListener("pointerdown", (ev) => {
    pointers.set(ev.pointerId, ev); svg.setPointerCapture(ev.pointerId); svg.classList.add("dragging");
    last = { x: ev.clientX, y: ev.clientY };
    if (pointers.size === 2) { const [a, b] = [...pointers.values()]; pinch = Math.hypot(a.clientX - b.clientX, a.clientY - b.clientY); }
  });
  svg.addEventListener("pointermove", (ev) => {
    if (!pointers.has(ev.pointerId) || !svg._view) return;
    pointers.set(ev.pointerId, ev);
    if (pointers.size === 2 && pinch) {
      const [a, b] = [...pointers.values()], d = Math.hypot(a.clientX - b.clientX, a.clientY - b.clientY);
      zoom(pinch / d, (a.clientX + b.clientX) / 2, (a.clientY + b.clientY) / 2); pinch = d; return;
    }
    const { s } = toUser(ev.clientX, ev.clientY), v = svg._view;
    setView(svg, { x: v.x - (ev.clientX - last.x) * s, y: v.y - (ev.clientY - last.y) * s, w: v.w, h: v.h });
    last = { x: ev.clientX, y: ev.clientY };
  });
  const up = (ev) => { pointers.delete(ev.pointerId); pinch = null; if (!pointers.size) svg.classList.remove("dragging"); };
  svg.addEventListener("pointerup", up); svg.addEventListener("pointercancel", up);
}
