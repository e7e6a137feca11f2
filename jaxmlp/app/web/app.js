// jaxmlp serve's page: the runs under the served folder, one run's curves (redrawn as
// epochs arrive), its evaluation, and the draw page (draw.js). Plain DOM, no framework.
import { COLORS, lineChart } from "./plot.js";
import { crumbs, dict, drawURL, fixed, getJSON, h, list, maxOf, num, pct, runURL, text } from "./dom.js";
import { drawPage } from "./draw.js";

const app = document.getElementById("app");
const query = new URLSearchParams(location.search);

// Calls `load` now and every `ms` after it settles, while the page stays open.
function poll(load, ms) {
  const again = () => load().finally(() => setTimeout(again, ms));
  again();
}

const fileURL = (path, name) => `/files/${path === "." ? "" : path.split("/").map(encodeURIComponent).join("/") + "/"}${name}`;

function ago(seconds) {
  if (num(seconds) === null) return "–";
  const s = Date.now() / 1000 - seconds;
  if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  const day = new Date(seconds * 1000);
  return Number.isNaN(day.getTime()) ? "–" : day.toISOString().slice(0, 10);
}

function progress(r) {
  if (r.planned_steps) return `${text(r.step)} / ${text(r.planned_steps)} steps`;
  return `${text(r.epochs)} / ${text(r.planned_epochs)}`;
}

function errorBox(message) {
  return h("p", { class: "error", role: "alert" }, message);
}

// A note on the page saying what of the run's files it could not use.
function problem(message) {
  return h("p", { class: "error problem" }, message);
}

// One part of a page, or a note saying why it could not be drawn: a run file holding
// something no check foresaw costs that part, never the rest of the page.
function part(what, draw) {
  try {
    return draw();
  } catch (e) {
    return problem(`${what} could not be shown: ${e.message}`);
  }
}

// ---- the runs page ---------------------------------------------------------------------
// The single runs ticked on the runs page (kept while it redraws), and the link that
// overlays their curves.
const picked = new Set();
const compareURL = () => "/compare?" + [...picked].map((p) => `path=${encodeURIComponent(p)}`).join("&");

function pickBox(path) {
  const box = h("input", { type: "checkbox", class: "pick", "aria-label": `compare ${path}` });
  box.checked = picked.has(path);
  box.addEventListener("change", () => {
    if (box.checked) picked.add(path); else picked.delete(path);
    const link = document.getElementById("compare");
    if (link) { link.href = compareURL(); link.textContent = `compare the ${picked.size} ticked runs`; }
  });
  return box;
}

function runRow(r) {
  const path = text(r.path);
  if (r.error !== undefined)
    return h("tr", { class: "broken" }, h("td", {}, path), h("td", { colspan: 12 }, text(r.error)));
  // The columns of `jaxmlp runs` (its table is the same rows).
  const lrs = list(r.lr).map(num).filter((v) => v !== null);
  const params = num(r.params), seconds = num(r.seconds);
  return h("tr", {},
    h("td", {}, r.kind === "run" ? pickBox(path) : "", h("a", { href: runURL(path) }, path)),
    h("td", {}, r.kind === "sweep" ? `sweep of ${text(r.models)}` : "run"),
    h("td", {}, text(r.dataset)), h("td", { class: "arch" }, text(r.arch)),
    h("td", { class: "num" }, params === null ? "–" : params.toLocaleString("en-US")),
    h("td", {}, text(r.optimizer)),
    h("td", { class: "num" }, lrs.length === 0 ? "–" : lrs.length === 1 ? String(lrs[0])
      : `${lrs[0]}..${lrs[lrs.length - 1]} (${lrs.length})`),
    h("td", { class: "num" }, progress(r)),
    h("td", { class: "num" }, pct(r.val_acc)),
    h("td", { class: "num" }, pct(r.test_acc)),
    h("td", { class: "num" }, seconds === null ? "–" : `${Math.round(seconds)} s`),
    h("td", { class: "num" }, ago(r.modified)),
    h("td", {}, r.kind === "run" ? h("a", { href: drawURL(path) }, "draw") : ""));
}

async function runsPage() {
  crumbs();
  document.title = "jaxmlp: runs";
  let last = "";
  poll(async () => {
    try {
      const data = dict(await getJSON("/api/runs"));
      const textOf = JSON.stringify(data);
      if (textOf === last) return;
      last = textOf;
      const runs = list(data.runs), root = text(data.root);
      const rows = runs.map((r) => part("a row", () => runRow(dict(r))));
      app.replaceChildren(
        h("h1", {}, "Runs"),
        h("p", { class: "note" }, `under ${root}, newest first; updates by itself; tick runs, then `,
          h("a", { id: "compare", href: compareURL() }, `compare the ${picked.size} ticked runs`)),
        runs.length
          ? h("div", { class: "scroll" }, h("table", { class: "runs" },
            h("thead", {}, h("tr", {}, ...["run", "kind", "dataset", "arch", "params",
              "optimizer", "lr", "epochs", "val acc", "test acc", "time", "updated", ""].map((t) => h("th", {}, t)))),
            h("tbody", {}, rows)))
          : h("p", {}, "No runs here yet: ", h("code", {}, `jaxmlp train --out ${root}/NAME`),
            " makes one, and it appears here as soon as it has an epoch."));
    } catch (e) {
      app.replaceChildren(errorBox(e.message));
    }
  }, 2000);
}

// ---- one run or sweep ------------------------------------------------------------------
// The epoch records of `history` (objects with a numeric epoch), and how many others it held.
function epochs(history) {
  const all = list(history), records = all.map(dict).filter((r) => num(r.epoch) !== null);
  return { records, left: all.length - records.length };
}

function leftOut(left) {
  return left ? problem(`${left} of metrics.jsonl's records are not epoch records: left out of the charts`) : null;
}

const planned = (c) => (c.steps ? `${text(c.steps)} steps` : text(c.epochs));

function settingsTable(config) {
  return h("table", { class: "settings" }, h("tbody", {},
    Object.entries(config).filter(([, v]) => v !== null && v !== false && v !== undefined)
      .map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, JSON.stringify(v))))));
}

// jaxmlp.summary's table: each layer's units, activation, weight shape, parameters and
// multiply-adds per example, then the totals.
function modelTable(model) {
  const m = dict(model), count = (v) => (num(v) === null ? "–" : v.toLocaleString("en-US"));
  const rows = list(m.layers).map(dict).map((l, i) => h("tr", {}, h("td", {}, String(i + 1)),
    h("td", { class: "num" }, count(l.units)), h("td", {}, text(l.activation)),
    h("td", {}, list(l.weights).map(text).join(" × ")), h("td", { class: "num" }, count(l.params)),
    h("td", { class: "num" }, count(l.multiply_adds))));
  return h("table", { class: "model" },
    h("thead", {}, h("tr", {}, ...["layer", "units", "activation", "weights", "parameters", "multiply-adds"].map((t) => h("th", {}, t)))),
    h("tbody", {}, h("tr", {}, h("td", {}, "input"), h("td", { class: "num" }, count(m.in_dim)), h("td", {}, ""), h("td", {}, ""), h("td", {}, ""), h("td", {}, "")),
      ...rows,
      h("tr", { class: "total" }, h("td", {}, "total"), h("td", {}, ""), h("td", {}, ""), h("td", {}, ""),
        h("td", { class: "num" }, count(m.params)), h("td", { class: "num" }, count(m.multiply_adds)))));
}

function modelSection(model) {
  return model ? [h("h2", {}, "model"), part("the model's layers", () => modelTable(model))] : [];
}

function curves(history, keys, title, ylabel) {
  const series = keys.filter((k) => history.some((r) => num(r[k]) !== null)).map((k, i) => ({
    label: k, color: COLORS[i], points: history.map((r) => [r.epoch, num(r[k])]).filter(([, y]) => y !== null),
  }));
  return lineChart({ title, xlabel: "epoch", ylabel, series });
}

function confusionTable(confusion) {
  const rows = list(confusion).map(list);
  const max = Math.max(1, maxOf(rows.flat()) ?? 0);
  return h("table", { class: "confusion" },
    h("thead", {}, h("tr", {}, h("th", {}, "true \\ predicted"), ...rows.map((_, j) => h("th", {}, j)))),
    h("tbody", {}, rows.map((row, i) => h("tr", {}, h("th", {}, i), ...row.map((v, j) => {
      const n = num(v);
      const cell = h("td", { class: i === j ? "diag" : n ? "off" : "zero" }, n === null ? "–" : n);
      cell.style.setProperty("--level", String(Math.min(1, Math.max(0, (n ?? 0) / max))));
      return cell;
    })))));
}

function evaluationSection(evaluation, path, prefix, pictures, version, error) {
  if (error) return problem(text(error));
  if (!evaluation) return null;
  const ev = dict(evaluation), shown = list(pictures);
  const bars = list(ev.per_class_acc).map((a, c) => {
    const bar = h("span", { class: "bar" });
    bar.style.width = `${100 * Math.min(1, Math.max(0, num(a) ?? 0))}%`;
    return h("tr", {}, h("th", {}, c), h("td", { class: "barcell" }, bar), h("td", { class: "num" }, pct(a)));
  });
  const mistakes = list(ev.mistakes).slice(0, 24).map(dict).map((m) =>
    h("tr", {}, h("td", { class: "num" }, text(m.index)), h("td", {}, text(m.label)), h("td", {}, text(m.predicted)),
      h("td", { class: "num" }, fixed(m.confidence, 3))));
  // Only pictures already written; the version in the URL fetches a rewritten one anew.
  const picture = (name, alt) => shown.includes(name)
    ? h("a", { href: fileURL(path, prefix + name) }, h("img", { src: `${fileURL(path, prefix + name)}?v=${encodeURIComponent(text(version))}`, alt, class: "picture" }))
    : h("p", { class: "note" }, `${name} is not written yet`);
  return h("section", { class: "evaluation" },
    h("h2", {}, `jaxmlp eval: test accuracy ${pct(ev.test_acc)}, loss ${fixed(ev.test_loss, 4)}`),
    h("div", { class: "cols" },
      h("div", {}, h("h3", {}, "per class"), h("table", { class: "perclass" }, h("tbody", {}, bars))),
      h("div", {}, h("h3", {}, "confusion (rows: true class)"), confusionTable(ev.confusion))),
    h("h3", {}, "the most confident mistakes"),
    h("div", { class: "cols" },
      h("table", { class: "mistakes" }, h("thead", {}, h("tr", {}, ...["test index", "true", "predicted", "confidence"].map((t) => h("th", {}, t)))),
        h("tbody", {}, mistakes)),
      picture("mistakes.png", "the mistakes")),
    h("h3", {}, "first layer's weights"), picture("weights.png", "first-layer weights"));
}

function singleRun(view, path) {
  const c = dict(view.config), { records: hist, left } = epochs(view.history);
  // The best epoch by validation where the run holds a split (the test set chooses nothing).
  const last = hist[hist.length - 1], split = hist.some((r) => num(r.val_acc) !== null) ? "val" : "test";
  const best = maxOf(hist.map((r) => r[`${split}_acc`]));
  return [
    h("h1", {}, path),
    h("p", { class: "facts" }, `${text(c.dataset)} · ${text(c.arch)} · ${c.steps ? `step ${last ? text(last.step) : 0} of ${planned(c)} (epoch ${last ? text(last.epoch) : 0})` : `epoch ${last ? last.epoch : 0} of ${planned(c)}`}`,
      best === null ? "" : ` · best ${split === "val" ? "validation" : "test"} accuracy ${pct(best)}`,
      view.has_model === true ? h("a", { href: drawURL(path), class: "button" }, "draw a digit") : null),
    leftOut(left),
    h("div", { class: "cols" },
      h("div", { id: "acc-chart" }, part("the accuracy chart", () => curves(hist, ["train_acc", "test_acc", "val_acc"], "accuracy", "accuracy"))),
      h("div", { id: "loss-chart" }, part("the loss chart", () => curves(hist, ["train_loss", "test_loss", "val_loss"], "loss", "cross-entropy")))),
    part("jaxmlp eval's results", () => evaluationSection(view.evaluation, path, "", view.pictures, view.version, view.evaluation_error)) ||
      h("p", { class: "note" }, "Run ", h("code", {}, `jaxmlp eval ${text(view.folder)}`), " for the confusion matrix, per-class accuracy and mistakes."),
    ...modelSection(view.model),
    h("h2", {}, "settings"), part("the settings", () => settingsTable(c)),
  ];
}

// A sweep's view as the charts and tables use it: only well-formed models, settings and
// epoch records, each epoch's per-model records a list; `notes` says what was left out.
function sweepOf(view) {
  const models = list(view.models).map(dict).filter((m) => Number.isInteger(m.index) && m.index >= 0);
  const { records, left } = epochs(view.history);
  const history = records.map((r) => ({ ...r, models: list(r.models) }));
  const short = history.filter((r) => r.models.length !== models.length).length;
  const notes = [leftOut(left)];
  if (short) notes.push(problem(`${short} of metrics.jsonl's epoch records do not hold one result per model: their missing models are left out`));
  const settings = list(view.settings).map(dict).map((s) => ({ lr: s.lr, momentum: s.momentum, models: list(s.models).filter(Number.isInteger) }));
  return { models, history, settings, notes: notes.filter(Boolean) };
}

// Model `i`'s record in epoch record `r` ({} when it has none).
const modelAt = (r, i) => dict(r.models[i]);

// Per epoch, the mean and sample std (ddof 1, as summary.json) of `key` over `models`.
function band(history, models, key) {
  const mean = [], lohi = [];
  for (const r of history) {
    const v = models.map((i) => modelAt(r, i)).filter((m) => !m.diverged && num(m[key]) !== null).map((m) => m[key]);
    if (!v.length) continue;
    const mu = v.reduce((a, b) => a + b, 0) / v.length;
    const sd = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mu) ** 2, 0) / (v.length - 1)) : 0;
    mean.push([r.epoch, mu]);
    lohi.push([r.epoch, mu - sd, mu + sd]);
  }
  return { mean, lohi };
}

// The settings whose last mean accuracy (`key`) is more than 0.1 below the best setting's:
// drawn, they would stretch the axis until the others could not be told apart (as curves.png).
function farBelow(sweep, key) {
  const last = sweep.settings.map((s) => { const m = band(sweep.history, s.models, key).mean; return m.length ? m[m.length - 1][1] : null; });
  const best = maxOf(last);
  return new Set(best === null ? [] : last.flatMap((v, k) => (v !== null && v < best - 0.1 ? [k] : [])));
}

function sweepChart(sweep, key, title, ylabel, hidden = new Set()) {
  const series = [], bands = [];
  sweep.settings.forEach((s, k) => {
    const color = COLORS[k % COLORS.length];
    if (hidden.has(k)) {  // named in the legend, not drawn
      series.push({ label: `lr ${text(s.lr)}, momentum ${text(s.momentum)}: below the axis`, color, points: [] });
      return;
    }
    for (const i of s.models)
      series.push({ label: null, color, thin: true, points: sweep.history.map((r) => [r.epoch, modelAt(r, i)])
        .filter(([, m]) => !m.diverged && num(m[key]) !== null).map(([x, m]) => [x, m[key]]) });
    const { mean, lohi } = band(sweep.history, s.models, key);
    bands.push({ color, points: lohi });
    series.push({ label: `lr ${text(s.lr)}, momentum ${text(s.momentum)}: mean ± std of ${s.models.length}`, color, points: mean });
  });
  return lineChart({ title, xlabel: "epoch", ylabel, series, bands });
}

// summary.json's settings; validation columns where the sweep had a split; the setting
// the sweep chose (summary.json's "best") marked.
function summaryTable(summary) {
  const settings = list(summary.settings).map(dict), best = dict(summary.best);
  const val = settings.some((s) => num(s.val_acc_mean) !== null || num(s.ensemble_val_acc) !== null);
  const std = (v) => (num(v) === null ? "–" : (100 * v).toFixed(2));
  const chosen = (s) => best.lr !== undefined && s.lr === best.lr && s.momentum === best.momentum;
  const heads = ["lr", "momentum", "seeds", ...(val ? ["mean val acc", "val ensemble"] : []),
    "mean test acc", "std (points)", "test ensemble", ""];
  return h("table", { class: "summary" },
    h("thead", {}, h("tr", {}, ...heads.map((t) => h("th", {}, t)))),
    h("tbody", {}, settings.map((s) => h("tr", chosen(s) ? { class: "best" } : {},
      h("td", {}, text(s.lr)), h("td", {}, text(s.momentum)),
      h("td", { class: "num" }, list(s.seeds).length),
      ...(val ? [h("td", { class: "num" }, pct(s.val_acc_mean)), h("td", { class: "num" }, pct(s.ensemble_val_acc))] : []),
      h("td", { class: "num" }, pct(s.test_acc_mean)), h("td", { class: "num" }, std(s.test_acc_std)),
      h("td", { class: "num" }, pct(s.ensemble_test_acc)),
      h("td", {}, chosen(s) ? `chosen (by ${best.chosen_by === "ensemble_val_acc" ? "validation" : "test"} ensemble)` : "")))));
}

function sweepRun(view, path) {
  const c = dict(view.config), grid = dict(view.grid), sweep = sweepOf(view);
  const evaluations = dict(view.evaluations), errors = dict(view.evaluation_errors), pictures = dict(view.model_pictures);
  const last = sweep.history[sweep.history.length - 1];
  // Validation first, where the sweep holds a split: it is what chooses the best setting.
  const split = sweep.history.some((r) => r.models.some((m) => num(dict(m).val_acc) !== null)) ? "val" : "test";
  const splitName = split === "val" ? "validation" : "test", hidden = farBelow(sweep, `${split}_acc`);
  const rows = sweep.models.map((m) => part(`model ${m.index}'s row`, () => {
    const now = last && last.models[m.index] !== undefined ? modelAt(last, m.index) : null;
    const ev = dict(evaluations[String(m.index)]);
    const bestAcc = maxOf(sweep.history.map((r) => modelAt(r, m.index).test_acc));
    return h("tr", {}, h("td", { class: "num" }, m.index), h("td", { class: "num" }, text(m.seed)),
      h("td", { class: "num" }, text(m.lr)), h("td", { class: "num" }, text(m.momentum)),
      ...(split === "val" ? [h("td", { class: "num" }, now && !now.diverged ? pct(now.val_acc) : "–")] : []),
      h("td", { class: "num" }, now ? (now.diverged ? "diverged" : pct(now.test_acc)) : "–"),
      h("td", { class: "num" }, pct(bestAcc)),
      h("td", { class: "num" }, pct(ev.test_acc)),
      h("td", {}, now && !now.diverged ? h("a", { href: drawURL(path, m.index) }, "draw") : ""));
  }));
  const evaluated = Object.keys({ ...evaluations, ...errors }).map((i) =>
    h("details", {}, h("summary", {}, `model ${i}: jaxmlp eval's results`),
      part(`model ${i}'s results`, () => evaluationSection(evaluations[i], path, `models/${i}/`, pictures[i], view.version, errors[i]))));
  return [
    h("h1", {}, path),
    h("p", { class: "facts" }, `sweep of ${sweep.models.length} models · ${text(c.dataset)} · ${text(c.arch)} · order ${text(view.order)} · ${c.steps ? `step ${last ? text(last.step) : 0} of ${planned(c)} (epoch ${last ? last.epoch : 0})` : `epoch ${last ? last.epoch : 0} of ${planned(c)}`}`),
    sweep.notes,
    h("div", { class: "cols" },
      h("div", { id: "acc-chart" }, part("the accuracy chart", () => sweepChart(sweep, `${split}_acc`, `${splitName} accuracy, every model`, "accuracy", hidden))),
      h("div", { id: "loss-chart" }, part("the loss chart", () => sweepChart(sweep, `${split}_loss`, `${splitName} loss, every model`, "cross-entropy", hidden)))),
    split === "val" ? h("div", { class: "cols" },
      h("div", { id: "test-chart" }, part("the test accuracy chart", () => sweepChart(sweep, "test_acc", "test accuracy, every model", "accuracy", farBelow(sweep, "test_acc"))))) : null,
    view.summary ? [h("h2", {}, "summary"), part("the summary", () => summaryTable(dict(view.summary)))] : null,
    h("h2", {}, "models"),
    h("table", { class: "models" }, h("thead", {}, h("tr", {}, ...["model", "seed", "lr", "momentum", ...(split === "val" ? ["val acc now"] : []), "test acc now", "best test", "eval", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)),
    evaluated,
    ...modelSection(view.model),
    h("h2", {}, "settings"),
    part("the settings", () => settingsTable({ ...c, seed: grid.seeds, lr: grid.lrs, momentum: grid.momenta })),
  ];
}

async function runPage(path) {
  crumbs(h("a", { href: runURL(path) }, path));
  document.title = `jaxmlp: ${path}`;
  let version = null;
  poll(async () => {
    try {
      const answer = await getJSON(`/api/run?path=${encodeURIComponent(path)}`), view = dict(answer);
      if (view.version !== undefined && view.version === version) return;  // unchanged since the last look
      version = view.version ?? null;
      const y = window.scrollY;
      const page = answer === view ? [] : [problem("the server's answer is not a run's view")];
      page.push(...(view.kind === "sweep" ? sweepRun(view, path) : singleRun(view, path)));
      app.replaceChildren(...page.flat(2).filter(Boolean));
      window.scrollTo(0, y);
      app.dataset.version = text(version);
    } catch (e) {
      app.replaceChildren(errorBox(e.message));
      version = null;
    }
  }, 1000);
}

// ---- runs side by side: their curves on one chart, and the settings that differ --------
async function comparePage(paths) {
  crumbs(h("span", {}, "compare"));
  document.title = "jaxmlp: compare";
  poll(async () => {
    const views = await Promise.all(paths.map(async (path) => {
      try {
        return { path, view: dict(await getJSON(`/api/run?path=${encodeURIComponent(path)}`)) };
      } catch (e) {
        return { path, error: e.message };
      }
    }));
    const good = views.filter((v) => v.view && v.view.kind === "run");
    const page = [h("h1", {}, `Compare ${paths.length} runs`)];
    for (const v of views.filter((v) => !good.includes(v)))
      page.push(problem(`${v.path}: ${v.error ?? "not a single run"}`));
    for (const [key, name] of [["test_acc", "test accuracy"], ["val_acc", "validation accuracy"]]) {
      const series = good.map((v, i) => ({
        label: v.path, color: COLORS[i % COLORS.length],
        points: epochs(v.view.history).records.map((r) => [r.epoch, num(r[key])]).filter(([, y]) => y !== null),
      })).filter((s) => s.points.length);
      if (series.length)
        page.push(h("div", { id: `compare-${key}` }, part(name, () => lineChart({ title: name, xlabel: "epoch", ylabel: name, series }))));
    }
    // The settings that differ between the runs, one column per run.
    const configs = good.map((v) => dict(v.view.config));
    const keys = [...new Set(configs.flatMap(Object.keys))].filter(
      (k) => new Set(configs.map((c) => JSON.stringify(c[k]))).size > 1);
    if (keys.length)
      page.push(h("table", { class: "settings differ" },
        h("thead", {}, h("tr", {}, h("th", {}, "setting"), ...good.map((v) => h("th", {}, v.path)))),
        h("tbody", {}, keys.map((k) => h("tr", {}, h("th", {}, k),
          ...configs.map((c) => h("td", {}, JSON.stringify(c[k] ?? null))))))));
    app.replaceChildren(...page);
  }, 2000);
}

const routes = {
  "/compare": () => comparePage(query.getAll("path")),
  "/": () => runsPage(),
  "/run": () => runPage(query.get("path") || "."),
  "/draw": () => drawPage(app, query.get("path") || ".", query.get("model") ?? undefined),
};
(routes[location.pathname] || (() => app.replaceChildren(errorBox("no such page"))))();
