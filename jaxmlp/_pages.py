"""What ``jaxmlp serve``'s page is told, as JSON-ready dicts: each run's row of the runs
page, a run's or a sweep's view, a model's weights, and ``jaxmlp.predict`` on a drawing.

Run files are read through ``jaxmlp.run``'s readers only, and never a run's lock.
"""
import base64
import dataclasses
import hashlib
import json
import os
from pathlib import Path

from jaxmlp.run import (CONFIG, EVAL, METRICS, MODEL, MODELS, SUMMARY, SWEEP, RunError,
                        _config_of, _read_history, _read_json, _read_sweep, _read_sweep_info)

_PICTURES = ("curves.png", "confusion.png", "mistakes.png", "weights.png")
_DEPTH = 4  # how deep under the root runs are looked for (runs/records/simard2003 is 2)


class _BadRequest(ValueError):
    """A request that cannot be answered as it stands; the message says what was expected."""


def _stamp(*paths: Path) -> str:
    """A version of the files ``paths``: changes whenever one is written (they are replaced
    whole, by rename, so a new inode or time or size)."""
    parts = []
    for p in paths:
        try:
            st = p.stat()
            parts.append(f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append("-")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def _find_runs(root: Path) -> list[Path]:
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


# What a page needs of eval.json, and the type of each.
_EVAL_KEYS = {"test_acc": (int, float), "test_loss": (int, float), "per_class_acc": list,
              "confusion": list, "mistakes": list}


def _rel(root: Path, folder: Path) -> str:
    """How the page names ``folder``: relative to the served root (``"."``: the root)."""
    return folder.relative_to(root).as_posix() or "."


def _optional_json(path: Path):
    """``path``'s JSON, or None while it is not written (``RunError`` if it cannot be read)."""
    return _read_json(path) if path.exists() or path.is_symlink() else None


def _evaluation(path: Path) -> tuple[dict | None, str | None]:
    """``(eval.json, None)``, ``(None, None)`` when absent, or ``(None, why)`` when it cannot
    be read or is not what ``jaxmlp eval`` writes: the rest of the page still shows."""
    try:
        report = _optional_json(path)
    except RunError as e:
        return None, str(e)
    if report is None:
        return None, None
    if not (isinstance(report, dict) and all(isinstance(report.get(k), t) for k, t in _EVAL_KEYS.items())
            and all(isinstance(row, list) for row in report["confusion"])):
        return None, (f"{path} is not jaxmlp eval's output (needs {', '.join(_EVAL_KEYS)}): "
                      "run jaxmlp eval again")
    return report, None


def _pictures(folder: Path) -> list[str]:
    return [n for n in _PICTURES if (folder / n).is_file()]


def _best(values) -> float | None:
    values = [v for v in values if isinstance(v, (int, float))]
    return max(values) if values else None


def _describe(root: Path, folder: Path) -> dict:
    """One row of the runs page: what the run is, how far it is, how good it got."""
    rel = _rel(root, folder)
    sweep = (folder / SWEEP).exists()
    times = []
    for name in (METRICS, SWEEP, CONFIG):
        try:
            times.append((folder / name).stat().st_mtime)
        except OSError:  # absent, or replaced this very moment
            pass
    row = {"path": rel, "kind": "sweep" if sweep else "run", "modified": max(times, default=0)}
    try:
        history = _read_history(folder)
        if sweep:
            config, grid, _ = _read_sweep(folder)
            records = [m for h in history for m in h["models"] if not m.get("diverged")]
            row["models"] = len(grid.configs(config))
        else:
            config, records = _config_of(folder / CONFIG), history
    except RunError as e:
        return {**row, "error": str(e)}
    return {**row, "dataset": config.dataset, "arch": config.arch,
            "epochs": history[-1]["epoch"] if history else 0, "planned_epochs": config.epochs,
            "planned_steps": config.steps, "step": history[-1]["step"] if history else 0,
            "best_test_acc": _best(r.get("test_acc") for r in records),
            "best_val_acc": _best(r.get("val_acc") for r in records)}


def _run_view(root: Path, folder: Path) -> dict:
    """A run's page: its settings, every epoch's record, and ``jaxmlp eval``'s results."""
    rel = _rel(root, folder)
    if (folder / SWEEP).exists():
        config, grid, order = _read_sweep(folder)
        info = _read_sweep_info(folder)
        models = [{"index": i, "seed": c.seed, "lr": c.lr, "momentum": c.momentum}
                  for i, c in enumerate(grid.configs(config))]
        settings = []
        for m in models:
            if not settings or (settings[-1]["lr"], settings[-1]["momentum"]) != (m["lr"], m["momentum"]):
                settings.append({"lr": m["lr"], "momentum": m["momentum"], "models": []})
            settings[-1]["models"].append(m["index"])
        evaluations, errors, pictures = {}, {}, {}
        for m in models:
            where = folder / MODELS / str(m["index"])
            report, error = _evaluation(where / EVAL)
            if report or error:
                evaluations[str(m["index"])], errors[str(m["index"])] = report, error
                pictures[str(m["index"])] = _pictures(where)
        return {"path": rel, "kind": "sweep", "config": dataclasses.asdict(config),
                "grid": grid._asdict(), "order": order, "dataset": info._asdict(),
                "models": models, "settings": settings, "history": _read_history(folder),
                "summary": _optional_json(folder / SUMMARY),  # written at the end
                "evaluations": evaluations, "evaluation_errors": errors,
                "model_pictures": pictures, "pictures": _pictures(folder)}
    config = _config_of(folder / CONFIG)
    evaluation, error = _evaluation(folder / EVAL)
    return {"path": rel, "kind": "run", "config": dataclasses.asdict(config),
            "history": _read_history(folder), "evaluation": evaluation,
            "evaluation_error": error, "has_model": (folder / MODEL).is_file(),
            "pictures": _pictures(folder)}


def _model_json(arch, params, info, version: str) -> dict:
    """The weights for the page's forward pass: float32, little-endian, base64; ``version``
    changes when the run saves new weights (the page then fetches them again)."""
    import numpy as np

    from jaxmlp.predict import _digit_pipeline

    def b64(a):
        return base64.b64encode(np.ascontiguousarray(a, "<f4").tobytes()).decode()

    return {"version": version, "arch": [{"units": u, "activation": a} for u, a in arch],
            "dataset": info.name, "image_shape": list(info.image_shape),
            "in_dim": info.in_dim, "digits": _digit_pipeline(info),
            "layers": [{"w": b64(p["w"]), "b": b64(p["b"]), "shape": list(np.shape(p["w"]))}
                       for p in params]}


def _predict_json(arch, params, info, version: str, body: bytes) -> dict:
    """``jaxmlp.predict`` on the request's pixels: what the page checks itself against."""
    import numpy as np

    from jaxmlp.predict import predict, top_k

    try:
        request = json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise _BadRequest(f"the body is not JSON ({str(e)[:120]})") from None
    pixels = request.get("pixels") if isinstance(request, dict) else None
    n = info.in_dim
    if not (isinstance(pixels, list) and len(pixels) == n
            and all(type(v) is int and 0 <= v <= 255 for v in pixels)):
        raise _BadRequest(f'expected {{"pixels": [...]}}: {n} grey levels, integers in '
                         "0..255, row by row (as the page's 28×28 input)")
    probs = predict(params, np.asarray(pixels, np.uint8)[None], arch,
                    image_shape=info.image_shape)
    return {"version": version, "probs": probs[0].tolist(),
            "top3": [{"class": c, "prob": p} for c, p in top_k(probs, 3)[0]]}
