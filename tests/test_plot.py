"""Figures: each writes a whole PNG atomically and draws what it is given."""
import matplotlib
import matplotlib.image
import numpy as np
import pytest

from jaxmlp import plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

HISTORY = [{"epoch": 1, "train_loss": 0.9, "test_loss": 1.0, "train_acc": 0.7, "test_acc": 0.6},
           {"epoch": 2, "train_loss": 0.4, "test_loss": 0.5, "train_acc": 0.9, "test_acc": 0.8}]
CONFUSION = [[50, 2, 0], [3, 40, 7], [0, 1, 60]]
RNG = np.random.default_rng(0)
DIGITS = RNG.integers(0, 256, (5, 784), dtype=np.uint8)
WEIGHTS = RNG.normal(size=(784, 10))

# Each plot_* function with small inputs: (name, call(path)).
PLOTS = [
    ("history", lambda path: plot.plot_history(HISTORY, path, title="arch a")),
    ("confusion", lambda path: plot.plot_confusion(CONFUSION, path, title="test set")),
    ("mistakes", lambda path: plot.plot_mistakes(DIGITS, [4, 1, 7, 3, 9], [9, 7, 1, 5, 4],
                                                 [0.99, 0.9, 0.8, 0.7, 0.6], path)),
    ("weights", lambda path: plot.plot_weights(WEIGHTS, path)),
]


def _png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[-12:-4] == b"\x00\x00\x00\x00IEND"  # whole file
    return data


@pytest.mark.parametrize("name, draw", PLOTS, ids=[name for name, _ in PLOTS])
def test_writes_whole_png_and_replaces_existing_file(name, draw, tmp_path):
    fresh = tmp_path / "fresh" / f"{name}.png"
    fresh.parent.mkdir()
    draw(fresh)
    assert [p.name for p in fresh.parent.iterdir()] == [fresh.name]  # no temporary left
    image = matplotlib.image.imread(fresh)
    assert image.ndim == 3 and image.shape[0] >= 150 and image.shape[1] >= 150
    assert image[..., :3].std() > 0.05  # something is drawn, not a blank canvas

    existing = tmp_path / f"{name}.png"
    existing.write_bytes(b"old contents " * 200_000)  # longer than any of these PNGs
    draw(existing)
    # Replaced whole: no tail of the old file, the same bytes as a fresh write.
    assert _png(existing) == _png(fresh)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["fresh", existing.name])


class _FailingFigure:
    def savefig(self, f, **kwargs):
        f.write(b"\x89PNG partial")
        raise RuntimeError("render failed")


def test_failed_save_keeps_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "curves.png"
    path.write_bytes(b"previous plot")
    with pytest.raises(RuntimeError, match="render failed"):
        plot._save(_FailingFigure(), path)
    assert path.read_bytes() == b"previous plot"
    assert list(tmp_path.iterdir()) == [path]


def test_history_figure_draws_the_records():
    fig = plot.history_figure(HISTORY, title="arch a")
    ax_loss, ax_acc = fig.axes
    assert [list(line.get_ydata()) for line in ax_loss.lines] == [[0.9, 0.4], [1.0, 0.5]]
    assert [list(line.get_ydata()) for line in ax_acc.lines] == [[0.7, 0.9], [0.6, 0.8]]
    assert list(ax_loss.lines[0].get_xdata()) == [1, 2]


def test_confusion_figure_content():
    fig = plot.confusion_figure(CONFUSION, title="test set")
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), CONFUSION)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("predicted", "true", "test set")
    # Each count at its cell: x = predicted column, y = true row.
    cells = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert cells == {((p, t), str(CONFUSION[t][p])) for t in range(3) for p in range(3)}
    with pytest.raises(ValueError, match="n x n"):
        plot.confusion_figure([[1, 2, 3]])


def test_confusion_png_shades_cells_by_count(tmp_path):
    fig = plot.confusion_figure(CONFUSION)
    plot._save(fig, tmp_path / "c.png")
    image = matplotlib.image.imread(tmp_path / "c.png")
    ax = fig.axes[0]

    def pixel(p, t):  # a cell's corner, clear of its count's text
        x, y = ax.transData.transform((p + 0.35, t + 0.35))
        return image[image.shape[0] - int(y), int(x), :3]
    assert pixel(2, 2).sum() < 1.0  # 60: dark blue
    assert pixel(0, 2).sum() > 2.9  # 0: white
    assert pixel(2, 2)[2] > pixel(2, 2)[0]  # blue, not grey


def _tile(fig, i, side=28):
    """Tile ``i`` of the figure's mosaic image, laid out as ``plot._mosaic`` documents."""
    mosaic = np.asarray(fig.axes[0].images[0].get_array())
    cols = (mosaic.shape[1] + plot._GAP) // (side + plot._GAP)
    r, c = divmod(i, cols)
    top, left = r * (side + plot._TOP) + plot._TOP, c * (side + plot._GAP)
    return mosaic[top:top + side, left:left + side]


def test_mosaic_layout():
    tiles = np.arange(12.0).reshape(3, 2, 2)
    mosaic = plot._mosaic(tiles, cols=2)
    t, g = plot._TOP, plot._GAP
    assert mosaic.shape == (2 * (2 + t), 2 * 2 + g)
    np.testing.assert_array_equal(mosaic[t:t + 2, :2], tiles[0])
    np.testing.assert_array_equal(mosaic[t:t + 2, 2 + g:], tiles[1])
    np.testing.assert_array_equal(mosaic[2 * t + 2:, :2], tiles[2])
    assert np.isnan(mosaic).sum() == mosaic.size - 12  # everything else is background


def test_mistakes_figure_content():
    labels, predicted = [4, 1, 7, 3, 9], [9, 7, 1, 5, 4]
    fig = plot.mistakes_figure(DIGITS, labels, predicted, [0.994, 0.9, 0.8, 0.7, 0.6])
    assert [t.get_text() for t in fig.axes[0].texts] == [
        "true 4, pred 9 (0.99)", "true 1, pred 7 (0.90)", "true 7, pred 1 (0.80)",
        "true 3, pred 5 (0.70)", "true 9, pred 4 (0.60)"]
    for i in range(5):  # uint8 pixels drawn scaled to [0, 1], in the images' layout
        np.testing.assert_allclose(_tile(fig, i), DIGITS[i].reshape(28, 28) / 255, rtol=1e-6)
    # Float [0, 1] and (k, 28, 28) images draw the same.
    same = plot.mistakes_figure(DIGITS.reshape(5, 28, 28) / 255.0, labels, predicted, [0.5] * 5)
    np.testing.assert_allclose(_tile(same, 3), _tile(fig, 3), rtol=1e-6)


def test_mistakes_figure_shows_at_most_36():
    images = np.repeat(np.arange(40, dtype=np.uint8)[:, None], 784, axis=1)
    fig = plot.mistakes_figure(images, [1] * 40, [2] * 40, [0.5] * 40)
    assert len(fig.axes[0].texts) == 36  # a 6 x 6 grid
    np.testing.assert_allclose(_tile(fig, 35), 35 / 255, rtol=1e-6)


def test_mistakes_figure_edge_cases():
    empty = plot.mistakes_figure(np.zeros((0, 784), np.uint8), [], [], [])
    assert [t.get_text() for t in empty.texts] == ["no mistakes"]
    with pytest.raises(ValueError, match="one entry per example"):
        plot.mistakes_figure(DIGITS, [1, 2], [1, 2], [0.5, 0.5])


def test_weights_figure_content():
    w = WEIGHTS
    fig = plot.weights_figure(w)
    ax, bar = fig.axes
    assert [t.get_text() for t in ax.texts] == [str(d) for d in range(10)]  # preset a: digits
    for j in range(10):
        np.testing.assert_allclose(_tile(fig, j), w[:, j].reshape(28, 28))
    image = ax.images[0]
    assert image.get_clim() == (-np.abs(w).max(), np.abs(w).max())  # symmetric around 0
    assert image.get_cmap().name.startswith("RdBu_r")
    custom = plot.weights_figure(w[:, :2], labels=["up", "down"])
    assert [t.get_text() for t in custom.axes[0].texts] == ["up", "down"]
    with pytest.raises(ValueError, match="one caption per unit"):
        plot.weights_figure(w, labels=["0"])
    with pytest.raises(ValueError, match="square"):
        plot.weights_figure(np.zeros((780, 3)))


def test_weights_figure_shows_first_100_units():
    w = np.tile(np.arange(150.0), (784, 1))  # unit j's weights all equal j
    fig = plot.weights_figure(w)
    assert [t.get_text() for t in fig.axes[0].texts] == [str(j) for j in range(100)]
    np.testing.assert_array_equal(_tile(fig, 99), 99.0)
    assert fig.axes[0].images[0].get_clim() == (-99.0, 99.0)  # the scale of what is shown


def test_weights_png_colours_signs(tmp_path):
    # Units at +0.5, -0.5, 0 and +1 (the largest |w|, so the scale is [-1, 1]): in RdBu_r
    # that is light red, light blue, white and the darkest red.
    w = np.stack([np.full(784, v) for v in (0.5, -0.5, 0.0, 1.0)], axis=1)
    fig = plot.weights_figure(w)
    plot._save(fig, tmp_path / "w.png")
    image = matplotlib.image.imread(tmp_path / "w.png")[..., :3]
    ax = fig.axes[0]

    def centre(j):  # four tiles: a 2 x 2 grid
        r, c = divmod(j, 2)
        x, y = ax.transData.transform((c * (28 + plot._GAP) + 14,
                                       r * (28 + plot._TOP) + plot._TOP + 14))
        return image[image.shape[0] - int(y), int(x)]
    cmap = matplotlib.colormaps["RdBu_r"]
    for j, position in enumerate((0.75, 0.25, 0.5, 1.0)):
        np.testing.assert_allclose(centre(j), cmap(position)[:3], atol=0.02)
    assert centre(0)[0] > centre(0)[2] and centre(1)[2] > centre(1)[0]  # red up, blue down
