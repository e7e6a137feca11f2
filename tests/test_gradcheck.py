"""gradcheck: the hand backward pass against jax.grad, as a tool that can also fail."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp import forward_layers, hand_grad, parse_arch
from jaxmlp._backprop import _backward
from jaxmlp._gradcheck import format_gradcheck, gradcheck


@pytest.mark.parametrize("spec", ["a", "b", "c", "128:tanh,64:sigmoid,10:linear"])
def test_passes_with_one_w_and_one_b_row_per_layer(spec):
    result = gradcheck(spec)
    arch = parse_arch(spec)
    assert result["passed"] is True and result["rtol"] == 1e-10
    assert result["arch"] == ",".join(f"{u}:{a}" for u, a in arch)
    assert [(r["layer"], r["units"], r["activation"], r["param"]) for r in result["layers"]] == [
        (i, u, a, p) for i, (u, a) in enumerate(arch) for p in ("w", "b")]
    for row in result["layers"]:
        # float64 round-off on O(1e-1) gradients, far inside the tolerance.
        assert 0 <= row["max_abs_diff"] <= 1e-14 and 0 <= row["max_rel_diff"] <= 1e-13
    text = format_gradcheck(result)
    assert text.splitlines()[-1].startswith("PASS: hand backward pass equals jax.grad "
                                            "(largest relative difference ")
    assert text.splitlines()[-1].endswith(" <= 1e-10)")
    assert len(text.splitlines()) == 2 + 2 * len(arch) + 1


def _scale_layer0_w(params, x, y, arch):
    grads = hand_grad(params, x, y, arch)
    grads[0]["w"] = grads[0]["w"] * 1.001
    return grads


def _no_relu_derivative(params, x, y, arch):
    # The true forward pass, then a backward pass that treats every ReLU's f' as 1.
    cache = forward_layers(params, x, arch)
    linear = parse_arch([(units, "linear") for units, _ in arch])
    return _backward(params, x, cache, y, linear)[0]


def test_scaled_gradient_fails_and_names_layer():
    result = gradcheck("b", hand=_scale_layer0_w)
    assert result["passed"] is False
    rows = {(r["layer"], r["param"]): r for r in result["layers"]}
    # Exactly the scaled array is off, by 1e-3 relative (the scale factor minus 1).
    np.testing.assert_allclose(rows[0, "w"]["max_rel_diff"], 1e-3, rtol=1e-6)
    assert all(r["max_rel_diff"] <= 1e-13 for key, r in rows.items() if key != (0, "w"))
    assert format_gradcheck(result).splitlines()[-1] == (
        "FAIL: hand backward pass differs from jax.grad at layer 0 (50:relu) w: "
        "relative difference 1.0e-03 > 1e-10")


def test_dropped_relu_derivative_fails():
    result = gradcheck("b", hand=_no_relu_derivative)
    assert result["passed"] is False
    rows = {(r["layer"], r["param"]): r for r in result["layers"]}
    # The output layer's gradient needs no ReLU derivative; the two below it do.
    assert rows[2, "w"]["max_rel_diff"] <= 1e-13 and rows[2, "b"]["max_rel_diff"] <= 1e-13
    for key in [(0, "w"), (0, "b"), (1, "w"), (1, "b")]:
        assert rows[key]["max_rel_diff"] > 1e-2
    worst = max(result["layers"], key=lambda r: r["max_rel_diff"])
    assert format_gradcheck(result).splitlines()[-1].startswith(
        f"FAIL: hand backward pass differs from jax.grad at layer {worst['layer']} (50:relu) "
        f"{worst['param']}: relative difference ")


def test_nan_gradient_fails():
    def nan_bias(params, x, y, arch):
        grads = hand_grad(params, x, y, arch)
        grads[-1]["b"] = grads[-1]["b"] * jnp.nan
        return grads

    result = gradcheck("a", hand=nan_bias)
    assert result["passed"] is False
    assert format_gradcheck(result).splitlines()[-1].startswith(
        "FAIL: hand backward pass differs from jax.grad at layer 0 (10:linear) b: ")


def test_loose_rtol_lets_a_small_error_pass():
    # The verdict is exactly `max_rel_diff <= rtol` for every row.
    assert gradcheck("b", hand=_scale_layer0_w, rtol=2e-3)["passed"] is True
    assert gradcheck("b", hand=_scale_layer0_w, rtol=5e-4)["passed"] is False


def test_deterministic_and_seeded():
    one, two = gradcheck("7:tanh,5:sigmoid,3:linear", in_dim=9, seed=4), \
        gradcheck("7:tanh,5:sigmoid,3:linear", in_dim=9, seed=4)
    assert one == two
    broken = [gradcheck("b", hand=_scale_layer0_w, seed=s)["layers"][0]["max_abs_diff"]
              for s in (0, 0, 1)]
    assert broken[0] == broken[1] != broken[2]


def test_deep_net_and_small_batch():
    result = gradcheck("9:relu,8:tanh,7:sigmoid,6:relu,5:linear,4:tanh,3:linear", in_dim=5,
                       batch_size=1)
    assert result["passed"] and len(result["layers"]) == 14


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        gradcheck("10:gelu")
    with pytest.raises(ValueError, match="bad layer 'nonsense'"):
        gradcheck("nonsense")
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        gradcheck("a", batch_size=0)
    with pytest.raises(ValueError, match="in_dim must be a positive int, got -3"):
        gradcheck("a", in_dim=-3)
    with pytest.raises(ValueError, match="hand returned layer 0 w of shape"):
        gradcheck("a", hand=lambda p, x, y, arch: [{"w": p[0]["w"].T, "b": p[0]["b"]}])


def test_runs_in_float64_and_leaves_x64_off():
    # A float32 comparison could not reach 1e-10 on gradients of order 1e-1.
    result = gradcheck("a", hand=lambda p, x, y, arch: jax.tree.map(
        lambda g: g.astype(jnp.float32).astype(g.dtype), hand_grad(p, x, y, arch)))
    assert not result["passed"] and result["layers"][0]["max_rel_diff"] > 1e-9
    assert jnp.zeros(1).dtype == jnp.float32
