// jaxmlp serve's page: the runs under the served folder, one run's curves (redrawn as
// epochs arrive), its evaluation, and the draw page (draw.js). Plain DOM, no framework.
import { COLORS, lineChart } from "./plot.js";
import { crumbs, drawURL, getJSON, h, runURL } from "./dom.js";
import { drawPage } from "./draw.js";

const app = document.getElementById("app");
const query = new URLSearchParams(location.search);

// Calls `load` now and every `ms` after it settles, while the page stays open.
function poll(load, ms) {
  const again = () => load().finally(() => setTimeout(again, ms));
  again();
}

const pct = (v) => (typeof v === "number" ? (100 * v).toFixed(2) + "%" : "–");
const fileURL = (path, name) => `/files/${path === "." ? "" : path.split("/").map(encodeURIComponent).join("/") + "/"}${name}`;

function ago(seconds) {
  const s = Date.now() / 1000 - seconds;
  if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(seconds * 1000).toISOString().slice(0, 10);
}

function progress(r) {
  if (r.planned_steps) return `${r.step} / ${r.planned_steps} steps`;
  return `${r.epochs} / ${r.planned_epochs}`;
}

function errorBox(message) {
  return h("p", { class: "error", role: "alert" }, message);
}

// ---- the runs page ---------------------------------------------------------------------
async function runsPage() {
  crumbs();
  document.title = "jaxmlp: runs";
  let last = "";
  poll(async () => {
    try {
      const data = await getJSON("/api/runs");
      const text = JSON.stringify(data);
      if (text === last) return;
      last = text;
      const rows = data.runs.map((r) =>
        r.error
          ? h("tr", { class: "broken" }, h("td", {}, r.path), h("td", { colspan: 8 }, r.error))
          : h("tr", {},
            h("td", {}, h("a", { href: runURL(r.path) }, r.path)),
            h("td", {}, r.kind === "sweep" ? `sweep of ${r.models}` : "run"),
            h("td", {}, r.dataset), h("td", { class: "arch" }, r.arch),
            h("td", { class: "num" }, progress(r)),
            h("td", { class: "num" }, pct(r.best_test_acc)),
            h("td", { class: "num" }, pct(r.best_val_acc)),
            h("td", { class: "num" }, ago(r.modified)),
            h("td", {}, r.kind === "run" ? h("a", { href: drawURL(r.path) }, "draw") : "")));
      app.replaceChildren(
        h("h1", {}, "Runs"),
        h("p", { class: "note" }, `under ${data.root}, newest first; updates by itself`),
        data.runs.length
          ? h("div", { class: "scroll" }, h("table", { class: "runs" },
            h("thead", {}, h("tr", {}, ...["run", "kind", "dataset", "arch", "epochs",
              "best test acc", "best val acc", "updated", ""].map((t) => h("th", {}, t)))),
            h("tbody", {}, rows)))
          : h("p", {}, "No runs here yet: ", h("code", {}, `jaxmlp train --out ${data.root}/NAME`),
            " makes one, and it appears here as soon as it has an epoch."));
    } catch (e) {
      app.replaceChildren(errorBox(e.message));
    }
  }, 2000);
}

// ---- one run or sweep ------------------------------------------------------------------
function settingsTable(config) {
  return h("table", { class: "settings" }, h("tbody", {},
    Object.entries(config).filter(([, v]) => v !== null && v !== false)
      .map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, JSON.stringify(v))))));
}

function curves(history, keys, title, ylabel) {
  const series = keys.filter((k) => history.some((r) => typeof r[k] === "number")).map((k, i) => ({
    label: k, color: COLORS[i], points: history.map((r) => [r.epoch, r[k]]).filter(([, y]) => typeof y === "number"),
  }));
  return lineChart({ title, xlabel: "epoch", ylabel, series });
}

function confusionTable(confusion) {
  const max = Math.max(1, ...confusion.flat());
  return h("table", { class: "confusion" },
    h("thead", {}, h("tr", {}, h("th", {}, "true \\ predicted"), ...confusion.map((_, j) => h("th", {}, j)))),
    h("tbody", {}, confusion.map((row, i) => h("tr", {}, h("th", {}, i), ...row.map((n, j) => {
      const cell = h("td", { class: i === j ? "diag" : n ? "off" : "zero" }, n);
      cell.style.setProperty("--level", String(n / max));
      return cell;
    })))));
}

function evaluationSection(evaluation, path, prefix, pictures, version, error) {
  if (error) return h("p", { class: "error" }, error);
  if (!evaluation) return null;
  const bars = evaluation.per_class_acc.map((a, c) => {
    const bar = h("span", { class: "bar" });
    bar.style.width = `${typeof a === "number" ? 100 * a : 0}%`;
    return h("tr", {}, h("th", {}, c), h("td", { class: "barcell" }, bar), h("td", { class: "num" }, pct(a)));
  });
  const mistakes = (evaluation.mistakes || []).slice(0, 24).map((m) =>
    h("tr", {}, h("td", { class: "num" }, m.index), h("td", {}, m.label), h("td", {}, m.predicted),
      h("td", { class: "num" }, m.confidence.toFixed(3))));
  // Only pictures already written; the version in the URL fetches a rewritten one anew.
  const picture = (name, alt) => pictures.includes(name)
    ? h("a", { href: fileURL(path, prefix + name) }, h("img", { src: `${fileURL(path, prefix + name)}?v=${version}`, alt, class: "picture" }))
    : h("p", { class: "note" }, `${name} is not written yet`);
  return h("section", { class: "evaluation" },
    h("h2", {}, `jaxmlp eval: test accuracy ${pct(evaluation.test_acc)}, loss ${evaluation.test_loss.toFixed(4)}`),
    h("div", { class: "cols" },
      h("div", {}, h("h3", {}, "per class"), h("table", { class: "perclass" }, h("tbody", {}, bars))),
      h("div", {}, h("h3", {}, "confusion (rows: true class)"), confusionTable(evaluation.confusion))),
    h("h3", {}, "the most confident mistakes"),
    h("div", { class: "cols" },
      h("table", { class: "mistakes" }, h("thead", {}, h("tr", {}, ...["test index", "true", "predicted", "confidence"].map((t) => h("th", {}, t)))),
        h("tbody", {}, mistakes)),
      picture("mistakes.png", "the mistakes")),
    h("h3", {}, "first layer's weights"), picture("weights.png", "first-layer weights"));
}

function singleRun(view) {
  const c = view.config, hist = view.history;
  const best = Math.max(...hist.map((r) => r.test_acc));
  return [
    h("h1", {}, view.path),
    h("p", { class: "facts" }, `${c.dataset} · ${c.arch} · epoch ${hist.length ? hist[hist.length - 1].epoch : 0} of ${c.steps ? `${c.steps} steps` : c.epochs}`,
      hist.length ? ` · best test accuracy ${pct(best)}` : "",
      view.has_model ? h("a", { href: drawURL(view.path), class: "button" }, "draw a digit") : null),
    h("div", { class: "cols" },
      h("div", { id: "acc-chart" }, curves(hist, ["train_acc", "test_acc", "val_acc"], "accuracy", "accuracy")),
      h("div", { id: "loss-chart" }, curves(hist, ["train_loss", "test_loss", "val_loss"], "loss", "cross-entropy"))),
    evaluationSection(view.evaluation, view.path, "", view.pictures, view.version, view.evaluation_error) ||
      h("p", { class: "note" }, "Run ", h("code", {}, `jaxmlp eval ${view.folder}`), " for the confusion matrix, per-class accuracy and mistakes."),
    h("h2", {}, "settings"), settingsTable(c),
  ];
}

// Per epoch, the mean and sample std (ddof 1, as summary.json) of `key` over `models`.
function band(history, models, key) {
  const mean = [], lohi = [];
  for (const r of history) {
    const v = models.map((i) => r.models[i]).filter((m) => m && !m.diverged && typeof m[key] === "number").map((m) => m[key]);
    if (!v.length) continue;
    const mu = v.reduce((a, b) => a + b, 0) / v.length;
    const sd = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mu) ** 2, 0) / (v.length - 1)) : 0;
    mean.push([r.epoch, mu]);
    lohi.push([r.epoch, mu - sd, mu + sd]);
  }
  return { mean, lohi };
}

function sweepChart(view, key, title, ylabel) {
  const series = [], bands = [];
  view.settings.forEach((s, k) => {
    const color = COLORS[k % COLORS.length];
    for (const i of s.models)
      series.push({ label: null, color, thin: true, points: view.history.filter((r) => !r.models[i].diverged).map((r) => [r.epoch, r.models[i][key]]) });
    const { mean, lohi } = band(view.history, s.models, key);
    bands.push({ color, points: lohi });
    series.push({ label: `lr ${s.lr}, momentum ${s.momentum}: mean ± std of ${s.models.length}`, color, points: mean });
  });
  return lineChart({ title, xlabel: "epoch", ylabel, series, bands });
}

function sweepRun(view) {
  const c = view.config, last = view.history[view.history.length - 1];
  const rows = view.models.map((m) => {
    const now = last ? last.models[m.index] : null, ev = view.evaluations[String(m.index)] || null;
    const bestAcc = Math.max(...view.history.map((r) => r.models[m.index].test_acc).filter((v) => typeof v === "number"));
    return h("tr", {}, h("td", { class: "num" }, m.index), h("td", { class: "num" }, m.seed),
      h("td", { class: "num" }, m.lr), h("td", { class: "num" }, m.momentum),
      h("td", { class: "num" }, now ? (now.diverged ? "diverged" : pct(now.test_acc)) : "–"),
      h("td", { class: "num" }, view.history.length ? pct(bestAcc) : "–"),
      h("td", { class: "num" }, ev ? pct(ev.test_acc) : "–"),
      h("td", {}, now && !now.diverged ? h("a", { href: drawURL(view.path, m.index) }, "draw") : ""));
  });
  const summary = view.summary && h("table", { class: "summary" },
    h("thead", {}, h("tr", {}, ...["lr", "momentum", "seeds", "mean test acc", "std (points)", "ensemble"].map((t) => h("th", {}, t)))),
    h("tbody", {}, view.summary.settings.map((s) => h("tr", {}, h("td", {}, s.lr), h("td", {}, s.momentum),
      h("td", { class: "num" }, s.seeds.length), h("td", { class: "num" }, pct(s.test_acc_mean)),
      h("td", { class: "num" }, typeof s.test_acc_std === "number" ? (100 * s.test_acc_std).toFixed(2) : "–"),
      h("td", { class: "num" }, pct(s.ensemble_test_acc))))));
  const evaluated = Object.entries(view.evaluations).map(([i, ev]) =>
    h("details", {}, h("summary", {}, `model ${i}: jaxmlp eval's results`),
      evaluationSection(ev, view.path, `models/${i}/`, view.model_pictures[i], view.version, view.evaluation_errors[i])));
  return [
    h("h1", {}, view.path),
    h("p", { class: "facts" }, `sweep of ${view.models.length} models · ${c.dataset} · ${c.arch} · order ${view.order} · epoch ${last ? last.epoch : 0} of ${c.steps ? `${c.steps} steps` : c.epochs}`),
    h("div", { class: "cols" },
      h("div", { id: "acc-chart" }, sweepChart(view, "test_acc", "test accuracy, every model", "accuracy")),
      h("div", { id: "loss-chart" }, sweepChart(view, "test_loss", "test loss, every model", "cross-entropy"))),
    summary ? [h("h2", {}, "summary"), summary] : null,
    h("h2", {}, "models"),
    h("table", { class: "models" }, h("thead", {}, h("tr", {}, ...["model", "seed", "lr", "momentum", "test acc now", "best", "eval", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)),
    evaluated,
    h("h2", {}, "settings"),
    settingsTable({ ...c, seed: view.grid.seeds, lr: view.grid.lrs, momentum: view.grid.momenta }),
  ];
}

async function runPage(path) {
  crumbs(h("a", { href: runURL(path) }, path));
  document.title = `jaxmlp: ${path}`;
  let version = null;
  poll(async () => {
    try {
      const view = await getJSON(`/api/run?path=${encodeURIComponent(path)}`);
      if (view.version === version) return;  // unchanged since the last look
      version = view.version;
      const y = window.scrollY;
      app.replaceChildren(...(view.kind === "sweep" ? sweepRun(view) : singleRun(view)).flat().filter(Boolean));
      window.scrollTo(0, y);
      app.dataset.version = version;
    } catch (e) {
      app.replaceChildren(errorBox(e.message));
      version = null;
    }
  }, 1000);
}

const routes = {
  "/": () => runsPage(),
  "/run": () => runPage(query.get("path") || "."),
  "/draw": () => drawPage(app, query.get("path") || ".", query.get("model") ?? undefined),
};
(routes[location.pathname] || (() => app.replaceChildren(errorBox("no such page"))))();
