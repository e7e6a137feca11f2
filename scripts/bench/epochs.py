"""One model: seconds per training epoch of jaxmlp against the usual ways, in one process.

For each preset at one batch size it times whole training epochs, the first apart
(compilation) and then the median of the rest, for:

  scan-hand      jaxmlp: a whole epoch in one jitted lax.scan (``jaxmlp._epoch.make_epoch``,
                 the trainer's own), hand-written backward pass
  scan-autodiff  the same with jax.grad
  step-loop      the way JAX's own MNIST examples train: one jitted step per batch, batches
                 cut from host numpy arrays by a Python loop (same step function as jaxmlp)
  dispatch-only  the step loop with an empty step: what driving from Python costs by itself
  torch-eager    PyTorch eager, data preloaded as tensors, same net, optimizer and batch
                 (when torch is importable)

The epochs run round-robin with a settle between calls (``bench.timing``); the ratios
against scan-hand are of epochs timed in the same run. Every driver: SGD momentum 0.9,
cosine schedule over all the timed epochs.

Reproduce: ``python scripts/benchmark.py --no-tta`` (presets a,b,c,wide, batch 128, 3
timed epochs; ``--presets``, ``--batch-size``, ``--epochs``, ``--drivers`` change that).
"""
import sys
import time

import jax
import numpy as np

from jaxmlp._arch import parse_arch
from jaxmlp._config import TrainConfig
from jaxmlp._data import MNIST
from jaxmlp._epoch import make_epoch, make_step
from jaxmlp._mlp import init_params
from jaxmlp._optim import make_optimizer

from bench.timing import Driver, round_robin, summary

DRIVERS = ("scan-hand", "scan-autodiff", "step-loop", "dispatch-only", "torch-eager")


def _fresh_state(arch, optimizer, seed=0):
    params = init_params(jax.random.key(seed), parse_arch(arch), MNIST.in_dim)
    return params, optimizer.init(params)


def make_scan(arch, grad, images, labels, batch_size, lr, total_epochs,
              **step_options) -> Driver:
    """jaxmlp's own epoch: ``make_epoch`` compiled once, then one call per epoch (at most
    ``total_epochs``); ``step_options`` go to ``make_step`` (``compute_dtype``, ``augment``
    with ``image_shape``, ``adversarial``, ...)."""
    config = TrainConfig(arch=arch, batch_size=batch_size, lr=lr, grad=grad)
    steps = len(labels) // batch_size
    optimizer = make_optimizer(config, steps * total_epochs)
    run = make_epoch(make_step(arch, optimizer, grad, **step_options), batch_size)
    state = list(_fresh_state(arch, optimizer))
    x, y = jax.device_put(images), jax.device_put(labels)
    keys = iter(jax.random.split(jax.random.key(1), total_epochs + 1))
    start = time.perf_counter()
    compiled = run.lower(*state, x, y, next(keys), 0, steps).compile()
    compile_seconds = time.perf_counter() - start
    # How much work XLA kept: instructions in the optimised program (the epoch loop's body
    # dominates), to compare the hand and autodiff programs beyond timing noise.
    instructions = sum(" = " in line for line in compiled.as_text().splitlines())

    def run_epoch():
        state[0], state[1], metrics = compiled(*state, x, y, next(keys), 0)
        jax.block_until_ready(metrics)

    return Driver(run_epoch, compile_seconds, {"hlo_instructions": instructions})


def make_step_loop(arch, images, labels, batch_size, lr, total_epochs, *, step_fn=None) -> Driver:
    """The JAX-examples driver: a jitted step per batch, fed from host numpy in Python."""
    config = TrainConfig(arch=arch, batch_size=batch_size, lr=lr, grad="autodiff")
    steps = len(labels) // batch_size
    optimizer = make_optimizer(config, steps * total_epochs)
    step = jax.jit(step_fn or make_step(arch, optimizer, "autodiff"), donate_argnums=(0, 1))
    state = list(_fresh_state(arch, optimizer))
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    key = jax.random.key(1)  # every step takes one; this one draws nothing (no dropout)
    compiled = step.lower(*state, images[:batch_size], labels[:batch_size], key).compile()
    compile_seconds = time.perf_counter() - start

    def run_epoch():
        order = rng.permutation(len(labels))
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            state[0], state[1], metrics = compiled(*state, images[idx], labels[idx], key)
        jax.block_until_ready(metrics)

    return Driver(run_epoch, compile_seconds)


def make_dispatch_only(arch, images, labels, batch_size, lr, total_epochs) -> Driver:
    """The step loop with an empty step: what driving from Python costs by itself."""
    return make_step_loop(arch, images, labels, batch_size, lr, total_epochs,
                          step_fn=lambda p, o, x, y, k: (p, o, {"loss": jax.numpy.sum(y)}))


def available(has_torch: bool) -> tuple:
    """The drivers this process can time."""
    return tuple(d for d in DRIVERS if has_torch or not d.startswith("torch"))


def _makers(preset, images, labels, batch_size, lr, total) -> dict:
    common = (images, labels, batch_size, lr, total)
    return {
        "scan-hand": lambda: make_scan(preset, "hand", *common),
        "scan-autodiff": lambda: make_scan(preset, "autodiff", *common),
        "step-loop": lambda: make_step_loop(preset, *common),
        "dispatch-only": lambda: make_dispatch_only(preset, *common),
        "torch-eager": lambda: _torch_eager(preset, *common)}


def _torch_eager(preset, images, labels, batch_size, lr, total) -> Driver:
    from bench.torch_nets import make_torch

    return make_torch(preset, images, labels, batch_size, lr, total)


def measure(presets, images, labels, *, batch_size: int, lr: float, epochs: int,
            drivers) -> dict:
    """``{preset: {"runs": {driver: figures}, "speedup_of_scan_hand": {driver: ratio},
    "scan_hand_us_per_step", "dispatch_us_per_step"}}``: ``epochs + 1`` epochs of each of
    ``drivers`` (names of ``DRIVERS``), round-robin, the first apart."""
    steps = len(labels) // batch_size
    total = epochs + 1
    out = {}
    for preset in presets:
        makers = _makers(preset, images, labels, batch_size, lr, total)
        built = {name: makers[name]() for name in drivers}
        calls = round_robin({name: d.run for name, d in built.items()}, total)
        rows = {}
        for name, driver in built.items():
            timed = summary(calls[name][1:])
            rows[name] = {"compile_seconds": driver.compile_seconds,
                          "first_epoch_seconds": calls[name][0].wall,
                          "settle_seconds_after": max(c.settle for c in calls[name]),
                          "epoch_seconds": timed["median"], "epoch_seconds_min": timed["min"],
                          "epoch_seconds_all": timed["all"],
                          "examples_per_second": steps * batch_size / timed["median"],
                          **driver.info}
        out[preset] = entry = {"runs": rows, "speedup_of_scan_hand": {}}
        if "scan-hand" in rows:
            hand = rows["scan-hand"]["epoch_seconds"]
            entry["speedup_of_scan_hand"] = {name: row["epoch_seconds"] / hand
                                             for name, row in rows.items()
                                             if name not in ("scan-hand", "dispatch-only")}
            entry["scan_hand_us_per_step"] = hand / steps * 1e6
        if "dispatch-only" in rows:
            entry["dispatch_us_per_step"] = rows["dispatch-only"]["epoch_seconds"] / steps * 1e6
        print(f"  {preset}: done", file=sys.stderr, flush=True)
    return out


def print_table(report: dict) -> None:
    """The epochs table of ``report`` (``report["presets"]``) and a line per preset."""
    names = ["scan-hand", "scan-autodiff", "step-loop", "torch-eager", "dispatch-only"]
    print(f"jaxmlp benchmark, {report['date']}: {report['backend']} "
          f"({', '.join(report['devices'])}), {report['machine']}; jax {report['jax']}, "
          f"torch {report['torch']}; batch "
          f"{report['batch_size']}, {report['examples']} examples, median of "
          f"{report['timed_epochs']} epochs after the first")
    print()
    print("| preset | driver | ms / epoch (median) | min | examples / s | compile (s) | "
          "scan-hand speed-up |")
    print("|---|---|---|---|---|---|---|")
    for preset, entry in report["presets"].items():
        for name in names:
            if name not in entry["runs"]:
                continue
            row = entry["runs"][name]
            ratio = entry["speedup_of_scan_hand"].get(name)
            print(f"| {preset} | {name} | {row['epoch_seconds'] * 1e3:.1f} | "
                  f"{row['epoch_seconds_min'] * 1e3:.1f} | "
                  f"{row['examples_per_second']:,.0f} | {row['compile_seconds']:.2f} | "
                  f"{'-' if ratio is None else f'{ratio:.2f}x'} |")
    print()
    for preset, entry in report["presets"].items():
        runs = entry["runs"]
        print(f"{preset}: until the cores were idle after a call (longest wait, ms): " +
              ", ".join(f"{name} {row['settle_seconds_after'] * 1e3:.0f}"
                        for name, row in runs.items()))
        if not {"scan-hand", "scan-autodiff", "dispatch-only"} <= set(runs):
            continue
        print(f"{preset}: a scan-hand step takes {entry['scan_hand_us_per_step']:.0f} us; driving "
              f"an empty step from Python costs {entry['dispatch_us_per_step']:.0f} us, the most "
              "a per-step loop can lose to the scan; compiled epoch: "
              f"{runs['scan-hand']['hlo_instructions']} HLO instructions (hand), "
              f"{runs['scan-autodiff']['hlo_instructions']} (autodiff)")
