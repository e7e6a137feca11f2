"""What ``jaxmlp serve``'s page is told, as JSON-ready dicts: each run's row of the runs
page, a run's or a sweep's view, a model's weights, and ``jaxmlp.predict`` on a drawing.

Run files are read through ``jaxmlp._run``'s readers only, and never a run's lock; pictures
through ``read_png`` only. No link is followed: a file or folder that is a symbolic link is
looked at (``lstat``), never through.
"""
import base64
import hashlib
import json
import math
import os
import stat
import sys
from pathlib import Path

from jaxmlp._files import open_file
from jaxmlp._arch import summary
from jaxmlp._run import (CONFIG, EVAL, METRICS, MODEL, MODELS, SUMMARY, SWEEP, RunError,
                        best_epoch, config_of, is_sweep, read_history, read_json,
                        read_model_info, read_sweep_with_info)

PICTURES = ("curves.png", "confusion.png", "mistakes.png", "weights.png")
_PNG = b"\x89PNG\r\n\x1a\n"  # how every PNG file starts
_MAX_PICTURE = 64 << 20  # jaxmlp's pictures are a few hundred kB; a larger one is not served
_DEPTH = 4  # how deep under the root runs are looked for (runs/records/simard2003 is 2)


class BadRequest(ValueError):
    """A request that cannot be answered as it stands; the message says what was expected."""


def stamp_of(*paths: Path) -> str:
    """A version of the files ``paths``: changes whenever one is written (they are replaced
    whole, by rename, so a new inode or time or size)."""
    parts = []
    for p in paths:
        try:
            st = p.lstat()  # a link's own: what it points at is never read
            parts.append(f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append("-")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def find_runs(root: Path) -> list[Path]:
    """Every run and sweep folder under ``root`` (the root itself included), not following
    links, not looking inside a run (``models/``, ``.new/``) or hidden folders."""
    found = []
    for here, dirs, files in os.walk(root):
        if CONFIG in files or SWEEP in files:
            found.append(Path(here))
            dirs[:] = []
            continue
        depth = len(Path(here).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < _DEPTH else []
    return found


def is_there(path: Path) -> bool:
    """Whether ``path`` is there, a link included (dangling or not): its reader then says
    what is wrong with it, instead of the run looking like another kind."""
    return os.path.lexists(path)


def _regular_file(path: Path) -> bool:
    """Whether ``path`` itself is a regular file (a link to one is not)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def read_png(root: Path, path: Path, whole: bool = True) -> bytes | None:
    """The picture ``path`` under ``root`` (only its signature unless ``whole``), or None
    unless it is a regular file reached from ``root`` without a link (``open_file``) that
    starts as a PNG does: a ``curves.png`` that is another run's ``model.npz``, linked or
    hard-linked, is no picture."""
    try:
        with open_file(path, within=root) as f:
            # Size and signature first: a large file, or one of another kind, is never read.
            if os.fstat(f.fileno()).st_size > _MAX_PICTURE or f.read(len(_PNG)) != _PNG:
                return None
            data = _PNG + f.read(_MAX_PICTURE + 1) if whole else _PNG
    except (OSError, RunError, ValueError):  # absent, a link, not a file, outside root
        return None
    return data if len(data) <= _MAX_PICTURE else None  # grown since: refused all the same


def _is_number(v) -> bool:
    """A finite int or float (``True`` is no number here, nor NaN)."""
    return type(v) in (int, float) and math.isfinite(v)


def _count(v) -> bool:
    return type(v) is int and v >= 0


def _is_mistake(m) -> bool:
    return (isinstance(m, dict) and all(_count(m.get(k)) for k in ("index", "label", "predicted"))
            and _is_number(m.get("confidence")))


def _is_evaluation(report) -> bool:
    """Whether ``report`` is what ``jaxmlp eval`` writes, element by element: accuracies and
    a loss that are finite numbers, an n×n confusion of counts with n per-class accuracies
    (None for a class absent from the test set), and mistakes of the shape it lists."""
    if not (isinstance(report, dict) and _is_number(report.get("test_acc"))
            and 0 <= report["test_acc"] <= 1 and _is_number(report.get("test_loss"))):
        return False
    per_class, confusion = report.get("per_class_acc"), report.get("confusion")
    mistakes = report.get("mistakes")
    return (isinstance(per_class, list) and all(a is None or _is_number(a) for a in per_class)
            and isinstance(confusion, list) and 0 < len(confusion) == len(per_class)
            and all(isinstance(row, list) and len(row) == len(confusion)
                    and all(_count(n) for n in row) for row in confusion)
            and isinstance(mistakes, list) and all(_is_mistake(m) for m in mistakes))


# What a page needs of eval.json, named when it is not there.
_EVAL_KEYS = ("test_acc", "test_loss", "per_class_acc", "confusion", "mistakes")


def page_name(root: Path, folder: Path) -> str:
    """How the page names ``folder``: relative to the served root (``"."``: the root)."""
    return folder.relative_to(root).as_posix() or "."


def _optional_json(path: Path, within: Path | None = None):
    """``path``'s JSON, or None while it is not written (``RunError`` if it cannot be read);
    ``within``: the run folder, when ``path`` lies below it (no folder between may be a link)."""
    return read_json(path, within=within) if is_there(path) else None


def _evaluation(path: Path, within: Path | None = None) -> tuple[dict | None, str | None]:
    """``(eval.json, None)``, ``(None, None)`` when absent, or ``(None, why)`` when it cannot
    be read or is not what ``jaxmlp eval`` writes: the rest of the page still shows."""
    try:
        report = _optional_json(path, within)
    except RunError as e:
        return None, str(e)
    if report is None:
        return None, None
    if not _is_evaluation(report):  # the message never quotes what the file holds
        return None, (f"{path} is not jaxmlp eval's output (needs {', '.join(_EVAL_KEYS)}): "
                      "run jaxmlp eval again")
    return report, None


def _pictures(root: Path, folder: Path) -> list[str]:
    """The pictures of ``folder`` that ``/files/`` serves: exactly those ``read_png`` reads."""
    return [n for n in PICTURES if read_png(root, folder / n, whole=False)]


def describe_run(root: Path, folder: Path) -> dict:
    """One row of the runs page: what the run is, how far it is, how good it got; or, for a
    run whose files cannot be read, what is wrong, so the other rows still show."""
    rel = page_name(root, folder)
    sweep = is_sweep(folder)
    times = []
    for name in (METRICS, SWEEP, CONFIG):
        try:
            times.append((folder / name).lstat().st_mtime)
        except OSError:  # absent, or replaced this very moment
            pass
    row = {"path": rel, "kind": "sweep" if sweep else "run", "modified": max(times, default=0)}
    try:
        return {**row, **_progress(folder, sweep)}
    except RunError as e:
        return {**row, "error": str(e)}
    except Exception as e:  # a file no reader foresaw: a bug to report, but only this row's
        print(f"jaxmlp serve: {folder}: {type(e).__name__}: {e}"[:300], file=sys.stderr)
        return {**row, "error": f"cannot show the run in {folder} ({type(e).__name__}; "
                                "jaxmlp serve's console says more)"}


def _progress(folder: Path, sweep: bool) -> dict:
    """What a row says of a readable run: settings, size, epochs and steps done, the
    accuracies of the model the folder holds, training time (``jaxmlp runs`` prints the
    same rows). That model: a run's last epoch (with ``keep_best``, its best); a sweep's
    best setting's ensemble, once ``summary.json`` names it (before: the mean of the last
    epoch's live models). Never the best test figure of any epoch: the test set chooses
    nothing."""
    if sweep:
        config, grid, _, info = read_sweep_with_info(folder)
        count = len(grid.configs(config))
        row: dict = {"models": count, "lr": sorted(set(grid.lrs))}
        history = read_history(folder, models=count)
        summary_json = _optional_json(folder / SUMMARY, within=folder)
        best = summary_json.get("best") if isinstance(summary_json, dict) else None
        if isinstance(best, dict):
            test, val = best.get("ensemble_test_acc"), best.get("ensemble_val_acc")
        else:
            live = [m for m in (history[-1]["models"] if history else []) if not m.get("diverged")]
            test, val = (_mean(m.get(k) for m in live) for k in ("test_acc", "val_acc"))
        in_dim: int | None = info.in_dim
    else:
        config = config_of(folder / CONFIG)
        row = {"lr": [config.lr]}
        history = read_history(folder)
        kept = (best_epoch(history, config.keep_best) if config.keep_best and history
                else history[-1] if history else {})
        test, val = kept.get("test_acc"), kept.get("val_acc")
        model = folder / MODEL  # (its input width: the dataset's, once the model is saved)
        in_dim = read_model_info(model)[1].in_dim if _regular_file(model) else None
    seconds = sum(h[k] for h in history
                  for k in ("epoch_seconds", "eval_seconds", "compile_seconds")
                  if _is_number(h.get(k)))
    return {**row, "dataset": config.dataset, "arch": config.arch,
            "params": summary(config.layers, in_dim).params if in_dim else None,
            "optimizer": config.optimizer,
            "epochs": history[-1]["epoch"] if history else 0,
            "planned_epochs": None if config.steps else config.epochs,
            "planned_steps": config.steps, "step": history[-1]["step"] if history else 0,
            "test_acc": test if _is_number(test) else None,
            "val_acc": val if _is_number(val) else None,
            "seconds": round(seconds, 1) if history else None}


def _mean(values) -> float | None:
    values = [v for v in values if _is_number(v)]
    return sum(values) / len(values) if values else None


def _model_table(config, in_dim: int | None) -> dict | None:
    """``jaxmlp.summary`` as the page shows it: one row per layer, and the totals."""
    if in_dim is None:
        return None
    table = summary(config.layers, in_dim)
    return {"in_dim": in_dim, "params": table.params, "multiply_adds": table.multiply_adds,
            "layers": [{"units": units, "activation": activation, "weights": list(shape),
                        "params": params, "multiply_adds": madds}
                       for _, units, activation, shape, params, madds in table.rows]}


def run_view(root: Path, folder: Path) -> dict:
    """A run's page: its settings, every epoch's record, and ``jaxmlp eval``'s results."""
    rel = page_name(root, folder)
    if is_sweep(folder):
        config, grid, order, info = read_sweep_with_info(folder)
        models = [{"index": i, "seed": c.seed, "lr": c.lr, "momentum": c.momentum}
                  for i, c in enumerate(grid.configs(config))]
        settings: list[dict] = []
        for m in models:
            last = settings[-1] if settings else None
            if last is None or (last["lr"], last["momentum"]) != (m["lr"], m["momentum"]):
                settings.append({"lr": m["lr"], "momentum": m["momentum"], "models": []})
            settings[-1]["models"].append(m["index"])
        evaluations, errors, pictures = {}, {}, {}
        for m in models:
            where = folder / MODELS / str(m["index"])
            report, error = _evaluation(where / EVAL, within=folder)
            if report or error:
                evaluations[str(m["index"])], errors[str(m["index"])] = report, error
                pictures[str(m["index"])] = _pictures(root, where)
        return {"path": rel, "kind": "sweep", "config": config.record(),
                "grid": grid._asdict(), "order": order, "dataset": info._asdict(),
                "models": models, "settings": settings,
                "history": read_history(folder, models=len(models)),
                "summary": _optional_json(folder / SUMMARY),  # written at the end
                "evaluations": evaluations, "evaluation_errors": errors,
                "model_pictures": pictures, "pictures": _pictures(root, folder),
                "model": _model_table(config, info.in_dim)}
    config = config_of(folder / CONFIG)
    model = folder / MODEL
    in_dim = read_model_info(model)[1].in_dim if _regular_file(model) else None
    evaluation, error = _evaluation(folder / EVAL)
    return {"path": rel, "kind": "run", "config": config.record(),
            "history": read_history(folder), "evaluation": evaluation,
            "evaluation_error": error, "has_model": _regular_file(folder / MODEL),
            "pictures": _pictures(root, folder), "model": _model_table(config, in_dim)}


def model_json(arch, params, info, version: str) -> dict:
    """The weights for the page's forward pass: float32, little-endian, base64; ``version``
    changes when the run saves new weights (the page then fetches them again)."""
    import numpy as np

    from jaxmlp._predict import digit_pipeline

    def b64(a):
        return base64.b64encode(np.ascontiguousarray(a, "<f4").tobytes()).decode()

    return {"version": version, "arch": [{"units": u, "activation": a} for u, a in arch],
            "dataset": info.name, "image_shape": list(info.image_shape),
            "in_dim": info.in_dim, "digits": digit_pipeline(info),
            "layers": [{"w": b64(p["w"]), "b": b64(p["b"]), "shape": list(np.shape(p["w"]))}
                       for p in params]}


def predict_json(arch, params, info, version: str, body: bytes) -> dict:
    """``jaxmlp.predict`` on the request's pixels: what the page checks itself against."""
    import numpy as np

    from jaxmlp._predict import predict, top_k

    try:
        request = json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise BadRequest(f"the body is not JSON ({str(e)[:120]})") from None
    pixels = request.get("pixels") if isinstance(request, dict) else None
    n = info.in_dim
    if not (isinstance(pixels, list) and len(pixels) == n
            and all(type(v) is int and 0 <= v <= 255 for v in pixels)):
        raise BadRequest(f'expected {{"pixels": [...]}}: {n} grey levels, integers in '
                         "0..255, row by row (as the page's 28×28 input)")
    probs = predict(params, np.asarray(pixels, np.uint8)[None], arch,
                    image_shape=info.image_shape)
    return {"version": version, "probs": probs[0].tolist(),
            "top3": [{"class": c, "prob": p} for c, p in top_k(probs, 3)[0]]}
