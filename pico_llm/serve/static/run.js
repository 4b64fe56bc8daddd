// One run: what it is, how it did, its curves, its samples over training and its config.
"use strict";

const id = decodeURIComponent(location.pathname.replace(/^\/runs\//, ""));

async function load() {
  document.getElementById("title").textContent = id;
  const response = await fetch(`/api/runs/${id}`);
  if (!response.ok) {
    document.getElementById("summary").textContent = (await response.json()).error.message;
    return;
  }
  const run = await response.json();
  document.querySelector("#summary tbody").replaceChildren(...Object.entries(run.summary).map(([key, value]) => {
    const tr = document.createElement("tr");
    tr.innerHTML = "<th></th><td></td>";
    tr.children[0].textContent = key;
    tr.children[1].textContent = value === null ? "—" : value;
    return tr;
  }));
  const series = (x) => [{name: id, color: COLORS[0], points: run.curve.map((p) => [p[x], p.val_bits_per_byte])}];
  lineChart(document.getElementById("by-step"), series("step"), "step", "val bits/byte");
  lineChart(document.getElementById("by-time"), series("wall_seconds"), "wall time (s)", "val bits/byte");
  if (run.has_curves_png) Object.assign(document.getElementById("curves"), {src: `/api/runs/${id}/curves.png`, hidden: false});
  document.getElementById("samples").textContent = run.samples || "(no samples)";
  document.getElementById("config").textContent = JSON.stringify(run.config, null, 2);
  document.body.dataset.state = "ready";
}

load();
