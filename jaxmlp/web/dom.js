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
  const body = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

export function crumbs(...parts) {
  document.getElementById("crumbs").replaceChildren(...parts.flatMap((p) => [" / ", p]));
}

// The pages of a run, and of its draw page (a sweep's model: `model`).
export const runURL = (path) => `/run?path=${encodeURIComponent(path)}`;
export const drawURL = (path, model) =>
  `/draw?path=${encodeURIComponent(path)}` + (model === undefined ? "" : `&model=${model}`);
