"""Optimizers on one dataset, same network, same epochs: the optimizer table of docs/results.md.

Each optimizer trains with its defaults (``jaxmlp._optim.OPTIMIZERS``: nothing is tuned) for
every seed, holding out the last ``--val-size`` training examples; the table gives mean ±
std (ddof 1) over seeds of the validation and test accuracy at the last epoch, and the
median seconds of a training epoch (compilation and evaluation excluded; the first epoch of
each run left out) with its ratio to the first optimizer's, measured in this one process.

Usage: python scripts/compare_optimizers.py [--dataset mnist] [--arch b] [--epochs 10]
         [--seeds 0,1,2] [--optimizer sgd --optimizer adam ...] [--val-size 5000]
"""
import argparse

import numpy as np

from jaxmlp.app._cli import _enable_compilation_cache
from jaxmlp._data import load_dataset
from jaxmlp._optim import OPTIMIZERS
from jaxmlp import TrainConfig, train_and_evaluate


def _mean_std(values) -> str:
    values = np.asarray(values, float)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.4f} ± {std:.4f}"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--arch", default="b")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--optimizer", action="append", dest="optimizers",
                        choices=list(OPTIMIZERS), help="repeat for several (default: all)")
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    _enable_compilation_cache()
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.optimizers or list(OPTIMIZERS)
    results: dict[str, list] = {name: [] for name in names}
    # Seeds outer, optimizers inner: each optimizer's epochs are timed beside the others',
    # under the same load, not one optimizer early and another late.
    for seed in seeds:
        for name in names:
            config = TrainConfig(arch=args.arch, epochs=args.epochs, dataset=args.dataset,
                                 optimizer=name, val_size=args.val_size, seed=seed)
            result = train_and_evaluate(config, data=data, log=lambda _: None)
            result["config"] = config
            results[name].append(result)
            print(f"{name} seed {seed}: val {result['val_accuracy']} test "
                  f"{result['test_accuracy']:.4f}", flush=True)
    rows = []
    for name, runs in results.items():
        config = runs[0]["config"]
        rows.append({"optimizer": name, "lr": config.lr, "weight_decay": config.weight_decay,
                     "val": [r["val_accuracy"] for r in runs],
                     "test": [r["test_accuracy"] for r in runs],
                     "epoch_s": float(np.median([h["epoch_seconds"] for r in runs
                                                 for h in r["history"][1:]] or [np.nan]))})
    print(f"\n{args.dataset}, arch {args.arch}, {args.epochs} epochs, batch "
          f"{TrainConfig.batch_size}, cosine schedule, momentum/b1 0.9, seeds {args.seeds}, "
          f"last {args.val_size} training examples held out")
    print("\n| optimizer | lr | weight decay | validation accuracy | test accuracy | "
          f"epoch (s) | vs {rows[0]['optimizer']} |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        val = _mean_std(r["val"]) if args.val_size else "-"
        print(f"| {r['optimizer']} | {r['lr']:g} | {r['weight_decay']:g} | {val} | "
              f"{_mean_std(r['test'])} | {r['epoch_s']:.2f} | "
              f"{r['epoch_s'] / rows[0]['epoch_s']:.2f}× |")
    return rows


if __name__ == "__main__":
    main()
