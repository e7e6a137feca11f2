"""predict, top_k, and image files turned into MNIST inputs (load_image, load_inputs)."""
import re
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageDraw

from jaxmlp import forward, init_params, loss, parse_arch, softmax
from jaxmlp._predict import _load_image, load_inputs, predict, top_k


def _digit() -> np.ndarray:
    """A thick white "1" (slanted stroke and a flag) on black, 280×200, uint8."""
    yy, xx = np.mgrid[:280, :200]
    ink = (np.abs((xx - 100) - 0.15 * (yy - 140)) < 14) & (yy > 30) & (yy < 250)
    ink |= (yy > 30) & (yy < 60) & (xx > 60) & (xx < 110)
    return np.where(ink, 255, 0).astype(np.uint8)


def _save(array: np.ndarray, path, mode=None, **kwargs):
    Image.fromarray(array, mode).save(path, **kwargs)
    return path


@pytest.fixture
def white_on_black(tmp_path):
    return _save(_digit(), tmp_path / "one.png")


def _com(image: np.ndarray) -> tuple[float, float]:
    a = image.reshape(28, 28).astype(np.float64)
    return (a.sum(1) @ np.arange(28)) / a.sum(), (a.sum(0) @ np.arange(28)) / a.sum()


def test_load_image_is_mnist_formatted(white_on_black):
    image = _load_image(white_on_black)
    assert image.dtype == np.uint8 and image.shape == (784,)
    cy, cx = _com(image)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
    rows, cols = np.nonzero(image.reshape(28, 28))
    # The longer side (the stroke's height) is scaled to exactly 20 px, the other in ratio.
    assert rows.max() - rows.min() + 1 == 20 and cols.max() - cols.min() + 1 <= 20
    assert image.max() == 255 and image.reshape(28, 28)[0].max() == 0


def test_image_modes_and_backgrounds_agree(tmp_path, white_on_black):
    digit = _digit()
    reference = _load_image(white_on_black).astype(int)
    rgba_dark = np.zeros((*digit.shape, 4), np.uint8)  # black ink, alpha = the stroke
    rgba_dark[..., 3] = digit
    rgba_white = np.full((*digit.shape, 4), 255, np.uint8)  # white ink on transparent
    rgba_white[..., 3] = digit
    variants = {
        "black_on_white.png": (255 - digit, None),
        "rgb.png": (np.stack([digit] * 3, -1), None),
        "rgba_dark_ink.png": (rgba_dark, "RGBA"),
        "rgba_white_ink.png": (rgba_white, "RGBA"),
    }
    for name, (array, mode) in variants.items():
        got = _load_image(_save(array, tmp_path / name, mode)).astype(int)
        assert np.abs(got - reference).max() <= 3, name
    palette = Image.fromarray(255 - digit).convert("P")
    palette.save(tmp_path / "palette.png")
    assert np.abs(_load_image(tmp_path / "palette.png").astype(int) - reference).max() <= 3
    # JPEG blurs the edges a little: a few grey levels.
    jpeg = _save(np.stack([255 - digit] * 3, -1), tmp_path / "dark.jpg", quality=90)
    assert np.abs(_load_image(jpeg).astype(int) - reference).max() <= 8


def test_grey_paper_is_background(tmp_path, white_on_black):
    # A photo-like page: grey paper (200), dark grey ink (40): inverted, background
    # subtracted and stretched, it is the clean digit again.
    page = np.where(_digit() > 0, 40, 200).astype(np.uint8)
    got = _load_image(_save(page, tmp_path / "page.png")).astype(int)
    assert np.abs(got - _load_image(white_on_black).astype(int)).max() <= 3


def test_invert_forces(tmp_path, white_on_black):
    dark = _save(255 - _digit(), tmp_path / "dark.png")
    np.testing.assert_array_equal(_load_image(dark, invert=True), _load_image(dark))
    np.testing.assert_array_equal(_load_image(white_on_black, invert=False),
                                  _load_image(white_on_black))
    # The messages reach CLI users too: both spellings.
    with pytest.raises(ValueError, match="dark.png: no digit brighter than the background "
                                         r"\(not inverted; invert it: --invert, or invert=True\)"):
        _load_image(dark, invert=False)
    with pytest.raises(ValueError, match=r"one.png: no digit brighter than the background \(inverted; "
                                         r"do not invert it: --no-invert, or invert=False\)"):
        _load_image(white_on_black, invert=True)
    # A 28×28 image is taken as is: forced inversion is exactly 255 − x.
    small = np.zeros((28, 28), np.uint8)
    small[6:22, 12:16] = 255
    small[5, 12:16] = 90
    path = _save(small, tmp_path / "small.png")
    np.testing.assert_array_equal(_load_image(path, invert=True), 255 - small.reshape(-1))


def test_28x28_round_trips_exactly(tmp_path):
    rng = np.random.default_rng(0)
    image = np.zeros((28, 28), np.uint8)
    image[4:24, 8:20] = rng.integers(0, 256, (20, 12))  # off-centre grey levels, kept as is
    np.testing.assert_array_equal(_load_image(_save(image, tmp_path / "x.png")), image.reshape(-1))
    images, names = load_inputs([tmp_path / "x.png"])
    assert names == [str(tmp_path / "x.png")]
    np.testing.assert_array_equal(images, image.reshape(1, -1) / np.float32(255))


def _photo(ink: np.ndarray, *, ink_level=40, table=None, seed=0) -> np.ndarray:
    """A camera-like photo of ``ink`` (in [0, 1]) in dark ink on paper, uint8.

    The tester's case: paper 200 under a radial vignette darkening the border to a mean of
    about 120 (the corners to 110) while the median stays about 185; ink at ``ink_level``
    (dimmed by the vignette like the paper); sensor noise. ``table`` adds a band of that
    grey along the left edge, as a table beside the paper.
    """
    h, w = ink.shape
    page = np.zeros((h + 200, w + 240))
    page[100:100 + h, 120:120 + w] = ink
    yy, xx = np.mgrid[:page.shape[0], :page.shape[1]]
    r = np.hypot(yy / page.shape[0] - 0.5, xx / page.shape[1] - 0.5) / np.sqrt(0.5)  # 1: corners
    photo = (1 - 0.45 * np.minimum(1, r / 0.75) ** 6) * (200 - (200 - ink_level) * page)
    if table is not None:
        photo[:, :40] = table
    photo += np.random.default_rng(seed).normal(0, 3, photo.shape)
    return np.clip(np.rint(photo), 0, 255).astype(np.uint8)


# Photos of dark ink on paper: the tester's two, and pencil beside a black table (the table,
# not the ink, is then the darkest: halfway to it, the pencil would not count as ink).
PHOTOS = {"vignette": {}, "table_edge": {"table": 35},
          "pencil_by_black_table": {"ink_level": 120, "table": 10}}


def _corr(a, b) -> float:
    return float(np.corrcoef(np.ravel(a).astype(float), np.ravel(b).astype(float))[0, 1])


def _corr_shifted(a, b) -> float:
    """The best correlation of ``a`` with ``b`` moved by up to a pixel each way: centring by
    mass rounds to whole pixels, so a centre of mass near a half pixel may go either way."""
    a, b = np.reshape(a, (28, 28)), np.reshape(b, (28, 28))
    return max(_corr(a, np.roll(b, (dy, dx), (0, 1))) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_photo_of_dark_digit_on_vignetted_paper(tmp_path, white_on_black):
    reference = _load_image(white_on_black).astype(int)
    plain = _photo(_digit() / 255)
    border = np.concatenate([plain[0], plain[-1], plain[1:-1, 0], plain[1:-1, -1]])
    # The border darker than mid-grey, the median light: a border rule would not invert.
    assert 115 < border.mean() < 130 and 180 <= np.median(plain) <= 190
    for name, kwargs in PHOTOS.items():
        path = _save(_photo(_digit() / 255, **kwargs), tmp_path / f"{name}.jpg", quality=90)
        for invert in (None, True):  # decided from the median, or forced: the same digit
            got = _load_image(path, invert=invert).astype(int)
            assert _corr(got, reference) > 0.99, (name, invert)
            assert np.abs(got - reference).max() <= 40, (name, invert)


def test_white_on_black_photo_ignores_edge_glare(tmp_path, white_on_black):
    # The other polarity: chalk on a dark board, a bright glare along the top edge.
    photo = 255 - _photo(_digit() / 255, seed=1)
    photo[:30] = 240
    got = _load_image(_save(photo, tmp_path / "board.png")).astype(int)
    assert _corr(got, _load_image(white_on_black)) > 0.99


def test_big_photo_is_read_reduced_quietly_and_fast(tmp_path, capfd):
    # 108 megapixels, over Pillow's warning limit (89 MP): a phone camera's JPEG.
    image = Image.new("L", (12000, 9000), 200)
    ImageDraw.Draw(image).ellipse((5000, 3000, 6500, 6000), fill=30)
    image.save(tmp_path / "big.jpg", quality=80)
    del image
    capfd.readouterr()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning, nor any other
        got = _load_image(tmp_path / "big.jpg").reshape(28, 28)
    assert time.perf_counter() - start < 5  # decoded at 1/8 scale: a fraction of a second
    assert capfd.readouterr() == ("", "")
    # The blob (1500 × 3000): 10 × 20 in the 28×28, centred.
    rows, cols = np.nonzero(got > 127)
    assert rows.max() - rows.min() + 1 in (19, 20) and cols.max() - cols.min() + 1 in (9, 10, 11)
    assert abs(_com(got)[0] - 14) <= 1 and abs(_com(got)[1] - 14) <= 1


def test_png_over_the_size_limits(tmp_path, monkeypatch, white_on_black):
    # Pillow's limits scaled down (as if this 2,000-px PNG were a 100-megapixel one): over
    # MAX_IMAGE_PIXELS it is read reduced, without Pillow's warning; over twice that, refused.
    big = np.kron(_digit(), np.ones((7, 7), np.uint8))  # 1960 × 1400, over MAX_SIDE
    path = _save(big, tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_000_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _load_image(path).astype(int)
    assert np.abs(got - _load_image(white_on_black).astype(int)).max() <= 6  # read at 1/2 scale
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(ValueError, match=r"big.png: image too large: over 2 megapixels, "
                                         r"Pillow's limit against decompression bombs$"):
        _load_image(path)


def test_blank_image_is_an_error(tmp_path):
    for value in (0, 255, 128):
        path = _save(np.full((40, 30), value, np.uint8), tmp_path / f"blank{value}.png")
        with pytest.raises(ValueError, match=rf"blank{value}.png: blank image, no digit found"):
            _load_image(path)


def test_npy_uint8_and_float_give_the_same_rows(tmp_path):
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, (3, 28, 28)).astype(np.uint8)
    np.save(tmp_path / "u8.npy", u8)
    np.save(tmp_path / "f.npy", (u8 / np.float32(255)).reshape(3, 784))
    np.save(tmp_path / "f4.npy", (u8 / np.float32(255))[..., None])
    np.save(tmp_path / "one.npy", u8[1])
    np.save(tmp_path / "flat.npy", u8[2].reshape(-1))
    images, names = load_inputs([tmp_path / "u8.npy", tmp_path / "f.npy", tmp_path / "f4.npy",
                                 tmp_path / "one.npy", tmp_path / "flat.npy"])
    assert images.dtype == np.float32 and images.shape == (11, 784)
    expected = u8.reshape(3, 784) / np.float32(255)
    for block in (images[0:3], images[3:6], images[6:9]):
        np.testing.assert_array_equal(block, expected)
    np.testing.assert_array_equal(images[9:], expected[1:])
    assert names[:3] == [f"{tmp_path / 'u8.npy'}[{i}]" for i in range(3)]
    assert names[9:] == [str(tmp_path / "one.npy"), str(tmp_path / "flat.npy")]


def test_npy_invert(tmp_path):
    u8 = np.random.default_rng(5).integers(0, 256, (2, 28, 28)).astype(np.uint8)
    np.save(tmp_path / "u8.npy", u8)
    np.save(tmp_path / "f.npy", u8 / np.float32(255))
    files = [tmp_path / "u8.npy", tmp_path / "f.npy"]
    as_is = np.concatenate([u8, u8]).reshape(4, 784) / np.float32(255)
    for invert in (None, False):  # arrays are taken as MNIST-formatted
        np.testing.assert_array_equal(load_inputs(files, invert=invert)[0], as_is)
    inverted, _ = load_inputs(files, invert=True)
    np.testing.assert_array_equal(inverted[:2], (255 - u8).reshape(2, 784) / np.float32(255))
    np.testing.assert_allclose(inverted[2:], 1 - as_is[2:], atol=1e-7)
    # The range is checked before inverting: the message gives the file's own values.
    np.save(tmp_path / "range.npy", np.full((2, 784), 3.0, np.float32))
    with pytest.raises(ValueError, match=r"range.npy: .* got values in \[3, 3\]"):
        load_inputs([tmp_path / "range.npy"], invert=True)


def test_mixed_inputs_keep_order(tmp_path, white_on_black):
    np.save(tmp_path / "two.npy", np.zeros((2, 784), np.uint8))
    images, names = load_inputs([tmp_path / "two.npy", white_on_black])
    assert names == [f"{tmp_path / 'two.npy'}[0]", f"{tmp_path / 'two.npy'}[1]", str(white_on_black)]
    np.testing.assert_array_equal(images[2], _load_image(white_on_black) / np.float32(255))
    assert images[:2].max() == 0


def _bad_files(tmp_path):
    png = _save(_digit(), tmp_path / "good.png")
    (tmp_path / "truncated.png").write_bytes(png.read_bytes()[:400])
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).bytes(2000))
    (tmp_path / "notes.txt").write_text("7\n")
    np.save(tmp_path / "shape.npy", np.zeros((3, 27, 27), np.uint8))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "range.npy", np.full((2, 784), 3.0, np.float32))
    np.save(tmp_path / "ints.npy", np.zeros((2, 784), np.int64))
    np.save(tmp_path / "ok.npy", np.zeros((2, 784), np.uint8))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:200])
    (tmp_path / "text.npy").write_text("0 0 0\n")  # numpy reads what lacks its magic as a pickle
    ok = (tmp_path / "ok.npy").read_bytes()
    at = ok.find(b"{'descr'")
    (tmp_path / "header.npy").write_bytes(ok[:at] + b"X" * 30 + ok[at + 30:])  # tokenize's error
    np.savez(tmp_path / "archive.npz", images=np.zeros((2, 784), np.uint8))
    (tmp_path / "archive.npz").rename(tmp_path / "archive.npy")
    (tmp_path / "folder.png").mkdir()
    return {
        "missing.png": (FileNotFoundError, "no such file"),
        "truncated.png": (ValueError, "not a readable image"),
        "noise.png": (ValueError, "not a readable image"),
        "notes.txt": (ValueError, r"unknown file type '.txt'; expected .png, .jpg, .jpeg, .bmp, .gif, .webp or .npy"),
        "shape.npy": (ValueError, r"images must have shape"),
        "objects.npy": (ValueError, r"not a readable .npy array \(it holds Python objects, "
                                    r"which are not read\)$"),
        "text.npy": (ValueError, r"not a readable .npy array \(not NumPy's .npy format\)$"),
        "header.npy": (ValueError, r"not a readable .npy array \(its header is damaged\)$"),
        "range.npy": (ValueError, r"must already be scaled to \[0, 1\]"),
        "ints.npy": (ValueError, "must be uint8 .* got dtype int64$"),  # not int32
        "cut.npy": (ValueError, "not a readable .npy array"),
        "archive.npy": (ValueError, "an .npz archive, not a .npy array"),
        "folder.png": (ValueError, "not a file"),
    }


def test_every_bad_file_is_one_clear_error_naming_it(tmp_path):
    for name, (error, message) in _bad_files(tmp_path).items():
        with pytest.raises(error) as info:
            load_inputs([tmp_path / "good.png", tmp_path / name])
        assert type(info.value) is error, name
        text = str(info.value)
        assert text.startswith(f"{tmp_path / name}: "), text
        assert "\n" not in text, text
        assert re.search(message, text), text


def test_load_image_errors_name_the_file(tmp_path):
    _bad_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.png: no such file"):
        _load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="truncated.png: not a readable image"):
        _load_image(tmp_path / "truncated.png")
    with pytest.raises(ValueError, match="no input files given"):
        load_inputs([])


def _random_model(spec="b"):
    arch = parse_arch(spec)
    return init_params(jax.random.key(3), arch, 784), arch


def test_predict_matches_forward_and_accepts_every_layout():
    params, arch = _random_model()
    u8 = np.random.default_rng(2).integers(0, 256, (13, 28, 28)).astype(np.uint8)
    probs = predict(params, u8, arch)
    expected = softmax(forward(params, jnp.asarray(u8.reshape(13, 784), jnp.float32) / 255.0, arch))
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-6)
    as_float = u8 / np.float32(255)
    for images in (u8.reshape(13, 784), u8[..., None], as_float, as_float.reshape(13, 784),
                   as_float[..., None], jnp.asarray(u8)):
        np.testing.assert_array_equal(predict(params, images, arch), probs)
    # Floats already in [0, 1] are not scaled again: dividing them by 255 once more (what
    # a double scaling would do) changes the answer.
    assert np.abs(predict(params, as_float / 255, arch) - probs).max() > 1e-3


def test_predict_chunks_give_the_same_probabilities():
    params, arch = _random_model()
    u8 = np.random.default_rng(4).integers(0, 256, (10, 784)).astype(np.uint8)
    whole = predict(params, u8, arch)
    for chunk_size in (1, 3, 4, 10, 11):
        np.testing.assert_allclose(predict(params, u8, arch, chunk_size=chunk_size), whole,
                                   rtol=1e-6, atol=1e-8)
    # Each row's probabilities do not depend on its neighbours (padding included).
    np.testing.assert_allclose(predict(params, u8[7:8], arch, chunk_size=3), whole[7:8],
                               rtol=1e-6, atol=1e-8)


def test_predict_errors():
    params, arch = _random_model()
    with pytest.raises(ValueError, match=r"images must have shape .* got \(2, 27, 27\)"):
        predict(params, np.zeros((2, 27, 27), np.uint8), arch)
    bad = np.full((5, 784), 0.5, np.float32)
    bad[4, 3] = 2.0  # in the last, padded chunk: padding adds no values of its own
    with pytest.raises(ValueError, match=r"must already be scaled to \[0, 1\], got values in \[0.5, 2\]"):
        predict(params, bad, arch, chunk_size=2)
    # Found by a fresh-eyes test: "got values in [nan, nan]" and, for a string, "got ()".
    bad[4, 3], bad[0, 0] = np.nan, np.nan
    with pytest.raises(ValueError, match=r"scaled to \[0, 1\], got NaN in 2 of 3,920 pixels$"):
        predict(params, bad, arch)
    for text in ("x", b"x"):
        with pytest.raises(TypeError, match=f"^images must be an array of numbers, got "
                                            f"{type(text).__name__}$"):
            predict(params, text, arch)
    with pytest.raises(TypeError, match="must be uint8"):
        predict(params, np.zeros((2, 784), np.int32), arch)
    with pytest.raises(TypeError, match="got dtype int64$"):  # its own, not x64-off's int32
        predict(params, np.zeros((2, 784), np.int64), arch)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        predict(params, np.zeros((2, 784), np.uint8), arch, chunk_size=0)


def test_top_k():
    probs = np.array([[0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    assert top_k(probs, 2) == [[(1, pytest.approx(0.6)), (2, pytest.approx(0.3))],
                               [(2, pytest.approx(0.6)), (0, pytest.approx(0.2))]]
    assert [c for c, _ in top_k(probs)[0]] == [1, 2, 0]
    assert len(top_k(probs, 10)[0]) == 3
    assert all(isinstance(c, int) and isinstance(p, float) for c, p in top_k(probs)[1])
    with pytest.raises(ValueError, match="k must be a positive int"):
        top_k(probs, 0)
    with pytest.raises(ValueError, match=r"probs must have shape \(N, n_classes\)"):
        top_k(probs[0])


@pytest.fixture(scope="module")
def trained(mnist):
    """Preset a, 300 plain SGD steps (lr 0.5, batches of 500 from 10,000 training images)."""
    arch = parse_arch("a")
    x = jnp.asarray(mnist.train_images[:10_000], jnp.float32).reshape(20, 500, 784) / 255.0
    y = jnp.asarray(mnist.train_labels[:10_000]).reshape(20, 500)

    @jax.jit
    def train(params):
        def step(p, i):
            g = jax.grad(loss)(p, x[i % 20], y[i % 20], arch)
            return jax.tree.map(lambda w, d: w - 0.5 * d, p, g), None
        return jax.lax.scan(step, params, jnp.arange(300))[0]

    return train(init_params(jax.random.key(0), arch, 784)), arch


def test_predict_on_a_trained_model(mnist, trained, tmp_path):
    params, arch = trained
    probs = predict(params, mnist.test_images, arch)
    assert probs.shape == (10_000, 10)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    accuracy = float(np.mean(probs.argmax(1) == mnist.test_labels))
    assert accuracy > 0.85, accuracy
    # The same test images through files: a .npy of (N, 28, 28) and PNGs of 28×28.
    np.save(tmp_path / "test.npy", mnist.test_images[:50].reshape(50, 28, 28))
    for i in range(3):
        _save(mnist.test_images[i].reshape(28, 28), tmp_path / f"{i}.png")
    images, names = load_inputs([tmp_path / "test.npy", *(tmp_path / f"{i}.png" for i in range(3))])
    from_files = predict(params, images, arch)
    # Another chunk shape (53 rows, not 4096): equal up to float32 round-off.
    np.testing.assert_allclose(from_files, probs[np.r_[:50, :3]], rtol=1e-5, atol=1e-7)
    assert [c for c, _ in (row[0] for row in top_k(probs[:50], 1))] == list(probs[:50].argmax(1))


def test_photos_of_mnist_digits_are_recognised(mnist, trained, tmp_path):
    # Real test digits, one per class, that the model gets right both as they are and drawn
    # 10× larger in white on black (a clean image file), now photographed as JPEG (dark ink
    # on vignetted paper, see PHOTOS): the same answers.
    params, arch = trained
    n = 60
    inks, clean = [], []
    for i in range(n):
        digit = Image.fromarray(mnist.test_images[i].reshape(28, 28).astype(np.float32), "F")
        ink = np.asarray(digit.resize((280, 280), Image.Resampling.BILINEAR)) / 255
        inks.append(np.clip(ink, 0, 1))
        clean.append(_save(np.rint(inks[i] * 255).astype(np.uint8), tmp_path / f"{i}.png"))
    labels = mnist.test_labels[:n]
    right = ((predict(params, mnist.test_images[:n], arch).argmax(1) == labels)
             & (predict(params, load_inputs(clean)[0], arch).argmax(1) == labels))
    picks = [int(np.flatnonzero(right & (labels == d))[0]) for d in range(10)]
    photos = [_save(_photo(inks[i], seed=i, **kwargs), tmp_path / f"{i}_{name}.jpg", quality=90)
              for i in picks for name, kwargs in PHOTOS.items()]
    images = load_inputs(photos)[0].reshape(10, len(PHOTOS), 784)
    references = load_inputs([clean[i] for i in picks])[0]
    for i, reference, shots in zip(picks, references, images):
        # Not as close as the stroke above (> 0.99): faint stubs of MNIST's thin strokes sit
        # near the halfway level, and the photo's (halfway to ink on darker paper) is higher.
        assert all(_corr_shifted(shot, reference) > 0.85 for shot in shots), i
    got = predict(params, images.reshape(-1, 784), arch).argmax(1).reshape(10, len(PHOTOS))
    np.testing.assert_array_equal(got, np.repeat(labels[picks, None], len(PHOTOS), 1))


# Other image shapes (issue 10): CIFAR-10's 32×32×3 and others, through prepare_images,
# predict, load_image and load_inputs.

CIFAR = (32, 32, 3)


def test_prepare_images_takes_any_image_shape():
    from jaxmlp._images import check_images, prepare_images

    u8 = np.random.default_rng(6).integers(0, 256, (4, *CIFAR)).astype(np.uint8)
    expected = u8.reshape(4, 3072).astype(np.float32) / np.float32(255)
    got = prepare_images(u8, image_shape=CIFAR)
    assert got.dtype == jnp.float32 and got.shape == (4, 3072)
    np.testing.assert_array_equal(got, expected)
    # Row-major, channels last, as the datasets flatten them: pixel (y, x), channel c.
    assert got[1, (5 * 32 + 7) * 3 + 2] == np.float32(u8[1, 5, 7, 2]) / np.float32(255)
    np.testing.assert_array_equal(prepare_images(u8.reshape(4, 3072), image_shape=CIFAR), expected)
    np.testing.assert_array_equal(prepare_images(u8.reshape(4, 3072), in_dim=3072), expected)
    np.testing.assert_array_equal(prepare_images(u8 / np.float32(255), image_shape=CIFAR),
                                  expected)
    # Under jit too (shapes are static; XLA multiplies by 1/255: float32 round-off).
    np.testing.assert_allclose(jax.jit(lambda x: prepare_images(x, image_shape=CIFAR))(u8),
                               expected, rtol=1e-6, atol=0)
    forms = r"\(N, 3072\) or \(N, 32, 32, 3\) with N >= 1"
    with pytest.raises(ValueError, match=rf"images must have shape {forms}, got \(4, 32, 96\)$"):
        prepare_images(u8.reshape(4, 32, 96), image_shape=CIFAR)
    with pytest.raises(ValueError, match=rf"{forms}, got \(32, 32, 3\) \(one image\? add a batch"):
        check_images(u8[0], image_shape=CIFAR)
    with pytest.raises(ValueError, match=r"^images must have shape \(N, 3072\) with N >= 1, got "
                                         r"\(4, 32, 32, 3\)$"):
        prepare_images(u8, in_dim=3072)  # 3072 is not a square: without the shape, flat only
    with pytest.raises(ValueError, match=r"image_shape \(32, 32, 3\) has 3072 pixels, but in_dim "
                                         r"is 784"):
        prepare_images(u8, in_dim=784, image_shape=CIFAR)
    for bad in ((32, 32), (32, 0, 3), (32.0, 32, 3), "32x32x3", None.__class__):
        with pytest.raises(ValueError, match="image_shape must be .height, width, channels."):
            prepare_images(u8, image_shape=bad)
    # One channel: (N, H, W) too, and not transposed.
    grey = np.random.default_rng(7).integers(0, 256, (3, 5, 7)).astype(np.uint8)
    for images in (grey, grey[..., None], grey.reshape(3, 35)):
        np.testing.assert_array_equal(prepare_images(images, image_shape=(5, 7, 1)),
                                      grey.reshape(3, 35) / np.float32(255))
    with pytest.raises(ValueError, match=r"\(N, 35\) or \(N, 5, 7\) or \(N, 5, 7, 1\) with N >= 1, "
                                         r"got \(3, 7, 5\)$"):
        prepare_images(grey.reshape(3, 7, 5), image_shape=(5, 7, 1))


def test_mnist_shape_messages_are_unchanged():
    from jaxmlp._images import prepare_images

    message = (r"^images must have shape \(N, 784\) or \(N, 28, 28\) or \(N, 28, 28, 1\) with "
               r"N >= 1, got \(2, 27, 27\)$")
    for kwargs in ({}, {"in_dim": 784}, {"image_shape": (28, 28, 1)}):
        with pytest.raises(ValueError, match=message):
            prepare_images(np.zeros((2, 27, 27), np.uint8), **kwargs)


def test_predict_on_a_cifar_shaped_model():
    arch = parse_arch("b")
    params = init_params(jax.random.key(5), arch, 3072)
    u8 = np.random.default_rng(8).integers(0, 256, (7, *CIFAR)).astype(np.uint8)
    expected = softmax(forward(params, jnp.asarray(u8.reshape(7, 3072), jnp.float32) / 255.0,
                               arch))
    probs = predict(params, u8, arch, image_shape=CIFAR)
    assert probs.shape == (7, 10)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
    for images in (u8.reshape(7, 3072), u8 / np.float32(255)):
        np.testing.assert_allclose(predict(params, images, arch, image_shape=CIFAR, chunk_size=3),
                                   probs, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(predict(params, u8.reshape(7, 3072), arch), probs, rtol=1e-6,
                               atol=1e-8)
    with pytest.raises(ValueError, match=r"images must have shape \(N, 3072\) with N >= 1"):
        predict(params, u8, arch)  # (N, 32, 32, 3) needs the shape
    with pytest.raises(ValueError, match=r"image_shape \(28, 28, 1\) has 784 pixels, but in_dim "
                                         r"is 3072"):
        predict(params, u8, arch, image_shape=(28, 28, 1))


def _noise_rgb(h, w, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)


def test_load_image_resizes_for_other_shapes(tmp_path):
    # A 70-wide, 40-tall RGB photo for a model of 12-tall, 20-wide images: Pillow's Lanczos
    # resize to (width, height), nothing cropped, nothing inverted.
    rgb = _noise_rgb(40, 70)
    rgb[:20] //= 4  # dark on top, light below: an automatic inversion would show
    path = _save(rgb, tmp_path / "photo.png")
    expected = np.asarray(Image.fromarray(rgb).resize((20, 12), Image.Resampling.LANCZOS))
    got = _load_image(path, image_shape=(12, 20, 3))
    assert got.dtype == np.uint8 and got.shape == (12 * 20 * 3,)
    np.testing.assert_array_equal(got, expected.reshape(-1))
    np.testing.assert_array_equal(_load_image(path, image_shape=(12, 20, 3), invert=False), got)
    np.testing.assert_array_equal(_load_image(path, image_shape=(12, 20, 3), invert=True),
                                  255 - got)
    # One channel: Pillow's grey ("L"), resized the same way; a 28×28 RGB model is not MNIST.
    grey = np.asarray(Image.fromarray(rgb).convert("L").resize((9, 16), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(_load_image(path, image_shape=(16, 9, 1)), grey.reshape(-1))
    np.testing.assert_array_equal(
        _load_image(path, image_shape=(28, 28, 3)),
        np.asarray(Image.fromarray(rgb).resize((28, 28), Image.Resampling.LANCZOS)).reshape(-1))
    # The same size: the pixels as they are (a JPEG would only add its own artefacts).
    np.testing.assert_array_equal(_load_image(path, image_shape=(40, 70, 3)), rgb.reshape(-1))


def test_fashion_photos_are_resized_not_cut_out_as_digits(tmp_path):
    from jaxmlp._data import MNIST, DatasetInfo
    from jaxmlp._predict import digit_pipeline

    assert digit_pipeline(MNIST) and digit_pipeline(DatasetInfo("emnist/letters", (28, 28, 1), 37))
    assert digit_pipeline(DatasetInfo("kmnist", (28, 28, 1), 10))
    fashion = DatasetInfo("fashion_mnist", (28, 28, 1), 10)
    assert not digit_pipeline(fashion) and not digit_pipeline(DatasetInfo("cifar10", (32, 32, 3), 10))
    # An item that fills the frame: the plain conversion keeps it whole at 28×28 (a digit's
    # cut-out would crop it to its "ink" and shrink it into a 20×20 box).
    rgb = _noise_rgb(60, 50)
    path = _save(rgb, tmp_path / "shirt.png")
    grey = np.asarray(Image.fromarray(rgb).convert("L").resize((28, 28), Image.Resampling.LANCZOS))
    plain = _load_image(path, digits=False)
    np.testing.assert_array_equal(plain, grey.reshape(-1))
    assert not np.array_equal(_load_image(path), plain)  # 28×28×1 alone: the digit pipeline
    rows, _ = load_inputs([path], digits=digit_pipeline(fashion))
    np.testing.assert_array_equal(rows[0], plain / np.float32(255))
    with pytest.raises(ValueError, match=r"the digit pipeline makes \(28, 28, 1\) images, not "
                                         r"\(32, 32, 3\)"):
        _load_image(path, image_shape=(32, 32, 3), digits=True)


def test_load_image_plain_conversion_details(tmp_path):
    # Transparent pixels composited onto white; opaque ones kept.
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[:, :6] = (255, 0, 0, 255)  # opaque red left half, transparent black right half
    rgba[:, 6:, 3] = 0
    got = _load_image(_save(rgba, tmp_path / "t.png", "RGBA"), image_shape=(10, 12, 3))
    got = got.reshape(10, 12, 3)
    assert (got[:, :6] == (255, 0, 0)).all() and (got[:, 6:] == 255).all()
    # The EXIF orientation is applied: tag 6 (camera held upright) means rotate 90° clockwise.
    rgb = _noise_rgb(20, 30, seed=1)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "turned.png", exif=exif)
    np.testing.assert_array_equal(_load_image(tmp_path / "turned.png", image_shape=(30, 20, 3)),
                                  np.rot90(rgb, k=-1).reshape(-1))
    # 16-bit grey is scaled to 8 bits, not clipped at 255.
    Image.fromarray(np.full((16, 16), 100 * 257, np.uint16)).save(tmp_path / "deep.png")
    assert (_load_image(tmp_path / "deep.png", image_shape=(16, 16, 1)) == 100).all()
    # Every format a folder dataset reads, predict reads (it refused .webp, .bmp and .gif).
    for suffix in (".bmp", ".gif", ".webp"):
        Image.fromarray(np.full((16, 16), 100, np.uint8)).save(tmp_path / f"grey{suffix}",
                                                               **({"lossless": True} if
                                                                  suffix == ".webp" else {}))
        batch, names = load_inputs([tmp_path / f"grey{suffix}"], image_shape=(16, 16, 1))
        assert names == [str(tmp_path / f"grey{suffix}")] and (batch * 255 == 100).all()
    # The digit pipeline only for MNIST's shape, given or by default.
    white_on_black = _save(_digit(), tmp_path / "one.png")
    np.testing.assert_array_equal(_load_image(white_on_black, image_shape=(28, 28, 1)),
                                  _load_image(white_on_black))
    assert _load_image(white_on_black, image_shape=(28, 28, 1)).reshape(28, 28)[0].max() == 0
    # Errors: the file named as for MNIST; channel counts Pillow cannot give.
    with pytest.raises(ValueError, match="noise.png: not a readable image"):
        (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).bytes(2000))
        _load_image(tmp_path / "noise.png", image_shape=CIFAR)
    with pytest.raises(FileNotFoundError, match="missing.png: no such file"):
        _load_image(tmp_path / "missing.png", image_shape=CIFAR)
    with pytest.raises(ValueError, match=r"1 or 3 channels, this one takes 4 \(8, 8, 4\): pass "
                                         r"\.npy arrays"):
        _load_image(white_on_black, image_shape=(8, 8, 4))


def test_load_inputs_for_a_cifar_shaped_model(tmp_path):
    u8 = np.random.default_rng(9).integers(0, 256, (3, *CIFAR)).astype(np.uint8)
    np.save(tmp_path / "hwc.npy", u8)
    np.save(tmp_path / "flat.npy", u8.reshape(3, 3072) / np.float32(255))
    np.save(tmp_path / "one.npy", u8[1])
    np.save(tmp_path / "one_flat.npy", u8[2].reshape(-1))
    png = _save(u8[0], tmp_path / "zero.png")
    files = [tmp_path / f for f in ("hwc.npy", "flat.npy", "one.npy", "one_flat.npy")] + [png]
    images, names = load_inputs(files, image_shape=CIFAR)
    expected = u8.reshape(3, 3072) / np.float32(255)
    assert images.dtype == np.float32 and images.shape == (9, 3072)
    np.testing.assert_array_equal(images[:3], expected)
    np.testing.assert_array_equal(images[3:6], expected)
    np.testing.assert_array_equal(images[6:], expected[[1, 2, 0]])  # a 32×32 PNG: as it is
    assert names[:3] == [f"{tmp_path / 'hwc.npy'}[{i}]" for i in range(3)]
    assert names[6:] == [str(tmp_path / "one.npy"), str(tmp_path / "one_flat.npy"), str(png)]
    inverted, _ = load_inputs(files, image_shape=CIFAR, invert=True)
    np.testing.assert_array_equal(inverted[[0, 6, 8]], (255 - u8[[0, 1, 0]]).reshape(3, 3072)
                                  / np.float32(255))
    np.testing.assert_allclose(inverted[3:6], 1 - expected, atol=1e-7)
    np.save(tmp_path / "grey.npy", u8[..., 0])
    with pytest.raises(ValueError, match=r"grey.npy: images must have shape \(N, 3072\) or "
                                         r"\(N, 32, 32, 3\) with N >= 1, got \(3, 32, 32\)$"):
        load_inputs([tmp_path / "grey.npy"], image_shape=CIFAR)
    # MNIST arrays are not CIFAR inputs, nor the other way round.
    np.save(tmp_path / "mnist.npy", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"mnist.npy: images must have shape \(N, 3072\)"):
        load_inputs([tmp_path / "mnist.npy"], image_shape=CIFAR)
    with pytest.raises(ValueError, match=r"hwc.npy: images must have shape \(N, 784\)"):
        load_inputs([tmp_path / "hwc.npy"])


def test_load_inputs_single_channel_shapes(tmp_path):
    grey = np.random.default_rng(10).integers(0, 256, (2, 5, 7)).astype(np.uint8)
    for name, array in {"hw.npy": grey, "hwc.npy": grey[..., None], "one.npy": grey[0],
                        "one_c.npy": grey[0][..., None]}.items():
        np.save(tmp_path / name, array)
    images, names = load_inputs([tmp_path / n for n in ("hw.npy", "hwc.npy", "one.npy",
                                                        "one_c.npy")], image_shape=(5, 7, 1))
    np.testing.assert_array_equal(images, grey[[0, 1, 0, 1, 0, 0]].reshape(6, 35)
                                  / np.float32(255))
    assert names[4:] == [str(tmp_path / "one.npy"), str(tmp_path / "one_c.npy")]
    # MNIST's own single image with its channel axis, (28, 28, 1), is one image too.
    digit = np.random.default_rng(11).integers(0, 256, (28, 28, 1)).astype(np.uint8)
    np.save(tmp_path / "digit.npy", digit)
    images, names = load_inputs([tmp_path / "digit.npy"])
    np.testing.assert_array_equal(images, digit.reshape(1, 784) / np.float32(255))
    assert names == [str(tmp_path / "digit.npy")]


def test_predict_command_on_a_cifar_shaped_run(tmp_path, capsys):
    import dataclasses
    import json

    from jaxmlp.app._cli import main
    from jaxmlp._config import TrainConfig
    from jaxmlp._data import DatasetInfo
    from jaxmlp._run import _save_model, _write_json

    run = tmp_path / "run"
    run.mkdir()
    arch = parse_arch("b")
    params = init_params(jax.random.key(6), arch, 3072)
    _write_json(run / "config.json", dataclasses.asdict(TrainConfig(dataset="cifar10", arch="b")))
    _save_model(run / "model.npz", params, arch, DatasetInfo("cifar10", CIFAR, 10))
    u8 = np.random.default_rng(12).integers(0, 256, (2, *CIFAR)).astype(np.uint8)
    np.save(tmp_path / "two.npy", u8)
    photo = _noise_rgb(48, 64, seed=3)
    _save(photo, tmp_path / "photo.png")
    resized = np.asarray(Image.fromarray(photo).resize((32, 32), Image.Resampling.LANCZOS))
    expected = predict(params, np.concatenate([u8, resized[None]]), arch, image_shape=CIFAR)
    assert main(["predict", str(run), str(tmp_path / "two.npy"), str(tmp_path / "photo.png"),
                 "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == [f"{tmp_path / 'two.npy'}[{i}]" for i in range(2)] + [
        str(tmp_path / "photo.png")]
    for row, probs in zip(rows, expected):
        top = np.argsort(-probs, kind="stable")[:3]
        assert row["class"] == row["digit"] == top[0]
        assert [t["class"] for t in row["top3"]] == [t["digit"] for t in row["top3"]] == list(top)
        np.testing.assert_allclose([t["prob"] for t in row["top3"]], probs[top], rtol=1e-6)
    assert main(["predict", str(run), str(tmp_path / "two.npy")]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith(
        f"{tmp_path / 'two.npy'}[1]: {int(expected[1].argmax())}  (")
    np.save(tmp_path / "mnist.npy", np.zeros((2, 28, 28), np.uint8))
    assert main(["predict", str(run), str(tmp_path / "mnist.npy")]) == 2
    err = capsys.readouterr().err
    assert "mnist.npy: images must have shape (N, 3072) or (N, 32, 32, 3)" in err
