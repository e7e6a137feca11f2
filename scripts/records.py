"""The published MNIST MLP records, trained by their recipes (``jaxmlp._recipes``): one table.

Each recipe that fits the machine trains as ``jaxmlp train --recipe NAME`` would (a recipe
with ``seeds`` as ``jaxmlp sweep --recipe NAME``: a committee whose ensemble is the mean of
its models' probabilities) into ``--out/NAME``; the table gives the paper's test error
beside jaxmlp's (a committee: its ensemble, and its models' mean ± std), the epochs, the
wall time (start-up and evaluation included) and the machine. A recipe named in
``--estimate`` instead trains ``--estimate-steps`` steps and states its measured seconds
per epoch and what its full length would take here. A recipe's folder that exists is
resumed: a finished run is loaded, not trained again (its figures and the seconds it
recorded), a stopped one continues, one of other settings stops the table with one line.

With ``--seeds N`` (N > 1) a single-model recipe trains seeds 0 to N−1, one sweep in
``independent`` order (each model is the single run of its seed), and its figure is their
mean ± std, with the spread and what the N vote together beside it. With ``--tta N`` each
single model's and committee's error over each image and N random shifts of it (up to a
pixel) follows (``jaxmlp eval --tta``); ``--committee`` adds a row: every trained recipe's
models voting together (``jaxmlp ensemble``).

Usage: python scripts/records.py [--recipes simard2003,dropout2014,meier2011]
         [--estimate ciresan2010] [--out runs/records] [--seeds N] [--tta N] [--committee]
         [--compute-dtype bfloat16] [--quick]
``--quick`` (for the tests): every recipe on a 6,000-image slice for 30 steps.
"""
import argparse
import dataclasses
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import NoReturn

import numpy as np

from jaxmlp import (TTA, Grid, TrainConfig, evaluate_committee, evaluate_ensemble, evaluate_run,
                    load_committee, load_run, train_and_evaluate, train_many)
from jaxmlp._errors import DatasetError, RunError
from jaxmlp._run import RunWriteError
from jaxmlp.app._cli import (_Parser, _enable_compilation_cache, _in_flags, _int,
                             _tta_words)
from jaxmlp._data import load_dataset
from jaxmlp._recipes import RECIPES


def _machine() -> str:
    import jax

    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    device = jax.devices()[0]
    where = cpu if device.platform == "cpu" else device.device_kind
    return f"{where}, {os.cpu_count()} cores, jax {jax.__version__} on {device.platform}"


def end_in_a_line(script: str, e: Exception) -> NoReturn:
    """Ends ``script`` as ``jaxmlp`` ends a command: one line naming the problem, status 1
    where writing failed (a full disk: ``RunWriteError``), else 2 (what it refuses)."""
    print(f"{script}: {_in_flags(str(e))}", file=sys.stderr)
    sys.exit(1 if isinstance(e, RunWriteError) else 2)


def interruptible(main, script: str, kept: str) -> None:
    """``main()``, ended by Ctrl-C with one line (what ``kept`` says survives) and exit
    status 130, as `jaxmlp train` ends: not a traceback."""
    try:
        main()
    except KeyboardInterrupt:
        print(f"{script}: interrupted; {kept}", file=sys.stderr)
        sys.exit(130)


def _train(name: str, config: TrainConfig, out: Path, data, seeds, tta, repeats=1):
    if not seeds and repeats > 1:
        return _repeated(name, config, out, data, repeats, tta)
    quiet = lambda _: None
    begin, resumed = time.perf_counter(), (out / name).exists()
    if seeds:
        grid = Grid(seeds=tuple(range(seeds)), lrs=(config.lr,), momenta=(config.momentum,))
        result = train_many(config, grid, out / name, order="independent", data=data,
                            log=quiet, resume=resumed)
        setting = result["summary"]["settings"][0]
        models = [m["test_acc"] for m in result["summary"]["models"]]
        error = 100 * (1 - setting["ensemble_test_acc"])
        detail = (f"ensemble of {seeds}; models {100 * (1 - np.mean(models)):.2f} ± "
                  f"{100 * np.std(models, ddof=1):.2f}")
        seconds = _seconds(result, begin, resumed)
        if tta is not None:
            voted = evaluate_ensemble(out / name, data, tta=tta)["test_acc"]
            detail += f"; with TTA {100 * (1 - voted):.2f}%"
    else:
        result = train_and_evaluate(config, out / name, data=data, log=quiet,
                                    resume=resumed)
        error, detail = 100 * (1 - result["test_accuracy"]), "one model"
        seconds = _seconds(result, begin, resumed)
        if tta is not None:
            voted = evaluate_run(load_run(out / name), data, tta)["test_acc"]
            detail += f"; with TTA {100 * (1 - voted):.2f}%"
    return error, detail, seconds


def _repeated(name: str, config: TrainConfig, out: Path, data, repeats: int, tta):
    """A single-model recipe over seeds 0 to ``repeats``−1: the error of their mean
    accuracy, and the detail (± std, min to max, with TTA, and their committee's)."""
    begin, resumed = time.perf_counter(), (out / name).exists()
    grid = Grid(seeds=tuple(range(repeats)), lrs=(config.lr,), momenta=(config.momentum,))
    result = train_many(config, grid, out / name, order="independent", data=data,
                        log=lambda _: None, resume=resumed)
    seconds = _seconds(result, begin, resumed)
    errors = 100 * (1 - np.array([m["test_acc"] for m in result["summary"]["models"]]))
    voted = 100 * (1 - result["summary"]["settings"][0]["ensemble_test_acc"])
    detail = (f"mean ± std of {repeats} seeds: ± {np.std(errors, ddof=1):.2f}, "
              f"{errors.min():.2f} to {errors.max():.2f}; the {repeats} voting {voted:.2f}%")
    if tta is not None:
        report = evaluate_committee(load_committee([out / name]), data, tta)
        shifted = 100 * (1 - np.array([m["test_acc"] for m in report["members"]]))
        detail += (f"; with TTA {shifted.mean():.2f} ± {np.std(shifted, ddof=1):.2f}%, "
                   f"voting {100 * (1 - report['test_acc']):.2f}%")
    return float(errors.mean()), detail, seconds


def _seconds(result: dict, begin: float, resumed: bool) -> float:
    """The wall time of a recipe trained by this call; of one resumed from its folder, the
    seconds its records hold (training, evaluation and compilation, every session's)."""
    if not resumed:
        return time.perf_counter() - begin
    return sum(h["epoch_seconds"] + h.get("eval_seconds", 0) + h.get("compile_seconds", 0)
               for h in result["history"])


def _committee(folders: list, data, tta) -> str:
    """The table's last row: every trained recipe's models voting together."""
    report = evaluate_committee(load_committee(folders), data, tta)
    accs = [m["test_acc"] for m in report["members"]]
    return (f"| committee | every recipe above, {len(accs)} models voting (mean probability"
            f"{', each over TTA' if tta else ''}) | – | **{100 * (1 - report['test_acc']):.2f}%** "
            f"(members {100 * (1 - np.mean(accs)):.2f}% mean, best "
            f"{100 * (1 - max(accs)):.2f}%) | – | – | `jaxmlp ensemble` of the folders |")


def _estimate(config: TrainConfig, data, steps: int) -> str:
    """Trains ``steps`` steps; their seconds (compilation and evaluation excluded, as the
    run records them) give the seconds per epoch here."""
    spe = len(data.train_labels) // config.batch_size
    short = dataclasses.replace(config, epochs=1, steps=steps)
    result = train_and_evaluate(short, data=data, log=lambda _: None)
    per_epoch = result["history"][-1]["epoch_seconds"] / steps * spe
    return (f"{per_epoch:.1f} s/epoch measured here over {steps} steps: its "
            f"{config.epochs} epochs would take {per_epoch * config.epochs / 3600:.1f} h")


def main(argv=None) -> list[dict]:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="simard2003,dropout2014,meier2011")
    parser.add_argument("--estimate", default="ciresan2010",
                        help="recipes to time, not to train (comma-separated; '' for none)")
    parser.add_argument("--estimate-steps", type=_int, default=40)
    parser.add_argument("--out", default="runs/records")
    parser.add_argument("--data-dir")
    parser.add_argument("--seeds", type=_int, default=1,
                        help="train each single-model recipe for this many seeds (mean ± std); "
                        "a committee's recipe (meier2011) keeps its own count")
    parser.add_argument("--tta", type=_int,
                        help="also each model over N random shifts of up to a pixel")
    parser.add_argument("--committee", action="store_true",
                        help="then every trained recipe's models voting together")
    parser.add_argument("--compute-dtype", choices=("float32", "bfloat16"),
                        help="every recipe's matmuls in this dtype (bfloat16: where the CPU "
                             "has AMX)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    dtype = {} if args.compute_dtype is None else {"compute_dtype": args.compute_dtype}
    try:
        tta = None if args.tta is None else TTA(args.tta)
    except (ValueError, TypeError) as e:
        parser.error(_tta_words(str(e)))
    if not 1 <= args.seeds <= 64:
        parser.error(f"--seeds must be in [1, 64], got {args.seeds}")
    if not 1 <= args.estimate_steps <= 10_000:
        parser.error(f"--estimate-steps must be in [1, 10000], got {args.estimate_steps}")
    names = [n for n in args.recipes.split(",") if n]
    estimated = [n for n in args.estimate.split(",") if n]
    for name in names + estimated:
        if name not in RECIPES:
            parser.error(f"unknown recipe {name!r}: one of {', '.join(RECIPES)}")
    _enable_compilation_cache()
    data = load_dataset("mnist", data_dir=args.data_dir, download=False)
    if args.quick:
        data = data._replace(train_images=data.train_images[:6000],
                             train_labels=data.train_labels[:6000])
    out = Path(args.out)
    rows = []
    print(f"# MNIST MLP records, {datetime.date.today()}, {_machine()}"
          + (f", matmuls in {args.compute_dtype}" if dtype else ""))
    print("| recipe | paper | paper's error | jaxmlp's error | epochs | wall | what differs |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        recipe = RECIPES[name]
        settings = dict(recipe.settings, **dtype)
        if args.quick:
            settings.pop("epochs", None)
            settings["steps"] = 30
        config = TrainConfig(**settings)
        error, detail, seconds = _train(name, config, out, data, recipe.seeds, tta,
                                        args.seeds)
        epochs = settings.get("epochs", f"{settings.get('steps')} steps")
        rows.append(dict(recipe=name, paper_error=recipe.error, error=error, seconds=seconds))
        print(f"| `{name}` | {recipe.paper} | {recipe.error:.2f}% | **{error:.2f}%** ({detail}) "
              f"| {epochs} | {seconds / 60:.1f} min | {recipe.differs} |", flush=True)
    if args.committee and names:
        print(_committee([out / name for name in names], data, tta), flush=True)
    for name in estimated:
        recipe = RECIPES[name]
        config = TrainConfig(**dict(recipe.settings, **dtype))
        steps = 8 if args.quick else args.estimate_steps
        note = _estimate(config, data, steps)
        rows.append(dict(recipe=name, paper_error=recipe.error, estimate=note))
        print(f"| `{name}` | {recipe.paper} | {recipe.error:.2f}% | not trained here: {note} "
              f"| {recipe.settings['epochs']} | – | {recipe.differs} |", flush=True)
    return rows


def _main_in_a_line() -> None:
    """``main()``, a refusal (a folder of other settings, a missing dataset, a full disk)
    ending it with one line, not a traceback."""
    try:
        main()
    except (ValueError, RunError, DatasetError, OSError) as e:
        end_in_a_line("records.py", e)


if __name__ == "__main__":
    interruptible(_main_in_a_line, "records.py", "each recipe's folder keeps its last saved "
                  "epoch: the same command continues it")
