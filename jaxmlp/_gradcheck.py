"""The project's central proof as a tool: the hand backward pass against ``jax.grad``.

``gradcheck("b")`` draws a random network, batch and labels, computes the gradient of the
mean cross-entropy both by ``jaxmlp._backprop.hand_grad`` and by ``jax.grad(jaxmlp._mlp.loss)``
in float64, and reports, for every layer's ``w`` and ``b``,

    max_abs_diff = max |hand − auto|,
    max_rel_diff = max |hand − auto| / max(max |auto|, tiny),

where the maxima run over that one array and ``tiny`` is float64's smallest normal number
(so an all-zero gradient compares by absolute difference, scaled up, not by 0/0).
"""
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import _checks
from jaxmlp._checks import positive_int
from jaxmlp._arch import parse_arch
from jaxmlp._backprop import hand_grad
from jaxmlp._data import MNIST
from jaxmlp._mlp import init_params, loss

_TINY = float(np.finfo(np.float64).tiny)


def _spec(arch) -> str:
    return ",".join(f"{units}:{activation}" for units, activation in arch)


def _problem(arch, in_dim: int, batch_size: int, seed: int):
    """Random float64 params (``init_params``), ``x ~ U[0, 1)`` and labels in ``[0, n_out)``."""
    k_params, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    params = init_params(k_params, arch, in_dim, dtype=jnp.float64)
    x = jax.random.uniform(k_x, (batch_size, in_dim), jnp.float64)
    y = jax.random.randint(k_y, (batch_size,), 0, arch[-1].units)
    return params, x, y


@functools.partial(jax.jit, static_argnames=("arch", "in_dim", "batch_size", "hand"))
def _gradients(seed, *, arch, in_dim: int, batch_size: int, hand):
    """``(hand(...), jax.grad(loss)(...))`` on the problem ``seed`` draws.

    One jitted program: compiling it once is cheaper than running its many small ops
    eagerly, each compiled on its own.
    """
    params, x, y = _problem(arch, in_dim, batch_size, seed)
    return hand(params, x, y, arch), jax.grad(loss)(params, x, y, arch)


def _compare(hand, auto) -> tuple[float, float]:
    """``(max |hand − auto|, max |hand − auto| / max(max |auto|, tiny))``; NaN stays NaN."""
    hand, auto = np.asarray(hand, np.float64), np.asarray(auto, np.float64)
    abs_diff = float(np.max(np.abs(hand - auto)))
    return abs_diff, abs_diff / max(float(np.max(np.abs(auto))), _TINY)


_MAX_NUMBERS = 10 ** 8  # 0.75 GiB of float64: far above any real layer, far below a crash


def gradcheck(arch, *, in_dim: int = MNIST.in_dim, batch_size: int = 8, seed: int = 0,
              rtol: float = 1e-10, hand: Callable | None = None) -> dict:
    """Compares the hand-written gradient with ``jax.grad(loss)``, layer by layer, in float64.

    Args:
      arch: anything ``parse_arch`` accepts (a preset, ``"128:tanh,64:sigmoid,10:linear"``...).
      in_dim: input width (784 for MNIST).
      batch_size: examples in the random batch.
      seed: seeds the params, inputs and labels; the same seed gives the same numbers.
      rtol: the largest relative difference that passes.
      hand: the backward pass under test, with ``hand_grad``'s signature
        ``(params, x, y, arch) -> grads``, traceable by ``jax.jit`` (it runs inside one
        jitted program with the reference); defaults to ``jaxmlp._backprop.hand_grad``.

    Returns:
      ``{"arch": spec, "layers": [...], "passed": bool, "rtol": rtol}``, with one entry per
      layer and parameter: ``{"layer": i, "units", "activation", "param": "w" | "b",
      "max_abs_diff", "max_rel_diff"}`` (see the module docstring for both diffs).
      ``passed`` is True when every ``max_rel_diff <= rtol`` (a NaN difference fails).

    Raises:
      ValueError: a bad ``arch`` (``parse_arch``'s message), ``batch_size`` or ``in_dim``
        below 1 or too large together (``_MAX_NUMBERS``), a ``seed`` outside
        ``[0, 2**32)``, a negative or non-finite ``rtol``, or a ``hand`` whose result does
        not have the params' structure and shapes.
      TypeError: an argument of the wrong kind (a float ``seed``, a ``hand`` that is no
        function); each message names the argument.
    """
    arch = parse_arch(arch)
    positive_int(batch_size, "batch_size")
    positive_int(in_dim, "in_dim")
    _checks.seed(seed, "seed")
    if _checks.number(rtol, "rtol") < 0:
        raise ValueError(f"rtol must be a number >= 0, got {rtol!r}")
    if hand is not None and not callable(hand):
        raise TypeError(f"hand must be None or a function (params, x, y, arch) -> grads, got "
                        f"{type(hand).__name__}")
    # Bounded before XLA sees it: a shape too large for memory aborts the process there.
    numbers = int(in_dim) * (int(batch_size) + arch[0].units)  # x and the first layer's w
    if numbers > _MAX_NUMBERS:
        raise ValueError(f"`in_dim` {in_dim} with `batch_size` {batch_size} needs "
                         f"{numbers * 8 / 2**30:.3g} GiB of float64 inputs and weights; "
                         f"gradcheck takes at most {_MAX_NUMBERS:.0e} numbers (in_dim x "
                         "(batch_size + first layer's units))")
    with jax.enable_x64(True):
        got, auto = _gradients(seed, arch=arch, in_dim=int(in_dim), batch_size=int(batch_size),
                               hand=hand_grad if hand is None else hand)
        if jax.tree.structure(got) != jax.tree.structure(auto):  # type: ignore[operator]
            raise ValueError(f"hand returned a {jax.tree.structure(got)}, not the params' "
                             f"structure {jax.tree.structure(auto)}")
        layers = []
        for i, (layer, got_i, auto_i) in enumerate(zip(arch, got, auto)):
            for name in ("w", "b"):
                if np.shape(got_i[name]) != np.shape(auto_i[name]):
                    raise ValueError(f"hand returned layer {i} {name} of shape "
                                     f"{np.shape(got_i[name])}, expected {np.shape(auto_i[name])}")
                abs_diff, rel_diff = _compare(got_i[name], auto_i[name])
                layers.append({"layer": i, "units": layer.units, "activation": layer.activation,
                               "param": name, "max_abs_diff": abs_diff, "max_rel_diff": rel_diff})
    # `<=` is False for NaN, so a NaN gradient never passes.
    passed = all(row["max_rel_diff"] <= rtol for row in layers)
    return {"arch": _spec(arch), "layers": layers, "passed": passed, "rtol": rtol}


def _worst(result: dict) -> dict:
    """The row with the largest relative difference; a NaN row counts as the worst."""
    return max(result["layers"], key=lambda row: (np.isnan(row["max_rel_diff"]),
                                                  np.nan_to_num(row["max_rel_diff"])))


def format_gradcheck(result: dict) -> str:
    """A table of ``gradcheck``'s result, one row per layer and parameter, and a verdict line.

    The last line is ``PASS: hand backward pass equals jax.grad (largest relative difference
    3.1e-17 <= 1e-10)`` or ``FAIL: ...`` naming the worst layer and parameter.
    """
    lines = [f"gradcheck {result['arch']} (float64): hand backward pass vs jax.grad",
             f"{'layer':>5}  {'units':>5}  {'activation':<10}  {'param':<5}  "
             f"{'max abs diff':>12}  {'max rel diff':>12}"]
    for row in result["layers"]:
        lines.append(f"{row['layer']:>5}  {row['units']:>5}  {row['activation']:<10}  "
                     f"{row['param']:<5}  {row['max_abs_diff']:>12.1e}  "
                     f"{row['max_rel_diff']:>12.1e}")
    worst, rtol = _worst(result), result["rtol"]
    if result["passed"]:
        lines.append(f"PASS: hand backward pass equals jax.grad (largest relative difference "
                     f"{worst['max_rel_diff']:.1e} <= {rtol:g})")
    else:
        lines.append(f"FAIL: hand backward pass differs from jax.grad at layer {worst['layer']} "
                     f"({worst['units']}:{worst['activation']}) {worst['param']}: relative "
                     f"difference {worst['max_rel_diff']:.1e} > {rtol:g}")
    return "\n".join(lines)
