// A small SVG line chart: every series a polyline over shared axes, with ticks and a legend.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#3056d3", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a", "#1098ad", "#5f3dc4", "#e67700"];

function svgElement(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

function niceTicks(low, high, count) {
  if (low === high) { high = low + 1; }
  const step = Math.pow(10, Math.floor(Math.log10((high - low) / count)));
  const unit = [1, 2, 5, 10].map((m) => m * step).find((s) => (high - low) / s <= count);
  const ticks = [];
  for (let t = Math.ceil(low / unit) * unit; t <= high + 1e-9; t += unit) ticks.push(+t.toPrecision(10));
  return ticks;
}

// series: [{name, color, points: [[x, y], ...]}]; draws into the <svg> `svg`, replacing what was there.
function lineChart(svg, series, xLabel, yLabel) {
  svg.replaceChildren();
  const width = svg.clientWidth || 500, height = svg.clientHeight || 280;
  const margin = {left: 52, right: 12, top: 12, bottom: 38};
  const points = series.flatMap((s) => s.points);
  if (!points.length) {
    svgElement("text", {x: width / 2, y: height / 2, "text-anchor": "middle"}, svg).textContent = "select runs to compare";
    return;
  }
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const pad = (y1 - y0) * 0.05 || 0.1;
  const sx = (x) => margin.left + (x - x0) / ((x1 - x0) || 1) * (width - margin.left - margin.right);
  const sy = (y) => height - margin.bottom - (y - (y0 - pad)) / ((y1 - y0 + 2 * pad) || 1) * (height - margin.top - margin.bottom);
  for (const t of niceTicks(y0 - pad, y1 + pad, 5)) {
    svgElement("line", {class: "grid", x1: margin.left, x2: width - margin.right, y1: sy(t), y2: sy(t)}, svg);
    svgElement("text", {x: margin.left - 6, y: sy(t) + 4, "text-anchor": "end"}, svg).textContent = t;
  }
  for (const t of niceTicks(x0, x1, 6)) {
    svgElement("text", {x: sx(t), y: height - margin.bottom + 16, "text-anchor": "middle"}, svg).textContent = t;
  }
  svgElement("line", {class: "axis", x1: margin.left, x2: margin.left, y1: margin.top, y2: height - margin.bottom}, svg);
  svgElement("line", {class: "axis", x1: margin.left, x2: width - margin.right, y1: height - margin.bottom, y2: height - margin.bottom}, svg);
  svgElement("text", {x: (width + margin.left) / 2, y: height - 4, "text-anchor": "middle"}, svg).textContent = xLabel;
  svgElement("text", {x: 12, y: height / 2, transform: `rotate(-90 12 ${height / 2})`, "text-anchor": "middle"}, svg).textContent = yLabel;
  for (const s of series) {
    const line = svgElement("polyline", {class: "curve", stroke: s.color, "data-run": s.name,
      points: s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ")}, svg);
    svgElement("title", {}, line).textContent = s.name;
  }
}

function legend(element, series) {
  element.replaceChildren(...series.map((s) => {
    const item = document.createElement("span");
    item.innerHTML = `<i style="background:${s.color}"></i>`;
    item.append(s.name);
    return item;
  }));
}
