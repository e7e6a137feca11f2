"""How fast jaxmlp trains an MLP, against the usual ways, measured in one process.

For each preset (a, b, c, wide by default) at one batch size it times whole training epochs,
the first apart (compilation) and then the median of the rest, for each driver that
``scripts/bench/epochs.py`` lists (scan-hand, scan-autodiff, step-loop, dispatch-only,
torch-eager), and prints the ratios of scan-hand against each, measured in the same run;
between calls it waits until the process is idle, so no driver's threads run into the next
one's time (scripts/bench/timing.py). Then it runs ``jaxmlp train --arch wide
--target-accuracy 0.98`` twice in fresh processes, first with empty caches and then with
warm ones, and reports the wall time to 98% test accuracy and the time from process start to
the first step. Peak memory (max RSS) of this process and of those training processes closes
the report. A table goes to stdout, everything to JSON.

With --sweep it measures instead how fast K models train at once, in model-epochs per
second, for presets b and wide and K = 1, 4, 16 (64 too on a GPU): jaxmlp's sweep epoch
(``jaxmlp._sweep.Stack.train``, orders shared and independent) against K single runs one
after another and PyTorch (eager, and its torch.func ensembling), and on CPU the sweep
sharded over two forced CPU devices, in a child process. Then, for K = 16 of preset b, a
sweep epoch's training against its evaluation (all K models on every split at once), and
that evaluation against the old way, K x 3 separate ``jaxmlp._metrics.evaluate`` calls.
Figures go under "sweep" and "sweep_evaluation" in the JSON, beside what the file already
holds.

With --precision it measures mixed precision: seconds per epoch in float32 and bfloat16
(``--compute-dtype``) for presets b and wide and the simard2003 and ciresan2010 networks,
beside PyTorch eager in float32 and under ``torch.autocast`` (scripts/bench/precision.py),
with the CPU's model and its bfloat16 flags.

With --augment it measures what on-device augmentation costs against a plain epoch of the
same net, beside the same distortions in PyTorch, per image in a DataLoader and batched
(scripts/bench/augment.py). With --adversarial, what adversarial training costs against a
plain epoch (two passes a step), beside PyTorch's (scripts/bench/adversarial.py).

Each measurement is a module of scripts/bench/ (epochs, startup, sweeps, evaluation, augment,
adversarial, precision), whose
docstring says what it measures and how; all share one timing helper (bench/timing.py).

Usage:
  python scripts/benchmark.py [--presets a,b,c,wide] [--batch-size 128] [--epochs 3]
                              [--drivers scan-hand,...] [--json runs/benchmark.json] [--quick]
  python scripts/benchmark.py --sweep [--sweep-presets b,wide] [--sweep-k 1,4,16]
                              [--sweep-steps N] [--sweep-rounds 5] [--eval-k 16] [--quick]
  python scripts/benchmark.py --precision [--precision-nets b,wide,simard2003,ciresan2010]
                              [--examples 12800] [--epochs 2] [--quick]
  python scripts/benchmark.py --augment [--augment-arch 800:relu,10:linear]
                              [--augment-spec alpha=34,sigma=4] [--quick]
  python scripts/benchmark.py --adversarial [--adversarial-arch 1200:relu,1200:relu,10:linear]
                              [--quick]
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # bench/, when imported elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402

from jaxmlp._data import Dataset, _load_mnist  # noqa: E402

from bench import adversarial, augment, epochs, evaluation, precision, startup, sweeps  # noqa: E402


def _has_torch(wanted: bool):
    """``(timed, version)``: torch is timed when importable and not ``--no-torch``."""
    try:
        from bench import torch_nets
    except ImportError:
        return False, None
    return wanted, torch_nets.version()


def _load(examples, data_dir) -> Dataset:
    """MNIST, its training split cut to the first ``examples`` (None: all)."""
    mnist = _load_mnist(data_dir=data_dir)
    return mnist._replace(train_images=mnist.train_images[:examples],
                          train_labels=mnist.train_labels[:examples])


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="a,b,c,wide")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the first")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--examples", type=int, help="train on the first N examples only")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--drivers", help="time only these drivers (comma-separated; "
                                          "default: all), e.g. to check one alone")
    parser.add_argument("--tta-arch", default="wide", help="net for the time-to-accuracy runs")
    parser.add_argument("--tta-target", type=float, default=0.98)
    parser.add_argument("--tta-epochs", type=int, default=10)
    parser.add_argument("--no-tta", action="store_true", help="skip the time-to-accuracy runs")
    parser.add_argument("--data-dir")
    parser.add_argument("--json", default="runs/benchmark.json")
    parser.add_argument("--quick", action="store_true",
                        help="seconds, not minutes: presets a,b on 4,096 examples, 1 timed "
                             "epoch, time-to-accuracy with preset a to 85%%; with --sweep: "
                             "preset b, K = 1 and 2, 3 steps a call, 1 timed round, the "
                             "evaluation with K = 2")
    parser.add_argument("--sweep", action="store_true",
                        help="instead of the above: throughput of K models trained at once "
                             "(jaxmlp._sweep, vmapped) against K runs one after another and "
                             "PyTorch, in model-epochs per second; written under \"sweep\"; "
                             "then a sweep epoch's training against its evaluation, under "
                             "\"sweep_evaluation\"")
    parser.add_argument("--sweep-presets", default="b,wide")
    parser.add_argument("--sweep-k", help="numbers of models (default 1,4,16; 64 too on GPU)")
    parser.add_argument("--sweep-steps", type=int,
                        help="steps timed per call (default 100; 10 for wide)")
    parser.add_argument("--sweep-rounds", type=int, default=5,
                        help="timed round-robin rounds after the warm-up round (also the "
                             "evaluation's timed epochs)")
    parser.add_argument("--eval-preset", default="b",
                        help="--sweep: the preset whose training and evaluation are timed apart")
    parser.add_argument("--eval-k", type=int, default=16,
                        help="--sweep: the models of that sweep (default 16)")
    parser.add_argument("--no-eval", action="store_true",
                        help="--sweep: skip timing training and evaluation apart")
    parser.add_argument("--augment", action="store_true",
                        help="measure instead what on-device augmentation costs, beside the "
                             "same distortions in PyTorch (scripts/bench/augment.py)")
    parser.add_argument("--augment-arch", default="800:relu,10:linear")
    parser.add_argument("--augment-spec", default="alpha=34,sigma=4",
                        help="what to distort by (default: simard2003's elastic field)")
    parser.add_argument("--augment-torch-batches", type=int, default=40)
    parser.add_argument("--adversarial", action="store_true",
                        help="measure instead what adversarial training costs an epoch, beside "
                             "PyTorch's (scripts/bench/adversarial.py)")
    parser.add_argument("--adversarial-arch", default="1200:relu,1200:relu,10:linear")
    parser.add_argument("--adversarial-torch-batches", type=int, default=40)
    parser.add_argument("--precision", action="store_true",
                        help="float32 against bfloat16 matmuls, beside PyTorch autocast")
    parser.add_argument("--precision-nets", default="b,wide,simard2003,ciresan2010",
                        help="presets, recipe names or arch specs")
    parser.add_argument("--sweep-child", help=argparse.SUPPRESS)  # internal: 2-device part
    args = parser.parse_args(argv)
    if args.precision and not args.quick:
        args.examples = args.examples or 12_800  # ciresan2010's epoch is minutes on a CPU
        args.epochs = 2 if "--epochs" not in argv else args.epochs
    if args.precision and "--json" not in argv:
        args.json = "runs/precision.json"
    if args.quick:
        args.presets, args.examples, args.epochs = "a,b", 4096, 1
        args.precision_nets = "b"
        args.tta_arch, args.tta_target, args.tta_epochs = "a", 0.85, 3
        if args.sweep:
            args.sweep_presets, args.sweep_k = "b", args.sweep_k or "1,2"
            args.sweep_steps, args.sweep_rounds = args.sweep_steps or 3, 1
            args.eval_k = 2
    args.sweep_k = [int(k) for k in (args.sweep_k or (
        "1,4,16,64" if jax.default_backend() == "gpu" else "1,4,16")).split(",")]
    args.presets = args.presets.split(",")
    args.sweep_presets = args.sweep_presets.split(",")
    args.has_torch, args.torch_version = _has_torch(not args.no_torch)
    have = epochs.available(args.has_torch)
    args.drivers = args.drivers.split(",") if args.drivers else list(have)
    if unknown := set(args.drivers) - set(have):
        parser.error(f"--drivers: no driver {', '.join(sorted(unknown))} here "
                     f"(have {', '.join(have)})")
    return args


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.sweep_child:  # two forced devices, started by sweeps.run_child; settings in JSON
        from jaxmlp.app._cli import _enable_compilation_cache

        _enable_compilation_cache()
        sweeps.child_main(args.sweep_child, _load)
        return {}
    mnist = _load(args.examples, args.data_dir)
    report = {"date": time.strftime("%Y-%m-%d"), "backend": jax.default_backend(),
              "devices": [str(d.device_kind) for d in jax.devices()],
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                         f"{platform.processor() or ''}".strip(", "),
              "jax": jax.__version__, "torch": args.torch_version,
              "batch_size": args.batch_size, "examples": len(mnist.train_labels),
              "timed_epochs": args.epochs, "command": " ".join([Path(sys.argv[0]).name, *argv])}
    if args.augment:
        report["augment"] = augment.measure(
            mnist, arch=args.augment_arch, spec=args.augment_spec, batch_size=args.batch_size,
            lr=args.lr, rounds=1 if args.quick else 5,
            torch_batches=4 if args.quick else args.augment_torch_batches,
            has_torch=args.has_torch)
        augment.print_table(report["augment"])
    elif args.adversarial:
        report["adversarial"] = adversarial.measure(
            mnist, arch="b" if args.quick else args.adversarial_arch, batch_size=args.batch_size,
            lr=args.lr, rounds=1 if args.quick else 5,
            torch_batches=4 if args.quick else args.adversarial_torch_batches,
            has_torch=args.has_torch)
        adversarial.print_table(report["adversarial"])
    elif args.sweep:
        report = sweep_report(args, mnist, report)
    elif args.precision:
        report["precision"] = precision.measure(
            args.precision_nets.split(","), mnist.train_images, mnist.train_labels,
            batch_size=args.batch_size, lr=args.lr, epochs=args.epochs, has_torch=args.has_torch,
            layer_repeats=3 if args.quick else 30, parts_net="b" if args.quick else "ciresan2010",
            parts_steps=2 if args.quick else 20)
        precision.print_table(report)
    else:
        report["presets"] = epochs.measure(args.presets, mnist.train_images, mnist.train_labels,
                                           batch_size=args.batch_size, lr=args.lr,
                                           epochs=args.epochs, drivers=args.drivers)
        if not args.no_tta:
            report["time_to_accuracy"] = startup.measure(args.tta_arch, args.tta_target,
                                                         args.tta_epochs, args.data_dir)
        report["peak_rss_mib"] = startup.peak_rss_mib()
        epochs.print_table(report)
        startup.print_table(report)
    if args.json:
        write_json(Path(args.json), report, sweep=args.sweep)
    return report


SWEEP_KEYS = ("sweep_setup", "sweep", "sweep_details", "sweep_ratios", "sweep_evaluation")


def write_json(path: Path, report: dict, *, sweep: bool) -> None:
    """The report as JSON; a --sweep report is kept beside the one-model figures when the
    file already holds a benchmark report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if sweep:
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and "presets" in old:
            report = {**{k: v for k, v in old.items() if k not in SWEEP_KEYS},
                      **{k: report[k] for k in SWEEP_KEYS if k in report}}
    path.write_text(json.dumps(report, indent=2) + "\n")


def sweep_report(args, mnist: Dataset, report: dict) -> dict:
    """--sweep: this process's sweeps, on CPU the 2-device child's, then the evaluation."""
    from jaxmlp.app._cli import _enable_compilation_cache

    _enable_compilation_cache()  # compile times are not this mode's figures
    common = dict(presets=args.sweep_presets, ks=args.sweep_k, batch_size=args.batch_size,
                  lr=args.lr, steps=args.sweep_steps, rounds=args.sweep_rounds,
                  has_torch=args.has_torch)
    report["sweep_setup"] = {
        "date": report["date"], "command": report["command"],
        "examples": len(mnist.train_labels), "ks": args.sweep_k, "lr": args.lr,
        "momentum": 0.9, "schedule": "cosine", "rounds": args.sweep_rounds,
        "epoch_steps": sweeps.MNIST_EPOCH // args.batch_size,
        "steps": {p: sweeps.steps_for(p, args.sweep_steps) for p in args.sweep_presets},
        "torch_threads": _torch_threads() if args.has_torch else None,
        # A shared machine's other work shows in the timings: its load, before and after.
        "load_average_before": os.getloadavg()[0]}
    report["sweep"], report["sweep_details"] = sweeps.measure(mnist, **common)
    if jax.default_backend() == "cpu" and any(k % 2 == 0 for k in args.sweep_k):
        with tempfile.TemporaryDirectory() as tmp:
            settings = sweeps.child_settings(**common, examples=args.examples,
                                             data_dir=args.data_dir)
            sweeps.merge_child(report, sweeps.run_child(Path(__file__), settings, Path(tmp)))
    report["sweep_ratios"] = sweeps.ratios(report["sweep"])
    if not args.no_eval:
        report["sweep_evaluation"] = evaluation.measure(
            mnist, preset=args.eval_preset, k=args.eval_k, batch_size=args.batch_size,
            lr=args.lr, rounds=args.sweep_rounds)
        print(f"  evaluation {args.eval_preset} K={args.eval_k}: done", file=sys.stderr,
              flush=True)
    report["sweep_setup"]["load_average_after"] = os.getloadavg()[0]
    sweeps.print_table(report)
    if "sweep_evaluation" in report:
        evaluation.print_table(report["sweep_evaluation"])
    return report


def _torch_threads() -> int:
    from bench import torch_nets

    return torch_nets.threads()


if __name__ == "__main__":
    main()
