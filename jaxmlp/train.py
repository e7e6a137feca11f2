"""Training on MNIST: a jitted Optax SGD step, whole epochs as one ``lax.scan`` on device.

The dataset lives on the device as uint8 and is scaled inside the compiled code; each
epoch is one call, so the host syncs once per epoch, not once per step.
"""
import dataclasses
import functools
import json
import math
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
from jaxmlp.checkpoint import load_checkpoint, save_checkpoint
from jaxmlp.cross_entropy import cross_entropy
from jaxmlp.data import IMAGE_PIXELS, Mnist, load_mnist
from jaxmlp.mlp import forward, init_params
from jaxmlp.parallel import (DATA, check_batch, make_mesh, put_batches, put_replicated,
                             to_host)

GRADS = ("hand", "autodiff")
SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run (saved as ``config.json`` beside its outputs)."""

    arch: str = "b"
    epochs: int = 10
    steps: Optional[int] = None  # total SGD steps; overrides ``epochs`` when set
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "cosine"  # learning rate: constant, or cosine decay to 0 over the run
    seed: int = 0
    grad: str = "hand"  # "hand": hand-written backward pass; "autodiff": jax.grad
    log_every: int = 1000
    target_accuracy: Optional[float] = None  # stop after the epoch whose test accuracy reaches it
    devices: Optional[int] = None  # devices of the data-parallel mesh (default: all)
    data_dir: Optional[str] = None
    manual_dir: Optional[str] = None
    download: bool = True

    def validate(self) -> "TrainConfig":
        parse_arch(self.arch)
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.steps is None or self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (math.isfinite(self.lr) and self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.grad in GRADS, f"grad must be one of {GRADS}, got {self.grad!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}"),
            (self.devices is None or self.devices >= 1,
             f"devices must be >= 1, got {self.devices}"),
            (self.target_accuracy is None or 0 < self.target_accuracy <= 1,
             f"target accuracy must be in (0, 1], got {self.target_accuracy}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def total_steps(config: TrainConfig, num_train: int) -> int:
    steps_per_epoch = num_train // config.batch_size
    return config.steps if config.steps is not None else config.epochs * steps_per_epoch


def make_optimizer(config: TrainConfig, num_steps: int) -> optax.GradientTransformation:
    """``optax.sgd`` with the config's momentum/Nesterov and learning-rate schedule."""
    lr = (optax.cosine_decay_schedule(config.lr, num_steps) if config.schedule == "cosine"
          else config.lr)
    return optax.sgd(lr, momentum=config.momentum or None, nesterov=config.nesterov)


def _autodiff_value_and_grad(params, x, y, arch):
    def loss_and_logits(params):
        logits = forward(params, x, arch)
        return jnp.mean(cross_entropy(logits, y)), logits
    return jax.value_and_grad(loss_and_logits, has_aux=True)(params)


def make_step(arch, optimizer: optax.GradientTransformation, grad: str):
    """One SGD step ``(params, opt_state, images_u8, labels) → (params, opt_state, metrics)``.

    ``metrics`` holds the batch's ``loss`` and ``accuracy``. Not jitted by itself: the
    epoch scan and the per-step baseline each jit it in their own way.
    """
    arch = parse_arch(arch)
    value_and_grad = hand_value_and_grad if grad == "hand" else _autodiff_value_and_grad

    def step(params, opt_state, images, labels):
        x = images.astype(jnp.float32) / 255.0  # uint8 on device, scaled here
        (value, logits), grads = value_and_grad(params, x, labels, arch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
        return params, opt_state, {"loss": value, "accuracy": accuracy}

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
    """A jitted epoch: shuffle with ``key``, run ``num_steps`` steps in one ``lax.scan``.

    Returns ``run(params, opt_state, images, labels, key, num_steps)`` →
    ``(params, opt_state, metrics)`` with per-step ``loss`` and ``accuracy`` arrays.
    The remainder that does not fill a batch is dropped so every step has one shape.
    Params and optimizer state are donated: their buffers are reused, not copied.
    With a ``mesh``, each batch is split along its ``data`` axis (the dataset and params
    being replicated), so every device gathers and trains on its share.
    """
    shard = ((lambda x: x) if mesh is None else lambda x: jax.lax.with_sharding_constraint(
        x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DATA))))

    @functools.partial(jax.jit, static_argnums=5, donate_argnums=(0, 1))
    def run(params, opt_state, images, labels, key, num_steps):
        order = shuffle(key, images.shape[0])[:num_steps * batch_size]

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
    ``(steps, B, 784)`` and ``ys`` ``(steps, B)`` (see ``parallel.put_batches``).
    """
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def run(params, opt_state, xs, ys):
        def body(carry, batch):
            params, opt_state, metrics = step(*carry, *batch)
            return (params, opt_state), metrics

        (params, opt_state), metrics = jax.lax.scan(body, (params, opt_state), (xs, ys))
        return params, opt_state, metrics

    return run


@functools.partial(jax.jit, static_argnums=3)
def evaluate(params, images, labels, arch):
    """Mean loss and accuracy of ``params`` on a whole uint8 image set, in one call."""
    logits = forward(params, images.astype(jnp.float32) / 255.0, arch)
    return jnp.mean(cross_entropy(logits, labels)), jnp.mean(jnp.argmax(logits, -1) == labels)


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


def _state(params, opt_state, step, key):
    return {"params": params, "opt_state": opt_state, "step": jnp.asarray(step, jnp.int32),
            "key": jax.random.key_data(key)}


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def train_and_evaluate(config: TrainConfig, out: Optional[str] = None, *, resume: bool = False,
                       data: Optional[Mnist] = None, log=print, progress: bool = False) -> dict:
    """Trains ``config.arch`` on MNIST and evaluates it every epoch.

    Args:
      config: the run.
      out: folder for ``config.json``, ``metrics.jsonl``, ``checkpoint.npz`` and
        ``curves.png``; nothing is written when ``None``.
      resume: continue from ``out/checkpoint.npz`` (exactly: same data order, same
        arithmetic) up to ``config``'s epochs/steps.
      data: MNIST arrays; loaded with ``load_mnist`` from the config when ``None``.
      log: where log lines go.
      progress: show a tqdm bar that advances once per epoch.

    Returns:
      ``{"params", "history", "test_accuracy", "steps"}``.

    Raises:
      TrainingDiverged: the loss became NaN or infinite.
    """
    config.validate()
    if resume and out is None:
        raise ValueError("resume needs the run's folder (out)")
    arch = parse_arch(config.arch)
    if data is None:
        data = load_mnist(data_dir=config.data_dir, manual_dir=config.manual_dir,
                          download=config.download)
    num_train = len(data.train_labels)
    if config.batch_size > num_train:
        raise ValueError(f"batch size {config.batch_size} is larger than the {num_train} "
                         "training examples")
    mesh = make_mesh(config.devices)
    check_batch(config.batch_size, mesh)
    processes, process = jax.process_count(), jax.process_index()
    steps_per_epoch = num_train // config.batch_size
    num_steps = total_steps(config, num_train)
    optimizer = make_optimizer(config, num_steps)
    step_fn = make_step(arch, optimizer, config.grad)
    # One process: the dataset sits on the devices and batches are gathered there. Several:
    # each process cuts its own share of every batch on the host and feeds only that.
    run_epoch = (make_epoch(step_fn, config.batch_size, mesh) if processes == 1
                 else make_fed_epoch(step_fn))
    if process:
        log = lambda line: None  # only process 0 speaks and writes

    key, init_key = jax.random.split(jax.random.key(config.seed))
    # Jitted: one executable (cached across runs) instead of an eager op per layer.
    params = jax.jit(init_params, static_argnums=(1, 2))(init_key, arch, IMAGE_PIXELS)
    opt_state = optimizer.init(params)
    step = 0
    out_dir = Path(out) if out is not None else None
    writes = out_dir is not None and process == 0
    history = []
    if out_dir is not None:
        if writes:
            out_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            state = load_checkpoint(out_dir / "checkpoint.npz", _state(params, opt_state, 0, key))
            params, opt_state = state["params"], state["opt_state"]
            step, key = int(state["step"]), jax.random.wrap_key_data(state["key"])
            metrics_path = out_dir / "metrics.jsonl"
            if metrics_path.exists():
                history = [json.loads(line) for line in metrics_path.read_text().splitlines()
                           if line.strip() and json.loads(line)["step"] <= step]
            log(f"resumed from {out_dir / 'checkpoint.npz'} at step {step}")
    if writes:
        _write_json(out_dir / "config.json", dataclasses.asdict(config))
        # Rewritten from the kept history: a resumed run drops lines of a lost epoch.
        (out_dir / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    params, opt_state = put_replicated((params, opt_state), mesh)
    # Host arrays move to the devices once; every epoch reuses them.
    train_x, train_y, test_x, test_y = put_replicated(tuple(data), mesh)

    compiled = {}  # one executable per epoch length (a --steps run may end mid-epoch)
    first_here = True  # this process's first epoch records its start-up time
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=num_steps, initial=step, unit="step", file=sys.stderr,
                   desc=f"arch {config.arch}")
    try:
        while step < num_steps:
            epoch = step // steps_per_epoch + 1
            n = min(steps_per_epoch, num_steps - step)
            key, epoch_key = jax.random.split(key)
            if processes == 1:
                inputs = (train_x, train_y, epoch_key)
            else:  # the same order as one process would use; this process's columns of it
                order = np.asarray(shuffle(epoch_key, num_train))[:n * config.batch_size]
                order = order.reshape(n, processes, -1)[:, process]
                inputs = (put_batches(data.train_images[order], (n, config.batch_size,
                                                                 IMAGE_PIXELS), mesh),
                          put_batches(data.train_labels[order], (n, config.batch_size), mesh))
            compile_seconds = 0.0
            if n not in compiled:  # compiled ahead of time so its cost is reported apart
                start = time.perf_counter()
                static = (n,) if processes == 1 else ()
                compiled[n] = run_epoch.lower(params, opt_state, *inputs, *static).compile()
                compile_seconds = time.perf_counter() - start
            startup = seconds_since_process_start() if first_here else None
            start = time.perf_counter()
            params, opt_state, metrics = compiled[n](params, opt_state, *inputs)
            losses = to_host(metrics["loss"])  # the one host sync of the epoch
            seconds = time.perf_counter() - start
            accuracies = to_host(metrics["accuracy"])
            bad = np.flatnonzero(~np.isfinite(losses))
            if bad.size:
                where = (f"; the last good checkpoint (step {step}) is kept in {out_dir}"
                         if out_dir is not None else "")
                raise TrainingDiverged(
                    f"loss became {losses[bad[0]]} at step {step + bad[0]} (epoch {epoch}); "
                    f"stopping{where}. Try a smaller --lr.")
            for i in range(n):
                if (step + i) % config.log_every == 0:
                    log(f"iter {step + i}, J={losses[i]:.6f}, accu={accuracies[i]:.2f}")
            step += n
            train_loss, train_acc = evaluate(params, train_x, train_y, arch)
            test_loss, test_acc = evaluate(params, test_x, test_y, arch)
            record = {"epoch": epoch, "step": step, "train_loss": float(to_host(train_loss)),
                      "train_acc": float(to_host(train_acc)),
                      "test_loss": float(to_host(test_loss)),
                      "test_acc": float(to_host(test_acc)), "epoch_seconds": seconds,
                      "batch_loss_mean": float(losses.mean()),
                      "compile_seconds": compile_seconds}
            if startup is not None:
                record["startup_seconds"] = startup  # process start → this first step
            first_here = False
            history.append(record)
            if writes:  # saved before it is announced: a kill loses no epoch
                save_checkpoint(out_dir / "checkpoint.npz",
                                jax.tree.map(to_host, _state(params, opt_state, step, key)))
                with open(out_dir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
            log(f"epoch {epoch}, step {step}: train J={record['train_loss']:.4f} "
                f"accu={record['train_acc']:.4f} | test J={record['test_loss']:.4f} "
                f"accu={record['test_acc']:.4f} ({seconds:.2f}s)")
            if bar is not None:
                bar.update(n)
                bar.set_postfix(test_acc=f"{record['test_acc']:.4f}")
            if config.target_accuracy is not None and record["test_acc"] >= config.target_accuracy:
                log(f"reached test accuracy {record['test_acc']:.4f} >= "
                    f"{config.target_accuracy} at step {step}: stopping")
                break
    finally:
        if bar is not None:
            bar.close()
    if writes and history:
        from jaxmlp.plot import plot_history
        plot_history(history, out_dir / "curves.png", title=f"arch {config.arch}")
    return {"params": params, "history": history, "steps": step,
            "test_accuracy": history[-1]["test_acc"] if history else None}
