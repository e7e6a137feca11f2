// The network's input from a drawing, and the network itself, in the browser.
//
// prepareDigit is `jaxmlp predict`'s preparation of an image file (jaxmlp/_predict.py,
// _load_image with _cut_out and _normalise) step for step, so that the 28×28 input here is
// the one Python makes of the same drawing saved as a PNG: background and ink levels from
// percentiles, the ink's connected pieces, a crop to them, contrast stretched to the ink's
// 90th percentile, then MNIST's normalisation: scaled to fit 20×20 with Pillow's bilinear
// filter (reproduced below, float32 passes and all) and centred by centre of mass in 28×28.
// forward is jaxmlp.forward: each layer z = a W + b, a = f(z), then the softmax.

const SIDE = 28, BOX = 20, INK_LEVEL = 32;

// Python's round() and numpy's rint: halves to even.
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// numpy.percentile(values, q) with its default (linear) method, numpy's arithmetic.
function percentile(sorted, q) {
  const n = sorted.length, t = q / 100;
  const index = n * t + (1 + t * -1) - 1;
  const lo = Math.floor(index), hi = Math.min(lo + 1, n - 1), g = index - lo;
  const a = sorted[lo], b = sorted[hi], d = b - a;
  return g >= 0.5 ? b - d * (1 - g) : a + d * g;
}

// The values in ascending order: a counting sort when they are all grey levels 0..255 (a
// canvas's, ten times faster than sorting 78,400 floats on every stroke), else a sort.
function ascending(values) {
  const counts = new Uint32Array(256);
  for (const v of values) {
    if (!(Number.isInteger(v) && v >= 0 && v <= 255)) return Float64Array.from(values).sort();
    counts[v]++;
  }
  const out = new Float64Array(values.length);
  for (let v = 0, i = 0; v < 256; v++) out.fill(v, i, (i += counts[v]));
  return out;
}

function median(sorted) {  // numpy.median: the mean of the middle two when n is even
  const n = sorted.length, m = n >> 1;
  return n % 2 ? sorted[m] : (sorted[m - 1] + sorted[m]) / 2;
}

// scipy.ndimage.maximum_filter of a 0/1 image with a size × size square (size odd).
function dilate(mask, h, w, size) {
  const r = (size - 1) / 2, rows = new Uint8Array(h * w), out = new Uint8Array(h * w);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let v = 0;
      for (let i = Math.max(0, x - r); i <= Math.min(w - 1, x + r) && !v; i++) v = mask[y * w + i];
      rows[y * w + x] = v;
    }
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let v = 0;
      for (let j = Math.max(0, y - r); j <= Math.min(h - 1, y + r) && !v; j++) v = rows[j * w + x];
      out[y * w + x] = v;
    }
  return out;
}

// predict.py's _pieces: the ink above `level` (4-connected pieces), without pieces at the
// image's edge when others remain, nor specks under 1/20 of the largest piece.
function pieces(gray, h, w, level) {
  const labels = new Int32Array(h * w), sizes = [0], stack = [];
  for (let p = 0; p < h * w; p++) {
    if (labels[p] || !(gray[p] > level)) continue;
    const label = sizes.length;
    let count = 0;
    labels[p] = label;
    stack.push(p);
    while (stack.length) {
      const q = stack.pop(), y = (q / w) | 0, x = q - y * w;
      count++;
      for (const [ok, r] of [[x > 0, q - 1], [x < w - 1, q + 1], [y > 0, q - w], [y < h - 1, q + w]])
        if (ok && !labels[r] && gray[r] > level) { labels[r] = label; stack.push(r); }
    }
    sizes.push(count);
  }
  const atEdge = new Uint8Array(sizes.length);
  for (let x = 0; x < w; x++) { atEdge[labels[x]] = 1; atEdge[labels[(h - 1) * w + x]] = 1; }
  for (let y = 0; y < h; y++) { atEdge[labels[y * w]] = 1; atEdge[labels[y * w + w - 1]] = 1; }
  atEdge[0] = 0;
  let kept = sizes;
  const inner = sizes.map((s, l) => (atEdge[l] ? 0 : s));
  if (inner.some((s) => s > 0)) kept = inner;
  const largest = Math.max(...kept);
  const ink = new Uint8Array(h * w), edge = new Uint8Array(h * w);
  for (let p = 0; p < h * w; p++) {
    ink[p] = kept[labels[p]] >= largest / 20 ? 1 : 0;
    edge[p] = atEdge[labels[p]];
  }
  return [ink, edge];
}

// predict.py's _cut_out: the digit cropped to its ink, background 0, ink up to 255.
function cutOut(gray, h, w) {
  const sorted = ascending(gray);
  const background = median(sorted);
  let peak = sorted[sorted.length - 1];
  if (peak - background < INK_LEVEL) return { error: "no digit brighter than the background" };
  const rim = 2 * Math.max(1, Math.floor(Math.max(h, w) / 200)) + 1;
  let [ink, edge] = pieces(gray, h, w, (background + peak) / 2);
  for (;;) {
    const nearEdge = dilate(edge, h, w, rim);
    let top = background;
    for (let p = 0; p < h * w; p++) if (!nearEdge[p] && gray[p] > top) top = gray[p];
    if (!(background + INK_LEVEL <= top && top < peak)) break;
    const [again, againEdge] = pieces(gray, h, w, (background + top) / 2);
    let touches = false, holds = true, nAgain = 0, nInk = 0;
    for (let p = 0; p < h * w; p++) {
      if (again[p] && againEdge[p]) touches = true;
      if (ink[p] && !edge[p] && !again[p]) holds = false;
      nAgain += again[p];
      nInk += ink[p];
    }
    if (touches || !holds || nAgain < nInk / 20) break;
    [ink, edge, peak] = [again, againEdge, top];
  }
  let r0 = h, r1 = -1, c0 = w, c1 = -1;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      if (ink[y * w + x]) { r0 = Math.min(r0, y); r1 = Math.max(r1, y); c0 = Math.min(c0, x); c1 = Math.max(c1, x); }
  const ch = r1 - r0 + 1, cw = c1 - c0 + 1;
  const crop = new Float64Array(ch * cw), cropInk = new Uint8Array(ch * cw), inkValues = [];
  for (let y = 0; y < ch; y++)
    for (let x = 0; x < cw; x++) {
      const p = (y + r0) * w + x + c0;
      crop[y * cw + x] = gray[p];
      cropInk[y * cw + x] = ink[p];
      if (ink[p]) inkValues.push(gray[p]);
    }
  const reach = Math.max(1, roundHalfEven(Math.max(ch, cw) / (2 * BOX)));
  const near = dilate(cropInk, ch, cw, 2 * reach + 1);
  const full = percentile(ascending(inkValues), 90);
  const out = new Float64Array(ch * cw);
  for (let p = 0; p < ch * cw; p++)
    out[p] = Math.min(255, Math.max(0, ((crop[p] - background) / (full - background)) * 255.0)) * near[p];
  return { digit: out, h: ch, w: cw };
}

// Pillow's resampling coefficients (libImaging/Resample.c, precompute_coeffs), bilinear.
function coefficients(inSize, outSize) {
  const scale = inSize / outSize, filterscale = Math.max(scale, 1.0), support = 1.0 * filterscale;
  const taps = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale, ss = 1.0 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    const k = [];
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss), v = t < 1.0 ? 1.0 - t : 0.0;
      k.push(v);
      ww += v;
    }
    taps.push({ xmin, k: ww !== 0.0 ? k.map((v) => v / ww) : k });
  }
  return taps;
}

// Image.fromarray(float32, "F").resize((outW, outH), BILINEAR): horizontal pass, then
// vertical, each stored as float32.
function resize(img, h, w, outH, outW) {
  let cur = Float32Array.from(img), cw = w;
  if (outW !== w) {
    const taps = coefficients(w, outW), next = new Float32Array(h * outW);
    for (let y = 0; y < h; y++)
      for (let xx = 0; xx < outW; xx++) {
        const { xmin, k } = taps[xx];
        let ss = 0.0;
        for (let x = 0; x < k.length; x++) ss += cur[y * cw + x + xmin] * k[x];
        next[y * outW + xx] = ss;
      }
    cur = next;
    cw = outW;
  }
  if (outH !== h) {
    const taps = coefficients(h, outH), next = new Float32Array(outH * cw);
    for (let yy = 0; yy < outH; yy++) {
      const { xmin: ymin, k } = taps[yy];
      for (let x = 0; x < cw; x++) {
        let ss = 0.0;
        for (let y = 0; y < k.length; y++) ss += cur[(y + ymin) * cw + x] * k[y];
        next[yy * cw + x] = ss;
      }
    }
    cur = next;
  }
  return cur;
}

// predict.py's _normalise: scaled to fit 20×20, centre of mass at pixel (14, 14) of 28×28.
function normalise(digit, h, w) {
  const scale = BOX / Math.max(h, w);
  const sw = Math.max(1, roundHalfEven(w * scale)), sh = Math.max(1, roundHalfEven(h * scale));
  const small = Array.from(resize(digit, h, w, sh, sw), (v) => Math.min(255, Math.max(0, v)));
  let total = 0, my = 0, mx = 0;
  for (let y = 0; y < sh; y++)
    for (let x = 0; x < sw; x++) {
      const v = small[y * sw + x];
      total += v;
      my += v * y;
      mx += v * x;
    }
  const top = Math.min(Math.max(roundHalfEven(SIDE / 2 - my / total), 0), SIDE - sh);
  const left = Math.min(Math.max(roundHalfEven(SIDE / 2 - mx / total), 0), SIDE - sw);
  const field = new Float64Array(SIDE * SIDE);
  for (let y = 0; y < sh; y++)
    for (let x = 0; x < sw; x++) field[(top + y) * SIDE + left + x] = small[y * sw + x];
  return field;
}

// The 28×28 input (uint8, row by row) that `jaxmlp predict` makes of an image whose grey
// levels are `gray` (h × w, 0..255); {error} for a blank one, as predict refuses it.
export function prepareDigit(gray, h, w) {
  const sorted = ascending(gray);
  const lo = percentile(sorted, 0), mid = percentile(sorted, 50), hi = percentile(sorted, 100);
  if (hi - lo < INK_LEVEL) return { error: "blank: draw a digit" };
  if (hi - mid < mid - lo) gray = gray.map((v) => 255.0 - v);  // dark ink on light paper
  let field = gray;
  if (!(h === SIDE && w === SIDE)) {
    const cut = cutOut(gray, h, w);
    if (cut.error) return cut;
    field = normalise(cut.digit, cut.h, cut.w);
  }
  return { pixels: Uint8Array.from(field, (v) => Math.min(255, Math.max(0, roundHalfEven(v)))) };
}

const LECUN_A = 1.7159, LECUN_S = 2.0 / 3.0;
export const ACTIVATIONS = {  // jaxmlp/activations.py
  relu: (z) => Math.max(z, 0),
  linear: (z) => z,
  sigmoid: (z) => 1 / (1 + Math.exp(-z)),
  tanh: (z) => Math.tanh(z),
  lecun_tanh: (z) => LECUN_A * Math.tanh(LECUN_S * z),
};

function float32s(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);  // little-endian, as the server sends them
}

// The model as /api/model sends it, its weights unpacked.
export function loadModel(json) {
  for (const { activation } of json.arch)
    if (!(activation in ACTIVATIONS)) throw new Error(`this page does not know the activation ${activation}`);
  return {
    ...json,
    layers: json.layers.map((l, i) => ({
      w: float32s(l.w), b: float32s(l.b), rows: l.shape[0], cols: l.shape[1],
      f: ACTIVATIONS[json.arch[i].activation],
    })),
  };
}

export function softmax(z) {  // stable: exp(z - max z)
  const m = Math.max(...z), e = z.map((v) => Math.exp(v - m)), s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

// Every layer's activations and the class probabilities for uint8 pixels.
export function forward(model, pixels) {
  let a = Float64Array.from(pixels, (v) => v / 255);
  const layers = [];
  for (const { w, b, rows, cols, f } of model.layers) {
    const z = Float64Array.from(b);
    for (let i = 0; i < rows; i++) {
      const ai = a[i];
      if (ai === 0) continue;
      for (let j = 0, o = i * cols; j < cols; j++) z[j] += ai * w[o + j];
    }
    a = z.map(f);
    layers.push(a);
  }
  return { layers, probs: softmax(Array.from(a)) };
}
