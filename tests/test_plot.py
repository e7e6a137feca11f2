"""Figures: each writes a whole PNG atomically and draws what it is given."""
import matplotlib
import matplotlib.image
import numpy as np
import pytest

from jaxmlp import _plot as plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

HISTORY = [{"epoch": 1, "train_loss": 0.9, "test_loss": 1.0, "train_acc": 0.7, "test_acc": 0.6},
           {"epoch": 2, "train_loss": 0.4, "test_loss": 0.5, "train_acc": 0.9, "test_acc": 0.8}]
CONFUSION = [[50, 2, 0], [3, 40, 7], [0, 1, 60]]
RNG = np.random.default_rng(0)
DIGITS = RNG.integers(0, 256, (5, 784), dtype=np.uint8)
WEIGHTS = RNG.normal(size=(784, 10))
CIFAR = (32, 32, 3)
PHOTOS = RNG.integers(0, 256, (5, *CIFAR), dtype=np.uint8)
RGB_WEIGHTS = RNG.normal(size=(3072, 6))
HISTORY_VAL = [{**h, "val_loss": v_loss, "val_acc": v_acc}
               for h, v_loss, v_acc in zip(HISTORY, (0.95, 0.45), (0.65, 0.85))]

# Each plot_* function with small inputs: (name, call(path)).
PLOTS = [
    ("history", lambda path: plot.plot_history(HISTORY, path, title="arch a")),
    ("confusion", lambda path: plot.plot_confusion(CONFUSION, path, title="test set")),
    ("mistakes", lambda path: plot.plot_mistakes(DIGITS, [4, 1, 7, 3, 9], [9, 7, 1, 5, 4],
                                                 [0.99, 0.9, 0.8, 0.7, 0.6], path)),
    ("weights", lambda path: plot.plot_weights(WEIGHTS, path)),
    ("history_val", lambda path: plot.plot_history(HISTORY_VAL, path, title="arch a")),
    ("mistakes_rgb", lambda path: plot.plot_mistakes(PHOTOS, [4, 1, 7, 3, 9], [9, 7, 1, 5, 4],
                                                     [0.99, 0.9, 0.8, 0.7, 0.6], path,
                                                     image_shape=CIFAR)),
    ("weights_rgb", lambda path: plot.plot_weights(RGB_WEIGHTS, path, image_shape=CIFAR)),
]


def read_png(path):
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
    assert read_png(existing) == read_png(fresh)
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
    fig = plot._history_figure(HISTORY, title="arch a")
    ax_loss, ax_acc = fig.axes
    assert [list(line.get_ydata()) for line in ax_loss.lines] == [[0.9, 0.4], [1.0, 0.5]]
    assert [list(line.get_ydata()) for line in ax_acc.lines] == [[0.7, 0.9], [0.6, 0.8]]
    assert list(ax_loss.lines[0].get_xdata()) == [1, 2]


def test_confusion_figure_content():
    fig = plot._confusion_figure(CONFUSION, title="test set")
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), CONFUSION)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("predicted", "true", "test set")
    # Each count at its cell: x = predicted column, y = true row.
    cells = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert cells == {((p, t), str(CONFUSION[t][p])) for t in range(3) for p in range(3)}
    with pytest.raises(ValueError, match="n x n"):
        plot._confusion_figure([[1, 2, 3]])


def test_confusion_png_shades_cells_by_count(tmp_path):
    fig = plot._confusion_figure(CONFUSION)
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
    fig = plot._mistakes_figure(DIGITS, labels, predicted, [0.994, 0.9, 0.8, 0.7, 0.6])
    assert [t.get_text() for t in fig.axes[0].texts] == [
        "true 4, pred 9 (0.99)", "true 1, pred 7 (0.90)", "true 7, pred 1 (0.80)",
        "true 3, pred 5 (0.70)", "true 9, pred 4 (0.60)"]
    for i in range(5):  # uint8 pixels drawn scaled to [0, 1], in the images' layout
        np.testing.assert_allclose(_tile(fig, i), DIGITS[i].reshape(28, 28) / 255, rtol=1e-6)
    # Float [0, 1] and (k, 28, 28) images draw the same.
    same = plot._mistakes_figure(DIGITS.reshape(5, 28, 28) / 255.0, labels, predicted, [0.5] * 5)
    np.testing.assert_allclose(_tile(same, 3), _tile(fig, 3), rtol=1e-6)


def test_mistakes_figure_shows_at_most_36():
    images = np.repeat(np.arange(40, dtype=np.uint8)[:, None], 784, axis=1)
    fig = plot._mistakes_figure(images, [1] * 40, [2] * 40, [0.5] * 40)
    assert len(fig.axes[0].texts) == 36  # a 6 x 6 grid
    np.testing.assert_allclose(_tile(fig, 35), 35 / 255, rtol=1e-6)


def test_mistakes_figure_edge_cases():
    empty = plot._mistakes_figure(np.zeros((0, 784), np.uint8), [], [], [])
    assert [t.get_text() for t in empty.texts] == ["no mistakes"]
    with pytest.raises(ValueError, match="one entry per example"):
        plot._mistakes_figure(DIGITS, [1, 2], [1, 2], [0.5, 0.5])


def test_weights_figure_content():
    w = WEIGHTS
    fig = plot._weights_figure(w)
    ax, bar = fig.axes
    assert [t.get_text() for t in ax.texts] == [str(d) for d in range(10)]  # preset a: digits
    for j in range(10):
        np.testing.assert_allclose(_tile(fig, j), w[:, j].reshape(28, 28))
    image = ax.images[0]
    assert image.get_clim() == (-np.abs(w).max(), np.abs(w).max())  # symmetric around 0
    assert image.get_cmap().name.startswith("RdBu_r")
    custom = plot._weights_figure(w[:, :2], labels=["up", "down"])
    assert [t.get_text() for t in custom.axes[0].texts] == ["up", "down"]
    with pytest.raises(ValueError, match="one caption per unit"):
        plot._weights_figure(w, labels=["0"])
    with pytest.raises(ValueError, match="square"):
        plot._weights_figure(np.zeros((780, 3)))


def test_weights_figure_shows_first_100_units():
    w = np.tile(np.arange(150.0), (784, 1))  # unit j's weights all equal j
    fig = plot._weights_figure(w)
    assert [t.get_text() for t in fig.axes[0].texts] == [str(j) for j in range(100)]
    np.testing.assert_array_equal(_tile(fig, 99), 99.0)
    assert fig.axes[0].images[0].get_clim() == (-99.0, 99.0)  # the scale of what is shown


def test_weights_png_colours_signs(tmp_path):
    # Units at +0.5, -0.5, 0 and +1 (the largest |w|, so the scale is [-1, 1]): in RdBu_r
    # that is light red, light blue, white and the darkest red.
    w = np.stack([np.full(784, v) for v in (0.5, -0.5, 0.0, 1.0)], axis=1)
    fig = plot._weights_figure(w)
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


# Validation curves, and images of other shapes (issue 10).

def test_history_figure_draws_validation_beside_train_and_test():
    fig = plot._history_figure(HISTORY_VAL)
    ax_loss, ax_acc = fig.axes
    # Train and test first, as without validation (their colours kept), then validation.
    assert [line.get_label() for line in ax_loss.lines] == ["train", "test", "validation"]
    assert [list(line.get_ydata()) for line in ax_loss.lines] == [[0.9, 0.4], [1.0, 0.5],
                                                                  [0.95, 0.45]]
    assert [list(line.get_ydata()) for line in ax_acc.lines] == [[0.7, 0.9], [0.6, 0.8],
                                                                 [0.65, 0.85]]
    assert [t.get_text() for t in ax_acc.get_legend().get_texts()] == ["train", "test",
                                                                      "validation"]
    assert ax_acc.lines[2].get_linestyle() == "--"
    old = plot._history_figure(HISTORY)
    assert [t.get_text() for t in old.axes[0].get_legend().get_texts()] == ["train", "test"]
    assert [line.get_color() for line in old.axes[0].lines] == [
        line.get_color() for line in ax_loss.lines[:2]]
    # An epoch without validation (a record from before it was held out) is a gap.
    gap = plot._history_figure([HISTORY[0], HISTORY_VAL[1]])
    assert np.isnan(gap.axes[1].lines[2].get_ydata()[0])
    assert gap.axes[1].lines[2].get_ydata()[1] == 0.85


def _rgba_tile(fig, i, h=32, w=32):
    """Tile ``i`` of an RGB figure's mosaic, an RGBA image laid out as ``plot._mosaic``."""
    mosaic = np.asarray(fig.axes[0].images[0].get_array())
    assert mosaic.ndim == 3 and mosaic.shape[2] == 4
    cols = (mosaic.shape[1] + plot._GAP) // (w + plot._GAP)
    r, c = divmod(i, cols)
    top, left = r * (h + plot._TOP) + plot._TOP, c * (w + plot._GAP)
    return mosaic[top:top + h, left:left + w]


def _png_pixel(fig, path, x, y):
    """The rendered colour at data point ``(x, y)`` of the figure's first axes."""
    plot._save(fig, path)
    image = matplotlib.image.imread(path)[..., :3]
    px, py = fig.axes[0].transData.transform((x, y))
    return image[image.shape[0] - int(py), int(px)]


def test_mistakes_figure_draws_rgb_images(tmp_path):
    labels, predicted, confidence = [4, 1, 7, 3, 9], [9, 7, 1, 5, 4], [0.9] * 5
    fig = plot._mistakes_figure(PHOTOS, labels, predicted, confidence, image_shape=CIFAR)
    for i in range(5):  # in their own colours, scaled to [0, 1], opaque
        tile = _rgba_tile(fig, i)
        np.testing.assert_allclose(tile[..., :3], PHOTOS[i] / 255, rtol=1e-6)
        assert (tile[..., 3] == 1).all()
    mosaic = fig.axes[0].images[0].get_array()
    assert (mosaic[:plot._TOP, :, 3] == 0).all()  # the background is transparent
    flat = plot._mistakes_figure(PHOTOS.reshape(5, 3072), labels, predicted, confidence,
                                image_shape=CIFAR)
    np.testing.assert_array_equal(_rgba_tile(flat, 4), _rgba_tile(fig, 4))
    # Rendered: a pure-red image is red, a pure-blue one blue.
    images = np.zeros((2, *CIFAR), np.uint8)
    images[0, ..., 0] = 255
    images[1, ..., 2] = 255
    fig = plot._mistakes_figure(images, [0, 1], [1, 0], [0.5, 0.5], image_shape=CIFAR)
    np.testing.assert_allclose(_png_pixel(fig, tmp_path / "red.png", 16, plot._TOP + 16),
                               (1, 0, 0), atol=0.02)
    np.testing.assert_allclose(_png_pixel(fig, tmp_path / "blue.png", 32 + plot._GAP + 16,
                                          plot._TOP + 16), (0, 0, 1), atol=0.02)
    with pytest.raises(ValueError, match=r"images must have shape \(N, 3072\) or \(N, 32, 32, 3\)"):
        plot._mistakes_figure(DIGITS, labels, predicted, confidence, image_shape=CIFAR)


def test_mistakes_figure_other_shapes():
    # One channel, not square: grey, in the images' own layout (5 tall, 7 wide).
    grey = RNG.integers(0, 256, (3, 35), dtype=np.uint8)
    fig = plot._mistakes_figure(grey, [0, 1, 2], [1, 2, 0], [0.5] * 3, image_shape=(5, 7, 1))
    for i in range(3):
        np.testing.assert_allclose(_tile_of(fig, i, 5, 7), grey[i].reshape(5, 7) / 255,
                                   rtol=1e-6)
    assert fig.axes[0].images[0].get_cmap().name.startswith("gray_r")
    # Two channels: side by side, one background column between them.
    two = RNG.integers(0, 256, (2, 4, 3, 2), dtype=np.uint8)
    fig = plot._mistakes_figure(two, [0, 1], [1, 0], [0.5] * 2, image_shape=(4, 3, 2))
    tile = _tile_of(fig, 1, 4, 7)
    np.testing.assert_allclose(tile[:, :3], two[1, ..., 0] / 255, rtol=1e-6)
    assert np.isnan(tile[:, 3]).all()
    np.testing.assert_allclose(tile[:, 4:], two[1, ..., 1] / 255, rtol=1e-6)


def _tile_of(fig, i, h, w):
    mosaic = np.asarray(fig.axes[0].images[0].get_array())
    cols = (mosaic.shape[1] + plot._GAP) // (w + plot._GAP)
    r, c = divmod(i, cols)
    top, left = r * (h + plot._TOP) + plot._TOP, c * (w + plot._GAP)
    return mosaic[top:top + h, left:left + w]


def test_weights_figure_draws_rgb_units_in_colour(tmp_path):
    # Unit 0 weighs red up and green and blue down: pure red; unit 1 only red up, half as
    # much as unit 3 weighs blue (each tile on its own scale: the same saturation); unit 2
    # is all 0: grey.
    w = np.zeros((32, 32, 3, 4))
    w[..., 0, 0], w[..., 1:, 0] = 2.0, -2.0
    w[..., 0, 1] = 0.5
    w[..., 2, 3] = 1.0
    fig = plot._weights_figure(w.reshape(3072, 4), image_shape=CIFAR)
    assert len(fig.axes) == 1  # no colour bar: each tile has its own scale
    assert [t.get_text() for t in fig.axes[0].texts] == ["0", "1", "2", "3"]
    expected = {0: (1, 0, 0), 1: (1, 0.5, 0.5), 2: (0.5, 0.5, 0.5), 3: (0.5, 0.5, 1)}
    for j, colour in expected.items():
        np.testing.assert_allclose(_rgba_tile(fig, j)[..., :3],
                                   np.broadcast_to(colour, (32, 32, 3)))
    # In the PNG: red is red (2 x 2 grid).
    red = _png_pixel(fig, tmp_path / "w.png", 16, plot._TOP + 16)
    np.testing.assert_allclose(red, (1, 0, 0), atol=0.02)
    # Random weights: each tile's own largest |w| reaches 0 or 1, and 0 stays at 0.5.
    fig = plot._weights_figure(RGB_WEIGHTS, image_shape=CIFAR)
    for j in range(6):
        tile = _rgba_tile(fig, j)[..., :3]
        unit = RGB_WEIGHTS[:, j].reshape(CIFAR)
        np.testing.assert_allclose(tile, 0.5 + unit / (2 * np.abs(unit).max()))
    with pytest.raises(ValueError, match=r"image_shape \(28, 28, 1\) has 784 pixels, the images "
                                         r"3072"):
        plot._weights_figure(RGB_WEIGHTS, image_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="3072 pixels per image do not make a square image"):
        plot._weights_figure(RGB_WEIGHTS)


def test_weights_figure_other_shapes():
    # One channel, not square: the shared diverging scale, as for MNIST.
    w = RNG.normal(size=(35, 3))
    fig = plot._weights_figure(w, image_shape=(5, 7, 1))
    for j in range(3):
        np.testing.assert_allclose(_tile_of(fig, j, 5, 7), w[:, j].reshape(5, 7))
    assert fig.axes[0].images[0].get_clim() == (-np.abs(w).max(), np.abs(w).max())
    # MNIST's shape given explicitly: the same figure as by default.
    same = plot._weights_figure(WEIGHTS, image_shape=(28, 28, 1))
    np.testing.assert_array_equal(_tile(same, 3), _tile(plot._weights_figure(WEIGHTS), 3))
    # Two channels: side by side on the shared scale.
    w = RNG.normal(size=(4 * 3 * 2, 2))
    fig = plot._weights_figure(w, image_shape=(4, 3, 2))
    tile = _tile_of(fig, 1, 4, 7)
    unit = w[:, 1].reshape(4, 3, 2)
    np.testing.assert_allclose(tile[:, :3], unit[..., 0])
    assert np.isnan(tile[:, 3]).all()
    np.testing.assert_allclose(tile[:, 4:], unit[..., 1])
    assert fig.axes[0].images[0].get_clim() == (-np.abs(w).max(), np.abs(w).max())


def test_evaluate_run_draws_in_the_models_image_shape(tmp_path):
    import dataclasses

    import jax

    from jaxmlp import init_params, parse_arch
    from jaxmlp._config import TrainConfig
    from jaxmlp._data import Dataset, DatasetInfo
    from jaxmlp._run import evaluate_run, load_run, _save_model, _write_json

    info = DatasetInfo("cifar10", CIFAR, 10)
    arch = parse_arch("a")
    params = init_params(jax.random.key(0), arch, 3072)
    params[0]["w"] = params[0]["w"].at[:, 0].set(  # unit 0: red up, green and blue down
        np.where(np.arange(3072) % 3 == 0, 1.0, -1.0))
    folder = tmp_path / "run"
    folder.mkdir()
    _write_json(folder / "config.json", dataclasses.asdict(TrainConfig(dataset="cifar10", arch="a")))
    _save_model(folder / "model.npz", params, arch, info)
    run = load_run(folder)
    assert run.info == info
    images = RNG.integers(0, 256, (20, 3072), dtype=np.uint8)
    data = Dataset(images, RNG.integers(0, 10, 20), images, RNG.integers(0, 10, 20), info=info)
    report = evaluate_run(run, data)
    assert report["mistakes"]
    mistakes = matplotlib.image.imread(folder / "mistakes.png")[..., :3]
    weights = matplotlib.image.imread(folder / "weights.png")[..., :3]
    # Colour, not grey: some pixels whose channels differ widely.
    assert np.abs(mistakes[..., 0] - mistakes[..., 2]).max() > 0.5
    red = (weights[..., 0] > 0.9) & (weights[..., 1] < 0.1) & (weights[..., 2] < 0.1)
    assert red.sum() > 32 * 32  # unit 0's tile, drawn at more than 1 px per weight


def _sweep_history(val: bool):
    # Two seeds × three settings over 3 epochs: two train well, one stalls at chance (10%)
    # and the last model of the second setting diverged (None).
    finals = {0: (0.95, 0.96), 1: (0.97, None), 2: (0.10, 0.11)}
    history = []
    for epoch in (1, 2, 3):
        models = []
        for k in range(3):
            for end in finals[k]:
                acc = None if end is None else end - 0.02 * (3 - epoch)
                record = {"test_acc": acc, "diverged": acc is None}
                if val:
                    record["val_acc"] = None if acc is None else acc - 0.01
                models.append(record)
        history.append({"epoch": epoch, "models": models})
    return history


@pytest.mark.parametrize("val", [False, True])
def test_sweep_figure_fits_the_settings_in_the_running(val):
    from jaxmlp import Grid

    grid = Grid(seeds=(0, 1), lrs=(0.01, 0.1, 10.0), momenta=(0.9,))
    fig = plot._sweep_figure(_sweep_history(val), grid)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    # The stalled setting (0.10) is left below: the axis spans the good ones' epochs 2 and 3.
    shift = 0.01 if val else 0.0
    assert 0.93 - shift > low > 0.92 - shift and 0.97 - shift < high < 0.98 - shift
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["lr 0.01, momentum 0.9", "lr 0.1, momentum 0.9",
                      "lr 10, momentum 0.9 (below the axis)"]
    assert ax.get_ylabel() == ("validation accuracy" if val else "test accuracy")
    one_epoch = plot._sweep_figure(_sweep_history(val)[:1], grid).axes[0]  # whole epochs only
    assert all(float(x).is_integer() for x in one_epoch.get_xticks())


def test_mistakes_and_weights_say_what_they_show():
    # Issue 26: mistakes.png's "(1.00)" had no title saying it is a confidence.
    texts = lambda fig: [t.get_text() for t in fig.texts]
    fig = plot._mistakes_figure(DIGITS, [4, 1, 7, 3, 9], [9, 7, 1, 5, 4], [0.99] * 5)
    assert texts(fig) == ["the 5 most confident mistakes: true class, predicted class (its "
                          "probability)"]
    assert texts(plot._weights_figure(WEIGHTS)) == [
        "first layer: each unit's incoming weights (red up, blue down)"]
    wide = RNG.normal(size=(784, 150))  # only the first 100 units are drawn
    assert texts(plot._weights_figure(wide))[0].startswith("first layer: the first 100 of 150")
