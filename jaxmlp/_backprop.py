"""The backward pass written by hand, and a loss whose ``jax.grad`` runs it.

With ``δ`` the gradient of the mean loss with respect to a layer's pre-activation ``z``:

    δ_L    = (p·Σy − y) / B ⊙ f'_L(z_L)          (cross_entropy_grad, seed Problem 2)
    dW_l   = a_{l−1}ᵀ δ_l,   db_l = Σ_batch δ_l
    δ_{l−1} = (δ_l W_lᵀ) ⊙ m_{l−1} ⊙ f'_{l−1}(z_{l−1}),   and ∂J/∂x = (δ_1 W_1ᵀ) ⊙ m_0.

``m_l`` is dropout's mask on layer ``l``'s input (``mlp.dropout_masks``; 1 without dropout):
the forward rule ``z_l = (a_{l−1} ⊙ m_{l−1}) W_l + b`` scales the inputs, so the backward rule
scales their gradient by the same mask, and ``dW_l`` uses the masked inputs.

In mixed precision (``compute_dtype="bfloat16"``) the products ``a_{l−1}ᵀ δ_l`` and
``δ_l W_lᵀ`` are ``mlp.matmul_backward``'s, the rule beside the forward's ``matmul``: bfloat16
operands, float32 sums; everything else stays float32.

Adversarial training (Goodfellow et al. 2015) reuses ``∂J/∂x``: a second pass at
``x̃ = clip(x + ε·sign(∂J/∂x), 0, 1)`` and the mean of the two passes' gradients.

No ``jax.grad``, ``vjp`` or ``jvp`` is used here; the tests prove the result equal to them.
"""
import functools

import jax
import jax.numpy as jnp

from jaxmlp._activations import ACTIVATIONS
from jaxmlp._arch import parse_arch
from jaxmlp._cross_entropy import cross_entropy, cross_entropy_grad
from jaxmlp._mlp import (Params, check_adversarial, check_loss_inputs, fast_gradient_sign,
                         forward_layers, masks_of, matmul_backward)
from jaxmlp._softmax import log_softmax


def _backward(params, x, cache, y, arch, masks=None, compute_dtype=None):
    """Returns ``(grads, dx)`` of the mean loss from the forward ``cache``."""
    batch = x.shape[0]
    mask = (lambda i: None) if masks is None else (lambda i: masks[i])
    z, a = cache[-1]
    delta = cross_entropy_grad(a, y) / batch * ACTIVATIONS[arch[-1].activation].grad(z, a)
    grads = [None] * len(params)
    for i in reversed(range(len(params))):
        a_in = x if i == 0 else cache[i - 1][1]
        if mask(i) is not None:  # the layer's input, as the forward rule masked it
            a_in = a_in * mask(i)
        delta_in, dw = matmul_backward(a_in, params[i]["w"], delta, compute_dtype)
        grads[i] = {"w": dw, "b": jnp.sum(delta, axis=0)}
        delta = delta_in
        if mask(i) is not None:
            delta = delta * mask(i)
        if i:
            z, a = cache[i - 1]
            delta = delta * ACTIVATIONS[arch[i - 1].activation].grad(z, a)
    return grads, delta


def hand_value_and_grad(params: Params, x: jax.Array, y: jax.Array, arch, *, dropout=None,
                        key=None, compute_dtype=None, adversarial=0.0):
    """``((loss, logits), grads)`` in one forward and one hand-written backward pass.

    The same shape as ``jax.value_and_grad(f, has_aux=True)`` for an ``f`` returning
    ``(loss, logits)``, so a training step can swap the two and still get the logits
    (for accuracy) at no extra cost. ``dropout`` and ``key`` as for ``loss``: the same key
    draws the same masks, so this equals ``jax.value_and_grad`` of ``loss`` under it;
    ``compute_dtype`` as for ``loss``.

    With ``adversarial`` ε > 0 (``loss``'s adversarial objective, Goodfellow et al. 2015), a
    second pass at ``x̃`` made from this pass's ``∂J/∂x``; the loss and gradients are the
    means of the two passes', the logits the clean batch's.
    """
    arch = check_loss_inputs(params, x, y, arch, dropout, key)
    masks = masks_of(key, x, arch, dropout)
    cache = forward_layers(params, x, arch, masks=masks, compute_dtype=compute_dtype)
    grads, dx = _backward(params, x, cache, y, arch, masks, compute_dtype)
    value, logits = jnp.mean(cross_entropy(cache[-1][1], y)), cache[-1][1]
    if check_adversarial(adversarial):
        value, grads = _adversarial_mean(params, fast_gradient_sign(x, dx, adversarial), y, arch,
                                         masks, compute_dtype, value, grads)
    return (value, logits), grads


def _adversarial_mean(params, x_adv, y, arch, masks, compute_dtype, value, grads):
    """The loss and gradients of ``½J(x) + ½J(x̃)`` from ``J(x)``'s (``value``, ``grads``):
    a pass at ``x̃``, then the means. ``x̃ = fast_gradient_sign(x, ∂J/∂x, ε)`` takes the first
    pass's ``∂J/∂x`` (``_backward``'s, free) and is a constant to the weights (``sign``'s
    derivative is 0), so each term's gradient is its pass's, under the same masks."""
    cache = forward_layers(params, x_adv, arch, masks=masks, compute_dtype=compute_dtype)
    grads_adv, _ = _backward(params, x_adv, cache, y, arch, masks, compute_dtype)
    value_adv = jnp.mean(cross_entropy(cache[-1][1], y))
    return (value + value_adv) / 2, jax.tree.map(lambda g, h: (g + h) / 2, grads, grads_adv)


def hand_grad(params: Params, x: jax.Array, y: jax.Array, arch, *, dropout=None,
              key=None, compute_dtype=None, adversarial=0.0) -> Params:
    """Gradient of ``loss`` with respect to ``params`` by the explicit backward pass.

    Args:
      params: as from ``init_params``.
      x: inputs ``(B, in_dim)``.
      y: integer labels ``(B,)`` or target rows ``(B, n)``.
      arch: anything ``parse_arch`` accepts.
      dropout, key: as for ``loss`` (``mlp.dropout_masks``).
      compute_dtype: the matmuls' (``"bfloat16"``: mixed precision), as for ``loss``.
      adversarial: ε of ``loss``'s adversarial objective (0: none), as
        ``hand_value_and_grad`` computes it.

    Returns:
      A pytree with the structure of ``params``.
    """
    return hand_value_and_grad(params, x, y, arch, dropout=dropout, key=key,
                               compute_dtype=compute_dtype, adversarial=adversarial)[1]


def hand_loss(params: Params, x: jax.Array, y: jax.Array, arch, *, dropout=None,
              key=None, compute_dtype=None) -> jax.Array:
    """``loss``, but ``jax.grad`` of it runs the hand-written backward pass.

    Composes with ``jit``/``vmap``/``grad`` like any JAX function; ``arch`` is anything
    ``parse_arch`` accepts (hashable, as ``parse_arch`` returns it, where ``jit`` takes it
    as static). Gradients flow to ``params``, ``x`` and floating targets ``y``; ``dropout``
    and ``key`` as for ``loss``, and the arguments checked as ``loss`` checks them.
    """
    arch = check_loss_inputs(params, x, y, arch, dropout, key)
    return _hand_loss(params, x, y, masks_of(key, x, arch, dropout), arch, compute_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _hand_loss(params, x, y, masks, arch, compute_dtype):
    return _hand_loss_fwd(params, x, y, masks, arch, compute_dtype)[0]


def _hand_loss_fwd(params, x, y, masks, arch, compute_dtype):
    arch = parse_arch(arch)
    cache = forward_layers(params, x, arch, masks=masks, compute_dtype=compute_dtype)
    value = jnp.mean(cross_entropy(cache[-1][1], y))
    return value, (params, x, cache, y, masks)


def _hand_loss_bwd(arch, compute_dtype, residuals, g):
    params, x, cache, y, masks = residuals
    arch = parse_arch(arch)
    grads, dx = _backward(params, x, cache, y, arch, masks, compute_dtype)
    grads = jax.tree.map(lambda t: g * t, grads)
    if jnp.issubdtype(y.dtype, jnp.integer):
        dy = None  # labels are not differentiable
    else:
        dy = -g * log_softmax(cache[-1][1]) / x.shape[0]  # ∂J/∂y_i = −log p_i / B
    dmasks = None if masks is None else [None if m is None else jnp.zeros_like(m) for m in masks]
    return grads, g * dx, dy, dmasks  # the masks are drawn, not learned


_hand_loss.defvjp(_hand_loss_fwd, _hand_loss_bwd)
