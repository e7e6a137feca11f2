"""Optimizers on one dataset, same network, same epochs: the README's optimizer table.

Each optimizer trains with its defaults (``jaxmlp.optim.OPTIMIZERS``: nothing is tuned) for
every seed, holding out the last ``--val-size`` training examples; the table gives mean ±
std (ddof 1) over seeds of the validation and test accuracy at the last epoch, and the
median seconds of a training epoch (compilation and evaluation excluded; the first epoch of
each run left out) with its ratio to the first optimizer's, measured in this one process.

Usage: python scripts/compare_optimizers.py [--dataset mnist] [--arch b] [--epochs 10]
         [--seeds 0,1,2] [--optimizer sgd --optimizer adam ...] [--val-size 5000]
"""
import argparse

import numpy as np

from jaxmlp.cli import enable_compilation_cache
from jaxmlp.data import load_dataset
from jaxmlp.optim import OPTIMIZERS
from jaxmlp.train import TrainConfig, train_and_evaluate


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
    enable_compilation_cache()
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for name in args.optimizers or list(OPTIMIZERS):
        results = []
        for seed in seeds:
            config = TrainConfig(arch=args.arch, epochs=args.epochs, dataset=args.dataset,
                                 optimizer=name, val_size=args.val_size, seed=seed)
            results.append(train_and_evaluate(config, data=data, log=lambda _: None))
            print(f"{name} seed {seed}: val {results[-1]['val_accuracy']} test "
                  f"{results[-1]['test_accuracy']:.4f}", flush=True)
        rows.append({"optimizer": name, "lr": config.lr, "weight_decay": config.weight_decay,
                     "val": [r["val_accuracy"] for r in results],
                     "test": [r["test_accuracy"] for r in results],
                     "epoch_s": float(np.median([h["epoch_seconds"] for r in results
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
