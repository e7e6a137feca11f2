"""``jaxmlp``: one command with subcommands (``jaxmlp-train`` is ``jaxmlp train``).

    jaxmlp train [flags]              train an MLP (MNIST, or --dataset) into a run folder
    jaxmlp sweep [flags]              train seeds × learning rates × momenta at once
    jaxmlp eval RUN                   re-evaluate a run's model on the test split
    jaxmlp predict RUN FILE...        classify images or .npy arrays
    jaxmlp gradcheck ARCH             hand backward pass vs jax.grad, float64
    jaxmlp augment SPEC               draw training images beside their distortions
    jaxmlp serve [DIR]                a local web page: runs, live curves, draw a digit
    jaxmlp toy                        the seed's 2×2 example, traced

Every failure ends in one line on stderr and an exit status: 2 for bad input, 1 for a
run that diverged or could not be written, 130 for Ctrl-C.
"""
import argparse
import contextlib
import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import signal
import sys
import typing
import warnings
from pathlib import Path
from typing import Optional

from jaxmlp._config import ORDERS, Grid, TrainConfig
from jaxmlp._data import DEFAULT_DATASET, MNIST, own_data

_PROG = "jaxmlp"
_SWEPT = ("seed", "lr", "momentum")  # list-valued in `jaxmlp sweep`
_FLAG_OF = {"seeds": "--seeds", "lrs": "--lr", "momenta": "--momentum"}  # a Grid's fields


def _int(text: str) -> int:
    """argparse's ``int``, in ASCII digits only (``_checks.parse_int``)."""
    from jaxmlp._checks import parse_int

    return parse_int(text, "value")


def _float(text: str) -> float:
    """argparse's ``float``, in ASCII only (``_checks.parse_float``)."""
    from jaxmlp._checks import TooLarge, parse_float

    try:
        return parse_float(text, "value")
    except TooLarge:  # argparse would say only "invalid float value"
        too_large = f"{text.strip()!r} is too large to hold as a number"
        raise argparse.ArgumentTypeError(too_large) from None


_int.__name__, _float.__name__ = "int", "float"  # argparse: "invalid int value: '١٢'"


class _Failure(Exception):
    """A failure that ends the command with ``code`` after printing ``message``."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage itself is for ``--help``), and a
    value that starts like a negative number reaches its flag (``_negative_values``)."""

    def parse_known_args(self, args=None, namespace=None):
        args = _negative_values(self, list(sys.argv[1:] if args is None else args))
        return super().parse_known_args(args, namespace)

    def error(self, message):
        # `train --lr 0.1,0.2`: a list is a sweep's (its --lr, --momentum and --seeds).
        listed = re.match(r"argument (--lr|--momentum|--seed): invalid \w+ value: '[^']*,", message)
        if listed and self.prog.endswith(" train"):
            flag = "--seeds" if listed[1] == "--seed" else listed[1]
            message += f" (a list of values is for jaxmlp sweep {flag})"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_config_flags(parser: argparse.ArgumentParser, skip=(), helps=None) -> None:
    """One flag per ``TrainConfig`` field, its help and choices taken from the field.

    Every default is None here, so a resume can tell which flags were given; the help
    shows the field's real default, once. ``helps`` replaces a field's help text.
    """
    for field in dataclasses.fields(TrainConfig):
        if field.name in skip:
            continue
        meta = {**field.metadata, **({"help": helps[field.name]} if field.name in (helps or {})
                                      else {})}
        flag = meta.get("flag", "--" + field.name.replace("_", "-"))
        kind = [t for t in typing.get_args(typing.get_type_hints(TrainConfig)[field.name])
                if t is not type(None)] or [typing.get_type_hints(TrainConfig)[field.name]]
        if kind[0] is bool:
            parser.add_argument(flag, dest=field.name, default=None,
                                help=meta.get("flag_help", meta["help"]),
                                action="store_false" if field.default else "store_true")
            continue
        default = "" if field.default is None else f" (default: {field.default})"
        parser.add_argument(flag, dest=field.name, default=None,
                            type={int: _int, float: _float}.get(kind[0], kind[0]),
                            choices=meta.get("choices"), help=meta["help"] + default)


def _add_training_flags(commands, name: str) -> None:
    """``jaxmlp train`` and ``jaxmlp sweep``: the same flags, one code path (``_fit``); a
    sweep's ``--seeds``, ``--lr`` and ``--momentum`` take lists, and only a single run
    spans several processes."""
    sweep = name == "sweep"
    parser = commands.add_parser(name, allow_abbrev=False, help=(
        "train a grid of seeds x learning rates x momenta at once (vmap)" if sweep else
        "train an MLP on MNIST (or --dataset) into a run folder"))
    _add_config_flags(parser, skip=_SWEPT if sweep else (), helps={
        "val_size": "hold out the last N training examples as a validation split, evaluated "
                    "every epoch; the best setting is then chosen by it",
        "devices": "devices the models are spread over (default: as many as divide the "
                   "number of models evenly)",
        "target_accuracy": "stop once every live model's validation (else test) accuracy "
                           "reaches this"} if sweep else {})
    from jaxmlp._recipes import RECIPES

    parser.add_argument("--recipe", choices=tuple(RECIPES), default=None, help=(
        "start from a published record's settings (docs/results.md#records); the flags "
        "given beside it override them"))
    if sweep:
        parser.add_argument("--seeds", help="a count (16: seeds 0-15) or a list (0,3,7; "
                            "7, for seed 7 alone) (default: 1)")
        parser.add_argument("--lr", help="peak learning rates, e.g. 0.02,0.05,0.1 (default: "
                            "the optimizer's, as for train)")
        parser.add_argument("--momentum", help="SGD momenta (Adam/AdamW/Lion b1), e.g. "
                            f"0.8,0.9 (default: {TrainConfig.momentum})")
        parser.add_argument("--order", choices=ORDERS,
                            help="every model sees the same batches (shared), or each follows "
                            "the order of `jaxmlp train --seed S` (independent) (default: "
                            "shared)")
    what = "sweep" if sweep else "run"
    parser.add_argument("--out", help="the sweep's folder (default: runs/sweep-<arch>, or "
                        "runs/sweep-<recipe> with --recipe)" if sweep
                        else "the run folder (default: runs/<arch>, runs/<recipe> with --recipe, "
                        "or runs/<dataset>-<arch> for a dataset other than mnist)")
    parser.add_argument("--resume", metavar="DIR", help=f"continue the {what} saved in DIR")
    parser.add_argument("--overwrite", action="store_true", help=f"replace the {what} in --out "
                        "(its files go when the first epoch is saved)")
    parser.add_argument("--quiet", action="store_true", help="no per-step or per-epoch lines")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    # Several processes: a run's batch, or a sweep's models, split over all their devices.
    multi = parser.add_argument_group("multi-host (all three, on every process, or "
                                      "--distributed)")
    multi.add_argument("--distributed", action="store_true", help="find the processes in "
                       "the environment, as jax.distributed.initialize() does (SLURM, "
                       "Open MPI, ...); the three flags below override what it finds")
    multi.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    multi.add_argument("--num-processes", type=_int, help="how many processes take part")
    multi.add_argument("--process-id", type=_int, help="this process's rank, 0 to K-1")
    multi.add_argument("--init-timeout", type=_float, default=60,
                       help="seconds to wait for every process to join (default: 60)")


def _build_parser() -> argparse.ArgumentParser:
    # No abbreviated flags: `jaxmlp sweep --seed 3` must not quietly mean --seeds 3.
    parser = _Parser(prog=_PROG, allow_abbrev=False, description="Multilayer perceptrons on MNIST "
                                     "and other TFDS image sets "
                                     "with JAX: train, evaluate, predict, prove the gradients.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name in ("train", "sweep"):
        _add_training_flags(commands, name)

    ev = commands.add_parser("eval", allow_abbrev=False,
                             help="re-evaluate a run's model on its dataset's test split")
    ev.add_argument("run", metavar="RUN", help="a run folder")
    ev.add_argument("--model", type=_int, metavar="I", help="model I of a sweep's folder")
    _add_ensemble_flags(ev)
    _add_tta_flags(ev)
    _add_data_flags(ev)

    en = commands.add_parser("ensemble", allow_abbrev=False, help="a committee of different "
                             "runs (any architectures, recipes, sweeps) on the test split")
    en.add_argument("runs", metavar="RUN", nargs="+", help="run folders; a sweep's folder "
                    "stands for its best setting's seeds")
    _add_tta_flags(en)
    en.add_argument("--out", metavar="FILE", help="write the report as JSON (an existing "
                    "file only with --overwrite)")
    en.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _add_data_flags(en)

    pr = commands.add_parser("predict", allow_abbrev=False,
                             help="classify images (PNG, JPEG, BMP, GIF, WebP) or .npy arrays")
    pr.add_argument("run", metavar="RUN", help="a run folder")
    pr.add_argument("--model", type=_int, metavar="I", help="model I of a sweep's folder")
    _add_ensemble_flags(pr)
    pr.add_argument("files", metavar="FILE", nargs="+", help=".png, .jpg or .npy files")
    _add_tta_flags(pr)
    ink = pr.add_mutually_exclusive_group()
    ink.add_argument("--invert", dest="invert", action="store_true", default=None,
                     help="invert the images: for MNIST-shaped models (28x28 grey), dark "
                     "digits on a light background (default: decided from each image's median "
                     "grey, its background); for others, never by default")
    ink.add_argument("--no-invert", dest="invert", action="store_false",
                     help="never invert")
    pr.add_argument("--json", action="store_true", help="one JSON object per input")

    gc = commands.add_parser("gradcheck", allow_abbrev=False,
                             help="hand backward pass vs jax.grad in float64")
    gc.add_argument("arch", metavar="ARCH", help="a preset or 'units:act,...'")
    gc.add_argument("--batch-size", type=_int, default=8, help="random examples (default: 8)")
    gc.add_argument("--in-dim", type=_int, default=MNIST.in_dim,
                    help=f"input width (default: {MNIST.in_dim}, MNIST's)")
    gc.add_argument("--seed", type=_int, default=0, help="PRNG seed (default: 0)")

    au = commands.add_parser("augment", allow_abbrev=False,
                             help="draw training images beside their distortions (a PNG)")
    au.add_argument("spec", metavar="SPEC", help="as train's --augment, e.g. alpha=34,sigma=4")
    au.add_argument("--out", default="augment.png", help="the PNG to write (default: "
                    "augment.png; an existing file only with --overwrite)")
    au.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    au.add_argument("--dataset", default=DEFAULT_DATASET, help="TFDS dataset (default: mnist)")
    au.add_argument("--data-dir", default=None, help="TFDS data folder")
    au.add_argument("--manual-dir", default=None, help="folder with the original MNIST .gz files")
    au.add_argument("--images", type=_int, default=8,
                    help="training images, one a row (default: 8)")
    au.add_argument("--draws", type=_int, default=6, help="distortions of each (default: 6)")
    au.add_argument("--seed", type=_int, default=0, help="PRNG seed (default: 0)")

    sv = commands.add_parser("serve", allow_abbrev=False, help="a local web page of the runs "
                             "under DIR, live curves, and a canvas to draw a digit on")
    sv.add_argument("dir", metavar="DIR", nargs="?", default="runs",
                    help="the folder of runs to show (default: runs)")
    sv.add_argument("--port", type=_int, default=8000,
                    help="TCP port (default: 8000; 0: any free one)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                    "127.0.0.1, this machine only; 0.0.0.0 shows the runs to the network)")

    ex = commands.add_parser("export", allow_abbrev=False, help="a trained model as ONNX "
                             "(onnxruntime) or StableHLO (jax.export)")
    ex.add_argument("run", metavar="RUN", help="a run folder")
    ex.add_argument("--model", type=_int, metavar="I", help="model I of a sweep's folder")
    ex.add_argument("--format", choices=("onnx", "stablehlo"), default="onnx",
                    help="onnx (default) or stablehlo")
    ex.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    ex.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")

    rs = commands.add_parser("runs", allow_abbrev=False, help="every run and sweep under DIR "
                             "as a table: settings, size, epochs, best accuracies, time")
    rs.add_argument("dir", metavar="DIR", nargs="?", default="runs",
                    help="the folder of runs to list (default: runs)")
    rs.add_argument("--sort", choices=tuple(_RUN_COLUMNS), default="run",
                    help="the column to sort by (default: run; accuracies best first)")

    toy = commands.add_parser("toy", allow_abbrev=False,
                              help="the seed's 2x2 worked example, traced")
    toy.add_argument("--lr", type=_float, default=2.0, help="SGD learning rate (default: 2.0)")
    toy.add_argument("--iterations", type=_int, default=2, help="iterations (default: 2)")
    return parser


# A value that starts like a negative number ("-0.1,0.5" for --dropout): argparse takes
# only "-1" or "-0.5" for a value, anything else with a leading "-" for a flag, and would
# answer "expected one argument" instead of the setting's own rule.
_NEGATIVE = re.compile(r"-(\.?[0-9]|inf|nan)", re.IGNORECASE)  # -inf, -NaN: floats too


def _options(parser: argparse.ArgumentParser) -> list:
    """The parser's options and every command's (argparse actions with option strings)."""
    commands = [c for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                for c in a.choices.values()]
    return [a for p in (parser, *commands) for a in p._actions if a.option_strings]


def _negative_values(parser, argv: list) -> list:
    """``["--dropout", "-0.1,0.5"]`` → ``["--dropout=-0.1,0.5"]`` for the flags that take a
    value, so the value reaches the check that names what is wrong with it."""
    takes_value = {option for a in _options(parser) if a.nargs is None and a.const is None
                   for option in a.option_strings}
    out: list[str] = []
    for token in argv:
        if out and _NEGATIVE.match(token) and out[-1] in takes_value:
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def _parse(argv):
    """``args``; a flag unknown to a subcommand is reported in that subcommand's usage."""
    parser = _build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        flags = [o for a in commands.choices[args.command]._actions for o in a.option_strings]
        close = [m for token in extra if token.startswith("--")
                 for m in difflib.get_close_matches(token.split("=")[0], flags, n=1, cutoff=0.75)]
        # `sweep --lr 0.05 0.1`: the second value is left over; lists take commas.
        listed = next((f"{argv[i - 2]} {argv[i - 1]},{argv[i]}" for i in range(2, len(argv))
                       if argv[i] == extra[0] and argv[i - 2] in ("--lr", "--momentum",
                                                                    "--seeds")), None)
        hint = (" (a sweep takes --seeds: a count or a list)"
                if args.command == "sweep" and "--seed" in extra
                else " (a list of seeds is for jaxmlp sweep --seeds; train takes one --seed)"
                if args.command == "train" and "--seeds" in extra
                else f" (lists are comma-separated: {listed})"
                if args.command == "sweep" and listed
                else f" (did you mean {close[0]}?)" if close else "")
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    return args


def _default_out(arch: str, dataset: str = DEFAULT_DATASET) -> Path:
    """``runs/<arch>``: ``"50:relu,10:linear"`` → ``runs/50_relu_10_linear``; on a dataset
    other than MNIST ``runs/<dataset>-<arch>`` (``runs/fashion_mnist-b``; for ``npz:FILE``
    or ``folder:DIR`` the file's stem or the folder's name: ``runs/colours-b``).

    A long spec is cut and given a digest of the whole, so the name stays within the
    file system's limits and distinct specs stay distinct folders.
    """
    own = own_data(dataset)
    if own:
        dataset = own[1].stem or own[0][:-1]
    if dataset != DEFAULT_DATASET:
        arch = f"{dataset}-{arch}"
    name = re.sub(r"[^\w.-]+", "_", arch)
    if len(name) > 64:
        name = f"{name[:48]}-{hashlib.sha256(arch.encode()).hexdigest()[:12]}"
    return Path("runs") / name


def _flags(args, skip=()) -> dict:
    """The ``TrainConfig`` settings that ``args``' flags name."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
            if f.name not in skip and getattr(args, f.name, None) is not None}


def _given(args, skip=()) -> dict:
    """The ``TrainConfig`` settings that ``args`` ask for: the flags, over ``--recipe``'s.

    A recipe's settings are defaults, never a request to train longer: its length counts
    for a new run only (not beside ``--steps``, not on ``--resume``, where a stopped run
    finishes what it was asked)."""
    given = _flags(args, skip)
    if getattr(args, "recipe", None):
        from jaxmlp._recipes import recipe_settings

        recipe = recipe_settings(args.recipe)
        if "steps" in given or args.resume is not None:
            recipe.pop("epochs", None)
        given = {**{k: v for k, v in recipe.items() if k not in skip}, **given}
    if "epochs" in given and "steps" in given:
        raise ValueError("give --epochs or --steps, not both: a run's length is counted in one")
    return given


def _resumed_config(args, saved: TrainConfig, out: Path, skip=()) -> TrainConfig:
    """``saved`` with what ``args`` ask for on ``--resume``; a ``--recipe`` whose settings
    are not the run's (by value: ``alpha=34.0`` is ``alpha=34``) is refused by name, since
    resuming cannot change them."""
    given, flags = _given(args, skip), _flags(args, skip)
    config = TrainConfig(**{**dataclasses.asdict(saved), **given})
    from_recipe = sorted(k for k in given if k not in flags
                         and _setting_value(config, k) != _setting_value(saved, k))
    if from_recipe:
        raise ValueError(f"--recipe {args.recipe} sets {', '.join(from_recipe)} otherwise than "
                         f"the run in {out} has them, and a resume cannot change them: resume "
                         "without --recipe (the run keeps its own settings)")
    return config


def _setting_value(config: TrainConfig, name: str):
    """A setting as a value: an architecture as its layers (``b`` is its spec)."""
    from jaxmlp._arch import parse_arch

    return parse_arch(config.arch) if name == "arch" else getattr(config, name)


def _check_out(args) -> None:
    """``--out ""`` (an unset shell variable) is a mistake, not the default folder."""
    if args.out is not None and not args.out.strip():
        raise ValueError("--out needs a folder, got an empty string")


def _resumed_folder(args, kind: str) -> Path:
    """The folder ``--resume`` names; ``--out`` may only name it again."""
    if not args.resume.strip():
        raise ValueError(f"--resume needs a {kind} folder, got an empty string")
    out = Path(args.resume)
    if args.out and Path(args.out).resolve() != out.resolve():
        raise ValueError("--resume DIR writes to DIR; drop --out or make it the same")
    return out


def _config_from_args(args) -> tuple[TrainConfig, Path]:
    """The ``TrainConfig`` and run folder that ``args`` ask for (resume included)."""
    _check_out(args)
    given = _given(args)
    if args.resume is None:
        config = TrainConfig(**given)
        default = Path("runs") / args.recipe if args.recipe else _default_out(config.arch,
                                                                                config.dataset)
        return config, Path(args.out) if args.out else default
    out = _resumed_folder(args, "run")
    from jaxmlp._run import read_config

    saved = read_config(out)  # train_and_evaluate checks what else may change
    return _resumed_config(args, saved, out), out


def _enable_compilation_cache() -> None:
    """Turns on JAX's persistent compilation cache, so a second run skips compiling."""
    import jax

    from jaxmlp._data import default_cache_dir

    jax.config.update("jax_compilation_cache_dir", str(default_cache_dir() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # A cache that cannot be written (full disk, ulimit -f), or an entry left torn by such a
    # write, only costs speed (JAX compiles anew): no warning.
    warnings.filterwarnings("ignore",
                            message="Error (writing|reading) persistent compilation cache")


@contextlib.contextmanager
def _training_failures(command: str, out):
    """A diverged or interrupted training becomes its one line and exit status."""
    from jaxmlp._trainer import TrainingDiverged, TrainingInterrupted

    try:
        yield
    except TrainingDiverged as e:
        raise _Failure(f"training diverged: {e}", 1) from None
    except TrainingInterrupted as e:
        raise _Failure(f"interrupted at step {e.step}; resume with `jaxmlp {command} --resume "
                       f"{out}`" if e.step is not None else "interrupted before the first epoch "
                       "finished; nothing was saved", 130) from None


def _parse_seeds(text: str) -> tuple[int, ...]:
    """``--seeds``: ``"16"`` → seeds 0 to 15; ``"0,3,7"`` (any comma) → those seeds, and
    ``"7,"`` → seed 7 alone (one trailing comma makes a list). (The values' rules are
    ``Grid``'s.)"""
    from jaxmlp._checks import parse_int
    from jaxmlp._config import MAX_MODELS

    a_list = "a list (0,3,7; 7, for seed 7 alone)"
    try:
        if "," not in text:
            count = parse_int(text, "--seeds")
            if not 1 <= count <= MAX_MODELS:
                raise ValueError(f"--seeds takes a count from 1 to {MAX_MODELS} (3: seeds 0, 1, "
                                 f"2) or {a_list}, got {text!r}")
            return tuple(range(count))
        items = text.strip()[:-1] if text.strip().endswith(",") else text
        return tuple(parse_int(t, "--seeds") for t in items.split(","))  # "0,,1": a mistake
    except ValueError as e:
        raise ValueError(str(e) if "--seeds takes" in str(e) else
                         f"--seeds takes a count (16) or {a_list}, got {text!r}") from None


def _parse_floats(text: str, name: str) -> tuple[float, ...]:
    """``--lr`` or ``--momentum`` of a sweep: ``"0.02,0.05,0.1"`` → ``(0.02, 0.05, 0.1)``.
    (The values' rules are ``Grid``'s.)"""
    from jaxmlp._checks import TooLarge, parse_float

    try:
        return tuple(parse_float(t, f"--{name}") for t in str(text).split(","))
    except TooLarge:
        raise
    except ValueError:
        raise ValueError(f"--{name} takes numbers separated by commas, got {text!r}") from None


def _sweep_settings(args):
    """A sweep's ``(config, grid, order, out)``; a resume keeps the saved grid and order
    unless flags name new ones (``train_many`` refuses what may not change)."""
    from jaxmlp._run import read_sweep
    from jaxmlp._config import Grid

    _check_out(args)
    given = _given(args, skip=_SWEPT)
    from jaxmlp._recipes import RECIPES

    recipe = RECIPES[args.recipe] if args.recipe else None
    picked = recipe.settings if recipe else {}
    # --lr's default is the recipe's, else the optimizer's (TrainConfig's rule).
    default_lr = picked.get("lr") or TrainConfig(
        optimizer=given.get("optimizer", TrainConfig.optimizer)).lr
    pick = lambda given, default: default if given is None else given  # "" is a mistake
    seeds = str(recipe.seeds) if recipe and recipe.seeds else "1"
    try:
        grid = Grid(_parse_seeds(pick(args.seeds, seeds)),
                    _parse_floats(pick(args.lr, default_lr), "lr"),
                    _parse_floats(pick(args.momentum, picked.get("momentum",
                                                                 TrainConfig.momentum)),
                                  "momentum"))
    except ValueError as e:  # the Grid's rule, in the flags' words
        raise ValueError(re.sub(r"Grid (seeds|lrs|momenta)(\[\d+\])?", lambda m: _FLAG_OF[m[1]],
                                str(e))) from None
    if args.resume is None:
        config = TrainConfig(**given)
        out = Path(args.out) if args.out else Path("runs") / (
            "sweep-" + (args.recipe or _default_out(config.arch, config.dataset).name))
        return config, grid, args.order or "shared", out
    out = _resumed_folder(args, "sweep")
    saved, saved_grid, saved_order = read_sweep(out)
    grid = Grid(grid.seeds if args.seeds else saved_grid.seeds,
                grid.lrs if args.lr else saved_grid.lrs,
                grid.momenta if args.momentum else saved_grid.momenta)
    return (_resumed_config(args, saved, out, skip=_SWEPT), grid, args.order or saved_order,
            out)


def _distributed(args, config: TrainConfig, grid: Optional[Grid], order: str) -> None:
    """Joins the other processes of a multi-host run or sweep, if the flags name one (a
    sweep's processes must agree on its grid and order too)."""
    from jaxmlp._parallel import check_timeout

    check_timeout(args.init_timeout)  # a flag given is checked, used or not
    distributed: tuple = (args.coordinator, args.num_processes, args.process_id)
    if args.distributed and None in distributed:  # the launcher's values, where no flag names one
        from jaxmlp._parallel import detect_cluster

        distributed = tuple(given if given is not None else found for given, found in
                            zip(distributed, detect_cluster(args.init_timeout)))
    if all(v is None for v in distributed):
        return
    if any(v is None for v in distributed):
        raise ValueError("multi-host runs need --coordinator, --num-processes and "
                         "--process-id together (or --distributed under a launcher)")
    from jaxmlp._parallel import initialize_distributed

    # Before any computation: JAX must know the whole cluster first.
    models = "" if grid is None else json.dumps([grid.seeds, grid.lrs, grid.momenta, order])
    digest = config.config_hash() + hashlib.sha256(models.encode()).hexdigest()[:16]
    initialize_distributed(*distributed, timeout_s=args.init_timeout, config_hash=digest)


def _cpu_devices() -> None:
    """On CPU one XLA device computes on one core; a device per core lets a sweep's sharded
    model axis use them all (measured: scripts/benchmark.py --sweep). XLA reads the flag
    when its backends start, so only before then (GPUs are unaffected: it counts CPUs)."""
    from jax._src import xla_bridge

    if not xla_bridge.backends_are_initialized() and (
            "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", "")):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform"
                                   f"_device_count={len(os.sched_getaffinity(0))}").strip()


def _fit(args) -> int:
    """``jaxmlp train`` and ``jaxmlp sweep``: ``jaxmlp.fit`` of the settings the flags give."""
    grid, order = None, "shared"
    if args.command == "sweep":
        _cpu_devices()
        config, grid, order, out = _sweep_settings(args)
    else:
        config, out = _config_from_args(args)
    _distributed(args, config, grid, order)
    _enable_compilation_cache()
    from jaxmlp._trainer import fit

    with _training_failures(args.command, out):
        result = fit(config, grid, out, order=order, resume=args.resume is not None,
                     overwrite=args.overwrite,
                     log=(lambda line: None) if args.quiet else lambda line: print(_in_flags(line)),
                     progress=not args.no_progress and sys.stderr.isatty())
    import jax

    if jax.process_index() == 0:
        print(_outcome(result, out))
    return 0


def _outcome(result: dict, out) -> str:
    """The last lines of ``jaxmlp train`` (the final accuracy) or ``jaxmlp sweep`` (the
    summary's table)."""
    if "summary" in result:
        from jaxmlp._sweep import format_summary

        return f"{format_summary(result['summary'])}\noutputs in {out}"
    steps, val = result["steps"], result["val_accuracy"]
    kept = (f"model.npz is epoch {result['kept_epoch']}, the best by {result['kept_by']}\n"
            if "kept_epoch" in result else "")
    return (f"{kept}final test accuracy {result['test_accuracy']:.4f}"
            + (f" (validation {val:.4f})" if val is not None else "")
            + f" after {steps} step{'s' if steps != 1 else ''}; outputs in {out}")


def _add_ensemble_flags(parser) -> None:
    parser.add_argument("--ensemble", action="store_true", help="a sweep's committee: the "
                        "mean of one setting's seeds' probabilities (the best setting by "
                        "default)")
    parser.add_argument("--setting", type=_int, metavar="K", help="with --ensemble: setting "
                        "K of the grid (lr outer, momentum inner; summary.json's order)")


def _add_tta_flags(parser) -> None:
    parser.add_argument("--tta", type=_int, metavar="N", help="test-time augmentation: "
                        "average the probabilities over each image and N distortions of it")
    parser.add_argument("--tta-augment", metavar="SPEC", help="with --tta: the distortions, "
                        "as train's --augment (default: translation=1)")
    parser.add_argument("--tta-seed", type=_int, default=0, metavar="S",
                        help="with --tta: the distortions' PRNG seed (default: 0)")


def _tta_of(args):
    """``--tta N [--tta-augment SPEC] [--tta-seed S]`` as a ``TTA``, or None; its rules'
    messages in flags."""
    from jaxmlp._tta import TTA

    if args.tta is None:
        if args.tta_augment is not None or args.tta_seed != 0:
            raise ValueError("--tta-augment and --tta-seed shape --tta: add --tta N")
        return None
    try:
        return TTA(args.tta, *([args.tta_augment] if args.tta_augment is not None else []),
                   seed=args.tta_seed)
    except (ValueError, TypeError) as e:
        raise ValueError(_tta_words(str(e))) from None


def _tta_words(message: str) -> str:
    """A ``TTA`` message in flags: ``TTA n`` is ``--tta``, ``augment alpha …``
    ``--tta-augment alpha …``."""
    for words, flag in ((r"TTA n\b", "--tta"), (r"TTA seed\b", "--tta-seed"),
                        (r"TTA augment\b", "--tta-augment"), (r"^augment\b", "--tta-augment")):
        message = re.sub(words, flag, message)
    return message


def _add_data_flags(parser) -> None:
    parser.add_argument("--data-dir", help="TFDS data folder (default: the run's, else "
                        "$TFDS_DATA_DIR)")
    parser.add_argument("--no-download", dest="download", action="store_false",
                        help="never download the dataset")


def _check_ensemble_args(args) -> None:
    """``--ensemble [--setting K]`` (``eval``, ``predict``) given a sweep's folder, no model."""
    from jaxmlp._run import is_sweep

    if args.model is not None:
        raise ValueError("--ensemble takes a setting's models together: drop --model")
    if not is_sweep(args.run):
        raise ValueError(f"{args.run} holds a single run: --ensemble needs a sweep's folder")


def _load_ensemble(args):
    """The committee ``--ensemble [--setting K]`` names (``predict``)."""
    from jaxmlp._run import load_ensemble

    _check_ensemble_args(args)
    return load_ensemble(args.run, args.setting)


def _load_run(args):
    """The run ``jaxmlp eval``/``predict`` name: a run folder, or ``--model I`` of a sweep's."""
    from jaxmlp._run import is_sweep, load_run

    if getattr(args, "setting", None) is not None:  # (export takes no committee)
        raise ValueError("--setting names an ensemble's setting: add --ensemble")
    sweep = is_sweep(args.run)  # (a sweep.json that is a link: load_run then refuses it)
    if sweep and args.model is None:
        raise ValueError(f"{args.run} holds a sweep: name one of its models with --model I "
                         f"(jaxmlp {args.command} {args.run} --model 0 ...)")
    if not sweep and args.model is not None:
        raise ValueError(f"{args.run} holds a single run, not a sweep: drop --model")
    return load_run(args.run, model=args.model)


def _run_data(args, config):
    """The data of a run's config for ``eval``: ``--data-dir``, else the folder the run
    recorded while it still exists, else the default ($TFDS_DATA_DIR, the folder last used,
    ~/tensorflow_datasets): a moved data folder is not a dead end."""
    from jaxmlp._data import load_dataset

    recorded = config.data_dir
    data_dir = args.data_dir or (recorded if recorded and Path(recorded).is_dir() else None)
    return load_dataset(config.dataset, data_dir=data_dir, manual_dir=config.manual_dir,
                        download=args.download)


def _print_per_class(accuracies) -> None:
    print("per class: " + "  ".join(f"{c}: {a:.3f}" for c, a in enumerate(accuracies)
                                    if a is not None))


def _eval_ensemble(args) -> int:
    """``jaxmlp eval SWEEP --ensemble [--setting K]``: a setting's committee."""
    from jaxmlp._run import ENSEMBLES, evaluate_ensemble, read_sweep

    _check_ensemble_args(args)  # (evaluate_ensemble loads the committee, once)
    tta = _tta_of(args)
    report = evaluate_ensemble(args.run, _run_data(args, read_sweep(args.run)[0]), args.setting,
                               tta)
    members = ", ".join(f"{a:.4f}" for a in report["member_test_acc"])
    print(f"{args.run}: ensemble of setting {report['setting']} (lr {report['lr']:g}, momentum "
          f"{report['momentum']:g}; models {', '.join(map(str, report['members']))}): test "
          f"loss {report['test_loss']:.4f}, test accuracy {report['test_acc']:.4f}"
          f"{_tta_text(report)} (its models: {members})")
    _print_per_class(report["per_class_acc"])
    print(_confusion_text(report["confusion"]))
    print(f"wrote {Path(args.run) / ENSEMBLES / str(report['setting'])}/eval.json, "
          "confusion.png")
    return 0


def _eval(args) -> int:
    from jaxmlp._run import evaluate_run

    if args.ensemble:
        return _eval_ensemble(args)
    tta = _tta_of(args)
    run = _load_run(args)
    report = evaluate_run(run, _run_data(args, run.config), tta)
    name = run.path if run.model is None else f"{run.path} model {run.model}"
    print(f"{name}: test loss {report['test_loss']:.4f}, test accuracy "
          f"{report['test_acc']:.4f}{_tta_text(report)}")
    _print_per_class(report["per_class_acc"])
    print(_confusion_text(report["confusion"]))
    where = run.path if run.model is None else run.path / "models" / str(run.model)
    print(f"wrote {where}/eval.json, confusion.png, mistakes.png, weights.png")
    return 0


def _tta_text(report: dict) -> str:
    """`` over each image and 8 distortions (translation=2) (without it 0.9812)`` when the
    report voted so (eval, eval --ensemble and ensemble alike)."""
    tta = report.get("tta")
    if not tta:
        return ""
    n = tta["n"]
    return (f" over each image and {n} distortion{'s' * (n != 1)} ({tta['augment']}) "
            f"(without it {report['without_tta']['test_acc']:.4f})")


def _ensemble(args) -> int:
    """``jaxmlp ensemble RUN...``: a committee of different runs on the test split."""
    from jaxmlp._committee import evaluate_committee, load_committee
    from jaxmlp._checkpoint import write_atomic
    from jaxmlp._run import check_new_file, write_new_file

    tta = _tta_of(args)
    if args.out is not None:
        check_new_file(args.out, overwrite=args.overwrite)  # before any work
    committee = load_committee(args.runs)
    data = _run_data(args, committee.config)
    report = evaluate_committee(committee, data, tta)
    for m in report["members"]:
        print(f"{m['name']} ({m['arch']}): test accuracy {m['test_acc']:.4f}")
    spread = (f" ± {report['member_std']:.4f}" if report["member_std"] is not None else "")
    print(f"committee of {len(report['members'])}: test loss {report['test_loss']:.4f}, test "
          f"accuracy {report['test_acc']:.4f}{_tta_text(report)} (its models "
          f"{report['member_mean']:.4f}{spread})")
    _print_per_class(report["per_class_acc"])
    print(_confusion_text(report["confusion"]))
    if args.out is not None:
        text = (json.dumps(report, indent=1) + "\n").encode()
        write_new_file(args.out, lambda p: write_atomic(p, lambda f: f.write(text)),
                       overwrite=args.overwrite)
        print(f"wrote {args.out}")
    return 0


def _confusion_text(confusion: list) -> str:
    """The confusion matrix as a table (rows: the true class, columns: the predicted one);
    for more than 20 classes only where it is (a terminal row would not fit)."""
    if len(confusion) > 20:
        return f"confusion: {len(confusion)} classes, in eval.json and confusion.png"
    width = max(3, *(len(str(n)) for row in confusion for n in row))
    head = " " * 5 + " ".join(f"{c:>{width}}" for c in range(len(confusion)))
    rows = [f"{i:>4} " + " ".join(f"{n:>{width}}" for n in row) for i, row in enumerate(confusion)]
    return "\n".join(["confusion (rows: true class, columns: predicted class):", head, *rows])


def _predict(args) -> int:
    from jaxmlp._predict import digit_pipeline, load_inputs, predict, predict_ensemble, top_k

    tta = _tta_of(args)
    run = _load_ensemble(args) if args.ensemble else _load_run(args)
    shape = run.info.image_shape
    images, names = load_inputs(args.files, invert=args.invert, image_shape=shape,
                                digits=digit_pipeline(run.info))
    if tta is None:
        probs = (predict_ensemble if args.ensemble else predict)(run.params, images, run.arch,
                                                                  image_shape=shape)
    else:
        probs = _predict_tta(run, images, tta, args.ensemble)
    for name, top in zip(names, top_k(probs, 3)):
        if args.json:  # "class"; "digit" too, as before datasets other than MNIST
            print(json.dumps({"input": name, "class": top[0][0], "digit": top[0][0],
                              "top3": [{"class": c, "digit": c, "prob": p} for c, p in top]}))
        else:
            print(f"{name}: {top[0][0]}  (" + ", ".join(f"{d}: {p:.3f}" for d, p in top) + ")")
    return 0


def _predict_tta(run, images, tta, ensemble: bool):
    """``predict --tta``: each model's probabilities over the images and their distortions,
    a committee's averaged."""
    import numpy as np

    from jaxmlp._images import prepare_images
    from jaxmlp._run import model_of
    from jaxmlp._tta import tta_probabilities

    shape = run.info.image_shape
    x = prepare_images(images, in_dim=math.prod(shape), image_shape=shape)
    models = ([model_of(run.params, i) for i in range(len(run.members))] if ensemble
              else [run.params])
    return np.mean([tta_probabilities(p, x, run.arch, tta, image_shape=shape)
                     for p in models], axis=0)


def _gradcheck(args) -> int:
    from jaxmlp._gradcheck import format_gradcheck, gradcheck

    result = gradcheck(args.arch, in_dim=args.in_dim, batch_size=args.batch_size, seed=args.seed)
    print(format_gradcheck(result))
    return 0 if result["passed"] else 1


def _toy(args) -> int:
    from jaxmlp._toy import trace_text

    print(trace_text(lr=args.lr, iterations=args.iterations))
    return 0


# What ``jaxmlp augment`` draws at most: a page of 64 rows of 17 pictures.
_MAX_IMAGES, _MAX_DRAWS = 64, 16


def _augment_command(args) -> int:
    import jax

    from jaxmlp._checks import seed
    from jaxmlp._augment import augment, parse_augment
    from jaxmlp._data import load_dataset
    from jaxmlp._images import prepare_images
    from jaxmlp._plot import plot_augment
    from jaxmlp._run import check_new_file, write_new_file

    aug = parse_augment(args.spec)
    for flag, value, top in (("--images", args.images, _MAX_IMAGES),
                             ("--draws", args.draws, _MAX_DRAWS)):
        if not 1 <= value <= top:
            raise ValueError(f"{flag} must be in [1, {top}], got {value}")
    seed(args.seed, "--seed")
    out = args.out
    check_new_file(out, overwrite=args.overwrite)  # before any work
    data = load_dataset(args.dataset, data_dir=args.data_dir, manual_dir=args.manual_dir,
                        download=False)
    shape = data.info.image_shape
    images = data.train_images[:args.images]
    x = prepare_images(images, image_shape=shape).reshape(-1, *shape)  # as a training step
    draw = jax.jit(lambda key: augment(key, x, aug))
    distorted = [draw(jax.random.fold_in(jax.random.key(args.seed), d)).reshape(len(images), -1)
                 for d in range(args.draws)]
    write_new_file(out, lambda path: plot_augment(
        images, distorted, path, image_shape=shape, title=f"--augment {aug.spec or 'none'}"),
        overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


def _serve(args) -> int:
    from jaxmlp.app._serve import make_server, url_of

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    server = make_server(args.dir, args.host, args.port)
    print(f"serving the runs under {args.dir} at {url_of(server)} (Ctrl-C to stop)")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:  # the way to stop a server: exit 0
        print(f"{_PROG} serve: stopped")
        return 0
    finally:
        server.server_close()
    return 0


def _export(args) -> int:
    """``jaxmlp export``: ``jaxmlp.export`` of a run's model."""
    from jaxmlp._export import export
    from jaxmlp._run import check_new_file

    check_new_file(args.out, overwrite=args.overwrite)  # before loading anything
    run = _load_run(args)
    path = export(run, args.out, args.format, overwrite=args.overwrite)
    print(f"wrote {path} ({args.format}: images (N, {run.info.in_dim}) float32 in [0, 1] -> "
          f"probabilities (N, {run.info.num_classes}))")
    return 0


def _lrs(row: dict) -> str:
    lrs = row["lr"]
    return f"{lrs[0]:g}" if len(lrs) == 1 else f"{lrs[0]:g}..{lrs[-1]:g} ({len(lrs)})"


def _length(row: dict) -> str:
    """Done of planned, in the unit the run counts in: epochs, or steps."""
    if row["planned_steps"] is not None:
        return f"{row['step']}/{row['planned_steps']} steps"
    return f"{row['epochs']}/{row['planned_epochs']}"


def _accuracy(value) -> str:
    return "-" if value is None else f"{value:.4f}"


# ``jaxmlp runs``' columns: header, the cell of a row (``_pages.describe_run``), and the
# key it sorts by (accuracies best first; an unknown value last). The accuracies are the
# model the folder holds (``_pages._progress``), not the best epoch's on the test set.
_RUN_COLUMNS: dict = {
    "run": ("run", lambda r: r["path"], lambda r: r["path"]),
    "kind": ("kind", lambda r: f"sweep of {r['models']}" if r["kind"] == "sweep" else "run",
             lambda r: (r["kind"], r.get("models", 1))),
    "dataset": ("dataset", lambda r: r["dataset"], lambda r: r["dataset"]),
    "arch": ("arch", lambda r: r["arch"], lambda r: r["arch"]),
    "params": ("params", lambda r: "-" if r["params"] is None else f"{r['params']:,}",
               lambda r: r["params"]),
    "optimizer": ("optimizer", lambda r: r["optimizer"], lambda r: r["optimizer"]),
    "lr": ("lr", _lrs, lambda r: r["lr"][0]),
    "epochs": ("epochs", _length, lambda r: r["epochs"]),
    "val": ("val acc", lambda r: _accuracy(r["val_acc"]),
            lambda r: None if r["val_acc"] is None else -r["val_acc"]),
    "test": ("test acc", lambda r: _accuracy(r["test_acc"]),
             lambda r: None if r["test_acc"] is None else -r["test_acc"]),
    "time": ("time", lambda r: "-" if r["seconds"] is None else f"{r['seconds']:.0f} s",
             lambda r: r["seconds"]),
}


def _runs_table(rows: list[dict], sort: str) -> str:
    """The rows of ``jaxmlp runs``, one line each, aligned; a run that cannot be read shows
    its path and why."""
    good = [r for r in rows if "error" not in r]
    key = _RUN_COLUMNS[sort][2]
    good.sort(key=lambda r: (key(r) is None, key(r) if key(r) is not None else 0, r["path"]))
    cells = [[c[0] for c in _RUN_COLUMNS.values()]]
    cells += [[c[1](r) for c in _RUN_COLUMNS.values()] for r in good]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells]
    lines += [f"{r['path']}  cannot be read: {r['error']}" for r in rows if "error" in r]
    return "\n".join(lines)


def _runs(args) -> int:
    """``jaxmlp runs``: the runs page's rows (``_pages.describe_run``) as a table."""
    from jaxmlp.app._pages import describe_run, find_runs

    root = Path(args.dir)
    if not root.is_dir():
        raise ValueError(f"no folder at {root}" if not root.exists() else
                         f"{root} is not a folder")
    rows = [describe_run(root, folder) for folder in find_runs(root)]
    print(_runs_table(rows, args.sort) if rows else f"no runs under {root}")
    return 0


_COMMANDS = {"train": _fit, "sweep": _fit, "eval": _eval, "ensemble": _ensemble,
             "predict": _predict, "gradcheck": _gradcheck, "augment": _augment_command,
             "serve": _serve, "export": _export, "runs": _runs, "toy": _toy}


def main(argv=None) -> int:
    """The ``jaxmlp`` command; returns its exit status."""
    args = _parse(argv)
    # One line at a time even into a pipe (`jaxmlp train | tee log`), as on a terminal: a
    # reader sees each epoch as it ends, not a block when the buffer fills or the run exits.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    # `kill`/`timeout` end a run as Ctrl-C does (KeyboardInterrupt): saved, one line.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _flags_of(parser: argparse.ArgumentParser) -> dict:
    """``{setting: its flag}`` over every command: each option's destination and its first
    long option string (``val_size`` → ``--val-size``), and a ``Grid``'s fields."""
    flags = dict(_FLAG_OF)
    for action in _options(parser):
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs and action.dest != "help":
            flags.setdefault(action.dest, longs[0])
    flags["timeout_s"] = flags["init_timeout"]  # initialize_distributed's name for it
    return flags


def _in_flags(message: str) -> str:
    """A library message in the command's words: the library names a setting as
    `` `name` `` (``TrainConfig``'s field, an argument of the API); here it is its flag.
    A message about a run's file (``…/config.json: `lr` must be positive``) names the
    file's key, and keeps it."""
    if "`" not in message or re.search(r"\.json: ", message):  # nothing to translate
        return message
    flags = _flags_of(_build_parser())
    return re.sub(r"`(\w+)`", lambda m: flags.get(m[1], m[0]), message)


def _argument_as_flag(message: str, command: str) -> str:
    """A function's argument opens its message unquoted (``lr must be …``: docs/api.md);
    where ``command`` has a flag for it (``jaxmlp toy --lr``), the line names the flag."""
    m = re.match(r"error: (\w+) (must|has)", message)
    if not m:
        return message
    commands = next(a for a in _build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    flags = {a.dest: a.option_strings[0] for a in commands.choices[command]._actions
             if a.option_strings and a.option_strings[0].startswith("--")}
    return message.replace(m[1], flags[m[1]], 1) if m[1] in flags else message


def _run(args) -> int:
    from jaxmlp._run import RunWriteError

    try:
        return _COMMANDS[args.command](args)
    except _Failure as e:
        message, code = str(e), e.code
    except KeyboardInterrupt:
        message, code = "interrupted", 130
    except BrokenPipeError:  # `jaxmlp toy | head`: the reader left; end as SIGPIPE would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except RunWriteError as e:
        message, code = f"error: {e.strerror}", 1
    except (ValueError, TypeError, RuntimeError, OSError) as e:  # bad input, named
        from jaxmlp._parallel import lost_process

        lost = lost_process(e)
        message, code = (f"error: {e}", 2) if lost is None else (f"error: {lost}", 1)
    message = _argument_as_flag(_in_flags(message), args.command)
    # The folder holds the other kind: its own command resumes it.
    other = {"train": ("a sweep", "sweep"), "sweep": ("a run", "train")}.get(args.command)
    if other and f"already holds {other[0]} (" in message:
        message = message.replace("resume it with --resume", f"resume it with jaxmlp "
                                  f"{other[1]} --resume")
    print(f"{_PROG} {args.command}: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":  # `python -m jaxmlp` is the entry that answers Ctrl-C while importing
    sys.exit(main())
