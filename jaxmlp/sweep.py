"""Many models in one program: a grid of seeds × learning rates × momenta trained at once.

All K models' params and optimizer states are stacked along a leading model axis; one
jitted epoch (``lax.scan``) runs ``jax.vmap`` of jaxmlp's own step (``make_step``) over that
axis, each model with its own learning rate and momentum. On several devices the model axis
is sharded (``PartitionSpec("model")``): the models never talk to each other, so no
all-reduce is needed.

How seeds map: model i with seed s initialises from ``split(key(s))[1]``, exactly as
``jaxmlp train --seed s`` does. With ``order="independent"`` its epoch e takes the batches
of ``shuffle(fold_in(split(key(s))[0], e))``, as that single run does, so its params equal
the single run's (float32 rounding aside). With ``order="shared"`` (the default, and the
cheapest: the input is not batched along the model axis) every model takes the batches of
the grid's first seed.

Any dataset and optimizer a single run takes, a sweep takes: the swept ``momentum`` is
SGD's momentum or Adam's, AdamW's and Lion's ``b1`` (``jaxmlp.optim.make_optimizer``). With
``config.val_size`` every model is also evaluated on the validation split each epoch, and
the best setting is the one whose ensemble is most accurate on it: the test split is
reported, never chosen on.
"""
import contextlib
import dataclasses
import functools
import itertools
import os
import time
from pathlib import Path
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxmlp.arch import parse_arch
from jaxmlp.checkpoint import read_npz, save_checkpoint
from jaxmlp.config import TrainConfig, check_resume, resume_length
from jaxmlp.data import MNIST, Dataset, DatasetInfo
from jaxmlp.images import check_image_shape
from jaxmlp.metrics import evaluate
from jaxmlp.mlp import init_params
from jaxmlp.parallel import make_mesh
from jaxmlp.predict import predict
from jaxmlp.run import (CHECKPOINT, METRICS, SUMMARY, SWEEP, RunError, RunFolder, RunWriteError,
                        kept, read_json, write_json, read_checkpoint, read_history, write_jsonl)
from jaxmlp.optim import make_optimizer
from jaxmlp.train import (TrainingDiverged, TrainingInterrupted, load_data, make_step,
                          put_dataset, shuffle, to_host)

MODEL = "model"
ORDERS = ("shared", "independent")
# More models than any device holds at once (preset a: about 31 KiB each, so 100,000 is
# 3 GiB): refused before their configs are even built.
MAX_MODELS = 100_000


class Grid(NamedTuple):
    """The settings swept: every combination of ``lrs`` × ``momenta`` × ``seeds``."""

    seeds: tuple[int, ...]
    lrs: tuple[float, ...]
    momenta: tuple[float, ...]

    def models(self) -> list[dict]:
        """One ``{"seed", "lr", "momentum"}`` per model: settings outer, seeds inner."""
        return [{"seed": s, "lr": lr, "momentum": m}
                for lr, m, s in itertools.product(self.lrs, self.momenta, self.seeds)]

    def configs(self, base: TrainConfig) -> list[TrainConfig]:
        """Each model as the single run that ``jaxmlp train`` would make of it."""
        return [dataclasses.replace(base, **m) for m in self.models()]


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"16"`` → seeds 0 to 15; ``"0,3,7"`` (any comma) → those seeds."""
    try:
        if "," not in text:
            count = int(text)
            if not 1 <= count <= MAX_MODELS:
                raise ValueError(f"--seeds takes a count from 1 to {MAX_MODELS} or a list, got "
                                 f"{text!r}")
            return tuple(range(count))
        seeds = tuple(int(t) for t in text.split(","))  # an empty item is a mistake
    except ValueError as e:
        raise ValueError(str(e) if "--seeds" in str(e) else
                         f"--seeds takes a count (16) or a list (0,3,7), got {text!r}") from None
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"--seeds lists each seed once, got {text!r}")
    return seeds


def parse_floats(text: str, name: str) -> tuple[float, ...]:
    """``"0.02,0.05,0.1"`` → ``(0.02, 0.05, 0.1)``."""
    try:
        values = tuple(float(t) for t in str(text).split(","))  # "0.1,,0.2": a mistake
    except ValueError:
        raise ValueError(f"--{name} takes numbers separated by commas, got {text!r}") from None
    if not values or len(set(values)) != len(values):
        raise ValueError(f"--{name} lists each value once, got {text!r}")
    return values


def check_grid(base: TrainConfig, grid: Grid) -> None:
    """Every model's config is valid (``TrainConfig.validate``), or ``ValueError``."""
    count = len(grid.seeds) * len(grid.lrs) * len(grid.momenta)
    if count > MAX_MODELS:
        raise ValueError(f"the grid has {count} models, more than {MAX_MODELS}: sweep in parts")
    grid.configs(base)  # each model's TrainConfig checks itself as it is built


# Float32 copies of the params a model holds while it trains: the params, their gradients and
# the optimizer's state (SGD's momentum; Adam's and AdamW's two moments; Lion's one).
COPIES = {"sgd": 3, "adam": 4, "adamw": 4, "lion": 3}


def estimate_bytes(config: TrainConfig, num_models: int, order: str, *, in_dim: int,
                   num_examples: int) -> int:
    """Device memory a sweep needs, roughly: per model its params, gradients and optimizer
    state (``COPIES``) and a batch's activations (forward values and their gradients), plus
    the dataset (``num_examples`` uint8 images of ``in_dim`` pixels and their int32 labels,
    every split) and, for independent orders, each model's own input batch."""
    arch, widths, batch_size = parse_arch(config.arch), [in_dim], config.batch_size
    params = 0
    for units, _ in arch:
        params += (widths[-1] + 1) * units
        widths.append(units)
    copies = COPIES.get(config.optimizer, max(COPIES.values()))
    per_model = 4 * (copies * params + 3 * batch_size * sum(widths[1:]))
    inputs = 4 * batch_size * in_dim * (num_models if order == "independent" else 1)
    return num_models * per_model + inputs + num_examples * (in_dim + 4)


def check_memory(config: TrainConfig, num_models: int, order: str, data: Dataset,
                 devices) -> None:
    """``ValueError`` unless the sweep fits, roughly, in 80% of the ``devices``' memory."""
    need = estimate_bytes(config, num_models, order, in_dim=data.info.in_dim,
                          num_examples=sum(len(y) for _, y in data.splits().values()))
    # The CPU "devices" of a sweep are one host's cores: they share its memory, not add to it.
    have = available_bytes(devices[0]) * (1 if devices[0].platform == "cpu" else len(devices))
    if need > 0.8 * have:
        raise ValueError(f"{num_models} models of {config.arch} on {data.info.name} need about "
                         f"{need / 2**30:.1f} GiB, more than 80% of the {have / 2**30:.1f} GiB "
                         "available: sweep fewer models at once")


def available_bytes(device) -> int:
    """What the device can hold: its allocator's limit, or the host's memory on CPU."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def make_sweep_epoch(config: TrainConfig, num_steps: int, order: str, mesh: Mesh):
    """A jitted epoch of K models: ``run(params, opt_state, hyper, images, labels, keys,
    start, n)`` → ``(params, opt_state, metrics)`` with ``(n, K)`` losses and accuracies.

    ``hyper`` holds each model's ``lr`` and ``momentum`` ``(K,)``; ``keys`` each model's
    epoch key ``(K,)``. The batches are ``start`` to ``start + n`` of ``shuffle(keys[i])``
    for model i (independent) or of ``shuffle(keys[0])`` for all (shared).
    """
    arch, batch = parse_arch(config.arch), config.batch_size

    def step(params, opt_state, images, labels, hyper):
        optimizer = make_optimizer(config, num_steps, lr=hyper["lr"], momentum=hyper["momentum"])
        return make_step(arch, optimizer, config.grad)(params, opt_state, images, labels)

    shared = order == "shared"
    data_axis = None if shared else 0
    many = jax.vmap(step, in_axes=(0, 0, data_axis, data_axis, 0))
    per_model = NamedSharding(mesh, P(MODEL))

    @functools.partial(jax.jit, static_argnums=7, donate_argnums=(0, 1))
    def run(params, opt_state, hyper, images, labels, keys, start, n):
        def batches(key):
            order = shuffle(key, images.shape[0])
            return jax.lax.dynamic_slice_in_dim(order, start * batch, n * batch).reshape(n, batch)

        idx = batches(keys[0]) if shared else jnp.swapaxes(jax.vmap(batches)(keys), 0, 1)

        def body(carry, idx):
            x, y = images[idx], labels[idx]
            if not shared:  # each device gathers its own models' batches
                x, y = (jax.lax.with_sharding_constraint(a, per_model) for a in (x, y))
            params, opt_state, metrics = many(*carry, x, y, hyper)
            return (params, opt_state), metrics

        (params, opt_state), metrics = jax.lax.scan(body, (params, opt_state), idx)
        return params, opt_state, metrics

    return run


def init_models(config: TrainConfig, grid: Grid, num_steps: int, in_dim: int = MNIST.in_dim):
    """Stacked params, optimizer states, hyperparameters and data keys of every model, for
    inputs of ``in_dim`` pixels (the dataset's ``info.in_dim``)."""
    models = grid.models()
    keys = jax.vmap(jax.random.split)(jax.vmap(jax.random.key)(
        jnp.asarray([m["seed"] for m in models], jnp.uint32)))
    data_keys, init_keys = keys[:, 0], keys[:, 1]
    arch = parse_arch(config.arch)
    params = jax.jit(jax.vmap(lambda k: init_params(k, arch, in_dim)))(init_keys)
    hyper = {"lr": jnp.asarray([m["lr"] for m in models], jnp.float32),
             "momentum": jnp.asarray([m["momentum"] for m in models], jnp.float32)}
    opt_state = jax.vmap(lambda p, h: make_optimizer(config, num_steps, lr=h["lr"],
                                                     momentum=h["momentum"]).init(p))(params, hyper)
    return {"params": params, "opt_state": opt_state, "step": jnp.int32(0),
            "key": jax.random.key_data(data_keys)}, hyper


def _sweep_meta(config: TrainConfig, grid: Grid, order: str, info: DatasetInfo) -> dict:
    return {"config": dataclasses.asdict(config), "seeds": list(grid.seeds),
            "lrs": list(grid.lrs), "momenta": list(grid.momenta), "order": order,
            "dataset": {"name": info.name, "image_shape": list(info.image_shape),
                        "num_classes": info.num_classes}}


def read_sweep(folder) -> tuple[TrainConfig, Grid, str]:
    """The base config, grid and order saved in ``folder/sweep.json``."""
    path = Path(folder) / SWEEP
    meta = read_json(path)
    try:
        config = TrainConfig.from_dict(meta["config"])
        grid = Grid(tuple(meta["seeds"]), tuple(meta["lrs"]), tuple(meta["momenta"]))
        if meta["order"] not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}")
        return config, grid, meta["order"]
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{path} is not a jaxmlp sweep ({e})") from None


def read_sweep_info(folder) -> DatasetInfo:
    """The dataset the sweep in ``folder`` trained on (``sweep.json``'s ``dataset``); a
    sweep saved before datasets were recorded trained on MNIST."""
    path = Path(folder) / SWEEP
    meta = read_json(path)
    if not isinstance(meta, dict) or "dataset" not in meta:
        return MNIST
    try:
        d = meta["dataset"]
        info = DatasetInfo(d["name"], check_image_shape(d["image_shape"]), d["num_classes"])
        if not (isinstance(info.name, str) and type(info.num_classes) is int
                and info.num_classes >= 1):
            raise ValueError(f"dataset {d} is not a name, (height, width, channels) and a "
                             "class count")
        return info
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{path} is not a jaxmlp sweep ({e})") from None


def load_model_of_sweep(folder, model: int):
    """``(config, params, history, info)`` of model ``model`` of the sweep in ``folder``:
    its config as the single run it stands for, its params, its per-epoch records and the
    dataset it takes (``DatasetInfo``)."""
    config, grid, _ = read_sweep(folder)
    info = read_sweep_info(folder)
    configs = grid.configs(config)
    if not 0 <= model < len(configs):
        raise RunError(f"{folder} holds models 0 to {len(configs) - 1}, not {model}")
    arch = parse_arch(config.arch)
    try:
        arrays = read_npz(Path(folder) / CHECKPOINT)
        params = [{k: np.asarray(arrays[f"params/{j}/{k}"][model]) for k in ("w", "b")}
                  for j in range(len(arch))]
    except (FileNotFoundError, KeyError, IndexError, ValueError) as e:
        raise RunError(f"{folder}/{CHECKPOINT}: cannot read model {model} ({e})") from None
    fan_in = info.in_dim
    for j, ((units, _), layer) in enumerate(zip(arch, params)):
        if layer["w"].shape != (fan_in, units) or layer["b"].shape != (units,):
            raise RunError(f"{folder}/{CHECKPOINT}: layer {j} of model {model} has w "
                           f"{layer['w'].shape} and b {layer['b'].shape}, expected "
                           f"({fan_in}, {units}) and ({units},) for {info.name}")
        fan_in = units
    history = [{"epoch": h["epoch"], "step": h["step"], **h["models"][model]}
               for h in read_history(folder)]
    if (history and history[-1].get("diverged")) or not all(
            np.isfinite(layer[k]).all() for layer in params for k in ("w", "b")):
        raise RunError(f"model {model} of the sweep in {folder} diverged: it has no usable "
                       "weights (summary.json lists the models that trained)")
    return configs[model], params, history, info


def _stats(values: list, split: str) -> dict:
    """Mean, std (``ddof=1``; 0 for one value), min and max of ``{split}_acc`` over
    ``values`` (the finite ones); None each when there is none."""
    ok = np.array([v for v in values if v is not None], dtype=float)
    ok = ok[np.isfinite(ok)]
    return {f"{split}_acc_mean": float(ok.mean()) if ok.size else None,
            f"{split}_acc_std": float(ok.std(ddof=1)) if ok.size > 1 else 0.0 if ok.size else None,
            f"{split}_acc_min": float(ok.min()) if ok.size else None,
            f"{split}_acc_max": float(ok.max()) if ok.size else None}


def summarize(grid: Grid, records: list[dict], probs: np.ndarray, labels: np.ndarray, *,
              val_probs: Optional[np.ndarray] = None,
              val_labels: Optional[np.ndarray] = None) -> dict:
    """``summary.json``: one record per model, and per setting the mean, std (over its
    seeds, with ``ddof=1``; 0 for one seed), min and max of test accuracy and the test
    accuracy of its ensemble (the mean of its seeds' softmax probabilities).

    With a validation split (``val_probs`` ``(K, N_val, classes)`` and ``val_labels``; the
    records then hold ``val_acc``) each setting also gets those of validation accuracy
    (``val_acc_mean`` …, ``ensemble_val_acc``), and the best setting is the one with the
    most accurate validation ensemble; without, the one with the most accurate test
    ensemble. ``best["chosen_by"]`` names which.
    """
    validated = val_labels is not None
    settings = []
    per = len(grid.seeds)
    for k, (lr, momentum) in enumerate(itertools.product(grid.lrs, grid.momenta)):
        members = range(k * per, (k + 1) * per)
        alive = [i for i in members if not records[i]["diverged"]]
        ensemble = lambda p, y: float(np.mean(p[alive].mean(0).argmax(-1) == y)) if alive else None
        setting = {"lr": lr, "momentum": momentum, "seeds": list(grid.seeds),
                   "diverged": per - len(alive),
                   **_stats([records[i]["test_acc"] for i in alive], "test"),
                   "ensemble_test_acc": ensemble(probs, labels)}
        if validated:
            setting.update(_stats([records[i]["val_acc"] for i in alive], "val"),
                           ensemble_val_acc=ensemble(val_probs, val_labels))
        settings.append(setting)
    split = "val" if validated else "test"
    ranked = [s for s in settings if s[f"ensemble_{split}_acc"] is not None]
    best = max(ranked, key=lambda s: s[f"ensemble_{split}_acc"]) if ranked else None
    keys = ("lr", "momentum", *(("val_acc_mean", "ensemble_val_acc") if validated else ()),
            "test_acc_mean", "ensemble_test_acc")
    return {"models": records, "settings": settings,
            "best": None if best is None else {**{k: best[k] for k in keys},
                                               "chosen_by": f"ensemble_{split}_acc"}}


def format_summary(summary: dict) -> str:
    """The printed table: one line per model, then per setting mean ± std and ensemble
    (validation first, when there is a validation split), then the best setting and the
    split that chose it."""
    validated = any("val_acc" in r for r in summary["models"])
    lines = [f"{'model':>5}  {'seed':>6}  {'lr':>8}  {'momentum':>8}  "
             + (f"{'val_acc':>8}  " if validated else "")
             + f"{'test_acc':>8}  {'test_loss':>9}  {'train_acc':>9}"]
    for i, r in enumerate(summary["models"]):
        acc = "diverged" if r["diverged"] else f"{r['test_acc']:.4f}"
        val = "-" if r["diverged"] else f"{r.get('val_acc', 0):.4f}"
        loss = "-" if r["diverged"] else f"{r['test_loss']:.4f}"
        train = "-" if r["diverged"] else f"{r['train_acc']:.4f}"
        lines.append(f"{i:>5}  {r['seed']:>6}  {r['lr']:>8g}  {r['momentum']:>8g}  "
                     + (f"{val:>8}  " if validated else "")
                     + f"{acc:>8}  {loss:>9}  {train:>9}")

    def accuracy(s, split, name):
        return (f"{name} accuracy {s[split + '_acc_mean']:.4f} ± {s[split + '_acc_std']:.4f} "
                f"(min {s[split + '_acc_min']:.4f}, max {s[split + '_acc_max']:.4f}); ensemble "
                f"{s['ensemble_' + split + '_acc']:.4f}")

    for s in summary["settings"]:
        head = f"lr {s['lr']:g}, momentum {s['momentum']:g}, {len(s['seeds'])} seeds: "
        if s["test_acc_mean"] is None:
            lines.append(head + "every model diverged")
            continue
        lines.append(head + "; ".join(([accuracy(s, "val", "validation")] if validated else [])
                                      + [accuracy(s, "test", "test")])
                     + (f"; {s['diverged']} diverged" if s["diverged"] else ""))
    if summary["best"]:
        b = summary["best"]
        if b.get("chosen_by") == "ensemble_val_acc":
            lines.append(f"best setting (by validation ensemble): lr {b['lr']:g}, momentum "
                         f"{b['momentum']:g} (validation ensemble {b['ensemble_val_acc']:.4f}; "
                         f"its test ensemble {b['ensemble_test_acc']:.4f})")
        else:
            lines.append(f"best setting (by test ensemble: no validation split): lr "
                         f"{b['lr']:g}, momentum {b['momentum']:g} (ensemble "
                         f"{b['ensemble_test_acc']:.4f})")
    return "\n".join(lines)


def train_many(config: TrainConfig, grid: Grid, out=None, *, order: str = "shared",
               resume: bool = False, overwrite: bool = False, data: Optional[Dataset] = None,
               log=print) -> dict:
    """Trains every model of ``grid`` (on ``config``'s other settings) at once.

    Args:
      config: the settings the models share (its ``seed``, ``lr`` and ``momentum`` are
        replaced by each model's).
      grid: the seeds, learning rates and momenta; the models are their product.
      out: the sweep's folder (``sweep.json``, ``checkpoint.npz``, ``metrics.jsonl``,
        ``summary.json``, ``curves.png``); nothing is written when ``None``.
      order: ``"shared"`` or ``"independent"`` data order (module docstring).
      resume, overwrite, data, log: as for ``train_and_evaluate`` (``data`` must be
        ``config.dataset``, without a validation split: ``config.val_size`` holds one out).

    Returns:
      ``{"params"`` (stacked), ``"history"``, ``"summary"``, ``"steps"}``.
    """
    if not isinstance(config, TrainConfig):  # TrainConfig checked its settings when built
        raise TypeError(f"config must be a jaxmlp.TrainConfig, got {type(config).__name__}")
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a jaxmlp.sweep.Grid, got {type(grid).__name__}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    check_grid(config, grid)
    if config.target_accuracy is not None:
        raise ValueError("a sweep trains every model to the end: it takes no target accuracy")
    if (resume or overwrite) and out is None:
        raise ValueError("resume and overwrite need the sweep's folder (out)")
    num_models = len(grid.models())
    devices = list(make_mesh(config.devices).devices)  # its checks, its message
    if config.devices is None:  # as many as divide the models evenly
        devices = devices[:max(d for d in range(1, len(devices) + 1) if num_models % d == 0)]
    if num_models % len(devices):
        raise ValueError(f"{num_models} models do not split evenly over {len(devices)} "
                         f"devices; use a multiple of {len(devices)} models, or --devices")
    if resume:
        saved = read_sweep(out)
        if saved[1:] != (grid, order):
            raise ValueError("--resume cannot change the grid (--seeds, --lr, --momentum) or "
                             "--order of a sweep")
        check_resume(saved[0], config)
    folder = RunFolder.open(out, resume=resume, overwrite=overwrite) if out else None
    # A start that fails inside the folder's context changes nothing on disk (RunFolder).
    with folder or contextlib.nullcontext():
        data, config = load_data(config, data)  # checks the output layer against the data
        # Before anything is allocated on the devices: the estimate needs the dataset's size.
        check_memory(config, num_models, order, data, devices)
        mesh = Mesh(np.asarray(devices), (MODEL,))
        spe = len(data.train_labels) // config.batch_size
        num_steps = config.num_steps(spe)
        # The optimizer state's structure does not depend on the schedule's length, which
        # a resume learns only from its checkpoint.
        state, hyper = init_models(config, grid, num_steps, data.info.in_dim)
        history = []
        if resume:
            state = read_checkpoint(out, state)
            done = int(state["step"])
            num_steps = resume_length(saved[0], config, done, spe)
            history = [h for h in read_history(out) if h["step"] <= done]
            log(f"resumed from {out} at step {done}")
        config.check_length(num_steps)
        loop = _SweepLoop(config, grid, order, data, folder, log, mesh, num_steps, spe)
        return loop.run(state, hyper, history)


class _SweepLoop:
    """``train_many``'s epochs: train all models, evaluate each, save, log."""

    def __init__(self, config, grid, order, data, folder, log, mesh, num_steps, spe):
        self.config, self.grid, self.order, self.folder, self.log = config, grid, order, folder, log
        self.mesh, self.num_steps, self.spe = mesh, num_steps, spe
        self.host_data, self.info = data, data.info
        # On the devices once: every model's training and evaluation of every epoch reuse them.
        self.data = put_dataset(data, mesh)
        self.sets = self.data.splits()  # train, val (with a validation split), test
        self.epoch = make_sweep_epoch(config, num_steps, order, mesh)
        self.saved_step = None

    def run(self, state, hyper, history) -> dict:
        folder = self.folder
        per_model = NamedSharding(self.mesh, P(MODEL))
        params, opt_state, hyper = jax.device_put((state["params"], state["opt_state"], hyper),
                                                  per_model)
        data_keys = jax.random.wrap_key_data(jnp.asarray(state["key"]))
        step = int(state["step"])
        self.saved_step = step if step else None
        diverged = np.zeros(len(self.grid.models()), bool)
        if history:
            diverged = np.array([m.get("diverged", False) for m in history[-1]["models"]])
        compiled = {}
        try:
            while step < self.num_steps:
                epoch, start = step // self.spe + 1, step % self.spe
                n = min(self.spe - start, self.num_steps - step)
                keys = jax.device_put(jax.vmap(jax.random.fold_in, (0, None))(data_keys, epoch),
                                      per_model)
                args = (params, opt_state, hyper, self.data.train_images,
                        self.data.train_labels, keys, start)
                compile_s = 0.0
                if n not in compiled:
                    begin = time.perf_counter()
                    compiled[n] = self.epoch.lower(*args, n).compile()
                    compile_s = time.perf_counter() - begin
                begin = time.perf_counter()
                params, opt_state, batch = compiled[n](*args)
                losses = np.asarray(batch["loss"])  # (n, K): the epoch's one host sync
                seconds = time.perf_counter() - begin
                diverged |= ~np.isfinite(losses).all(axis=0)
                if diverged.all():
                    raise TrainingDiverged(f"every model's loss became NaN or infinite by step "
                                           f"{step + n} (epoch {epoch}). Try a smaller --lr" + (
                                               " or --weight-decay" if self.config.weight_decay
                                               else "") + ".")
                step += n
                host = jax.tree.map(to_host, {"params": params, "opt_state": opt_state})
                record = {"epoch": epoch, "step": step, "epoch_seconds": seconds,
                          "compile_seconds": compile_s,
                          "models": self._evaluate(host["params"], losses, diverged)}
                history = [h for h in history if h["epoch"] != epoch] + [record]
                if folder is not None:
                    self._save(host, step, state["key"], history)
                self.log(f"epoch {epoch}, step {step}: " + self._accuracies(record["models"])
                         + f" ({seconds:.2f}s)")
        except KeyboardInterrupt:
            raise TrainingInterrupted(self.saved_step) from None
        host_params = jax.tree.map(to_host, params)
        summary = self._summary(host_params, history, diverged)
        if folder is not None and history:
            from jaxmlp.plot import plot_sweep

            folder.save({SUMMARY: lambda p: write_json(p, summary),
                         "curves.png": lambda p: plot_sweep(history, self.grid, p)})
        return {"params": host_params, "history": history, "summary": summary, "steps": step}

    def _accuracies(self, models: list[dict]) -> str:
        """``"val accuracy m ± s, test accuracy m ± s over n models"`` of the live models
        (val only with a validation split)."""
        alive = [m for m in models if not m["diverged"]]
        parts = []
        for split in ("val", "test"):
            if split in self.sets:
                accs = [m[f"{split}_acc"] for m in alive]
                std = np.std(accs, ddof=1) if len(accs) > 1 else 0.0  # as in summary.json
                parts.append(f"{split} accuracy {np.mean(accs):.4f} ± {std:.4f}")
        return ", ".join(parts) + f" over {len(alive)} models"

    def _evaluate(self, params, losses, diverged) -> list[dict]:
        """Each model's loss and accuracy on every split (``{split}_loss``, ``{split}_acc``),
        None for a diverged model."""
        arch = parse_arch(self.config.arch)
        records = []
        for i in range(losses.shape[1]):
            record = {"diverged": bool(diverged[i])}
            model = None if diverged[i] else jax.tree.map(lambda a: a[i], params)
            for split in ("test", "val", "train"):  # the order of the records before val
                if split not in self.sets:
                    continue
                result = (evaluate(model, *self.sets[split], arch) if model is not None
                          else {"accuracy": None, "loss": None})
                record[f"{split}_acc"], record[f"{split}_loss"] = (result["accuracy"],
                                                                   result["loss"])
            if model is not None:
                record["batch_loss_mean"] = float(losses[:, i].mean())
            records.append(record)
        return records

    def _save(self, host, step, keys, history) -> None:
        state = {**host, "step": np.int32(step), "key": np.asarray(keys)}
        files = {METRICS: lambda p: write_jsonl(p, history),
                 CHECKPOINT: lambda p: save_checkpoint(p, state)}
        if not self.folder.saved:  # last: the settings never run ahead of the models
            files[SWEEP] = lambda p: write_json(p, _sweep_meta(self.config, self.grid,
                                                               self.order, self.info))
        try:
            self.folder.save(files)
        except RunWriteError as e:
            raise RunWriteError(e.errno, f"{e.strerror}; {kept(self.folder.path, self.saved_step)}"
                                ) from None
        self.saved_step = step

    def _summary(self, params, history, diverged) -> dict:
        arch = parse_arch(self.config.arch)
        last = history[-1]["models"] if history else []
        records = [{**m, **{k: v for k, v in r.items() if k in
                            ("val_acc", "val_loss", "test_acc", "test_loss", "train_acc",
                             "diverged")}}
                   for m, r in zip(self.grid.models(), last)]

        def probs(images):  # (K, N, classes); a diverged model's are zeros and never vote
            return np.stack([predict(jax.tree.map(lambda a: a[i], params), images, arch)
                             if not diverged[i] else
                             np.zeros((len(images), self.info.num_classes), np.float32)
                             for i in range(len(records))])

        data = self.host_data
        val = ({"val_probs": probs(data.val_images), "val_labels": data.val_labels}
               if data.val_labels is not None else {})
        return summarize(self.grid, records, probs(data.test_images), data.test_labels, **val)
