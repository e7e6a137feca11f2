"""Images as network inputs: the one place where pixels become ``(N, in_dim)`` floats in [0, 1]."""
import jax
import jax.numpy as jnp
import numpy as np


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _dtype(images) -> np.dtype:
    """The pixels' own dtype, for messages: ``jnp.result_type`` would call an int64 numpy
    array int32 (its canonical form with x64 off)."""
    return np.dtype(images.dtype) if hasattr(images, "dtype") else np.asarray(images).dtype


def check_images(images, *, in_dim: int = 28 * 28) -> None:
    """The shape and dtype checks of ``prepare_images``, without tracing or touching values.

    Takes anything with ``shape`` and ``dtype`` (numpy or JAX arrays, tracers,
    ``jax.ShapeDtypeStruct``); raises as ``prepare_images`` does, with the
    input's real dtype in the message.
    """
    shape, dtype = np.shape(images), _dtype(images)
    side = int(round(in_dim ** 0.5))
    accepted = [(in_dim,)] + ([(side, side), (side, side, 1)] if side * side == in_dim else [])
    if len(shape) < 2 or tuple(shape[1:]) not in accepted or shape[0] == 0:
        forms = " or ".join(str(("N", *a)).replace("'", "") for a in accepted)
        hint = (" (one image? add a batch axis: images[None])"
                if tuple(shape) in accepted else "")
        raise ValueError(f"images must have shape {forms} with N >= 1, got {tuple(shape)}{hint}")
    if dtype != np.uint8 and not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"images must be uint8 (0-255) or floating (0-1), got dtype {dtype}")


def prepare_images(images, *, in_dim: int = 28 * 28) -> jax.Array:
    """Flattens and scales a batch of images for ``forward``.

    uint8 pixels (0–255) are divided by 255; floating pixels are taken as already in
    [0, 1] and never scaled twice. Works under ``jit`` (the range check then is skipped).

    Args:
      images: uint8 or floating, shape ``(N, in_dim)``, or for square images of
        ``in_dim`` pixels ``(N, side, side)`` or ``(N, side, side, 1)``
        (MNIST: ``(N, 784)``, ``(N, 28, 28)``, ``(N, 28, 28, 1)``).
      in_dim: pixels per image the network takes.

    Returns:
      float32 ``(N, in_dim)`` in [0, 1].

    Raises:
      ValueError: a shape that is not a batch of ``in_dim``-pixel images, or floating
        pixels outside [0, 1].
      TypeError: integer pixels that are not uint8 (their scale is unknown), or booleans.
    """
    check_images(images, in_dim=in_dim)
    shape, dtype = np.shape(images), _dtype(images)
    if dtype == jnp.uint8:
        return jnp.reshape(images, (shape[0], in_dim)).astype(jnp.float32) / 255.0
    if _is_concrete(images):
        lo, hi = float(np.min(images)), float(np.max(images))
        if not (0.0 <= lo and hi <= 1.0):  # NaN fails too
            raise ValueError(f"floating images must already be scaled to [0, 1], got values in "
                             f"[{lo:g}, {hi:g}] (pass uint8 pixels to have them scaled)")
    return jnp.reshape(images, (shape[0], in_dim)).astype(jnp.float32)
