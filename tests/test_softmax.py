import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

from jaxmlp import log_softmax, softmax, softmax_jacobian


def test_softmax_hand_values():
    # p = e^z / Σ e^z for z = (0, ln 2, ln 5): weights 1, 2, 5 out of 8.
    z = np.log(np.array([1.0, 2.0, 5.0]))
    np.testing.assert_allclose(softmax(z), [1 / 8, 2 / 8, 5 / 8], rtol=1e-6)
    np.testing.assert_allclose(log_softmax(z), np.log([1 / 8, 2 / 8, 5 / 8]), rtol=1e-6)


def test_jacobian_hand_values():
    # z = 0 on 2 classes: p = 1/2, so J = [[1/4, -1/4], [-1/4, 1/4]].
    np.testing.assert_allclose(softmax_jacobian(jnp.zeros(2)), [[0.25, -0.25], [-0.25, 0.25]])


# jax.jacobian(softmax)(row)[j, i] = ∂p_j/∂z_i, which our J holds at [i, j].
_auto_jacobian = jax.jit(lambda z: jnp.swapaxes(
    jax.vmap(jax.jacobian(softmax))(
        z.reshape(-1, z.shape[-1])).reshape(z.shape + z.shape[-1:]),
    -1, -2))


@settings(max_examples=40, deadline=None)
@given(shape=st.sampled_from([(1,), (2,), (7,), (3, 5), (4, 1), (2, 3, 4), (1, 1, 10)]),
       seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.1, 1.0, 30.0]))
def test_jacobian_matches_autodiff(shape, seed, scale):
    with jax.enable_x64(True):
        z = jnp.asarray(scale * np.random.default_rng(seed).normal(size=shape))
        np.testing.assert_allclose(softmax_jacobian(z), _auto_jacobian(z), atol=1e-12, rtol=0)


def test_jacobian_float32_tolerance():
    z = jax.random.normal(jax.random.key(0), (16, 10))
    assert softmax_jacobian(z).dtype == jnp.float32
    np.testing.assert_allclose(softmax_jacobian(z), _auto_jacobian(z), atol=1e-6, rtol=0)


def test_jacobian_rows_sum_to_zero(x64):
    # Σ_j ∂p_j/∂z_i = ∂(Σ_j p_j)/∂z_i = ∂1/∂z_i = 0.
    z = jax.random.normal(jax.random.key(3), (5, 6), jnp.float64)
    np.testing.assert_allclose(softmax_jacobian(z).sum(-1), 0, atol=1e-15)


def test_stable_for_huge_logits():
    z = jnp.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    p, logp = softmax(z), log_softmax(z)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(logp))
    np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-7)
    np.testing.assert_allclose(logp, [[0, -2e4, -1e4], [-np.log(3)] * 3], rtol=1e-6)
    assert np.all(np.isfinite(softmax_jacobian(z)))
    g = jax.grad(lambda v: log_softmax(v)[0, 0])(z)
    np.testing.assert_allclose(g, [[0, 0, 0], [0, 0, 0]], atol=1e-7)


def test_softmax_is_shift_invariant(x64):
    z = jax.random.normal(jax.random.key(1), (4, 9), jnp.float64)
    np.testing.assert_allclose(softmax(z + 1000.0), softmax(z), atol=1e-13)
