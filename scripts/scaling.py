"""Data-parallel speed-up: seconds per epoch on 1, 2, 4 devices, in one process.

On a CPU-only machine the devices are forced (``XLA_FLAGS=--xla_force_host_platform_device_count``):
they share the machine's cores, so this measures the cost of sharding there, not a gain.

``--sweep``: a sweep of K models (``--sweep-k``, default 16) trained as one process with 2
devices and as 2 processes with 1 device each on 127.0.0.1 (``jaxmlp sweep --coordinator``):
the seconds of its epochs each way, and whether the two checkpoints are the same bits.

Usage: python scripts/scaling.py [--devices 1,2,4] [--presets b,wide] [--steps 100] [--epochs 3]
       python scripts/scaling.py --sweep [--sweep-k 16] [--presets b] [--epochs 3]
"""
import argparse
import os
import statistics
import subprocess
import sys


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="1,2,4")
    parser.add_argument("--presets", default="b,wide")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100, help="steps per timed epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the first")
    parser.add_argument("--data-dir")
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--sweep-k", type=int, default=16)
    args = parser.parse_args(argv)
    if args.sweep:
        return _sweep(args)
    counts = [int(n) for n in args.devices.split(",")]

    import jax

    if jax.device_count() < max(counts):
        if jax.default_backend() != "cpu" or "JAXMLP_SCALING_CHILD" in os.environ:
            sys.exit(f"need {max(counts)} devices, have {jax.device_count()}")
        # Re-run with forced CPU devices: the flag only works before JAX starts.
        forced = f" --xla_force_host_platform_device_count={max(counts)}"
        env = {**os.environ, "JAXMLP_SCALING_CHILD": "1",
               "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + forced}
        sys.exit(subprocess.call([sys.executable, __file__, *(argv or sys.argv[1:])], env=env))

    from jaxmlp._data import _load_mnist
    from jaxmlp import TrainConfig, train_and_evaluate

    data = _load_mnist(data_dir=args.data_dir)
    n = args.steps * args.batch_size
    subset = data._replace(train_images=data.train_images[:n], train_labels=data.train_labels[:n])
    print(f"{jax.device_count()} {jax.default_backend()} devices ({os.cpu_count()} cores), "
          f"batch {args.batch_size} (global), {args.steps} steps per epoch, median of "
          f"{args.epochs} epochs after the first")
    print("\n| preset | devices | ms / epoch | speed-up vs 1 device |\n|---|---|---|---|")
    for preset in args.presets.split(","):
        base = None
        for count in counts:
            config = TrainConfig(arch=preset, epochs=args.epochs + 1, batch_size=args.batch_size,
                                 devices=count)
            history = train_and_evaluate(config, data=subset, log=lambda _: None)["history"]
            seconds = statistics.median(h["epoch_seconds"] for h in history[1:])
            base = base or seconds
            print(f"| {preset} | {count} | {seconds * 1e3:.1f} | {base / seconds:.2f}x |",
                  flush=True)


def _sweep(args) -> None:
    """K models: 1 process × 2 devices against 2 processes × 1 device, by the command."""
    import json
    import socket
    import tempfile
    from pathlib import Path

    import numpy as np

    def seconds(folder: Path) -> float:  # the epochs after the first (compiling) one
        records = [json.loads(line) for line in (folder / "metrics.jsonl").open()]
        return statistics.median(r["epoch_seconds"] for r in records[1:])

    base = [sys.executable, "-m", "jaxmlp", "sweep", "--seeds", str(args.sweep_k),
            "--epochs", str(args.epochs + 1), "--batch-size", str(args.batch_size),
            "--no-progress", "--quiet", "--order", "independent"]
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    print(f"sweep of {args.sweep_k} models, batch {args.batch_size}, MNIST epochs, median of "
          f"{args.epochs} epochs after the first; {os.cpu_count()} cores")
    print("\n| preset | layout | ms / epoch | vs 1 process |\n|---|---|---|---|")
    for preset in args.presets.split(","):
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            command = [*base, "--arch", preset, *data]
            one = subprocess.run([*command, "--out", str(tmp / "one")], env={
                **os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
                stdout=subprocess.DEVNULL)
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
            procs = [subprocess.Popen([*command, "--out", str(tmp / "two"), "--coordinator",
                                       f"127.0.0.1:{port}", "--num-processes", "2",
                                       "--process-id", str(i)], env=env,
                                      stdout=subprocess.DEVNULL) for i in (0, 1)]
            codes = [p.wait() for p in procs]
            if one.returncode or any(codes):
                sys.exit(f"a sweep failed: exit {one.returncode}, {codes}")
            with np.load(tmp / "one" / "checkpoint.npz") as a, \
                    np.load(tmp / "two" / "checkpoint.npz") as b:
                same = all(np.array_equal(a[k], b[k]) for k in a.files)
            t1, t2 = seconds(tmp / "one"), seconds(tmp / "two")
            print(f"| {preset} | 1 process × 2 devices | {t1 * 1e3:.0f} | 1.00x |")
            print(f"| {preset} | 2 processes × 1 device | {t2 * 1e3:.0f} | {t1 / t2:.2f}x |")
            print(f"checkpoints of the two layouts: {'the same bits' if same else 'DIFFERENT'}",
                  flush=True)


if __name__ == "__main__":
    main()
