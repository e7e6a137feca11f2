"""Images as network inputs: the one place where pixels become ``(N, in_dim)`` floats in [0, 1]."""
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import _checks
from jaxmlp._checks import is_concrete


def _dtype(images) -> np.dtype:
    """The pixels' own dtype, for messages: ``jnp.result_type`` would call an int64 numpy
    array int32 (its canonical form with x64 off)."""
    return np.dtype(images.dtype) if hasattr(images, "dtype") else np.asarray(images).dtype


# The most values an image may hold: a 4096×4096 grey image, far past any dataset an MLP
# takes (CIFAR's 3,072), and an index that int32 holds with room.
_MNIST_IN_DIM = 28 * 28  # the default input: MNIST's (jaxmlp._data.MNIST.in_dim)
MAX_PIXELS = 1 << 24


def check_image_shape(image_shape) -> tuple[int, ...]:
    """``image_shape`` as a tuple ``(height, width, channels)`` of positive ints, or
    ``ValueError``."""
    try:
        shape = tuple(image_shape)
    except TypeError:
        shape = None
    if (shape is None or len(shape) != 3
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0
                       for s in shape)):
        raise ValueError(f"image_shape must be (height, width, channels), three positive ints, "
                         f"got {image_shape!r}")
    if math.prod(int(s) for s in shape) > MAX_PIXELS:
        raise ValueError(f"image_shape must hold at most {MAX_PIXELS:,} values (an MLP's input "
                         f"width), got {tuple(int(s) for s in shape)}")
    return tuple(int(s) for s in shape)


def image_forms(in_dim=None, image_shape=None) -> tuple[int, list[tuple[int, ...]]]:
    """``(in_dim, forms)``: the pixels per image, and the shapes one image may have.

    Without ``image_shape``: ``(in_dim,)``, and for a square ``in_dim`` also ``(side,
    side)`` and ``(side, side, 1)`` (MNIST's ``(784,)``, ``(28, 28)``, ``(28, 28, 1)``).
    With ``image_shape`` ``(H, W, C)``: ``(H·W·C,)``, ``(H, W)`` when ``C`` is 1, and
    ``(H, W, C)``; ``in_dim``, if given too, must be ``H·W·C``.
    """
    if in_dim is not None:
        _checks.positive_int(in_dim, "in_dim", limit=_checks.INDEX_LIMIT)
    if image_shape is None:
        in_dim = _MNIST_IN_DIM if in_dim is None else int(in_dim)
        side = math.isqrt(in_dim) if in_dim >= 0 else 0
        return in_dim, [(in_dim,)] + ([(side, side), (side, side, 1)]
                                      if side * side == in_dim else [])
    h, w, c = check_image_shape(image_shape)
    if in_dim is not None and int(in_dim) != h * w * c:
        raise ValueError(f"image_shape {(h, w, c)} has {h * w * c} pixels, but in_dim is "
                         f"{int(in_dim)}")
    return h * w * c, [(h * w * c,)] + ([(h, w)] if c == 1 else []) + [(h, w, c)]


def check_images(images, *, in_dim: int | None = None, image_shape=None) -> None:
    """The shape and dtype checks of ``prepare_images``, without tracing or touching values.

    Takes anything with ``shape`` and ``dtype`` (numpy or JAX arrays, tracers,
    ``jax.ShapeDtypeStruct``); raises as ``prepare_images`` does, with the
    input's real dtype in the message.
    """
    in_dim, accepted = image_forms(in_dim, image_shape)
    images = _checks.array(images, "images")
    shape, dtype = np.shape(images), _dtype(images)
    if len(shape) < 2 or tuple(shape[1:]) not in accepted or shape[0] == 0:
        forms = " or ".join(str(("N", *a)).replace("'", "") for a in accepted)
        hint = (" (one image? add a batch axis: images[None])"
                if tuple(shape) in accepted else "")
        raise ValueError(f"images must have shape {forms} with N >= 1, got {tuple(shape)}{hint}")
    if dtype != np.uint8 and not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"images must be uint8 (0-255) or floating (0-1), got dtype {dtype}")


def check_range(images) -> None:
    """Floating pixels, where concrete, must lie in [0, 1] (NaN does not)."""
    if is_concrete(images) and _dtype(images) != np.uint8:
        # On the host: a jax method (np.min calls .min()) would be staged into any trace
        # that is running, as a tracer, though these pixels are concrete.
        pixels = np.asarray(images)
        if nan := int(np.isnan(pixels).sum()):  # [nan, nan] would say nothing
            raise ValueError(f"floating images must already be scaled to [0, 1], got NaN in "
                             f"{nan:,} of {pixels.size:,} pixels")
        lo, hi = float(np.min(pixels)), float(np.max(pixels))
        if not (0.0 <= lo and hi <= 1.0):  # NaN fails too
            raise ValueError(f"floating images must already be scaled to [0, 1], got values in "
                             f"[{lo:g}, {hi:g}] (pass uint8 pixels to have them scaled)")


def prepare_images(images, *, in_dim: int | None = None, image_shape=None) -> jax.Array:
    """Flattens and scales a batch of images for ``forward``.

    uint8 pixels (0–255) are divided by 255; floating pixels are taken as already in
    [0, 1] and never scaled twice. Works under ``jit`` (the range check then is skipped).
    Images are flattened row-major, channels last (``(H, W, C)`` → ``H·W·C``), as the
    datasets are (``jaxmlp._data``).

    Args:
      images: uint8 or floating, shape ``(N, in_dim)``; with ``image_shape`` ``(H, W, C)``
        also ``(N, H, W, C)``, and ``(N, H, W)`` when ``C`` is 1 (CIFAR-10: ``(N, 3072)``
        or ``(N, 32, 32, 3)``); without it, for square images of ``in_dim`` pixels also
        ``(N, side, side)`` or ``(N, side, side, 1)`` (MNIST: ``(N, 784)``,
        ``(N, 28, 28)``, ``(N, 28, 28, 1)``).
      in_dim: pixels per image the network takes; default ``H·W·C`` of ``image_shape``,
        else 784.
      image_shape: ``(height, width, channels)`` of one image, if known.

    Returns:
      float32 ``(N, in_dim)`` in [0, 1].

    Raises:
      ValueError: a shape that is not a batch of ``in_dim``-pixel images (or of
        ``image_shape`` ones), an ``image_shape`` that does not have ``in_dim`` pixels, or
        floating pixels outside [0, 1].
      TypeError: integer pixels that are not uint8 (their scale is unknown), or booleans.
    """
    images = _checks.array(images, "images")
    check_images(images, in_dim=in_dim, image_shape=image_shape)
    in_dim, _ = image_forms(in_dim, image_shape)
    shape, dtype = np.shape(images), _dtype(images)
    if dtype == jnp.uint8:
        return jnp.reshape(images, (shape[0], in_dim)).astype(jnp.float32) / 255.0
    check_range(images)
    return jnp.reshape(images, (shape[0], in_dim)).astype(jnp.float32)
