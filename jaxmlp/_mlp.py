"""The MLP itself: parameters, forward pass and mean cross-entropy loss, as pure functions."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import _checks
from jaxmlp._activations import ACTIVATIONS
from jaxmlp._arch import Arch, parse_arch, weight_shapes
from jaxmlp._cross_entropy import check_targets, cross_entropy
from jaxmlp._errors import Invalid
from jaxmlp._images import check_range

Params = list[dict[str, jax.Array]]


def init_params(key: jax.Array, arch, in_dim: int, *, dtype=jnp.float32) -> Params:
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

    Raises:
      TypeError, ValueError: naming the argument: ``key`` not one PRNG key, a bad ``arch``,
        ``in_dim`` not an int in ``[1, 2**31)``, ``dtype`` not floating.
    """
    _checks.prng_key(key, "key")
    arch = parse_arch(arch)
    _checks.positive_int(in_dim, "in_dim", limit=_checks.INDEX_LIMIT)
    _checks.floating_dtype(dtype, "dtype")
    params = []
    for layer_key, (_, activation), (fan_in, units) in zip(
            jax.random.split(key, len(arch)), arch, weight_shapes(arch, int(in_dim))):
        var = 2.0 / fan_in if activation == "relu" else 2.0 / (fan_in + units)
        w = math.sqrt(var) * jax.random.normal(layer_key, (fan_in, units), dtype)
        params.append({"w": w, "b": jnp.zeros((units,), dtype)})
    return params


def check_inputs(params: Params, x, arch: Arch) -> None:
    """Raises a clear error, naming the argument, unless ``params`` fit ``arch``
    (``_checks.params_fit``) and ``x`` is a floating batch ``(B ≥ 1, in_dim)`` they take.
    Shapes and dtypes only: tracers pass through it under ``jit``."""
    _checks.params_fit(params, arch)
    _check_x(x, np.shape(params[0]["w"])[0])


def _check_x(x, in_dim: int) -> None:
    """Raises unless ``x`` is a floating batch ``(B ≥ 1, in_dim)``."""
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise TypeError(f"x must be an array (batch, in_dim), got {type(x).__name__}")
    x_shape = np.shape(x)
    if len(x_shape) != 2:
        raise ValueError(f"x must have shape (batch, in_dim), got {x_shape}")
    if x_shape[1] != in_dim:
        raise ValueError(f"x has width {x_shape[1]} but the first layer expects "
                         f"{in_dim} inputs")
    if x_shape[0] == 0:
        raise ValueError("x is an empty batch")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be floating point, got dtype {x.dtype} "
                        "(scale uint8 images to [0, 1] first)")


def _check_masks(masks, x, arch: Arch) -> None:
    """Raises unless ``masks`` is None or one mask (or None) per layer, each the shape of
    that layer's input ``(B, width)``, as ``dropout_masks`` draws them."""
    if masks is None:
        return
    if not isinstance(masks, (list, tuple)) or len(masks) != len(arch):
        raise TypeError(f"masks must be None or a list of one mask (or None) per layer "
                        f"({len(arch)}), got {type(masks).__name__}"
                        + (f" of {len(masks)}" if isinstance(masks, (list, tuple)) else ""))
    widths = [np.shape(x)[1]] + [units for units, _ in arch[:-1]]
    for i, (mask, width) in enumerate(zip(masks, widths)):
        if mask is None:
            continue
        if not (hasattr(mask, "shape") and hasattr(mask, "dtype")):
            raise TypeError(f"masks[{i}] must be an array or None, got {type(mask).__name__}")
        if tuple(np.shape(mask)) != (np.shape(x)[0], width):
            raise ValueError(f"masks[{i}] must have shape {(np.shape(x)[0], width)} (layer {i}'s "
                             f"input), got {tuple(np.shape(mask))}")


def dropout_masks(key: jax.Array, x: jax.Array, arch, dropout) -> list:
    """Inverted-dropout masks (Srivastava et al. 2014) for the input and every hidden layer.

    ``dropout = (p_in, p_hidden)``: the probability of dropping an input pixel, and a hidden
    unit. Mask ``l`` multiplies layer ``l``'s input (``l = 0``: the image ``x``; ``l ≥ 1``:
    hidden layer ``l``'s activation), each entry ``0`` with probability ``p`` and ``1/(1 − p)``
    otherwise, so the expected input is unchanged and evaluation needs no rescaling. One key
    per layer, ``split(key, len(arch))``: the same key gives the same masks to ``loss`` and
    to the hand backward pass. A rate of 0 gives ``None`` (no mask).
    """
    _checks.prng_key(key, "key")
    arch = parse_arch(arch)
    if not (hasattr(x, "shape") and hasattr(x, "dtype")) or np.ndim(x) != 2 or not np.shape(x)[0]:
        raise ValueError(f"x must be a batch (batch, width) with batch >= 1, got "
                         f"{np.shape(x) if hasattr(x, 'shape') else type(x).__name__}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be floating point, got dtype {x.dtype}")
    p_in, p_hidden = _checks.rates(dropout, "dropout")
    keys = jax.random.split(key, len(arch))
    widths = [np.shape(x)[1]] + [units for units, _ in arch[:-1]]
    masks = []
    for i, (k, width) in enumerate(zip(keys, widths)):
        p = p_in if i == 0 else p_hidden
        keep = jax.random.bernoulli(k, 1 - p, (np.shape(x)[0], width))
        masks.append(None if p == 0 else keep.astype(jnp.result_type(x)) / (1 - p))
    return masks


# The dtypes a matmul may take its operands in (``compute_dtype``); products always
# accumulate in float32, and everything else (weights, biases, activations, the loss) stays
# float32: mixed precision as Flax's ``dtype``/``param_dtype`` and torch.autocast mean it.
COMPUTE_DTYPES = ("float32", "bfloat16")


def matmul(a: jax.Array, w: jax.Array, compute_dtype=None) -> jax.Array:
    """``a @ w``. With ``compute_dtype`` ``"bfloat16"`` both operands are rounded to
    bfloat16 and the products summed in float32 (``preferred_element_type``); None or
    ``"float32"``: the float32 product. ``jax.grad`` of it runs ``matmul_backward``."""
    if _mixed(a, w, None, compute_dtype):
        return _mixed_matmul(a, w, compute_dtype)
    return a @ w


def _mixed(a, w, delta, compute_dtype) -> bool:
    """Whether a product is mixed precision, once its operands are checked (shapes only: a
    check costs nothing under ``jit``): ``a (B, n)``, ``w (n, m)``, ``delta (B, m)``."""
    if compute_dtype is not None:
        _checks.one_of(compute_dtype, COMPUTE_DTYPES, "compute_dtype")
    shapes = [np.shape(t) for t in (a, w, delta) if t is not None]
    if any(len(s) != 2 for s in shapes) or shapes[0][1] != shapes[1][0] or (
            delta is not None and shapes[2] != (shapes[0][0], shapes[1][1])):
        raise ValueError(f"a (B, n), w (n, m) and delta (B, m) must fit, got "
                         f"{', '.join(map(str, shapes))}")
    return compute_dtype not in (None, "float32")


def matmul_backward(a, w, delta, compute_dtype=None) -> tuple[jax.Array, jax.Array]:
    """``matmul``'s backward rule, ``(∂J/∂a, ∂J/∂w) = (δ wᵀ, aᵀ δ)`` for ``δ = ∂J/∂(a w)``.

    In mixed precision ``δ`` is rounded to the compute dtype as the forward's operands are,
    so both products take bfloat16 operands and sum in float32. (Autodiff of the forward's
    casts would multiply the float32 ``δ`` by a bfloat16 operand: a float32 matmul, then
    round the result to bfloat16.) Per element, ``|rounded − exact| ≤ u |δ| |w|ᵀ`` (and
    ``|a|ᵀ |δ|``) with bfloat16's unit roundoff ``u = 2⁻⁸``: the tolerance its test uses."""
    if not _mixed(a, w, delta, compute_dtype):
        return delta @ w.T, a.T @ delta
    a, w, delta = (t.astype(compute_dtype) for t in (a, w, delta))
    f32 = jnp.float32
    if jax.default_backend() != "cpu":
        return (jnp.dot(delta, w.T, preferred_element_type=f32),
                jnp.dot(a.T, delta, preferred_element_type=f32))
    # XLA:CPU multiplies bfloat16 fast (oneDNN/YNNPACK, AMX where the CPU has it) only when
    # each operand is row-major and contracted as in a @ w; a transposed operand makes it
    # multiply in float32 (3-4× slower with AMX, docs/performance.md). So both products
    # take copied transposes of the small (batch-sized) operands: δ wᵀ = (w δᵀ)ᵀ, aᵀ δ.
    return (_transposed(_row_major(jnp.dot(w, _transposed(delta), preferred_element_type=f32))),
            jnp.dot(_transposed(a), delta, preferred_element_type=f32))


def _row_major(x: jax.Array) -> jax.Array:
    """``x`` with its rows contiguous in memory. XLA may lay a transpose out as a column-major
    view; a flat reshape has one layout only, and the barrier keeps XLA from folding the
    reshape pair away, so the array is copied where it is not row-major already."""
    return jax.lax.optimization_barrier(x.reshape(-1)).reshape(x.shape)


def _transposed(x: jax.Array) -> jax.Array:
    """``xᵀ`` copied into row-major memory (``_row_major``), not a strided view."""
    return _row_major(x.T)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _mixed_matmul(a, w, compute_dtype):
    return jnp.dot(a.astype(compute_dtype), w.astype(compute_dtype),
                   preferred_element_type=jnp.float32)


def _mixed_matmul_fwd(a, w, compute_dtype):
    return _mixed_matmul(a, w, compute_dtype), (a, w)


def _mixed_matmul_bwd(compute_dtype, residuals, g):
    a, w = residuals
    da, dw = matmul_backward(a, w, g, compute_dtype)
    return da.astype(a.dtype), dw.astype(w.dtype)


_mixed_matmul.defvjp(_mixed_matmul_fwd, _mixed_matmul_bwd)


def forward_layers(params: Params, x: jax.Array, arch, *, masks=None,
                   compute_dtype=None) -> list[tuple[jax.Array, jax.Array]]:
    """Every layer's ``(z, a)``: ``z = (a_prev ⊙ m) W + b``, ``a = f(z)``, with ``a_0 = x``.

    ``masks`` (``dropout_masks``; ``None``: no dropout) multiply each layer's input; ``a`` is
    kept unmasked, since ``f'(z, a)`` needs ``a = f(z)``. The backward pass needs all of them;
    ``forward`` keeps only the last ``a``. ``compute_dtype``: each ``(a_prev ⊙ m) W`` as
    ``matmul`` computes it (``"bfloat16"``: mixed precision); the rest in float32.
    """
    arch = parse_arch(arch)
    check_inputs(params, x, arch)
    _check_masks(masks, x, arch)
    cache, a = [], x
    for i, (layer, (_, activation)) in enumerate(zip(params, arch)):
        if masks is not None and masks[i] is not None:
            a = a * masks[i]
        z = matmul(a, layer["w"], compute_dtype) + layer["b"]
        a = ACTIVATIONS[activation].fn(z)
        cache.append((z, a))
    return cache


def forward(params: Params, x: jax.Array, arch) -> jax.Array:
    """Logits ``(B, n)`` for inputs ``x`` of shape ``(B, in_dim)``.

    Every layer applies its own activation, the last one included, before the
    softmax that ``loss`` applies (preset c puts a ReLU on its outputs, as the seed did).
    """
    return forward_layers(params, x, arch)[-1][1]


def loss(params: Params, x: jax.Array, y: jax.Array, arch, *, dropout=None,
         key=None, compute_dtype=None, adversarial=0.0) -> jax.Array:
    """Mean cross-entropy over the batch: ``(1/B) Σ_b cross_entropy(forward(x)_b, y_b)``.

    With ``dropout = (p_in, p_hidden)`` and a ``key``, the network of ``dropout_masks(key)``
    (training's); evaluation and ``predict`` never drop.

    With ``adversarial`` ε > 0, Goodfellow, Shlens & Szegedy 2015's adversarial objective
    ``½ J(x) + ½ J(x̃)``, ``x̃ = fast_gradient_sign(x, ∂J/∂x, ε)`` (the same dropout masks in
    both terms): ``∂J/∂x`` is ``jax.grad``'s here, so this is the reference that
    ``hand_value_and_grad(..., adversarial=ε)`` is proven against. (``jax.grad`` of it
    needs no ``stop_gradient``: ``sign``'s derivative is 0, so ``x̃`` is a constant to θ.)

    Every argument is checked first, each error naming it: ``params`` against ``arch``
    (``_checks.params_fit``), ``x`` a floating ``(B ≥ 1, in_dim)``, ``y`` labels ``(B,)`` in
    ``[0, n)`` (read where concrete) or rows ``(B, n)``, ``dropout`` two rates in ``[0, 1)``,
    ``key`` one PRNG key (needed with a non-zero rate). ``compute_dtype``: the matmuls'
    (``matmul``; ``"bfloat16"`` for mixed precision).
    """
    arch = check_loss_inputs(params, x, y, arch, dropout, key)
    epsilon = check_adversarial(adversarial)
    masks = masks_of(key, x, arch, dropout)
    mean = lambda x: jnp.mean(cross_entropy(
        forward_layers(params, x, arch, masks=masks, compute_dtype=compute_dtype)[-1][1], y))
    if not epsilon:
        return mean(x)
    return (mean(x) + mean(fast_gradient_sign(x, jax.grad(mean)(x), epsilon))) / 2


def fast_gradient_sign(x: jax.Array, dx: jax.Array, epsilon) -> jax.Array:
    """Goodfellow et al. 2015's fast gradient sign example ``clip(x + ε·sign(∂J/∂x), 0, 1)``.

    ``x`` a batch of images with pixels in [0, 1] (``prepare_images``'; checked where
    concrete), ``dx`` the loss's gradient with respect to it (floating, ``x``'s shape),
    ``epsilon`` ε in [0, 1] the step in pixel units (0.1 ≈ 25 of 255 grey levels): each
    pixel moves by ε in the direction that raises the loss, but not where ``dx`` is 0 (a
    dropped input pixel) and no further than 0 or 1 (it stays a pixel).
    """
    epsilon = check_adversarial(epsilon, "epsilon", traced=True)
    x, dx = _checks.array(x, "x"), _checks.array(dx, "dx")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must hold floating pixels in [0, 1] (prepare_images scales uint8 "
                        f"images), got {x.dtype}")
    if not jnp.issubdtype(dx.dtype, jnp.floating):
        raise TypeError(f"dx must be a floating gradient, got {dx.dtype}")
    if np.shape(dx) != np.shape(x):
        raise ValueError(f"dx must have x's shape {np.shape(x)}, got {np.shape(dx)}")
    check_range(x)
    return jnp.clip(x + epsilon * jnp.sign(dx), 0, 1).astype(x.dtype)


def check_adversarial(epsilon, name: str = "adversarial", *, traced: bool = False):
    """The adversarial step ε checked: a number in [0, 1] (a pixel's range) that float32, the
    precision of training, does not round to 0 (``1e-50`` would double a step's cost and
    change nothing); concrete unless ``traced`` (then a tracer passes unchecked)."""
    value = _checks.probability(epsilon, name, upper_open=False, float32=False, traced=traced)
    if value is None:
        return epsilon
    if value > 0 and np.float32(value) == 0:
        raise Invalid(f"{name} must be 0 or a step float32 can hold",
                      _checks._shown(epsilon) + _checks.float32_note(value))
    return value


def check_loss_inputs(params, x, y, arch, dropout, key) -> Arch:
    """Every argument of ``loss`` (and of the hand passes) checked before any work: the
    parsed ``arch``, or an error naming the argument. Shapes and dtypes only under ``jit``."""
    arch = parse_arch(arch)
    check_inputs(params, x, arch)
    check_targets((np.shape(x)[0], arch[-1].units), y, "y")
    masks_of(key, None, arch, dropout, draw=False)
    return arch


def dropping(dropout):
    """``dropout`` checked (``_checks.rates``) as ``(p_in, p_hidden)``, or None where
    nothing is dropped (None, or both rates 0): the one place that decides "no dropout"."""
    if dropout is None:
        return None
    rates = tuple(_checks.rates(dropout, "dropout"))
    return rates if any(rates) else None


def masks_of(key, x, arch, dropout, *, draw: bool = True):
    """``dropout_masks``, or None without dropout (``dropout`` None or both rates 0); a rate
    without a key is a mistake. ``draw=False``: only the checks."""
    if key is not None:
        _checks.prng_key(key, "key")
    rates = dropping(dropout)
    if rates is None:
        return None
    if key is None:
        raise ValueError("dropout needs a key: loss(..., dropout=(p_in, p_hidden), key=key)")
    return dropout_masks(key, x, arch, rates) if draw else None
