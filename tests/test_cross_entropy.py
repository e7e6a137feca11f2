import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxmlp import cross_entropy, cross_entropy_grad


def _targets(kind, rng, batch, n, dtype):
    labels = rng.integers(0, n, batch)
    if kind == "labels":
        return jnp.asarray(labels)
    if kind == "one_hot":
        return jnp.asarray(np.eye(n, dtype=dtype)[labels])
    if kind == "soft":
        e = np.exp(rng.normal(size=(batch, n)))
        return jnp.asarray((e / e.sum(-1, keepdims=True)).astype(dtype))
    # Rows that do not sum to 1: the general rule p·Σy − y.
    return jnp.asarray(3.0 * rng.uniform(size=(batch, n)).astype(dtype))


# Jitted, so each shape compiles once rather than op by op.
_auto_grad = jax.jit(jax.grad(lambda z, y: jnp.sum(cross_entropy(z, y))))
_hand_grad = jax.jit(cross_entropy_grad)


def test_hand_values():
    # z = (0, ln 3): p = (1/4, 3/4). Label 1: J = −ln(3/4); ∂J/∂z = p − e_1 = (1/4, −1/4).
    z = jnp.array([[0.0, np.log(3.0)]])
    np.testing.assert_allclose(cross_entropy(z, jnp.array([1])), [-np.log(0.75)], rtol=1e-6)
    np.testing.assert_allclose(cross_entropy_grad(z, jnp.array([1])), [[0.25, -0.25]], atol=1e-7)
    # Rows y = (2, 2), Σy = 4: J = −2 ln(1/4) − 2 ln(3/4); ∂J/∂z = 4p − y = (−1, 1).
    y = jnp.array([[2.0, 2.0]])
    np.testing.assert_allclose(cross_entropy(z, y), [-2 * np.log(0.25) - 2 * np.log(0.75)], rtol=1e-6)
    np.testing.assert_allclose(cross_entropy_grad(z, y), [[-1.0, 1.0]], atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["labels", "one_hot", "soft", "unnormalised"]),
       batch=st.sampled_from([1, 2, 7]), n=st.sampled_from([1, 2, 3, 10]), seed=st.integers(0, 2**31 - 1),
       scale=st.sampled_from([0.1, 1.0, 20.0]))
def test_grad_matches_autodiff(kind, batch, n, seed, scale):
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        z = jnp.asarray(scale * rng.normal(size=(batch, n)))
        y = _targets(kind, rng, batch, n, np.float64)
        np.testing.assert_allclose(_hand_grad(z, y), _auto_grad(z, y), atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", ["labels", "one_hot", "soft", "unnormalised"])
def test_grad_matches_autodiff_float32(kind):
    rng = np.random.default_rng(7)
    z = jnp.asarray(3.0 * rng.normal(size=(32, 10)), jnp.float32)
    y = _targets(kind, rng, 32, 10, np.float32)
    auto = jax.grad(lambda v: jnp.sum(cross_entropy(v, y)))(z)
    # float32: within a few ulps of the gradient's scale (rows of y sum up to 30 here).
    np.testing.assert_allclose(cross_entropy_grad(z, y), auto, atol=1e-6, rtol=1e-5)


def test_labels_and_one_hot_agree(x64):
    z = jax.random.normal(jax.random.key(0), (6, 4), jnp.float64)
    y = jnp.array([0, 3, 1, 2, 2, 0])
    y1 = jax.nn.one_hot(y, 4, dtype=jnp.float64)
    np.testing.assert_allclose(cross_entropy(z, y), cross_entropy(z, y1), atol=1e-14)
    np.testing.assert_allclose(cross_entropy_grad(z, y), cross_entropy_grad(z, y1), atol=1e-15)


def test_huge_logits_exact():
    z = jnp.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]])
    y = jnp.array([0, 1])
    loss = cross_entropy(z, y)
    np.testing.assert_allclose(loss, [0.0, 2e4], rtol=1e-6)
    np.testing.assert_allclose(cross_entropy_grad(z, y), [[0, 0, 0], [1, -1, 0]], atol=1e-7)
    g = jax.grad(lambda v: jnp.sum(cross_entropy(v, y)))(z)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, cross_entropy_grad(z, y), atol=1e-7)


def test_bad_targets():
    z = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match="label out of range"):
        cross_entropy(z, jnp.array([0, 4, 1]))
    with pytest.raises(ValueError, match="label out of range"):
        cross_entropy_grad(z, jnp.array([0, -1, 1]))
    with pytest.raises(ValueError, match=r"integer labels must have shape \(3,\)"):
        cross_entropy(z, jnp.array([0, 1]))
    with pytest.raises(ValueError, match=r"target rows must have the logits' shape \(3, 4\)"):
        cross_entropy(z, jnp.zeros((3, 5)))
    with pytest.raises(TypeError, match="dtype bool"):
        cross_entropy(z, jnp.zeros((3, 4), bool))


# Out-of-range labels under jit: values are not concrete, so nothing can raise; the
# example must be NaN (never scored as another class) and so must its gradient.
_jit_loss = jax.jit(cross_entropy)
_jit_hand = jax.jit(cross_entropy_grad)
_jit_auto = jax.jit(jax.grad(lambda z, y: jnp.mean(cross_entropy(z, y))))


@pytest.mark.parametrize("bad", [-1, 4, -5, 1000])
def test_out_of_range_label_is_nan_under_jit(bad):
    z = jnp.array([[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, -1.0]])
    y = jnp.array([2, bad, 0])
    ok = np.array([0, 2])
    good = cross_entropy(z[ok], jnp.array([2, 0]))
    loss = _jit_loss(z, y)
    assert np.isnan(loss[1])
    np.testing.assert_allclose(loss[ok], good, rtol=1e-6)  # the others are untouched
    hand = _jit_hand(z, y)
    assert np.all(np.isnan(hand[1]))
    np.testing.assert_allclose(hand[ok], cross_entropy_grad(z[ok], jnp.array([2, 0])),
                               atol=1e-7)
    # jax.grad of the mean loss is NaN too, so the two gradients still agree.
    auto = _jit_auto(z, y)
    assert np.all(np.isnan(auto[1]))
    np.testing.assert_allclose(hand / 3, auto, atol=1e-7, equal_nan=True)


def test_out_of_range_label_never_scores_another_class_under_jit():
    # Before the fix, label −1 was scored as class n − 1 under jit (a wrapped gather).
    z = jnp.array([[0.0, 0.0, 5.0]])
    assert np.isnan(_jit_loss(z, jnp.array([-1]))[0])
    np.testing.assert_allclose(_jit_loss(z, jnp.array([2])), cross_entropy(z, jnp.array([2])))


def test_out_of_range_label_raises_when_concrete():
    z = jnp.zeros((2, 3))
    for f in (cross_entropy, cross_entropy_grad):
        with pytest.raises(ValueError, match=r"label out of range: labels must lie in \[0, 3\)"):
            f(z, jnp.array([0, 3]))
        with pytest.raises(ValueError, match=r"got values in \[-1, 0\]"):
            f(z, np.array([0, -1]))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_zero_target_times_log_zero_is_zero(jit):
    # p_1 = 0 exactly (a −inf logit); y_1 = 0, so 0·log 0 = 0: J = −log p_0 = log(1 + e^{−1}).
    z = jnp.array([[1.0, -jnp.inf, 0.0], [0.0, -jnp.inf, 0.0]])
    rows = jnp.array([[1.0, 0.0, 0.0], [0.5, 0.0, 0.5]])
    labels = jnp.array([0, 2])
    f = _jit_loss if jit else cross_entropy
    g_hand = _jit_hand if jit else cross_entropy_grad
    g_auto = _jit_auto if jit else jax.grad(lambda v, y: jnp.mean(cross_entropy(v, y)))
    expected = [np.log1p(np.exp(-1.0)), np.log(2.0)]
    np.testing.assert_allclose(f(z, rows), expected, rtol=1e-6)
    np.testing.assert_allclose(f(z[:1], rows[:1]), f(z[:1], labels[:1]), rtol=1e-7)
    hand, auto = g_hand(z, rows), g_auto(z, rows)
    assert np.all(np.isfinite(hand)) and np.all(np.isfinite(auto))
    p0 = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(hand, [[p0 - 1, 0, 1 - p0], [0, 0, 0]], atol=1e-7)
    np.testing.assert_allclose(hand / 2, auto, atol=1e-7)


def test_zero_target_keeps_target_gradient():
    # ∂J/∂y_i = −log p_i, also where y_i = 0 (the rule changes only 0·(−inf)).
    z = jnp.array([[0.0, np.log(3.0), -jnp.inf]])
    y = jnp.array([[1.0, 0.0, 0.0]])
    dy = jax.grad(lambda t: jnp.sum(cross_entropy(z, t)))(y)
    np.testing.assert_allclose(dy[0, :2], [np.log(4.0), np.log(4.0 / 3.0)], rtol=1e-6)
    assert np.isfinite(dy[0, 2])


def test_positive_target_on_zero_probability_is_infinite():
    # The rule does not hide a real infinity: y_i > 0 where p_i = 0 costs +inf.
    z = jnp.array([[0.0, -jnp.inf]])
    assert cross_entropy(z, jnp.array([[0.5, 0.5]]))[0] == np.inf
    assert cross_entropy(z, jnp.array([1]))[0] == np.inf


def test_label_smoothing_by_hand_and_in_both_gradient_paths(x64):
    from jaxmlp._cross_entropy import smooth_labels
    from jaxmlp._epoch import make_step
    import optax
    from jaxmlp import init_params, loss, parse_arch, prepare_images

    np.testing.assert_allclose(smooth_labels(jnp.array([2, 0]), 4, 0.2),
                               [[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]])
    # One SGD step (lr 1, no momentum) of each path moves the params by −∇ of the loss
    # against the smoothed targets.
    arch = parse_arch("6:tanh,4:linear")
    params = init_params(jax.random.key(0), arch, 9, dtype=jnp.float64)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (5, 9)), jnp.uint8)
    labels = jnp.array([0, 3, 1, 1, 2])
    x = prepare_images(images, in_dim=9)  # as the step scales them
    want = jax.grad(loss)(params, x, smooth_labels(labels, 4, 0.1), arch)
    for grad in ("hand", "autodiff"):
        step = make_step(arch, optax.sgd(1.0), grad, label_smoothing=0.1)
        new, _, batch = step(params, optax.sgd(1.0).init(params), images, labels,
                             jax.random.key(0))
        for p, n, g in zip(jax.tree.leaves(params), jax.tree.leaves(new), jax.tree.leaves(want)):
            np.testing.assert_allclose(p - n, g, atol=1e-12)
        # The batch's reported loss is against the true labels.
        np.testing.assert_allclose(batch["loss"], loss(params, x, labels, arch), rtol=1e-12)
