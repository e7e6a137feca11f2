"""Mixed precision (``compute_dtype="bfloat16"``): every matmul of both passes takes bfloat16
operands and sums in float32; weights, biases, activations and the loss stay float32.

The proofs, in the habit of tests/test_backprop.py:
1. the matmul's backward rule (``matmul_backward``) against autodiff of the exact product of
   the rounded operands, to the bound its docstring derives: rounding ``δ`` to bfloat16
   moves each product ``δ_k w_k`` by at most ``u |δ_k w_k|`` (``u = 2⁻⁸``, bfloat16's unit
   roundoff), and the two float32 sums of n terms differ by at most ``2 n 2⁻²⁴ Σ |δ_k w_k|``;
2. the whole hand backward pass against ``jax.grad`` of the same mixed-precision loss, on
   drawn architectures with dropout: the same operations, so float32's own tolerance;
3. both relatively close to the float64 gradient of the float32 network;
4. the compiled step multiplies in bfloat16 only, and a float32 run is unchanged;
5. ``check_grads`` through the ``custom_vjp`` (``_mixed_matmul``): its reverse mode against
   finite differences of the rounded forward.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jaxmlp
from jaxmlp import hand_grad, hand_loss, loss, parse_arch
from jaxmlp._mlp import forward_layers, matmul, matmul_backward

BF16 = "bfloat16"
U = 2.0 ** -8  # bfloat16's unit roundoff: 8 significant bits, round to nearest
EPS32 = 2.0 ** -24


def _rounded(t):
    return np.asarray(jnp.asarray(t, jnp.float32).astype(jnp.bfloat16).astype(jnp.float32),
                      np.float64)


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 13, 5), (64, 300, 40)])
def test_the_matmul_rule_is_autodiff_of_the_rounded_product_within_its_bound(shape):
    b, n, m = shape
    rng = np.random.default_rng(sum(shape))
    a, w = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((b, n), (n, m)))
    delta = jnp.asarray(rng.normal(size=(b, m)), jnp.float32)
    # The forward: the float32 product of the rounded operands (bfloat16 products are exact
    # in float32: 8 + 8 significant bits), summed in float32 in some order.
    exact = _rounded(a) @ _rounded(w)
    z = np.asarray(matmul(a, w, BF16), np.float64)
    assert matmul(a, w, BF16).dtype == jnp.float32
    assert np.all(np.abs(z - exact) <= 2 * n * EPS32 * (np.abs(_rounded(a)) @ np.abs(_rounded(w))))
    # Autodiff of that product, at the rounded operands, against the rule. (Not through
    # the casts: the transpose of a cast to bfloat16 rounds the cotangent to bfloat16.)
    _, vjp = jax.vjp(jnp.matmul, *(jnp.asarray(_rounded(t), jnp.float32) for t in (a, w)))
    auto_da, auto_dw = (np.asarray(t, np.float64) for t in vjp(delta))
    da, dw = (np.asarray(t, np.float64) for t in matmul_backward(a, w, delta, BF16))
    d = np.abs(np.asarray(delta, np.float64))
    bound_da = (U + 2 * m * EPS32) * (d @ np.abs(_rounded(w)).T)
    bound_dw = (U + 2 * b * EPS32) * (np.abs(_rounded(a)).T @ d)
    assert np.all(np.abs(da - auto_da) <= bound_da) and np.all(np.abs(dw - auto_dw) <= bound_dw)
    # Not vacuous: δ's rounding shows, at a good fraction of the bound somewhere.
    assert np.max(np.abs(da - auto_da) / bound_da) > 0.05
    # jax.grad of matmul runs the rule (its custom_vjp), exactly.
    _, rule = jax.vjp(lambda a, w: matmul(a, w, BF16), a, w)
    for got, want in zip(rule(delta), matmul_backward(a, w, delta, BF16)):
        np.testing.assert_array_equal(got, want)
    # float32 (the default) is the plain product and its plain rule.
    np.testing.assert_array_equal(matmul(a, w), a @ w)
    np.testing.assert_array_equal(matmul_backward(a, w, delta)[1], a.T @ delta)


def _problem(arch, in_dim, batch, seed):
    rng = np.random.default_rng(seed)
    params, fan_in = [], in_dim
    for units, _ in arch:
        params.append({"w": jnp.asarray(rng.normal(size=(fan_in, units)) / np.sqrt(fan_in),
                                        jnp.float32),
                       "b": jnp.asarray(0.1 * rng.normal(size=units), jnp.float32)})
        fan_in = units
    x = jnp.asarray(rng.random((batch, in_dim)), jnp.float32)
    return params, x, jnp.asarray(rng.integers(0, arch[-1].units, batch))


def _relative(a, b):
    a, b = (np.concatenate([np.ravel(np.asarray(t, np.float64)) for t in jax.tree.leaves(x)])
            for x in (a, b))
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


_layers = st.lists(st.tuples(st.integers(1, 13), st.sampled_from(sorted(jaxmlp.ACTIVATIONS))),
                   min_size=1, max_size=4)
_rates = st.tuples(st.sampled_from([0.0, 0.2]), st.sampled_from([0.0, 0.5]))


@settings(max_examples=6, deadline=None)
@given(layers=_layers, in_dim=st.integers(1, 11), batch=st.sampled_from([1, 7]),
       dropout=_rates, seed=st.integers(0, 2**31 - 1))
def test_the_hand_backward_pass_in_bfloat16_is_jax_grad_of_the_same_loss(layers, in_dim, batch,
                                                                         dropout, seed):
    arch = parse_arch(layers)
    params, x, y = _problem(arch, in_dim, batch, seed)
    kw = dict(dropout=dropout, key=jax.random.key(seed), compute_dtype=BF16)
    hand, auto, via_vjp = jax.jit(lambda p: (
        hand_grad(p, x, y, arch, **kw), jax.grad(lambda q: loss(q, x, y, arch, **kw))(p),
        jax.grad(lambda q: hand_loss(q, x, y, arch, **kw))(p)))(params)
    # The same float32 and bfloat16 operations in both: float32's tolerance, relative to
    # the gradient's size (sums reordered by XLA's fusion at most).
    scale = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(auto)) or 1.0
    for h, a, v in zip(*(jax.tree.leaves(t) for t in (hand, auto, via_vjp))):
        np.testing.assert_allclose(h, a, atol=1e-6 * scale, rtol=1e-5)
        np.testing.assert_allclose(v, h, atol=1e-6 * scale, rtol=1e-5)


@pytest.mark.parametrize("spec", ["b", "7:tanh,5:relu,3:linear"])
def test_the_adversarial_hand_pass_in_bfloat16_is_jax_grad_of_the_same_loss(spec):
    # Adversarial training (mlp.loss, adversarial=ε): the input gradient whose sign makes x̃
    # comes from the bfloat16 backward rule in both; every product of both passes bfloat16.
    arch = parse_arch(spec)
    params, x, y = _problem(arch, 9, 16, 4)  # pixels in [0, 1)
    kw = dict(dropout=(0.2, 0.5), key=jax.random.key(4), compute_dtype=BF16, adversarial=0.1)
    (value, _), hand = jaxmlp.hand_value_and_grad(params, x, y, arch, **kw)
    auto_value, auto = jax.value_and_grad(lambda q: loss(q, x, y, arch, **kw))(params)
    np.testing.assert_allclose(value, auto_value, rtol=1e-6)
    scale = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(auto))
    for h, a in zip(jax.tree.leaves(hand), jax.tree.leaves(auto)):
        np.testing.assert_allclose(h, a, atol=1e-6 * scale, rtol=1e-5)
    plain = hand_grad(params, x, y, arch, **{**kw, "adversarial": 0.0})
    assert _relative(hand, plain) > 1e-3  # the adversarial half counts
    dots = _dots(jax.make_jaxpr(lambda q: jaxmlp.hand_value_and_grad(q, x, y, arch, **kw))(
        params).jaxpr)
    assert len(dots) == 2 * 3 * len(arch)  # forward, dW and dx of each layer, twice
    assert all([v.aval.dtype for v in eqn.invars] == [jnp.bfloat16] * 2 for eqn in dots)


@pytest.mark.parametrize("spec, bound", [("128:tanh,64:sigmoid,10:linear", 0.01),
                                         ("64:lecun_tanh,10:linear", 0.01), ("b", 0.1), ("c", 0.1)])
def test_mixed_precision_gradients_are_close_to_float64(spec, bound):
    # Against the float64 gradient of the float32 network. Smooth activations: each rounding
    # to 8 bits moves the gradient by a few u relatively (measured 0.2-0.3%, bound 1%). ReLU
    # nets also flip the units whose pre-activation lies within rounding of 0, switching
    # their δ on or off (measured 3-6% on b and c, bound 10%), yet the direction stays
    # (cosine > 0.995). float32 stays at 1e-6.
    arch = parse_arch(spec)
    params, x, y = _problem(arch, 784, 64, seed=7)
    mixed = hand_grad(params, x, y, arch, compute_dtype=BF16)
    full = hand_grad(params, x, y, arch)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda t: jnp.asarray(t, jnp.float64), params)
        exact = hand_grad(p64, jnp.asarray(x, jnp.float64), y, arch)
    assert _relative(full, exact) < 1e-5
    assert 1e-4 < _relative(mixed, exact) < bound  # rounded, and not far
    m, e = (np.concatenate([np.ravel(np.asarray(t, np.float64)) for t in jax.tree.leaves(g)])
            for g in (mixed, exact))
    assert m @ e / np.linalg.norm(m) / np.linalg.norm(e) > 0.995
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(mixed))


def _dots(jaxpr) -> list:
    """Every dot_general of ``jaxpr`` and the jaxprs inside it (scan, jit, custom_vjp)."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(eqn)
        for param in eqn.params.values():
            for sub in (param if isinstance(param, (list, tuple)) else [param]):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += _dots(inner)
    return found


@pytest.mark.parametrize("grad", ["hand", "autodiff"])
def test_a_bfloat16_step_multiplies_in_bfloat16_and_keeps_float32_state(grad):
    from jaxmlp._epoch import make_step
    from jaxmlp._optim import make_optimizer

    arch = parse_arch("32:relu,16:tanh,10:linear")
    params = jaxmlp.init_params(jax.random.key(0), arch, 784)
    optimizer = make_optimizer(jaxmlp.TrainConfig(arch="b"), 100)
    images = jnp.zeros((8, 784), jnp.uint8)
    labels = jnp.arange(8) % 10
    for dtype, operand in (("float32", jnp.float32), (BF16, jnp.bfloat16)):
        step = make_step(arch, optimizer, grad, dropout=(0.2, 0.5), compute_dtype=dtype)
        args = (params, optimizer.init(params), images, labels, jax.random.key(1))
        dots = _dots(jax.make_jaxpr(step)(*args).jaxpr)
        # Forward, dW and dx of each layer (the input's dx too, where a rule computes it
        # and XLA then drops it).
        assert 3 * len(arch) - 1 <= len(dots) <= 3 * len(arch)
        for eqn in dots:
            assert [v.aval.dtype for v in eqn.invars] == [operand, operand], eqn
            assert eqn.outvars[0].aval.dtype == jnp.float32
            if operand == jnp.bfloat16:  # as XLA:CPU's fast bfloat16 kernels take them
                assert eqn.params["dimension_numbers"] == (((1,), (0,)), ((), ())), eqn
        new_params, new_state, _ = jax.jit(step)(*args)
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((new_params, new_state))
                   if jnp.issubdtype(leaf.dtype, jnp.floating))
    with pytest.raises(ValueError, match=r"compute_dtype must be one of \('float32', 'bfloat16'\)"):
        make_step(arch, optimizer, grad, compute_dtype="float16")


def _has_amx() -> bool:
    try:
        return "amx_bf16" in open("/proc/cpuinfo").read()
    except OSError:
        return False


@pytest.mark.skipif(not _has_amx(), reason="XLA:CPU keeps bfloat16 matmuls only where the "
                    "CPU multiplies bfloat16 (AMX); elsewhere it may compute them in float32")
@pytest.mark.parametrize("grad", ["hand", "autodiff"])
def test_xla_keeps_every_matmul_of_a_bfloat16_step_in_bfloat16(grad):
    # XLA:CPU computes a bfloat16 dot it cannot hand to its bfloat16 kernels (a transposed
    # operand) in float32: the compiled step, not only the traced one, must keep them all.
    import re

    from jaxmlp._epoch import make_step
    from jaxmlp._optim import make_optimizer

    arch = parse_arch("256:relu,128:tanh,10:linear")
    params = jaxmlp.init_params(jax.random.key(0), arch, 784)
    optimizer = make_optimizer(jaxmlp.TrainConfig(arch="b"), 100)
    step = make_step(arch, optimizer, grad, compute_dtype=BF16)
    args = (params, optimizer.init(params), jnp.zeros((64, 784), jnp.uint8),
            jnp.arange(64) % 10, jax.random.key(1))
    hlo = jax.jit(step).lower(*args).compile().as_text()
    dots = [c for c in hlo.split("\n}\n") if " dot(" in c]
    # Forward, dW and dx of each layer but the input's: XLA rewrites the dots it would
    # compute in float32, so they go missing here.
    assert len(dots) == 3 * len(arch) - 1, [d.splitlines()[-2] for d in dots]
    for computation in dots:
        dot = next(line for line in computation.splitlines() if " dot(" in line)
        names = re.search(r" dot\(%([\w.]+), %([\w.]+)\)", dot).groups()
        types = [re.search(rf"%{re.escape(n)} = (\w+)\[", computation).group(1) for n in names]
        assert types == ["bf16", "bf16"], dot


def test_a_bfloat16_run_learns_resumes_exactly_and_records_it(small, tmp_path):
    from jaxmlp import train_and_evaluate

    small = small._replace(train_images=small.train_images[:3000],
                           train_labels=small.train_labels[:3000])
    quiet = lambda _: None
    config = jaxmlp.TrainConfig(arch="b", epochs=2, compute_dtype=BF16, dropout="0.1,0.2",
                                schedule="constant")
    straight = train_and_evaluate(config, tmp_path / "straight", data=small, log=quiet)
    train_and_evaluate(dataclasses.replace(config, epochs=1), tmp_path / "split", data=small,
                       log=quiet)
    resumed = train_and_evaluate(config, tmp_path / "split", resume=True, data=small, log=quiet)
    for a, b in zip(jax.tree.leaves(straight["params"]), jax.tree.leaves(resumed["params"])):
        np.testing.assert_array_equal(a, b)
    assert straight["test_accuracy"] > 0.75
    full = train_and_evaluate(dataclasses.replace(config, compute_dtype="float32"), data=small,
                              log=quiet)
    assert abs(full["test_accuracy"] - straight["test_accuracy"]) < 0.03
    assert not np.array_equal(full["params"][0]["w"], straight["params"][0]["w"])
    assert jaxmlp.load_run(tmp_path / "split").config.compute_dtype == BF16
    with pytest.raises(ValueError, match="`resume` cannot change `compute_dtype`"):
        train_and_evaluate(dataclasses.replace(config, compute_dtype="float32"),
                           tmp_path / "split", resume=True, data=small, log=quiet)
    with pytest.raises(ValueError, match=r"`compute_dtype` must be one of \('float32', "
                                         r"'bfloat16'\), got 'float16'"):
        jaxmlp.TrainConfig(compute_dtype="float16")


def test_evaluation_stays_float32(small):
    # A bfloat16-trained model is a float32 model: forward without a compute dtype is the
    # float32 product, as eval, predict and serve compute it.
    params = jaxmlp.init_params(jax.random.key(0), "b", 784)
    x = jnp.asarray(small.test_images[:5], jnp.float32) / 255
    np.testing.assert_array_equal(forward_layers(params, x, parse_arch("b"))[-1][1],
                                  jaxmlp.forward(params, x, "b"))
    assert not np.array_equal(forward_layers(params, x, parse_arch("b"), compute_dtype=BF16)[-1][1],
                              jaxmlp.forward(params, x, "b"))


def test_check_grads_through_the_mixed_matmul_s_custom_vjp():
    """``jax.test_util.check_grads`` in reverse mode: the custom VJP against central
    differences ``(f(x + εv) − f(x − εv)) / 2ε`` of the bfloat16 forward. The product is
    bilinear, so the differences carry no truncation error at any ε; only the rounding of the
    operands moves them, by at most about ``2 u |a| |w| / 2ε`` per product: with ε = 0.5 and
    unit-normal operands, a few percent, inside check_grads' ``rtol`` of 0.05 (a float32
    ε of 1e-3 would divide bfloat16's steps by it, and fail for a correct rule)."""
    from jax.test_util import check_grads

    ka, kw = jax.random.split(jax.random.key(0))
    a, w = jax.random.normal(ka, (6, 5)), jax.random.normal(kw, (5, 4))
    check_grads(lambda a, w: matmul(a, w, BF16), (a, w), order=1, modes=["rev"], eps=0.5,
                atol=0.1, rtol=0.05)
    # The same check catches a rule that is wrong by a factor of 2 on one operand.
    wrong = jax.custom_vjp(lambda a, w: matmul(a, w, BF16))
    wrong.defvjp(lambda a, w: (matmul(a, w, BF16), (a, w)),
                 lambda r, d: (2 * matmul_backward(*r, d, BF16)[0], matmul_backward(*r, d, BF16)[1]))
    with pytest.raises(AssertionError):
        check_grads(wrong, (a, w), order=1, modes=["rev"], eps=0.5, atol=0.1, rtol=0.05)
