"""How fast jaxmlp trains an MLP, against the usual ways, measured in one process.

For each preset (a, b, c, wide by default) at one batch size it times whole training
epochs, the first apart (compilation) and then the median of the rest, for:

  scan-hand      jaxmlp: a whole epoch in one jitted lax.scan, hand-written backward pass
  scan-autodiff  the same with jax.grad
  step-loop      the way JAX's own MNIST examples train: one jitted step per batch, batches
                 cut from host numpy arrays by a Python loop (same step function as jaxmlp)
  torch-eager    PyTorch eager, data preloaded as tensors, same net, optimizer and batch
                 (when torch is importable)

and prints the ratios of scan-hand against each, measured in the same run. Then it runs
``jaxmlp train --arch wide --target-accuracy 0.98`` twice in fresh processes, first with
empty caches and then with warm ones, and reports the wall time to 98% test accuracy and
the time from process start to the first step. Peak memory (max RSS) of this process and
of those training processes closes the report. A table goes to stdout, everything to JSON.

Usage:
  python scripts/benchmark.py [--presets a,b,c,wide] [--batch-size 128] [--epochs 3]
                              [--json runs/benchmark.json] [--quick]
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from jaxmlp.arch import parse_arch
from jaxmlp.data import IMAGE_PIXELS, load_mnist
from jaxmlp.mlp import init_params
from jaxmlp.train import TrainConfig, make_epoch, make_optimizer, make_step

ROOT = Path(__file__).resolve().parents[1]


def _fresh_state(arch, optimizer, seed=0):
    params = init_params(jax.random.key(seed), arch, IMAGE_PIXELS)
    return params, optimizer.init(params)


# Each driver: make_X(...) compiles what it needs and returns (compile_seconds, run_epoch,
# info), where run_epoch() trains one epoch and waits for it. main() runs the drivers' epochs
# round-robin, so a slow spell of the machine hits them all alike.


def make_scan(arch, grad, data, batch_size, lr, total_epochs):
    """jaxmlp's own driver: ``make_epoch`` compiled once, then one call per epoch."""
    config = TrainConfig(arch=arch, batch_size=batch_size, lr=lr, grad=grad)
    steps = len(data[1]) // batch_size
    optimizer = make_optimizer(config, steps * total_epochs)
    run = make_epoch(make_step(arch, optimizer, grad), batch_size)
    state = list(_fresh_state(arch, optimizer))
    x, y = jax.device_put(data[0]), jax.device_put(data[1])
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

    return compile_seconds, run_epoch, {"hlo_instructions": instructions}


def make_step_loop(arch, data, batch_size, lr, total_epochs, *, step_fn=None):
    """The JAX-examples driver: a jitted step per batch, fed from host numpy in Python."""
    config = TrainConfig(arch=arch, batch_size=batch_size, lr=lr, grad="autodiff")
    steps = len(data[1]) // batch_size
    optimizer = make_optimizer(config, steps * total_epochs)
    step = jax.jit(step_fn or make_step(arch, optimizer, "autodiff"), donate_argnums=(0, 1))
    state = list(_fresh_state(arch, optimizer))
    images, labels = data
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    step = step.lower(*state, images[:batch_size], labels[:batch_size]).compile()
    compile_seconds = time.perf_counter() - start

    def run_epoch():
        order = rng.permutation(len(labels))
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            state[0], state[1], metrics = step(*state, images[idx], labels[idx])
        jax.block_until_ready(metrics)

    return compile_seconds, run_epoch, {}


def make_dispatch_only(arch, data, batch_size, lr, total_epochs):
    """The step loop with an empty step: what driving from Python costs by itself."""
    return make_step_loop(arch, data, batch_size, lr, total_epochs,
                          step_fn=lambda p, o, x, y: (p, o, {"loss": jax.numpy.sum(y)}))


def make_torch(arch, data, batch_size, lr, total_epochs):
    """PyTorch eager with the whole dataset preloaded as float tensors."""
    import torch

    torch.manual_seed(0)
    layers, fan_in = [], IMAGE_PIXELS
    acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
            "linear": torch.nn.Identity}
    for units, activation in parse_arch(arch):
        layers += [torch.nn.Linear(fan_in, units), acts[activation]()]
        fan_in = units
    model = torch.nn.Sequential(*layers)
    steps = len(data[1]) // batch_size
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps * total_epochs)
    x = torch.from_numpy(data[0]).float().div_(255.0)
    y = torch.from_numpy(data[1]).long()

    def run_epoch():
        order = torch.randperm(len(y))
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            schedule.step()

    return 0.0, run_epoch, {}


def time_to_accuracy(arch, target, epochs, data_dir, cache_dir, out):
    """Runs ``jaxmlp train`` in a fresh process; wall time until it stops at ``target``."""
    env = {**os.environ, "JAXMLP_CACHE_DIR": str(cache_dir)}
    command = [sys.executable, "-m", "jaxmlp.cli", "train", "--overwrite", "--arch", arch, "--epochs", str(epochs),
               "--target-accuracy", str(target), "--out", str(out), "--no-progress",
               "--log-every", "1000000"]
    if data_dir:
        command += ["--data-dir", str(data_dir)]
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return {"wall_seconds": wall, "reached": records[-1]["test_acc"] >= target,
            "test_acc": records[-1]["test_acc"], "epochs": len(records),
            "startup_seconds": records[0].get("startup_seconds"),
            "compile_seconds": records[0]["compile_seconds"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="a,b,c,wide")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the first")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--examples", type=int, help="train on the first N examples only")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--tta-arch", default="wide", help="net for the time-to-accuracy runs")
    parser.add_argument("--tta-target", type=float, default=0.98)
    parser.add_argument("--tta-epochs", type=int, default=10)
    parser.add_argument("--no-tta", action="store_true", help="skip the time-to-accuracy runs")
    parser.add_argument("--data-dir")
    parser.add_argument("--json", default="runs/benchmark.json")
    parser.add_argument("--quick", action="store_true",
                        help="seconds, not minutes: presets a,b on 4,096 examples, 1 timed "
                             "epoch, time-to-accuracy with preset a to 85%%")
    args = parser.parse_args(argv)
    if args.quick:
        args.presets, args.examples, args.epochs = "a,b", 4096, 1
        args.tta_arch, args.tta_target, args.tta_epochs = "a", 0.85, 3
    mnist = load_mnist(data_dir=args.data_dir)
    data = (mnist.train_images[:args.examples], mnist.train_labels[:args.examples])
    try:
        import torch
        has_torch = not args.no_torch
        torch_version = torch.__version__
    except ImportError:
        has_torch, torch_version = False, None
    report = {"date": time.strftime("%Y-%m-%d"), "backend": jax.default_backend(),
              "devices": [str(d.device_kind) for d in jax.devices()],
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}".strip(", "),
              "jax": jax.__version__, "torch": torch_version, "batch_size": args.batch_size,
              "examples": len(data[1]), "timed_epochs": args.epochs,
              "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
              "presets": {}}
    total = args.epochs + 1
    for preset in args.presets.split(","):
        makers = {
            "scan-hand": lambda: make_scan(preset, "hand", data, args.batch_size, args.lr, total),
            "scan-autodiff": lambda: make_scan(preset, "autodiff", data, args.batch_size, args.lr,
                                               total),
            "step-loop": lambda: make_step_loop(preset, data, args.batch_size, args.lr, total),
            "dispatch-only": lambda: make_dispatch_only(preset, data, args.batch_size, args.lr,
                                                        total),
        }
        if has_torch:
            makers["torch-eager"] = lambda: make_torch(preset, data, args.batch_size, args.lr, total)
        drivers = {name: make() for name, make in makers.items()}
        times = {name: [] for name in drivers}
        order = list(drivers)
        for r in range(total):  # round-robin, one epoch of each driver per round,
            # each round starting one driver later, so none always follows the same one
            for name in order[r % len(order):] + order[:r % len(order)]:
                start = time.perf_counter()
                drivers[name][1]()
                times[name].append(time.perf_counter() - start)
        steps = len(data[1]) // args.batch_size
        rows = {}
        for name, (compile_seconds, _, info) in drivers.items():
            epoch = statistics.median(times[name][1:])
            rows[name] = {"compile_seconds": compile_seconds, "first_epoch_seconds": times[name][0],
                          "epoch_seconds": epoch, "epoch_seconds_min": min(times[name][1:]),
                          "epoch_seconds_all": times[name][1:],
                          "examples_per_second": steps * args.batch_size / epoch, **info}
        hand = rows["scan-hand"]["epoch_seconds"]
        report["presets"][preset] = {
            "runs": rows,
            "speedup_of_scan_hand": {name: row["epoch_seconds"] / hand for name, row in rows.items()
                                     if name not in ("scan-hand", "dispatch-only")},
            "dispatch_us_per_step": rows["dispatch-only"]["epoch_seconds"] / steps * 1e6,
            "scan_hand_us_per_step": hand / steps * 1e6}
        print(f"  {preset}: done", file=sys.stderr)
    if not args.no_tta:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            report["time_to_accuracy"] = {
                "arch": args.tta_arch, "target": args.tta_target,
                "first_run": time_to_accuracy(args.tta_arch, args.tta_target, args.tta_epochs,
                                              args.data_dir, tmp / "cache", tmp / "run1"),
                "second_run": time_to_accuracy(args.tta_arch, args.tta_target, args.tta_epochs,
                                               args.data_dir, tmp / "cache", tmp / "run2")}
    report["peak_rss_mib"] = {
        "benchmark_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "training_processes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    print_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


def print_report(report: dict) -> None:
    names = ["scan-hand", "scan-autodiff", "step-loop", "torch-eager", "dispatch-only"]
    print(f"jaxmlp benchmark, {report['date']}: {report['backend']} ({', '.join(report['devices'])}),"
          f" {report['machine']}; jax {report['jax']}, torch {report['torch']}; batch "
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
        print(f"{preset}: a scan-hand step takes {entry['scan_hand_us_per_step']:.0f} us; driving "
              f"an empty step from Python costs {entry['dispatch_us_per_step']:.0f} us, the most "
              "a per-step loop can lose to the scan; compiled epoch: "
              f"{runs['scan-hand']['hlo_instructions']} HLO instructions (hand), "
              f"{runs['scan-autodiff']['hlo_instructions']} (autodiff)")
    tta = report.get("time_to_accuracy")
    if tta:
        print()
        print(f"| {tta['arch']} to test accuracy >= {tta['target']} | wall (s) | epochs | "
              "process start to first step (s) | compile (s) |")
        print("|---|---|---|---|---|")
        for run in ("first_run", "second_run"):
            r = tta[run]
            reached = "" if r["reached"] else f" (not reached: {r['test_acc']:.4f})"
            print(f"| {run.replace('_', ' ')} | {r['wall_seconds']:.1f}{reached} | {r['epochs']} | "
                  f"{r['startup_seconds']:.2f} | {r['compile_seconds']:.2f} |")
    mem = report["peak_rss_mib"]
    print(f"\npeak memory (max RSS): benchmark process {mem['benchmark_process']:.0f} MiB, "
          f"training processes {mem['training_processes']:.0f} MiB")


if __name__ == "__main__":
    main()
