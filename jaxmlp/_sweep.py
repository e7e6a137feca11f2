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
SGD's momentum or Adam's, AdamW's and Lion's ``b1`` (``jaxmlp._optim.make_optimizer``). With
``config.val_size`` every model is also evaluated on the validation split each epoch, and
the best setting is the one whose ensemble is most accurate on it: the test split is
reported, never chosen on.
"""
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxmlp._checkpoint import checkpoint_state
from jaxmlp._config import Grid, TrainConfig
from jaxmlp._data import Dataset
from jaxmlp._epoch import MODEL_AXIS, config_step, make_stack_runner
from jaxmlp._layout import check_memory, eval_sets, put_dataset
from jaxmlp._metrics import evaluate_models, model_probabilities
from jaxmlp._mlp import init_params
from jaxmlp._optim import HyperState, make_optimizer
from jaxmlp._parallel import make_mesh, put_sharded, to_host
from jaxmlp._run import SUMMARY, RunFolder, history_to, read_checkpoint, resume_length


def _stats(values: list, split: str) -> dict:
    """Mean, std (``ddof=1``: None for one value, which has no spread), min and max of
    ``{split}_acc`` over ``values`` (the finite ones); None each when there is none."""
    ok = np.array([v for v in values if v is not None], dtype=float)
    ok = ok[np.isfinite(ok)]
    return {f"{split}_acc_mean": float(ok.mean()) if ok.size else None,
            f"{split}_acc_std": float(ok.std(ddof=1)) if ok.size > 1 else None,
            f"{split}_acc_min": float(ok.min()) if ok.size else None,
            f"{split}_acc_max": float(ok.max()) if ok.size else None}


def _summarize(grid: Grid, records: list[dict], probs: np.ndarray, labels: np.ndarray, *,
              val_probs: Optional[np.ndarray] = None,
              val_labels: Optional[np.ndarray] = None) -> dict:
    """``summary.json``: one record per model, and per setting the mean, std (over its
    seeds, with ``ddof=1``; None for one seed), min and max of test accuracy and the test
    accuracy of its ensemble (the mean of its seeds' softmax probabilities).

    With a validation split (``val_probs`` ``(K, N_val, classes)`` and ``val_labels``; the
    records then hold ``val_acc``) each setting also gets those of validation accuracy
    (``val_acc_mean`` …, ``ensemble_val_acc``), and the best setting is the one with the
    most accurate validation ensemble; without, the one with the most accurate test
    ensemble. ``best["chosen_by"]`` names which, ``best["setting"]`` its index K (``jaxmlp
    eval --ensemble --setting K``, ``load_ensemble(folder, K)``).
    """
    validated = val_labels is not None
    settings = []
    for k, (lr, momentum) in enumerate(grid.settings()):
        alive = [i for i in grid.members(k) if not records[i]["diverged"]]
        def ensemble(p, y, alive=alive):
            return float(np.mean(p[alive].mean(0).argmax(-1) == y)) if alive else None
        setting = {"lr": lr, "momentum": momentum, "seeds": list(grid.seeds),
                   "diverged": len(grid.seeds) - len(alive),
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
                                               "setting": settings.index(best),
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
        std = s[split + "_acc_std"]
        if std is None:  # one live seed: no spread, and its ensemble is itself
            return f"{name} accuracy {s[split + '_acc_mean']:.4f} (one model)"
        return (f"{name} accuracy {s[split + '_acc_mean']:.4f} ± {std:.4f} "
                f"(min {s[split + '_acc_min']:.4f}, max {s[split + '_acc_max']:.4f}); ensemble "
                f"{s['ensemble_' + split + '_acc']:.4f}")

    for s in summary["settings"]:
        seeds = len(s["seeds"])
        head = (f"lr {s['lr']:g}, momentum {s['momentum']:g}, {seeds} "
                f"seed{'s' if seeds != 1 else ''}: ")
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


def _summarize_models(grid: Grid, config: TrainConfig, params, history: list[dict],
                     diverged: np.ndarray, data: Dataset, host: Dataset) -> dict:
    """``summarize`` of a trained stack: the last epoch's records and every model's
    probabilities on the test (and validation) images of ``data`` (on the devices), computed
    there at once; the labels ``host``'s."""
    last = history[-1]["models"] if history else []
    records = [{**m, **{k: v for k, v in r.items() if k in
                        ("val_acc", "val_loss", "test_acc", "test_loss", "train_acc",
                         "diverged")}}
               for m, r in zip(grid.models(), last)]
    arch = config.layers

    def probs(images):  # (K, N, classes); a diverged model's are zeros and never vote
        p = model_probabilities(params, images, arch)
        p[np.asarray(diverged, bool)] = 0
        return p

    val = ({"val_probs": probs(data.val_images), "val_labels": host.val_labels}
           if host.val_labels is not None else {})
    return _summarize(grid, records, probs(data.test_images), host.test_labels, **val)


# An epoch line shows at most this many settings (the best); summary.json has them all.
_SHOWN = 4


class Stack:
    """A sweep: K models stacked along a model axis, sharded over a ``model`` mesh."""

    reached_by = " (every live model)"

    def __init__(self, config: TrainConfig, grid: Grid, order: str, data: Dataset):
        self.config, self.grid, self.order, self.info = config, grid, order, data.info
        if config.keep_best or config.early_stop:
            raise ValueError("`keep_best` and `early_stop` are for single runs: a sweep trains "
                             "every model to the end (its summary names the best setting)")
        self.num_models = len(grid.models())
        self.host_data = data
        devices = _model_devices(config, self.num_models)
        # Before anything is allocated on the devices: the estimate needs the dataset's size.
        check_memory(config, self.num_models, order, data, devices)
        self.mesh = Mesh(np.asarray(devices), (MODEL_AXIS,))
        # On the devices once: every model's training and evaluation of every epoch reuse them.
        self.data = put_dataset(data, self.mesh)
        self.per_model = NamedSharding(self.mesh, P(MODEL_AXIS))
        self.sets = eval_sets(self.data, config)  # sliced once, on the devices

    def _fresh(self, num_steps: int):
        """Stacked params, optimizer states, hyperparameters and data keys of every model:
        model i with seed s starts as ``jaxmlp train --seed s`` does."""
        config, models = self.config, self.grid.models()
        keys = jax.vmap(jax.random.split)(jax.vmap(jax.random.key)(
            jnp.asarray([m["seed"] for m in models], jnp.uint32)))
        data_keys, init_keys = keys[:, 0], keys[:, 1]
        arch, in_dim = config.layers, self.info.in_dim
        params = jax.jit(jax.vmap(lambda k: init_params(k, arch, in_dim)))(init_keys)
        hyper = {"lr": jnp.asarray([m["lr"] for m in models], jnp.float32),
                 "momentum": jnp.asarray([m["momentum"] for m in models], jnp.float32)}
        # The checkpoint holds the optimizer's own state (its start does not depend on the
        # hyperparameters); they are the grid's, joined to it in ``place``.
        optimizer = make_optimizer(config, num_steps, per_model=True)
        opt_state = jax.vmap(lambda p: optimizer.init(p).inner)(params)
        return checkpoint_state(params, opt_state, 0, data_keys), hyper

    def start(self, folder, saved: Optional[TrainConfig], spe: int):
        num_steps = self.config.num_steps(spe)
        state, self.hyper = self._fresh(num_steps)
        if saved is None:
            return state, [], num_steps
        state = read_checkpoint(folder, state)
        done = int(state["step"])
        history = history_to(folder, done, models=self.num_models)
        return state, history, resume_length(saved, self.config, done, spe)

    def place(self, state, num_steps: int):
        step = config_step(self.config, make_optimizer(self.config, num_steps, per_model=True),
                            self.info.image_shape)
        self._run = make_stack_runner(step, self.config.batch_size, self.order, self.data,
                                       self.mesh)
        self._keys = jax.random.wrap_key_data(jnp.asarray(state["key"]))
        return put_sharded((state["params"], HyperState(self.hyper, state["opt_state"])),
                           self.per_model)

    def train(self, params, opt_state, epoch: int, start: int, n: int):
        keys = jax.vmap(jax.random.fold_in, (0, None))(self._keys, epoch)
        keys = jax.random.wrap_key_data(put_sharded(jax.random.key_data(keys), self.per_model))
        params, opt_state, batch, compile_s = self._run(params, opt_state, keys, start, n)
        losses = to_host(batch["loss"])  # (n, K): the epoch's one host sync
        return params, opt_state, losses, to_host(batch["accuracy"]), compile_s

    def host_state(self, params, opt_state, step: int) -> dict:
        return jax.tree.map(to_host, checkpoint_state(params, opt_state.inner, step,
                                                        self._keys))

    def evaluate(self, params, host_params) -> dict:
        """All K models at once, on the devices where they are sharded."""
        arch = self.config.layers
        return {split: evaluate_models(params, images, labels, arch)
                for split, (images, labels) in self.sets.items()}

    def record(self, evals: dict, losses, diverged) -> dict:
        """Each model's loss and accuracy on every split (``{split}_loss``, ``{split}_acc``),
        None for a diverged model."""
        records = []
        for i in range(self.num_models):
            record: dict = {"diverged": bool(diverged[i])}
            for split in ("test", "val", "train"):  # the order of the records before val
                if split in evals:
                    ok = not diverged[i]
                    record[f"{split}_acc"] = float(evals[split]["accuracy"][i]) if ok else None
                    record[f"{split}_loss"] = float(evals[split]["loss"][i]) if ok else None
            if not diverged[i]:
                record["batch_loss_mean"] = float(losses[:, i].mean())
            records.append(record)
        return {"models": records}

    def batch_figures(self, losses) -> dict:
        return {}  # each model's batch_loss_mean is in its record

    def mean_of(self, live: int) -> str:
        return f" (mean of {live} models)"

    def plot(self, folder: Optional[RunFolder], history: list) -> None:
        pass  # a sweep's curves are its page's (jaxmlp serve)

    def save(self, folder: RunFolder, host: dict, history: list, keep_model: bool) -> None:
        folder.save_sweep_epoch(self.config, self.grid, self.order, host, history, self.info)

    def describe(self, record: dict, splits) -> str:
        """Per setting, the mean ± std over its live seeds of validation (first, when there
        is a split) and test accuracy: ``"lr 0.05, momentum 0.9: val 0.9712 ± 0.0011, test
        0.9701 ± 0.0010 | lr 0.1, …"``. With more than ``_SHOWN`` settings, the best by
        validation (else test) only, and how many there are."""
        models = record["models"]
        shown = [s for s in ("val", "test") if s in splits]
        rows = []
        for k, (lr, momentum) in enumerate(self.grid.settings()):
            alive = [models[i] for i in self.grid.members(k) if not models[i]["diverged"]]
            head = f"lr {lr:g}, momentum {momentum:g}: "
            if not alive:
                rows.append((-1.0, head + "diverged"))
                continue
            figures = []
            for split in shown:
                accs = [m[f"{split}_acc"] for m in alive]
                spread = f" ± {np.std(accs, ddof=1):.4f}" if len(accs) > 1 else ""  # ddof 1
                figures.append(f"{split} {np.mean(accs):.4f}{spread}")
            rows.append((float(np.mean([m[f"{shown[0]}_acc"] for m in alive])),
                         head + ", ".join(figures)))
        lines = [text for _, text in rows]
        if len(rows) > _SHOWN:
            best = sorted(range(len(rows)), key=lambda k: -rows[k][0])[:_SHOWN]
            lines = [rows[k][1] for k in sorted(best)] + [
                f"… the best {_SHOWN} of {len(rows)} settings by {shown[0]} accuracy"]
        live = sum(not m["diverged"] for m in models)
        return " | ".join(lines) + f" ({live} of {len(models)} models live)"

    def watched(self, record: dict, watch: str) -> list:
        return [m[watch] for m in record["models"] if not m["diverged"]]

    def diverged_in(self, history) -> np.ndarray:
        if history:
            return np.array([m.get("diverged", False) for m in history[-1]["models"]])
        return np.zeros(self.num_models, bool)

    def divergence(self, losses, step: int, epoch: int, diverged) -> str:
        return (f"every model's loss became NaN or infinite by step {step + len(losses)} "
                f"(epoch {epoch})")

    def finish(self, folder, params, history, diverged) -> dict:
        host_params = jax.tree.map(to_host, params)
        summary = _summarize_models(self.grid, self.config, params, history, diverged,
                                   self.data, self.host_data)
        # Written when this call trained (or the summary is missing): a complete sweep
        # resumed with nothing to do writes nothing.
        if folder is not None and history and (
                folder.saved or not os.path.lexists(folder.path / SUMMARY)):
            folder.save_summary(summary, history, self.grid)
        return {"params": host_params, "summary": summary}


def _model_devices(config: TrainConfig, num_models: int) -> list:
    devices = list(make_mesh(config.devices).devices)  # its checks, its message
    if config.devices is None and jax.process_count() == 1:  # as many as divide the models
        devices = devices[:max(d for d in range(1, len(devices) + 1) if num_models % d == 0)]
    # Several processes: every device of each (their models are theirs to train).
    if num_models % len(devices):
        processes = jax.process_count()
        where, fix = ((f" of {processes} processes", "") if processes > 1
                      else ("", ", or `devices`"))
        raise ValueError(f"{num_models} models do not split evenly over {len(devices)} devices"
                         f"{where}; use a multiple of {len(devices)} models{fix}")
    return devices
