"""Width normalisation (Cireşan, Meier & Schmidhuber 2012): every digit stretched or squeezed
across to one width.

MNIST's digits are scaled to fit a 20 × 20 box with their aspect ratio kept, so a "1" is a
few pixels wide and a "0" twenty. Cireşan et al. 2012 trained each member of their committee
on the digits normalised to another width (10, 12, … 20 pixels, and the originals): members
that see the digits differently err on different digits, and so correct each other
(Meier et al. 2011 did the same for committees of 784-800-10 nets).

Per image, with ``[l, r]`` the columns that hold ink (a pixel above ``level``) and ``c`` the
frame's centre column ``(W − 1) / 2``, the output's column ``u`` reads the source at

    x(u) = (l + r) / 2 + s · (u − c),    s = (r − l + 1) / width,

bilinearly (``augment.resample``; rows unchanged, zero outside): the ink's ``r − l + 1``
columns become ``width``, centred across the frame. An image without ink is returned as it
is. Pure and jittable.
"""
import jax
import jax.numpy as jnp

from jaxmlp._augment import check_image_batch, affine_field, resample
from jaxmlp._checks import number, probability
from jaxmlp._errors import Invalid
from jaxmlp._images import prepare_images


def check_width(width, frame: int) -> float:
    """``width`` as a float, a number of pixels in [1, ``frame``] (the images' width), else
    ``Invalid`` naming it."""
    w = number(width, "width")
    if not 1 <= w <= frame:
        raise Invalid(f"width must be a number of pixels in [1, {frame}] (the images' width)",
                      repr(width))
    return w


def _pixels(images, level) -> jax.Array:
    """``images`` ``(B, H, W, C)`` as float32 in [0, 1] (uint8 scaled, as ``prepare_images``
    does everywhere), once ``images`` and ``level`` are checked."""
    b, h, w, c = check_image_batch(images)
    probability(level, "level")
    return prepare_images(images, image_shape=(h, w, c)).reshape(b, h, w, c)


def _ink(images: jax.Array, level: float) -> tuple[jax.Array, jax.Array]:
    inked = jnp.max(images, axis=(1, 3)) > level  # (B, W)
    cols = jnp.arange(images.shape[2], dtype=jnp.float32)
    left = jnp.min(jnp.where(inked, cols, jnp.inf), axis=1)
    right = jnp.max(jnp.where(inked, cols, -jnp.inf), axis=1)
    empty = ~jnp.any(inked, axis=1)
    return jnp.where(empty, jnp.nan, left), jnp.where(empty, jnp.nan, right)


def ink_columns(images: jax.Array, level: float = 0.1) -> tuple[jax.Array, jax.Array]:
    """``(l, r)``, each ``(B,)`` float32: the first and last column of each image ``(B, H, W,
    C)`` (uint8, scaled, or floats in [0, 1]) with a pixel above ``level``; NaN for an image
    without one. Errors as ``width_normalise``'s."""
    return _ink(_pixels(images, level), level)


def width_normalise(images: jax.Array, width: float, *, level: float = 0.1) -> jax.Array:
    """``images`` ``(B, H, W, C)`` (uint8, scaled, or floats in [0, 1]) with each image's
    ink (the columns holding a pixel above ``level``) stretched or squeezed across to
    ``width`` pixels and centred across the frame; rows unchanged. Float32 in [0, 1].

    The ink's ``n = r − l + 1`` columns are mapped onto ``width`` columns, read bilinearly:
    a stretched edge ramps over about ``width / n`` pixels, so a thin stroke's rim spreads
    past ``width`` (a 1-pixel "1" stretched to 10 becomes a tent), and a squeezed one
    blends neighbours. What is exact: a row's ink sum grows by ``width / n`` (while it stays
    inside the frame), and an image without ink comes back as it is.

    Raises:
      ValueError: ``images`` not a batch ``(B, H, W, C)`` or (floats, where concrete) not
        in [0, 1], ``width`` not a number of pixels in [1, W], or ``level`` not a number in
        [0, 1).
      TypeError: integer pixels that are not uint8, as ``prepare_images``.
    """
    b, h, w, _ = check_image_batch(images)
    width = check_width(width, w)
    images = _pixels(images, level)
    left, right = _ink(images, level)
    empty = jnp.isnan(left)  # read where it is: scale 1, no shift
    scale = jnp.where(empty, 1.0, (right - left + 1) / width)
    shift = jnp.where(empty, 0.0, (left + right) / 2 - (w - 1) / 2)
    matrix = jnp.zeros((b, 2, 2), jnp.float32).at[:, 0, 0].set(1.0).at[:, 1, 1].set(scale)
    offset = jnp.stack([jnp.zeros(b), shift], axis=1)
    return resample(images, *affine_field((h, w), matrix, offset.astype(jnp.float32)))
