"""The optimizer of a run: Optax SGD, Adam, AdamW or Lion, with its learning-rate schedule.

``make_optimizer`` builds, in this order: gradient clipping by global norm
(``clip_norm``), L2 weight decay added to the gradient (``weight_decay``, SGD and Adam;
AdamW and Lion decay the weights themselves, decoupled from the gradient), then the
optimizer with a learning rate that rises linearly from 0 over ``warmup_steps`` and then
follows the schedule (cosine decay to 0 at the last step, or constant), and last the
max-norm projection (``max_norm``), then the average of the weights (``ema``). Weight
decay applies to the weights ``w`` only, never to biases.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmlp import _checks

# Everything per optimizer, the one place it is stated: its default learning rate and weight
# decay (SGD's are the seed's; Adam's and AdamW's are Optax's; Lion's follow its paper: a
# learning rate 3-10x below AdamW's, a weight decay 3-10x above), and the float32 copies of
# the params a model holds while it trains (params, gradients and the optimizer's state:
# SGD's momentum; Adam's and AdamW's two moments; Lion's one), for a sweep's memory estimate.
OPTIMIZERS = {"sgd": {"lr": 0.1, "weight_decay": 0.0, "copies": 3},
              "adam": {"lr": 1e-3, "weight_decay": 0.0, "copies": 4},
              "adamw": {"lr": 1e-3, "weight_decay": 1e-4, "copies": 4},
              "lion": {"lr": 1e-4, "weight_decay": 1e-3, "copies": 3}}
SCHEDULES = ("constant", "cosine")


def schedule(peak, num_steps: int, warmup_steps: int = 0, kind: str = "cosine"):
    """The learning rate at each step: linear warm-up from 0 to ``peak`` over
    ``warmup_steps``, then ``peak`` (constant) or cosine decay from ``peak`` to 0 at
    ``num_steps``. ``peak`` may be a traced array (a sweep's per-model rate).

    ``peak`` is a positive number (not read when traced), ``num_steps`` an int in
    ``[1, 2**31)``, ``warmup_steps`` one in ``[0, 2**31)`` (it may reach past ``num_steps``:
    the rate then never leaves the warm-up), ``kind`` ``"cosine"`` or ``"constant"``."""
    _check_schedule(peak, num_steps, warmup_steps, kind)
    peak = _checks.int_as_float(peak)
    rest = max(num_steps - warmup_steps, 1)
    after = optax.cosine_decay_schedule(peak, rest) if kind == "cosine" else (lambda _: peak)
    if not warmup_steps:
        return after
    warmup = optax.linear_schedule(0.0, peak, warmup_steps)
    return optax.join_schedules([warmup, after], [warmup_steps])


def _check_schedule(peak, num_steps, warmup_steps, kind) -> None:
    """``schedule``'s checks."""
    _checks.positive_number(peak, "peak", traced=True)
    _checks.positive_int(num_steps, "num_steps", limit=_checks.INDEX_LIMIT)
    _checks.integer(warmup_steps, "warmup_steps")
    _checks.one_of(kind, SCHEDULES, "kind")


def _decay_mask(params):
    """True for weights, False for biases: ``{"w", "b"}`` per layer."""
    return [{k: k == "w" for k in layer} for layer in params]


def max_norm(c: float) -> optax.GradientTransformation:
    """Max-norm (Srivastava et al. 2014): after the update, each unit's incoming weight
    vector, a column ``w[:, j]``, is projected onto the ball ``‖w[:, j]‖₂ ≤ c``:

        w' = w + u,   w'[:, j] ← w'[:, j] · c / ‖w'[:, j]‖₂   where ‖w'[:, j]‖₂ > c.

    As an update: ``u[:, j]`` itself inside the ball (exactly: no ``(w + u) − w`` rounding),
    ``proj(w + u)[:, j] − w[:, j]`` outside. Biases are never constrained. Chain it last, so
    it sees the final update.

    ``c`` is a positive number (finite and above 0 in float32)."""
    _checks.positive_number(c, "c")
    c = _checks.int_as_float(c)

    def update(updates, state, params):
        def layer(u, p):
            w = p["w"] + u["w"]
            norm = jnp.sqrt(jnp.sum(w * w, axis=0, keepdims=True))
            outside = norm > c
            projected = w * (c / jnp.where(outside, norm, 1)) - p["w"]
            return {**u, "w": jnp.where(outside, projected, u["w"])}
        return [layer(u, p) for u, p in zip(updates, params)], state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class _EmaState(NamedTuple):
    """``ema``'s state: updates seen, and the average of the params after each."""

    count: jax.Array  # type: ignore[assignment]  # (shadows tuple.count; kept: checkpoints)
    params: list


def ema(decay: float) -> optax.GradientTransformation:
    """Averaged weights (Polyak averaging, exponential): after each update the average
    ``a`` of the new params ``w' = w + u`` moves towards them,

        a ← d_t·a + (1 − d_t)·w',   d_t = min(decay, (1 + t) / (10 + t)),

    ``t`` the updates before this one (TensorFlow's ``ExponentialMovingAverage`` with
    ``num_updates``: early on the average forgets the initialisation quickly). The updates
    pass unchanged; the average is state (so it is checkpointed and resumed), read by
    ``ema_of``. Chain it last, so it sees the final update (max-norm's included).

    ``decay`` is a number in ``(0, 1)``, below 1 in float32 too (where ``0.999999999`` is 1:
    an average that never moves)."""
    _checks.probability(decay, "decay", lower_open=True)

    def init(params):
        # A copy: the epoch donates params and optimizer state, which must not share buffers.
        return _EmaState(jnp.zeros([], jnp.int32),
                         jax.tree.map(lambda p: jnp.array(p, copy=True), params))

    def update(updates, state, params):
        t = state.count.astype(jnp.float32)
        d = jnp.minimum(decay, (1 + t) / (10 + t))
        average = jax.tree.map(lambda a, w, u: d * a + (1 - d) * (w + u),
                               state.params, params, updates)
        return updates, _EmaState(state.count + 1, average)

    return optax.GradientTransformation(init, update)


def ema_path(opt_state):
    """The key path of the averaged params inside an optimizer state built with ``ema``
    (found by their type, wherever the chain put them), or None without ``ema``."""
    is_ema = lambda x: isinstance(x, _EmaState)
    found = [path for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state, is_ema)[0]
             if is_ema(leaf)]
    return (*found[0], jax.tree_util.GetAttrKey("params")) if found else None


def ema_of(opt_state):
    """The averaged params inside an optimizer state built with ``ema`` (None without)."""
    path = ema_path(opt_state)
    if path is None:
        return None
    found = opt_state
    for key in path:  # DictKey, SequenceKey or GetAttrKey
        found = (getattr(found, key.name) if isinstance(key, jax.tree_util.GetAttrKey)
                 else found[key.key if isinstance(key, jax.tree_util.DictKey) else key.idx])
    return found


class HyperState(NamedTuple):
    """An optimizer state that carries its model's own hyperparameters (Optax's
    ``inject_hyperparams``, for the two a sweep varies): ``hyper`` ``{"lr", "momentum"}``
    (float32 scalars, or ``(K,)`` in a stack of K models), ``inner`` the optimizer's state.
    The same step then updates every model of a sweep, each with its own values."""

    hyper: dict
    inner: Any


def make_optimizer(config, num_steps: int, *, lr=None, momentum=None,
                   per_model: bool = False) -> optax.GradientTransformation:
    """The run's Optax optimizer, from ``config``'s ``optimizer``, ``lr``, ``momentum``,
    ``nesterov``, ``weight_decay``, ``warmup_steps``, ``clip_norm`` and ``schedule``.

    ``momentum`` is SGD's momentum, and Adam's, AdamW's and Lion's ``b1`` (the decay of
    their gradient average: the same role, and the same default 0.9). ``lr`` and
    ``momentum`` replace the config's; they may be traced arrays, in which case SGD's
    momentum is always on (0 is then a momentum of 0: the same updates, with a trace in
    the optimizer state).

    With ``per_model`` the learning rate and momentum are not constants of the optimizer
    but live in its state (``HyperState``; ``init`` puts the config's there, and a sweep
    replaces them with each model's): the one optimizer, built once, then updates any
    model with its own values, under ``vmap`` too. A single run keeps them constants:
    Python floats, so its arithmetic is exactly that of its own settings (Adam's
    ``1 - b1`` in float64, for one).

    ``config`` is a ``TrainConfig`` or any object with those settings, checked by
    ``TrainConfig``'s rules, each named (``config.max_norm``); ``num_steps`` is an int in
    ``[1, 2**31)``, ``lr`` a positive number and ``momentum`` one in ``[0, 1)`` (neither
    read when traced), ``per_model`` a bool.
    """
    _check_args(config, lr, momentum, per_model)
    lr = config.lr if lr is None else lr
    momentum = config.momentum if momentum is None else momentum
    if not per_model:
        return _optimizer(config, num_steps, lr, momentum)

    def init(params):
        hyper = {"lr": jnp.asarray(lr, jnp.float32), "momentum": jnp.asarray(momentum, jnp.float32)}
        return HyperState(hyper, _optimizer(config, num_steps, **hyper).init(params))

    def update(updates, state, params=None):
        inner = _optimizer(config, num_steps, **state.hyper)  # as inject_hyperparams does
        updates, inner_state = inner.update(updates, state.inner, params)
        return updates, HyperState(state.hyper, inner_state)

    return optax.GradientTransformation(init, update)


def _optimizer(config, num_steps: int, lr, momentum) -> optax.GradientTransformation:
    """``make_optimizer``'s chain for one learning rate and momentum (numbers or arrays)."""
    rate = schedule(lr, num_steps, config.warmup_steps, config.schedule)
    decay = _checks.int_as_float(config.weight_decay)
    if config.optimizer == "sgd":
        off = isinstance(momentum, (int, float)) and momentum == 0
        core = optax.sgd(rate, momentum=None if off else momentum, nesterov=config.nesterov)
    elif config.optimizer in ("adam", "adamw"):
        core = optax.adamw(rate, b1=momentum, weight_decay=decay, mask=_decay_mask,
                           nesterov=config.nesterov) if config.optimizer == "adamw" else \
            optax.adam(rate, b1=momentum, nesterov=config.nesterov)
    else:  # lion, the last of OPTIMIZERS (_check_config admits no other)
        core = optax.lion(rate, b1=momentum, weight_decay=decay, mask=_decay_mask)
    parts = []
    if config.clip_norm is not None:
        parts.append(optax.clip_by_global_norm(_checks.int_as_float(config.clip_norm)))
    if decay and config.optimizer in ("sgd", "adam"):  # L2: added to the gradient
        parts.append(optax.add_decayed_weights(decay, mask=_decay_mask))
    after = [max_norm(config.max_norm)] if config.max_norm is not None else []
    if config.ema is not None:
        after.append(ema(config.ema))
    return optax.chain(*parts, core, *after) if parts or after else core


# The settings make_optimizer reads from its config.
_SETTINGS = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "warmup_steps",
             "schedule", "clip_norm", "max_norm", "ema")


def _check_args(config, lr, momentum, per_model) -> None:
    """``make_optimizer``'s arguments, or ``TypeError``/``ValueError`` naming the one wrong."""
    _check_config(config)
    if lr is not None:
        _checks.positive_number(lr, "lr", traced=True)
    if momentum is not None:
        _checks.probability(momentum, "momentum", traced=True)
    _checks.flag(per_model, "per_model")


def _check_config(config) -> None:
    """Raises, naming ``config.<setting>``, unless ``config`` holds the optimizer settings
    by ``TrainConfig``'s rules (which a ``TrainConfig`` met when it was made: checked again
    all the same, for any object that has them)."""
    missing = [name for name in _SETTINGS if not hasattr(config, name)]
    if missing:
        raise TypeError(f"config must be a TrainConfig (or hold its optimizer settings), got "
                        f"{type(config).__name__} without {', '.join(missing)}")
    _checks.one_of(config.optimizer, tuple(OPTIMIZERS), "config.optimizer")
    _checks.positive_number(config.lr, "config.lr", traced=True)
    _checks.probability(config.momentum, "config.momentum", traced=True)
    _checks.flag(config.nesterov, "config.nesterov")
    _checks.non_negative_number(config.weight_decay, "config.weight_decay")
    _checks.integer(config.warmup_steps, "config.warmup_steps")
    _checks.one_of(config.schedule, SCHEDULES, "config.schedule")
    for name in ("clip_norm", "max_norm"):
        if getattr(config, name) is not None:
            _checks.positive_number(getattr(config, name), f"config.{name}")
    if config.ema is not None:
        _checks.probability(config.ema, "config.ema", lower_open=True)
