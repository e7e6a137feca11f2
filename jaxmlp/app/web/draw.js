// The draw page: a canvas to draw a digit on; on every stroke the 28×28 input the network
// sees, its top 3 classes and its hidden layers' activations, computed here (digit.js);
// when a stroke ends, the same pixels go to the server's jaxmlp.predict and the page shows
// how far Python's probabilities are from its own.
import { crumbs, getJSON, h, list, runURL, text } from "./dom.js";
import { forward, loadModel, prepareDigit } from "./digit.js";

const PAD = 280, AGREE = 1e-4;  // the canvas's pixels a side; the largest difference allowed
const IDLE = "Python's check comes when a stroke ends.";

function heat(v) {  // 0..1 to black → orange → pale yellow
  const t = Math.min(1, Math.max(0, v));
  return [Math.round(255 * Math.min(1, 1.6 * t)), Math.round(255 * t * t), Math.round(160 * t ** 4)];
}

function paintLayer(canvas, values) {
  const n = values.length, cols = Math.ceil(Math.sqrt(n * 4)), rows = Math.ceil(n / cols);
  canvas.width = cols;
  canvas.height = rows;
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(cols, rows);
  for (let i = 3; i < img.data.length; i += 4) img.data[i] = 255;  // the cells past n: black
  const top = Math.max(1e-12, ...Array.from(values, Math.abs));
  values.forEach((v, i) => {
    const [r, g, b] = heat(Math.abs(v) / top);
    img.data.set([r, g, b, 255], 4 * i);
  });
  ctx.putImageData(img, 0, 0);
}

function paintInput(canvas, pixels) {
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(28, 28);
  pixels.forEach((v, i) => img.data.set([v, v, v, 255], 4 * i));
  ctx.putImageData(img, 0, 0);
}

export async function drawPage(app, path, model) {
  const which = `path=${encodeURIComponent(path)}` + (model === undefined ? "" : `&model=${encodeURIComponent(model)}`);
  crumbs(h("a", { href: runURL(path) }, path),
    model === undefined ? "draw" : `model ${model}: draw`);
  document.title = `jaxmlp: draw for ${path}`;
  let net;
  try {
    net = loadModel(await getJSON(`/api/model?${which}`));
  } catch (e) {
    app.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    return;
  }
  if (!net.digits) {
    app.replaceChildren(h("p", { class: "error", role: "alert" },
      `This model takes ${text(net.dataset)} images (${list(net.image_shape).map(text).join("×")}): the draw page is for handwriting models, 28×28 grey (MNIST, EMNIST, KMNIST).`));
    return;
  }
  const pad = h("canvas", { id: "pad", width: PAD, height: PAD, "aria-label": "draw a digit here" });
  const input = h("canvas", { id: "input", width: 28, height: 28 });
  const top = h("div", { id: "top" }), bars = h("table", { class: "probs" });
  const python = h("p", { id: "python", dataset: { state: "idle" } }, IDLE);
  const notice = h("p", { class: "note", id: "notice" });
  const answer = h("div", { id: "answer", dataset: { state: "empty" } }, top, bars, python, notice);
  const hidden = net.arch.slice(0, -1).map(({ units, activation }, i) => {
    const canvas = h("canvas", { class: "layer", id: `layer-${i}` });
    return { canvas, units, box: h("div", { class: "layerbox" }, h("h4", {}, `layer ${i + 1}: ${units} ${activation}`), canvas) };
  });
  const clear = h("button", { id: "clear", type: "button" }, "clear");
  app.replaceChildren(
    h("h1", {}, `Draw a digit for ${path}${model === undefined ? "" : `, model ${model}`}`),
    h("p", { class: "note" }, `${net.arch.map((l) => `${l.units}:${l.activation}`).join(",")} on ${net.dataset}. `,
      "The page prepares your drawing as jaxmlp predict prepares an image (cropped to the ink, fitted to 20×20, centred by centre of mass) and runs the network itself."),
    h("div", { class: "cols draw" },
      h("div", {}, pad, h("div", {}, clear)),
      h("div", {}, h("h3", {}, "what the network sees"), input),
      answer),
    ...(hidden.length ? [h("section", {}, h("h3", {}, "hidden layers (brighter: larger |activation|)"),
      h("div", { class: "layers" }, hidden.map((l) => l.box)))] : []));

  const ctx = pad.getContext("2d", { willReadFrequently: true });
  const blank = () => {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, PAD, PAD);
    ctx.fillStyle = "#fff";  // the ink again: a tap draws a white dot
  };
  blank();
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 20;
  ctx.lineCap = ctx.lineJoin = "round";
  const state = { pixels: null, probs: null, layers: null, python: null, maxDiff: null, strokes: 0,
    canvasPNG: () => pad.toDataURL("image/png") };
  window.jaxmlpDraw = state;  // for the browser tests, and curious users' consoles

  let seq = 0, frame = 0, checkAfter = false;
  function update() {
    frame = 0;
    const rgba = ctx.getImageData(0, 0, PAD, PAD).data, gray = new Float64Array(PAD * PAD);
    for (let i = 0; i < gray.length; i++) gray[i] = rgba[4 * i];  // grey ink: r = g = b
    const prepared = prepareDigit(gray, PAD, PAD);
    seq++;
    if (prepared.error) {
      Object.assign(state, { pixels: null, probs: null, layers: null, python: null, maxDiff: null });
      answer.dataset.state = "empty";
      checkAfter = false;
      python.dataset.state = "idle";
      python.textContent = IDLE;
      top.replaceChildren(h("p", { class: "note" }, prepared.error));
      bars.replaceChildren();
      paintInput(input, new Uint8Array(784));
      hidden.forEach((l) => paintLayer(l.canvas, new Float64Array(l.units)));
      return;
    }
    const { layers, probs } = forward(net, prepared.pixels);
    Object.assign(state, { pixels: Array.from(prepared.pixels), probs, layers: layers.map((l) => Array.from(l)) });
    paintInput(input, prepared.pixels);
    hidden.forEach((l, i) => paintLayer(l.canvas, layers[i]));
    const order = probs.map((p, c) => [p, c]).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    top.replaceChildren(h("div", { class: "guess", id: "guess" }, String(order[0][1])),
      h("ol", { class: "top3" }, order.slice(0, 3).map(([p, c]) => h("li", {}, `${c}: ${(100 * p).toFixed(1)}%`))));
    bars.replaceChildren(...probs.map((p, c) => {
      const bar = h("span", { class: "bar" });
      bar.style.width = `${100 * p}%`;
      return h("tr", { class: c === order[0][1] ? "best" : "" }, h("th", {}, c), h("td", { class: "barcell" }, bar));
    }));
    answer.dataset.state = "ready";
    if (checkAfter) { checkAfter = false; check(seq, state.pixels, probs); }
  }
  function schedule(checkPython = false) {
    checkAfter = checkAfter || checkPython;
    if (!frame) frame = requestAnimationFrame(update);
  }
  async function check(mine, pixels, probs) {
    python.dataset.state = "pending";
    python.textContent = "asking Python's jaxmlp.predict…";
    try {
      const got = await getJSON(`/api/predict?${which}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ pixels }),
      });
      if (mine !== seq) return;  // drawn on since: a newer check follows
      if (got.version !== net.version) {  // the run has saved new weights since the page loaded
        net = loadModel(await getJSON(`/api/model?${which}`));
        notice.textContent = "The run saved new weights: the page now uses them.";
        checkAfter = true;
        update();
        return;
      }
      const diff = Math.max(...got.probs.map((p, c) => Math.abs(p - probs[c])));
      Object.assign(state, { python: got.probs, maxDiff: diff });
      python.dataset.state = diff <= AGREE ? "agree" : "differ";
      python.textContent = `Python's jaxmlp.predict: ${got.top3[0].class} (${(100 * got.top3[0].prob).toFixed(1)}%); ` +
        `largest difference from this page's probabilities ${diff.toExponential(1)} ` + (diff <= AGREE ? "(agrees)" : "(DIFFERS)");
    } catch (e) {
      if (mine !== seq) return;
      python.dataset.state = "error";
      python.textContent = `Python's check failed: ${e.message}`;
    }
  }

  let drawing = false, last = null;
  const at = (e) => {
    const r = pad.getBoundingClientRect();
    return [((e.clientX - r.left) * PAD) / r.width, ((e.clientY - r.top) * PAD) / r.height];
  };
  pad.addEventListener("pointerdown", (e) => {
    drawing = true;
    python.dataset.state = "drawing";
    pad.setPointerCapture(e.pointerId);
    last = at(e);
    ctx.beginPath();
    ctx.arc(last[0], last[1], ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
    schedule();
  });
  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const p = at(e);
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...p);
    ctx.stroke();
    last = p;
    schedule();
  });
  const end = () => {
    if (!drawing) return;
    drawing = false;
    state.strokes++;
    Object.assign(state, { python: null, maxDiff: null });  // until this stroke's check is in
    python.dataset.state = "pending";
    schedule(true);
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  clear.addEventListener("click", () => { blank(); schedule(); });
  update();
}
