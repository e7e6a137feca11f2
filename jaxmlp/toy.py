"""The seed's 2×2 worked example (HW2 Problem 3): one linear layer, softmax, mean
cross-entropy, trained by Optax SGD, with every intermediate exposed."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmlp.backprop import hand_grad
from jaxmlp.cross_entropy import cross_entropy_grad
from jaxmlp.mlp import forward
from jaxmlp.softmax import softmax


def toy_trace(x, y, w, b, *, lr: float = 2.0, iterations: int = 2) -> list[dict[str, np.ndarray]]:
    """Runs ``iterations`` SGD steps on ``softmax(x W + b)`` and records each one.

    Args:
      x: inputs ``(B, d)``; y: target rows ``(B, n)``; w: ``(d, n)``; b: ``(n,)``.
      lr: learning rate of ``optax.sgd``.
      iterations: how many iterations to record.

    Returns:
      One dict per iteration with ``z``, ``p``, ``dz`` (= ∂J/∂z of the *mean* loss,
      ``(p − y)/B``), ``dW`` (= xᵀ dz) and ``db`` (= Σ_batch dz), taken before that
      iteration's update.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    arch = ((int(np.shape(w)[1]), "linear"),)
    params = [{"w": jnp.asarray(w), "b": jnp.asarray(b)}]
    optimizer = optax.sgd(lr)
    opt_state = optimizer.init(params)
    rows = []
    for _ in range(iterations):
        z = forward(params, x, arch)
        grads = hand_grad(params, x, y, arch)
        rows.append({
            "z": np.asarray(z),
            "p": np.asarray(softmax(z)),
            "dz": np.asarray(cross_entropy_grad(z, y) / x.shape[0]),
            "dW": np.asarray(grads[0]["w"]),
            "db": np.asarray(grads[0]["b"]),
        })
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return rows


def _format_trace(rows: list[dict[str, np.ndarray]]) -> str:
    """The seed's layout: ``iteration = k`` then ``z``, ``dz``, ``p``, ``dW``, ``db`` lines."""
    lines = []
    for k, row in enumerate(rows):
        lines.append(f"iteration = {k}")
        lines += [f"{name} = {row[name].tolist()}" for name in ("z", "dz", "p", "dW", "db")]
    return "\n".join(lines)


def _trace_text(*, lr: float = 2.0, iterations: int = 2) -> str:
    """The seed's example (X = I₂, Y = I₂, W = 0, b = 0) traced in float64, as printed text.

    Float64, so the printout carries the seed's 17 significant digits.
    """
    with jax.enable_x64(True):
        eye = np.eye(2)
        rows = toy_trace(eye, eye, np.zeros((2, 2)), np.zeros(2), lr=lr, iterations=iterations)
    return _format_trace(rows)
