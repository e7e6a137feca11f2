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
