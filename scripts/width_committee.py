"""Does width normalisation make a committee's members err on different digits?

Cireşan, Meier & Schmidhuber 2012 trained each member of their committee on MNIST with every
digit's width normalised to another number of pixels (10, 12, … 20, and the originals);
Meier et al. 2011 did the same for 784-800-10 nets. This trains a recipe once on each
normalisation (``jaxmlp.width_normalise``, seed 0) and on the originals, and, as the
baseline, the same recipe on the originals for as many seeds; then prints one table: each
member's test accuracy, the width committee's (each member reads its own normalisation of
the test images; the mean of their probabilities) and the seed committee's.

Each normalised MNIST is written once as ``--out/mnist-wW.npz`` (a dataset of your own:
``jaxmlp train --dataset npz:FILE`` takes it; ``jaxmlp eval`` finds it), each member's run
as ``--out/wW`` or ``--out/seedS``; a member's folder that exists is resumed (a finished
run is loaded, not trained again; a stopped one continues; one of other settings stops
the comparison with one line), so an interrupted comparison continues where it stopped,
in its folder: a member records its digits' full path, so a moved folder does not continue.

Usage: python scripts/width_committee.py [--recipe speedrun99] [--widths 10,12,14,16,18,20]
         [--out runs/width] [--tta N] [--compute-dtype bfloat16] [--epochs E]
``--quick`` (for the tests): a 3,000-image slice, 20 steps a member.
"""
import argparse
import dataclasses
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import _machine, end_in_a_line, interruptible  # noqa: E402  (as records.py)

from jaxmlp import (TTA, Dataset, TrainConfig, predict,  # noqa: E402
                    train_and_evaluate, tta_probabilities, width_normalise)
from jaxmlp._data import load_dataset  # noqa: E402
from jaxmlp._recipes import RECIPES, recipe_settings  # noqa: E402
from jaxmlp._checkpoint import write_atomic  # noqa: E402
from jaxmlp._checks import parse_float  # noqa: E402
from jaxmlp._errors import DatasetError, RunError  # noqa: E402
from jaxmlp._run import CONFIG, SWEEP, read_config  # noqa: E402
from jaxmlp.app._cli import (_Parser, _enable_compilation_cache, _in_flags,  # noqa: E402
                             _int, _tta_words)

CHUNK = 10_000  # images normalised at once (their resampling holds ~14 floats a pixel)


def normalised(images: np.ndarray, width: float, shape) -> np.ndarray:
    """``images`` ``(N, in_dim)`` uint8 with each digit's width normalised, uint8 again."""
    out = [np.asarray(width_normalise(images[i:i + CHUNK].reshape(-1, *shape) / 255.0, width))
           for i in range(0, len(images), CHUNK)]
    return np.round(np.concatenate(out) * 255).astype(np.uint8).reshape(len(images), -1)


def _dataset_file(data: Dataset, width: float, out: Path) -> Path:
    """``out/mnist-wW.npz``: ``data`` with every digit's width normalised (written once,
    atomically)."""
    path = out / f"mnist-w{width:g}.npz"
    if not path.exists():
        shape = data.info.image_shape
        arrays = dict(x_train=normalised(data.train_images, width, shape).reshape(-1, *shape),
                      y_train=data.train_labels,
                      x_test=normalised(data.test_images, width, shape).reshape(-1, *shape),
                      y_test=data.test_labels)
        write_atomic(path, lambda f: np.savez_compressed(f, **arrays))
    return path


class Refused(Exception):
    """What stops the comparison before it trains anything wrong: one line."""


def _member(config: TrainConfig, folder: Path, data) -> tuple[list, dict]:
    """``(params, figures)`` of the run in ``folder``, trained there; a folder that exists is
    resumed under the library's rules: a finished run is loaded, not trained again, a
    stopped one continues, one of other settings is refused (``ValueError``)."""
    existed, begin = folder.exists(), time.perf_counter()
    try:
        result = train_and_evaluate(config, folder, resume=existed, data=data,
                                    log=lambda _: None)
    except ValueError as e:
        saved = read_config(folder) if (folder / CONFIG).is_file() else None
        if saved and saved.dataset != config.dataset and (
                Path(saved.dataset).name == Path(config.dataset).name):  # the folder moved
            raise Refused(f"{folder} was trained on {saved.dataset[4:]}: a member records its "
                          "digits' full path, so a comparison continues only in the folder it "
                          "was made in (move it back, or start again with another --out)"
                          ) from None
        raise Refused(f"{folder} holds a run this member cannot continue: "
                      f"{_in_flags(str(e))}") from None
    return result["params"], {"test_acc": result["test_accuracy"], "loaded": existed,
                              "train_s": sum(h["epoch_seconds"] for h in result["history"]),
                              "wall_s": time.perf_counter() - begin}


def _probabilities(params, images, config: TrainConfig, shape, tta):
    if tta is None:
        return predict(params, images, config.layers, image_shape=shape)
    return tta_probabilities(params, images, config.layers, tta, image_shape=shape)


def _committee(members: list, labels: np.ndarray) -> float:
    """The accuracy of the mean of the members' probabilities."""
    return float(np.mean(np.mean(members, axis=0).argmax(axis=1) == labels))


def main(argv=None) -> dict:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="speedrun99", choices=tuple(RECIPES))
    parser.add_argument("--widths", default="10,12,14,16,18,20",
                        help="the widths in pixels, comma-separated (the originals are added)")
    parser.add_argument("--out", default="runs/width")
    parser.add_argument("--tta", type=_int, help="each member over N random shifts too")
    parser.add_argument("--compute-dtype", choices=("float32", "bfloat16"))
    parser.add_argument("--epochs", type=_int, help="instead of the recipe's")
    parser.add_argument("--data-dir")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    widths = _widths(parser, args.widths)
    try:
        tta = None if args.tta is None else TTA(args.tta)
    except (ValueError, TypeError) as e:
        parser.error(_tta_words(str(e)))
    settings = dict(recipe_settings(args.recipe))
    if args.compute_dtype:
        settings["compute_dtype"] = args.compute_dtype
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    try:  # the recipe's rules, checked before anything is written
        base = TrainConfig(**settings)
        if args.quick:  # 20 steps, whatever --epochs says
            base = TrainConfig(**{k: v for k, v in settings.items() if k != "epochs"},
                               steps=20)
    except ValueError as e:
        parser.error(_in_flags(str(e)))
    try:
        return _compare(args, widths, tta, base)
    except (Refused, RunError, DatasetError, OSError, ValueError) as e:
        end_in_a_line("width_committee.py", e)


def _widths(parser, text: str) -> list[float]:
    """``--widths``: different numbers of pixels in [1, 28] (different as the folders name
    them: 12 and 12.0000001 are one)."""
    widths: list[float] = []
    for part in text.split(","):
        try:
            width = parse_float(part, "--widths")
        except ValueError:
            parser.error(f"--widths takes numbers of pixels, comma-separated: {part!r} is not one")
        if not 1 <= width <= 28:
            parser.error(f"--widths takes widths in [1, 28] pixels, got {part}")
        if f"{width:g}" in (f"{w:g}" for w in widths):
            parser.error(f"--widths names {width:g} twice")
        widths.append(width)
    return widths


def _compare(args, widths: list, tta, base: TrainConfig) -> dict:
    """Trains or loads every member, prints the table, returns its rows."""
    _enable_compilation_cache()
    data = load_dataset("mnist", data_dir=args.data_dir, download=False)
    if args.quick:
        data = data._replace(train_images=data.train_images[:3000],
                             train_labels=data.train_labels[:3000],
                             test_images=data.test_images[:1000],
                             test_labels=data.test_labels[:1000])
    out = Path(args.out)
    if os.path.lexists(out) and not out.is_dir():
        raise Refused(f"--out {out} is a file, not a folder")
    if any(os.path.lexists(out / f) for f in (CONFIG, SWEEP)):
        raise Refused(f"--out {out} holds a jaxmlp run, not a width comparison: choose "
                      "another folder")
    out.mkdir(parents=True, exist_ok=True)
    shape, labels = data.info.image_shape, np.asarray(data.test_labels)
    print(f"# width committee, {args.recipe}, {datetime.date.today()}, {_machine()}"
          + (f", matmuls in {args.compute_dtype}" if args.compute_dtype else "")
          + (f", each member over {tta.n} shifts" if tta else ""))
    print("| member | test accuracy | training |")
    print("|---|---|---|")
    rows: dict = {"widths": {}, "seeds": {}}
    # (what, its table's key, config, data, folder): the originals' seed 0 is in both.
    members = [("originals, seed 0", "original", base, data, "seed0")]
    for width in widths:
        # The run records the file (`npz:…`): `jaxmlp eval` reads the same digits.
        config = dataclasses.replace(
            base, dataset=f"npz:{_dataset_file(data, width, out).resolve()}")
        try:
            member_data = load_dataset(config.dataset)
        except DatasetError as e:
            raise Refused(f"{e} (a file this script wrote: remove it to have it written "
                          f"again)") from None
        if len(member_data.train_labels) != len(data.train_labels):
            raise Refused(f"{config.dataset[4:]} holds {len(member_data.train_labels)} "
                          f"training images, not {len(data.train_labels)}: another "
                          "comparison's (choose another --out)")
        members.append((f"width {width:g}", f"{width:g}", config, member_data, f"w{width:g}"))
    members += [(f"originals, seed {seed}", str(seed), dataclasses.replace(base, seed=seed), data,
                 f"seed{seed}") for seed in range(1, len(widths) + 1)]
    probs: dict = {}  # folder: (plain, over shifts or None)
    for what, key, config, member_data, folder in members:
        params, row = _member(config, out / folder, member_data)
        images = member_data.test_images
        probs[folder] = (_probabilities(params, images, config, shape, None),
                         tta and _probabilities(params, images, config, shape, tta))
        row["tta_acc"] = (float(np.mean(probs[folder][1].argmax(axis=1) == labels))
                          if tta else None)
        rows["widths" if folder[0] == "w" or folder == "seed0" else "seeds"][key] = row
        print(f"| {what} | {_shown(row)} | {_time(row)} |", flush=True)
    rows["seeds"] = {"0": rows["widths"]["original"], **rows["seeds"]}
    n = len(widths) + 1
    for name, folders in (("width", [m[4] for m in members[:n]]),
                          ("seed", ["seed0", *(m[4] for m in members[n:])])):
        plain = _committee([probs[f][0] for f in folders], labels)
        shifted = _committee([probs[f][1] for f in folders], labels) if tta else None
        missed = np.all([probs[f][0].argmax(axis=1) != labels for f in folders], axis=0)
        rows[f"{name}_committee"] = {"test_acc": plain, "tta_acc": shifted,
                                     "missed_by_all": int(missed.sum())}
        what = (f"**committee of the {n} widths** (originals included)" if name == "width"
                else f"committee of {n} seeds (the originals)")
        print(f"| {what} | **{_shown(rows[f'{name}_committee'])}**; every member misses "
              f"{int(missed.sum())} | – |")
    return rows


def _shown(row: dict) -> str:
    tta = f" ({100 * row['tta_acc']:.2f}% over shifts)" if row["tta_acc"] is not None else ""
    return f"{100 * row['test_acc']:.2f}%{tta}"


def _time(row: dict) -> str:
    return f"{row['train_s']:.1f} s" + (" (its folder's)" if row["loaded"] else
                                        f" ({row['wall_s']:.1f} s wall)")


if __name__ == "__main__":
    interruptible(main, "width_committee.py", "every member's folder is kept: the same "
                  "command continues where this one stopped")
