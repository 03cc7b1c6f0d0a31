// The page's logic: read /v1/info, send the question (multipart, the picture as a file) to
// /v1/answer, show the answer, the top k, the subgraph (graph.js), the triples and the timings.
"use strict";
const $ = (id) => document.getElementById(id);
let info = null, mode = "question", imageFile = null;

function text(elm, s) { elm.textContent = s; return elm; }
function showError(msg) { const e = $("error"); e.hidden = !msg; e.textContent = msg || ""; }

async function loadInfo() {
  for (let i = 0; i < 60; i++) {  // the model may still be loading: retry for up to a minute
    try {
      const r = await fetch("/v1/info");
      if (r.ok) { info = await r.json(); break; }
    } catch (e) { /* server not up yet */ }
    text($("info"), "loading the model…");
    await new Promise((res) => setTimeout(res, 1000));
  }
  if (!info) { text($("info"), "the server did not become ready"); return; }
  const g = info.graph ? `${info.graph.entities} entities · ${info.graph.triples} triples · ${info.graph.images} images` : "no graph";
  text($("info"), `${info.task} checkpoint · ${g} · ${info.checkpoint}`);
  $("info").title = info.checkpoint;
  $("top-k").max = info.limits.max_top_k;
  if (info.inputs.includes("analogy")) $("tab-analogy").hidden = false;
  $("picture-row").hidden = !info.inputs.includes("image");
  $("choices-row").hidden = !info.inputs.includes("choices");
  if (info.inputs.length === 1 && info.inputs[0] === "analogy") setMode("analogy");
}

function setMode(m) {
  mode = m;
  $("tab-question").classList.toggle("active", m === "question");
  $("tab-analogy").classList.toggle("active", m === "analogy");
  $("tab-question").setAttribute("aria-selected", m === "question");
  $("tab-analogy").setAttribute("aria-selected", m === "analogy");
  $("question-mode").hidden = m !== "question";
  $("analogy-mode").hidden = m !== "analogy";
  showError("");
}

function setImage(file) {
  imageFile = file || null;
  const img = $("preview");
  if (imageFile) {
    img.src = URL.createObjectURL(imageFile); img.hidden = false; $("drop-text").hidden = true; $("clear-image").hidden = false;
  } else {
    img.removeAttribute("src"); img.hidden = true; $("drop-text").hidden = false; $("clear-image").hidden = true;
    $("image-input").value = "";
  }
}

let entityTimer = null;
function suggest(ev) {
  clearTimeout(entityTimer);
  const q = ev.target.value;
  entityTimer = setTimeout(async () => {
    try {
      const r = await fetch(`/v1/entities?limit=20&q=${encodeURIComponent(q)}`);
      if (!r.ok) return;
      const list = $("entity-list");
      list.innerHTML = "";
      for (const e of (await r.json()).entities) {
        const o = document.createElement("option"); o.value = e.name; o.label = `${e.id}${e.images ? " · picture" : ""}`; list.appendChild(o);
      }
    } catch (e) { /* suggestions are optional */ }
  }, 120);
}

function fmtMs(s) { return s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1000).toFixed(s < 0.01 ? 1 : 0)} ms`; }

function render(ans) {
  $("empty").hidden = true; $("result").hidden = false;
  text($("answer"), ans.answer || "(no answer)");
  text($("answer-id"), ans.answer_id ? `id ${ans.answer_id}` : "");
  const tm = $("timings"); tm.innerHTML = "";
  for (const k of ["encode", "retrieve", "model", "total"]) if (k in ans.timings) {
    const s = document.createElement("span"); s.textContent = `${k} ${fmtMs(ans.timings[k])}`; tm.appendChild(s);
  }
  const ol = $("candidates"); ol.innerHTML = "";
  const finite = ans.candidates.filter((c) => c.score !== null).map((c) => c.score);
  const hi = Math.max(...finite, 0), lo = Math.min(...finite, 0);
  ans.candidates.forEach((c, i) => {
    const li = document.createElement("li"); if (i === 0) li.className = "top";
    const w = c.score === null ? 0 : hi > lo ? (100 * (c.score - lo)) / (hi - lo) : 100;
    li.innerHTML = `<span class="rank">${i + 1}</span><span class="name"></span><span class="bar-bg"><span class="bar-fg" style="width:${Math.max(w, 2).toFixed(1)}%"></span></span><span class="score"></span>`;
    text(li.querySelector(".name"), c.name).title = c.id;
    text(li.querySelector(".score"), c.score === null ? "—" : c.score.toFixed(3));
    ol.appendChild(li);
  });
  const gen = $("generated"); gen.hidden = !ans.text; if (ans.text) gen.textContent = ans.text;
  drawGraph($("graph-svg"), ans.subgraph, ans.answer_id, (empty) => { $("graph-empty").hidden = !empty; $("graph-empty").textContent = empty ? "This checkpoint read no subgraph for this question." : ""; });
  const nodes = (ans.subgraph && ans.subgraph.nodes) || [];
  const inGraph = nodes.some((n) => n.kind === "entity" && n.id === ans.answer_id);
  text($("graph-note"), nodes.length && ans.answer_id && !inGraph ? "the answer is not in the retrieved subgraph" : "");
  const tb = $("triples").tBodies[0]; tb.innerHTML = "";
  const triples = (ans.subgraph && ans.subgraph.triples) || [];
  if (!triples.length) tb.innerHTML = `<tr><td colspan="5" class="dim">no triples retrieved</td></tr>`;
  for (const t of triples) {
    const tr = document.createElement("tr");
    if (t.head === ans.answer_id || t.tail === ans.answer_id) tr.className = "hit";
    for (const [v, cls] of [[t.id, "id"], [t.head_name, ""], [t.relation_name, ""], [t.tail_name, ""], [t.score.toFixed(3), "num"]]) {
      const td = document.createElement("td"); td.textContent = v; if (cls) td.className = cls; tr.appendChild(td);
    }
    tb.appendChild(tr);
  }
}

async function ask(ev) {
  ev.preventDefault();
  showError("");
  const fd = new FormData();
  if (mode === "analogy") {
    const parts = ["a-head", "a-tail", "a-question"].map((id) => $(id).value.trim());
    if (parts.some((p) => !p)) { showError("Fill in the three entities of the analogy."); return; }
    fd.append("analogy", `${parts[0]} : ${parts[1]} :: ${parts[2]} : ?`);
  } else {
    const q = $("question").value.trim();
    if (!q) { showError("Write a question first."); return; }
    fd.append("question", q);
    if (imageFile) fd.append("image", imageFile, imageFile.name || "picture");
    if (!$("choices-row").hidden && $("choices").value.trim()) fd.append("choices", $("choices").value);
  }
  fd.append("top_k", $("top-k").value || "5");
  const btn = $("ask"); btn.disabled = true; btn.textContent = "Asking…";
  try {
    const r = await fetch("/v1/answer", { method: "POST", body: fd });
    const body = await r.json().catch(() => ({ error: `the server answered ${r.status}` }));
    if (!r.ok) showError(body.error || `error ${r.status}`); else render(body);
  } catch (e) {
    showError("The server could not be reached: is `mrmkg serve` still running?");
  } finally { btn.disabled = false; btn.textContent = "Ask"; }
}

function init() {
  $("tab-question").addEventListener("click", () => setMode("question"));
  $("tab-analogy").addEventListener("click", () => setMode("analogy"));
  $("image-input").addEventListener("change", (e) => setImage(e.target.files[0]));
  $("clear-image").addEventListener("click", (e) => { e.preventDefault(); e.stopPropagation(); setImage(null); });
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) setImage(e.dataTransfer.files[0]); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("image-input").click(); } });
  ["a-head", "a-tail", "a-question"].forEach((id) => { $(id).addEventListener("input", suggest); $(id).addEventListener("focus", suggest); });
  $("question").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask-form").requestSubmit(); } });
  $("ask-form").addEventListener("submit", ask);
  $("reset-view").addEventListener("click", () => { const s = $("graph-svg"); if (s._fit) setView(s, Object.assign({}, s._fit)); });
  enablePanZoom($("graph-svg"));
  loadInfo();
}
document.addEventListener("DOMContentLoaded", init);
