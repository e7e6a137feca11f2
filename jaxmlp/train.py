"""Training: a jitted Optax step, whole epochs as one ``lax.scan`` on device.

The dataset lives on the device as uint8 and is scaled inside the compiled code; each
epoch is one call, so the host syncs once per epoch, not once per step. Epoch ``e``'s data
order is ``shuffle(fold_in(data_key, e))``: a function of the seed and the epoch alone, so a
run resumed mid-epoch takes exactly the batches the uninterrupted run would have taken.
"""
import contextlib
import dataclasses
import functools
import os
import sys
import time
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmlp.arch import parse_arch
from jaxmlp.backprop import hand_value_and_grad
from jaxmlp.config import TrainConfig, check_resume, resume_length
from jaxmlp.cross_entropy import cross_entropy
from jaxmlp.data import (Dataset, check_dataset, default_data_dir, load_dataset,
                         with_validation)
from jaxmlp.images import prepare_images
from jaxmlp.metrics import evaluate, metrics
from jaxmlp.mlp import forward, init_params
from jaxmlp.optim import make_optimizer
from jaxmlp.parallel import (DATA, check_batch, feed_batches, make_mesh, put_replicated,
                             to_host)
from jaxmlp.run import RunFolder, RunWriteError, kept, read_checkpoint, read_config, read_history

__all__ = ["TrainConfig", "TrainingDiverged", "TrainingInterrupted", "train_and_evaluate",
           "make_optimizer", "make_step", "make_epoch", "make_fed_epoch", "shuffle"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``step`` is the last saved step (None: nothing was saved)."""

    def __init__(self, step: Optional[int]):
        super().__init__(step)
        self.step = step


def _autodiff_value_and_grad(params, x, y, arch):
    def loss_and_logits(params):
        logits = forward(params, x, arch)
        return jnp.mean(cross_entropy(logits, y)), logits
    return jax.value_and_grad(loss_and_logits, has_aux=True)(params)


def make_step(arch, optimizer: optax.GradientTransformation, grad: str):
    """One SGD step ``(params, opt_state, images_u8, labels) → (params, opt_state, metrics)``.

    ``metrics`` is ``jaxmlp.metrics.metrics`` of the batch (``loss``, ``accuracy``). Not
    jitted by itself: the epoch scan and the per-step baseline each jit it in their own way.
    """
    arch = parse_arch(arch)
    value_and_grad = hand_value_and_grad if grad == "hand" else _autodiff_value_and_grad

    def step(params, opt_state, images, labels):
        x = prepare_images(images, in_dim=images.shape[-1])  # uint8 on device, scaled here
        (_, logits), grads = value_and_grad(params, x, labels, arch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics(logits, labels)

    return step


def shuffle(key: jax.Array, n: int) -> jax.Array:
    """A random permutation of ``range(n)``: the indices sorted by 32 random bits each.

    One sort instead of ``jax.random.permutation``'s rounds, which cost a fifth of a
    preset-b epoch on CPU. (Ties among the 32-bit keys, about n²/2³³ pairs, keep their
    order: a negligible bias for an SGD shuffle.)
    """
    return jax.lax.sort_key_val(jax.random.bits(key, (n,), jnp.uint32),
                                jnp.arange(n, dtype=jnp.int32))[1]


def make_epoch(step, batch_size: int, mesh=None):
    """A jitted epoch: ``num_steps`` steps of one shuffled order in one ``lax.scan``.

    Returns ``run(params, opt_state, images, labels, key, start, num_steps)`` →
    ``(params, opt_state, metrics)`` with per-step ``loss`` and ``accuracy`` arrays:
    the batches are ``start`` to ``start + num_steps`` of ``shuffle(key)`` (the
    remainder that does not fill a batch is never used, so every step has one shape).
    Params and optimizer state are donated: their buffers are reused, not copied.
    With a ``mesh``, each batch is split along its ``data`` axis (the dataset and params
    being replicated), so every device gathers and trains on its share.
    """
    shard = ((lambda x: x) if mesh is None else lambda x: jax.lax.with_sharding_constraint(
        x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DATA))))

    @functools.partial(jax.jit, static_argnums=6, donate_argnums=(0, 1))
    def run(params, opt_state, images, labels, key, start, num_steps):
        order = jax.lax.dynamic_slice_in_dim(shuffle(key, images.shape[0]),
                                             start * batch_size, num_steps * batch_size)

        def body(carry, idx):
            params, opt_state, metrics = step(*carry, shard(images[idx]), shard(labels[idx]))
            return (params, opt_state), metrics

        (params, opt_state), metrics = jax.lax.scan(
            body, (params, opt_state), order.reshape(num_steps, batch_size))
        return params, opt_state, metrics

    return run


def make_fed_epoch(step):
    """A jitted epoch over batches cut beforehand: ``run(params, opt_state, xs, ys)``.

    For multi-process runs, where each process feeds its own columns of ``xs``
    ``(steps, B, 784)`` and ``ys`` ``(steps, B)`` (see ``parallel.feed_batches``).
    """
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def run(params, opt_state, xs, ys):
        def body(carry, batch):
            params, opt_state, metrics = step(*carry, *batch)
            return (params, opt_state), metrics

        (params, opt_state), metrics = jax.lax.scan(body, (params, opt_state), (xs, ys))
        return params, opt_state, metrics

    return run


def make_epoch_runner(step, data: Dataset, batch_size: int, mesh):
    """``run(params, opt_state, key, start, n) → (params, opt_state, metrics, compile_s)``.

    The same call for one process and for many: one process has the dataset on its
    devices (``data`` holds device arrays) and gathers batches there; several each cut
    their own columns of the same order from host arrays and feed only those. One executable per epoch length ``n``
    (a ``--steps`` run may end mid-epoch), compiled ahead so its cost is reported apart.
    """
    compiled = {}
    if jax.process_count() == 1:
        epoch = make_epoch(step, batch_size, mesh)
        inputs = lambda key, start, n: (data.train_images, data.train_labels, key, start)
    else:
        epoch = make_fed_epoch(step)
        inputs = lambda key, start, n: feed_batches(
            data.train_images, data.train_labels, np.asarray(shuffle(key, len(data.train_labels))
                                                             )[start * batch_size:][:n * batch_size],
            batch_size, mesh)

    def run(params, opt_state, key, start, n):
        args = (params, opt_state, *inputs(key, start, n))
        seconds = 0.0
        if n not in compiled:
            begin = time.perf_counter()
            static = (n,) if jax.process_count() == 1 else ()
            compiled[n] = epoch.lower(*args, *static).compile()
            seconds = time.perf_counter() - begin
        return (*compiled[n](*args), seconds)

    return run


def seconds_since_process_start() -> Optional[float]:
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


def _state(params, opt_state, step, key) -> dict:
    """The checkpoint: params, optimizer state, step and the run's data key."""
    return {"params": params, "opt_state": opt_state, "step": jnp.asarray(step, jnp.int32),
            "key": jax.random.key_data(key)}


def _start(config: TrainConfig, optimizer, folder, resume: bool, steps_per_epoch: int,
           in_dim: int):
    """``(state, history, num_steps)``: fresh from the seed, or as saved in ``folder``."""
    data_key, init_key = jax.random.split(jax.random.key(config.seed))
    # Jitted: one executable (cached across runs) instead of an eager op per layer.
    params = jax.jit(init_params, static_argnums=(1, 2))(init_key, parse_arch(config.arch),
                                                         in_dim)
    state = _state(params, optimizer.init(params), 0, data_key)
    if not resume:
        return state, [], config.num_steps(steps_per_epoch)
    saved = read_config(folder)
    state = read_checkpoint(folder, state)
    done = int(state["step"])
    num_steps = resume_length(saved, config, done, steps_per_epoch)
    history = [h for h in read_history(folder) if h["step"] <= done]  # drop a lost epoch's line
    return {**state, "key": jax.random.wrap_key_data(state["key"])}, history, num_steps


def load_data(config: TrainConfig, data: Optional[Dataset]) -> tuple[Dataset, TrainConfig]:
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
        where = str(Path(config.data_dir or default_data_dir()).expanduser().resolve())
        config = dataclasses.replace(config, data_dir=where)
    data = with_validation(data, config.val_size)
    if config.batch_size > len(data.train_labels):
        held = f" (--val-size {config.val_size} holds out the rest)" if config.val_size else ""
        raise ValueError(f"batch size {config.batch_size} is larger than the "
                         f"{len(data.train_labels)} training examples{held}")
    return data, config


def put_dataset(data: Dataset, mesh) -> Dataset:
    """``data`` with every array replicated on the mesh's devices (``info`` stays)."""
    arrays = {k: v for k, v in data._asdict().items() if k != "info" and v is not None}
    return data._replace(**dict(zip(arrays, put_replicated(tuple(arrays.values()), mesh))))


def _host_state(params, opt_state, step, key) -> dict:
    return jax.tree.map(to_host, _state(params, opt_state, step, key))


def train_and_evaluate(config: TrainConfig, out=None, *, resume: bool = False,
                       overwrite: bool = False, data: Optional[Dataset] = None, log=print,
                       progress: bool = False) -> dict:
    """Trains ``config.arch`` on ``config.dataset`` and evaluates it after every epoch.

    Args:
      config: the run.
      out: its run folder (``jaxmlp.run``); nothing is written when ``None``.
      resume: continue the run saved in ``out`` (exactly: same data order, same
        arithmetic) up to ``config``'s length, under ``jaxmlp.config.resume_length``'s rules.
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
    if not isinstance(config, TrainConfig):  # TrainConfig checked its settings when built
        raise TypeError(f"config must be a jaxmlp.TrainConfig, got {type(config).__name__}")
    if (resume or overwrite) and out is None:
        raise ValueError("resume and overwrite need the run's folder (out)")
    writer = jax.process_index() == 0  # only process 0 speaks and writes
    folder = RunFolder.open(out, resume=resume, overwrite=overwrite) if out and writer else None
    if not writer:
        log = lambda line: None
    with folder or contextlib.nullcontext():
        if resume:  # before the data and checkpoint: a new --dataset or --arch is named as such
            check_resume(read_config(out), config)
        data, config = load_data(config, data)
        num_train = len(data.train_labels)
        mesh = make_mesh(config.devices)
        check_batch(config.batch_size, mesh)
        spe = num_train // config.batch_size  # steps per epoch
        # The optimizer state's structure does not depend on the schedule's length, which
        # a resume learns only from its checkpoint.
        state, history, num_steps = _start(config, make_optimizer(config, 1),
                                           out and Path(out), resume, spe, data.info.in_dim)
        config.check_length(num_steps)
        if resume:
            log(f"resumed from {out} at step {int(state['step'])}")
        # One process: the arrays go to the devices once; every epoch reuses them.
        if jax.process_count() == 1:
            data = put_dataset(data, mesh)
        step_fn = make_step(config.arch, make_optimizer(config, num_steps), config.grad)
        run_epoch = make_epoch_runner(step_fn, data, config.batch_size, mesh)
        loop = _Loop(config, data, folder, log, progress, mesh)
        return loop.run(state, history, num_steps, run_epoch, spe)


class _Loop:
    """The epoch loop of ``train_and_evaluate``: train, check, evaluate, save, log."""

    def __init__(self, config, data, folder, log, progress, mesh):
        self.config, self.data, self.folder, self.log, self.mesh = config, data, folder, log, mesh
        self.info = data.info
        self.progress = progress
        self.saved_step = None  # the step of the newest checkpoint on disk
        self.sets = data.splits()
        # What --target-accuracy (and any choice among epochs) looks at: never the test set
        # when there is a validation split.
        self.watch = "val_acc" if "val" in self.sets else "test_acc"

    def run(self, state, history, num_steps, run_epoch, spe) -> dict:
        config, folder, log = self.config, self.folder, self.log
        params, opt_state = put_replicated((state["params"], state["opt_state"]), self.mesh)
        step, data_key = int(state["step"]), state["key"]
        if folder is not None and step:
            self.saved_step = step  # resumed from it
        target = config.target_accuracy
        reached = history and target is not None and history[-1][self.watch] >= target
        if reached:
            num_steps = step  # a run that stopped at its target is complete
        bar = self._bar(num_steps, step) if step < num_steps else None
        first = True
        try:
            while step < num_steps:
                epoch, start = step // spe + 1, step % spe
                n = min(spe - start, num_steps - step)
                startup = seconds_since_process_start() if first else None
                begin = time.perf_counter()
                params, opt_state, batch, compile_s = run_epoch(
                    params, opt_state, jax.random.fold_in(data_key, epoch), start, n)
                losses = to_host(batch["loss"])  # the one host sync of the epoch
                seconds = time.perf_counter() - begin - compile_s
                self._check_finite(losses, step, epoch)
                accuracies = to_host(batch["accuracy"])
                for i in range(n):
                    if (step + i) % config.log_every == 0:
                        log(f"iter {step + i}, J={losses[i]:.6f}, accu={accuracies[i]:.2f}")
                step += n
                host = _host_state(params, opt_state, step, data_key)
                record = {"epoch": epoch, "step": step, **self._evaluate(host["params"]),
                          "epoch_seconds": seconds, "batch_loss_mean": float(losses.mean()),
                          "compile_seconds": compile_s}
                if startup is not None:
                    record["startup_seconds"] = startup  # process start → this first step
                first = False
                # One line per epoch: a partial epoch's line is replaced when a resume ends it.
                history = [h for h in history if h["epoch"] != epoch] + [record]
                if folder is not None:  # saved before it is announced: a kill loses no epoch
                    self._save(host, history)
                log(f"epoch {epoch}, step {step}: " + " | ".join(
                    f"{split} J={record[split + '_loss']:.4f} accu={record[split + '_acc']:.4f}"
                    for split in self.sets) + f" ({seconds:.2f}s)")
                if bar is not None:
                    bar.update(n)
                    bar.set_postfix({self.watch: f"{record[self.watch]:.4f}"})
                if target is not None and record[self.watch] >= target:
                    what = "validation" if self.watch == "val_acc" else "test"
                    log(f"reached {what} accuracy {record[self.watch]:.4f} >= {target} at step "
                        f"{step}: stopping")
                    break
        except KeyboardInterrupt:
            raise TrainingInterrupted(self.saved_step) from None
        finally:
            if bar is not None:
                bar.close()
            if folder is not None and folder.saved:
                folder.plot(history, title=f"arch {config.arch}")  # also after Ctrl-C
        if step == int(state["step"]) and reached:
            log(f"the run stopped at its target at step {step} ({self.watch} "
                f"{history[-1][self.watch]:.4f} >= {target}): nothing to do (pass a higher "
                "--target-accuracy, up to 1, to train on)")
        elif step == int(state["step"]) and history:
            log(f"the run is already complete at step {step}: nothing to do (ask for more "
                "--epochs or --steps to extend it)")
        last = history[-1] if history else {}
        return {"params": params, "history": history, "steps": step,
                "test_accuracy": last.get("test_acc"), "val_accuracy": last.get("val_acc")}

    def _save(self, host_state, history) -> None:
        try:
            self.folder.save_epoch(self.config, host_state, history, self.info)
        except RunWriteError as e:
            raise RunWriteError(e.errno, f"{e.strerror}; {kept(self.folder.path, self.saved_step)}"
                                ) from None
        self.saved_step = int(host_state["step"])

    def _check_finite(self, losses, step, epoch) -> None:
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            left = "" if self.folder is None else "; " + kept(self.folder.path, self.saved_step)
            raise TrainingDiverged(
                f"loss became {losses[bad[0]]} at step {step + bad[0]} (epoch {epoch}); "
                f"stopping{left}. Try a smaller --lr" + (" or --weight-decay"
                                                         if self.config.weight_decay else "")
                + ".")

    def _evaluate(self, params) -> dict:
        arch = parse_arch(self.config.arch)
        record = {}
        for split, (images, labels) in self.sets.items():
            result = evaluate(params, images, labels, arch)
            record[f"{split}_loss"], record[f"{split}_acc"] = result["loss"], result["accuracy"]
        return record

    def _bar(self, total, initial):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, unit="step", file=sys.stderr,
                    desc=f"arch {self.config.arch}")
