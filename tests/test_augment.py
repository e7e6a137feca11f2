"""Distortions on the device (jaxmlp/_augment.py): hand values, Simard's field, determinism."""
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi

from jaxmlp._augment import (Augmentation, _gaussian_matrix, _modes, _uniform, affine,
                            affine_field, augment, elastic, elastic_field, parse_augment,
                            resample)

# Jitted once per shape and setting: eager calls would compile every primitive alone.
_augment = jax.jit(augment, static_argnums=2)
_resample = jax.jit(resample)
RNG = np.random.default_rng(0)
IMAGES = jnp.asarray(RNG.integers(0, 256, (5, 28, 28, 1)), jnp.uint8)


def _shifted(images, dy: int, dx: int):
    """out[i, j] = images[i + dy, j + dx], zero outside, by numpy indexing."""
    src = np.asarray(images, np.float32)
    out = np.zeros_like(src)
    h, w = src.shape[1:3]
    for i in range(h):
        for j in range(w):
            if 0 <= i + dy < h and 0 <= j + dx < w:
                out[:, i, j] = src[:, i + dy, j + dx]
    return out


def test_zero_strength_is_the_identity_exactly():
    key = jax.random.key(0)
    expected = np.asarray(IMAGES, np.float32)
    np.testing.assert_array_equal(_augment(key, IMAGES, Augmentation()), expected)
    np.testing.assert_array_equal(_augment(key, IMAGES, None), expected)
    no_elastic = jax.jit(lambda k, x: elastic(k, x, sigma=4.0, alpha=0.0))
    np.testing.assert_array_equal(no_elastic(key, IMAGES), expected)
    np.testing.assert_array_equal(jax.jit(affine)(key, IMAGES), expected)


@pytest.mark.parametrize("dy, dx", [(2, -1), (-3, 0), (0, 5), (27, 0), (40, -40)])
def test_a_whole_pixel_translation_is_the_shifted_image(dy, dx):
    field = jnp.full((5, 28, 28), float(dy)), jnp.full((5, 28, 28), float(dx))
    np.testing.assert_array_equal(_resample(IMAGES, *field)[..., 0], _shifted(IMAGES, dy, dx)[..., 0])
    # The same through the affine map: identity matrix, offset (dy, dx).
    matrix, offset = jnp.tile(jnp.eye(2), (5, 1, 1)), jnp.tile(jnp.array([dy, dx], jnp.float32), (5, 1))
    np.testing.assert_array_equal(_resample(IMAGES, *jax.jit(affine_field, static_argnums=0)(
                                      (28, 28), matrix, offset)),
                                  _shifted(IMAGES, dy, dx))


def test_bilinear_values_by_hand():
    image = jnp.array([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 2, 2, 1)
    at = lambda y, x: float(_resample(image, jnp.full((1, 2, 2), y), jnp.full((1, 2, 2), x))[0, 0, 0, 0])
    assert at(0.5, 0.5) == 1.5            # the mean of the four
    assert at(0.25, 0.0) == 0.5           # a quarter of the way from 0 to 2
    assert at(0.0, 0.75) == 0.75
    assert at(-0.5, 0.0) == 0.0           # half way to the zero border: 0.5·0 + 0.5·0
    assert at(-0.5, 1.0) == 0.5           # half of pixel (0, 1)
    assert at(1.5, 1.0) == 1.5            # half of pixel (1, 1), half the border below
    assert at(-7.0, 0.0) == 0.0           # far outside: zero


def test_rotation_by_a_quarter_turn_is_rot90():
    # source = c + M (p − c) with M = [[0, 1], [−1, 0]]: out[i, j] = in[j, 27 − i].
    theta = jnp.array([[[0.0, 1.0], [-1.0, 0.0]]])
    image = IMAGES[:1]
    out = resample(image, *affine_field((28, 28), theta, jnp.zeros((1, 2))))
    np.testing.assert_allclose(out[0, ..., 0], np.rot90(np.asarray(image[0, ..., 0], np.float32)),
                               atol=1e-4)


def test_gaussian_matrix_is_scipys_filter():
    u = RNG.uniform(-1, 1, (28, 28))
    for sigma in (2.0, 4.0, 6.0):
        g = _gaussian_matrix(28, sigma)
        np.testing.assert_allclose(g @ u @ g.T, ndi.gaussian_filter(u, sigma, mode="constant"),
                                   atol=1e-15)


def test_elastic_field_has_simards_covariance():
    # Simard's field α G U Gᵀ, U uniform in (−1, 1): Var at (i, j) is α²/3 ‖G_i‖² ‖G_j‖²,
    # and the covariance of two pixels α²/3 (G_i·G_k)(G_j·G_l).
    sigma, alpha, n = 4.0, 34.0, 20000
    g = _gaussian_matrix(28, sigma)
    exact = lambda i, j, k, l: alpha ** 2 / 3 * (g[i] @ g[k]) * (g[j] @ g[l])
    dy, dx = elastic_field(jax.random.key(1), n, (28, 28), sigma=sigma, alpha=alpha)
    dy, dx = np.asarray(dy, np.float64), np.asarray(dx, np.float64)
    for (i, j), (k, l) in [((14, 14), (14, 14)), ((0, 0), (0, 0)), ((14, 14), (14, 18)),
                           ((3, 20), (9, 20)), ((27, 5), (27, 5))]:
        for field in (dy, dx):
            got = np.mean(field[:, i, j] * field[:, k, l])  # the mean is 0
            assert abs(got - exact(i, j, k, l)) < 0.05 * exact(i, j, i, j), ((i, j, k, l), got)
    # The two components are independent, and 7 of the 28 modes hold 99.9% at σ = 4.
    assert abs(np.corrcoef(dy[:, 14, 14], dx[:, 14, 14])[0, 1]) < 0.03
    assert _modes(28, 4.0).shape == (28, 7)


def test_the_hash_uniforms_are_uniform_and_differ_by_key():
    u = np.asarray(_uniform(jax.random.key(0), (200_000,)), np.float64)
    assert u.min() >= -1 and u.max() < 1
    assert abs(u.mean()) < 0.005 and abs(u.var() - 1 / 3) < 0.005
    counts = np.histogram(u, bins=20, range=(-1, 1))[0]
    assert counts.min() > 0.95 * len(u) / 20 and counts.max() < 1.05 * len(u) / 20
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01   # neighbours unrelated
    v = np.asarray(_uniform(jax.random.key(1), (200_000,)))
    assert abs(np.corrcoef(u, v)[0, 1]) < 0.01


ALL = Augmentation(alpha=34, sigma=4, rotation=15, scale=0.15, shear=15, translation=2)


def test_determinism_per_key_and_vmap_agrees():
    key = jax.random.key(3)
    once = _augment(key, IMAGES, ALL)
    np.testing.assert_array_equal(_augment(key, IMAGES, ALL), once)
    other = _augment(jax.random.key(4), IMAGES, ALL)
    assert np.abs(np.asarray(other) - np.asarray(once)).max() > 50   # a different draw
    # Each image of a batch draws its own distortion: two copies of one image differ.
    twins = _augment(key, jnp.stack([IMAGES[0], IMAGES[0]]), ALL)
    assert np.abs(np.asarray(twins[0]) - np.asarray(twins[1])).max() > 50
    # vmap over keys = one call per key (a sweep's models each draw their own).
    keys = jax.random.split(key, 3)
    stacked = jax.vmap(lambda k: augment(k, IMAGES, ALL))(keys)
    for i in range(3):
        # The same numbers; vmap batches the field's products in another order, which moves
        # a coordinate by ~1e-6 pixel: a thousandth of a grey level on a 0-255 scale.
        np.testing.assert_allclose(stacked[i], _augment(keys[i], IMAGES, ALL), atol=2e-3)
    # Ink is moved, not made: the distorted images stay in [0, 255].
    assert float(once.min()) >= 0 and float(once.max()) <= 255


def test_a_sharded_batch_draws_what_one_device_draws(tmp_path):
    # Two CPU devices (a fresh process: XLA reads its flags once), the batch split over them.
    script = """
import sys, jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jaxmlp._augment import Augmentation, augment
aug = Augmentation(alpha=34, sigma=4, rotation=15, scale=0.15, shear=15, translation=2)
x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1)), jnp.uint8)
f = jax.jit(lambda k, x: augment(k, x, aug))
mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
xs = jax.device_put(x, NamedSharding(mesh, P("data")))
a, b = f(jax.random.key(5), x), f(jax.random.key(5), xs)
assert len(b.sharding.device_set) == 2
print(float(jnp.max(jnp.abs(a - b))))
"""
    env = {**__import__("os").environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split()[-1]) < 1e-3


@pytest.mark.parametrize("spec, message", [
    ("alpha=34,foo=1", "augment takes NAME=VALUE pairs, NAME one of alpha, sigma, rotation"),
    ("alpha", "augment takes NAME=VALUE pairs"),
    ("alpha=x", "augment alpha must be a number, got 'x'"),
    ("alpha=-3", "augment alpha must be in [0, 10000] pixels, got -3"),
    ("alpha=nan", "augment alpha must be in [0, 10000] pixels, got nan"),
    ("alpha=1,alpha=2", "augment sets alpha twice"),
    ("sigma=0,alpha=3", "augment sigma must be in [0.01, 1000] pixels, got 0"),
    ("scale=1", "augment scale must be in [0, 1) (factors in 1 ± scale), got 1"),
    ("shear=90", "augment shear must be in [0, 90) degrees, got 90"),
    ("rotation=181", "augment rotation must be in [0, 180] degrees, got 181"),
    # Issue 24: values past float32, or whose Gaussian would not fit in memory, or whose
    # arithmetic overflows, are refused before any work (they ran 42 s at 12.8 GB, ended in
    # MemoryError or OverflowError tracebacks, or trained on blank images).
    ("alpha=1,sigma=1e8", "augment sigma must be in [0.01, 1000] pixels, got 1e+08"),
    ("alpha=1,sigma=1e308", "augment sigma must be in [0.01, 1000] pixels, got 1e+308"),
    ("alpha=1,sigma=1e30", "augment sigma must be in [0.01, 1000] pixels"),
    ("alpha=1e39", "augment alpha must be in [0, 10000] pixels, got 1e+39"),
    ("alpha=1e308", "augment alpha must be in [0, 10000] pixels, got 1e+308"),
    ("translation=1e300", "augment translation must be in [0, 1000] pixels, got 1e+300"),
    ("alpha=inf", "augment alpha must be in [0, 10000] pixels, got inf"),
])
def test_bad_specs_are_named(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_augment(spec)


@pytest.mark.parametrize("fields, kind, message", [
    (dict(alpha=-5), ValueError, "augment alpha must be in [0, 10000] pixels, got -5"),
    (dict(alpha=float("nan")), ValueError, "augment alpha must be in [0, 10000] pixels, got nan"),
    (dict(sigma=0), ValueError, "augment sigma must be in [0.01, 1000] pixels, got 0"),
    (dict(sigma=-1), ValueError, "augment sigma must be in [0.01, 1000] pixels, got -1"),
    (dict(alpha="x"), TypeError, "augment alpha must be a number, got 'x'"),
    (dict(rotation=True), TypeError, "augment rotation must be a number, got True"),
    (dict(scale=None), TypeError, "augment scale must be a number, got None"),
])
def test_an_augmentation_checks_its_own_fields(fields, kind, message):
    # The ranges have one owner, the dataclass: the API meets the CLI's rules.
    with pytest.raises(kind, match=re.escape(message)):
        Augmentation(**fields)


def test_the_range_ends_are_accepted_and_the_api_names_bad_arguments():
    Augmentation(alpha=1e4, sigma=1e3, rotation=180, scale=0.99, shear=89.9, translation=1e3)
    Augmentation(sigma=0.01)
    for bad in (None, 5, b"alpha=1"):
        with pytest.raises(TypeError, match="augment spec must be a string"):
            parse_augment(bad)
    key = jax.random.key(0)
    for images in (jnp.zeros((2, 784)), jnp.zeros((0, 28, 28, 1)), np.zeros((28, 28))):
        with pytest.raises(ValueError, match=r"images must be a batch \(B, H, W, C\)"):
            augment(key, images, ALL)
    with pytest.raises(TypeError, match="aug must be an Augmentation"):
        augment(key, IMAGES, {"alpha": 1})
    with pytest.raises(ValueError, match="augment sigma must be in"):
        elastic_field(key, 2, (28, 28), sigma=0, alpha=1)
    with pytest.raises(ValueError, match="batch must be a positive int"):
        elastic_field(key, 0, (28, 28), sigma=4, alpha=1)
    with pytest.raises(ValueError, match=r"dy and dx must have shape"):
        resample(IMAGES, jnp.zeros((1, 28, 28)), jnp.zeros((1, 28, 28)))


def test_two_spellings_of_one_distortion_are_one_spec():
    # Issue 24.8: a resume compares settings by value; the config keeps one spelling.
    from jaxmlp import TrainConfig

    same = ["alpha=34,sigma=4", "sigma=4,alpha=34", "alpha=34.0,sigma=4.0", " alpha=34, sigma=4 "]
    assert {parse_augment(s).spec for s in same} == {"alpha=34,sigma=4"}
    assert {TrainConfig(augment=s).augment for s in same} == {"alpha=34,sigma=4"}
    assert parse_augment("alpha=0,sigma=9").spec == ""   # no elastic field: sigma says nothing
    assert parse_augment("shear=15,rotation=0.15").spec == "rotation=0.15,shear=15"
    for s in ("alpha=34,sigma=4,rotation=15,scale=0.15,shear=15", "alpha=0.1,sigma=0.3"):
        assert parse_augment(parse_augment(s).spec) == parse_augment(s)   # exact round trip


def test_specs_parse_and_the_config_checks_them():
    from jaxmlp import TrainConfig

    assert parse_augment(" alpha=34, sigma=4 ,rotation=10") == Augmentation(alpha=34, sigma=4, rotation=10)
    assert parse_augment("") == Augmentation()
    assert TrainConfig(augment="alpha=34").augmentation == Augmentation(alpha=34)
    assert TrainConfig(augment="alpha=0").augmentation is None   # all zero: none
    with pytest.raises(ValueError, match="augment sets alpha twice"):
        TrainConfig(augment="alpha=1,alpha=1")


def test_the_step_distorts_training_batches_only_when_asked():
    # With augment the step trains on distorted images: different params, a function of the
    # key; without, the step never reads its key (the trajectory of before augmentation).
    from jaxmlp import TrainConfig, init_params, make_optimizer, make_step

    config = TrainConfig(arch="a", schedule="constant")
    opt = make_optimizer(config, 10)
    params = init_params(jax.random.key(0), "a", 784)
    x, y = IMAGES.reshape(5, -1), jnp.arange(5)
    plain = jax.jit(make_step("a", opt, "hand"))
    distorted = jax.jit(make_step("a", opt, "hand", augment=ALL, image_shape=(28, 28, 1)))
    p0 = plain(params, opt.init(params), x, y, jax.random.key(0))[0]
    np.testing.assert_array_equal(p0[0]["w"], plain(params, opt.init(params), x, y,
                                                    jax.random.key(7))[0][0]["w"])
    p1 = distorted(params, opt.init(params), x, y, jax.random.key(0))[0]
    p2 = distorted(params, opt.init(params), x, y, jax.random.key(0))[0]
    p3 = distorted(params, opt.init(params), x, y, jax.random.key(7))[0]
    assert np.abs(np.asarray(p0[0]["w"]) - np.asarray(p1[0]["w"])).max() > 1e-4
    np.testing.assert_array_equal(p1[0]["w"], p2[0]["w"])
    assert np.abs(np.asarray(p1[0]["w"]) - np.asarray(p3[0]["w"])).max() > 1e-6
    with pytest.raises(ValueError, match="augmentation needs the images' shape"):
        make_step("a", opt, "hand", augment=ALL)
