"""Figures of a run as PNGs: loss and accuracy curves, confusion matrix, mistakes, weights.

Each ``*_figure`` function builds a matplotlib ``Figure`` (inspectable, or shown in a
notebook); each ``plot_*`` function draws one and writes it with ``_save``, atomically.
Figures are made without ``pyplot`` and rendered by the Agg backend, so plotting neither
needs a display nor changes the backend or global figure registry of the calling process.
"""
import math
import warnings

import numpy as np

from jaxmlp.checkpoint import write_atomic
from jaxmlp.images import prepare_images

MAX_MISTAKES_SHOWN = 36  # a 6 × 6 grid
MAX_WEIGHT_TILES = 100


def _new_figure(figsize):
    """A ``Figure`` attached to an Agg canvas (PNG rendering, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> None:
    """Writes ``fig`` as a PNG at ``path``, all or nothing (``write_atomic``)."""
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))


def history_figure(history: list[dict], *, title: str = ""):
    """Train/test loss and accuracy per epoch, from ``metrics.jsonl`` records."""
    fig = _new_figure((10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    for split in ("train", "test"):
        ax_loss.plot(epochs, [h[f"{split}_loss"] for h in history], marker="o", label=split)
        ax_acc.plot(epochs, [h[f"{split}_acc"] for h in history], marker="o", label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: list[dict], path, *, title: str = "") -> None:
    """Draws train/test loss and accuracy per epoch from ``metrics.jsonl`` records."""
    _save(history_figure(history, title=title), path)


def sweep_figure(history: list[dict], grid):
    """Test accuracy per epoch of every model of a sweep (thin lines), and per setting of
    ``grid`` (``jaxmlp.sweep.Grid``) the mean over its seeds with a ± std band."""
    fig = _new_figure((7, 4.5))
    ax = fig.subplots()
    epochs = np.array([h["epoch"] for h in history])
    acc = np.array([[np.nan if m["test_acc"] is None else m["test_acc"] for m in h["models"]]
                    for h in history], dtype=float)  # (epochs, models)
    per = len(grid.seeds)
    for k, (lr, momentum) in enumerate((lr, m) for lr in grid.lrs for m in grid.momenta):
        block = acc[:, k * per:(k + 1) * per]
        with warnings.catch_warnings():  # a setting whose models all diverged: NaN, not a line
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(block, 1), np.nanstd(block, 1)
        (line,) = ax.plot(epochs, mean, marker="o", label=f"lr {lr:g}, momentum {momentum:g}")
        ax.plot(epochs, block, color=line.get_color(), alpha=0.25, linewidth=0.8)
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set(xlabel="epoch", ylabel="test accuracy",
           title=f"{acc.shape[1]} models: mean ± std per setting")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_sweep(history: list[dict], grid, path) -> None:
    """``sweep_figure`` as a PNG at ``path``."""
    _save(sweep_figure(history, grid), path)


def confusion_figure(confusion, *, title: str = ""):
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
    _save(confusion_figure(confusion, title=title), path)


def _grid(count: int) -> tuple[int, int]:
    """Rows and columns of a near-square grid with at least ``count`` cells."""
    cols = max(1, math.ceil(math.sqrt(count)))
    return max(1, math.ceil(count / cols)), cols


def _square(pixels: np.ndarray) -> np.ndarray:
    """``(k, side²)`` → ``(k, side, side)``, the images' own layout."""
    side = math.isqrt(pixels.shape[1])
    if side * side != pixels.shape[1]:
        raise ValueError(f"{pixels.shape[1]} pixels per image do not make a square image")
    return pixels.reshape(len(pixels), side, side)


def _mosaic(tiles: np.ndarray, cols: int) -> np.ndarray:
    """Tiles ``(k, h, w)`` laid out row by row, ``cols`` to a row, in one NaN-padded image.

    Tile ``i`` occupies rows ``r·(h + TOP) + TOP + [0, h)`` and columns ``c·(w + GAP) +
    [0, w)`` with ``(r, c) = divmod(i, cols)``; the ``TOP`` rows above each tile leave room
    for its caption. NaN is drawn as background. One image with captions renders in a
    fraction of the time of one axes per tile (100 axes take seconds).
    """
    k, h, w = tiles.shape
    rows = math.ceil(k / cols)
    mosaic = np.full((rows * (h + _TOP), cols * (w + _GAP) - _GAP), np.nan)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        top, left = r * (h + _TOP) + _TOP, c * (w + _GAP)
        mosaic[top:top + h, left:left + w] = tile
    return mosaic


_TOP, _GAP = 7, 3  # pixels above each tile (its caption) and between tiles


def _draw_tiles(fig, tiles: np.ndarray, captions: list[str], cols: int, *, cmap: str,
                vmin: float, vmax: float, rect=(0.0, 0.0, 1.0, 1.0)):
    """Draws ``tiles`` as one ``_mosaic`` image in ``rect``, each captioned above; returns it."""
    import matplotlib

    ax = fig.add_axes(rect)
    ax.set_axis_off()
    image = ax.imshow(_mosaic(tiles, cols), vmin=vmin, vmax=vmax, interpolation="nearest",
                      cmap=matplotlib.colormaps[cmap].with_extremes(bad="white"))
    _, h, w = tiles.shape
    for i, caption in enumerate(captions):
        r, c = divmod(i, cols)
        ax.text(c * (w + _GAP) + w / 2, r * (h + _TOP) + _TOP - 1, caption, ha="center",
                va="bottom", fontsize=7)
    return image


def mistakes_figure(images, labels, predicted, confidence):
    """Misclassified digits in a grid (up to 6 × 6), each captioned with its labels.

    Args:
      images: ``(k, 784)`` (or ``(k, 28, 28)``) uint8 in [0, 255] or floating in [0, 1].
      labels: ``(k,)`` true classes.
      predicted: ``(k,)`` predicted classes.
      confidence: ``(k,)`` the predicted classes' probabilities.

    Only the first 36 are drawn (``evaluation_report`` lists them most confident first),
    each as ``"true 4, pred 9 (0.99)"`` above its digit (ink dark on white).
    """
    k = len(labels)
    if not (len(predicted) == len(confidence) == k == np.shape(images)[0]):
        raise ValueError(f"images, labels, predicted and confidence must have one entry per "
                         f"example, got {np.shape(images)[0]}, {k}, {len(predicted)} and "
                         f"{len(confidence)}")
    shown = min(k, MAX_MISTAKES_SHOWN)
    rows, cols = _grid(shown)
    fig = _new_figure((1.5 * cols, 1.7 * rows))
    if not shown:  # a perfect score still gets a picture that says so
        fig.text(0.5, 0.5, "no mistakes", ha="center", va="center")
        return fig
    in_dim = int(np.prod(np.shape(images)[1:]))
    digits = _square(np.asarray(prepare_images(np.asarray(images)[:shown], in_dim=in_dim)))
    captions = [f"true {int(labels[i])}, pred {int(predicted[i])} ({float(confidence[i]):.2f})"
                for i in range(shown)]
    _draw_tiles(fig, digits, captions, cols, cmap="gray_r", vmin=0.0, vmax=1.0)
    return fig


def plot_mistakes(images, labels, predicted, confidence, path) -> None:
    """Writes ``mistakes_figure(images, labels, predicted, confidence)`` as a PNG at ``path``."""
    _save(mistakes_figure(images, labels, predicted, confidence), path)


def weights_figure(w, *, labels=None):
    """First-layer weights, one square tile per unit, on one colour scale centred at 0.

    Tile ``j`` is column ``j`` of ``w`` laid out as the input image (28 × 28 for MNIST):
    the pixels that push unit ``j`` up are red, those that push it down blue, 0 is white.
    For preset a (one layer, 10 units) unit ``j`` is the logit of digit ``j``, so the tiles
    are the ten digit templates, captioned with their digits.

    Args:
      w: ``(in_dim, units)`` with ``in_dim`` a square (784).
      labels: one caption per unit; default, the unit's index (preset a: its digit).

    Only the first 100 units are drawn, in unit order.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"w must have shape (in_dim, units), both non-zero, got {w.shape}")
    tiles = _square(w[:, :MAX_WEIGHT_TILES].T)
    labels = [str(j) for j in range(w.shape[1])] if labels is None else [str(s) for s in labels]
    if len(labels) != w.shape[1]:
        raise ValueError(f"labels must have one caption per unit ({w.shape[1]}), "
                         f"got {len(labels)}")
    # One symmetric scale for every tile: 0 is white and tiles compare with each other.
    limit = float(np.max(np.abs(tiles))) or 1.0
    rows, cols = _grid(len(tiles))
    width = 1.2 * cols + 1.1  # the tiles, then 1.1 inch for the colour bar and its ticks
    fig = _new_figure((width, 1.4 * rows))
    image = _draw_tiles(fig, tiles, labels[:len(tiles)], cols, cmap="RdBu_r", vmin=-limit,
                        vmax=limit, rect=(0.0, 0.0, 1.0 - 1.1 / width, 1.0))
    fig.colorbar(image, cax=fig.add_axes((1.0 - 0.95 / width, 0.1, 0.2 / width, 0.8)))
    return fig


def plot_weights(w, path, *, labels=None) -> None:
    """Writes ``weights_figure(w, labels=labels)`` as a PNG at ``path``."""
    _save(weights_figure(w, labels=labels), path)
