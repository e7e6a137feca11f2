"""Width normalisation (Cireşan et al. 2012): hand values, a NumPy reference, its rules."""
import jax
import numpy as np
import pytest

from jaxmlp import ink_columns, width_normalise


def _bar(columns, value=1.0, frame=28):
    image = np.zeros((1, 3, frame, 1), np.float32)
    image[0, 1, columns, 0] = value  # one inked row: the rows above and below stay empty
    return image


def test_a_bar_stretched_by_hand():
    # Ink in columns 10-13 (l 10, r 13), width 8: s = 4/8, x(u) = 11.5 + (u - 13.5) / 2.
    # u = 9: x = 9.25, a quarter of column 10; u = 10: 9.75, three quarters; u = 11 to 16:
    # 10.25 to 12.75, all ink; u = 17: 13.25, three quarters; u = 18: 13.75, a quarter.
    out = np.asarray(width_normalise(_bar(slice(10, 14)), 8))
    expected = np.zeros(28)
    expected[[9, 10, 17, 18]] = [0.25, 0.75, 0.75, 0.25]
    expected[11:17] = 1
    np.testing.assert_array_equal(out[0, 1, :, 0], expected)
    assert not out[0, [0, 2]].any()  # rows are left as they were
    assert out.sum() == 8  # a bar's ink grows by width / n


def test_a_bar_squeezed_by_hand():
    # Columns 4-11 (8 of them) to width 4: s = 2, x(u) = 7.5 + 2 (u - 13.5): u = 12 to 15
    # read 4.5, 6.5, 8.5, 10.5, each between two inked columns; u = 11 and 16 read 2.5 and
    # 12.5, between empty ones.
    out = np.asarray(width_normalise(_bar(slice(4, 12), 0.5), 4))
    expected = np.zeros(28)
    expected[12:16] = 0.5
    np.testing.assert_array_equal(out[0, 1, :, 0], expected)


def _reference(images, width, level=0.1):
    """The same map row by row with np.interp, in float64."""
    out = np.array(images, np.float64)
    w = images.shape[2]
    grid = np.arange(-1, w + 1)  # one zero column either side, as resample reads them
    for i, image in enumerate(np.asarray(images, np.float64)):
        cols = np.flatnonzero(image.max(axis=(0, 2)) > level)
        if len(cols):
            l, r = cols[0], cols[-1]
            x = (l + r) / 2 + (r - l + 1) / width * (np.arange(w) - (w - 1) / 2)
            for row in range(image.shape[0]):
                for c in range(image.shape[2]):
                    out[i, row, :, c] = np.interp(x, grid, np.pad(image[row, :, c], 1))
    return out


@pytest.mark.parametrize("width", [1, 6.5, 10, 14, 20])
def test_equals_a_numpy_reference(width):
    rng = np.random.default_rng(0)
    images = np.zeros((24, 28, 20, 2), np.float32)  # not square, two channels
    for image in images:  # a blob of ink between random columns, its rim below level
        l, r = sorted(rng.integers(0, 20, 2))
        image[4:24, l:r + 1] = rng.uniform(0, 1, (20, r - l + 1, 2))
    images[3] = 0  # no ink at all: as it is
    images[5] = 0.05  # ink everywhere below level: as it is
    out = np.asarray(width_normalise(images, width))
    np.testing.assert_allclose(out, _reference(images, width), atol=2e-6, rtol=0)
    np.testing.assert_array_equal(out[[3, 5]], images[[3, 5]])
    jitted = jax.jit(width_normalise, static_argnums=1)(images, width)
    np.testing.assert_allclose(np.asarray(jitted), out, atol=1e-6, rtol=0)


def test_uint8_pixels_are_scaled_as_everywhere():
    images = np.zeros((2, 28, 28, 1), np.uint8)
    images[0, 5:20, 9:13] = 255
    images[1, 3:9, 2:25] = 128
    np.testing.assert_array_equal(np.asarray(width_normalise(images, 14)),
                                  np.asarray(width_normalise(images / 255.0, 14)))


def test_ink_columns_scale_uint8_and_check_as_width_normalise_does():
    image = np.zeros((1, 4, 28, 1), np.uint8)
    image[0, 1, 2] = 10  # 0.04 of full ink: below the default level
    image[0, 2, 10:15] = 200
    assert [float(v[0]) for v in ink_columns(image)] == [10, 14]
    assert [float(v[0]) for v in ink_columns(image, level=0.02)] == [2, 14]
    for call, message in [(lambda: ink_columns(image, level=-0.1), r"level must be a number "
                           r"in \[0, 1\)"), (lambda: ink_columns(image, level="0.1"), "level"),
                          (lambda: ink_columns(image * 1.0), "must already be scaled"),
                          (lambda: ink_columns(image[0]), r"\(B, H, W, C\)")]:
        with pytest.raises((ValueError, TypeError), match=message):
            call()


def test_ink_columns_and_an_unchanged_digit():
    image = _bar(slice(12, 16))  # 4 columns, centred at 13.5: the frame's centre
    image[0, 1, 20, 0] = 0.1  # at level, not above it: not ink
    left, right = ink_columns(image)
    assert (float(left[0]), float(right[0])) == (12, 15)
    np.testing.assert_array_equal(np.asarray(width_normalise(image[:, :, :, :], 4))[0, :, :20],
                                  image[0, :, :20])  # s = 1 and no shift: the same pixels
    assert np.isnan(ink_columns(np.zeros((1, 2, 5, 1)))).all()  # no ink: no columns


@pytest.mark.parametrize("call, message", [
    (lambda x: width_normalise(x, 0), r"width must be a number of pixels in \[1, 28\] \(the "
                                      r"images' width\), got 0"),
    (lambda x: width_normalise(x, 29), r"in \[1, 28\] .*got 29"),
    (lambda x: width_normalise(x, float("nan")), "width must be a finite number, got nan"),
    (lambda x: width_normalise(x, "10"), "width must be a number, got '10'"),
    (lambda x: width_normalise(x, 10, level=1), r"level must be a number in \[0, 1\), got 1"),
    (lambda x: width_normalise(x, 10, level=-0.1), r"level must be a number in \[0, 1\)"),
    (lambda x: width_normalise(x * 255, 10), r"floating images must already be scaled to "
                                             r"\[0, 1\], got values in \[0, 255\]"),
    (lambda x: width_normalise(x[0], 10), r"images must be a batch \(B, H, W, C\)"),
    (lambda x: width_normalise(x.astype(np.int32), 10), r"int32"),
])
def test_refuses(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(_bar(slice(3, 9)))
