// The runs dashboard: a sortable table of every served run; selected runs' val bits/byte curves overlaid.
"use strict";

const COLUMNS = [
  ["", null], ["run", "id"], ["model", "model"], ["params", "params"], ["tokenizer", "tokenizer"], ["context", "context"],
  ["steps", "steps"], ["wall s", "wall_seconds"], ["train tok/s", "train_tokens_per_second"],
  ["val bits/byte", "val_bits_per_byte"], ["best val loss", "best_val_loss"],
];
let rows = [], sortKey = "val_bits_per_byte", descending = false;
const selected = new Set(), curves = new Map();

function format(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString() : value.toFixed(value < 100 ? 4 : 0);
  return String(value);
}

function renderTable() {
  const head = document.querySelector("#runs thead tr");
  head.replaceChildren(...COLUMNS.map(([label, key]) => {
    const th = document.createElement("th");
    th.textContent = label;
    if (key) {
      th.dataset.key = key;
      th.classList.toggle("sorted", key === sortKey);
      th.classList.toggle("desc", key === sortKey && descending);
      th.addEventListener("click", () => { descending = key === sortKey && !descending; sortKey = key; renderTable(); });
    }
    return th;
  }));
  const sorted = [...rows].sort((a, b) => {
    const [x, y] = [a[sortKey], b[sortKey]];
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * (descending ? -1 : 1);
  });
  document.querySelector("#runs tbody").replaceChildren(...sorted.map((run) => {
    const tr = document.createElement("tr");
    tr.dataset.run = run.id;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = selected.has(run.id);
    box.addEventListener("change", () => toggle(run.id, box.checked));
    const cells = [box, Object.assign(document.createElement("a"), {href: `/runs/${run.id}`, textContent: run.id})];
    for (const [, key] of COLUMNS.slice(2)) cells.push(document.createTextNode(format(run[key])));
    tr.replaceChildren(...cells.map((cell) => { const td = document.createElement("td"); td.append(cell); return td; }));
    return tr;
  }));
}

async function toggle(id, on) {
  if (on) selected.add(id); else selected.delete(id);
  if (on && !curves.has(id)) curves.set(id, (await (await fetch(`/api/runs/${id}`)).json()).curve);
  renderCharts();
}

function renderCharts() {
  const chosen = rows.filter((run) => selected.has(run.id));
  const series = (x) => chosen.map((run, i) => ({name: run.id, color: COLORS[i % COLORS.length],
    points: (curves.get(run.id) || []).map((p) => [p[x], p.val_bits_per_byte])}));
  lineChart(document.getElementById("by-step"), series("step"), "step", "val bits/byte");
  lineChart(document.getElementById("by-time"), series("wall_seconds"), "wall time (s)", "val bits/byte");
  legend(document.getElementById("legend"), series("step"));
}

async function load() {
  rows = await (await fetch("/api/runs")).json();
  renderTable();
  renderCharts();
  document.body.dataset.state = "ready";
}

load();
