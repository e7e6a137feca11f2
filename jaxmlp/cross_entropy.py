"""Cross-entropy on logits and its hand-derived gradient ``p·Σy − y`` (seed Problem 2)."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp._checks import label_range

from jaxmlp.softmax import log_softmax, softmax


def _check_targets(z, y) -> None:
    """Raises a clear error unless ``y`` fits logits ``z`` of shape ``(..., n)``.

    ``y`` is either integer labels of shape ``z.shape[:-1]`` with values in ``[0, n)``,
    or floating rows of shape ``z.shape``. Values are checked only when ``y`` is concrete
    (not traced by ``jit``), so checks cost nothing inside compiled code.
    """
    z_shape, y_shape = np.shape(z), np.shape(y)
    if len(z_shape) < 1:
        raise ValueError(f"logits must have a class axis, got shape {z_shape}")
    n = z_shape[-1]
    dtype = jnp.result_type(y)
    if jnp.issubdtype(dtype, jnp.integer):
        if y_shape != z_shape[:-1]:
            raise ValueError(f"integer labels must have shape {z_shape[:-1]} for logits of shape "
                             f"{z_shape}, got {y_shape}")
        label_range(y, n)
    elif jnp.issubdtype(dtype, jnp.floating):
        if y_shape != z_shape:
            raise ValueError(f"target rows must have the logits' shape {z_shape}, got {y_shape} "
                             f"(pass integer labels of shape {z_shape[:-1]} instead)")
    else:
        raise TypeError(f"targets must be integer labels or floating rows, got dtype {dtype}")


def _label_mask(z, y):
    """For integer labels: the labels clipped into ``[0, n)``, and a per-example factor.

    The factor is 1 where ``0 <= y < n`` and NaN elsewhere. Multiplying by it (instead of
    selecting with ``where``) makes an out-of-range example's loss NaN *and* its gradient
    NaN, in ``jax.grad`` as in ``cross_entropy_grad``; clipping keeps the gather from
    reading another class. ``O(B)`` work, against the ``O(B·n)`` of the softmax.
    """
    n = z.shape[-1]
    valid = (y >= 0) & (y < n)
    factor = jnp.where(valid, jnp.ones((), z.dtype), jnp.full((), jnp.nan, z.dtype))
    return jnp.clip(y, 0, n - 1), factor


def smooth_labels(labels, n: int, epsilon: float):
    """Label smoothing (Szegedy et al. 2016): soft targets ``(1 − ε)·onehot(y) + ε/n``,
    ``(B,) → (B, n)``. The loss's gradient stays ``p − y``, with these ``y``."""
    return (1 - epsilon) * jax.nn.one_hot(labels, n) + epsilon / n


def cross_entropy(z: jax.Array, y: jax.Array) -> jax.Array:
    """Per-example cross-entropy ``J = −Σ_i y_i log p_i`` with ``p = softmax(z)``.

    Terms with ``y_i = 0`` contribute exactly 0 (``0·log 0 = 0``), so a one-hot row gives
    the finite loss of the integer label even when another class's logit is ``−inf``.

    Labels outside ``[0, n)`` raise ``ValueError`` when concrete. Under ``jit`` they cannot
    be checked without a host round trip, so such an example's loss is NaN (never another
    class's loss), and so is the gradient of any loss that includes it. NaN rather than
    ``checkify``: the data loader validates labels before training, and the training loop's
    divergence guard already stops on a NaN loss, so a bad label stops the run with a
    clear message at no cost to the step.

    Args:
      z: logits, shape ``(..., n)``.
      y: integer labels ``(...)`` in ``[0, n)``, or rows ``(..., n)`` (one-hot, soft,
        or any weights: rows need not sum to 1).

    Returns:
      per-example losses, shape ``(...)``; the caller reduces.
    """
    _check_targets(z, y)
    logp = log_softmax(z)
    if jnp.issubdtype(jnp.result_type(y), jnp.integer):
        label, factor = _label_mask(z, y)
        # A gather, not a one-hot product: cheaper, and exact.
        return -jnp.take_along_axis(logp, label[..., None], axis=-1)[..., 0] * factor
    # 0·log 0 = 0: where y_i = 0 and p_i = 0, use log p_i = 0 instead of −inf, so neither
    # the value (0·−inf = NaN) nor the gradient (whose chain multiplies by log p_i and by
    # y_i) sees the −inf. Elsewhere log p_i is kept, so ∂J/∂y_i = −log p_i stays right.
    logp = jnp.where((y == 0) & jnp.isneginf(logp), jnp.zeros((), logp.dtype), logp)
    return -jnp.sum(y * logp, axis=-1)


def cross_entropy_grad(z: jax.Array, y: jax.Array) -> jax.Array:
    """Hand-derived ``∂J/∂z = p·Σ_i y_i − y`` (``= p − y`` when rows of ``y`` sum to 1).

    No autodiff: this is the seed's Problem 2 derivation, checked against ``jax.grad``
    in the tests. Rows for out-of-range labels under ``jit`` are NaN (see ``cross_entropy``).

    Args:
      z: logits, shape ``(..., n)``.
      y: as for ``cross_entropy``.

    Returns:
      per-example gradients, shape ``(..., n)``.
    """
    _check_targets(z, y)
    p = softmax(z)
    if jnp.issubdtype(jnp.result_type(y), jnp.integer):
        label, factor = _label_mask(z, y)
        # one-hot rows sum to 1
        return (p - jax.nn.one_hot(label, z.shape[-1], dtype=p.dtype)) * factor[..., None]
    return p * jnp.sum(y, axis=-1, keepdims=True) - y
