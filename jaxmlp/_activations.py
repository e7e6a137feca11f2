"""Activation functions, each beside its hand-written derivative.

Every derivative takes both the pre-activation ``z`` and the activation ``a = f(z)``
so that each rule can use whichever is cheaper: ``tanh'`` and ``sigmoid'`` reuse the
forward value instead of recomputing the exponential.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Activation(NamedTuple):
    """An activation ``f`` and its derivative ``f'(z)``, written as ``grad(z, a)``."""

    fn: Callable[[jax.Array], jax.Array]
    grad: Callable[[jax.Array, jax.Array], jax.Array]


def _relu_grad(z, a):
    # 0 at z == 0: the same subgradient jax.grad(jax.nn.relu) picks, so hand and
    # autodiff gradients agree bit for bit even on dead units.
    del a
    return (z > 0).astype(z.dtype)


def _linear_grad(z, a):
    del a
    return jnp.ones_like(z)


def _sigmoid_grad(z, a):  # σ'(z) = σ(z)(1 − σ(z))
    del z
    return a * (1 - a)


def _tanh_grad(z, a):  # tanh'(z) = 1 − tanh²(z)
    del z
    return 1 - a * a


# LeCun's scaled tanh (Efficient BackProp, 1998): f(z) = A tanh(S z), A = 1.7159, S = 2/3,
# chosen so that f(±1) = ±1 and the gain is largest there.
LECUN_A, LECUN_S = 1.7159, 2.0 / 3.0


def _lecun_tanh(z):
    return LECUN_A * jnp.tanh(LECUN_S * z)


def _lecun_tanh_grad(z, a):  # f'(z) = A S (1 − tanh²(S z)) = S (A − a²/A), from a = f(z)
    del z
    return LECUN_S * (LECUN_A - a * a / LECUN_A)


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(jax.nn.relu, _relu_grad),
    "linear": Activation(lambda z: z, _linear_grad),
    "sigmoid": Activation(jax.nn.sigmoid, _sigmoid_grad),
    "tanh": Activation(jnp.tanh, _tanh_grad),
    "lecun_tanh": Activation(_lecun_tanh, _lecun_tanh_grad),
}
