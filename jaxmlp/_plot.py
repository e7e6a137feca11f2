"""Figures of a run as PNGs: loss and accuracy curves, confusion matrix, mistakes, weights.

Each ``*_figure`` function builds a matplotlib ``Figure`` (inspectable, or shown in a
notebook); each ``plot_*`` function draws one and writes it with ``_save``, atomically.
Figures are made without ``pyplot`` and rendered by the Agg backend, so plotting neither
needs a display nor changes the backend or global figure registry of the calling process.
"""
import math
import warnings

import numpy as np

from jaxmlp._checkpoint import write_atomic
from jaxmlp._images import check_image_shape, prepare_images

_MAX_MISTAKES_SHOWN = 36  # a 6 × 6 grid
_MAX_WEIGHT_TILES = 100


def _new_figure(figsize):
    """A ``Figure`` attached to an Agg canvas (PNG rendering, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _whole_epochs():
    """Epoch ticks at whole numbers only (a one-epoch run showed 0.96 … 1.04)."""
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True, min_n_ticks=1)


def _save(fig, path) -> None:
    """Writes ``fig`` as a PNG at ``path``, all or nothing (``write_atomic``)."""
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))


def _history_figure(history: list[dict], *, title: str = ""):
    """Train/test loss and accuracy per epoch, from ``metrics.jsonl`` records; validation
    too (``val_loss``/``val_acc``, dashed) when the records hold it."""
    fig = _new_figure((10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    splits: list[tuple[str, str, dict]] = [("train", "train", {}), ("test", "test", {})]
    if any(f"val_{m}" in h for h in history for m in ("loss", "acc")):
        # Train and test keep their colours; an epoch without the value is a gap.
        splits.append(("val", "validation", {"linestyle": "--"}))
    for split, label, style in splits:
        for ax, metric in ((ax_loss, "loss"), (ax_acc, "acc")):
            values = [h.get(f"{split}_{metric}") for h in history]
            ax.plot(epochs, [np.nan if v is None else v for v in values], marker="o",
                    label=label, **style)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(_whole_epochs())
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: list[dict], path, *, title: str = "") -> None:
    """Writes ``history_figure(history, title=title)`` as a PNG at ``path``: train/test (and
    validation) loss and accuracy per epoch from ``metrics.jsonl`` records."""
    _save(_history_figure(history, title=title), path)


def _sweep_figure(history: list[dict], grid):
    """Accuracy per epoch of every model of a sweep (thin lines), and per setting of
    ``grid`` (``jaxmlp._sweep.Grid``) the mean over its seeds with a ± std band: validation
    accuracy when the sweep has a validation split (what chooses its best setting), else
    test accuracy. The y-axis fits the settings within ``_IN_RUNNING`` of the best final
    mean, so that one that diverged or stalled (10%) does not flatten the others; those
    below it are named in the legend."""
    fig = _new_figure((7, 4.5))
    ax = fig.subplots()
    split = "val" if any("val_acc" in m for h in history for m in h["models"]) else "test"
    epochs = np.array([h["epoch"] for h in history])
    acc = np.array([[np.nan if m.get(f"{split}_acc") is None else m[f"{split}_acc"]
                     for m in h["models"]] for h in history], dtype=float)  # (epochs, models)
    settings = grid.settings()
    blocks = [acc[:, list(grid.members(k))] for k in range(len(settings))]
    with warnings.catch_warnings():  # a setting whose models all diverged: NaN, not a line
        warnings.simplefilter("ignore", RuntimeWarning)
        means = [np.nanmean(b, 1) for b in blocks]
        stds = [np.nanstd(b, 1) for b in blocks]
        finals = np.array([m[-1] for m in means])
        best = np.nanmax(finals) if np.isfinite(finals).any() else np.nan
    running = [k for k in range(len(settings)) if finals[k] >= best - _IN_RUNNING]
    for k, (lr, momentum) in enumerate(settings):
        below = "" if k in running else " (below the axis)"
        (line,) = ax.plot(epochs, means[k], marker="o",
                          label=f"lr {lr:g}, momentum {momentum:g}{below}")
        ax.plot(epochs, blocks[k], color=line.get_color(), alpha=0.25, linewidth=0.8)
        ax.fill_between(epochs, means[k] - stds[k], means[k] + stds[k],
                        color=line.get_color(), alpha=0.2)
    if running:  # from the second epoch on where there is one: the first is mostly climb
        seen = np.concatenate([blocks[k][1 if len(epochs) > 1 else 0:].ravel()
                               for k in running])
        seen = seen[np.isfinite(seen)]
        if seen.size:
            pad = max(0.005, 0.05 * float(seen.max() - seen.min()))
            ax.set_ylim(max(0.0, float(seen.min()) - pad), min(1.0, float(seen.max()) + pad))
    ax.xaxis.set_major_locator(_whole_epochs())
    name = "validation" if split == "val" else "test"
    ax.set(xlabel="epoch", ylabel=f"{name} accuracy",
           title=f"{acc.shape[1]} models: {name} accuracy, mean ± std per setting")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


# How far below the best setting's final mean accuracy a setting may end and still set the
# sweep figure's y-axis.
_IN_RUNNING = 0.1


def plot_sweep(history: list[dict], grid, path) -> None:
    """``_sweep_figure`` as a PNG at ``path``."""
    _save(_sweep_figure(history, grid), path)


def _confusion_figure(confusion, *, title: str = ""):
    """The ``n × n`` confusion matrix as an image, each cell labelled with its count.

    Args:
      confusion: counts, ``confusion[t][p]`` = examples of true class ``t`` predicted ``p``.
      title: the figure's title.
    """
    counts = np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(f"confusion must be a non-empty n x n matrix, got shape {counts.shape}")
    n = len(counts)
    side = max(4.0, 0.5 * n + 1.5)
    fig = _new_figure((side, side))
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set(xlabel="predicted", ylabel="true", title=title, xticks=range(n), yticks=range(n))
    # Dark cells get white text, so every count stays readable.
    dark = 0.5 * max(counts.max(), 1)
    for t in range(n):
        for p in range(n):
            ax.text(p, t, str(counts[t, p]), ha="center", va="center", fontsize=8,
                    color="white" if counts[t, p] > dark else "black")
    fig.tight_layout()
    return fig


def plot_confusion(confusion, path, *, title: str = "") -> None:
    """Writes ``confusion_figure(confusion, title=title)`` as a PNG at ``path``."""
    _save(_confusion_figure(confusion, title=title), path)


def _grid(count: int) -> tuple[int, int]:
    """Rows and columns of a near-square grid with at least ``count`` cells."""
    cols = max(1, math.ceil(math.sqrt(count)))
    return max(1, math.ceil(count / cols)), cols


def _image_shape(image_shape, in_dim: int) -> tuple[int, int, int]:
    """``image_shape`` checked against ``in_dim`` pixels; ``None``: a square grey image."""
    if image_shape is None:
        side = math.isqrt(in_dim)
        if side * side != in_dim:
            raise ValueError(f"{in_dim} pixels per image do not make a square image (pass "
                             "image_shape)")
        return side, side, 1
    shape: tuple = check_image_shape(image_shape)
    if math.prod(shape) != in_dim:
        raise ValueError(f"image_shape {shape} has {math.prod(shape)} pixels, the images "
                         f"{in_dim}")
    return shape


def _tiles(pixels: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """``(k, H·W·C)`` → the images' own layout: ``(k, H, W)`` for one channel, ``(k, H, W,
    3)`` for RGB, and for other channel counts ``(k, H, C·W + C − 1)``, the channels side
    by side with a NaN (background) column between them."""
    h, w, c = shape
    images = np.asarray(pixels).reshape(len(pixels), h, w, c)
    if c == 1:
        return images[..., 0]
    if c == 3:
        return images
    out = np.full((len(pixels), h, c * (w + 1) - 1), np.nan)
    for i in range(c):
        out[:, :, i * (w + 1):i * (w + 1) + w] = images[..., i]
    return out


def _mosaic(tiles: np.ndarray, cols: int) -> np.ndarray:
    """Tiles ``(k, h, w)`` (or RGB ``(k, h, w, 3)``) laid out row by row, ``cols`` to a row,
    in one NaN-padded image.

    Tile ``i`` occupies rows ``r·(h + TOP) + TOP + [0, h)`` and columns ``c·(w + GAP) +
    [0, w)`` with ``(r, c) = divmod(i, cols)``; the ``TOP`` rows above each tile leave room
    for its caption. NaN is drawn as background. One image with captions renders in a
    fraction of the time of one axes per tile (100 axes take seconds).
    """
    k, h, w = tiles.shape[:3]
    rows = math.ceil(k / cols)
    mosaic = np.full((rows * (h + _TOP), cols * (w + _GAP) - _GAP, *tiles.shape[3:]), np.nan)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        top, left = r * (h + _TOP) + _TOP, c * (w + _GAP)
        mosaic[top:top + h, left:left + w] = tile
    return mosaic


_TOP, _GAP = 7, 3  # pixels above each tile (its caption) and between tiles


def _draw_tiles(fig, tiles: np.ndarray, captions: list[str], cols: int, *, cmap: str = "",
                vmin: float = 0.0, vmax: float = 1.0, rect=(0.0, 0.0, 1.0, 1.0)):
    """Draws ``tiles`` as one ``_mosaic`` image in ``rect``, each captioned above; returns it.

    Grey tiles ``(k, h, w)`` are coloured by ``cmap`` from ``vmin`` to ``vmax``; RGB tiles
    ``(k, h, w, 3)`` in [0, 1] are drawn as they are (an RGBA image, the background
    transparent).
    """
    import matplotlib

    ax = fig.add_axes(rect)
    ax.set_axis_off()
    mosaic = _mosaic(tiles, cols)
    if mosaic.ndim == 3:
        alpha = (~np.isnan(mosaic[..., :1])).astype(np.float64)
        rgba = np.concatenate([np.clip(np.nan_to_num(mosaic, nan=1.0), 0.0, 1.0), alpha], -1)
        image = ax.imshow(rgba, interpolation="nearest")
    else:
        image = ax.imshow(mosaic, vmin=vmin, vmax=vmax, interpolation="nearest",
                          cmap=matplotlib.colormaps[cmap].with_extremes(bad="white"))
    h, w = tiles.shape[1:3]
    for i, caption in enumerate(captions):
        r, c = divmod(i, cols)
        ax.text(c * (w + _GAP) + w / 2, r * (h + _TOP) + _TOP - 1, caption, ha="center",
                va="bottom", fontsize=7)
    return image


def _mistakes_figure(images, labels, predicted, confidence, *, image_shape=None):
    """Misclassified images in a grid (up to 6 × 6), each captioned with its labels.

    Args:
      images: ``(k, in_dim)`` (or ``(k, 28, 28)``, or with ``image_shape`` ``(k, H, W,
        C)``) uint8 in [0, 255] or floating in [0, 1].
      labels: ``(k,)`` true classes.
      predicted: ``(k,)`` predicted classes.
      confidence: ``(k,)`` the predicted classes' probabilities.
      image_shape: ``(height, width, channels)`` of one image (``Run.info.image_shape``);
        ``None``: square and single-channel (MNIST's 28 × 28).

    Only the first 36 are drawn (``evaluation_report`` lists them most confident first),
    each as ``"true 4, pred 9 (0.99)"`` above its image: single-channel images as ink dark
    on white (MNIST's digits), RGB images in their own colours, other channel counts as
    their channels side by side, grey.
    """
    k = len(labels)
    if not (len(predicted) == len(confidence) == k == np.shape(images)[0]):
        raise ValueError(f"images, labels, predicted and confidence must have one entry per "
                         f"example, got {np.shape(images)[0]}, {k}, {len(predicted)} and "
                         f"{len(confidence)}")
    shown = min(k, _MAX_MISTAKES_SHOWN)
    rows, cols = _grid(shown)
    height = 1.7 * rows + _TITLE
    fig = _new_figure((max(1.5 * cols, 4.0), height))
    if not shown:  # a perfect score still gets a picture that says so
        fig.text(0.5, 0.5, "no mistakes", ha="center", va="center")
        return fig
    head = np.asarray(images)[:shown]
    if image_shape is None:
        pixels = prepare_images(head, in_dim=int(np.prod(np.shape(images)[1:])))
    else:
        pixels = prepare_images(head, image_shape=image_shape)
    pixels = np.asarray(pixels)
    tiles = _tiles(pixels, _image_shape(image_shape, pixels.shape[1]))
    captions = [f"true {int(labels[i])}, pred {int(predicted[i])} ({float(confidence[i]):.2f})"
                for i in range(shown)]
    top = _TITLE / height
    _draw_tiles(fig, tiles, captions, cols, cmap="gray_r", vmin=0.0, vmax=1.0,
                rect=(0.0, 0.0, 1.0, 1.0 - top))
    fig.text(0.5, 1.0 - top / 2, f"the {shown} most confident mistakes: true class, predicted "
             "class (its probability)", ha="center", va="center", fontsize=8)
    return fig


_TITLE = 0.35  # inches above a mosaic for its title


def plot_mistakes(images, labels, predicted, confidence, path, *, image_shape=None) -> None:
    """Writes ``mistakes_figure(images, labels, predicted, confidence, image_shape=…)`` as a
    PNG at ``path``."""
    _save(_mistakes_figure(images, labels, predicted, confidence, image_shape=image_shape), path)


def _weights_figure(w, *, labels=None, image_shape=None):
    """First-layer weights, one tile per unit, laid out as the input image.

    Tile ``j`` is column ``j`` of ``w`` reshaped to ``image_shape`` (28 × 28 for MNIST).
    Single-channel (and other non-RGB) inputs share one colour scale centred at 0: the
    pixels that push unit ``j`` up are red, those that push it down blue, 0 is white (other
    channel counts: the channels side by side). RGB inputs are drawn in colour, each tile
    scaled on its own to [0, 1] around 0: ``0.5 + w / (2 max|w|)`` per channel, so grey
    is 0, and a tile is red where the unit weighs red up (cyan where it weighs red down).
    For preset a (one layer, 10 units) unit ``j`` is the logit of class ``j``, so the tiles
    are the ten class templates, captioned with their classes.

    Args:
      w: ``(in_dim, units)``.
      labels: one caption per unit; default, the unit's index (preset a: its class).
      image_shape: ``(height, width, channels)`` with ``in_dim`` pixels
        (``Run.info.image_shape``); ``None``: square and single-channel (784: 28 × 28).

    Only the first 100 units are drawn, in unit order.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"w must have shape (in_dim, units), both non-zero, got {w.shape}")
    shape = _image_shape(image_shape, w.shape[0])
    tiles = _tiles(w[:, :_MAX_WEIGHT_TILES].T, shape)
    labels = [str(j) for j in range(w.shape[1])] if labels is None else [str(s) for s in labels]
    if len(labels) != w.shape[1]:
        raise ValueError(f"labels must have one caption per unit ({w.shape[1]}), "
                         f"got {len(labels)}")
    rows, cols = _grid(len(tiles))
    if shape[2] == 3:
        limits = np.max(np.abs(tiles), axis=(1, 2, 3), keepdims=True)
        scaled = 0.5 + tiles / (2 * np.where(limits > 0, limits, 1.0))
        note = 0.3  # inches at the bottom for the note on the scale
        fig = _new_figure((1.2 * cols, 1.4 * rows + note))
        _draw_tiles(fig, scaled, labels[:len(tiles)], cols,
                    rect=(0.0, note / (1.4 * rows + note), 1.0, 1.0 - note / (1.4 * rows + note)))
        fig.text(0.5, 0.02, "each tile scaled on its own: grey 0, brighter = positive",
                 ha="center", va="bottom", fontsize=7)
        return fig
    # One symmetric scale for every tile: 0 is white and tiles compare with each other.
    limit = float(np.nanmax(np.abs(tiles))) or 1.0
    width = max(1.2 * cols, 3.0) + 1.1  # the tiles, then 1.1 inch for the colour bar, ticks
    height = 1.4 * rows + _TITLE
    top = _TITLE / height
    fig = _new_figure((width, height))
    image = _draw_tiles(fig, tiles, labels[:len(tiles)], cols, cmap="RdBu_r", vmin=-limit,
                        vmax=limit, rect=(0.0, 0.0, 1.0 - 1.1 / width, 1.0 - top))
    fig.colorbar(image, cax=fig.add_axes((1.0 - 0.95 / width, 0.1, 0.2 / width, 0.8 - top)))
    shown = f"the first {len(tiles)} of {w.shape[1]}" if len(tiles) < w.shape[1] else "each"
    fig.text(0.5, 1.0 - top / 2, f"first layer: {shown} unit's incoming weights (red up, "
             "blue down)", ha="center", va="center", fontsize=8)
    return fig


def plot_weights(w, path, *, labels=None, image_shape=None) -> None:
    """Writes ``weights_figure(w, labels=labels, image_shape=image_shape)`` as a PNG at
    ``path``."""
    _save(_weights_figure(w, labels=labels, image_shape=image_shape), path)


def _augment_figure(images, distorted, *, image_shape, title: str = ""):
    """Each training image (first column) beside its distortions: ``images`` ``(k, H·W·C)``
    uint8, ``distorted`` ``(n, k, H·W·C)`` in [0, 1], one row per image."""
    k, n = len(images), len(distorted)
    shape = _image_shape(image_shape, np.shape(images)[1])
    rows = [np.asarray(prepare_images(np.asarray(images), image_shape=shape))] + [
        np.clip(np.asarray(d), 0.0, 1.0) for d in distorted]
    pixels = np.stack(rows, 1).reshape(k * (n + 1), -1)  # row by row: original, then its n
    tiles = _tiles(pixels, shape)
    captions = [("original" if j == 0 else f"draw {j}") if i == 0 else ""
                for i in range(k) for j in range(n + 1)]
    fig = _new_figure((1.1 * (n + 1), 1.15 * k + 0.4))
    if title:
        fig.suptitle(title, fontsize=8)
    _draw_tiles(fig, tiles, captions, n + 1, cmap="gray_r",
                rect=(0.0, 0.0, 1.0, 0.95 if title else 1.0))
    return fig


def plot_augment(images, distorted, path, *, image_shape, title: str = "") -> None:
    """Writes ``_augment_figure`` as a PNG at ``path``."""
    _save(_augment_figure(images, distorted, image_shape=image_shape, title=title), path)
