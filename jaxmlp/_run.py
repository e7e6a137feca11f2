"""The run folder: the only code that reads or writes a run's files.

A run folder holds ``config.json`` (the ``TrainConfig``), ``metrics.jsonl`` (one line per
epoch), ``checkpoint.npz`` (params, optimizer state, step and data key, to resume),
``model.npz`` (params, architecture and the dataset's image shape: all that using the
model needs), ``curves.png``
and, after ``jaxmlp eval``, ``eval.json``, ``confusion.png``, ``mistakes.png`` and
``weights.png``. Every file is written whole to a temporary file and renamed over the old
one, so a crash leaves the old file or the new, never a torn one.

Safety rules: a folder that holds a run is never written without ``resume`` or
``overwrite``; a writer holds ``.lock`` (``flock``: released by the OS if the process dies,
so a lock left by a killed run is stale and taken over); a start that fails changes
nothing on disk (the folder is removed again if this run created it, and an overwritten
run's files go only when the new run saves its first epoch).
"""
import dataclasses
import errno
import fcntl
import json
import math
import os
import shutil
from pathlib import Path
from typing import NamedTuple, Optional

import jax
import numpy as np

from jaxmlp import _checks
from jaxmlp._errors import RunError, without_value
from jaxmlp._files import read_bytes
from jaxmlp._arch import MAX_UNITS, Arch, parse_arch, weight_shapes
from jaxmlp._checkpoint import (Npz, expect_exactly, expect_floats, expect_text, leaf_name,
                                load_checkpoint, save_checkpoint, save_npz_atomic, write_atomic)
from jaxmlp._config import ORDERS, RESUMABLE, Grid, TrainConfig
from jaxmlp._data import MAX_NAME, MNIST, Dataset, DatasetInfo, check_name
from jaxmlp._optim import ema_path, make_optimizer
from jaxmlp._images import check_image_shape

CONFIG, METRICS, CHECKPOINT, MODEL = "config.json", "metrics.jsonl", "checkpoint.npz", "model.npz"
CURVES, EVAL = "curves.png", "eval.json"
_EVAL_PLOTS = ("confusion.png", "mistakes.png", "weights.png")
SWEEP, SUMMARY, MODELS = "sweep.json", "summary.json", "models"  # a sweep's (jaxmlp._sweep)
_RUN_FILES = (CONFIG, METRICS, CHECKPOINT, MODEL, CURVES, EVAL, *_EVAL_PLOTS, SWEEP, SUMMARY,
             MODELS)
_LOCK = ".lock"


class RunWriteError(OSError):
    """Writing a run's file failed (disk full, file too large, permissions)."""


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode()))


def _write_json(path: Path, obj) -> None:
    _write_text(path, json.dumps(obj, indent=1) + "\n")


def _write_jsonl(path: Path, records: list[dict]) -> None:
    """One JSON object per line, the whole file at once (``write_atomic``)."""
    _write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def _remove(path: Path) -> None:
    """Removes a run's file or folder; a symbolic link goes itself, never what it points at."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# The most a run's JSON file may hold: a sweep of 1,000 models logs about 150 kB an epoch,
# so 256 MiB is over a thousand such epochs; anything larger was not written by jaxmlp.
_MAX_JSON = 256 << 20


def is_sweep(folder) -> bool:
    """Whether ``folder`` holds a sweep (``sweep.json``, even a link: its reader refuses
    that) rather than a single run."""
    return os.path.lexists(Path(folder) / SWEEP)


def _read_text(path: Path, within=None) -> str:
    """``path``'s text, read as ``jaxmlp._files`` opens run files: never through a link,
    regular files only, at most ``_MAX_JSON`` bytes. ``RunError`` names what is wrong;
    ``FileNotFoundError`` when absent."""
    data = read_bytes(path, limit=_MAX_JSON, what="a jaxmlp run file", within=within)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise RunError(f"cannot read {path}: it is not UTF-8 text") from None


def read_json(path: Path, within=None):
    """``path``'s JSON (``_read_text``'s rules); ``RunError`` names the file and the line of
    a syntax error, never what the file holds."""
    try:
        text = _read_text(path, within)
    except FileNotFoundError:
        raise RunError(f"no file {path}") from None
    return _loads(text, str(path))


def _loads(text: str, where: str):
    """JSON ``text`` from ``where`` (a file, or its line N); ``RunError`` says why not."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        at = f"line {e.lineno}: " if "line" not in where else ""
        raise RunError(f"{where} is not valid JSON ({at}{e.msg})") from None
    except RecursionError:
        raise RunError(f"{where} is nested too deeply to be a jaxmlp file") from None
    except ValueError:  # an integer past Python's 4,300 digits
        raise RunError(f"{where} holds a number too long to be jaxmlp's") from None


def read_config(folder) -> TrainConfig:
    """The ``TrainConfig`` saved in ``folder/config.json``; ``RunError`` names what is wrong."""
    path = Path(folder) / CONFIG
    if not os.path.lexists(path):
        if not Path(folder).is_dir():
            raise RunError(f"no run folder at {str(folder) or repr(str(folder))}")
        if _holder(Path(folder)):  # a new run still in its first epoch
            _lock(Path(folder))  # raises the "in use" error
        raise RunError(f"{folder} is not a run folder: it has no {CONFIG}"
                       + _what_it_is(Path(folder)))
    return config_of(path)


def _what_it_is(folder: Path) -> str:
    """A hint for a folder given where a single run was expected: a sweep, or a folder of
    runs (a look at its subfolders only; nothing when it cannot be listed)."""
    if os.path.lexists(folder / SWEEP):
        return " (it holds a sweep: `jaxmlp sweep --resume`, `load_run(folder, model=i)`)"
    try:
        runs = any((p / CONFIG).exists() or (p / SWEEP).exists()
                   for p in folder.iterdir() if p.is_dir())
    except OSError:
        return ""
    return " (a folder of runs: `jaxmlp runs` lists them)" if runs else ""


def config_of(path: Path) -> TrainConfig:
    """The ``TrainConfig`` in the file ``path``: read only, never locking (``jaxmlp serve``)."""
    values = read_json(path)
    try:
        return TrainConfig.from_dict(values)  # checked as it is built
    except (TypeError, ValueError) as e:  # the rule broken, never the value that broke it
        raise RunError(f"{path}: {without_value(e, 'holds settings jaxmlp cannot use')}") from None


_RECORD_KEYS = ("train_loss", "train_acc", "test_loss", "test_acc")  # a single run's epoch line


def read_history(folder, models: Optional[int] = None) -> list[dict]:
    """The records of ``folder/metrics.jsonl`` (none if it is absent); ``RunError`` names a
    line that is not an epoch record. A sweep's lines hold ``models`` instead of metrics:
    a list of one record (an object) per model, ``models`` of them when that is given (the
    sweep's grid size)."""
    path = Path(folder) / METRICS
    try:
        lines = _read_text(path).splitlines()
    except FileNotFoundError:
        return []
    sweep = is_sweep(folder)
    keys = ("epoch", "step", *(("models",) if sweep else _RECORD_KEYS))
    history = []
    for i, line in enumerate(lines, 1):
        record = _loads(line, f"{path} line {i}")
        if not (isinstance(record, dict) and all(k in record for k in keys)
                and _count(record["epoch"]) and _count(record["step"])
                and (sweep or _valid_metrics(record))):
            raise RunError(f"{path} line {i} is not an epoch record (needs {', '.join(keys)}: "
                           "an epoch and step from 1 to 2**31-1, and numbers)")
        if sweep and not (isinstance(record["models"], list)
                          and all(_model_record(m) for m in record["models"])
                          and len(record["models"]) == (models or len(record["models"]) or 1)):
            count = f"{models} " if models else ""
            raise RunError(f"{path} line {i} is not a sweep's epoch record (its models must be a "
                           f"list of {count}records, one per model)")
        history.append(record)
    return history


def _count(value) -> bool:
    """An epoch or step number: an int from 1 to 2**31 - 1 (the step counter is int32)."""
    return type(value) is int and 1 <= value < 2 ** 31


def best_epoch(history: list, metric: str) -> dict:
    """The record of ``history`` best by ``metric``: the highest ``val_acc``, or the lowest
    ``val_loss``; of equals, the earliest (a later epoch must be better to be chosen)."""
    sign = -1 if metric.endswith("_loss") else 1
    best = history[0]
    for record in history[1:]:
        if sign * record[metric] > sign * best[metric]:
            best = record
    return best


def _valid_metrics(record: dict, nullable: bool = False) -> bool:
    """Whether ``record``'s metrics (the ``_RECORD_KEYS`` it holds, ``val_*`` too) are
    numbers (``nullable``: or None, as for a diverged model of a sweep)."""
    number = lambda v: (type(v) in (int, float) and math.isfinite(v)) or (nullable and v is None)
    return all(number(v) for k, v in record.items() if k.endswith(("_loss", "_acc")))


def _model_record(m) -> bool:
    """One model's record in a sweep's epoch line: its test metrics (numbers, or None
    where it diverged) and whether it diverged."""
    return (isinstance(m, dict) and "test_acc" in m and "test_loss" in m
            and type(m.get("diverged", False)) is bool and _valid_metrics(m, nullable=True))


def history_to(folder, done: int, models: Optional[int] = None) -> list[dict]:
    """The records a resume from a checkpoint at step ``done`` continues: those up to it
    (an epoch lost between the two renames is dropped). The checkpoint's own epoch must be
    there: its metrics are written before it, so a run whose records end elsewhere, or that
    has none, is not one run's files."""
    history = [h for h in read_history(folder, models) if h["step"] <= done]
    if not history or history[-1]["step"] != done:
        raise RunError(f"{Path(folder) / METRICS} has no record of step {done}, where "
                       f"{CHECKPOINT} was saved: not one run's files (restore both, or start "
                       "a new run)")
    return history


def _holder(folder: Path) -> bool:
    """Whether another process holds ``folder``'s lock right now (not this one: a run that
    holds its folder reads the folder's files under its own lock)."""
    try:
        fd = os.open(folder / _LOCK, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return os.read(fd, 64).decode(errors="replace").strip() != str(os.getpid())
    finally:
        os.close(fd)


def _lock(folder: Path) -> int:
    """Takes ``folder/.lock`` for this process; ``RunError`` if another one holds it."""
    path = folder / _LOCK
    while True:
        try:  # O_NOFOLLOW: a link planted as .lock must not make us write where it points
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError:
            if not path.is_symlink():
                raise
            raise RunError(f"{path} is a symbolic link, not jaxmlp's lock file: jaxmlp writes "
                           "nothing outside a run folder; remove the link") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunError(f"{folder} is in use by another jaxmlp process (pid {holder}): wait "
                           "for it to finish, or choose another folder") from None
        # The holder may have unlinked the file between our open and flock: lock the file
        # that is there now, not an orphan.
        if os.path.exists(path) and os.fstat(fd).st_ino == os.stat(path).st_ino:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)


class RunFolder:
    """A run folder held for writing; use as a context manager (``RunFolder.open``).

    Attributes:
      path: the folder.
      saved: whether this run has saved an epoch into it yet.
    """

    _lock_fd: Optional[int]  # the folder's lock, None once released

    def __init__(self, path: Path, *, created: list[Path], replace: bool, resume: bool,
                 lock_fd: int):
        self.path, self._created, self._replace, self._lock_fd = path, created, replace, lock_fd
        self.saved = False
        self._written: set = set()  # a new run's files, removed again if no save completed
        self._resume = resume

    @classmethod
    def open(cls, path, *, resume: bool = False, overwrite: bool = False) -> "RunFolder":
        """Claims ``path`` for a new run, a resumed one (``resume``) or a replacement.

        Raises:
          RunError: ``path`` is a file, cannot be created, holds a run that neither
            ``resume`` nor ``overwrite`` allows writing, holds none to resume, or is
            in use by another process.
        """
        path = Path(path)
        if resume and overwrite:
            raise RunError("`resume` and `overwrite` exclude each other")
        if os.path.exists(path) and not path.is_dir():  # (os.path: a name too long is no error)
            raise RunError(f"{path} is a file, not a run folder: choose another `out`")
        if path.is_symlink() and not path.exists():  # mkdir would say only "File exists"
            raise RunError(f"{path} is a symbolic link to {os.readlink(path)}, which does not "
                           "exist: create that folder, or choose another `out`")
        if resume and not (os.path.lexists(path / CONFIG) or os.path.lexists(path / SWEEP)):
            raise RunError(f"cannot resume {path}: " + (f"it has no {CONFIG} (is it a run folder?)"
                                                      if path.is_dir() else "no such folder"))
        created = [p for p in (path, *path.parents) if not os.path.lexists(p)]  # leaf first
        lock_fd = None
        try:  # BaseException too: Ctrl-C or SIGTERM here must not leave a folder with a lock
            try:
                path.mkdir(parents=True, exist_ok=True)
                lock_fd = _lock(path)
            except OSError as e:
                raise RunWriteError(e.errno, f"cannot write to {path}: {e.strerror or e}"
                                     ) from None
            # Checked under the lock: a run that another process finished a moment ago counts.
            holds = [f for f in _RUN_FILES if os.path.lexists(path / f)]
            if holds and not (resume or overwrite):
                kind = "a sweep" if SWEEP in holds else "a run"
                raise RunError(f"{path} already holds {kind} ({', '.join(holds)}): resume it with "
                               f"`resume` {path}, replace it with `overwrite`, or choose another "
                               "`out`")
            return cls(path, created=created, replace=overwrite, resume=resume, lock_fd=lock_fd)
        except BaseException:
            if lock_fd is not None:
                os.unlink(path / _LOCK)
                os.close(lock_fd)
            _remove_empty(created)
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Releases the lock; removes the folder again if this run created it and saved nothing."""
        if self._lock_fd is None:
            return
        try:
            os.unlink(self.path / _LOCK)
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None
        if not self.saved:  # a start that failed leaves the folder as it found it
            for name in self._written:
                _remove(self.path / name)
            _remove_empty(self._created)

    def _write(self, name: str, write, folder: Optional[Path] = None) -> None:
        path = (folder or self.path) / name
        try:
            # Files are replaced by rename, which replaces a link, not its target; a folder
            # on the way that is a link would lead outside the run folder: refused.
            for inner in path.parents:
                if inner == self.path:
                    break
                if inner.is_symlink():
                    raise OSError(errno.ELOOP, f"{inner} is a symbolic link (jaxmlp writes "
                                               "nothing outside a run folder)")
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
        except OSError as e:
            raise RunWriteError(e.errno, f"cannot write {self.path / name}: "
                                f"{e.strerror or e}") from None

    def save(self, files: dict) -> None:
        """Writes ``files`` (``{name: write(path)}``, names relative to the folder) as one save,
        all or nothing: each file is written whole beside its place first, and only when
        every one is complete are they renamed into place, in the order given (so a crash
        between two renames leaves the earlier files newer: callers put metrics first and
        the settings, ``config.json`` or ``sweep.json``, last).

        Replacing a run, the first save is written beside it (``.new/``) and moved in
        only once every file is complete: a failure leaves the old run whole.
        """
        staging = self.path / ".new" if self._replace and not self.saved else self.path
        if staging != self.path:
            _remove(staging)  # a crashed replacement's leftovers, or a planted link
        if not self.saved and not self._resume and staging == self.path:
            self._written = {name.split("/")[0] for name in files}  # a new run's, nobody else's
        written = []  # (finished file, its place), renamed into place once all are written
        try:
            for name, write in files.items():
                place = staging / name
                ready = place.with_name(f".{place.name}.saving")
                self._write(name, lambda _, write=write, ready=ready: write(ready), staging)
                written.append((ready, place))
            for ready, place in written:
                os.replace(ready, place)
            written = []
            if not self.saved and self._resume and CHECKPOINT in files:
                # The run moved on: the evaluation of its old model no longer describes it.
                for name in (EVAL, *_EVAL_PLOTS, MODELS):
                    _remove(self.path / name)
            if staging != self.path:
                for name in _RUN_FILES:  # the old run goes now, whole
                    _remove(self.path / name)
                    if (staging / name).exists():
                        os.replace(staging / name, self.path / name)
        finally:
            for ready, _ in written:  # a failed save: what it wrote goes, the old files stay
                ready.unlink(missing_ok=True)
            if staging != self.path:
                shutil.rmtree(staging, ignore_errors=True)
        self.saved = True

    def save_epoch(self, config: TrainConfig, state: dict, history: list[dict],
                   info: DatasetInfo, model=None, keep_model: bool = True) -> None:
        """Saves an epoch, all or nothing (``save``): metrics first, then checkpoint and
        model, so that a crash between the renames leaves a checkpoint no newer than the
        metrics (resume redoes that epoch), and the settings last. ``model``: the params
        ``model.npz`` holds, when not the checkpoint's (``--ema``: their average);
        ``keep_model`` False leaves ``model.npz`` as it is (``--keep-best``: a better epoch's)."""
        model = state["params"] if model is None else model
        files = {METRICS: lambda p: _write_jsonl(p, history),
                 CHECKPOINT: lambda p: save_checkpoint(p, state)}
        if keep_model:
            files[MODEL] = lambda p: _save_model(p, model, config.arch, info)
        if not self.saved:  # last: the settings never run ahead of the model they describe
            files[CONFIG] = lambda p: _write_json(p, config.record())
        self.save(files)

    def save_sweep_epoch(self, config: TrainConfig, grid: Grid, order: str, state: dict,
                         history: list[dict], info: DatasetInfo) -> None:
        """A sweep's epoch, all or nothing: metrics, the stacked checkpoint, then (once)
        ``sweep.json``, last, so the settings never run ahead of the models."""
        files = {METRICS: lambda p: _write_jsonl(p, history),
                 CHECKPOINT: lambda p: save_checkpoint(p, state)}
        if not self.saved:
            meta = {"config": config.record(), "seeds": list(grid.seeds),
                    "lrs": list(grid.lrs), "momenta": list(grid.momenta), "order": order,
                    "dataset": {"name": info.name, "image_shape": list(info.image_shape),
                                "num_classes": info.num_classes}}
            files[SWEEP] = lambda p: _write_json(p, meta)
        self.save(files)

    def save_summary(self, summary: dict, history: list[dict], grid: Grid) -> None:
        """A sweep's ``summary.json`` and its ``curves.png`` (every model, mean ± std)."""
        from jaxmlp._plot import plot_sweep

        self.save({SUMMARY: lambda p: _write_json(p, summary),
                   CURVES: lambda p: plot_sweep(history, grid, p)})

    def save_evaluation(self, report: dict, plots: dict, where: str = "") -> None:
        """``eval.json`` from ``report``, and each ``plots[name](path)`` drawn to ``name``,
        all in the subfolder ``where`` (``"models/3/"``; the run folder itself by default)."""
        self._write(where + EVAL, lambda p: _write_json(p, report))
        for name, draw in plots.items():
            self._write(where + name, draw)

    def plot(self, history: list[dict], title: str) -> None:
        """``curves.png`` from the records of finished epochs."""
        from jaxmlp._plot import plot_history

        if history:
            self._write(CURVES, lambda p: plot_history(history, p, title=title))


def check_new_file(path, *, overwrite: bool = False) -> Path:
    """``RunError`` unless ``write_new_file`` may write ``path``: it names a file, not a
    folder, nothing is there unless ``overwrite`` (a link there counts: it would be
    replaced, never followed), no folder above it is a file, and none is a run's or a
    sweep's folder. Checked before any work, so a refusal costs nothing."""
    _checks.path(path, "path", "a file to write")
    _checks.flag(overwrite, "overwrite")
    text = str(path)  # as given: Path("sub/") would drop the "/" that says "a folder"
    path = Path(path)
    if not text.strip() or text.endswith(("/", os.sep)) or path.name in ("", ".", ".."):
        raise RunError(f"{text!r} names no file to write")
    if os.path.lexists(path):
        if path.is_dir() and not path.is_symlink():
            raise RunError(f"{path} is a folder, not a file to write")
        if not overwrite:
            what = ("a symbolic link" if path.is_symlink() else "a file" if path.is_file()
                    else "something other than a file")
            raise RunError(f"{path} exists ({what}): pass `overwrite` to replace it, or "
                           "choose another name")
    for folder in path.absolute().parents:
        if os.path.lexists(folder) and not folder.is_dir():
            raise RunError(f"{folder} is not a folder: {path} cannot be written there")
        if (folder / CONFIG).is_file() or os.path.lexists(folder / SWEEP):
            # A run's files change only through its RunFolder (locked, atomic, checked).
            raise RunError(f"{path} is inside the run folder {folder}: write it elsewhere")
    return path


def write_new_file(path, write, *, overwrite: bool = False) -> None:
    """Writes one file outside any run folder (``jaxmlp augment --out``) by a run folder's
    rules (``check_new_file``): the file is whole or absent (``write(path)`` writes it
    through ``write_atomic``), a link is replaced by rename, never followed, and a failed
    write leaves no folder this call made.

    Raises:
      RunError: see ``check_new_file``.
      RunWriteError: the write failed (the message names ``path``).
    """
    path = check_new_file(path, overwrite=overwrite)
    created = [p for p in path.parents if not os.path.lexists(p)]  # leaf first
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
    except OSError as e:
        _remove_empty(created)
        raise RunWriteError(e.errno, f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        _remove_empty(created)
        raise


def what_is_kept(folder: Path, saved_step) -> str:
    """What a run that failed leaves in ``folder``: its last checkpoint, or nothing."""
    if saved_step is None:
        return "no epoch had finished, so nothing was saved"
    return f"the last good checkpoint (step {saved_step}) is kept in {folder}"


def _remove_empty(folders: list[Path]) -> None:
    """Removes the folders this run created (leaf first), as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return  # not empty: someone else's files are there, keep them
            # never made (a name too long, a parent that failed first): on to its parent


def read_checkpoint(folder, template) -> dict:
    """The checkpoint state of ``folder``, shaped like ``template``; ``RunError`` if unusable."""
    path = Path(folder) / CHECKPOINT
    try:
        state = load_checkpoint(path, template)
    except FileNotFoundError:
        raise RunError(f"{folder} has no {CHECKPOINT} to resume from (did its first epoch "
                       "finish?)") from None
    except ValueError as e:
        raise RunError(str(e)) from None
    if "step" in state and not 1 <= int(state["step"]) < 2 ** 31:  # saved after a step
        raise RunError(f"{path}: its step is not a step a run saves (1 to 2**31-1)")
    return state


def check_resume(folder, config: TrainConfig, grid: Optional[Grid], order: str) -> TrainConfig:
    """The config saved in ``folder``, once ``config`` (a sweep's with its ``grid`` and
    ``order``, which never change; ``grid`` None: a single run) is known to continue that
    run (``_check_same_run``); ``ValueError`` (``RunError`` for the folder's files) naming
    what may not change."""
    if grid is None:
        saved = read_config(folder)
    else:
        saved, saved_grid, saved_order = read_sweep(folder)
        if (saved_grid, saved_order) != (grid, order):
            raise ValueError("`resume` cannot change the grid (`seeds`, `lrs`, `momenta`) or "
                             "`order` of a sweep")
    _check_same_run(saved, config)
    return saved


def _check_same_run(saved: TrainConfig, new: TrainConfig) -> None:
    """Raises ``ValueError`` unless ``new`` may continue the run ``saved``: only
    ``RESUMABLE`` settings change (``"b"`` and its spec are one arch), and the length keeps
    its unit (a run counted in epochs is extended with ``epochs``, one in steps with
    ``steps``)."""
    same = lambda name: (saved.layers == new.layers if name == "arch"
                         else getattr(saved, name) == getattr(new, name))
    changed = [f.name for f in dataclasses.fields(TrainConfig)
               if f.name not in RESUMABLE and not same(f.name)]
    if changed:
        raise ValueError(f"`resume` cannot change {', '.join(f'`{c}`' for c in changed)}: the run "
                         "would no longer be the same run (start a new one with `out`)")
    if saved.steps is None and new.steps is not None:
        raise ValueError(f"this run is counted in epochs (`epochs` {saved.epochs}); extend it "
                         "with `epochs`, not `steps`")
    if saved.steps is not None and new.epochs != saved.epochs:
        raise ValueError(f"this run is counted in steps (`steps` {saved.steps}); extend it with "
                         "`steps`, not `epochs`")


def resume_length(saved: TrainConfig, new: TrainConfig, done: int, steps_per_epoch: int) -> int:
    """The total steps a resume of ``saved`` (now at step ``done``) as ``new`` trains to,
    once ``check_resume`` has found ``new`` the same run: a length shorter than what is
    done is refused. Equal means the run is complete.

    Raises:
      ValueError: the length would end before ``done``; the message says what to do.
    """
    total = new.num_steps(steps_per_epoch)
    if total < done:
        asked = f"`steps` {new.steps}" if new.steps is not None else f"`epochs` {new.epochs}"
        raise ValueError(f"the run is already at step {done}; {asked} ({total} steps) would end "
                         "before that: ask for more, or omit the length to finish a stopped run")
    return total



def _save_model(path, params, arch, info: DatasetInfo = MNIST) -> None:
    """``model.npz``: the params (``params/0/w`` …), the architecture spec (``arch``) and
    the dataset the model takes (``dataset``, ``image_shape``)."""
    arrays = {f"params/{i}/{k}": np.asarray(v) for i, layer in enumerate(params)
              for k, v in layer.items()}
    spec = ",".join(f"{units}:{activation}" for units, activation in parse_arch(arch))
    save_npz_atomic(path, arch=np.array(spec), dataset=np.array(info.name),
                    image_shape=np.asarray(info.image_shape, np.int64), **arrays)


# What a model's metadata may be: an architecture spec longer than this is not jaxmlp's
# (the longest preset spec is 30 characters; 100 layers of 65,536 units are 1,500).
_MAX_SPEC = 10_000


def load_model(path) -> tuple[Arch, list[dict], DatasetInfo]:
    """``(arch, params, info)`` from a ``model.npz``; ``RunError`` names the file if unusable.

    Only the arrays a model needs are read, each once its header shows the shape the
    architecture implies (``checkpoint.Npz``). A model saved before datasets were recorded
    is an MNIST model."""
    return _read_model(_checks.path(path, "path", "a model.npz"), weights=True)


def read_model_info(path) -> tuple[Arch, DatasetInfo]:
    """``(arch, info)`` of a ``model.npz``, its weights left unread (``jaxmlp runs``)."""
    arch, _, info = _read_model(path, weights=False)
    return arch, info


def _read_model(path, weights: bool) -> tuple[Arch, list[dict], DatasetInfo]:
    try:
        with Npz(path) as npz:
            arch = parse_arch(str(npz.read("arch", expect_text(_MAX_SPEC))))
            info = MNIST
            if "image_shape" in npz.names:
                shape = check_image_shape(npz.read("image_shape", expect_exactly((3,), np.int64)))
                name = check_name(str(npz.read("dataset", expect_text(MAX_NAME))))
                info = DatasetInfo(name, shape, arch[-1].units)
            if not weights:
                return arch, [], info
            params = [{"w": npz.read(f"params/{i}/w", expect_floats(shape)),
                       "b": npz.read(f"params/{i}/b", expect_floats(shape[1:]))}
                      for i, shape in enumerate(weight_shapes(arch, info.in_dim))]
    except FileNotFoundError:
        raise RunError(f"no model at {path} (has the run finished an epoch?)") from None
    except RunError:  # the file itself: Npz named it
        raise
    except KeyError as e:
        raise RunError(f"{path} is not a jaxmlp model: it has no array {e.args[0]!r}") from None
    except (ValueError, TypeError):  # what the metadata says: never quoted
        raise RunError(f"{path} is not a jaxmlp model: its architecture, dataset or image shape "
                       "is not one jaxmlp writes") from None
    for i, layer in enumerate(params):
        if not all(np.isfinite(layer[k]).all() for k in ("w", "b")):
            raise RunError(f"{path}: layer {i} holds NaN or infinite weights")
    return arch, params, info


def read_sweep(folder) -> tuple[TrainConfig, Grid, str]:
    """The base config, grid and order saved in ``folder/sweep.json``."""
    return read_sweep_with_info(folder)[:3]


def read_sweep_with_info(folder) -> tuple[TrainConfig, Grid, str, DatasetInfo]:
    """``read_sweep``'s, and the dataset the sweep trained on (``sweep.json``'s
    ``dataset``; a sweep saved before datasets were recorded trained on MNIST): one read
    of the file, every part checked."""
    path = Path(folder) / SWEEP
    if not os.path.lexists(path) and os.path.lexists(Path(folder) / CONFIG):
        raise RunError(f"{folder} holds a single run, not a sweep (`jaxmlp train --resume`, "
                       "`load_run(folder)`)")
    meta = read_json(path)
    if isinstance(meta, dict) and set(meta) - _SWEEP_KEYS:
        raise RunError(f"{path} is not a jaxmlp sweep (it holds keys jaxmlp does not write)")
    try:
        config = TrainConfig.from_dict(meta["config"])
        grid = Grid(meta["seeds"], meta["lrs"], meta["momenta"])
        if meta["order"] not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}")
        info = _sweep_info_of(meta, path)  # the dataset it records, checked whoever asks
        if config.layers[-1].units != info.num_classes:
            raise RunError(f"{path} is not a jaxmlp sweep (its dataset's class count is not its "
                           "architecture's output width)")
        return config, grid, meta["order"], info
    except RunError:  # the dataset's reader named it
        raise
    except KeyError as e:  # a key of jaxmlp's own vocabulary
        raise RunError(f"{path} is not a jaxmlp sweep (it has no {e.args[0]!r})") from None
    except (TypeError, ValueError) as e:
        why = without_value(e, "its settings, grid or order are not what jaxmlp writes")
        raise RunError(f"{path} is not a jaxmlp sweep ({why})") from None


# What sweep.json holds (``RunFolder.save_sweep_epoch``); "dataset" since datasets were recorded.
_SWEEP_KEYS = {"config", "seeds", "lrs", "momenta", "order", "dataset"}


def _sweep_info_of(meta, path: Path) -> DatasetInfo:
    """The ``DatasetInfo`` in sweep.json's contents ``meta`` (MNIST where none is recorded)."""
    if not isinstance(meta, dict) or "dataset" not in meta:
        return MNIST
    try:
        d = meta["dataset"]
        info = DatasetInfo(check_name(d["name"]), check_image_shape(d["image_shape"]),
                           d["num_classes"])
        if not (type(info.num_classes) is int and 1 <= info.num_classes <= MAX_UNITS):
            raise TypeError
        return info
    except (KeyError, TypeError, ValueError):
        raise RunError(f"{path} is not a jaxmlp sweep (its dataset is not a name, (height, "
                       "width, channels) and a class count)") from None


def _ema_name(config: TrainConfig, in_dim: int) -> str:
    """Where a sweep's checkpoint keeps its models' averaged params (``ema``): inside the
    optimizer state, as the optimizer itself puts them (``ema_path``; a sweep saves its
    per-model state's ``inner``). Built from shapes alone: nothing is computed."""
    params = [{"w": jax.ShapeDtypeStruct(shape, np.float32),
               "b": jax.ShapeDtypeStruct(shape[1:], np.float32)}
              for shape in weight_shapes(config.layers, in_dim)]
    state = jax.eval_shape(make_optimizer(config, 1, per_model=True).init, params).inner
    return leaf_name((jax.tree_util.DictKey("opt_state"), *ema_path(state)))


def _read_sweep_models(folder, indices, sweep=None) -> tuple:
    """``(configs, info, params, histories)`` of the models ``indices`` of the sweep in
    ``folder``: every model's config as the single run it stands for, the dataset it takes,
    the chosen models' params stacked on a leading axis (the checkpoint read once, only
    arrays of the shapes the grid and architecture imply, only those rows kept) and each
    chosen model's per-epoch records. ``sweep``: ``read_sweep_with_info(folder)``, when the
    caller has read it."""
    config, grid, _, info = sweep or read_sweep_with_info(folder)
    configs = grid.configs(config)
    for model in indices:
        if not 0 <= model < len(configs):
            raise RunError(f"{folder} holds models 0 to {len(configs) - 1}, not {model}")
    path = Path(folder) / CHECKPOINT
    rows = np.asarray(indices, int)
    try:
        with Npz(path) as npz:
            where = "params" if config.ema is None else _ema_name(config, info.in_dim)
            # A copy of the chosen rows: the stack is let go at once.
            params = [{k: npz.read(f"{where}/{j}/{k}", expect_floats((len(configs), *shape)))
                       [rows] for k, shape in (("w", w), ("b", w[1:]))}
                      for j, w in enumerate(weight_shapes(config.layers, info.in_dim))]
    except FileNotFoundError:
        raise RunError(f"{path}: no checkpoint to read model {indices[0]} from") from None
    except KeyError:
        raise RunError(f"{path}: cannot read model {indices[0]} (its arrays are missing: not "
                       "this sweep's checkpoint)") from None
    records = read_history(folder, models=len(configs))
    histories = [[{"epoch": h["epoch"], "step": h["step"], **h["models"][model]}
                  for h in records] for model in indices]
    return configs, info, params, histories


def model_of(params: list[dict], i: int) -> list[dict]:
    """Model ``i`` of stacked params (a sweep's or an ensemble's: a leading model axis on
    every leaf), as one model's params."""
    return [{k: v[i] for k, v in layer.items()} for layer in params]


def _diverged(params: list[dict], history: list[dict]) -> bool:
    """A sweep's model that has no usable weights: its last record says it diverged, or a
    weight is not finite."""
    return bool(history and history[-1].get("diverged")) or not all(
        np.isfinite(layer[k]).all() for layer in params for k in ("w", "b"))


def _load_model_of_sweep(folder, model: int):
    """``(config, params, history, info)`` of model ``model`` of the sweep in ``folder``:
    its config as the single run it stands for, its params, its per-epoch records and the
    dataset it takes (``DatasetInfo``)."""
    configs, info, stacked, (history,) = _read_sweep_models(folder, [model])
    params = [{k: v[0] for k, v in layer.items()} for layer in stacked]
    if _diverged(params, history):
        raise RunError(f"model {model} of the sweep in {folder} diverged: it has no usable "
                       "weights (summary.json lists the models that trained)")
    return configs[model], params, history, info


class Run(NamedTuple):
    """A trained run, loaded: what ``load_run`` returns."""

    path: Path
    config: TrainConfig
    arch: Arch
    params: list[dict]
    history: list[dict]
    evaluation: Optional[dict]  # eval.json, once ``jaxmlp eval`` has run
    info: DatasetInfo = MNIST  # the dataset the model takes: name, image shape, classes
    model: Optional[int] = None  # which model of a sweep's folder; None for a single run


def load_run(folder, model: Optional[int] = None) -> Run:
    """Loads a run folder: its config, architecture, trained params and per-epoch history.

    A sweep's folder (``jaxmlp sweep``) holds many models: ``model=i`` loads model i as
    the single run it stands for (its config carries its own seed, lr and momentum).

    Example:
      >>> run = jaxmlp.load_run("runs/b")
      >>> probs = jaxmlp.predict(run.params, images, run.arch)

    Raises:
      RunError: the folder or one of its files is missing or unusable (the message names it).
    """
    folder = _checks.path(folder, "folder", "a run folder")
    if model is not None and type(model) is not int:  # "1" or True: not an index
        raise RunError(f"model must be an integer index, got {model!r}")
    if is_sweep(folder):
        if model is None:
            raise RunError(f"{folder} holds a sweep: load one of its models with "
                           "load_run(folder, model=i)")
        config, params, history, info = _load_model_of_sweep(folder, model)
        evaluation = _read_evaluation(folder / MODELS / str(model) / EVAL, within=folder)
        return Run(folder, config, config.layers, params, history, evaluation, info,
                   model)
    if model is not None:
        raise RunError(f"{folder} holds a single run, not a sweep: drop model={model}")
    config = read_config(folder)
    arch, params, info = load_model(folder / MODEL)
    if arch != config.layers or info.name != config.dataset:
        raise RunError(f"{folder / MODEL} is not the model {folder / CONFIG} describes (another "
                       "architecture or dataset): not one run's files")
    return Run(folder, config, arch, params, read_history(folder),
               _read_evaluation(folder / EVAL), info)


def _read_evaluation(path: Path, within=None) -> Optional[dict]:
    try:  # eval.json only caches `jaxmlp eval`'s output, which rewrites it: unreadable = absent
        return read_json(path, within) if os.path.lexists(path) else None
    except RunError:
        return None


def evaluate_run(run: Run, data, tta=None) -> dict:
    """Evaluates ``run``'s model on ``data``'s test split and saves the report in its folder
    (for model I of a sweep, in the sweep's ``models/I/``).

    Writes ``eval.json`` (``test_loss``, ``test_acc``, ``per_class_acc``, ``confusion``,
    ``mistakes``), ``confusion.png``, ``mistakes.png`` (the most confidently wrong test
    images) and ``weights.png`` (the first layer's weights laid out in the input image
    shape, ``run.info.image_shape``), holding the folder's lock while it writes.

    With ``tta`` (a ``jaxmlp.TTA``) the figures are of the probabilities averaged over each
    image and ``tta.n`` distortions of it (``tta.augment``: random shifts of up to a pixel
    by default), and the report adds ``tta`` (``n``, ``augment``, ``seed``) and ``without_tta``
    (``test_loss``, ``test_acc`` of the plain model).

    Returns:
      the report, as saved in ``eval.json``.
    """
    from jaxmlp._metrics import evaluation_report, probability_report
    from jaxmlp._plot import plot_confusion, plot_mistakes, plot_weights
    from jaxmlp._tta import check_tta, tta_probabilities

    if not isinstance(run, Run):
        raise TypeError(f"run must be a jaxmlp.Run (load_run makes one), got {type(run).__name__}")
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a jaxmlp.Dataset (load_dataset makes one), got "
                        f"{type(data).__name__}")
    if data.info.image_shape != run.info.image_shape:
        raise ValueError(f"data must be the dataset the run takes ({run.info.name}, images "
                         f"{run.info.image_shape}), got {data.info.name} {data.info.image_shape}")
    check_tta(tta)
    probs = None if tta is None else tta_probabilities(
        run.params, data.test_images, run.arch, tta, image_shape=run.info.image_shape)
    report = evaluation_report(run.params, data.test_images, data.test_labels, run.arch)
    if tta is not None and probs is not None:
        plain = {k: report[k] for k in ("test_loss", "test_acc")}
        report = {**probability_report(probs, data.test_labels, mistakes=36),
                  "tta": tta.record(), "without_tta": plain}
    wrong = report["mistakes"]
    index = np.asarray([m["index"] for m in wrong], dtype=int)
    plots = {
        "confusion.png": lambda p: plot_confusion(
            report["confusion"], p,
            title=f"{run.path.name}: test accuracy {report['test_acc']:.4f}"),
        "mistakes.png": lambda p: plot_mistakes(
            np.asarray(data.test_images)[index], [m["label"] for m in wrong],
            [m["predicted"] for m in wrong], [m["confidence"] for m in wrong], p,
            image_shape=run.info.image_shape),
        "weights.png": lambda p: plot_weights(  # preset a: each unit is one class's template
            np.asarray(run.params[0]["w"]), p,
            labels=list(range(run.arch[0].units)) if len(run.arch) == 1 else None,
            image_shape=run.info.image_shape),
    }
    where = "" if run.model is None else f"{MODELS}/{run.model}/"
    with RunFolder.open(run.path, resume=True) as folder:
        folder.save_evaluation(report, plots, where)
    return report


ENSEMBLES = "ensembles"  # a sweep's subfolder: ensembles/K/, jaxmlp eval --ensemble's


class Ensemble(NamedTuple):
    """One setting of a sweep as a committee: what ``load_ensemble`` returns. ``params`` are
    its members' params stacked on a leading axis (``predict_ensemble`` averages their
    probabilities); ``members`` the sweep's indices of the models that vote (its seeds that
    did not diverge); ``config`` the setting's (the first member's seed)."""

    path: Path
    config: TrainConfig
    arch: Arch
    params: list[dict]
    members: tuple[int, ...]
    setting: int
    lr: float
    momentum: float
    info: DatasetInfo = MNIST


def load_ensemble(folder, setting: Optional[int] = None) -> Ensemble:
    """Loads the committee of one setting of the sweep in ``folder``: the models of its seeds
    that did not diverge, stacked.

    ``setting`` K indexes the grid's settings (lr outer, momentum inner: ``summary.json``'s
    ``settings``); None is the best (``summary.json``'s ``best``: by validation when the
    sweep has a split), known once the sweep has finished.

    Example:
      >>> committee = jaxmlp.load_ensemble("runs/sweep-b")
      >>> probs = jaxmlp.predict_ensemble(committee.params, images, committee.arch)

    Raises:
      RunError: not a sweep's folder, no such setting, no summary yet (``setting=None``),
        every member diverged, or a file is missing or unusable (the message names it).
    """
    folder = _checks.path(folder, "folder", "a sweep's folder")
    if not is_sweep(folder):
        raise RunError(f"{folder} holds no sweep: an ensemble is a sweep's setting's seeds")
    sweep = read_sweep_with_info(folder)
    config, grid, _, info = sweep
    settings = grid.settings()
    if setting is None:
        summary = (read_json(folder / SUMMARY, within=folder)
                   if os.path.lexists(folder / SUMMARY) else None)
        best = (summary or {}).get("best") if isinstance(summary, dict) else None
        if not isinstance(best, dict) or (best.get("lr"), best.get("momentum")) not in settings:
            raise RunError(f"{folder} has no summary.json naming its best setting (the sweep "
                           "has not finished): name one with `setting`")
        setting = settings.index((best["lr"], best["momentum"]))
    if isinstance(setting, bool) or not isinstance(setting, int) or not (
            0 <= setting < len(settings)):
        raise RunError(f"{folder} has settings 0 to {len(settings) - 1}, not {setting!r}")
    indices = list(grid.members(setting))
    configs, info, params, histories = _read_sweep_models(folder, indices, sweep)
    alive = [not _diverged(model_of(params, i), history) for i, history in enumerate(histories)]
    if not any(alive):
        raise RunError(f"every model of setting {setting} of the sweep in {folder} diverged")
    members = tuple(m for m, ok in zip(indices, alive) if ok)
    voting = np.flatnonzero(alive)
    params = [{k: v[voting] for k, v in layer.items()} for layer in params]
    lr, momentum = settings[setting]
    return Ensemble(folder, configs[members[0]], config.layers, params, members, setting, lr,
                    momentum, info)


def evaluate_ensemble(folder, data, setting: Optional[int] = None, tta=None) -> dict:
    """Evaluates the committee of one setting of the sweep in ``folder`` on ``data``'s test
    split: the mean of its live seeds' softmax probabilities (as ``summary.json``'s
    ``ensemble_test_acc``), and saves the report as ``ensembles/K/eval.json`` with its
    ``confusion.png``, holding the folder's lock while it writes.

    ``setting`` K indexes the grid's settings (lr outer, momentum inner: ``summary.json``'s
    ``settings``); None is the best (``summary.json``'s ``best``: by validation when the
    sweep has a split). The report holds ``setting``, ``lr``, ``momentum``, ``members`` (the
    models that vote), ``member_test_acc``, and ``test_loss``, ``test_acc``,
    ``per_class_acc``, ``confusion`` of the committee (``probability_report``). With
    ``tta`` (a ``jaxmlp.TTA``) each member votes by its probabilities over each image and
    ``tta.n`` distortions of it (``evaluate_run``'s; ``member_test_acc`` is then theirs
    too), and the report adds ``tta`` and ``without_tta`` (the plain committee's
    ``test_loss``, ``test_acc``)."""
    from jaxmlp._metrics import evaluate_models, model_probabilities, probability_report
    from jaxmlp._plot import plot_confusion
    from jaxmlp._tta import check_tta, tta_probabilities

    folder = Path(folder)
    committee = load_ensemble(folder, setting)
    config, info = committee.config, committee.info
    if not isinstance(data, Dataset) or data.info.image_shape != info.image_shape:
        raise ValueError(f"data must be the dataset the sweep takes ({info.name}, images "
                         f"{info.image_shape})")
    setting, lr, momentum, members = (committee.setting, committee.lr, committee.momentum,
                                      list(committee.members))
    check_tta(tta)
    stacked = [{k: jax.numpy.asarray(v) for k, v in layer.items()} for layer in committee.params]
    one_by_one = evaluate_models(stacked, data.test_images, data.test_labels, config.layers)
    probs = model_probabilities(stacked, data.test_images, config.layers)  # (K, N, classes)
    accuracies = [float(a) for a in np.asarray(one_by_one["accuracy"])]
    plain = probability_report(probs.mean(axis=0), data.test_labels)
    if tta is not None:
        probs = np.stack([tta_probabilities(model_of(stacked, i), data.test_images,
                                            config.layers, tta, image_shape=info.image_shape)
                          for i in range(len(members))])
        labels = np.asarray(data.test_labels)
        accuracies = [float(np.mean(p.argmax(axis=1) == labels)) for p in probs]
    report = {"setting": setting, "lr": lr, "momentum": momentum, "members": members,
              "member_test_acc": accuracies,
              **(plain if tta is None else probability_report(probs.mean(axis=0),
                                                              data.test_labels))}
    if tta is not None:
        report["tta"] = tta.record()
        report["without_tta"] = {k: plain[k] for k in ("test_loss", "test_acc")}
    plots = {"confusion.png": lambda p: plot_confusion(
        report["confusion"], p, title=f"{folder.name}: ensemble of lr {lr:g}, momentum "
        f"{momentum:g} ({len(members)} seeds): test accuracy {report['test_acc']:.4f}")}
    with RunFolder.open(folder, resume=True) as run_folder:
        run_folder.save_evaluation(report, plots, f"{ENSEMBLES}/{setting}/")
    return report
