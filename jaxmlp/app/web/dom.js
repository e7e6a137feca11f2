// What every page uses: making elements, fetching JSON, the header's path.

// An element: h("td", {class: "num"}, "0.98", child, ...).
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "dataset") Object.assign(e.dataset, v);
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// GET or POST JSON; a failure throws the server's one-line message.
export async function getJSON(url, options = {}) {
  const r = await fetch(url, { cache: "no-cache", ...options });
  let body;
  try {
    body = await r.json();
  } catch {
    throw new Error(r.ok ? `the server's answer to ${url} is not JSON` : `${r.status} ${r.statusText}`);
  }
  if (!r.ok) throw new Error(typeof dict(body).error === "string" ? body.error : `${r.status} ${r.statusText}`);
  return body;
}

// What the server sends comes from run files, which may hold anything JSON can (a
// hand-edited metrics.jsonl, a stray eval.json): every value is read through one of these,
// so a wrong one shows as "–" or is left out, never stops the page.
export const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
export const list = (v) => (Array.isArray(v) ? v : []);
export const dict = (v) => (v !== null && typeof v === "object" && !Array.isArray(v) ? v : {});
export const text = (v) => (typeof v === "string" ? v : num(v) !== null || typeof v === "boolean" ? String(v) : "–");
export const fixed = (v, digits) => (num(v) === null ? "–" : v.toFixed(digits));
export const pct = (v) => (num(v) === null ? "–" : (100 * v).toFixed(2) + "%");
// The largest number among `values` (null: none); no spread, so any length will do.
export const maxOf = (values) => values.reduce((m, v) => (num(v) === null || (m !== null && m >= v) ? m : v), null);

export function crumbs(...parts) {
  document.getElementById("crumbs").replaceChildren(...parts.flatMap((p) => [" / ", p]));
}

// The pages of a run, and of its draw page (a sweep's model: `model`).
export const runURL = (path) => `/run?path=${encodeURIComponent(path)}`;
export const drawURL = (path, model) =>
  `/draw?path=${encodeURIComponent(path)}` + (model === undefined ? "" : `&model=${model}`);
