"""Cross-entropy on logits and its hand-derived gradient ``p·Σy − y`` (seed Problem 2)."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import _checks
from jaxmlp._softmax import check_logits, log_softmax, softmax


def check_targets(z_shape, y, name: str = "y") -> None:
    """Raises a clear error, naming ``y``, unless it fits logits of shape ``z_shape``
    ``(..., n)``.

    ``y`` is either integer labels of shape ``z_shape[:-1]`` with values in ``[0, n)``,
    or floating rows of shape ``z_shape``. Values are checked only when ``y`` is concrete
    (not traced by ``jit``), so checks cost nothing inside compiled code.
    """
    z_shape = tuple(z_shape)
    n = z_shape[-1]
    if not (hasattr(y, "shape") and hasattr(y, "dtype")):
        raise TypeError(f"{name} must be an array of integer labels or floating rows, got "
                        f"{type(y).__name__}")
    y_shape, dtype = tuple(np.shape(y)), y.dtype
    if jnp.issubdtype(dtype, jnp.integer):
        if y_shape != z_shape[:-1]:
            raise ValueError(f"{name}: integer labels must have shape {z_shape[:-1]} for logits "
                             f"of shape {z_shape}, got {y_shape}")
        _checks.label_range(y, n, name=name)
    elif jnp.issubdtype(dtype, jnp.floating):
        if y_shape != z_shape:
            raise ValueError(f"{name}: target rows must have the logits' shape {z_shape}, got "
                             f"{y_shape} (pass integer labels of shape {z_shape[:-1]} instead)")
    else:
        raise TypeError(f"{name} must be integer labels or floating rows, got dtype {dtype}")


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
    ``(B,) → (B, n)``. The loss's gradient stays ``p − y``, with these ``y``.

    ``labels`` are integers in ``[0, n)`` (checked where concrete), ``n`` a positive int,
    ``epsilon`` a number in ``[0, 1)`` (a traced one is not read).
    """
    if not (hasattr(labels, "shape") and hasattr(labels, "dtype")):
        labels = _checks.array(labels, "labels")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integer classes, got dtype {labels.dtype}")
    n = _checks.positive_int(n, "n", limit=_checks.INDEX_LIMIT)
    _checks.output_size(np.size(labels) * n, "smooth_labels' (labels.size, n) targets")
    _checks.probability(epsilon, "epsilon", traced=True)
    _checks.label_range(labels, n)
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
    check_logits(z)
    check_targets(np.shape(z), y)
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
    check_logits(z)
    check_targets(np.shape(z), y)
    p = softmax(z)
    if jnp.issubdtype(jnp.result_type(y), jnp.integer):
        label, factor = _label_mask(z, y)
        # one-hot rows sum to 1
        return (p - jax.nn.one_hot(label, z.shape[-1], dtype=p.dtype)) * factor[..., None]
    return p * jnp.sum(y, axis=-1, keepdims=True) - y
