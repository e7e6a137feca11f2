"""The heart of jaxmlp: the hand-written backward pass equals jax.grad."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax.test_util import check_grads

import jaxmlp
from jaxmlp import hand_grad, hand_loss, init_params, loss, parse_arch

_auto = jax.jit(jax.grad(loss), static_argnums=3)
_hand = jax.jit(hand_grad, static_argnums=3)
_via_vjp = jax.jit(jax.grad(hand_loss), static_argnums=3)


def _problem(arch, in_dim, batch, seed, dtype=np.float64, soft=False):
    """Random params (He/Glorot-like scale), inputs and labels, from numpy."""
    rng = np.random.default_rng(seed)
    params, fan_in = [], in_dim
    for units, _ in arch:
        params.append({"w": jnp.asarray(rng.normal(size=(fan_in, units)) / np.sqrt(fan_in), dtype),
                       "b": jnp.asarray(0.1 * rng.normal(size=units), dtype)})
        fan_in = units
    x = jnp.asarray(rng.normal(size=(batch, in_dim)), dtype)
    n = arch[-1].units
    y = (jnp.asarray(rng.dirichlet(np.ones(n), batch), dtype) if soft
         else jnp.asarray(rng.integers(0, n, batch)))
    return params, x, y


def _assert_trees_close(a, b, atol, rtol=0.0):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert u.shape == v.shape and u.dtype == v.dtype
        np.testing.assert_allclose(u, v, atol=atol, rtol=rtol)


@pytest.mark.parametrize("preset", ["a", "b", "c"])
@pytest.mark.parametrize("batch", [1, 32])
def test_presets_match_autodiff_float64(x64, preset, batch):
    arch = parse_arch(preset)
    params, x, y = _problem(arch, 784, batch, seed=batch)
    g = _hand(params, x, y, arch)
    _assert_trees_close(g, _auto(params, x, y, arch), atol=1e-12)
    _assert_trees_close(_via_vjp(params, x, y, arch), g, atol=1e-12)
    # Not vacuous: the gradient is far from zero.
    assert max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(g)) > 1e-3


@pytest.mark.parametrize("preset", ["a", "b", "c"])
def test_presets_match_autodiff_float32(preset):
    # float32: agreement to 1e-6 absolute on gradients of order 1e-1.
    arch = parse_arch(preset)
    params, x, y = _problem(arch, 784, 64, seed=5, dtype=np.float32)
    _assert_trees_close(_hand(params, x, y, arch), _auto(params, x, y, arch), atol=1e-6, rtol=1e-5)


_layers = st.lists(st.tuples(st.integers(1, 13), st.sampled_from(sorted(jaxmlp.ACTIVATIONS))),
                   min_size=1, max_size=5)


_rates = st.tuples(st.sampled_from([0.0, 0.2, 0.5]), st.sampled_from([0.0, 0.3, 0.5]))


@settings(max_examples=15, deadline=None)
@given(layers=_layers, in_dim=st.integers(1, 11), batch=st.sampled_from([1, 2, 7]),
       soft=st.booleans(), dropout=_rates, seed=st.integers(0, 2**31 - 1))
def test_random_architectures_match_autodiff(layers, in_dim, batch, soft, dropout, seed):
    # With dropout (rates (0, 0): none), the same key draws the same masks in loss and in
    # the hand backward pass.
    arch = parse_arch(layers)
    key = jax.random.key(seed)
    with jax.enable_x64(True):
        params, x, y = _problem(arch, in_dim, batch, seed, soft=soft)
        kw = dict(dropout=dropout, key=key)
        # One program for the three gradients: a compile is most of an example's time.
        g, auto, via_vjp = jax.jit(lambda p: (
            hand_grad(p, x, y, arch, **kw), jax.grad(lambda q: loss(q, x, y, arch, **kw))(p),
            jax.grad(lambda q: hand_loss(q, x, y, arch, **kw))(p)))(params)
        _assert_trees_close(g, auto, atol=1e-10)
        _assert_trees_close(via_vjp, g, atol=1e-10)


@pytest.mark.parametrize("spec", ["7:tanh,5:sigmoid,3:linear", "b"])
def test_custom_vjp_passes_check_grads(x64, spec):
    arch = parse_arch(spec)
    params, x, y = _problem(arch, 6, 4, seed=1, soft=True)
    # Reverse mode w.r.t. params, inputs and soft targets, against finite differences.
    # eps = 1e-6 keeps the differences from stepping across a ReLU kink (at the default
    # 1e-4 they do for preset b, and jax.grad(loss) fails the same check there too).
    check_grads(lambda p, x, y: hand_loss(p, x, y, arch), (params, x, y), order=1,
                modes=["rev"], eps=1e-6)


def test_custom_vjp_composes_with_vmap_and_jit(x64):
    # Per-example gradients: vmap over single-example batches, under jit.
    arch = parse_arch("9:relu,4:tanh")
    params, x, y = _problem(arch, 5, 6, seed=2)
    per_example = lambda f: jax.jit(jax.vmap(jax.grad(f), in_axes=(None, 0, 0, None)),
                                    static_argnums=3)(params, x[:, None], y[:, None], arch)
    _assert_trees_close(per_example(hand_loss), per_example(loss), atol=1e-12)
    # Their mean is the batch gradient.
    mean = jax.tree.map(lambda g: g.mean(0), per_example(hand_loss))
    _assert_trees_close(mean, hand_grad(params, x, y, arch), atol=1e-12)


def test_input_gradient_matches_autodiff(x64):
    arch = parse_arch("c")
    params, x, y = _problem(arch, 12, 3, seed=4)
    dx = lambda f: jax.jit(jax.grad(f, argnums=1), static_argnums=3)(params, x, y, arch)
    np.testing.assert_allclose(dx(hand_loss), dx(loss), atol=1e-12)


def test_huge_logits_give_finite_exact_gradients(x64):
    # One linear layer with x = I: logits are W's rows, here ±1e4.
    arch = parse_arch("3:linear")
    params = [{"w": jnp.array([[1e4, -1e4, 0.0], [0.0, 1e4, -1e4]]), "b": jnp.zeros(3)}]
    x, y = jnp.eye(2), jnp.array([0, 0])
    value = loss(params, x, y, arch)
    np.testing.assert_allclose(value, (0.0 + 1e4) / 2)  # example 2: log p_0 = 0 − 1e4
    g = hand_grad(params, x, y, arch)
    # δ = (p − y)/2 with p = e_0 then e_1: rows (0, 0, 0) and (−1/2, 1/2, 0).
    np.testing.assert_allclose(g[0]["w"], [[0, 0, 0], [-0.5, 0.5, 0]], atol=1e-12)
    np.testing.assert_allclose(g[0]["b"], [-0.5, 0.5, 0], atol=1e-12)
    _assert_trees_close(g, _auto(params, x, y, arch), atol=1e-12)


def test_relu_gradient_at_zero_agrees():
    # A dead unit (z exactly 0) gets derivative 0 from both paths.
    arch = parse_arch("2:relu,2:linear")
    params = [{"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)},
              {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}]
    x, y = jnp.ones((1, 2)), jnp.array([1])
    g = hand_grad(params, x, y, arch)
    np.testing.assert_array_equal(g[0]["w"], 0)
    _assert_trees_close(g, _auto(params, x, y, arch), atol=0)


def test_init_params_scales():
    params = init_params(jax.random.key(0), "wide", 784)
    assert [p["w"].shape for p in params] == [(784, 1024), (1024, 1024), (1024, 10)]
    assert all(p["w"].dtype == jnp.float32 for p in params)
    # He before ReLU: std √(2/fan_in); Glorot before linear: √(2/(fan_in + fan_out)).
    np.testing.assert_allclose(float(params[0]["w"].std()), np.sqrt(2 / 784), rtol=0.02)
    np.testing.assert_allclose(float(params[1]["w"].std()), np.sqrt(2 / 1024), rtol=0.02)
    np.testing.assert_allclose(float(params[2]["w"].std()), np.sqrt(2 / 1034), rtol=0.05)
    assert all(float(jnp.abs(p["b"]).max()) == 0 for p in params)
    # Same key, same params; another key, others.
    again = init_params(jax.random.key(0), "wide", 784)
    other = init_params(jax.random.key(1), "wide", 784)
    np.testing.assert_array_equal(again[0]["w"], params[0]["w"])
    assert not np.array_equal(other[0]["w"], params[0]["w"])


def test_bad_inputs():
    arch = parse_arch("b")
    params = init_params(jax.random.key(0), arch, 784)
    x, y = jnp.zeros((4, 784)), jnp.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="x has width 783 but the first layer expects 784"):
        loss(params, jnp.zeros((4, 783)), y, arch)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, in_dim\)"):
        hand_grad(params, jnp.zeros(784), y, arch)
    with pytest.raises(TypeError, match="x must be floating point, got dtype uint8"):
        loss(params, jnp.zeros((4, 784), jnp.uint8), y, arch)
    with pytest.raises(ValueError, match="label out of range"):
        hand_grad(params, x, jnp.array([0, 1, 2, 10]), arch)
    with pytest.raises(ValueError, match="integer labels must have shape"):
        loss(params, x, jnp.array([0, 1]), arch)
    with pytest.raises(ValueError, match="params have 3 layers but the architecture has 1"):
        loss(params, x, y, "a")
    with pytest.raises(ValueError, match="layer 1: expected w"):
        loss(params, x, y, "50:relu,40:relu,10:linear")
    with pytest.raises(ValueError, match="empty batch"):
        loss(params, jnp.zeros((0, 784)), jnp.zeros((0,), int), arch)
    with pytest.raises(ValueError, match="in_dim must be a positive int"):
        init_params(jax.random.key(0), arch, 0)


@pytest.mark.parametrize("spec", ["a", "b", "c", "7:tanh,5:sigmoid,3:linear"])
def test_out_of_range_label_under_jit_gives_nan_in_both(x64, spec):
    # Under jit a label cannot be checked, so it must not be scored as another class:
    # the loss is NaN and both gradient paths give NaN, in the same places.
    arch = parse_arch(spec)
    params, x, _ = _problem(arch, 6, 4, seed=3)
    n = arch[-1].units
    for bad in (-1, n):
        y = jnp.array([0, bad, 1, 0])
        assert np.isnan(jax.jit(loss, static_argnums=3)(params, x, y, arch))
        hand, auto = _hand(params, x, y, arch), _auto(params, x, y, arch)
        for h, a in zip(jax.tree.leaves(hand), jax.tree.leaves(auto)):
            assert np.any(np.isnan(h))
            np.testing.assert_allclose(h, a, atol=1e-12, equal_nan=True)
        # The same batch with a valid label is finite: the NaN comes from the label alone.
        good = _hand(params, x, y.at[1].set(n - 1), arch)
        assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(good))


def test_lecun_tanh_by_hand_and_against_autodiff(x64):
    # f(z) = 1.7159 tanh(2z/3): f(0) = 0, f(1) = 1.7159 tanh(2/3) ≈ 1.0000 (LeCun's choice),
    # f'(0) = 1.7159 · 2/3.
    f = jaxmlp.ACTIVATIONS["lecun_tanh"]
    z = jnp.array([0.0, 1.0, -1.0, 3.0])
    a = f.fn(z)
    np.testing.assert_allclose(a[:3], [0.0, 1.7159 * np.tanh(2 / 3), -1.7159 * np.tanh(2 / 3)])
    assert abs(float(a[1]) - 1.0) < 2e-4
    np.testing.assert_allclose(f.grad(z, a)[0], 1.7159 * 2 / 3)
    np.testing.assert_allclose(f.grad(z, a), jax.vmap(jax.grad(f.fn))(z), atol=1e-14)


def test_dropout_masks_by_hand_and_their_effect(x64):
    from jaxmlp._mlp import dropout_masks

    arch = parse_arch("400:relu,300:relu,10:linear")
    x = jnp.ones((50, 200))
    masks = dropout_masks(jax.random.key(0), x, arch, (0.2, 0.5))
    assert [m.shape for m in masks] == [(50, 200), (50, 400), (50, 300)]
    # Inverted dropout: entries are 0 or 1/(1 − p), kept at the rate 1 − p.
    np.testing.assert_array_equal(np.unique(masks[0]), [0, 1 / 0.8])
    np.testing.assert_array_equal(np.unique(masks[1]), [0, 2])
    assert abs(float(jnp.mean(masks[0] > 0)) - 0.8) < 0.01
    assert abs(float(jnp.mean(masks[2] > 0)) - 0.5) < 0.02
    again = dropout_masks(jax.random.key(0), x, arch, (0.2, 0.5))
    other = dropout_masks(jax.random.key(1), x, arch, (0.2, 0.5))
    assert all(np.array_equal(a, b) for a, b in zip(masks, again))
    assert not np.array_equal(masks[1], other[1])
    assert dropout_masks(jax.random.key(0), x, arch, (0.0, 0.5))[0] is None
    # No dropout (None, or both rates 0) is the plain loss, bit for bit; a rate needs a key.
    params, xs, ys = _problem(parse_arch("5:tanh,3:linear"), 4, 6, seed=0)
    plain = loss(params, xs, ys, "5:tanh,3:linear")
    assert loss(params, xs, ys, "5:tanh,3:linear", dropout=(0.0, 0.0)) == plain
    assert hand_loss(params, xs, ys, "5:tanh,3:linear", dropout=None) == plain
    dropped = loss(params, xs, ys, "5:tanh,3:linear", dropout=(0.0, 0.5), key=jax.random.key(3))
    assert dropped != plain
    with pytest.raises(ValueError, match="dropout needs a key"):
        loss(params, xs, ys, "5:tanh,3:linear", dropout=(0.0, 0.5))


def test_dropout_custom_vjp_passes_check_grads(x64):
    arch = parse_arch("7:tanh,5:relu,3:linear")
    params, x, y = _problem(arch, 6, 4, seed=1, soft=True)
    key = jax.random.key(7)
    check_grads(lambda p, x, y: hand_loss(p, x, y, arch, dropout=(0.3, 0.5), key=key),
                (params, x, y), order=1, modes=["rev"], eps=1e-6)


# Adversarial training (Goodfellow, Shlens & Szegedy 2015): the objective ½J(x) + ½J(x̃),
# x̃ = clip(x + ε·sign(∂J/∂x), 0, 1). loss(..., adversarial=ε) takes ∂J/∂x from jax.grad;
# hand_value_and_grad from its own backward pass. Inputs are images: pixels in [0, 1].

def _images_problem(arch, in_dim, batch, seed, soft=False):
    params, _, y = _problem(arch, in_dim, batch, seed, soft=soft)
    x = jnp.asarray(np.random.default_rng(seed + 1).uniform(size=(batch, in_dim)))
    return params, x, y


def test_adversarial_objective_by_hand(x64):
    # One linear layer, W = I, x = (½, ½), label 0: z = x, p = (½, ½), ∂J/∂z = p − y =
    # (−½, ½) = ∂J/∂x, so x̃ = x + ε·(−1, 1).
    params = [{"w": jnp.eye(2), "b": jnp.zeros(2)}]
    x, y = jnp.array([[0.5, 0.5]]), jnp.array([0])
    for eps, x_adv in [(0.25, [0.25, 0.75]), (0.75, [0.0, 1.0])]:  # 0.75: clipped to pixels
        # J(x̃) = −log softmax(x̃)_0 = log(1 + e^(x̃_1 − x̃_0)).
        j_adv = np.log1p(np.exp(x_adv[1] - x_adv[0]))
        want = (np.log(2) + j_adv) / 2
        np.testing.assert_allclose(loss(params, x, y, "2:linear", adversarial=eps), want)
        (value, logits), g = jaxmlp.hand_value_and_grad(params, x, y, "2:linear",
                                                        adversarial=eps)
        np.testing.assert_allclose(value, want)
        np.testing.assert_allclose(logits, x)  # the clean batch's logits
        # dW = ½(xᵀ(p − y) + x̃ᵀ(p̃ − y)), db = ½((p − y) + (p̃ − y)).
        p_adv = np.exp(x_adv) / np.sum(np.exp(x_adv))
        d, d_adv = np.array([-0.5, 0.5]), p_adv - [1, 0]
        np.testing.assert_allclose(g[0]["w"], (np.outer([0.5, 0.5], d)
                                               + np.outer(x_adv, d_adv)) / 2, atol=1e-12)
        np.testing.assert_allclose(g[0]["b"], (d + d_adv) / 2, atol=1e-12)
    np.testing.assert_array_equal(jaxmlp.fast_gradient_sign(x, jnp.array([[-3.0, 0.0]]), 0.1),
                                  [[0.4, 0.5]])  # no gradient: the pixel stays
    # Under jit ε may be traced (a schedule of it); the range check waits for concrete pixels.
    np.testing.assert_array_equal(jax.jit(jaxmlp.fast_gradient_sign)(
        x, jnp.array([[-3.0, 2.0]]), 0.25), [[0.25, 0.75]])
    with pytest.raises(ValueError, match=r"scaled to \[0, 1\], got values in \[127.5, 127.5\]"):
        loss(params, x * 255, y, "2:linear", adversarial=0.1)  # not silently clipped


@pytest.mark.parametrize("spec,dropout,soft", [("b", None, False),
                                               ("7:tanh,5:relu,3:linear", (0.2, 0.5), True),
                                               ("6:lecun_tanh,4:sigmoid", None, True)])
def test_adversarial_gradient_matches_autodiff(x64, spec, dropout, soft):
    arch = parse_arch(spec)
    params, x, y = _images_problem(arch, 9, 16, seed=3, soft=soft)
    kw = dict(dropout=dropout, key=jax.random.key(5), adversarial=0.1)
    (value, _), g = jaxmlp.hand_value_and_grad(params, x, y, arch, **kw)
    auto_value, auto = jax.value_and_grad(lambda p: loss(p, x, y, arch, **kw))(params)
    np.testing.assert_allclose(value, auto_value, rtol=1e-13)
    _assert_trees_close(g, auto, atol=1e-12)
    _assert_trees_close(jaxmlp.hand_grad(params, x, y, arch, **kw), g, atol=0)
    # Not the plain gradient, and the adversarial half raises the loss.
    plain = loss(params, x, y, arch, dropout=dropout, key=kw["key"])
    assert value > plain
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree.leaves(g), jax.tree.leaves(hand_grad(params, x, y, arch, dropout=dropout,
                                                      key=kw["key"])))) > 1e-3


def test_adversarial_zero_is_the_plain_loss_bit_for_bit(x64):
    arch = parse_arch("b")
    params, x, y = _images_problem(arch, 784, 8, seed=2)
    assert loss(params, x, y, arch, adversarial=0.0) == loss(params, x, y, arch)
    _assert_trees_close(hand_grad(params, x, y, arch, adversarial=0), hand_grad(params, x, y, arch),
                        atol=0)


@pytest.mark.parametrize("eps,error", [(-0.1, ValueError), (1.5, ValueError), (1e-50, ValueError),
                                       (float("nan"), ValueError), ("0.1", TypeError),
                                       (True, TypeError)])
def test_adversarial_out_of_range_is_refused(x64, eps, error):
    arch = parse_arch("3:linear")
    params, x, y = _images_problem(arch, 2, 2, seed=0)
    for f in (loss, hand_grad):
        with pytest.raises(error, match="adversarial"):
            f(params, x, y, arch, adversarial=eps)
