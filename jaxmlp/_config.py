"""``TrainConfig``: every setting of a run, its default, its help, and the rules a resume obeys.

The command line is generated from these fields (``cli.add_config_flags``), so a new
setting is one edit here.
"""
import dataclasses
import hashlib
import itertools
import json
import math
import typing
from typing import ClassVar, NamedTuple, Optional

import numpy as np

from jaxmlp import _checks
from jaxmlp._errors import Invalid, WrongType
from jaxmlp._arch import PRESETS, Arch, parse_arch
from jaxmlp._augment import Augmentation, format_number, parse_augment
from jaxmlp._data import DEFAULT_DATASET, DatasetInfo, check_name, own_data
from jaxmlp._mlp import COMPUTE_DTYPES, dropping
from jaxmlp._optim import OPTIMIZERS, SCHEDULES

GRADS = ("hand", "autodiff")
# What --keep-best (and --early-stop) choose an epoch by: the validation split's figures.
KEEP_BEST = ("val_acc", "val_loss")
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_SEED_LIMIT = 2 ** 32  # jax.random.key takes 32 bits; larger seeds would silently wrap
_MAX_STEPS = 2 ** 31 - 1  # a run's step counter (checkpointed) is int32


def _setting(default, help: str, **cli):
    """A config field whose ``help`` (and ``choices``, ``flag``) the command line uses."""
    return dataclasses.field(default=default, metadata={"help": help, **cli})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run (saved as ``config.json`` in its folder)."""

    # Not a field (not saved, not compared): augment and dropout parsed, set in __post_init__.
    _parsed: ClassVar[tuple]

    arch: str = _setting("b", f"preset ({', '.join(PRESETS)}) or 'units:act,...'")
    epochs: int = _setting(10, "epochs to train")
    steps: Optional[int] = _setting(None, "total optimizer steps, instead of --epochs")
    batch_size: int = _setting(128, "examples per step")
    dataset: str = _setting(DEFAULT_DATASET, "TFDS image-classification dataset: mnist, "
                            "fashion_mnist, kmnist, emnist/digits, cifar10, ...; or npz:FILE, "
                            "your own arrays x_train, y_train, x_test, y_test; or folder:DIR, "
                            "your own images in DIR/train/CLASS/ and DIR/test/CLASS/")
    val_size: int = _setting(0, "hold out the last N training examples as a validation split, "
                             "evaluated every epoch; --target-accuracy then uses it")
    optimizer: str = _setting("sgd", "Optax optimizer", choices=tuple(OPTIMIZERS))
    lr: Optional[float] = _setting(None, "peak learning rate (default: " + ", ".join(
        f"{v['lr']:g} for {k}" for k, v in OPTIMIZERS.items()) + ")")
    momentum: float = _setting(0.9, "SGD momentum, or Adam/AdamW/Lion's b1 (the decay of their "
                               "gradient average); 0 for none")
    nesterov: bool = _setting(False, "Nesterov momentum (sgd, adam, adamw; needs --momentum > 0)")
    weight_decay: Optional[float] = _setting(None, "weight decay of the weights w (not biases): "
                                             "L2 in the gradient for sgd and adam, decoupled for "
                                             "adamw and lion (default: " + ", ".join(
                                                 f"{v['weight_decay']:g} for {k}"
                                                 for k, v in OPTIMIZERS.items()) + ")")
    schedule: str = _setting("cosine", "learning rate: constant, or cosine decay to 0 over the "
                             "run", choices=SCHEDULES)
    warmup_steps: int = _setting(0, "steps of linear learning-rate warm-up from 0 into the "
                                 "schedule")
    clip_norm: Optional[float] = _setting(None, "clip each step's gradient to this global norm")
    max_norm: Optional[float] = _setting(None, "after every update, project each unit's incoming "
                                         "weights onto the ball ||w||_2 <= C (max-norm)")
    dropout: Optional[str] = _setting(None, "IN,HIDDEN: drop probabilities of the input pixels "
                                      "and of every hidden unit while training (inverted "
                                      "dropout; evaluation never drops), e.g. 0.2,0.5")
    augment: Optional[str] = _setting(None, "distort every training batch on the device: "
                                      "NAME=VALUE pairs of alpha and sigma (elastic, Simard "
                                      "2003; pixels), rotation and shear (degrees), scale "
                                      "(fraction) and translation (pixels), each drawn in "
                                      "+-VALUE per image, e.g. alpha=34,sigma=4")
    ema: Optional[float] = _setting(None, "evaluate and save the exponential moving average "
                                    "of the weights with this decay (e.g. 0.999), not the "
                                    "last weights")
    label_smoothing: float = _setting(0.0, "train against (1 - e)*onehot + e/classes instead of "
                                      "the one-hot labels")
    adversarial: float = _setting(0.0, "adversarial training (Goodfellow et al. 2015): half "
                                  "of each step's loss on the batch, half on its fast gradient "
                                  "sign example, each pixel moved by this much (in [0, 1]; 0.1 "
                                  "is about 25 grey levels) the way that raises the loss; "
                                  "twice a step's cost; evaluation stays clean. e.g. 0.1")
    seed: int = _setting(0, "PRNG seed, 0 to 2**32-1: init and data order")
    grad: str = _setting("hand", "hand-written backward pass, or jax.grad", choices=GRADS)
    compute_dtype: str = _setting("float32", "the dtype of every matmul's operands in training "
                                  "(both passes); bfloat16 is mixed precision: weights, sums, "
                                  "activations and loss stay float32", choices=COMPUTE_DTYPES)
    log_every: int = _setting(1000, "log a seed-style 'iter N' line every N steps (0: never)")
    target_accuracy: Optional[float] = _setting(None, "stop after the epoch whose validation "
                                                "accuracy (test accuracy without --val-size) "
                                                "reaches this")
    keep_best: Optional[str] = _setting(None, "model.npz is the epoch best by validation: "
                                        "val_acc or val_loss (needs --val-size; the checkpoint "
                                        "stays the last epoch's, to resume from)",
                                        choices=KEEP_BEST)
    early_stop: Optional[int] = _setting(None, "stop after N epochs without a better validation "
                                         "figure (--keep-best's, else val_acc; needs --val-size)")
    train_eval_size: int = _setting(10_000, "training examples evaluated after each epoch for "
                                    "train_loss/train_acc: the first N, a fixed sample (0: all)")
    devices: Optional[int] = _setting(None, "devices of the data-parallel mesh (default: all)")
    data_dir: Optional[str] = _setting(None, "TFDS data folder (default: $TFDS_DATA_DIR, else "
                                       "the folder the dataset was last loaded from, else "
                                       "~/tensorflow_datasets)")
    manual_dir: Optional[str] = _setting(None, "folder with the dataset's original files (for "
                                         "MNIST the four .gz files)")
    download: bool = _setting(True, "let TFDS download the dataset when it is not prepared",
                              flag="--no-download", flag_help="never download the dataset (by "
                              "default TFDS downloads it when it is not prepared)")

    def __post_init__(self):
        # Every setting is checked here, on construction: the Python API obeys the rules
        # of the command line before any work (a float epoch count, an lr given as text).
        hints = typing.get_type_hints(TrainConfig)
        for name in (f.name for f in dataclasses.fields(TrainConfig)):
            kind = hints[name]
            if not _fits(getattr(self, name), kind):
                raise WrongType(f"`{name}` has the wrong type (expected "
                                 f"{_kind_name(kind)})", repr(getattr(self, name)))
        # An unset lr or weight decay is the optimizer's default (optim.OPTIMIZERS), so
        # config.json always records the values the run used.
        for name in ("lr", "weight_decay"):
            if getattr(self, name) is None and self.optimizer in OPTIMIZERS:
                object.__setattr__(self, name, OPTIMIZERS[self.optimizer][name])
        self.validate()
        own = own_data(self.dataset)
        if own:  # found again from any folder (eval, a resume)
            object.__setattr__(self, "dataset", f"{own[0]}{own[1].resolve()}")
        object.__setattr__(self, "adversarial", float(self.adversarial) + 0.0)  # -0 is 0
        # Parsed once, here: the distortion and dropout as values, their text canonical, so
        # that two spellings of one setting are one setting (a resume compares them).
        aug = parse_augment(self.augment) if self.augment is not None else None
        aug = aug if aug is not None and aug.active else None
        rates = dropping(_rates(self.dropout)) if self.dropout is not None else None
        object.__setattr__(self, "augment", aug.spec if aug else None)
        object.__setattr__(self, "dropout", ",".join(map(format_number, rates)) if rates else None)
        # Not a field: not saved, not compared.
        object.__setattr__(self, "_parsed", (aug, rates, parse_arch(self.arch)))

    def validate(self) -> "TrainConfig":
        """Raises ``ValueError`` naming the first setting that cannot work; returns self.

        The output layer's width is checked against the dataset once it is loaded
        (``check_output``)."""
        try:
            parse_arch(self.arch)
        except (TypeError, ValueError) as e:
            raise Invalid("`arch` is not a preset or a list of units:activation layers that "
                           "jaxmlp can build", message=str(e)) from None
        check_name(self.dataset)
        if self.augment is not None:
            parse_augment(self.augment)  # names what is wrong (Augmentation's ranges)
        # Training runs in float32: a value it cannot hold (1e39 overflows, 1e-50 becomes 0,
        # a momentum of 0.999999999 becomes 1) is refused here, not met as a silent no-op
        # or a NaN.
        # (abs first: an int of 400 digits compares exactly, but overflows as a float)
        number = lambda v: (isinstance(v, (int, float)) and abs(v) <= _FLOAT32_MAX
                            and math.isfinite(v))
        positive = lambda v: number(v) and np.float32(v) > 0
        f32 = lambda v: f"{_checks._shown(v)}{_f32(v)}"
        # (holds, the rule, the value it was given: None where the rule names no value)
        checks = [
            (self.optimizer in OPTIMIZERS, f"`optimizer` must be one of {tuple(OPTIMIZERS)}",
             repr(self.optimizer)),
            (self.epochs >= 1, "`epochs` must be >= 1", self.epochs),
            (self.epochs <= _MAX_STEPS, f"`epochs` must be at most {_MAX_STEPS}", self.epochs),
            (self.steps is None or 1 <= self.steps <= _MAX_STEPS,
             f"`steps` must be in [1, {_MAX_STEPS}]", self.steps),
            (self.batch_size >= 1, "`batch_size` must be >= 1", self.batch_size),
            (positive(self.lr), "`lr` must be positive", f32(self.lr)),
            (0 <= self.momentum < 1 and np.float32(self.momentum) < 1,
             "`momentum` must be in [0, 1)", f32(self.momentum)),
            (not self.nesterov or self.momentum > 0, "`nesterov` needs a `momentum` above 0", None),
            (not self.nesterov or self.optimizer != "lion", "`nesterov` does not apply to lion",
             None),
            (self.weight_decay is not None and number(self.weight_decay)
             and self.weight_decay >= 0, "`weight_decay` must be >= 0", f32(self.weight_decay)),
            (self.warmup_steps >= 0, "`warmup_steps` must be >= 0", self.warmup_steps),
            (self.clip_norm is None or positive(self.clip_norm), "`clip_norm` must be positive",
             f32(self.clip_norm)),
            (self.max_norm is None or positive(self.max_norm), "`max_norm` must be positive",
             f32(self.max_norm)),
            (self.ema is None or (number(self.ema) and 0 < self.ema < 1
                                  and np.float32(self.ema) < 1),
             "`ema` must be in (0, 1)", f32(self.ema)),
            (number(self.label_smoothing) and 0 <= self.label_smoothing < 1
             and np.float32(self.label_smoothing) < 1,
             "`label_smoothing` must be in [0, 1)", self.label_smoothing),
            (number(self.adversarial) and 0 <= self.adversarial <= 1
             and (self.adversarial == 0 or np.float32(self.adversarial) > 0),
             "`adversarial` must be in [0, 1] (a pixel's range)", f32(self.adversarial)),
            (self.dropout is None or _rates(self.dropout) is not None,
             "`dropout` takes IN,HIDDEN, two probabilities in [0, 1)", repr(self.dropout)),
            (self.train_eval_size >= 0, "`train_eval_size` must be >= 0", self.train_eval_size),
            (self.val_size >= 0, "`val_size` must be >= 0", self.val_size),
            (0 <= self.seed < _SEED_LIMIT, "`seed` must be in [0, 2**32)", self.seed),
            (self.grad in GRADS, f"`grad` must be one of {GRADS}", repr(self.grad)),
            (self.compute_dtype in COMPUTE_DTYPES,
             f"`compute_dtype` must be one of {COMPUTE_DTYPES}", repr(self.compute_dtype)),
            (self.schedule in SCHEDULES, f"`schedule` must be one of {SCHEDULES}",
             repr(self.schedule)),
            (self.log_every >= 0, "`log_every` must be >= 0 (0: no 'iter' lines)",
             self.log_every),
            (self.devices is None or self.devices >= 1, "`devices` must be >= 1", self.devices),
            (self.keep_best is None or self.keep_best in KEEP_BEST,
             f"`keep_best` must be one of {KEEP_BEST}", repr(self.keep_best)),
            (self.keep_best is None or self.val_size > 0, "`keep_best` chooses by validation: "
             "it needs a validation split (`val_size`)", None),
            (self.early_stop is None or self.early_stop >= 1, "`early_stop` must be >= 1",
             self.early_stop),
            (self.early_stop is None or self.val_size > 0, "`early_stop` watches validation: "
             "it needs a validation split (`val_size`)", None),
            (self.target_accuracy is None or 0 < self.target_accuracy <= 1,
             "`target_accuracy` must be in (0, 1]", self.target_accuracy),
            (self.data_dir is None or self.data_dir.strip() != "",
             "`data_dir` must name a folder (or be left unset)", repr(self.data_dir)),
            (self.manual_dir is None or self.manual_dir.strip() != "",
             "`manual_dir` must name a folder (or be left unset)", repr(self.manual_dir)),
        ]
        # Every count is bounded: a run's step counter, and every index, is int32.
        checks += [(getattr(self, f.name) is None or getattr(self, f.name) <= _MAX_STEPS,
                    f"`{f.name}` must be at most {_MAX_STEPS}",
                    getattr(self, f.name)) for f in dataclasses.fields(self)
                   if f.name != "seed" and int in typing.get_args(f.type) + (f.type,)]
        for ok, rule, got in checks:
            if not ok:
                raise Invalid(rule, got if got is None or isinstance(got, str)
                               else _checks._shown(got))
        return self

    @property
    def augmentation(self) -> Optional[Augmentation]:
        """``augment`` parsed (``parse_augment``), or None for none (or all zero)."""
        return self._parsed[0]

    @property
    def dropout_rates(self) -> Optional[tuple[float, float]]:
        """``(p_in, p_hidden)`` from ``dropout``, or None for no dropout (or both 0)."""
        return self._parsed[1]

    @property
    def layers(self) -> Arch:
        """``arch`` parsed (``parse_arch``), once, when the config was made: an ``Arch``."""
        return self._parsed[2]

    def check_output(self, info: DatasetInfo) -> None:
        """Raises ``ValueError`` unless the output layer has one unit per class of ``info``."""
        arch = self.layers
        classes = info.num_classes
        if arch[-1].units != classes:
            hidden = "".join(f"{u}:{a}," for u, a in arch[:-1])
            raise ValueError(
                f"the output layer has {arch[-1].units} units but {info.name} has {classes} "
                f"classes: end `arch` with a layer of {classes} units (e.g. `arch` "
                f"'{hidden}{classes}:{arch[-1].activation}')")

    def check_length(self, num_steps: int) -> None:
        """Raises ``ValueError`` unless the run's steps fit the step counter and the warm-up
        ends before the run does."""
        if num_steps > _MAX_STEPS:
            raise Invalid(f"the run would take {num_steps} steps, more than the {_MAX_STEPS} "
                           "a run can count (its step counter is int32)")
        if self.warmup_steps >= num_steps:
            raise ValueError(f"`warmup_steps` {self.warmup_steps} is not shorter than the run "
                             f"({num_steps} steps): the learning rate would never reach `lr`")

    def num_steps(self, steps_per_epoch: int) -> int:
        """The run's length in SGD steps: ``steps``, else ``epochs`` whole epochs."""
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch

    def record(self) -> dict:
        """The settings as ``config.json`` holds them: every field, but ``epochs`` when
        ``steps`` sets the length instead (a default that was never used is not a setting)."""
        values = dataclasses.asdict(self)
        if self.steps is not None:
            del values["epochs"]
        return values

    def config_hash(self) -> str:
        """A digest of the settings that every process of one run must share."""
        shared = {k: v for k, v in dataclasses.asdict(self).items() if k not in _LOCAL}
        return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """A config from ``config.json``'s contents; ``ValueError`` names a bad key or type."""
        if not isinstance(values, dict):
            raise ValueError(f"expected an object of settings, got {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        for i, key in enumerate(values, 1):
            if key not in names:
                raise Invalid(f"setting {i} of {len(values)} is not a jaxmlp setting",
                               message=f"unknown setting {key!r}")
        return cls(**values)  # checks every type and range


def _rates(text: str):
    """``"0.2,0.5"`` → ``(0.2, 0.5)``; None unless two numbers in [0, 1), below 1 in float32
    too (a rate of 0.99999999999 is 1 there: every unit dropped)."""
    try:
        rates = tuple(_checks.parse_float(t, "dropout") for t in str(text).split(","))
    except ValueError:
        return None
    ok = len(rates) == 2 and all(0 <= p < 1 and np.float32(p) < 1 for p in rates)
    return rates if ok else None


def _f32(value) -> str:
    """`` (0 as a float32, …)`` where float32, the precision of training, changes ``value``
    across a boundary (``_checks.float32_note``); ``""`` for anything but a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            abs(value) <= 1e308 and math.isfinite(value)):
        return ""
    return _checks.float32_note(value)


def _kind_name(annotation) -> str:
    kinds = [t.__name__ for t in (typing.get_args(annotation) or (annotation,))
             if t is not type(None)]
    return " or ".join(kinds) + (" or None" if type(None) in typing.get_args(annotation) else "")


def _fits(value, annotation) -> bool:
    allowed = typing.get_args(annotation) or (annotation,)  # Optional[int] → (int, NoneType)
    if isinstance(value, bool):  # a bool is an int to isinstance, but not a count
        return bool in allowed
    if isinstance(value, int) and float in allowed:
        return True  # a hand-edited config may write 1 for 1.0
    return isinstance(value, allowed)


# Settings that may differ between processes of one run (each host's own data location).
_LOCAL = {"data_dir", "manual_dir", "download"}
# Settings a resumed run may change: its length, logging, data location and devices.
# Any other would make it a different run.
RESUMABLE = {"epochs", "steps", "log_every", "target_accuracy", "early_stop", "devices",
             "train_eval_size"} | _LOCAL


# More models than any device holds at once (preset a: about 31 KiB each, so 100,000 is
# 3 GiB): refused before their configs are even built.
MAX_MODELS = 100_000


def _checked_grid(seeds, lrs, momenta) -> tuple[tuple, tuple, tuple]:
    """The grid's three tuples, each value checked by ``TrainConfig``'s rule for it."""
    fields = {"seeds": seeds, "lrs": lrs, "momenta": momenta}
    for name, values in fields.items():
        if isinstance(values, (str, bytes, dict)) or not isinstance(values, (tuple, list)):
            raise WrongType(f"Grid {name} must be a tuple of values", _checks._shown(values))
        if not values:
            raise Invalid(f"Grid {name} must hold at least one value")
    count = len(seeds) * len(lrs) * len(momenta)
    if count > MAX_MODELS:
        raise Invalid(f"the grid has {count} models, more than {MAX_MODELS}: sweep in parts")
    checked = (tuple(_checks.seed(v, f"Grid seeds[{i}]") for i, v in enumerate(seeds)),
               tuple(_checks.positive_number(v, f"Grid lrs[{i}]") for i, v in enumerate(lrs)),
               tuple(_checks.probability(v, f"Grid momenta[{i}]") for i, v in enumerate(momenta)))
    for name, values in zip(fields, checked):
        if len(set(values)) != len(values):
            twice = next(v for i, v in enumerate(values) if v in values[:i])
            raise Invalid(f"Grid {name} must list each value once", f"{twice} twice")
    return checked


# How a sweep's models take their batches (``jaxmlp._sweep``): all of the first seed's order,
# or each its own seed's.
ORDERS = ("shared", "independent")


class _GridFields(NamedTuple):
    seeds: tuple[int, ...]
    lrs: tuple[float, ...]
    momenta: tuple[float, ...]


class Grid(_GridFields):
    """The settings a sweep varies: every combination of ``lrs`` × ``momenta`` × ``seeds``.

    Checked when built (``TrainConfig``'s rules for each value; each list non-empty, each
    value once, at most ``MAX_MODELS`` models): ``ValueError``/``TypeError`` naming the
    field. ``Grid.of(config)`` is the grid of one: ``config``'s single run, as a sweep."""

    __slots__ = ()

    def __new__(cls, seeds, lrs, momenta):
        return super().__new__(cls, *_checked_grid(seeds, lrs, momenta))

    @classmethod
    def _make(cls, iterable):  # _replace builds through here: checked too
        return cls(*iterable)

    @classmethod
    def of(cls, config: TrainConfig) -> "Grid":
        return cls((config.seed,), (config.lr,), (config.momentum,))

    def models(self) -> list[dict]:
        """One ``{"seed", "lr", "momentum"}`` per model: settings outer, seeds inner."""
        return [{"seed": s, "lr": lr, "momentum": m}
                for lr, m, s in itertools.product(self.lrs, self.momenta, self.seeds)]

    def settings(self) -> list[tuple[float, float]]:
        """Each setting ``(lr, momentum)``, in the models' order (lr outer, momentum inner);
        setting ``k``'s models are ``members(k)``, one per seed."""
        return list(itertools.product(self.lrs, self.momenta))

    def members(self, setting: int) -> range:
        """The indices of setting ``setting``'s models (its seeds, in order)."""
        per = len(self.seeds)
        return range(setting * per, (setting + 1) * per)

    def configs(self, base: TrainConfig) -> list[TrainConfig]:
        """Each model as the single run that ``jaxmlp train`` would make of it."""
        return [dataclasses.replace(base, **m) for m in self.models()]
