"""Data-parallel speed-up: seconds per epoch on 1, 2, 4 devices, in one process.

On a CPU-only machine the devices are forced (``XLA_FLAGS=--xla_force_host_platform_device_count``):
they share the machine's cores, so this measures the cost of sharding there, not a gain.

Usage: python scripts/scaling.py [--devices 1,2,4] [--presets b,wide] [--steps 100] [--epochs 3]
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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    main()
