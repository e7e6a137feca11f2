"""The seed's 2×2 worked example (HW2 Problem 3): one linear layer, softmax, mean
cross-entropy, trained by Optax SGD, with every intermediate exposed."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmlp import _checks
from jaxmlp._arch import parse_arch
from jaxmlp._backprop import hand_grad
from jaxmlp._cross_entropy import check_targets, cross_entropy_grad
from jaxmlp._mlp import check_inputs, forward
from jaxmlp._softmax import softmax


# The trace is for reading: a thousand iterations is already more than anyone reads, and
# it keeps the time a (printed) trace takes bounded.
_MAX_ITERATIONS = 1000


def toy_trace(x, y, w, b, *, lr: float = 2.0, iterations: int = 2) -> list[dict[str, np.ndarray]]:
    """Runs ``iterations`` SGD steps on ``softmax(x W + b)`` and records each one.

    Args:
      x: inputs ``(B, d)``; y: target rows ``(B, n)``; w: ``(d, n)``; b: ``(n,)``.
      lr: learning rate of ``optax.sgd``, a positive number.
      iterations: how many iterations to record, at least 1.

    Returns:
      One dict per iteration with ``z``, ``p``, ``dz`` (= ∂J/∂z of the *mean* loss,
      ``(p − y)/B``), ``dW`` (= xᵀ dz) and ``db`` (= Σ_batch dz), taken before that
      iteration's update.
    """
    x, y, w, b = (_checks.array(v, name) for v, name in ((x, "x"), (y, "y"), (w, "w"), (b, "b")))
    if np.ndim(w) != 2 or 0 in np.shape(w):
        raise ValueError(f"w must have shape (d, n) with d, n >= 1, got {np.shape(w)}")
    n = int(np.shape(w)[1])
    if tuple(np.shape(b)) != (n,):
        raise ValueError(f"b must have shape ({n},) for w of shape {np.shape(w)}, got "
                         f"{np.shape(b)}")
    _checks.positive_number(lr, "lr")
    _checks.positive_int(iterations, "iterations", limit=_MAX_ITERATIONS + 1)
    for value, name in ((w, "w"), (b, "b")):
        if not jnp.issubdtype(value.dtype, jnp.floating):
            raise TypeError(f"{name} must be floating point, got dtype {value.dtype}")
    arch = ((n, "linear"),)
    check_inputs([{"w": w, "b": b}], x, parse_arch(arch))  # x: floating (B, d)
    check_targets((np.shape(x)[0], n), y)  # y: labels (B,) or rows (B, n)
    lr = _checks.int_as_float(lr)
    x, y = jnp.asarray(x), jnp.asarray(y)
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


def _format_trace(rows: list[dict[str, np.ndarray]], head: str = "",
                  losses=()) -> str:
    """The seed's layout: ``iteration = k`` then ``z``, ``dz``, ``p``, ``dW``, ``db`` lines;
    after ``head`` (the example's inputs), and each iteration's ``J`` when ``losses`` has it."""
    lines = [head] if head else []
    for k, row in enumerate(rows):
        lines.append(f"iteration = {k}")
        lines += [f"{name} = {row[name].tolist()}" for name in ("z", "dz", "p", "dW", "db")]
        if k < len(losses):
            lines.append(f"J = {losses[k]!r}")
    return "\n".join(lines)


def trace_text(*, lr: float = 2.0, iterations: int = 2) -> str:
    """The seed's example (X = I₂, Y = I₂, W = 0, b = 0) traced in float64, as printed text:
    a line naming X, Y, W, b and lr, then each iteration in the seed's layout with its mean
    cross-entropy ``J = −(1/2) Σ_b log p_b[y_b]`` (the loss the step descends).

    Float64, so the printout carries the seed's 17 significant digits.
    """
    with jax.enable_x64(True):
        eye = np.eye(2)
        rows = toy_trace(eye, eye, np.zeros((2, 2)), np.zeros(2), lr=lr, iterations=iterations)
    # −log p_b[y_b], the label's probability alone: Σ_i y_i log p_i would read 0·log 0 as NaN
    # where a large lr rounds p to exactly 0 and 1 (0·log 0 = 0, as in cross_entropy).
    with np.errstate(divide="ignore"):  # p_b[y_b] = 0 is J = inf, said as such
        # (0 − x, not −x: p_b[y_b] = 1 gives J = 0.0, not −0.0; y_b = b here)
        losses = [float(0.0 - np.mean(np.log(np.diagonal(row["p"])))) for row in rows]
    head = (f"X = {eye.tolist()}, Y = {eye.tolist()} (one-hot), W = {np.zeros((2, 2)).tolist()}, "
            f"b = {np.zeros(2).tolist()}, lr = {lr!r}")
    return _format_trace(rows, head, losses)
