"""The MLP itself: parameters, forward pass and mean cross-entropy loss, as pure functions."""
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp._checks import positive_int
from jaxmlp.activations import ACTIVATIONS
from jaxmlp.arch import Arch, parse_arch
from jaxmlp.cross_entropy import cross_entropy

_Params = list[dict[str, jax.Array]]


def init_params(key: jax.Array, arch, in_dim: int, *, dtype=jnp.float32) -> _Params:
    """Random parameters for ``arch`` on inputs of width ``in_dim``.

    Weights are normal with He variance ``2/fan_in`` before a ReLU (keeps the
    activations' scale through depth) and Glorot variance ``2/(fan_in + fan_out)``
    otherwise; biases are zero.

    Args:
      key: a PRNG key.
      arch: anything ``parse_arch`` accepts.
      in_dim: input width (784 for MNIST).
      dtype: parameter dtype.

    Returns:
      A list with one ``{"w": (fan_in, fan_out), "b": (fan_out,)}`` dict per layer.
    """
    arch = parse_arch(arch)
    positive_int(in_dim, "in_dim")
    params = []
    fan_in = int(in_dim)
    for layer_key, (units, activation) in zip(jax.random.split(key, len(arch)), arch):
        var = 2.0 / fan_in if activation == "relu" else 2.0 / (fan_in + units)
        w = math.sqrt(var) * jax.random.normal(layer_key, (fan_in, units), dtype)
        params.append({"w": w, "b": jnp.zeros((units,), dtype)})
        fan_in = units
    return params


def _check_inputs(params: _Params, x, arch: Arch) -> None:
    """Raises a clear error unless ``params`` and ``x`` fit ``arch`` (shapes and dtypes)."""
    if len(params) != len(arch):
        raise ValueError(f"params have {len(params)} layers but the architecture has {len(arch)}")
    for i, (layer, (units, _)) in enumerate(zip(params, arch)):
        w_shape, b_shape = np.shape(layer["w"]), np.shape(layer["b"])
        if len(w_shape) != 2 or w_shape[1] != units or b_shape != (units,):
            raise ValueError(f"layer {i}: expected w (fan_in, {units}) and b ({units},), got "
                             f"w {w_shape} and b {b_shape}")
        if i and w_shape[0] != arch[i - 1].units:
            raise ValueError(f"layer {i}: w has {w_shape[0]} inputs but layer {i - 1} has "
                             f"{arch[i - 1].units} units")
    x_shape = np.shape(x)
    if len(x_shape) != 2:
        raise ValueError(f"x must have shape (batch, in_dim), got {x_shape}")
    if x_shape[1] != np.shape(params[0]["w"])[0]:
        raise ValueError(f"x has width {x_shape[1]} but the first layer expects "
                         f"{np.shape(params[0]['w'])[0]} inputs")
    if x_shape[0] == 0:
        raise ValueError("x is an empty batch")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"x must be floating point, got dtype {jnp.result_type(x)} "
                        "(scale uint8 images to [0, 1] first)")


def dropout_masks(key: jax.Array, x: jax.Array, arch, dropout) -> list:
    """Inverted-dropout masks (Srivastava et al. 2014) for the input and every hidden layer.

    ``dropout = (p_in, p_hidden)``: the probability of dropping an input pixel, and a hidden
    unit. Mask ``l`` multiplies layer ``l``'s input (``l = 0``: the image ``x``; ``l ≥ 1``:
    hidden layer ``l``'s activation), each entry ``0`` with probability ``p`` and ``1/(1 − p)``
    otherwise, so the expected input is unchanged and evaluation needs no rescaling. One key
    per layer, ``split(key, len(arch))``: the same key gives the same masks to ``loss`` and
    to the hand backward pass. A rate of 0 gives ``None`` (no mask).
    """
    arch = parse_arch(arch)
    p_in, p_hidden = (float(p) for p in dropout)
    keys = jax.random.split(key, len(arch))
    widths = [np.shape(x)[1]] + [units for units, _ in arch[:-1]]
    masks = []
    for i, (k, width) in enumerate(zip(keys, widths)):
        p = p_in if i == 0 else p_hidden
        keep = jax.random.bernoulli(k, 1 - p, (np.shape(x)[0], width))
        masks.append(None if p == 0 else keep.astype(jnp.result_type(x)) / (1 - p))
    return masks


def forward_layers(params: _Params, x: jax.Array, arch, *,
                   masks=None) -> list[tuple[jax.Array, jax.Array]]:
    """Every layer's ``(z, a)``: ``z = (a_prev ⊙ m) W + b``, ``a = f(z)``, with ``a_0 = x``.

    ``masks`` (``dropout_masks``; ``None``: no dropout) multiply each layer's input; ``a`` is
    kept unmasked, since ``f'(z, a)`` needs ``a = f(z)``. The backward pass needs all of them;
    ``forward`` keeps only the last ``a``.
    """
    arch = parse_arch(arch)
    _check_inputs(params, x, arch)
    cache, a = [], x
    for i, (layer, (_, activation)) in enumerate(zip(params, arch)):
        if masks is not None and masks[i] is not None:
            a = a * masks[i]
        z = a @ layer["w"] + layer["b"]
        a = ACTIVATIONS[activation].fn(z)
        cache.append((z, a))
    return cache


def forward(params: _Params, x: jax.Array, arch) -> jax.Array:
    """Logits ``(B, n)`` for inputs ``x`` of shape ``(B, in_dim)``.

    Every layer applies its own activation, the last one included, before the
    softmax that ``loss`` applies (preset c puts a ReLU on its outputs, as the seed did).
    """
    return forward_layers(params, x, arch)[-1][1]


def loss(params: _Params, x: jax.Array, y: jax.Array, arch, *, dropout=None,
         key=None) -> jax.Array:
    """Mean cross-entropy over the batch: ``(1/B) Σ_b cross_entropy(forward(x)_b, y_b)``.

    With ``dropout = (p_in, p_hidden)`` and a ``key``, the network of ``dropout_masks(key)``
    (training's); evaluation and ``predict`` never drop.
    """
    masks = _masks_of(key, x, arch, dropout)
    return jnp.mean(cross_entropy(forward_layers(params, x, arch, masks=masks)[-1][1], y))


def _masks_of(key, x, arch, dropout):
    """``dropout_masks``, or None without dropout; a rate without a key is a mistake."""
    if dropout is None or not any(dropout):
        return None
    if key is None:
        raise ValueError("dropout needs a key: loss(..., dropout=(p_in, p_hidden), key=key)")
    return dropout_masks(key, x, arch, dropout)
