"""Mixed precision: seconds per training epoch in float32 and in bfloat16, jaxmlp beside PyTorch.

For each network (presets b and wide, the networks of the simard2003 and ciresan2010
recipes) at one batch size it times whole epochs of

  jaxmlp-float32   jaxmlp's epoch (``make_epoch``, hand backward pass), float32
  jaxmlp-bfloat16  the same with ``compute_dtype="bfloat16"``: every matmul of both passes
                   on bfloat16 operands, summed in float32 (``jaxmlp._mlp.matmul``)
  torch-float32    PyTorch eager, same net, optimizer and batch (when torch is importable)
  torch-autocast   the same under ``torch.autocast("cpu", torch.bfloat16)``

round-robin with a settle between calls (``bench.timing``), the first epoch apart, and
reports the median scaled to a 60,000-example epoch, with the ratios measured in this run:
each side's float32 time over its bfloat16 time, and jaxmlp's bfloat16 over PyTorch's.
The CPU's model and the flags that decide bfloat16's speed (``amx_bf16``, ``avx512_bf16``,
``avx512f``) are read from /proc/cpuinfo and printed with the table.

Before the epochs it times the three products of one of ciresan2010's layers (2500 → 2000,
batch 128: forward ``a w``, ``δ wᵀ``, ``aᵀ δ``) written three ways: float32; bfloat16 as
autodiff of the forward's casts or a plain ``jnp.dot(δ, w.T)`` writes them (a transposed
operand, which XLA:CPU computes in float32); and bfloat16 as ``matmul_backward`` computes
them (copied transposes of the batch-sized operands): why the backward once lost the
forward's speed, measured again wherever the benchmark runs. And it times one of
ciresan2010's training steps by parts (``step_parts``): the whole step in each dtype, the
gradients alone, the optimizer's update and the weights' cast to bfloat16, to show what of a
step bfloat16 cannot speed up.

Reproduce: ``python scripts/benchmark.py --precision`` (12,800 examples an epoch, 2 timed
epochs; ``--examples``, ``--epochs``, ``--precision-nets`` change that).
"""
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp._arch import parse_arch
from jaxmlp._backprop import hand_value_and_grad
from jaxmlp._config import TrainConfig
from jaxmlp._epoch import make_step
from jaxmlp._mlp import init_params, matmul, matmul_backward
from jaxmlp._optim import make_optimizer
from jaxmlp._recipes import RECIPES

from bench.epochs import make_scan
from bench.timing import round_robin, summary

NETS = {"b": "b", "wide": "wide", "simard2003": RECIPES["simard2003"].settings["arch"],
        "ciresan2010": RECIPES["ciresan2010"].settings["arch"]}
FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")
FULL_EPOCH = 60_000


def cpu() -> dict:
    """The CPU's model name and which of ``FLAGS`` it has (Linux; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": None, "flags": {}}
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("model name")), None)
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines()
                      if line.startswith("flags")), []))
    return {"model": model, "flags": {f: f in flags for f in FLAGS}}


def _drivers(arch, images, labels, batch_size, lr, total, has_torch) -> dict:
    common = (images, labels, batch_size, lr, total)
    makers = {
        "jaxmlp-float32": lambda: make_scan(arch, "hand", *common),
        "jaxmlp-bfloat16": lambda: make_scan(arch, "hand", *common, compute_dtype="bfloat16")}
    if has_torch:
        from bench.torch_nets import make_torch

        makers["torch-float32"] = lambda: make_torch(arch, *common)
        makers["torch-autocast"] = lambda: make_torch(arch, *common, autocast=True)
    return makers


LAYER = (128, 2500, 2000)  # batch, inputs, units: ciresan2010's second layer


def _median_ms(fn, args, repeats: int) -> float:
    """Milliseconds of one call of ``fn(*args)``: the median of ``repeats`` calls after one
    that compiles and warms it."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def layer_products(repeats: int = 30) -> dict:
    """Milliseconds (median of ``repeats``) of one layer's three products, each way."""
    batch, n, m = LAYER
    keys = jax.random.split(jax.random.key(0), 3)
    a, w, delta = (jax.random.normal(k, s) for k, s in zip(keys, [(batch, n), (n, m), (batch, m)]))
    bf16, f32 = jnp.bfloat16, jnp.float32

    def transposed_operands(a, w, delta):  # what autodiff of the forward's casts builds
        a, w, delta = (t.astype(bf16) for t in (a, w, delta))
        return (jnp.dot(delta, w.T, preferred_element_type=f32),
                jnp.dot(a.T, delta, preferred_element_type=f32))

    ways = {"float32": (lambda a, w: matmul(a, w), lambda a, w, d: matmul_backward(a, w, d)),
            "bfloat16, transposed operands": (lambda a, w: matmul(a, w, "bfloat16"),
                                              transposed_operands),
            "bfloat16, matmul_backward": (lambda a, w: matmul(a, w, "bfloat16"),
                                          lambda a, w, d: matmul_backward(a, w, d, "bfloat16"))}
    out = {}
    for name, (forward, backward) in ways.items():
        fns = {"forward a w": (jax.jit(forward), (a, w)),
               "δ wᵀ": (jax.jit(lambda a, w, d, b=backward: b(a, w, d)[0]), (a, w, delta)),
               "aᵀ δ": (jax.jit(lambda a, w, d, b=backward: b(a, w, d)[1]), (a, w, delta))}
        out[name] = {product: _median_ms(fn, args, repeats)
                     for product, (fn, args) in fns.items()}
    return out


def step_parts(arch: str, batch_size: int, lr: float, *, steps: int = 20,
               repeats: int = 5) -> dict:
    """Milliseconds per training step of ``arch`` (the benchmark's SGD, hand backward pass),
    each part in a jitted loop of ``steps`` steps on random batches:

      step              the whole step (``make_step``), float32 and bfloat16
      gradients         forward and hand backward alone (``hand_value_and_grad``: the
                        products, activations and loss), the weights not changing between
                        steps, so XLA casts them to bfloat16 once a call, outside the loop
      update            the optimizer's update of every parameter (memory-bound: it reads
                        and writes the weights, the momentum and the gradient)
      cast              the float32 weights rounded to bfloat16, as a bfloat16 step must
                        each time the weights change (one call; XLA:CPU does not fuse it
                        into the update, which writes the weights)
    """
    layers = parse_arch(arch)
    params = init_params(jax.random.key(0), layers, 784)
    optimizer = make_optimizer(TrainConfig(arch=arch, batch_size=batch_size, lr=lr), 1000)
    keys = jax.random.split(jax.random.key(1), 2)
    images = jax.random.randint(keys[0], (steps, batch_size, 784), 0, 256).astype(jnp.uint8)
    labels = jax.random.randint(keys[1], (steps, batch_size), 0, 10)
    key = jax.random.key(2)

    def whole(dtype):
        step = make_step(arch, optimizer, "hand", compute_dtype=dtype)
        body = lambda carry, batch: (step(*carry, *batch, key)[:2], None)
        return jax.jit(lambda p, s: jax.lax.scan(body, (p, s), (images, labels))[0])

    def gradients(dtype):
        def run(p):  # p an argument, not a constant XLA could cast while compiling
            def body(total, batch):
                x = batch[0].astype(jnp.float32) / 255
                grads = hand_value_and_grad(p, x, batch[1], layers, compute_dtype=dtype)[1]
                return total + sum(jnp.sum(g) for g in jax.tree.leaves(grads)), None
            return jax.lax.scan(body, 0.0, (images, labels))[0]
        return jax.jit(run)

    grads = jax.tree.map(lambda t: t * 1e-3, params)

    def update(p, s):
        def body(carry, _):
            updates, s = optimizer.update(grads, carry[1], carry[0])
            return (jax.tree.map(jnp.add, carry[0], updates), s), None
        return jax.lax.scan(body, (p, s), None, length=steps)[0]

    def cast(ws):  # one call: a loop would fuse the cast into whatever changes the weights
        return [w.astype(jnp.bfloat16) for w in ws]

    state = optimizer.init(params)
    out = {}
    for dtype in ("float32", "bfloat16"):
        out[f"step, {dtype}"] = _median_ms(whole(dtype), (params, state), repeats) / steps
        out[f"gradients, {dtype}"] = _median_ms(gradients(dtype), (params,), repeats) / steps
    out["update"] = _median_ms(jax.jit(update), (params, state), repeats) / steps
    out["cast"] = _median_ms(jax.jit(cast), ([layer["w"] for layer in params],),
                             repeats * steps)
    return out


def measure(nets, images, labels, *, batch_size: int, lr: float, epochs: int,
            has_torch: bool, layer_repeats: int = 30, parts_net: str = "ciresan2010",
            parts_steps: int = 20) -> dict:
    """``{"cpu": cpu(), "layer": layer_products(), "step_parts": step_parts(parts_net),
    "nets": {net: {"arch", "runs": {driver: figures}, "ratios"}}}``."""
    total, scale = epochs + 1, FULL_EPOCH / len(labels)
    out: dict = {"cpu": cpu(), "layer": layer_products(layer_repeats), "nets": {}}
    out["step_parts"] = {"net": parts_net, **step_parts(
        NETS.get(parts_net, parts_net), batch_size, lr, steps=parts_steps,
        repeats=1 if layer_repeats < 10 else 5)}
    for net in nets:
        arch = NETS.get(net, net)
        built = {name: make() for name, make in
                 _drivers(arch, images, labels, batch_size, lr, total, has_torch).items()}
        calls = round_robin({name: d.run for name, d in built.items()}, total)
        runs = {}
        for name, driver in built.items():
            timed = summary(calls[name][1:])
            runs[name] = {"epoch_seconds": timed["median"] * scale,
                          "epoch_seconds_min": timed["min"] * scale,
                          "compile_seconds": driver.compile_seconds,
                          "first_epoch_seconds": calls[name][0].wall}
        t = {name: row["epoch_seconds"] for name, row in runs.items()}
        ratios = {"jaxmlp_float32_over_bfloat16": t["jaxmlp-float32"] / t["jaxmlp-bfloat16"]}
        if has_torch:
            ratios["torch_float32_over_autocast"] = t["torch-float32"] / t["torch-autocast"]
            ratios["torch_autocast_over_jaxmlp_bfloat16"] = (t["torch-autocast"]
                                                             / t["jaxmlp-bfloat16"])
            ratios["torch_float32_over_jaxmlp_float32"] = t["torch-float32"] / t["jaxmlp-float32"]
        out["nets"][net] = {"arch": arch, "runs": runs, "ratios": ratios}
        print(f"  {net}: done", file=sys.stderr, flush=True)
    return out


def print_table(report: dict) -> None:
    part = report["precision"]
    flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in part["cpu"]["flags"].items())
    print(f"jaxmlp mixed-precision benchmark, {report['date']}: {report['backend']}, "
          f"{part['cpu']['model']} ({flags}); {report['machine']}; jax {report['jax']}, "
          f"torch {report['torch']}; batch {report['batch_size']}, seconds per "
          f"{FULL_EPOCH:,}-example epoch (median of {report['timed_epochs']} epochs of "
          f"{report['examples']:,} after the first, scaled)")
    print()
    batch, n, m = LAYER
    flops = 2 * batch * n * m
    print(f"One layer's products ({n} → {m}, batch {batch}), ms (GFLOP/s); operands cast "
          f"from float32 inside each call:")
    print()
    products = list(next(iter(part["layer"].values())))
    print("| way | " + " | ".join(products) + " |")
    print("|---|" + "---|" * len(products))
    for way, row in part["layer"].items():
        print(f"| {way} | " + " | ".join(f"{row[p]:.2f} ({flops / row[p] / 1e6:.0f})"
                                         for p in products) + " |")
    print()
    parts = part["step_parts"]
    print(f"One {parts['net']} training step by parts (batch {report['batch_size']}), ms per "
          f"step:")
    print()
    print("| part | float32 | bfloat16 | ratio |")
    print("|---|---|---|---|")
    for name in ("step", "gradients"):
        f32, bf16 = parts[f"{name}, float32"], parts[f"{name}, bfloat16"]
        print(f"| {name} | {f32:.2f} | {bf16:.2f} | {f32 / bf16:.2f}x |")
    print(f"| update (one float32 update in both) | {parts['update']:.2f} | - | - |")
    print(f"| cast of the weights | - | {parts['cast']:.2f} | - |")
    rest = parts["step, bfloat16"] - parts["gradients, bfloat16"]
    print()
    speedup = parts["gradients, float32"] / parts["gradients, bfloat16"]
    print(f"bfloat16 speeds the gradients {speedup:.2f}x; "
          f"the rest of its step ({rest:.2f} ms: the update, the cast, the copies) does not "
          f"shrink, which bounds the step's ratio.")
    print()
    names = ("jaxmlp-float32", "jaxmlp-bfloat16", "torch-float32", "torch-autocast")
    print("| net | " + " | ".join(names) + " | jaxmlp f32/bf16 | torch f32/autocast | "
          "torch autocast / jaxmlp bf16 |")
    print("|---|" + "---|" * (len(names) + 3))
    for net, entry in part["nets"].items():
        cells = [f"{entry['runs'][n]['epoch_seconds']:.2f}" if n in entry["runs"] else "-"
                 for n in names]
        ratios = [entry["ratios"].get(k) for k in ("jaxmlp_float32_over_bfloat16",
                                                    "torch_float32_over_autocast",
                                                    "torch_autocast_over_jaxmlp_bfloat16")]
        print(f"| {net} | " + " | ".join(cells) + " | " +
              " | ".join("-" if r is None else f"{r:.2f}x" for r in ratios) + " |")
    print()
    fast = [n for n, e in part["nets"].items()
            if e["ratios"]["jaxmlp_float32_over_bfloat16"] > 1.05]
    print("bfloat16 is faster here for: " + (", ".join(fast) if fast else "none of these nets")
          + ("" if fast else " (choose --compute-dtype float32 on this machine)"))

