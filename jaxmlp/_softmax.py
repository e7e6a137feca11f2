"""Softmax, log-softmax and the softmax Jacobian (seed Problem 1), all along the last axis."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import _checks


def check_logits(z, name: str = "z") -> None:
    """Raises, naming ``z``, unless it is a floating array with a class axis of at least one
    class (the last axis; any batch axes before it, empty ones too)."""
    if not (hasattr(z, "shape") and hasattr(z, "dtype")):
        raise TypeError(f"{name} must be an array of floating logits (..., n), got "
                        f"{type(z).__name__}")
    if not jnp.issubdtype(z.dtype, jnp.floating):
        raise TypeError(f"{name} must be floating-point logits, got dtype {z.dtype}")
    if np.ndim(z) < 1 or np.shape(z)[-1] < 1:
        raise ValueError(f"{name} must have a class axis of at least one class (..., n), got "
                         f"shape {tuple(np.shape(z))}")


def log_softmax(z: jax.Array) -> jax.Array:
    """``log p_i = z_i − logsumexp(z)``, computed stably.

    Shifting by ``max(z)`` leaves the result unchanged and keeps ``exp`` from
    overflowing, so logits of ±1e4 give finite values.

    Args:
      z: logits, shape ``(..., n)``.

    Returns:
      ``log softmax(z)``, shape ``(..., n)``.
    """
    check_logits(z)
    # The shift is a constant of the math, so no gradient flows through it.
    shifted = z - jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


def softmax(z: jax.Array) -> jax.Array:
    """``p_i = exp(z_i) / Σ_k exp(z_k)``, computed stably (see ``log_softmax``).

    Args:
      z: logits, shape ``(..., n)``.

    Returns:
      probabilities, shape ``(..., n)``, each row summing to 1.
    """
    check_logits(z)
    e = jnp.exp(z - jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True)))
    return e / jnp.sum(e, axis=-1, keepdims=True)


def softmax_jacobian(z: jax.Array) -> jax.Array:
    """The hand-derived softmax Jacobian ``J[..., i, j] = ∂p_j/∂z_i = p_i (δ_ij − p_j)``.

    Args:
      z: logits, shape ``(..., n)``.

    Returns:
      shape ``(..., n, n)``. (The matrix is symmetric, so ``∂p_i/∂z_j`` is the same.)
    """
    check_logits(z)
    _checks.output_size(np.size(z) * z.shape[-1], "the Jacobian (..., n, n)")
    p = softmax(z)
    eye = jnp.eye(z.shape[-1], dtype=p.dtype)
    return p[..., :, None] * (eye - p[..., None, :])
