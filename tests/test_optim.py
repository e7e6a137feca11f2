"""The optimizers: defaults, schedule with warm-up, clipping and weight decay, by hand values."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmlp._config import TrainConfig
from jaxmlp._optim import OPTIMIZERS, make_optimizer, schedule


def test_unset_lr_and_weight_decay_are_the_optimizers_defaults():
    for name, defaults in OPTIMIZERS.items():
        config = TrainConfig(optimizer=name)
        assert (config.lr, config.weight_decay) == (defaults["lr"], defaults["weight_decay"])
    assert TrainConfig().lr == 0.1 and TrainConfig().weight_decay == 0.0  # the seed's SGD
    given = TrainConfig(optimizer="adam", lr=0.02, weight_decay=0.5)
    assert (given.lr, given.weight_decay) == (0.02, 0.5)  # given values are kept
    assert TrainConfig.from_dict({"optimizer": "lion"}).lr == 1e-4  # and a config.json's


@pytest.mark.parametrize("changes, message", [
    ({"optimizer": "rmsprop"}, "`optimizer` must be one of"),
    ({"optimizer": "lion", "nesterov": True}, "`nesterov` does not apply to lion"),
    ({"weight_decay": -1e-4}, "`weight_decay` must be >= 0"),
    ({"weight_decay": float("nan")}, "`weight_decay` must be >= 0"),
    ({"warmup_steps": -1}, "`warmup_steps` must be >= 0"),
    ({"clip_norm": 0.0}, "`clip_norm` must be positive"),
    ({"clip_norm": float("inf")}, "`clip_norm` must be positive"),
    ({"val_size": -5}, "`val_size` must be >= 0"),
    ({"dataset": "../etc"}, "not a TFDS dataset name"),
    # Training runs in float32: values it would turn into 0, 1 or infinity are refused.
    ({"lr": 1e-50}, r"got 1e-50 \(0 as a float32"),
    ({"lr": 1e39}, r"got 1e\+39 \(inf as a float32"),
    ({"clip_norm": 1e-50}, r"`clip_norm` must be positive, got 1e-50 \(0 as a float32"),
    ({"weight_decay": 1e39}, r"`weight_decay` must be >= 0, got 1e\+39 \(inf as a float32"),
    ({"optimizer": "adam", "momentum": 0.999999999}, r"\(1 as a float32"),
])
def test_bad_settings_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes).validate()


def test_warmup_rises_linearly_then_decays_by_cosine():
    rate = schedule(0.2, num_steps=110, warmup_steps=10, kind="cosine")
    values = [float(rate(s)) for s in (0, 5, 10, 60, 110)]
    # 0 → 0.2 over 10 steps; then cosine over the remaining 100: half-way is 0.1, the end 0.
    np.testing.assert_allclose(values, [0.0, 0.1, 0.2, 0.1, 0.0], atol=1e-7)
    constant = schedule(0.2, num_steps=110, warmup_steps=4, kind="constant")
    np.testing.assert_allclose([float(constant(s)) for s in (1, 4, 100)], [0.05, 0.2, 0.2])
    assert float(schedule(0.2, 100)(0)) == pytest.approx(0.2)  # no warm-up: the peak at once


def test_warmup_must_end_before_the_run():
    TrainConfig(warmup_steps=99).check_length(100)
    with pytest.raises(ValueError, match="`warmup_steps` 100 is not shorter than the run "
                                         r"\(100 steps\)"):
        TrainConfig(warmup_steps=100).check_length(100)


PARAMS = [{"w": jnp.array([[1.0, -2.0]]), "b": jnp.array([0.5, 0.5])}]
GRADS = [{"w": jnp.array([[3.0, 0.0]]), "b": jnp.array([0.0, 4.0])}]  # global norm 5


def _first_update(**settings):
    config = TrainConfig(schedule="constant", **settings)
    optimizer = make_optimizer(config, 100)
    updates, _ = optimizer.update(GRADS, optimizer.init(PARAMS), PARAMS)
    return [{k: np.asarray(v) for k, v in layer.items()} for layer in updates]


def test_clip_norm_scales_the_gradient_to_that_norm():
    (u,) = _first_update(lr=1.0, momentum=0.0, clip_norm=1.0)
    np.testing.assert_allclose(u["w"], [[-0.6, 0.0]], rtol=1e-6)  # −g · 1/5
    np.testing.assert_allclose(u["b"], [0.0, -0.8], rtol=1e-6)
    (u,) = _first_update(lr=1.0, momentum=0.0, clip_norm=10.0)  # under the norm: unchanged
    np.testing.assert_allclose(u["w"], [[-3.0, 0.0]])


def test_sgd_weight_decay_is_l2_on_weights_only():
    (u,) = _first_update(lr=0.1, momentum=0.0, weight_decay=0.5)
    np.testing.assert_allclose(u["w"], [[-0.1 * (3 + 0.5), -0.1 * (0 - 1.0)]], rtol=1e-6)
    np.testing.assert_allclose(u["b"], [0.0, -0.4], rtol=1e-6)  # biases are not decayed


def test_adam_momentum_is_b1():
    # Two steps by hand: m = b1 m + (1 − b1) g, v = b2 v + (1 − b2) g², bias-corrected.
    b1, b2, eps, lr = 0.5, 0.999, 1e-8, 0.01
    config = TrainConfig(optimizer="adam", lr=lr, momentum=b1, schedule="constant")
    optimizer = make_optimizer(config, 100)
    state = optimizer.init(PARAMS)
    g1, g2 = np.array([3.0, 0.0]), np.array([1.0, 2.0])
    m = v = np.zeros(2)
    for t, g in enumerate((g1, g2), start=1):
        grads = [{"w": jnp.asarray(g)[None], "b": jnp.zeros(2)}]
        updates, state = optimizer.update(grads, state, PARAMS)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g ** 2
        expected = -lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        np.testing.assert_allclose(np.asarray(updates[0]["w"][0]), expected, rtol=1e-5)


def test_adamw_and_lion_decay_the_weights_decoupled():
    lr, wd = 0.01, 0.1
    for name in ("adamw", "lion"):
        (u,) = _first_update(optimizer=name, lr=lr, weight_decay=wd)
        # First step: Adam's m̂/√v̂ and Lion's sign are both sign(g) (0 where g = 0); then
        # − lr · wd · w on the weights alone, added after, not scaled by √v.
        np.testing.assert_allclose(u["w"], [[-lr * (1 + wd * 1.0), -lr * (0 + wd * -2.0)]],
                                   rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(u["b"], [0.0, -lr], rtol=1e-5, atol=1e-9)


def test_every_optimizer_takes_a_traced_lr_and_momentum():
    # A sweep builds the optimizer inside vmap from per-model values.
    for name in OPTIMIZERS:
        config = TrainConfig(optimizer=name, warmup_steps=3, clip_norm=1.0, weight_decay=0.01)

        def second(lr, momentum, config=config):  # the first step of a warm-up has lr 0
            optimizer = make_optimizer(config, 10, lr=lr, momentum=momentum)
            _, state = optimizer.update(GRADS, optimizer.init(PARAMS), PARAMS)
            return optimizer.update(GRADS, state, PARAMS)[0][0]["w"]

        many = jax.vmap(second)(jnp.array([0.1, 0.2]), jnp.array([0.9, 0.5]))
        np.testing.assert_allclose(many[1], second(0.2, 0.5), rtol=1e-6)
        np.testing.assert_allclose(many[0], second(0.1, 0.9), rtol=1e-6)
        assert np.abs(np.asarray(many[0] - many[1])).max() > 1e-4  # the values took effect
    assert isinstance(make_optimizer(TrainConfig(), 10), optax.GradientTransformation)


def test_one_per_model_optimizer_updates_each_model_with_its_own_values():
    # Issue 25: built once, its lr and momentum in its state (HyperState), vmapped over the
    # models: each model's updates are those of the optimizer built with its values (to
    # float32 rounding: vmap may fuse the arithmetic otherwise).
    from jaxmlp import HyperState

    for name in OPTIMIZERS:
        config = TrainConfig(optimizer=name, warmup_steps=3, clip_norm=1.0, weight_decay=0.01)
        optimizer = make_optimizer(config, 10, per_model=True)
        state = optimizer.init(PARAMS)
        assert isinstance(state, HyperState)
        assert (float(state.hyper["lr"]), float(state.hyper["momentum"])) == pytest.approx(
            (config.lr, config.momentum))

        def two_steps(hyper, optimizer=optimizer):
            state = optimizer.init(PARAMS)._replace(hyper=hyper)
            _, state = optimizer.update(GRADS, state, PARAMS)
            return optimizer.update(GRADS, state, PARAMS)[0][0]["w"]

        hyper = {"lr": jnp.array([0.1, 0.2]), "momentum": jnp.array([0.9, 0.5])}
        many = jax.vmap(two_steps)(hyper)
        for i in range(2):
            alone = make_optimizer(config, 10, lr=hyper["lr"][i], momentum=hyper["momentum"][i])
            _, s = alone.update(GRADS, alone.init(PARAMS), PARAMS)
            np.testing.assert_allclose(many[i], alone.update(GRADS, s, PARAMS)[0][0]["w"],
                                       rtol=1e-6)
        assert np.abs(np.asarray(many[0] - many[1])).max() > 1e-4  # the values took effect
    with pytest.raises(TypeError, match="per_model must be True or False"):
        make_optimizer(TrainConfig(), 10, per_model=1)


def test_max_norm_by_hand():
    # Two units: column 0 has norm 5 (3, 4) after the update, column 1 norm 1 (0.6, 0.8).
    from jaxmlp._optim import max_norm

    params = [{"w": jnp.array([[1.0, 0.5], [2.0, 0.5]]), "b": jnp.array([7.0, 8.0])}]
    updates = [{"w": jnp.array([[2.0, 0.1], [2.0, 0.3]]), "b": jnp.array([1.0, 1.0])}]
    new, _ = max_norm(2.0).update(updates, max_norm(2.0).init(params), params)
    w = optax.apply_updates(params, new)[0]["w"]
    np.testing.assert_allclose(w[:, 0], [3 * 2 / 5, 4 * 2 / 5], rtol=1e-6)  # onto the ball
    np.testing.assert_array_equal(new[0]["w"][:, 1], updates[0]["w"][:, 1])  # inside: as is
    np.testing.assert_array_equal(new[0]["b"], updates[0]["b"])  # biases never constrained
    np.testing.assert_allclose(jnp.linalg.norm(w[:, 0]), 2.0, rtol=1e-6)


def test_max_norm_is_the_last_step_of_the_optimizer():
    config = TrainConfig(max_norm=1.5, lr=1.0, momentum=0.0, schedule="constant")
    opt = make_optimizer(config, 10)
    params = [{"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}]
    grads = [{"w": -jnp.ones((3, 2)) * 4, "b": jnp.ones(2)}]
    updates, _ = opt.update(grads, opt.init(params), params)
    w = optax.apply_updates(params, updates)[0]["w"]  # 1 + 4 = 5 per entry, norm 5√3
    np.testing.assert_allclose(jnp.linalg.norm(w, axis=0), [1.5, 1.5], rtol=1e-6)
    plain = make_optimizer(TrainConfig(lr=1.0, momentum=0.0, schedule="constant"), 10)
    assert jax.tree.structure(plain.init(params)) != jax.tree.structure(opt.init(params))
    with pytest.raises(ValueError, match="`max_norm` must be positive, got -1"):
        TrainConfig(max_norm=-1.0)


def test_ema_averages_the_new_params_by_hand_and_passes_updates_on():
    from jaxmlp._optim import ema_of, ema

    avg = ema(0.9)
    params = [{"w": jnp.array([1.0]), "b": jnp.array([0.0])}]
    state = avg.init(params)
    np.testing.assert_array_equal(ema_of(state)[0]["w"], [1.0])  # starts at the params
    step = [{"w": jnp.array([1.0]), "b": jnp.array([2.0])}]
    out, state = avg.update(step, state, params)
    assert out is step                                  # the updates pass unchanged
    # t = 0: d = min(0.9, 1/10) = 0.1, a = 0.1·1 + 0.9·(1 + 1) = 1.9 (b: 0.9·2 = 1.8).
    np.testing.assert_allclose(ema_of(state)[0]["w"], [1.9], rtol=1e-6)
    np.testing.assert_allclose(ema_of(state)[0]["b"], [1.8], rtol=1e-6)
    params = [{"w": jnp.array([2.0]), "b": jnp.array([2.0])}]
    _, state = avg.update(step, state, params)
    # t = 1: d = 2/11, a = (2/11)·1.9 + (9/11)·3.
    np.testing.assert_allclose(ema_of(state)[0]["w"], [2 / 11 * 1.9 + 9 / 11 * 3], rtol=1e-6)
    # Late on, d is the decay itself.
    state = state._replace(count=jnp.array(10_000))
    _, state = avg.update(step, state, params)
    np.testing.assert_allclose(ema_of(state)[0]["w"],
                               [0.9 * (2 / 11 * 1.9 + 9 / 11 * 3) + 0.1 * 3], rtol=1e-6)
    # make_optimizer chains it last, after max-norm; without --ema there is none.
    from jaxmlp import TrainConfig, make_optimizer

    p = [{"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}]
    with_ema = make_optimizer(TrainConfig(arch="2:linear", ema=0.99, max_norm=1.0), 10)
    assert ema_of(with_ema.init(p)) is not None
    assert ema_of(make_optimizer(TrainConfig(arch="2:linear"), 10).init(p)) is None
    with pytest.raises(ValueError, match=r"`ema` must be in \(0, 1\), got 1"):
        TrainConfig(ema=1.0)
