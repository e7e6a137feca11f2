"""MNIST loading: the real data, the cache, manual files, and clear errors."""
import gc
import gzip
import hashlib
import json
import shutil

import numpy as np
import pytest

from jaxmlp._data import (MNIST, DatasetError, DatasetNotFoundError, _cache_path, _prepared_info,
                         check_dataset, _load_mnist)



def _idx_md5(path):
    with gzip.open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def _sorted_rows(images, labels):
    """(label, image) rows as raw bytes, sorted: compares two orderings of one set."""
    rows = np.concatenate([labels.astype(np.uint8)[:, None], images], axis=1)
    return np.sort(np.ascontiguousarray(rows).view(f"V{rows.shape[1]}").ravel())


def test_real_mnist_matches_the_original_idx_files(mnist, idx_dir):
    # The TFDS copy holds the same (image, label) pairs as the original IDX files, in
    # TFDS's own order.
    def read_idx(name, offset):
        with gzip.open(idx_dir / name, "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)
    # The shared files are the originals (md5 of the unzipped bytes, as published).
    assert _idx_md5(idx_dir / "t10k-labels-idx1-ubyte.gz") == "27ae3e4e09519cfbb04c329615203637"
    for split, prefix in (("test", "t10k"), ("train", "train")):
        labels = read_idx(f"{prefix}-labels-idx1-ubyte.gz", 8)
        images = read_idx(f"{prefix}-images-idx3-ubyte.gz", 16).reshape(len(labels), 784)
        ours = getattr(mnist, f"{split}_images"), getattr(mnist, f"{split}_labels")
        assert ours[0].dtype == np.uint8 and ours[0].shape == images.shape
        assert (_sorted_rows(*ours) == _sorted_rows(images, labels)).all()
    assert np.bincount(mnist.test_labels).tolist()[:3] == [980, 1135, 1032]


def test_cache_is_used_and_keyed_by_dataset_info(mnist, tfds_dir, cache_dir, tmp_path):
    info = _prepared_info(tfds_dir, "mnist")
    assert info.parent.name == "3.0.1"
    cached = _cache_path(cache_dir, "mnist", info)
    assert cached.exists()  # written by the session's first load
    assert cached.name.startswith("mnist-3.0.1-") and cached.suffix == ".npz"
    again = _load_mnist(data_dir=tfds_dir, cache_dir=cache_dir, download=False)
    np.testing.assert_array_equal(again.test_images, mnist.test_images)
    assert again.info == mnist.info == MNIST
    # Another dataset_info (re-prepared or upgraded data) means another cache file.
    other = tmp_path / "mnist" / "3.0.1"
    other.mkdir(parents=True)
    meta = json.loads(info.read_text())
    meta["description"] = "changed"
    (other / "dataset_info.json").write_text(json.dumps(meta))
    assert _cache_path(cache_dir, "mnist", other / "dataset_info.json") != cached


def test_damaged_cache_is_rebuilt(tfds_dir, tmp_path, mnist, monkeypatch):
    # TFDS's own reading is the session's first load (and tests/test_cli.py's first run):
    # here it hands back what it read then, so that only the cache's rules are timed.
    import jaxmlp._data

    info = _prepared_info(tfds_dir, "mnist")
    reads = []
    monkeypatch.setattr(jaxmlp._data, "_load_tfds",
                        lambda name, *a: reads.append(name) or (mnist, info))
    cached = _cache_path(tmp_path, "mnist", info)
    cached.write_bytes(b"not an npz")
    data = _load_mnist(data_dir=tfds_dir, cache_dir=tmp_path, download=False)
    assert reads == ["mnist"]  # the damaged file was not taken for data
    np.testing.assert_array_equal(data.train_labels, mnist.train_labels)
    assert data.info == MNIST
    with np.load(cached) as f:  # rewritten whole
        np.testing.assert_array_equal(f["test_labels"], mnist.test_labels)


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=f"`data_dir` {tmp_path / 'nope'} does not exist"):
        _load_mnist(data_dir=tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(DatasetNotFoundError, match=f"`data_dir` {tmp_path / 'file'} is not a folder"):
        _load_mnist(data_dir=tmp_path / "file")


def test_damaged_dataset_info_is_named_as_such(tfds_dir, tmp_path):
    # mnist is a dataset TFDS knows: what is wrong is its prepared metadata.
    copy = tmp_path / "tfds"
    shutil.copytree(tfds_dir / "mnist", copy / "mnist")
    info = next(copy.glob("mnist/*/dataset_info.json"))
    info.write_text(info.read_text()[:50])
    with pytest.raises(DatasetError, match=f"tensorflow-datasets could not open mnist in {copy} "):
        _load_mnist(data_dir=copy, download=False, use_cache=False)


def test_unprepared_and_offline_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        _load_mnist(data_dir=tmp_path, download=False, use_cache=False)
    message = str(e.value)
    assert f"not prepared in {tmp_path}" in message and "mnist/3.0.1" in message
    assert "`data_dir`" in message and "TFDS_DATA_DIR" in message and "`manual_dir`" in message


def test_check_dataset_rejects_wrong_data(mnist):
    def broken(**changes):
        return mnist._replace(**changes)
    assert check_dataset(mnist) is mnist
    with pytest.raises(DatasetError, match=r"mnist train labels must be \(100,\) integers, "
                                           r"got \(60000,\)"):
        check_dataset(broken(train_images=mnist.train_images[:100]))
    with pytest.raises(DatasetError, match=r"mnist test images must be \(N, 784\) uint8"):
        check_dataset(broken(test_images=mnist.test_images.reshape(-1, 28, 28)))
    with pytest.raises(DatasetError, match=r"uint8 with N >= 1, got \(10000, 784\) float32"):
        check_dataset(broken(test_images=mnist.test_images.astype(np.float32)))
    with pytest.raises(DatasetError, match=r"mnist test labels outside \[0, 10\): values in "
                                           r"\[0, 11\]"):
        labels = mnist.test_labels.copy()
        labels[5] = 11
        check_dataset(broken(test_labels=labels))
    with pytest.raises(DatasetError, match=r"mnist train labels must be \(60000,\) integers, "
                                           r"got \(60000,\) float32"):
        check_dataset(broken(train_labels=mnist.train_labels.astype(np.float32)))
    # Dropped on purpose with the move to any dataset: no fixed split sizes, and a split
    # may miss a class (a small --val-size one often does).
    small = broken(train_images=mnist.train_images[:100], train_labels=np.zeros(100, np.int32))
    assert check_dataset(small) is small


def test_corrupt_tfrecords_are_a_clear_error(tfds_dir, tmp_path, capfd):
    copy = tmp_path / "tfds"
    shutil.copytree(tfds_dir, copy)
    record = next((copy / "mnist" / "3.0.1").glob("mnist-test.tfrecord*"))
    record.chmod(0o644)
    data = bytearray(record.read_bytes())
    data[1000:1100] = b"\xff" * 100
    record.write_bytes(bytes(data))
    # TensorFlow's DataLossError carries no message; the reason it logged in C++ is quoted,
    # and nothing it wrote to the terminal gets there, not even its iterator's destructor.
    with pytest.raises(DatasetError, match=r"could not read the mnist test split in .*: "
                                           r"DataLossError: DATA_LOSS: corrupted record at \d+$"):
        _load_mnist(data_dir=copy, download=False, use_cache=False)
    gc.collect()
    assert capfd.readouterr() == ("", "")


def test_recompressed_manual_files_are_rejected_clearly(idx_dir, tmp_path):
    # The shared .gz files hold the original bytes but not the original gzip wrapper,
    # so TFDS's checksum check refuses them: a clear error, no download, no silent result.
    with pytest.raises(DatasetError, match="do not match the originals' checksums"):
        _load_mnist(data_dir=tmp_path, manual_dir=idx_dir, download=False, use_cache=False)


def _write_idx_gz(path, array, magic):
    header = np.array([magic, *array.shape], ">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_manual_dir_prepares_with_tfds_offline(idx_dir, tmp_path, monkeypatch):
    """--manual-dir end to end on a 100 + 100 example fixture cut from the real files.

    TFDS checks manual files against the originals' registered checksums and sizes, so
    the test registers the fixture's own, and shrinks TFDS's split sizes to match.
    """
    from tensorflow_datasets.core.download.checksums import UrlInfo
    from tensorflow_datasets.image_classification import mnist as tfds_mnist

    manual = tmp_path / "manual"
    manual.mkdir()
    infos, want = {}, {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        with gzip.open(idx_dir / f"{prefix}-labels-idx1-ubyte.gz") as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)[:100]
        with gzip.open(idx_dir / f"{prefix}-images-idx3-ubyte.gz") as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16)[:100 * 784].reshape(100, 28, 28)
        assert np.bincount(labels, minlength=10).min() > 0
        _write_idx_gz(manual / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
        _write_idx_gz(manual / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        want[split] = (images.reshape(100, 784), labels)
    for path in manual.iterdir():
        data = path.read_bytes()
        infos[tfds_mnist.MNIST.URL + path.name] = UrlInfo(
            size=len(data), checksum=hashlib.sha256(data).hexdigest(), filename=path.name)
    monkeypatch.setattr(tfds_mnist.MNIST, "url_infos", infos)
    monkeypatch.setattr(tfds_mnist, "_TRAIN_EXAMPLES", 100)
    monkeypatch.setattr(tfds_mnist, "_TEST_EXAMPLES", 100)

    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    data = _load_mnist(data_dir=data_dir, manual_dir=manual, download=False, cache_dir=tmp_path)
    for split in ("train", "test"):
        got = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        assert (_sorted_rows(*got) == _sorted_rows(*want[split])).all()
    assert (data_dir / "mnist" / "3.0.1" / "dataset_info.json").exists()
    assert list(tmp_path.glob("mnist-3.0.1-*.npz"))  # and the decoded arrays were cached


def test_offline_download_fails_fast_and_clearly(tmp_path, monkeypatch):
    # Simulate no network (and so never download): the reachability probe fails at once,
    # instead of TFDS retrying every file for minutes.
    import jaxmlp._data

    def unreachable(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(jaxmlp._data.socket, "create_connection", unreachable)
    with pytest.raises(DatasetNotFoundError, match=r"download site \S+ cannot be reached "
                                                 r"\(Network is unreachable\)\. Offline\?"):
        _load_mnist(data_dir=tmp_path, download=True, use_cache=False)
    assert not (tmp_path / "mnist").exists()  # nothing half-prepared left behind


def test_the_folder_a_dataset_was_found_in_is_remembered(mnist, tfds_dir, cache_dir, tmp_path,
                                                         monkeypatch):
    # Issue 26: `make train` found MNIST through the Makefile's TFDS_DATA_DIR; a later
    # `jaxmlp train` in a plain shell must find it too.
    from jaxmlp._data import _remember, default_data_dir

    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/tensorflow_datasets
    cache = tmp_path / "cache"
    cache.mkdir()
    for cached in cache_dir.glob("mnist-*.npz"):  # the session's arrays: read without TFDS
        shutil.copy(cached, cache)
    home_default = tmp_path / "home" / "tensorflow_datasets"
    assert default_data_dir("mnist", cache) == home_default  # nothing remembered yet
    _load_mnist(data_dir=tfds_dir, cache_dir=cache, download=False)
    assert json.loads((cache / "data_dirs.json").read_text()) == {"mnist": str(tfds_dir.resolve())}
    assert default_data_dir("mnist", cache) == tfds_dir.resolve()
    assert default_data_dir("fashion_mnist", cache) == home_default  # only where it was found
    assert default_data_dir(None, cache) == home_default
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env"))  # the environment wins
    assert default_data_dir("mnist", cache) == tmp_path / "env"
    monkeypatch.delenv("TFDS_DATA_DIR")
    # A remembered folder that no longer holds it, or a file that is not ours: the default.
    for text in ['{"mnist": "%s"}' % (tmp_path / "gone"), "{", "[1]", '{"mnist": 3}',
                 '{"mnist": "a\\u0000b"}']:
        (cache / "data_dirs.json").write_text(text)
        assert default_data_dir("mnist", cache) == home_default, text
    # Loaded again, it is remembered again, other entries kept.
    (cache / "data_dirs.json").write_text('{"kmnist": "/k"}')
    _load_mnist(data_dir=tfds_dir, cache_dir=cache, download=False)
    assert json.loads((cache / "data_dirs.json").read_text()) == {
        "kmnist": "/k", "mnist": str(tfds_dir.resolve())}
    # A cache folder that cannot be written only means nothing is remembered.
    (tmp_path / "file").write_text("")
    _remember("mnist", tfds_dir, tmp_path / "file" / "cache")
    assert default_data_dir("mnist", tmp_path / "file" / "cache") == home_default
