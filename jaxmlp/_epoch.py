"""One epoch on the device: a jitted Optax step inside one ``lax.scan``, for one model or a
stack of K (a sweep).

The dataset lives on the device as uint8 and is scaled inside the compiled code; each
epoch is one call, so the host syncs once per epoch, not once per step. Epoch ``e``'s data
order is ``shuffle(fold_in(data_key, e))``: a function of the seed and the epoch alone, so a
run resumed mid-epoch takes exactly the batches the uninterrupted run would have taken.

A stack's params and optimizer states carry a leading model axis; its epoch runs
``jax.vmap`` of the same step over that axis, each model with its own learning rate and
momentum, the axis sharded over the devices (``PartitionSpec("model")``): the models never
talk to each other, so no all-reduce is needed.
"""
import functools
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxmlp import _checks
from jaxmlp._arch import parse_arch
from jaxmlp._augment import Augmentation, augment as _augment
from jaxmlp._backprop import hand_value_and_grad
from jaxmlp._config import GRADS, TrainConfig
from jaxmlp._cross_entropy import cross_entropy, smooth_labels
from jaxmlp._data import Dataset
from jaxmlp._images import check_image_shape, prepare_images
from jaxmlp._metrics import batch_metrics
from jaxmlp._mlp import (COMPUTE_DTYPES, check_adversarial, dropping, fast_gradient_sign,
                         forward_layers, masks_of)
from jaxmlp._parallel import DATA_AXIS, check_batch, feed_batches

MODEL_AXIS = "model"  # the mesh axis of a stack's models


def _autodiff_value_and_grad(params, x, y, arch, *, dropout=None, key=None, compute_dtype=None,
                             adversarial=0.0):
    masks = masks_of(key, x, arch, dropout)
    logits_of = lambda params, x: forward_layers(params, x, arch, masks=masks,
                                                 compute_dtype=compute_dtype)[-1][1]
    mean = lambda params, x: jnp.mean(cross_entropy(logits_of(params, x), y))

    def loss_and_logits(params):  # mlp.loss, keeping the clean batch's logits
        logits = logits_of(params, x)
        value = jnp.mean(cross_entropy(logits, y))
        if adversarial:
            x_adv = fast_gradient_sign(x, jax.grad(mean, argnums=1)(params, x), adversarial)
            value = (value + mean(params, x_adv)) / 2
        return value, logits
    return jax.value_and_grad(loss_and_logits, has_aux=True)(params)


def make_step(arch, optimizer: optax.GradientTransformation, grad: str, *,
              label_smoothing: float = 0.0, dropout=None, augment: Optional[Augmentation] = None,
              image_shape=None, compute_dtype: str = "float32", adversarial: float = 0.0):
    """One SGD step ``(params, opt_state, images_u8, labels, key) → (params, opt_state,
    metrics)``.

    ``metrics`` is ``jaxmlp._metrics.batch_metrics`` of the batch (``loss``, ``accuracy``, against
    the true labels). With ``label_smoothing`` ε the gradient is that of the cross-entropy
    against ``smooth_labels(labels, n, ε)``. Every step takes a PRNG ``key`` (as Flax's
    steps take their ``rngs``), so no caller asks whether a step draws noise: with
    ``dropout = (p_in, p_hidden)`` it draws its masks from ``key``
    (``mlp.dropout_masks``); with ``augment`` (an ``Augmentation``) each batch is distorted
    first (``jaxmlp._augment.augment``, images of ``image_shape`` ``(H, W, C)``), from
    ``fold_in(key, 1)``, so the same key gives dropout the masks it gives without
    augmentation; a step with neither never reads it (XLA drops the unused key).
    ``compute_dtype`` ``"bfloat16"`` computes every matmul of both passes in mixed precision
    (``mlp.matmul``). With ``adversarial`` ε > 0 the step descends Goodfellow et al. 2015's
    adversarial objective (``mlp.loss``): half the batch's loss, half its fast gradient sign
    example's, at twice a step's cost. Not jitted by itself: the epoch scan and the per-step
    baseline each jit it in their own way.

    Every argument is checked once, when the step is built (never per step), by
    ``_checked_step_args``: ``TypeError``/``ValueError`` naming it.
    """
    arch, dropout, augment, image_shape = _checked_step_args(
        arch, optimizer, grad, label_smoothing, dropout, augment, image_shape, compute_dtype,
        adversarial)
    value_and_grad = hand_value_and_grad if grad == "hand" else _autodiff_value_and_grad

    def step(params, opt_state, images, labels, key):
        x = prepare_images(images, in_dim=params[0]["w"].shape[0])  # uint8, scaled here
        if augment is not None:
            x = _augment(jax.random.fold_in(key, 1), x.reshape(-1, *image_shape),
                         augment).reshape(x.shape)
        targets = labels if not label_smoothing else smooth_labels(  # in the params' dtype
            labels, arch[-1].units, label_smoothing).astype(params[0]["w"].dtype)
        (_, logits), grads = value_and_grad(params, x, targets, arch, dropout=dropout, key=key,
                                            compute_dtype=compute_dtype, adversarial=adversarial)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, batch_metrics(logits, labels)

    return step


def _checked_step_args(arch, optimizer, grad, label_smoothing, dropout, augment, image_shape,
                       compute_dtype, adversarial):
    """``make_step``'s arguments checked, and ``(arch, dropout, augment, image_shape)`` as
    the step reads them: the parsed arch, None for no dropout or no distortion."""
    arch = parse_arch(arch)
    _check_optimizer(optimizer)
    _checks.one_of(grad, GRADS, "grad")
    _checks.probability(label_smoothing, "label_smoothing")
    _checks.one_of(compute_dtype, COMPUTE_DTYPES, "compute_dtype")
    check_adversarial(adversarial)
    if augment is not None and not isinstance(augment, Augmentation):
        raise TypeError(f"augment must be an Augmentation (jaxmlp.parse_augment) or None, got "
                        f"{type(augment).__name__}")
    if image_shape is not None:
        image_shape = check_image_shape(image_shape)
    dropout = dropping(dropout)
    augment = augment if augment is not None and augment.active else None
    if augment is not None and image_shape is None:
        raise ValueError("augmentation needs the images' shape (H, W, C): pass image_shape")
    return arch, dropout, augment, image_shape


def _check_optimizer(optimizer) -> None:
    """Raises unless ``optimizer`` is an Optax transformation (``init`` and ``update``)."""
    if not (callable(getattr(optimizer, "init", None))
            and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"optimizer must be an optax.GradientTransformation "
                        f"(jaxmlp.make_optimizer), got {type(optimizer).__name__}")


def config_step(config: TrainConfig, optimizer, image_shape):
    """``make_step`` with every setting of ``config`` that shapes a step."""
    return make_step(config.layers, optimizer, config.grad, label_smoothing=config.label_smoothing,
                     dropout=config.dropout_rates, augment=config.augmentation,
                     image_shape=image_shape, compute_dtype=config.compute_dtype,
                     adversarial=config.adversarial)


def shuffle(key: jax.Array, n: int) -> jax.Array:
    """A random permutation of ``range(n)``: the indices sorted by 32 random bits each.

    One sort instead of ``jax.random.permutation``'s rounds, which cost a fifth of a
    preset-b epoch on CPU. (Ties among the 32-bit keys, about n²/2³³ pairs, keep their
    order: a negligible bias for an SGD shuffle.)

    ``key`` is one PRNG key, ``n`` an int in ``[0, 2**31)``.
    """
    _checks.prng_key(key, "key")
    _checks.integer(n, "n")
    return jax.lax.sort_key_val(jax.random.bits(key, (n,), jnp.uint32),
                                jnp.arange(n, dtype=jnp.int32))[1]


def _scan_steps(step, params, opt_state, per_step, batch, key, start):
    """The one scan body, of every epoch: step ``t`` trains on ``batch(per_step[t])`` (a
    batch's indices into the data on the device, or the batch itself when it is fed)
    with the key ``fold_in(key, start + t)``: a function of the run's key and the step's
    place in its epoch alone, so a resumed run draws what the uninterrupted run drew."""
    n = jax.tree.leaves(per_step)[0].shape[0]

    def body(carry, xs):
        part, i = xs
        params, opt_state, metrics = step(*carry, *batch(part), jax.random.fold_in(key, i))
        return (params, opt_state), metrics

    (params, opt_state), metrics = jax.lax.scan(body, (params, opt_state),
                                                (per_step, start + jnp.arange(n)))
    return params, opt_state, metrics


def _epoch(step, batch_size: int, shard):
    """``run(params, opt_state, images, labels, order_key, key, start, n)``: ``n`` steps on
    the batches ``start`` to ``start + n`` of ``shuffle(order_key)``, each gathered from
    the data on the device (and placed by ``shard``), step keys from ``key``. Not jitted:
    a single run jits it, a sweep jits its ``vmap`` over the models."""
    def run(params, opt_state, images, labels, order_key, key, start, n):
        order = jax.lax.dynamic_slice_in_dim(shuffle(order_key, images.shape[0]),
                                             start * batch_size, n * batch_size)
        return _scan_steps(step, params, opt_state, order.reshape(n, batch_size),
                           lambda idx: (shard(images[idx]), shard(labels[idx])), key, start)

    return run


def make_epoch(step, batch_size: int, mesh=None):
    """A jitted epoch: ``num_steps`` steps of one shuffled order in one ``lax.scan``.

    Returns ``run(params, opt_state, images, labels, key, start, num_steps)`` →
    ``(params, opt_state, metrics)`` with per-step ``loss`` and ``accuracy`` arrays:
    the batches are ``start`` to ``start + num_steps`` of ``shuffle(key)`` (the
    remainder that does not fill a batch is never used, so every step has one shape).
    Params and optimizer state are donated: their buffers are reused, not copied.
    With a ``mesh``, each batch is split along its ``data`` axis (the dataset and params
    being replicated), so every device gathers and trains on its share.

    Step ``i`` of the epoch gets the key ``fold_in(key, i)``: the same on a resume.

    ``step`` is ``make_step``'s (any callable of ``(params, opt_state, images, labels, key)``),
    ``batch_size`` an int in ``[1, 2**31)`` (with a ``mesh``, a multiple of its size),
    ``mesh`` None or ``make_mesh``'s. The returned ``run`` is jitted, its arguments not
    checked again.
    """
    _check_epoch_args(step, batch_size, mesh)
    shard = ((lambda x: x) if mesh is None else lambda x: jax.lax.with_sharding_constraint(
        x, NamedSharding(mesh, P(DATA_AXIS))))
    epoch = _epoch(step, batch_size, shard)

    @functools.partial(jax.jit, static_argnums=6, donate_argnums=(0, 1))
    def run(params, opt_state, images, labels, key, start, num_steps):
        return epoch(params, opt_state, images, labels, key, key, start, num_steps)

    return run


def _check_epoch_args(step, batch_size, mesh) -> None:
    """``make_epoch``'s arguments, or ``TypeError``/``ValueError`` naming the one wrong."""
    if not callable(step):
        raise TypeError(f"step must be a step function (jaxmlp.make_step), got "
                        f"{type(step).__name__}")
    _checks.positive_int(batch_size, "batch_size", limit=_checks.INDEX_LIMIT)
    if mesh is not None:
        if not isinstance(mesh, Mesh) or DATA_AXIS not in mesh.axis_names:
            raise TypeError(f"mesh must be None or a mesh with a {DATA_AXIS!r} axis "
                            f"(jaxmlp.make_mesh), got {mesh!r}")
        check_batch(batch_size, mesh)


def _make_fed_epoch(step):
    """A jitted epoch over batches cut beforehand: ``run(params, opt_state, xs, ys, key,
    start)``, the same scan body as ``make_epoch``'s.

    For multi-process runs, where each process feeds its own columns of ``xs``
    ``(steps, B, 784)`` and ``ys`` ``(steps, B)`` (see ``parallel.feed_batches``); the
    step keys are those of the run in one process, and JAX's partitionable threefry draws
    a key's dropout masks and distortions for the global batch whatever its sharding, so
    each process's share of the noise is the one-process run's
    (``test_parallel.test_two_processes_match_one``).
    """
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def run(params, opt_state, xs, ys, key, start):
        return _scan_steps(step, params, opt_state, (xs, ys), lambda batch: batch, key, start)

    return run


def _compiled_ahead(epoch, static: bool):
    """``run(*args, n) → (*outputs, compile_s)``: one executable per epoch length ``n`` (a
    ``--steps`` run may end mid-epoch), compiled ahead so its cost is reported apart."""
    compiled = {}

    def run(*args, n):
        seconds = 0.0
        if n not in compiled:
            begin = time.perf_counter()
            compiled[n] = epoch.lower(*args, *((n,) if static else ())).compile()
            seconds = time.perf_counter() - begin
        return (*compiled[n](*args), seconds)

    return run


def make_epoch_runner(step, data: Dataset, batch_size: int, mesh):
    """``run(params, opt_state, key, start, n) → (params, opt_state, metrics, compile_s)``.

    The same call for one process and for many: one process has the dataset on its
    devices (``data`` holds device arrays) and gathers batches there; several each cut
    their own columns of the same order from host arrays and feed only those.
    """
    if jax.process_count() == 1:
        epoch = _compiled_ahead(make_epoch(step, batch_size, mesh), static=True)
        inputs = lambda key, start, n: (data.train_images, data.train_labels, key, start)
    else:
        epoch = _compiled_ahead(_make_fed_epoch(step), static=False)
        inputs = lambda key, start, n: (*feed_batches(
            data.train_images, data.train_labels,
            np.asarray(shuffle(key, len(data.train_labels)))[start * batch_size:][:n * batch_size],
            batch_size, mesh), key, start)

    def run(params, opt_state, key, start, n):
        return epoch(params, opt_state, *inputs(key, start, n), n=n)

    return run


def make_stack_runner(step, batch_size: int, order: str, data: Dataset, mesh: Mesh):
    """``run(params, opt_state, keys, start, n) → (params, opt_state, metrics, compile_s)``
    for a stack of K models: ``jax.vmap`` of the single run's epoch over the model axis,
    the metrics ``(n, K)``.

    ``step`` is a ``make_step`` whose optimizer holds each model's hyperparameters in its
    state (``make_optimizer(..., per_model=True)``); ``keys`` each model's epoch key
    ``(K,)``. Model i's step keys come from ``keys[i]``, as in its single run; its batches
    are those of ``shuffle(keys[i])`` (``order`` independent, each model's batch gathered
    where the model lives: the constraint on the model axis, ``spmd_axis_name``) or of
    ``shuffle(keys[0])`` for all (shared: one gather, every model reads it).
    """
    shared = order == "shared"
    replicated = NamedSharding(mesh, P())  # under vmap: split along the model axis
    epoch = _epoch(step, batch_size, (lambda x: x) if shared else
                   lambda x: jax.lax.with_sharding_constraint(x, replicated))

    @functools.partial(jax.jit, static_argnums=6, donate_argnums=(0, 1))
    def stack_epoch(params, opt_state, images, labels, keys, start, n):
        many = jax.vmap(functools.partial(epoch, n=n), spmd_axis_name=MODEL_AXIS,
                        in_axes=(0, 0, None, None, None if shared else 0, 0, None))
        params, opt_state, metrics = many(params, opt_state, images, labels,
                                          keys[0] if shared else keys, keys, start)
        return params, opt_state, jax.tree.map(lambda m: m.T, metrics)  # (n, K)

    compiled = _compiled_ahead(stack_epoch, static=True)

    def run(params, opt_state, keys, start, n):
        return compiled(params, opt_state, data.train_images, data.train_labels, keys, start,
                        n=n)

    return run
