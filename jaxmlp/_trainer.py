"""The one training loop, for one model and for many: a single run is the grid of one.

``fit`` trains the K ≥ 1 models of a ``Grid`` in sections: start (fresh from the seeds, or
from the run folder's checkpoint), then per epoch: train (one jitted call), check for
divergence, evaluate every model on every split at once, save, log; stop at the end, at
the target accuracy, or at Ctrl-C. What differs between one model and many is only how
their state is laid out, and that lives in two small classes, each a ``Layout`` (the
protocol the loop asks of them, checked by mypy; the loop never asks which it holds):

- ``_One``: a single run (``jaxmlp train``). The plain, un-vmapped step (no model axis),
  the batch split over a ``data`` mesh, one process or many (multi-process stays here).
- ``jaxmlp._sweep.Stack``: a sweep (``jaxmlp sweep``). Params and optimizer states stacked
  along a model axis, the step vmapped over it, the axis sharded over a ``model`` mesh.

The run folder (``jaxmlp._run``) reads and writes every file of both.
"""
import contextlib
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import _checks
from jaxmlp._arch import summary
from jaxmlp._checkpoint import checkpoint_state
from jaxmlp._config import ORDERS, Grid, TrainConfig
from jaxmlp._data import (Dataset, check_dataset, default_data_dir, load_dataset, own_data,
                          with_validation)
from jaxmlp._epoch import config_step, make_epoch_runner
from jaxmlp._layout import (Layout, check_memory, eval_sets, model_params, put_dataset,
                           as_stack)
from jaxmlp._metrics import evaluate_models
from jaxmlp._mlp import init_params
from jaxmlp._optim import make_optimizer, schedule
from jaxmlp._parallel import check_batch, make_mesh, put_replicated, to_host
from jaxmlp._run import (CHECKPOINT, CURVES, MODEL, RunFolder, RunWriteError, best_epoch,
                        check_resume, history_to, load_model, read_checkpoint, resume_length,
                        what_is_kept)
from jaxmlp._sweep import Stack


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite (every model's, in a sweep); the last good
    checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``step`` is the last saved step (None: nothing was saved)."""

    def __init__(self, step: Optional[int]):
        super().__init__(step)
        self.step = step


def _seconds_since_process_start() -> Optional[float]:
    """Wall time since this process started; None where the OS does not say.

    Linux: ``/proc/uptime`` minus the process's start tick, both counted from boot
    (psutil's ``create_time`` adds the boot time, rounded to whole seconds: up to 1 s off).
    """
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return None


def _load_data(config: TrainConfig, data: Optional[Dataset]) -> tuple[Dataset, TrainConfig]:
    """The data to train on (``config.val_size`` held out for validation), and the config
    with the data folder it came from: recorded, so that ``jaxmlp eval`` finds the data
    again from a shell without ``$TFDS_DATA_DIR``.

    Raises:
      ValueError: ``data`` is not ``config.dataset``, the output layer does not fit it, or
        a batch is larger than the training split.
    """
    if data is not None:
        if data.info.name != config.dataset:
            raise ValueError(f"the data given is {data.info.name}, but the config says "
                             f"dataset {config.dataset!r}")
        check_dataset(data)
        config.check_output(data.info)
    else:
        data = load_dataset(config.dataset, data_dir=config.data_dir,
                            manual_dir=config.manual_dir, download=config.download,
                            check=config.check_output)  # before any download
        where = Path(config.data_dir or default_data_dir(config.dataset)).expanduser()
        config = dataclasses.replace(config, data_dir=str(where.resolve()))
    data = with_validation(data, config.val_size)
    if config.batch_size > len(data.train_labels):
        held = f" (`val_size` {config.val_size} holds out the rest)" if config.val_size else ""
        raise ValueError(f"`batch_size` {config.batch_size} is larger than the "
                         f"{len(data.train_labels)} training examples{held}")
    return data, config


class _One:
    """A single run: one model, the plain step, the batch split over a ``data`` mesh."""

    reached_by = ""

    def __init__(self, config: TrainConfig, data: Dataset):
        self.config, self.info, self.num_models = config, data.info, 1
        self.mesh = make_mesh(config.devices)
        check_batch(config.batch_size, self.mesh)
        check_memory(config, 1, "shared", data, list(self.mesh.devices.flat))
        # One process: the arrays go to the devices once; every epoch reuses them.
        self.data = put_dataset(data, self.mesh) if jax.process_count() == 1 else data
        self.sets = eval_sets(self.data, config)  # sliced once

    def start(self, folder, saved: Optional[TrainConfig], spe: int):
        """``(state, history, num_steps)``: fresh from the seed, or as saved in ``folder``."""
        config = self.config
        # The optimizer state's structure does not depend on the schedule's length, which
        # a resume learns only from its checkpoint.
        optimizer = make_optimizer(config, 1)
        data_key, init_key = jax.random.split(jax.random.key(config.seed))
        # Jitted: one executable (cached across runs) instead of an eager op per layer.
        params = jax.jit(init_params, static_argnums=(1, 2))(init_key, config.layers,
                                                             self.info.in_dim)
        state = checkpoint_state(params, optimizer.init(params), 0, data_key)
        if saved is None:
            return state, [], config.num_steps(spe)
        state = read_checkpoint(folder, state)
        done = int(state["step"])
        history = history_to(folder, done)
        return state, history, resume_length(saved, config, done, spe)

    def place(self, state, num_steps: int):
        step = config_step(self.config, make_optimizer(self.config, num_steps),
                            self.info.image_shape)
        self._run = make_epoch_runner(step, self.data, self.config.batch_size, self.mesh)
        self._key = jax.random.wrap_key_data(jnp.asarray(state["key"]))
        return put_replicated((state["params"], state["opt_state"]), self.mesh)

    def train(self, params, opt_state, epoch: int, start: int, n: int):
        params, opt_state, batch, compile_s = self._run(
            params, opt_state, jax.random.fold_in(self._key, epoch), start, n)
        losses = to_host(batch["loss"])[:, None]  # the one host sync of the epoch
        return params, opt_state, losses, to_host(batch["accuracy"])[:, None], compile_s

    def host_state(self, params, opt_state, step: int) -> dict:
        return jax.tree.map(to_host, checkpoint_state(params, opt_state, step, self._key))

    def evaluate(self, params, host_params) -> dict:
        """``{split: {"loss": (1,), "accuracy": (1,)}}``, from the host copy (several
        processes each evaluate their own full copy)."""
        arch = self.config.layers
        stacked = jax.device_put(as_stack(host_params))  # once for every split
        return {split: evaluate_models(stacked, images, labels, arch)
                for split, (images, labels) in self.sets.items()}

    def record(self, evals: dict, losses, diverged) -> dict:
        record = {}
        for split, result in evals.items():
            record[f"{split}_loss"] = float(result["loss"][0])
            record[f"{split}_acc"] = float(result["accuracy"][0])
        return record

    def batch_figures(self, losses) -> dict:
        return {"batch_loss_mean": float(losses.mean())}

    def mean_of(self, live: int) -> str:
        return ""

    def save(self, folder: RunFolder, host: dict, history: list, keep_model: bool) -> None:
        folder.save_epoch(self.config, host, history, self.info,
                          model=model_params(self.config, host["params"], host["opt_state"]),
                          keep_model=keep_model)

    def plot(self, folder: Optional[RunFolder], history: list) -> None:
        # Drawn when this call saved an epoch, or when a finished run lacks its curves (a
        # signal landed after the last epoch was saved, before they were drawn).
        if folder is not None and history and (folder.saved or (
                os.path.lexists(folder.path / CHECKPOINT)
                and not os.path.lexists(folder.path / CURVES))):
            c = self.config  # the run, its net and data (an npz by its file), how it trained
            own = own_data(c.dataset)
            data = own[1].name if own else c.dataset
            folder.plot(history, title=f"{folder.path.name}: {c.arch} on {data}, "
                                       f"{c.optimizer} lr {c.lr:g}")

    def describe(self, record: dict, splits) -> str:
        return " | ".join(f"{split} J={record[split + '_loss']:.4f} "
                          f"accu={record[split + '_acc']:.4f}" for split in splits)

    def watched(self, record: dict, watch: str) -> list:
        return [record[watch]]

    def diverged_in(self, history) -> np.ndarray:
        return np.zeros(1, bool)

    def divergence(self, losses, step: int, epoch: int, diverged) -> str:
        bad = np.flatnonzero(~np.isfinite(losses[:, 0]))
        return f"loss became {losses[bad[0], 0]} at step {step + bad[0]} (epoch {epoch}); stopping"

    def finish(self, folder, params, history, diverged) -> dict:
        last = history[-1] if history else {}  # (curves.png: drawn by the loop, Ctrl-C too)
        return {"params": params, "test_accuracy": last.get("test_acc"),
                "val_accuracy": last.get("val_acc")}


def fit(config: TrainConfig, grid: Optional[Grid] = None, out=None, *, order: str = "shared",
        resume: bool = False, overwrite: bool = False, data: Optional[Dataset] = None,
        log=print, progress: bool = False) -> dict:
    """Trains the models of ``grid`` and evaluates each on every split after every epoch.

    The one entry that trains any grid: ``grid`` None is the single run ``config``
    describes (laid out by ``_One``: a run folder), a ``Grid`` a sweep of its models, one
    or many (``jaxmlp._sweep.Stack``: a sweep folder); ``train_and_evaluate`` and
    ``train_many`` call it, and document the arguments and what each returns."""
    _check_call(config, grid, out, order, data, log, resume, overwrite, progress)
    writer = jax.process_index() == 0  # only process 0 speaks and writes
    folder = RunFolder.open(out, resume=resume, overwrite=overwrite) if out and writer else None
    log = log if writer else lambda line: None
    # A start that fails inside the folder's context changes nothing on disk (RunFolder).
    with folder or contextlib.nullcontext():
        # Before the data: a new dataset, arch or grid is named.
        saved = check_resume(out, config, grid, order) if resume else None
        data, config = _load_data(config, data)
        models = _One(config, data) if grid is None else Stack(config, grid, order, data)
        spe = len(data.train_labels) // config.batch_size  # steps per epoch
        state, history, num_steps = models.start(out and Path(out), saved, spe)
        config.check_length(num_steps)
        count = "" if grid is None else f", {len(grid.models())} models"
        log(f"model {summary(config.layers, data.info.in_dim).line()}{count}")
        if resume:
            log(f"resumed from {out} at step {int(state['step'])}")
            _note_schedule(config, saved, int(state["step"]), num_steps, spe, log)
        return _Loop(config, models, data.splits(), folder, log, progress).run(
            state, history, num_steps, spe)


def _note_schedule(config: TrainConfig, saved: Optional[TrainConfig], step: int,
                   num_steps: int, spe: int, log) -> None:
    """Says so when a resume moves a cosine schedule's end: extending a finished run lifts
    its learning rate from about 0 back up (the schedule now decays over the new length)."""
    before = saved.num_steps(spe) if saved is not None else num_steps
    if config.schedule != "cosine" or num_steps == before or step == 0:
        return
    rate = lambda total: float(schedule(1.0, total, config.warmup_steps, "cosine")(step))
    log(f"the cosine schedule now ends at step {num_steps}, not {before}: the learning rate "
        f"at step {step} is {rate(num_steps):.1%} of its peak (it was {rate(before):.1%})")


def train_and_evaluate(config: TrainConfig, out=None, *, resume: bool = False,
                       overwrite: bool = False, data: Optional[Dataset] = None, log=print,
                       progress: bool = False) -> dict:
    """Trains ``config.arch`` on ``config.dataset`` and evaluates it after every epoch.

    Args:
      config: the run.
      out: its run folder (``jaxmlp._run``); nothing is written when ``None``.
      resume: continue the run saved in ``out`` (exactly: same data order, same
        arithmetic) up to ``config``'s length, under ``jaxmlp._run.resume_length``'s rules.
      overwrite: replace the run in ``out`` (its files go when this run saves an epoch).
      data: the dataset's arrays (``Dataset``, without a validation split: ``config.val_size``
        holds one out); loaded with ``load_dataset`` from the config when ``None``.
      log: where log lines go.
      progress: show a tqdm bar that advances once per epoch.

    Returns:
      ``{"params", "history", "test_accuracy", "val_accuracy", "steps"}`` (the last epoch's
      accuracies; ``val_accuracy`` is None without a validation split).

    Raises:
      ValueError: a config, folder (``RunError``) or resume that cannot work, before any work.
      TrainingDiverged: the loss became NaN or infinite.
      TrainingInterrupted: Ctrl-C; the finished epochs are saved and plotted.
      RunWriteError: a file of the run could not be written (disk full, file too large).
    """
    return fit(config, None, out, resume=resume, overwrite=overwrite, data=data, log=log,
               progress=progress)


def train_many(config: TrainConfig, grid: Grid, out=None, *, order: str = "shared",
               resume: bool = False, overwrite: bool = False, data: Optional[Dataset] = None,
               log=print, progress: bool = False) -> dict:
    """Trains every model of ``grid`` (on ``config``'s other settings) at once.

    Args:
      config: the settings the models share (its ``seed``, ``lr`` and ``momentum`` are
        replaced by each model's). Its ``target_accuracy`` stops the sweep when every
        live model has reached it.
      grid: the seeds, learning rates and momenta; the models are their product.
      out: the sweep's folder (``sweep.json``, ``checkpoint.npz``, ``metrics.jsonl``,
        ``summary.json``, ``curves.png``); nothing is written when ``None``.
      order: ``"shared"`` or ``"independent"`` data order (module docstring).
      resume, overwrite, data, log, progress: as for ``train_and_evaluate`` (``data`` must
        be ``config.dataset``, without a validation split: ``config.val_size`` holds one out).

    Returns:
      ``{"params"`` (stacked), ``"history"``, ``"summary"``, ``"steps"}``.
    """
    if not isinstance(grid, Grid):  # None is a single run's: train_and_evaluate's
        raise TypeError(f"grid must be a jaxmlp.Grid, got {type(grid).__name__}")
    return fit(config, grid, out, order=order, resume=resume, overwrite=overwrite, data=data,
               log=log, progress=progress)


def _check_call(config, grid, out, order, data, log, resume, overwrite, progress) -> None:
    """``fit``'s arguments checked, before anything is read or written: ``TypeError`` or
    ``ValueError`` naming the argument."""
    if not isinstance(config, TrainConfig):  # TrainConfig checked its settings when built
        raise TypeError(f"config must be a jaxmlp.TrainConfig, got {type(config).__name__}")
    if grid is not None and not isinstance(grid, Grid):  # a Grid checked its values too
        raise TypeError(f"grid must be a jaxmlp.Grid, got {type(grid).__name__}")
    if out is not None:
        _checks.path(out, "out", "a folder")
    if out is not None and not str(out).strip():
        raise ValueError("out must name a folder, got an empty string")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if data is not None and not isinstance(data, Dataset):
        raise TypeError(f"data must be a jaxmlp.Dataset (load_dataset makes one) or None, got "
                        f"{type(data).__name__}")
    if not callable(log):
        raise TypeError(f"log must be a function of one line, got {type(log).__name__}")
    for name, value in (("resume", resume), ("overwrite", overwrite), ("progress", progress)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    if (resume or overwrite) and out is None:
        raise ValueError("resume and overwrite need the run's folder (out)")


class _Loop:
    """The epochs: train, check, evaluate, save, log, until the end or the target."""

    def __init__(self, config: TrainConfig, models: Layout, splits, folder, log, progress):
        self.config, self.models, self.folder, self.log = config, models, folder, log
        self.splits, self.progress = list(splits), progress
        self.saved_step: Optional[int] = None  # the step of the newest checkpoint on disk
        # What --target-accuracy (and any choice among epochs) looks at: never the test set
        # when there is a validation split.
        self.watch = "val_acc" if "val" in self.splits else "test_acc"
        # --keep-best and --early-stop: the figure that makes an epoch the best (validation).
        self.choose = config.keep_best or "val_acc"
        self.kept: Optional[tuple] = None  # (epoch, params) of model.npz, once this run kept one

    def run(self, state, history, num_steps, spe) -> dict:
        config, folder, models = self.config, self.folder, self.models
        step = int(state["step"])
        params, opt_state = models.place(state, num_steps)
        if folder is not None and step:
            self.saved_step = step  # resumed from it
        diverged = models.diverged_in(history)
        reached = bool(history) and (self._reached(history[-1], config.target_accuracy)
                                     or self._no_better(history) is not None)
        num_steps = step if reached else num_steps  # a run stopped at its target is complete
        bar = self._bar(num_steps, step) if step < num_steps else None
        first = True
        try:
            while step < num_steps:
                # Train.
                epoch, start = step // spe + 1, step % spe
                n = min(spe - start, num_steps - step)
                startup = _seconds_since_process_start() if first else None
                begin = time.perf_counter()
                params, opt_state, losses, accuracies, compile_s = models.train(
                    params, opt_state, epoch, start, n)
                seconds = time.perf_counter() - begin - compile_s
                # Check.
                diverged = self._check(losses, diverged, step, epoch)
                self._log_steps(losses, accuracies, step, diverged)
                step += n
                # Evaluate.
                host = models.host_state(params, opt_state, step)
                begin_eval = time.perf_counter()
                evals = models.evaluate(model_params(config, params, opt_state),
                                        model_params(config, host["params"], host["opt_state"]))
                record = {"epoch": epoch, "step": step,
                          **models.record(evals, losses, diverged), "epoch_seconds": seconds,
                          "eval_seconds": time.perf_counter() - begin_eval,
                          **models.batch_figures(losses), "compile_seconds": compile_s}
                if startup is not None:
                    record["startup_seconds"] = startup  # process start → this first step
                first = False
                # One line per epoch: a partial epoch's line is replaced when a resume ends it.
                history = [h for h in history if h["epoch"] != epoch] + [record]
                # Save, before it is announced: a kill loses no epoch.
                self._save(host, history, record)
                # Log; stop at the target, or when validation stopped improving.
                if self._log_epoch(record, seconds, bar, n) or self._stop_early(history):
                    break
        except KeyboardInterrupt:
            raise TrainingInterrupted(self.saved_step) from None
        finally:
            if bar is not None:
                bar.close()
            models.plot(folder, history)  # also after Ctrl-C
        if step == int(state["step"]) and history:
            self._nothing_to_do(step, history, reached)
        result = models.finish(folder, model_params(config, params, opt_state), history,
                               diverged)
        if config.keep_best and history:
            result.update(self._kept(history))
        return {**result, "history": history, "steps": step}

    def _kept(self, history) -> dict:
        """What ``--keep-best`` returns: the best epoch's params (as model.npz holds them),
        accuracies and number."""
        best = best_epoch(history, self.choose)  # (keep_best itself)
        if self.kept is not None and self.kept[0] == best["epoch"]:
            params = self.kept[1]
        else:  # kept before this resume: model.npz holds it
            params = load_model(self.folder.path / MODEL)[1]
        return {"params": params, "test_accuracy": best.get("test_acc"),
                "val_accuracy": best.get("val_acc"), "kept_epoch": best["epoch"],
                "kept_by": self.choose}

    def _no_better(self, history) -> Optional[dict]:
        """The best epoch, once ``early_stop`` epochs have passed without a better one."""
        if self.config.early_stop is None or not history:
            return None
        best = best_epoch(history, self.choose)
        return best if history[-1]["epoch"] - best["epoch"] >= self.config.early_stop else None

    def _stop_early(self, history) -> bool:
        best = self._no_better(history)
        if best is not None:
            self.log(f"no better {self.choose} in {self.config.early_stop} epochs (best "
                     f"{best[self.choose]:.4f}, epoch {best['epoch']}): stopping")
        return best is not None

    def _check(self, losses, diverged, step: int, epoch: int) -> np.ndarray:
        """The models diverged so far (a loss not finite); ``TrainingDiverged`` when all
        have, naming the last checkpoint kept."""
        diverged = diverged | ~np.isfinite(losses).all(axis=0)
        if diverged.all():
            left = ("" if self.folder is None
                    else "; " + what_is_kept(self.folder.path, self.saved_step))
            raise TrainingDiverged(
                self.models.divergence(losses, step, epoch, diverged) + left + ". Try a "
                "smaller `lr`" + (" or `weight_decay`" if self.config.weight_decay else "") + ".")
        return diverged

    def _log_epoch(self, record: dict, seconds: float, bar, n: int) -> bool:
        """The epoch's line (and the bar's ``n`` steps); True, said, at the target."""
        models, watched = self.models, min(self.models.watched(record, self.watch), default=0.0)
        self.log(f"epoch {record['epoch']}, step {record['step']}: "
                 + models.describe(record, self.splits) + f" ({seconds:.2f}s)")
        if bar is not None:
            bar.update(n)
            bar.set_postfix({self.watch: f"{watched:.4f}"})
        if not self._reached(record, self.config.target_accuracy):
            return False
        what = "validation" if self.watch == "val_acc" else "test"
        self.log(f"reached {what} accuracy {watched:.4f} >= {self.config.target_accuracy}"
                 f"{models.reached_by} at step {record['step']}: stopping")
        return True

    def _nothing_to_do(self, step: int, history: list, reached: bool) -> None:
        """Says why a resumed run trained no step: it had stopped at its target or early,
        or is complete."""
        last = history[-1]
        if reached and not self._reached(last, self.config.target_accuracy):
            self.log(f"the run stopped early at step {step} (no better {self.choose} in "
                     f"{self.config.early_stop} epochs): nothing to do (pass a larger "
                     "`early_stop` to train on)")
        elif reached:
            self.log(f"the run stopped at its target at step {step} ({self.watch} "
                     f"{min(self.models.watched(last, self.watch)):.4f} >= "
                     f"{self.config.target_accuracy}): nothing to do (pass a higher "
                     "`target_accuracy`, up to 1, to train on)")
        else:
            self.log(f"the run is already complete at step {step}: nothing to do (ask for "
                     "more `epochs` or `steps` to extend it)")

    def _reached(self, record, target) -> bool:
        if target is None:
            return False
        watched = self.models.watched(record, self.watch)
        return bool(watched) and min(watched) >= target

    def _log_steps(self, losses, accuracies, step, diverged) -> None:
        """The seed's ``iter N, J=…, accu=…`` lines (a sweep's: the mean of its live models)."""
        live = ~diverged
        for i in range(len(losses)):
            if self.config.log_every and (step + i) % self.config.log_every == 0:
                self.log(f"iter {step + i}, J={losses[i, live].mean():.6f}, "
                         f"accu={accuracies[i, live].mean():.2f}"
                         + self.models.mean_of(int(live.sum())))

    def _save(self, host_state, history, record) -> None:
        """The epoch into the run folder (if any); with ``keep_best``, its model only when
        ``record`` is the best epoch so far (and then kept in memory too, for the result)."""
        config = self.config
        keep = config.keep_best is None or best_epoch(history, config.keep_best) is record
        if keep and config.keep_best:
            self.kept = (record["epoch"],
                         model_params(config, host_state["params"], host_state["opt_state"]))
        if self.folder is None:
            return
        try:
            self.models.save(self.folder, host_state, history, keep)
        except RunWriteError as e:
            kept = what_is_kept(self.folder.path, self.saved_step)
            raise RunWriteError(e.errno, f"{e.strerror}; {kept}") from None
        self.saved_step = int(host_state["step"])

    def _bar(self, total, initial):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, unit="step", file=sys.stderr,
                    desc=f"arch {self.config.arch}")
