"""Datasets beyond MNIST, offline: TFDS's own ``tfds.testing.mock_data`` generates the
records and jaxmlp's real loader reads them (``tfds.builder``, ``as_dataset``, the checks,
the cache), then trains on them through the API and the command line.

Under ``mock_data`` nothing is prepared on disk, so ``load_dataset`` "prepares" (a no-op
under the mock) after probing the download site, which the ``offline`` fixture stands in
for. Every mocked split holds the same ``N`` generated examples.
"""
import contextlib
import dataclasses
import hashlib
import json
import re
import urllib.parse
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import jaxmlp._data
from jaxmlp._arch import parse_arch
from jaxmlp.app._cli import main
from jaxmlp._config import TrainConfig
from jaxmlp._data import (MNIST, Dataset, DatasetError, DatasetInfo, DatasetNotFoundError,
                         _prepared_info, check_dataset, check_name, _dataset_info, load_dataset,
                         with_validation)
from jaxmlp._metrics import evaluate
from jaxmlp._errors import RunError
from jaxmlp._run import load_model, read_sweep
from jaxmlp._trainer import train_and_evaluate

N = 48  # examples in each mocked split

EXPECTED = {
    "fashion_mnist": DatasetInfo("fashion_mnist", (28, 28, 1), 10),
    "kmnist": DatasetInfo("kmnist", (28, 28, 1), 10),
    "emnist/letters": DatasetInfo("emnist/letters", (28, 28, 1), 37),  # 26 letters + N/A ids
    "cifar10": DatasetInfo("cifar10", (32, 32, 3), 10),
}


@pytest.fixture(scope="module")
def tfds():
    """tensorflow_datasets, imported once for the module the way jaxmlp imports it."""
    return jaxmlp._data._import_tfds()


@pytest.fixture
def offline(monkeypatch):
    """Stands in for the download-site probe (no network here); returns its calls."""
    calls = []
    monkeypatch.setattr(jaxmlp._data, "_check_reachable",
                        lambda name, url, data_dir, *a, **k: calls.append((name, url)))
    return calls


@pytest.fixture
def tfds_dir(tmp_path):
    """An empty TFDS data folder (the real one is never touched; shadows conftest's)."""
    path = tmp_path / "tfds"
    path.mkdir()
    return path


@pytest.fixture
def env(tmp_path, tfds_dir, monkeypatch):
    """Default data and cache folders of this test's own, for code that takes no folders."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    monkeypatch.setenv("JAXMLP_CACHE_DIR", str(tmp_path / "cache"))


@contextlib.contextmanager
def mocked(tfds, data_dir=None):
    """TFDS generating ``N`` examples per split; metadata read from ``data_dir`` if given."""
    with tfds.testing.mock_data(num_examples=N,
                                data_dir=None if data_dir is None else str(data_dir)):
        yield


def generated(tfds, name, split):
    """The mock's examples, read by plain ``tfds.load`` (not jaxmlp): images, labels."""
    examples = list(tfds.as_numpy(tfds.load(name, split=split)))
    return np.stack([e["image"] for e in examples]), np.array([e["label"] for e in examples])


# Loading ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", EXPECTED)
def test_loads_any_image_classification_set(tfds, offline, tfds_dir, tmp_path, name):
    want = EXPECTED[name]
    with mocked(tfds):
        data = load_dataset(name, data_dir=tfds_dir, cache_dir=tmp_path / "cache")
        truth = {split: generated(tfds, name, split) for split in ("train", "test")}
    assert data.info == want
    assert data.info.in_dim == {"cifar10": 3072}.get(name, 784)
    assert data.val_images is None and data.val_labels is None
    for split, (images, labels) in truth.items():
        if name.startswith("emnist"):  # stored transposed by TFDS; jaxmlp turns it upright
            images = images.transpose(0, 2, 1, 3)
        ours_images, ours_labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        assert ours_images.shape == (N, want.in_dim) and ours_images.dtype == np.uint8
        assert ours_labels.shape == (N,) and ours_labels.dtype == np.int32
        assert images.shape == (N, *want.image_shape)
        # The same examples in the same order, each image flattened row-major (h, w, c).
        np.testing.assert_array_equal(ours_images, images.reshape(N, -1))
        np.testing.assert_array_equal(ours_labels, labels)
        np.testing.assert_array_equal(ours_images[3].reshape(want.image_shape), images[3])
        # Not a vacuous comparison: the mock's pixels and labels vary.
        assert ours_images.min() < 50 and ours_images.max() > 200
        assert 0 <= ours_labels.min() and ours_labels.max() < want.num_classes
        assert len(np.unique(ours_labels)) > 5
    if name == "emnist/letters":
        assert data.train_labels.max() >= 10  # all 37 classes, not cut to MNIST's 10
    # The download site was probed before "downloading" (cifar10's builder has no URL
    # attribute: its host comes from the registered checksums).
    assert offline and all(n == name and urllib.parse.urlparse(u).hostname for n, u in offline)
    # Nothing is prepared on disk under the mock, so nothing is cached.
    assert not (tmp_path / "cache").exists() and not list(tfds_dir.iterdir())


@pytest.mark.parametrize("name, version", [("fashion_mnist", "3.0.1"), ("emnist/letters", "3.1.0")])
def test_unprepared_without_download_says_where_it_looked(tfds, offline, tfds_dir, name,
                                                          version):
    with mocked(tfds), pytest.raises(DatasetNotFoundError) as e:
        load_dataset(name, data_dir=tfds_dir, download=False, use_cache=False)
    message = str(e.value)
    assert message.startswith(f"{name} is not prepared in {tfds_dir} (looked for "
                              f"{tfds_dir}/{name}/{version}/) and downloading is off")
    assert "manual_dir" not in message  # only MNIST has manual files jaxmlp knows
    assert not offline  # no download, so no probe either


# Training ---------------------------------------------------------------------------------

def test_trains_on_fashion_mnist_with_a_validation_split(tfds, offline, env, tfds_dir,
                                                         tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(dataset="fashion_mnist", arch="a", steps=4, batch_size=8, val_size=16,
                         data_dir=str(tfds_dir))
    lines = []
    with mocked(tfds):
        result = train_and_evaluate(config, out, log=lines.append)
        data = load_dataset("fashion_mnist", data_dir=tfds_dir)
    assert result["steps"] == 4  # (48 - 16) // 8 = 4 steps: one epoch
    saved = json.loads((out / "config.json").read_text())
    assert saved["dataset"] == "fashion_mnist" and saved["val_size"] == 16
    assert saved["data_dir"] == str(tfds_dir.resolve())
    (record,) = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    # The validation split is the last 16 training examples: the record's numbers are the
    # trained model's on exactly those, and on the test split.
    arch = parse_arch("a")
    val = evaluate(result["params"], data.train_images[-16:], data.train_labels[-16:], arch)
    test = evaluate(result["params"], data.test_images, data.test_labels, arch)
    assert record["val_acc"] == pytest.approx(float(val["accuracy"]), abs=1e-6)
    assert record["val_loss"] == pytest.approx(float(val["loss"]), rel=1e-5)
    assert record["test_acc"] == pytest.approx(float(test["accuracy"]), abs=1e-6)
    assert result["val_accuracy"] == record["val_acc"] and result["test_accuracy"] == record["test_acc"]
    assert any("val J=" in line for line in lines)
    arch, params, info = load_model(out / "model.npz")
    assert info == DatasetInfo("fashion_mnist", (28, 28, 1), 10) and params[0]["w"].shape == (784, 10)


def test_trains_on_cifar10(tfds, offline, env, tfds_dir, tmp_path):
    out = tmp_path / "run"
    with mocked(tfds):
        result = train_and_evaluate(TrainConfig(dataset="cifar10", arch="a", steps=3,
                                                batch_size=16, data_dir=str(tfds_dir)),
                                    out, log=lambda line: None)
    assert result["steps"] == 3 and 0 <= result["test_accuracy"] <= 1
    assert result["test_accuracy"] * N == pytest.approx(round(result["test_accuracy"] * N))
    arch, params, info = load_model(out / "model.npz")
    assert info == EXPECTED["cifar10"] and params[0]["w"].shape == (3072, 10)
    assert json.loads((out / "config.json").read_text())["dataset"] == "cifar10"


def test_output_layer_must_fit_the_class_count(tfds, offline, env, tfds_dir, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(dataset="emnist/letters", steps=2, batch_size=8, data_dir=str(tfds_dir))
    with mocked(tfds):
        with pytest.raises(ValueError) as e:  # preset b ends in 10 units
            train_and_evaluate(config, out, log=lambda line: None)
        message = str(e.value)
        assert "the output layer has 10 units but emnist/letters has 37 classes" in message
        assert not out.exists()  # refused before any file was written
        # The suggestion is preset b's hidden layers ending in 37 units: a valid arch.
        suggested = re.search(r"`arch` '([^']+)'", message).group(1)
        assert parse_arch(suggested) == parse_arch("50:relu,50:relu,37:linear")
        result = train_and_evaluate(TrainConfig(dataset="emnist/letters", arch="50:relu,37:linear",
                                                steps=2, batch_size=8, data_dir=str(tfds_dir)),
                                    out, log=lambda line: None)
    assert result["steps"] == 2
    arch, params, info = load_model(out / "model.npz")
    assert info.num_classes == 37 and params[-1]["w"].shape == (50, 37)


def test_output_layer_is_checked_before_preparing(tfds, offline, tfds_dir, tmp_path):
    # Not prepared, downloading off, no mock: the class count comes from the builder's info,
    # so a wrong --arch is named first, not "not prepared" (which would send the user off
    # to fetch data for a run that would then be refused).
    config = TrainConfig(dataset="emnist/letters", download=False, data_dir=str(tfds_dir))
    with pytest.raises(ValueError, match="the output layer has 10 units but emnist/letters has "
                                         "37 classes"):
        train_and_evaluate(config, tmp_path / "run", log=lambda line: None)
    with pytest.raises(DatasetNotFoundError, match="is not prepared"):  # a fitting arch: on
        train_and_evaluate(dataclasses.replace(config, arch="50:relu,37:linear"),
                           tmp_path / "run", log=lambda line: None)
    assert not (tmp_path / "run").exists() and not offline


def test_cli_trains_on_another_dataset(tfds, offline, env, tfds_dir, tmp_path, capsys):
    out = tmp_path / "run"
    with mocked(tfds):
        code = main(["train", "--dataset", "fashion_mnist", "--arch", "a", "--steps", "3",
                     "--batch-size", "8", "--data-dir", str(tfds_dir), "--out", str(out),
                     "--no-progress", "--log-every", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0] == ("model 784 → 10 linear: 7,850 parameters, 7,840 multiply-adds an "
                        "example")  # fashion_mnist's 28×28 images
    assert [l.split(",")[0] for l in lines[1:4]] == ["iter 0", "iter 1", "iter 2"]
    assert lines[-1].startswith("final test accuracy ") and lines[-1].endswith(
        f"after 3 steps; outputs in {out}")
    assert json.loads((out / "config.json").read_text())["dataset"] == "fashion_mnist"
    # `jaxmlp predict` resizes a photo for it (an item fills the frame), not cut out as a digit.
    from PIL import Image

    from jaxmlp._predict import _load_image, predict

    photo = tmp_path / "item.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 50), np.uint8)).save(photo)
    assert main(["predict", str(out), str(photo), "--json"]) == 0
    (row,) = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    model = jaxmlp.load_run(out)
    probs = predict(model.params, _load_image(photo, digits=False)[None], model.arch)[0]
    assert row["class"] == int(probs.argmax())
    assert row["top3"][0]["prob"] == pytest.approx(float(probs.max()), abs=1e-6)


@pytest.mark.parametrize("name, message", [
    ("nope", "nope is not a dataset tensorflow-datasets knows"),
    ("../x", "dataset '../x' is not a TFDS dataset name"),
    ("mnist/..", "dataset 'mnist/..' is not a TFDS dataset name"),
    ("emnist/nope", "emnist/nope is not a dataset tensorflow-datasets knows"),
])
def test_cli_refuses_a_bad_dataset_in_one_line(env, tfds_dir, tmp_path, capsys, name, message):
    out = tmp_path / "run"
    code = main(["train", "--dataset", name, "--out", str(out), "--data-dir", str(tfds_dir),
                 "--no-progress", "--no-download"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("jaxmlp train: error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err and not out.exists()


# The cache --------------------------------------------------------------------------------

def prepare(tfds, data_dir, name, splits=("train", "test")) -> Path:
    """What ``download_and_prepare`` leaves of ``name`` in ``data_dir``, less the records (the
    mock generates those): ``<name>/<version>/dataset_info.json`` and ``features.json``.
    Call under ``mocked(tfds, data_dir)``; returns the ``dataset_info.json``."""
    builder = tfds.builder(name, data_dir=str(data_dir))
    builder.info.set_splits(tfds.core.SplitDict(
        [tfds.core.SplitInfo(name=s, shard_lengths=[N], num_bytes=0) for s in splits]))
    folder = Path(builder.data_dir)
    folder.mkdir(parents=True)
    builder.info.write_to_directory(folder)
    assert tfds.builder(name, data_dir=str(data_dir)).is_prepared()
    return folder / "dataset_info.json"


def _no_tfds():
    raise AssertionError("TensorFlow/TFDS used although the cache holds the data")


@pytest.mark.parametrize("name", ["fashion_mnist", "emnist/letters"])
def test_cache_of_a_prepared_dataset(tfds, offline, tfds_dir, tmp_path, monkeypatch, name):
    cache = tmp_path / "cache"
    with mocked(tfds, tfds_dir):
        info_file = prepare(tfds, tfds_dir, name)
        assert _prepared_info(tfds_dir, name) == info_file
        first = load_dataset(name, data_dir=tfds_dir, cache_dir=cache)
        truth = generated(tfds, name, "train")
    assert not offline  # prepared: no download, no probe
    np.testing.assert_array_equal(first.train_labels, truth[1])
    digest = hashlib.sha256(info_file.read_bytes()).hexdigest()[:16]
    cached = cache / f"{name.replace('/', '--')}-{info_file.parent.name}-{digest}.npz"
    # Beside it, where the dataset was found (data_dirs.json: default_data_dir's memory).
    assert sorted(cache.iterdir()) == sorted([cached, cache / "data_dirs.json"])

    def same(data):
        assert data.info == first.info == EXPECTED[name]
        for key in ("train_images", "train_labels", "test_images", "test_labels"):
            np.testing.assert_array_equal(getattr(data, key), getattr(first, key))
            assert getattr(data, key).dtype == getattr(first, key).dtype

    # The second load reads the cache alone: no TensorFlow, no TFDS, no mock needed.
    real_import = jaxmlp._data._import_tfds
    monkeypatch.setattr(jaxmlp._data, "_import_tfds", _no_tfds)
    same(load_dataset(name, data_dir=tfds_dir, cache_dir=cache))

    # A damaged cache is rebuilt from the TFDS copy, whole.
    cached.write_bytes(cached.read_bytes()[:1000])
    monkeypatch.setattr(jaxmlp._data, "_import_tfds", real_import)
    with mocked(tfds, tfds_dir):
        same(load_dataset(name, data_dir=tfds_dir, cache_dir=cache))
    monkeypatch.setattr(jaxmlp._data, "_import_tfds", _no_tfds)
    same(load_dataset(name, data_dir=tfds_dir, cache_dir=cache))
    # Beside it, where the dataset was found (data_dirs.json: default_data_dir's memory).
    assert sorted(cache.iterdir()) == sorted([cached, cache / "data_dirs.json"])

    # Re-prepared data (another dataset_info.json) is not served from the old cache.
    meta = json.loads(info_file.read_text())
    meta["description"] = "re-prepared"
    info_file.write_text(json.dumps(meta))
    with pytest.raises(AssertionError, match="TensorFlow/TFDS used"):
        load_dataset(name, data_dir=tfds_dir, cache_dir=cache)
    # use_cache=False never reads it either.
    with pytest.raises(AssertionError, match="TensorFlow/TFDS used"):
        load_dataset(name, data_dir=tfds_dir, cache_dir=cache, use_cache=False)


def test_no_cache_is_written_where_no_load_looks(tfds, offline, tfds_dir, tmp_path):
    # "emnist" is read from emnist/byclass/<version>/ (its default config), a folder the
    # cache lookup, which knows only the name, cannot find: a cache file written there would
    # be written again, whole, on every load.
    cache = tmp_path / "cache"
    with mocked(tfds, tfds_dir):
        info_file = prepare(tfds, tfds_dir, "emnist")
        assert info_file.parent.parent.name == "byclass"
        for _ in range(2):
            data = load_dataset("emnist", data_dir=tfds_dir, cache_dir=cache)
            assert data.info == DatasetInfo("emnist", (28, 28, 1), 62)
    assert [p.name for p in cache.iterdir()] == ["data_dirs.json"]  # where it was found only


def test_prepared_splits_are_checked(tfds, offline, tfds_dir, tmp_path):
    # Before preparing, TFDS does not know a dataset's splits; the prepared info does.
    with mocked(tfds, tfds_dir):
        prepare(tfds, tfds_dir, "fashion_mnist", splits=("train",))
        with pytest.raises(DatasetError, match=r"^fashion_mnist needs a train split and a test "
                                               r"\(or validation\) split; it has train$"):
            load_dataset("fashion_mnist", data_dir=tfds_dir, cache_dir=tmp_path / "cache")
    # A validation split stands in for a missing test split.
    with mocked(tfds, tmp_path / "other"):
        prepare(tfds, tmp_path / "other", "kmnist", splits=("train", "validation"))
        builder = tfds.builder("kmnist", data_dir=str(tmp_path / "other"))
        assert _dataset_info(builder) == (EXPECTED["kmnist"], "image", "label", ("train", "validation"))
        data = load_dataset("kmnist", data_dir=tmp_path / "other", cache_dir=tmp_path / "cache")
    assert data.test_labels.shape == (N,) and data.info == EXPECTED["kmnist"]


# Datasets jaxmlp cannot use ---------------------------------------------------------------

@pytest.mark.parametrize("name, message", [
    ("imdb_reviews", r"^imdb_reviews/plain_text has no image feature \('text' is Text\); its "
                     r"features: text \(Text\), label \(ClassLabel\)$"),
    ("tf_flowers", r"^tf_flowers images have shape \(None, None, 3\): an MLP needs one fixed "
                   r"size \(height, width, channels\)$"),
])
def test_real_datasets_that_are_not_fixed_size_image_classification(tfds, offline, tfds_dir,
                                                                    name, message):
    with mocked(tfds), pytest.raises(DatasetError, match=message):
        load_dataset(name, data_dir=tfds_dir, use_cache=False)
    assert not offline and not list(tfds_dir.iterdir())  # refused before any download


def fake_builder(tfds, features, *, keys=("image", "label"), splits=("train", "test")):
    """A builder-shaped object with real ``tfds.features``; records any prepare."""
    prepares = []
    info = SimpleNamespace(full_name="fake_set/1.0.0", supervised_keys=keys,
                           features=tfds.features.FeaturesDict(features),
                           splits=dict.fromkeys(splits))
    return SimpleNamespace(info=info, is_prepared=lambda: False, prepares=prepares,
                           download_and_prepare=lambda **kw: prepares.append(kw))


def _image(tfds, **kw):
    return tfds.features.Image(**{"shape": (28, 28, 1), **kw})


BAD = {
    "no image": (lambda t: {"text": t.features.Text(), "label": t.features.ClassLabel(num_classes=2)},
                 {"keys": ("text", "label")},
                 r"fake_set has no image feature \('text' is Text\); its features: text \(Text\), "
                 r"label \(ClassLabel\)"),
    "no class label": (lambda t: {"image": _image(t), "label": t.features.Tensor(shape=(), dtype=np.float32)},
                       {}, r"fake_set has no class-label feature \('label' is Tensor\)"),
    "key not a feature": (lambda t: {"image": _image(t), "label": t.features.ClassLabel(num_classes=3)},
                          {"keys": ("pixels", "label")},
                          r"fake_set has no image feature \('pixels' is NoneType\)"),
    "uint16 images": (lambda t: {"image": _image(t, dtype=np.uint16),
                                 "label": t.features.ClassLabel(num_classes=10)},
                      {}, r"fake_set images are uint16: jaxmlp takes uint8 images \(0-255\)"),
    "variable size": (lambda t: {"image": _image(t, shape=(None, None, 3)),
                                 "label": t.features.ClassLabel(num_classes=10)},
                      {}, r"fake_set images have shape \(None, None, 3\): an MLP needs one "
                          r"fixed size"),
    "no test split": (lambda t: {"image": _image(t), "label": t.features.ClassLabel(num_classes=10)},
                      {"splits": ("train", "extra")},
                      r"fake_set needs a train split and a test \(or validation\) split; it has "
                      r"extra, train"),
    "no train split": (lambda t: {"image": _image(t), "label": t.features.ClassLabel(num_classes=10)},
                       {"splits": ("test",)}, r"fake_set needs a train split .*; it has test$"),
    "two images, no keys": (lambda t: {"image": _image(t), "mask": _image(t),
                                       "label": t.features.ClassLabel(num_classes=10)},
                            {"keys": None},
                            r"fake_set is not image classification: jaxmlp needs one image "
                            r"feature and one class-label feature, it has image \(Image\), "
                            r"mask \(Image\), label \(ClassLabel\)"),
}


@pytest.mark.parametrize("case", BAD)
def test_unusable_datasets_are_refused_before_preparing(tfds, offline, tfds_dir, monkeypatch,
                                                        case):
    features, kwargs, message = BAD[case]
    builder = fake_builder(tfds, features(tfds), **kwargs)
    with pytest.raises(DatasetError, match="^" + message):
        _dataset_info(builder)
    monkeypatch.setattr(jaxmlp._data, "_builder", lambda tfds, name, data_dir: builder)
    with pytest.raises(DatasetError, match="^" + message):
        load_dataset("fake_set", data_dir=tfds_dir, use_cache=False)
    assert not builder.prepares and not offline  # nothing downloaded or prepared


def test_image_and_label_found_without_supervised_keys(tfds):
    builder = fake_builder(tfds, {"id": tfds.features.Text(), "img": _image(tfds, shape=(8, 6, 3)),
                                  "y": tfds.features.ClassLabel(num_classes=5)}, keys=None,
                           splits=("train", "validation"))
    info, image, label, splits = _dataset_info(builder)
    assert info == DatasetInfo("fake_set", (8, 6, 3), 5) and info.in_dim == 144
    assert (image, label, splits) == ("img", "y", ("train", "validation"))


# Names, checks and the validation split (no TFDS) ----------------------------------------

def test_dataset_names():
    for name in ("mnist", "fashion_mnist", "emnist/letters", "cifar10",
                 "imagenet2012_subset/1pct", "cifar10_corrupted/brightness_1"):
        assert check_name(name) == name
    for bad in ("../x", "mnist/..", "mnist/.hidden", "MNIST", "", "mnist/", "a/b/c", "/mnist",
                "mnist x", None, 3):
        with pytest.raises(ValueError, match="is not a TFDS dataset name") as e:
            check_name(bad)
        assert ("(names are lower case: mnist)" in str(e.value)) == (bad == "MNIST")
    assert MNIST == DatasetInfo("mnist", (28, 28, 1), 10) and MNIST.in_dim == 784
    assert EXPECTED["cifar10"].in_dim == 3072


TINY = DatasetInfo("tiny", (2, 3, 2), 5)  # in_dim 12


def tiny(n_train=10, n_test=4, info=TINY):
    """A small dataset whose every image is distinct: image i is all i's in train."""
    rows = lambda n, start: np.repeat(np.arange(start, start + n, dtype=np.uint8)[:, None],
                                      info.in_dim, axis=1)
    return Dataset(rows(n_train, 0), np.arange(n_train, dtype=np.int32) % info.num_classes,
                   rows(n_test, 100), np.arange(n_test, dtype=np.int32) % info.num_classes,
                   info=info)


def test_check_dataset_uses_the_datasets_own_shape_and_classes():
    good = tiny()
    assert check_dataset(good) is good
    assert check_dataset(with_validation(good, 3)).val_labels.tolist() == [2, 3, 4]
    cases = [
        (good._replace(train_images=np.zeros((10, 784), np.uint8)),
         r"^tiny train images must be \(N, 12\) uint8 with N >= 1, got \(10, 784\) uint8$"),
        (good._replace(test_images=good.test_images.astype(np.int16)),
         r"^tiny test images must be \(N, 12\) uint8 .* got \(4, 12\) int16$"),
        (good._replace(test_images=good.test_images[:0], test_labels=good.test_labels[:0]),
         r"^tiny test images must be .* N >= 1, got \(0, 12\) uint8$"),
        (good._replace(test_labels=np.array([0, 1, 2, 5], np.int32)),
         r"^tiny test labels outside \[0, 5\): values in \[0, 5\]$"),
        (good._replace(train_labels=good.train_labels - 1),
         r"^tiny train labels outside \[0, 5\): values in \[-1, 3\]$"),
        (good._replace(train_labels=good.train_labels[:9]),
         r"^tiny train labels must be \(10,\) integers, got \(9,\) int32$"),
        (good._replace(test_labels=good.test_labels.astype(np.float32)),
         r"^tiny test labels must be \(4,\) integers, got \(4,\) float32$"),
        (with_validation(good, 3)._replace(val_labels=np.array([0, 9, 1], np.int32)),
         r"^tiny val labels outside \[0, 5\): values in \[0, 9\]$"),
        (with_validation(good, 3)._replace(val_images=np.zeros((3, 13), np.uint8)),
         r"^tiny val images must be \(N, 12\)"),
    ]
    for data, message in cases:
        with pytest.raises(DatasetError, match=message):
            check_dataset(data)
    # Labels up to 36 fit emnist/letters' 37 classes, not MNIST's 10.
    letters = tiny(info=DatasetInfo("emnist/letters", (28, 28, 1), 37))._replace(
        train_labels=np.arange(27, 37, dtype=np.int32))
    assert check_dataset(letters) is letters
    with pytest.raises(DatasetError, match=r"^mnist train labels outside \[0, 10\): values in "
                                           r"\[27, 36\]$"):
        check_dataset(letters._replace(info=MNIST))


def test_with_validation_holds_out_exactly_the_last_examples():
    data = tiny()
    split = with_validation(data, 3)
    assert split.train_images[:, 0].tolist() == list(range(7))
    assert split.val_images[:, 0].tolist() == [7, 8, 9]
    np.testing.assert_array_equal(split.train_labels, data.train_labels[:7])
    np.testing.assert_array_equal(split.val_labels, data.train_labels[7:])
    np.testing.assert_array_equal(split.val_images, data.train_images[7:])
    assert split.test_images is data.test_images and split.test_labels is data.test_labels
    assert split.info == TINY
    assert list(split.splits()) == ["train", "val", "test"] and list(data.splits()) == ["train", "test"]
    assert with_validation(data, 0) is data
    assert with_validation(data, 9).train_labels.tolist() == [0]  # one left is enough
    for size in (10, 11):
        with pytest.raises(ValueError, match=rf"^`val_size` {size} leaves no training examples: "
                                             r"tiny has 10$"):
            with_validation(data, size)
    with pytest.raises(ValueError, match="must be >= 0, got -1"):
        with_validation(data, -1)
    with pytest.raises(ValueError, match="already has a validation split"):
        with_validation(split, 2)


def _three_colours(rng, n):
    """A dataset a net learns in a few steps: class k brightens channel k of 6×5 RGB floats."""
    labels = rng.integers(0, 3, n)
    images = rng.random((n, 6, 5, 3)) * 0.5
    images[np.arange(n), :, :, labels] += 0.5
    return images.astype(np.float32), labels


def test_own_arrays_from_python_and_from_an_npz(tmp_path, monkeypatch, capsys):
    # Issue 26: your own data, as arrays in Python and as an .npz on the command line.
    rng = np.random.default_rng(0)
    x_train, y_train = _three_colours(rng, 256)
    x_test, y_test = _three_colours(rng, 64)
    data = Dataset.from_arrays(x_train, y_train, x_test, y_test, name="colours")
    assert data.info == DatasetInfo("colours", (6, 5, 3), 3)
    assert data.train_images.dtype == np.uint8 and data.train_images.shape == (256, 90)
    np.testing.assert_array_equal(data.train_images[0],
                                  np.round(x_train[0].ravel() * 255).astype(np.uint8))
    grey = Dataset.from_arrays(np.zeros((4, 3, 2), np.uint8), [0, 1, 2, 1],
                               np.full((2, 3, 2), 255, np.uint8), [4, 0], num_classes=6)
    assert grey.info == DatasetInfo("custom", (3, 2, 1), 6) and grey.test_images.max() == 255
    config = TrainConfig(arch="8:relu,3:linear", dataset="colours", epochs=3, batch_size=32)
    result = train_and_evaluate(config, data=data, log=lambda line: None)
    assert result["test_accuracy"] > 0.9

    # The same arrays as an .npz (compressed or not), named by a relative path: the run
    # records it absolute, so eval finds it from another folder, and a resume is the same run.
    np.savez_compressed(tmp_path / "colours.npz", x_train=x_train, y_train=y_train,
                        x_test=x_test, y_test=y_test)
    monkeypatch.chdir(tmp_path)
    args = ["--dataset", "npz:colours.npz", "--arch", "8:relu,3:linear", "--batch-size", "32",
            "--no-progress"]
    assert main(["train", *args, "--epochs", "2", "--out", "runs/c"]) == 0
    saved = json.loads((tmp_path / "runs" / "c" / "config.json").read_text())
    assert saved["dataset"] == f"npz:{tmp_path.resolve() / 'colours.npz'}"
    assert main(["train", *args, "--resume", "runs/c", "--epochs", "3"]) == 0
    monkeypatch.chdir(tmp_path / "runs")
    assert main(["eval", "c"]) == 0
    out = capsys.readouterr().out
    assert "resumed from runs/c at step 16" in out and "confusion (rows" in out
    report = json.loads((tmp_path / "runs" / "c" / "eval.json").read_text())
    assert len(report["per_class_acc"]) == 3 and sum(map(sum, report["confusion"])) == 64
    _, _, info = load_model(tmp_path / "runs" / "c" / "model.npz")
    assert info == DatasetInfo(saved["dataset"], (6, 5, 3), 3)


@pytest.mark.parametrize("arrays, message", [
    (dict(x_train=np.zeros((4, 784))), "x_train must be images (N, H, W) or (N, H, W, C)"),
    (dict(x_train=np.zeros((0, 3, 3))), "with N >= 1"),
    (dict(x_train=np.zeros((4, 3, 3, 5))), "C from 1 to 4, got shape (4, 3, 3, 5)"),
    (dict(x_train=np.full((4, 3, 3), 2.0)), "floats, which must be in [0, 1]; got values in "
                                            "[2, 2]"),
    (dict(x_train=np.full((4, 3, 3), np.nan)), "got NaN or infinite values"),
    (dict(x_train=np.zeros((4, 3, 3), np.int64)), "must be uint8 (0 to 255) or floats"),
    (dict(x_test=np.zeros((2, 3, 4), np.uint8)), "x_test images are (3, 4, 1)"),
    (dict(y_train=np.zeros(3, int)), "y_train must be (4,) integer labels"),
    (dict(y_train=np.zeros(4)), "y_train must be (4,) integer labels, one per image, got (4,) "
                                "float64"),
    (dict(y_test=np.array([0, -1])), "y_test labels must be in [0, 2**31)"),
    (dict(y_train=np.zeros(4, int), y_test=np.zeros(2, int)), "at least 2 classes"),
    (dict(num_classes=2), "labels must be below num_classes 2, got 2"),
    (dict(name="Mine"), "dataset 'Mine' is not a TFDS dataset name"),
])
def test_own_arrays_are_checked_one_problem_at_a_time(arrays, message):
    base = dict(x_train=np.zeros((4, 3, 3), np.uint8), y_train=np.array([0, 1, 2, 1]),
                x_test=np.zeros((2, 3, 3), np.uint8), y_test=np.array([1, 0]))
    base.update(arrays)
    with pytest.raises((DatasetError, ValueError)) as e:
        Dataset.from_arrays(**base)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_bad_npz_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    x, y = np.zeros((4, 3, 3), np.uint8), np.array([0, 1, 2, 1])
    np.savez(tmp_path / "half.npz", x_train=x, y_train=y)
    np.savez(tmp_path / "objects.npz", x_train=np.array([None] * 4), y_train=y, x_test=x,
             y_test=y)
    np.savez(tmp_path / "good.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    np.savez(tmp_path / "short.npz", x_train=x, y_train=y[:3], x_test=x, y_test=y)
    (tmp_path / "text.npz").write_text("not a zip")
    (tmp_path / "folder.npz").mkdir()
    # A damaged .npy header inside a sound zip: numpy's parser raised tokenize's TokenError,
    # which reached the user as a traceback (found by a fresh-eyes test).
    with zipfile.ZipFile(tmp_path / "good.npz") as good, \
            zipfile.ZipFile(tmp_path / "header.npz", "w") as damaged:
        for member in good.namelist():
            data = good.read(member)
            at = data.find(b"{'descr'")
            damaged.writestr(member, data[:at] + b"X" * 30 + data[at + 30:]
                             if member == "x_train.npy" else data)
    for name, message in [
            ("half.npz", "half.npz has no x_test, y_test: an npz dataset holds x_train, y_train, "
                         "x_test, y_test"),
            ("objects.npz", "objects.npz is not a readable .npz of arrays (ValueError"),
            ("text.npz", "text.npz is not a readable .npz of arrays (BadZipFile"),
            ("header.npz", "header.npz is not a readable .npz of arrays (an array's header is "
                           "damaged)"),
            ("folder.npz", "folder.npz is a folder, not an .npz file"),
            # An array's problem is named by the file too, as the file's own problems are.
            ("short.npz", f"error: {tmp_path / 'short.npz'}: y_train must be (4,) integer labels"),
            ("nope.npz", f"no file at {tmp_path / 'nope.npz'} (the dataset npz:"),
            ("good.npz", "bytes of arrays, more than the 100 jaxmlp reads")]:
        if name == "good.npz":  # an .npz that would unpack to more than memory holds
            monkeypatch.setattr(jaxmlp._data, "_MAX_NPZ_BYTES", 100)
        code = main(["train", "--dataset", f"npz:{tmp_path / name}", "--arch", "3:linear",
                     "--out", str(tmp_path / "runs" / "x")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, (name, err)
        assert not (tmp_path / "runs").exists()
    for spec in ["npz:", "npz: ", "npz:a\nb", "npz:" + "x" * 2000]:
        with pytest.raises(ValueError, match="dataset npz:FILE must name a file"):
            TrainConfig(dataset=spec)


def test_a_wrong_folder_or_name_gets_a_hint(served_runs, tmp_path, capsys):
    # Found by a fresh-eyes test: the message was right, but did not say what to do.
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(served_runs[0] / "one", root / "one")
    shutil.copytree(served_runs[0] / "grid" / "sweep", root / "sweep")
    for argv, message in [
            (["train", "--resume", str(root / "sweep")], "(it holds a sweep: `jaxmlp sweep "
                                                          "--resume`"),
            (["sweep", "--resume", str(root / "one")], "holds a single run, not a sweep "
                                                        "(`jaxmlp train --resume`"),
            (["eval", str(root)], "(a folder of runs: `jaxmlp runs` lists them)"),
            (["train", "--dataset", "mine.npz", "--out", str(tmp_path / "x")],
             "(your own arrays in a file: npz:mine.npz)")]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    # The API too: the run's own lock on the folder is not "another process" (it said so).
    config = read_sweep(root / "sweep")[0]
    with pytest.raises(RunError, match=r"sweep is not a run folder: it has no config.json "
                                       r"\(it holds a sweep"):
        train_and_evaluate(config, root / "sweep", resume=True, log=lambda _: None)
    assert not (root / "sweep" / ".lock").exists()
    with pytest.raises(DatasetError, match=r"got values in \[0, 229.5\]"):
        Dataset.from_arrays(np.linspace(0, 229.5, 36).reshape(4, 3, 3), [0, 1, 2, 1],
                            np.zeros((2, 3, 3), np.uint8), [1, 0])


# --- folder:DIR: your own images, one subfolder per class ------------------------------


def _write_images(root: Path, images: np.ndarray, labels: np.ndarray, classes, split: str):
    from PIL import Image

    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / split / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(
            folder / f"{i:03d}.png")


def _image_folder(root: Path, channels: int = 3, n_train: int = 60, n_test: int = 12):
    """A folder dataset of 7×5 images, 3 classes named out of sorted order; returns the
    arrays it holds, in the order jaxmlp reads them (class folders sorted, files sorted)."""
    rng = np.random.default_rng(3)
    classes = ["zebra", "apple", "moon"]  # sorted: apple 0, moon 1, zebra 2
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 3
        images = rng.integers(0, 256, (n, 7, 5, channels), dtype=np.uint8)
        _write_images(root, images, labels, classes, split)
        order = sorted(range(n), key=lambda i: (sorted(classes).index(classes[labels[i]]), i))
        arrays[split] = (images[order], np.array([sorted(classes).index(classes[labels[i]])
                                                  for i in order]))
    return arrays


@pytest.mark.parametrize("channels", [1, 3])
def test_a_folder_of_images_is_its_arrays_and_is_cached(tmp_path, channels, monkeypatch):
    import jaxmlp._image_folder as image_folder

    root = tmp_path / "shapes"
    arrays = _image_folder(root, channels)
    name = f"folder:{root}"
    data = jaxmlp._data.load_dataset(name, cache_dir=tmp_path / "cache")
    assert data.info == DatasetInfo(name, (7, 5, channels), 3)
    for split in ("train", "test"):
        images, labels = arrays[split]
        np.testing.assert_array_equal(getattr(data, f"{split}_images"), images.reshape(len(images), -1))
        np.testing.assert_array_equal(getattr(data, f"{split}_labels"), labels)
    # Loaded again: from the cache, not decoded.
    decoded = []
    real = image_folder.decode
    monkeypatch.setattr(image_folder, "decode", lambda files: decoded.append(1) or real(files))
    again = jaxmlp._data.load_dataset(name, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.train_images, data.train_images)
    assert decoded == [] and len(list((tmp_path / "cache").glob("folder-*.npz"))) == 1
    # A changed image is a new key: decoded again, the new pixels read.
    from PIL import Image

    changed = sorted((root / "train" / "apple").iterdir())[0]
    Image.fromarray(np.zeros((7, 5, 3), np.uint8)).convert(
        "L" if channels == 1 else "RGB").save(changed)
    third = jaxmlp._data.load_dataset(name, cache_dir=tmp_path / "cache")
    assert decoded == [1] and third.train_images[0].sum() == 0 != data.train_images[0].sum()


def test_a_folder_of_16_bit_images_by_a_relative_or_linked_name(tmp_path, monkeypatch):
    # Found by a fresh-eyes test: 16-bit grey PNGs were clipped to white (1000 of 65535 read
    # as 255), and load_dataset("folder:RELATIVE") raised pathlib's "is not in the subpath".
    from PIL import Image

    root = tmp_path / "deep"
    levels = np.array([[0, 1000, 30000], [65535, 257 * 100, 128]], np.uint16)  # 7×5 images
    for split, n in (("train", 4), ("test", 2)):
        for i in range(n):
            folder = root / split / f"c{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((7, 5), levels.flat[i], np.uint16)).save(folder / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(root)
    for name in ("folder:deep", f"folder:{root}", "folder:link"):
        data = jaxmlp._data.load_dataset(name, cache_dir=tmp_path / "cache")
        assert data.info.image_shape == (7, 5, 1), name
        # c0 holds images 0 and 2, c1 images 1 and 3 (files sorted within each class)
        np.testing.assert_array_equal(data.train_images[:, 0], [0, 117, 4, 255])
        np.testing.assert_array_equal(data.test_images[:, 0], [0, 4])
    assert [round(v / 257) for v in (0, 30000, 1000, 65535)] == [0, 117, 4, 255]
    # One folder, one cache entry, whichever name reached it.
    assert len(list((tmp_path / "cache").glob("folder-*.npz"))) == 1


def test_a_grey_folder_with_one_colour_image_becomes_rgb(tmp_path):
    from PIL import Image

    root = tmp_path / "mixed"
    _image_folder(root, channels=1, n_train=6, n_test=3)
    Image.fromarray(np.full((7, 5, 3), (255, 0, 0), np.uint8)).save(
        root / "train" / "apple" / "red.png")
    data = jaxmlp._data.load_dataset(f"folder:{root}", use_cache=False)
    assert data.info.image_shape == (7, 5, 3)
    red = data.train_images.reshape(-1, 7, 5, 3)[2]  # apple's files: 000, 003, red
    assert (red[..., 0] == 255).all() and (red[..., 1:] == 0).all()
    grey = data.train_images.reshape(-1, 7, 5, 3)[0]
    assert (grey[..., 0] == grey[..., 1]).all()  # grey pixels as R = G = B


def test_trains_from_the_command_line_and_records_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXMLP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    _image_folder(tmp_path / "shapes", n_train=90)
    assert main(["train", "--dataset", "folder:shapes", "--arch", "8:relu,3:linear",
                 "--batch-size", "16", "--epochs", "2", "--no-progress", "--quiet"]) == 0
    out = tmp_path / "runs" / "shapes-8_relu_3_linear"
    assert capsys.readouterr().out.strip().endswith(f"outputs in {out.relative_to(tmp_path)}")
    saved = json.loads((out / "config.json").read_text())
    assert saved["dataset"] == f"folder:{(tmp_path / 'shapes').resolve()}"
    monkeypatch.chdir(tmp_path / "runs")  # found again from elsewhere
    assert main(["eval", str(out)]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_a_bad_image_folder_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import jaxmlp._image_folder as image_folder
    from PIL import Image

    def fresh(name, n_train=6):
        _image_folder(tmp_path / name, n_train=n_train, n_test=3)
        return tmp_path / name

    (fresh("unreadable") / "train" / "apple" / "000.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((8, 5, 3), np.uint8)).save(fresh("sizes") / "test" / "moon" / "x.png")
    (fresh("stranger") / "test" / "pear").mkdir()
    one = fresh("one")
    for extra in ("moon", "zebra"):
        for p in (one / "train" / extra).iterdir():
            p.unlink()
        (one / "train" / extra).rmdir()
    for p in (fresh("empty") / "train" / "moon").iterdir():
        p.unlink()
    (fresh("notest") / "test").rename(tmp_path / "notest" / "tests")
    (tmp_path / "file").write_text("x")
    fresh("many", n_train=9)
    for name, message in [
            ("unreadable", f"{tmp_path / 'unreadable/train/apple/000.png'} is not a readable "
                           "image (UnidentifiedImageError)"),
            ("sizes", f"{tmp_path / 'sizes/test/moon/x.png'} is 5×8 pixels, but a folder "
                      "dataset's images share one size (5×7, as "),
            ("stranger", f"{tmp_path / 'stranger/test/pear'} is not a class of train/ (its "
                         "classes: apple, moon, zebra)"),
            ("one", f"{one / 'train'} holds 1 class folder(s): a classifier needs at least 2"),
            ("empty", f"{tmp_path / 'empty/train/moon'} holds no images (.png, .jpg"),
            ("notest", f"{tmp_path / 'notest'} has no test/ folder: a folder dataset holds "
                       "train/ and test/"),
            ("file", f"{tmp_path / 'file'} is not a folder: a folder dataset is DIR with train/"),
            ("nope", f"no folder at {tmp_path / 'nope'} (the dataset folder:"),
            ("many", "holds more than the 10 images jaxmlp reads from a folder")]:
        monkeypatch.setattr(image_folder, "MAX_IMAGES", 10 if name == "many" else 2_000_000)
        code = main(["train", "--dataset", f"folder:{tmp_path / name}", "--arch", "3:linear",
                     "--out", str(tmp_path / "runs" / "x")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, (name, err)
        assert not (tmp_path / "runs").exists()
    monkeypatch.setattr(image_folder, "MAX_IMAGES", 2_000_000)
    monkeypatch.setattr(image_folder, "MAX_BYTES", 100)
    with pytest.raises(DatasetError, match="are more than the 100 bytes jaxmlp reads"):
        jaxmlp._data.load_dataset(f"folder:{tmp_path / 'many'}", use_cache=False)
    for spec in ["folder:", "folder: ", "folder:a\nb"]:
        with pytest.raises(ValueError, match="dataset folder:DIR must name a folder"):
            TrainConfig(dataset=spec)
