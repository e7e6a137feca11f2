"""How a grid's models sit on the devices: the ``Layout`` protocol the training loop
(``jaxmlp._trainer._Loop``) asks of them, met by ``jaxmlp._trainer._One`` (a single run) and
``jaxmlp._sweep.Stack`` (a sweep), and what both share: the dataset put on the devices
once, the sets each epoch evaluates, the model a run is evaluated as, and the memory check
made before anything is allocated.
"""
import os
from typing import Optional, Protocol

import jax
import numpy as np

from jaxmlp._config import TrainConfig
from jaxmlp._data import Dataset
from jaxmlp._optim import OPTIMIZERS, ema_of
from jaxmlp._parallel import put_replicated
from jaxmlp._run import RunFolder


def put_dataset(data: Dataset, mesh) -> Dataset:
    """``data`` with every array replicated on the mesh's devices (``info`` stays)."""
    arrays = {k: v for k, v in data._asdict().items() if k != "info" and v is not None}
    return data._replace(**dict(zip(arrays, put_replicated(tuple(arrays.values()), mesh))))


def eval_sets(data: Dataset, config: TrainConfig) -> dict:
    """What each epoch evaluates: ``data.splits()``, the training split cut to its first
    ``config.train_eval_size`` examples (a fixed sample: the whole split costs a sweep of 16
    more than half its epoch, for a figure the sample gives to about ±0.1%)."""
    sets = data.splits()
    n = config.train_eval_size
    if n:
        images, labels = sets["train"]
        sets["train"] = (images[:n], labels[:n])
    return sets


def model_params(config: TrainConfig, params, opt_state):
    """What a run is evaluated as, saves as its model and returns: its params, or with
    ``--ema`` their average (kept in the optimizer state, ``optim.ema``)."""
    return ema_of(opt_state) if config.ema is not None else params


def as_stack(tree):
    """A single model's pytree with a model axis of 1 (to evaluate it as a stack)."""
    return jax.tree.map(lambda a: np.asarray(a)[None], tree)


def _estimate_bytes(config: TrainConfig, num_models: int, order: str, *, in_dim: int,
                   num_examples: int) -> int:
    """Device memory ``num_models`` models need (a sweep's, or one run's), roughly: per
    model its params, gradients and optimizer state (``OPTIMIZERS[...]["copies"]``) and a
    batch's activations (forward values and their gradients), plus the dataset
    (``num_examples`` uint8 images of ``in_dim`` pixels and their int32 labels, every split)
    and, for independent orders, each model's own input batch."""
    arch, widths, batch_size = config.layers, [in_dim], config.batch_size
    params = 0
    for units, _ in arch:
        params += (widths[-1] + 1) * units
        widths.append(units)
    copies = int(OPTIMIZERS[config.optimizer]["copies"]) + (config.ema is not None)  # the average
    per_model = 4 * (copies * params + 3 * batch_size * sum(widths[1:]))
    inputs = 4 * batch_size * in_dim * (num_models if order == "independent" else 1)
    return num_models * per_model + inputs + num_examples * (in_dim + 4)


def check_memory(config: TrainConfig, num_models: int, order: str, data: Dataset,
                 devices) -> None:
    """``ValueError`` unless the models fit, roughly, in 80% of the ``devices``' memory
    (before anything is allocated: a net too wide for the machine is named, not met as an
    out-of-memory kill). A sweep's models are spread over the devices; a single run
    (``num_models`` 1) is replicated on each, so one device must hold it."""
    need = _estimate_bytes(config, num_models, order, in_dim=data.info.in_dim,
                          num_examples=sum(len(y) for _, y in data.splits().values()))
    # The CPU "devices" of a sweep are one host's cores: they share its memory, not add to it.
    # This process's own devices: another process's cannot be asked (a multi-process run).
    devices = [d for d in devices if getattr(d, "process_index", 0) == jax.process_index()
               ] or list(devices)
    spread = devices[0].platform != "cpu" and num_models > 1
    have = _available_bytes(devices[0]) * (len(devices) if spread else 1)
    if need > 0.8 * have:
        what, verb, cure = ((f"{num_models} models", "need", "sweep fewer models at once")
                            if num_models > 1 else ("one model", "needs", "choose a narrower "
                                                    "architecture or a smaller batch"))
        raise ValueError(f"{what} of {config.arch} on {data.info.name} {verb} about "
                         f"{need / 2**30:.1f} GiB, more than 80% of the {have / 2**30:.1f} GiB "
                         f"available: {cure}")


def _available_bytes(device) -> int:
    """What the device can hold: its allocator's limit, or the host's memory on CPU."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class Layout(Protocol):
    """How the models of a grid are laid out: ``_One`` (a single run) or
    ``jaxmlp._sweep.Stack`` (a sweep). ``_Loop`` asks nothing else of them, and never
    which one it holds. Arrays of ``losses`` are ``(steps, models)``; ``diverged`` is
    ``(models,)``."""

    num_models: int
    reached_by: str  # said after a target reached: "" or " (every live model)"

    def start(self, folder, saved: Optional[TrainConfig], spe: int) -> tuple[dict, list, int]:
        """``(state, history, num_steps)``: fresh, or (``saved``: the config of the run in
        ``folder``) as saved there."""
        ...

    def place(self, state, num_steps: int) -> tuple:
        """``(params, opt_state)`` on the devices; the epoch compiled for ``num_steps``."""
        ...

    def train(self, params, opt_state, epoch: int, start: int, n: int) -> tuple:
        """``n`` steps of ``epoch`` from batch ``start``: ``(params, opt_state, losses,
        accuracies, compile_seconds)``, the per-step figures on the host."""
        ...

    def host_state(self, params, opt_state, step: int) -> dict: ...

    def evaluate(self, params, host_params) -> dict: ...

    def record(self, evals: dict, losses, diverged) -> dict:
        """The models' figures in the epoch's line of ``metrics.jsonl``."""
        ...

    def batch_figures(self, losses) -> dict:
        """Figures of the epoch's batches for the line, after the timings."""
        ...

    def mean_of(self, live: int) -> str:
        """What an ``iter N`` line adds about whose figures it shows."""
        ...

    def save(self, folder: RunFolder, host: dict, history: list, keep_model: bool) -> None: ...

    def plot(self, folder: Optional[RunFolder], history: list) -> None:
        """Draws the curves of a saved run (also after Ctrl-C), where the layout has one."""
        ...

    def describe(self, record: dict, splits) -> str: ...

    def watched(self, record: dict, watch: str) -> list: ...

    def diverged_in(self, history) -> np.ndarray: ...

    def divergence(self, losses, step: int, epoch: int, diverged) -> str: ...

    def finish(self, folder, params, history, diverged) -> dict: ...
