"""Why does a sweep of wide nets train slower per model than its single runs on a CPU?

    python scripts/stacked_dots.py [--k 3] [--batch 128] [--width 2048] [--rounds 5]

A sweep stacks its K models and runs ``jax.vmap`` of the single run's step, so each of a
layer's three matmuls becomes one dot batched over the models. This times each of the three
(bfloat16 operands summed in float32, as ``--compute-dtype bfloat16``; and float32), for
one model and for K stacked, round-robin in one process (``bench.timing``), and prints the
batched dot's time per model over the single one's: below 1 the stack gains, above 1 it
loses. The three matmuls of a layer with input x (B, n), weights W (n, m) and the gradient
δ (B, m) of its output:

- forward ``x @ W``; backward to the input ``δ @ Wᵀ``: the batch is an outer axis;
- the weight gradient ``xᵀ @ δ``: contracts the batch axis, and its output is n × m.
"""
import argparse
import functools
import os
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench.precision import cpu  # noqa: E402
from bench.timing import seconds_per_call  # noqa: E402

DOTS = {"x @ W": "bn,nm->bm", "δ @ Wᵀ": "bm,nm->bn", "xᵀ @ δ": "bn,bm->nm"}


def _operands(eq: str, k: int, batch: int, width: int, dtype) -> tuple:
    """Two stacked operands of ``eq`` (ones: a dot's time does not depend on the values)."""
    sizes = {"b": batch, "n": width, "m": width}
    ins = eq.split("->")[0].split(",")
    return tuple(jnp.ones((k, *(sizes[c] for c in s)), dtype) for s in ins)


def _call(f, a, b, repeat: int) -> None:
    for _ in range(repeat):  # a call of a few milliseconds would time the dispatch's noise
        f(a, b).block_until_ready()


def measure(k: int, batch: int, width: int, rounds: int, repeat: int = 20) -> list[dict]:
    """For each dtype and dot: the median seconds of one model's dot and of K stacked ones
    (each timed call runs the dot ``repeat`` times)."""
    rows = []
    for dtype in (jnp.bfloat16, jnp.float32):
        for name, eq in DOTS.items():
            def dot(a, b, eq=eq):
                return jnp.einsum(eq, a, b, preferred_element_type=jnp.float32)

            a, b = _operands(eq, k, batch, width, dtype)
            one, many = jax.jit(dot), jax.jit(jax.vmap(dot))
            runs: dict[str, Callable[[], object]] = {
                "one": functools.partial(_call, one, a[0], b[0], repeat),
                "stacked": functools.partial(_call, many, a, b, repeat)}
            seconds = seconds_per_call(runs, rounds, scale=dict.fromkeys(runs, 1 / repeat))
            rows.append({"dtype": jnp.dtype(dtype).name, "dot": name,
                         **{n: statistics.median(s) for n, s in seconds.items()}})
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=3, help="models stacked (default 3)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--width", type=int, default=2048, help="n = m (default 2048)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    args = parser.parse_args(argv)
    for name in ("k", "batch", "width", "rounds"):
        if not 1 <= getattr(args, name) <= 8192:
            parser.error(f"--{name} must be in [1, 8192], got {getattr(args, name)}")
    rows = measure(args.k, args.batch, args.width, args.rounds, 1 if args.width < 64 else 20)
    print(f"{cpu()['model']}, {os.cpu_count()} cores, {platform.machine()}; jax "
          f"{jax.__version__}; K = {args.k}, batch {args.batch}, {args.width} × {args.width}")
    print("| operands | dot | one model (ms) | K stacked (ms) | stacked per model / one |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dtype']} | {r['dot']} | {1e3 * r['one']:.2f} | {1e3 * r['stacked']:.2f} | "
              f"{r['stacked'] / args.k / r['one']:.2f}x |")
    return rows


if __name__ == "__main__":
    main()
