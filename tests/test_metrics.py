"""Batch metrics, chunked whole-set evaluation and the evaluation report."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmlp._metrics as metrics_module
from jaxmlp._arch import parse_arch
from jaxmlp._images import prepare_images
from jaxmlp._metrics import _chunk_rows, evaluate, evaluation_report, batch_metrics
from jaxmlp._mlp import forward, init_params, loss


def test_metrics_hand_values():
    # softmax([0, ln 3]) = [1/4, 3/4]; a tie goes to the first class, as in argmax.
    z = jnp.array([[0.0, math.log(3)], [math.log(3), 0.0], [0.0, 0.0]])
    y = jnp.array([1, 1, 0])
    expected_loss = (math.log(4 / 3) + math.log(4) + math.log(2)) / 3
    for fn in (batch_metrics, jax.jit(batch_metrics)):
        m = fn(z, y)
        assert set(m) == {"loss", "accuracy"}
        np.testing.assert_allclose(m["loss"], expected_loss, rtol=1e-6)
        np.testing.assert_allclose(m["accuracy"], 2 / 3, rtol=1e-6)


def test_metrics_refuses_soft_targets():
    with pytest.raises(TypeError, match="integer classes"):
        batch_metrics(jnp.zeros((2, 3)), jnp.full((2, 3), 1 / 3))


@pytest.mark.parametrize("arch, in_dim, n, max_bytes, rows", [
    ("b", 784, 60_000, 64 * 2**20, 64 * 2**20 // (4 * 784)),  # the input is widest: 21399
    ("100000:relu,10:linear", 784, 60_000, 64 * 2**20, 167),  # 64 MiB / 400 kB per row
    ("b", 784, 100, 64 * 2**20, 100),                          # at most the whole set
    ("100000:relu,10:linear", 784, 60_000, 1000, 1),           # at least one row
    ("a", 784, 60_000, 4 * 784 * 7 + 4 * 784 - 1, 7),          # rounded down
])
def test_chunk_rows(arch, in_dim, n, max_bytes, rows):
    assert _chunk_rows(parse_arch(arch), in_dim, n, max_bytes) == rows


def _random_set(n, seed=0, arch="16:tanh,5:linear"):
    rng = np.random.default_rng(seed)
    params = init_params(jax.random.key(seed), arch, 784)
    images = rng.integers(0, 256, (n, 784), dtype=np.uint8)
    labels = rng.integers(0, parse_arch(arch)[-1].units, n).astype(np.int32)
    return params, images, labels


def _one_shot(params, images, labels, arch):
    """The reference: every example through the network at once (accuracy as an exact count)."""
    z = forward(params, prepare_images(images), arch)
    m = batch_metrics(z, jnp.asarray(labels))
    return float(m["loss"]), float(np.mean(np.argmax(np.asarray(z), 1) == np.asarray(labels)))


# Widest layer = the input (784): rows = max_bytes // 3136.
@pytest.mark.parametrize("max_bytes, chunks", [
    (64 * 2**20, [37]),          # one chunk
    (4 * 784 * 37, [37]),        # exactly the set
    (4 * 784 * 10, [10, 10, 10, 7]),  # a remainder chunk
    (4 * 784 * 36, [36, 1]),     # a remainder of one row
    (1, [1] * 37),               # one row per chunk
])
def test_evaluate_equals_one_shot(max_bytes, chunks, monkeypatch):
    arch = "16:tanh,5:linear"
    params, images, labels = _random_set(37)
    calls = []
    add = metrics_module._add_sums
    monkeypatch.setattr(metrics_module, "_add_sums",  # (acc, params, x, y, start, rows, arch)
                        lambda *a: calls.append(a[5]) or add(*a))
    result = evaluate(params, images, labels, arch, max_bytes=max_bytes)
    assert calls == chunks
    ref_loss, ref_acc = _one_shot(params, images, labels, arch)
    assert isinstance(result["loss"], float) and isinstance(result["accuracy"], float)
    np.testing.assert_allclose(result["loss"], ref_loss, rtol=2e-6)
    assert result["accuracy"] == ref_acc
    assert 0 < ref_acc < 1  # the accuracy is a real count here, not trivially 0 or 1


def test_evaluate_compiles_once_per_chunk_size(monkeypatch):
    # A fresh architecture, so nothing is cached yet; each trace runs _chunk_logits once.
    arch = "13:tanh,7:linear"
    params, images, labels = _random_set(45, arch=arch)
    traced = []
    chunk_logits = metrics_module._chunk_logits
    monkeypatch.setattr(metrics_module, "_chunk_logits",
                        lambda *a: traced.append(a[4]) or chunk_logits(*a))
    evaluate(params, images, labels, arch, max_bytes=4 * 784 * 10)  # 10, 10, 10, 10, 5
    assert traced == [10, 5]


def test_evaluate_wide_layer_in_chunks():
    # A layer wider than the input sets the chunk size: 1000 units, 8 rows per chunk.
    arch = "1000:relu,10:linear"
    params, images, labels = _random_set(20, seed=1, arch=arch)
    max_bytes = 4 * 1000 * 8
    assert _chunk_rows(parse_arch(arch), 784, 20, max_bytes) == 8
    result = evaluate(params, images, labels, arch, max_bytes=max_bytes)
    ref_loss, ref_acc = _one_shot(params, images, labels, arch)
    np.testing.assert_allclose(result["loss"], ref_loss, rtol=2e-6)
    assert result["accuracy"] == ref_acc


def test_evaluate_takes_device_arrays_square_images_and_parsed_arch():
    arch = "16:tanh,5:linear"
    params, images, labels = _random_set(23)
    expected = evaluate(params, images, labels, arch, max_bytes=4 * 784 * 5)
    for x, y, a in [(jnp.asarray(images), jnp.asarray(labels), arch),
                    (images.reshape(23, 28, 28), labels.astype(np.int64), parse_arch(arch)),
                    (images.astype(np.float64) / 255, labels, arch)]:
        result = evaluate(params, x, y, a, max_bytes=4 * 784 * 5)
        np.testing.assert_allclose(result["loss"], expected["loss"], rtol=1e-6)
        assert result["accuracy"] == expected["accuracy"]


def test_evaluate_matches_mlp_loss():
    arch = "16:tanh,5:linear"
    params, images, labels = _random_set(30, seed=2)
    result = evaluate(params, images, labels, arch, max_bytes=4 * 784 * 7)
    np.testing.assert_allclose(result["loss"],
                               loss(params, prepare_images(images), jnp.asarray(labels), arch),
                               rtol=2e-6)


def test_evaluate_bad_sets():
    arch = "16:tanh,5:linear"
    params, images, labels = _random_set(6)
    with pytest.raises(ValueError, match=r"labels must have shape \(6,\)"):
        evaluate(params, images, labels[:5], arch)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        evaluate(params, images, np.array([0, 1, 2, 3, 4, 5]), arch)
    with pytest.raises(TypeError, match="integer classes"):
        evaluate(params, images, labels.astype(np.float32), arch)
    with pytest.raises(ValueError, match="images must have shape"):
        evaluate(params, images[:, :700], labels, arch)
    with pytest.raises(ValueError, match="scaled to"):
        evaluate(params, images.astype(np.float32), labels, arch)  # 0-255 floats
    with pytest.raises(TypeError, match="uint8"):
        evaluate(params, images.astype(np.int32), labels, arch)


# A one-layer net whose predictions are known by hand: 4-pixel images, 3 linear outputs,
# W = ln 4 · [I_3; 0], b = 0. Pixel k (k < 3) set to 1 gives logits ln 4 · e_k, so
# p = (4, 1, 1)/6 in some order: confidence 2/3. Pixel 2 at 1/2 gives logits (0, 0, ln 2):
# p = (1, 1, 2)/4, confidence 1/2.
TINY_ARCH = ((3, "linear"),)
TINY_PARAMS = [{"w": jnp.log(4.0) * jnp.eye(4, 3), "b": jnp.zeros(3)}]
TINY_IMAGES = np.array([[1, 0, 0, 0],      # predicted 0, label 0: right
                        [0, 1, 0, 0],      # predicted 1, label 0: wrong, confidence 2/3
                        [0, 0, 0.5, 0],    # predicted 2, label 1: wrong, confidence 1/2
                        [0, 0, 1, 0],      # predicted 2, label 2: right
                        [1, 0, 0, 0]],     # predicted 0, label 2: wrong, confidence 2/3
                       dtype=np.float32)
TINY_LABELS = np.array([0, 0, 1, 2, 2])


@pytest.mark.parametrize("max_bytes", [64 * 2**20, 4 * 4 * 2, 1])  # 1 chunk; 2, 2, 1; rows of 1
def test_report_hand_values(max_bytes):
    report = evaluation_report(TINY_PARAMS, TINY_IMAGES, TINY_LABELS, TINY_ARCH,
                               max_bytes=max_bytes)
    # -log p of the true class: ln 1.5, ln 6, ln 4, ln 1.5, ln 6.
    assert report["test_loss"] == pytest.approx((2 * math.log(1.5) + 2 * math.log(6)
                                                 + math.log(4)) / 5, rel=1e-6)
    assert report["test_acc"] == 2 / 5
    assert report["confusion"] == [[1, 1, 0],
                                   [0, 0, 1],
                                   [1, 0, 1]]
    assert report["per_class_acc"] == [0.5, 0.0, 0.5]
    # Most confident first; the two at 2/3 in index order.
    assert [(m["index"], m["label"], m["predicted"]) for m in report["mistakes"]] == [
        (1, 0, 1), (4, 2, 0), (2, 1, 2)]
    np.testing.assert_allclose([m["confidence"] for m in report["mistakes"]],
                               [2 / 3, 2 / 3, 1 / 2], rtol=1e-6)


def test_report_is_plain_json():
    report = evaluation_report(TINY_PARAMS, TINY_IMAGES, TINY_LABELS, TINY_ARCH)
    assert json.loads(json.dumps(report)) == report
    assert set(report) == {"test_loss", "test_acc", "per_class_acc", "confusion", "mistakes"}

    def plain(x):
        if isinstance(x, dict):
            return all(type(k) is str and plain(v) for k, v in x.items())
        if isinstance(x, list):
            return all(plain(v) for v in x)
        return x is None or type(x) in (int, float, str)
    assert plain(report)


def test_report_absent_class_and_mistake_count():
    rows = [0, 3, 4]  # labels 0, 2, 2: no example of class 1
    report = evaluation_report(TINY_PARAMS, TINY_IMAGES[rows], TINY_LABELS[rows], TINY_ARCH,
                               mistakes=1)
    assert report["per_class_acc"] == [1.0, None, 0.5]
    assert report["confusion"] == [[1, 0, 0], [0, 0, 0], [1, 0, 1]]
    assert [m["index"] for m in report["mistakes"]] == [2]  # index within the set given
    assert evaluation_report(TINY_PARAMS, TINY_IMAGES, TINY_LABELS, TINY_ARCH,
                             mistakes=0)["mistakes"] == []
    with pytest.raises(ValueError, match="mistakes"):
        evaluation_report(TINY_PARAMS, TINY_IMAGES, TINY_LABELS, TINY_ARCH, mistakes=-1)


def test_report_agrees_with_evaluate():
    arch = "16:tanh,5:linear"
    params, images, labels = _random_set(41, seed=3)
    report = evaluation_report(params, images, labels, arch, max_bytes=4 * 784 * 9)
    result = evaluate(params, images, labels, arch)
    np.testing.assert_allclose(report["test_loss"], result["loss"], rtol=2e-6)
    assert report["test_acc"] == result["accuracy"]
    assert sum(map(sum, report["confusion"])) == 41


# Real MNIST: preset a trained by plain jax.grad, the report checked against numpy.

def _train_preset_a(mnist, steps=300, batch=128, lr=0.5):
    arch = parse_arch("a")
    params = init_params(jax.random.key(0), arch, 784)
    x = jnp.asarray(mnist.train_images)
    y = jnp.asarray(mnist.train_labels)
    order = np.random.default_rng(0).integers(0, len(y), (steps, batch))

    def step(params, idx):
        grads = jax.grad(loss)(params, prepare_images(x[idx]), y[idx], arch)
        return jax.tree.map(lambda p, g: p - lr * g, params, grads), None

    return jax.jit(lambda p: jax.lax.scan(step, p, order)[0])(params)


@pytest.fixture(scope="module")
def preset_a(mnist):
    return _train_preset_a(mnist)


def _numpy_reference(params, images, labels):
    """Everything ``evaluation_report`` computes, in float64 numpy, one shot."""
    w, b = (np.asarray(params[0][k], np.float64) for k in ("w", "b"))
    z = images.astype(np.float64) / 255 @ w + b
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    predicted = z.argmax(1)
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    top2 = np.sort(z, axis=1)[:, -2:]
    return {"loss": -logp[np.arange(len(labels)), labels].mean(), "predicted": predicted,
            "confidence": np.exp(logp.max(1)), "confusion": confusion,
            "near_ties": int(np.sum(top2[:, 1] - top2[:, 0] < 1e-4))}


def test_report_on_mnist_matches_numpy(mnist, preset_a):
    images, labels = mnist.test_images, mnist.test_labels
    report = evaluation_report(preset_a, images, labels, "a", max_bytes=4 * 784 * 3000)
    ref = _numpy_reference(preset_a, images, labels.astype(np.int64))
    assert report["test_acc"] > 0.85  # trained: the mistakes below are a model's, not noise
    np.testing.assert_allclose(report["test_loss"], ref["loss"], rtol=1e-5)
    # float32 vs float64 may only differ on examples whose top two logits nearly tie.
    confusion = np.array(report["confusion"])
    assert np.abs(confusion - ref["confusion"]).sum() <= 2 * ref["near_ties"]
    assert report["test_acc"] == pytest.approx(np.mean(ref["predicted"] == labels),
                                               abs=ref["near_ties"] / len(labels))
    totals = ref["confusion"].sum(1)
    np.testing.assert_allclose(report["per_class_acc"], np.diag(ref["confusion"]) / totals,
                               atol=ref["near_ties"] / totals.min())
    wrong = np.flatnonzero(ref["predicted"] != labels)
    expected = wrong[np.argsort(-ref["confidence"][wrong], kind="stable")][:36]
    got = report["mistakes"]
    assert [m["index"] for m in got] == expected.tolist()
    assert [m["label"] for m in got] == labels[expected].tolist()
    assert [m["predicted"] for m in got] == ref["predicted"][expected].tolist()
    np.testing.assert_allclose([m["confidence"] for m in got], ref["confidence"][expected],
                               rtol=1e-5)


def test_evaluate_on_mnist_train_set(mnist, preset_a):
    # All 60,000 training images, as device arrays, in chunks of 5,000 rows.
    images, labels = mnist.train_images, mnist.train_labels
    result = evaluate(preset_a, jnp.asarray(images), jnp.asarray(labels), "a",
                      max_bytes=4 * 784 * 5000)
    ref = _numpy_reference(preset_a, images, labels.astype(np.int64))
    np.testing.assert_allclose(result["loss"], ref["loss"], rtol=1e-5)
    assert result["accuracy"] == pytest.approx(np.mean(ref["predicted"] == labels),
                                               abs=ref["near_ties"] / len(labels))


@pytest.mark.parametrize("max_bytes", [2**26, 3000])  # one chunk; many, and a shorter last
def test_evaluate_models_equals_each_model_alone(max_bytes):
    # K = 3 stacked models, one call per chunk for all: each model's loss and accuracy are
    # those of evaluate() on it alone (the counts exactly, the summed loss to rounding).
    arch = parse_arch("12:relu,10:linear")
    keys = jax.random.split(jax.random.key(0), 3)
    stacked = jax.vmap(lambda k: init_params(k, arch, 20))(keys)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (57, 20), dtype=np.uint8)
    labels = rng.integers(0, 10, 57)
    got = metrics_module.evaluate_models(stacked, images, labels, arch, max_bytes=max_bytes)
    assert got["loss"].shape == got["accuracy"].shape == (3,)
    for i in range(3):
        alone = evaluate(jax.tree.map(lambda a, i=i: a[i], stacked), images, labels, arch)
        assert got["accuracy"][i] == alone["accuracy"]
        np.testing.assert_allclose(got["loss"][i], alone["loss"], rtol=1e-6)
    assert len(set(got["loss"].tolist())) == 3  # three different models, not one thrice
    probs = metrics_module.model_probabilities(stacked, images, arch, max_bytes=max_bytes)
    assert probs.shape == (3, 57, 10)
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-5)
    for i in range(3):
        z = forward(jax.tree.map(lambda a, i=i: a[i], stacked), prepare_images(images, in_dim=20), arch)
        np.testing.assert_allclose(probs[i], jax.nn.softmax(z), rtol=1e-5, atol=1e-7)
        assert np.mean(probs[i].argmax(-1) == labels) == got["accuracy"][i]
