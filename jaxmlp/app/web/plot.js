// Line charts as SVG: lines, points, mean ± std bands, a legend. No library.

const NS = "http://www.w3.org/2000/svg";
export const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];

function svg(name, attrs = {}, parent = null) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

// About n round numbers spanning [lo, hi]: counted, not summed, so a step too small to
// change lo (0.5 + 5e-17 is 0.5) ends the loop all the same.
function ticks(lo, hi, n = 5) {
  const step0 = (hi - lo) / n, mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0);
  const out = [];
  if (!(step > 0) || !Number.isFinite(step)) return out;
  for (let k = Math.ceil(lo / step); k * step <= hi + step * 1e-9 && out.length <= 4 * n; k++)
    out.push(+(k * step).toPrecision(12));
  return out;
}

const finite = ([x, ...ys]) => Number.isFinite(x) && ys.every(Number.isFinite);

// series: [{label, color, points: [[x, y], ...], thin}] (label null: not in the legend);
// bands: [{color, points: [[x, lo, hi], ...]}]. Returns a <figure>: the chart and its
// legend. The svg's data-points is the longest
// series' length, which the tests watch.
export function lineChart({ title, xlabel, ylabel, series, bands = [], width = 520, height = 300 }) {
  const m = { l: 56, r: 12, t: 26, b: 40 };
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  // Only finite points: a record's values come from a file, and NaN has no place on an axis.
  series = series.map((s) => ({ ...s, points: s.points.filter(finite) }));
  bands = bands.map((b) => ({ ...b, points: b.points.filter(finite) }));
  root.dataset.points = String(series.reduce((n, s) => Math.max(n, s.points.length), 0));
  svg("text", { x: m.l, y: 16, class: "chart-title" }, root).textContent = title;
  const xs = [], ys = [];
  for (const s of series) for (const [x, y] of s.points) { xs.push(x); ys.push(y); }
  for (const b of bands) for (const [x, lo, hi] of b.points) { xs.push(x); ys.push(lo, hi); }
  const least = (v) => v.reduce((a, b) => Math.min(a, b)), most = (v) => v.reduce((a, b) => Math.max(a, b));
  let [x0, x1] = xs.length ? [least(xs), most(xs)] : [0, 0], [y0, y1] = xs.length ? [least(ys), most(ys)] : [0, 0];
  // Values a hair apart (or equal) get a range of their own; too far apart to draw, none.
  if (x1 - x0 < 1e-9 * Math.max(1, Math.abs(x0))) { x0 -= 1; x1 += 1; }
  if (y1 - y0 < 1e-9 * Math.max(1e-300, Math.abs(y0))) { y0 -= Math.abs(y0) * 0.05 || 0.5; y1 += Math.abs(y1) * 0.05 || 0.5; }
  const pad = (y1 - y0) * 0.06;
  [y0, y1] = [y0 - pad, y1 + pad];
  if (!xs.length || !Number.isFinite(x1 - x0) || !Number.isFinite(y1 - y0)) {
    svg("text", { x: width / 2, y: height / 2, class: "chart-empty" }, root).textContent =
      xs.length ? "values too large to draw" : "no epochs yet";
    const figure = document.createElement("figure");
    figure.className = "figure";
    figure.appendChild(root);
    return figure;
  }
  const X = (x) => m.l + ((x - x0) / (x1 - x0)) * (width - m.l - m.r);
  const Y = (y) => height - m.b - ((y - y0) / (y1 - y0)) * (height - m.t - m.b);
  const axes = svg("g", { class: "axes" }, root);
  for (const v of ticks(y0, y1)) {
    svg("line", { x1: m.l, x2: width - m.r, y1: Y(v), y2: Y(v), class: "grid" }, axes);
    svg("text", { x: m.l - 6, y: Y(v) + 4, class: "tick y" }, axes).textContent = String(v);
  }
  for (const v of ticks(x0, x1, Math.min(6, x1 - x0)).filter(Number.isInteger)) {  // epochs
    svg("text", { x: X(v), y: height - m.b + 16, class: "tick x" }, axes).textContent = String(v);
  }
  svg("text", { x: (m.l + width - m.r) / 2, y: height - 6, class: "label" }, axes).textContent = xlabel;
  svg("text", { x: 14, y: (m.t + height - m.b) / 2, class: "label",
    transform: `rotate(-90 14 ${(m.t + height - m.b) / 2})` }, axes).textContent = ylabel;
  for (const b of bands) {
    const top = b.points.map(([x, , hi]) => `${X(x)},${Y(hi)}`);
    const bottom = b.points.slice().reverse().map(([x, lo]) => `${X(x)},${Y(lo)}`);
    svg("polygon", { points: [...top, ...bottom].join(" "), fill: b.color, class: "band" }, root);
  }
  for (const s of series) {
    const pts = s.points;
    svg("polyline", { points: pts.map(([x, y]) => `${X(x)},${Y(y)}`).join(" "), stroke: s.color,
      class: s.thin ? "line thin" : "line" }, root);
    if (!s.thin && pts.length <= 120)
      for (const [x, y] of pts) {
        const dot = svg("circle", { cx: X(x), cy: Y(y), r: 2.5, fill: s.color }, root);
        svg("title", {}, dot).textContent = `${s.label}, epoch ${x}: ${+y.toPrecision(5)}`;
      }
  }
  const figure = document.createElement("figure");
  figure.className = "figure";
  figure.appendChild(root);
  const legend = document.createElement("figcaption");
  for (const s of series.filter((s) => s.label)) {
    const key = document.createElement("span");
    key.className = "key";
    const swatch = document.createElement("i");
    swatch.style.background = s.color;  // CSSOM, which the page's CSP allows
    key.append(swatch, s.label);
    legend.appendChild(key);
  }
  figure.appendChild(legend);
  return figure;
}
