"""Image-classification datasets through tensorflow-datasets, as uint8 numpy arrays.

Any TFDS dataset with one fixed-size uint8 image feature and one class-label feature works
(``mnist``, ``fashion_mnist``, ``kmnist``, ``emnist/digits``, ``cifar10``, …): the input
width, class count and splits come from the builder's info, and images are flattened to
``(N, height * width * channels)``. TensorFlow only reads the data: it is kept off
accelerators and out of the training loop. After the first load the decoded arrays are
cached as ``.npz`` (keyed by dataset, version and the metadata TFDS wrote when it prepared
them), so later runs skip TensorFlow entirely.
"""
import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import urllib.parse
import zipfile
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from jaxmlp import _image_folder
from jaxmlp._errors import DatasetError, DatasetNotFoundError, Invalid
from jaxmlp._checkpoint import save_npz_atomic, write_atomic
from jaxmlp._images import check_image_shape

DEFAULT_DATASET = "mnist"
# A TFDS name, optionally with its config: "mnist", "emnist/letters". Also keeps the name
# safe to use in cache file names and paths: the config may hold dots but not start with
# one, so "mnist/.." cannot make the cache's glob climb out of the data folder.
_NAME = re.compile(r"[a-z][a-z0-9_]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)?")
# A dataset of your own arrays: ``npz:FILE`` (``load_dataset``), the path made absolute when a
# config is made, so the run finds its data again from any folder.
NPZ = "npz:"
# ... or images in folders: ``folder:DIR`` (``jaxmlp/_image_folder.py``), made absolute too.
FOLDER = "folder:"
MAX_NAME = 1024  # a dataset's name, an npz path included
_NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
# An .npz is read whole: more than this (uncompressed) is refused before reading it (MNIST
# as uint8 is 55 MB; float32 220 MB).
_MAX_NPZ_BYTES = 8 << 30
_TEST_SPLITS = ("test", "validation")
# TFDS stores EMNIST as its source files do, each image transposed (tensorflow/datasets#812):
# turned upright on load, so predictions on real photos, mistakes.png and weights.png see
# the characters as they are written.
_TRANSPOSED = ("emnist",)  # the first the dataset has is the reported test set


class DatasetInfo(NamedTuple):
    """What a network needs to know about a dataset: its name, image shape and class count."""

    name: str
    image_shape: tuple[int, ...]  # (height, width, channels)
    num_classes: int

    @property
    def in_dim(self) -> int:
        """Pixels per flattened image: the network's input width."""
        return math.prod(self.image_shape)


MNIST = DatasetInfo("mnist", (28, 28, 1), 10)


class Dataset(NamedTuple):
    """A dataset as numpy arrays: images ``(N, in_dim)`` uint8 in [0, 255], labels ``(N,)``
    int32 in ``[0, num_classes)``. ``val_*`` is the validation split (``with_validation``),
    ``None`` when there is none. ``info`` defaults to MNIST's."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    val_images: Optional[np.ndarray] = None
    val_labels: Optional[np.ndarray] = None
    info: DatasetInfo = MNIST

    @classmethod
    def from_arrays(cls, x_train, y_train, x_test, y_test, *, name: str = "custom",
                    num_classes: Optional[int] = None) -> "Dataset":
        """Your own data as a ``Dataset``: images ``(N, H, W)`` or ``(N, H, W, C)`` (C 1 to
        4), uint8 in [0, 255] or floats in [0, 1] (scaled and rounded to uint8, as jaxmlp
        keeps pixels); labels ``(N,)`` integers from 0. ``num_classes`` defaults to the
        largest label + 1. ``name`` is the dataset's name, which ``TrainConfig.dataset``
        must match. ``DatasetError`` names the first problem."""
        check_name(name)
        x_train, shape = _image_array(x_train, "x_train", name)
        x_test, test_shape = _image_array(x_test, "x_test", name)
        if test_shape != shape:
            raise DatasetError(f"{name}: x_test images are {test_shape} (height, width, "
                               f"channels) but x_train's are {shape}")
        y_train, y_test = (_label_array(y, key, len(x), name) for y, key, x in
                           ((y_train, "y_train", x_train), (y_test, "y_test", x_test)))
        largest = max(int(y_train.max()), int(y_test.max()))
        if num_classes is None:
            num_classes = largest + 1
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise DatasetError(f"{name}: a classifier needs at least 2 classes, got "
                               f"num_classes {num_classes!r}")
        if largest >= num_classes:
            raise DatasetError(f"{name}: labels must be below num_classes {num_classes}, "
                               f"got {largest}")
        try:
            shape = check_image_shape(shape)
        except ValueError as e:
            raise DatasetError(f"{name}: {e}") from None
        return check_dataset(cls(x_train, y_train, x_test, y_test,
                                 info=DatasetInfo(name, shape, num_classes)))

    def splits(self) -> dict:
        """``{"train": (images, labels), "val": …, "test": …}``, val only when present."""
        out: dict = {"train": (self.train_images, self.train_labels)}
        if self.val_labels is not None:
            out["val"] = (self.val_images, self.val_labels)
        out["test"] = (self.test_images, self.test_labels)
        return out


def default_data_dir(name: Optional[str] = None, cache_dir=None) -> Path:
    """``$TFDS_DATA_DIR`` if set; else, for dataset ``name``, the folder it was last loaded
    from on this machine if it is still prepared there (``load_dataset`` remembers it in the
    cache folder, so ``jaxmlp train`` finds the data ``make train`` found); else TFDS's own
    default ``~/tensorflow_datasets``."""
    if os.environ.get("TFDS_DATA_DIR"):
        return Path(os.environ["TFDS_DATA_DIR"]).expanduser()
    found = _remembered(cache_dir).get(name) if name else None
    try:
        if name and isinstance(found, str) and _prepared_info(Path(found), name) is not None:
            return Path(found)
    except (OSError, ValueError):  # a path no folder can have (a NUL in it)
        pass
    return Path("~/tensorflow_datasets").expanduser()


# In the cache folder: where each dataset was last loaded from ({"mnist": "/data/tfds"}).
_FOUND = "data_dirs.json"


def _remembered(cache_dir=None) -> dict:
    try:
        text = _cache_root(cache_dir).joinpath(_FOUND).read_bytes()
        found = json.loads(text[:1 << 20])
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):  # none yet, or unreadable: nothing remembered
        return {}


def _remember(name: str, data_dir: Path, cache_dir=None) -> None:
    """Notes that ``name`` was loaded from ``data_dir`` (best effort: a cache folder that
    cannot be written only means the next shell must name the folder again)."""
    where = str(data_dir.resolve())
    found = _remembered(cache_dir)
    if found.get(name) == where:
        return
    text = json.dumps({**found, name: where}, indent=1, sort_keys=True).encode()
    try:
        write_atomic(_cache_root(cache_dir) / _FOUND, lambda f: f.write(text))
    except OSError:
        pass


def default_cache_dir() -> Path:
    """``$JAXMLP_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxmlp``, else ``~/.cache/jaxmlp``."""
    if os.environ.get("JAXMLP_CACHE_DIR"):
        return Path(os.environ["JAXMLP_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "jaxmlp"


def _cache_root(cache_dir) -> Path:
    """``cache_dir`` as given, else ``default_cache_dir()``."""
    return Path(cache_dir) if cache_dir else default_cache_dir()


def own_data(name: str) -> Optional[tuple[str, Path]]:
    """``(prefix, path)`` of a dataset of your own (``npz:FILE`` or ``folder:DIR``, ``~``
    expanded), or None for a TFDS name."""
    for prefix in (NPZ, FOLDER):
        if name.startswith(prefix):
            return prefix, Path(name[len(prefix):]).expanduser()
    return None


def check_name(name: str) -> str:
    """``name`` if it can be a dataset: a TFDS name (``mnist``, ``emnist/letters``),
    ``npz:FILE`` (your own arrays) or ``folder:DIR`` (your own images, ``load_dataset``),
    else ``ValueError``."""
    own = own_data(name) if isinstance(name, str) else None
    if own:
        rule = "npz:FILE must name a file" if own[0] == NPZ else "folder:DIR must name a folder"
        if not name[len(own[0]):].strip() or len(name) > MAX_NAME or any(
                c in name for c in "\0\n\r"):
            raise Invalid(f"dataset {rule} (at most {MAX_NAME} characters, on one line)",
                          repr(name[:80]))
        return name
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        hint = (f" (names are lower case: {name.lower()})"
                if isinstance(name, str) and _NAME.fullmatch(name.lower()) else
                f" (your own arrays in a file: {NPZ}{name})"
                if isinstance(name, str) and name.endswith(".npz") else "")
        rule = ("dataset must be a TFDS dataset name (such as mnist, fashion_mnist, kmnist, "
                "emnist/digits, cifar10)")
        raise Invalid(rule, message=f"dataset {name!r} is not a TFDS dataset name (such as "
                       f"mnist, fashion_mnist, kmnist, emnist/digits, cifar10){hint}")
    return name


def _prepared_info(data_dir: Path, name: str) -> Optional[Path]:
    """The newest prepared ``<name>/<version>/dataset_info.json`` under ``data_dir``."""
    infos = [p for p in data_dir.glob(f"{name}/*/dataset_info.json")
             if p.parent.name.replace(".", "").isdigit()]
    key = lambda p: tuple(int(v) for v in p.parent.name.split("."))
    return max(infos, key=key) if infos else None


def _cache_path(cache_dir: Path, name: str, info: Path) -> Path:
    # Keyed by version and by the metadata TFDS wrote when it prepared the data (split
    # sizes, file checksums): re-preparing or upgrading the data invalidates the cache.
    digest = hashlib.sha256(info.read_bytes()).hexdigest()[:16]
    return cache_dir / f"{name.replace('/', '--')}-{info.parent.name}-{digest}.npz"


def check_dataset(data: Dataset) -> Dataset:
    """Raises ``DatasetError`` unless ``data`` is usable for training: for every split,
    images ``(N, in_dim)`` uint8 beside ``(N,)`` integer labels in ``[0, num_classes)``,
    N >= 1 (``in_dim`` and ``num_classes`` from ``data.info``).

    Out-of-range labels would otherwise surface only as a NaN loss inside compiled code.
    """
    name, in_dim, classes = data.info.name, data.info.in_dim, data.info.num_classes
    for split, (images, labels) in data.splits().items():
        if (np.ndim(images) != 2 or np.shape(images)[1] != in_dim
                or np.asarray(images).dtype != np.uint8 or len(images) == 0):
            raise DatasetError(f"{name} {split} images must be (N, {in_dim}) uint8 with N >= 1, "
                               f"got {np.shape(images)} {np.asarray(images).dtype}")
        if np.shape(labels) != (len(images),) or not np.issubdtype(np.asarray(labels).dtype,
                                                                   np.integer):
            raise DatasetError(f"{name} {split} labels must be ({len(images)},) integers, got "
                               f"{np.shape(labels)} {np.asarray(labels).dtype}")
        lo, hi = int(np.min(labels)), int(np.max(labels))
        if lo < 0 or hi >= classes:
            raise DatasetError(f"{name} {split} labels outside [0, {classes}): values in "
                               f"[{lo}, {hi}]")
    return data


def with_validation(data: Dataset, size: int) -> Dataset:
    """``data`` with its last ``size`` training examples held out as the validation split.

    The last ones, not a random draw: the split is the same for every seed, so runs with
    different seeds are tuned on the same examples. ``size`` 0 returns ``data`` unchanged.
    """
    if size < 0:  # a negative slice would quietly hold out almost everything
        raise ValueError(f"`val_size` must be >= 0, got {size}")
    if size == 0:
        return data
    if data.val_labels is not None:
        raise ValueError("the data already has a validation split: pass val_size 0")
    keep = len(data.train_labels) - size
    if keep < 1:
        raise ValueError(f"`val_size` {size} leaves no training examples: {data.info.name} has "
                         f"{len(data.train_labels)}")
    return data._replace(train_images=data.train_images[:keep],
                         train_labels=data.train_labels[:keep],
                         val_images=data.train_images[keep:], val_labels=data.train_labels[keep:])


@contextlib.contextmanager
def _held_stderr():
    """Holds whatever is written to file descriptor 2 while TensorFlow runs; yields a function
    that returns the held text.

    TensorFlow 2.21 and absl write start-up notes ("oneDNN custom operations are on", "All log
    messages before absl::InitializeLog() is called are written to STDERR") from C++, before
    and regardless of ``TF_CPP_MIN_LOG_LEVEL``, and a corrupt record's reason goes there too.
    Holding the descriptor silences every such route; the text is kept so that an error can
    still quote TensorFlow's reason in jaxmlp's one line.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield lambda: (held.seek(0), held.read().decode("utf-8", "replace"))[1]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _logged_reason(text: str) -> str:
    """The last status TensorFlow's C++ side logged in ``text`` ("… local_rendezvous.cc:407]
    Local rendezvous is aborting with status: DATA_LOSS: corrupted record at 12" →
    "DATA_LOSS: corrupted record at 12"), or ''."""
    found = [line.split(" status: ", 1)[1].strip() for line in text.splitlines()
             if " status: " in line]
    return found[-1][:300] if found else ""


@contextlib.contextmanager
def _tfds_tempdir():
    """Gives TFDS a temporary folder of its own, removed afterwards: opening a dataset that
    is not prepared makes ``DatasetInfo.initialize_from_bucket`` create a ``/tmp/tmp…tfds``
    folder it never removes (empty, offline), one for every failed start."""
    folder = tempfile.mkdtemp(prefix="jaxmlp-tfds-")
    previous = tempfile.tempdir
    tempfile.tempdir = folder
    try:
        yield
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(folder, ignore_errors=True)


def _import_tfds():
    # Python-side TensorFlow logging; the C++ side is held by _held_stderr.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except ImportError as e:  # pragma: no cover - a broken install
        raise ImportError("tensorflow-datasets needs TensorFlow to read datasets: "
                          "pip install tensorflow-cpu") from e
    # TensorFlow only decodes the data: keep it off every GPU so JAX owns them.
    tf.config.set_visible_devices([], "GPU")
    import tensorflow_datasets as tfds
    from absl import logging as absl_logging

    # TFDS's own notes ("Variant folder … has no dataset_info.json") and progress bars would
    # stand before, or instead of, jaxmlp's one line.
    absl_logging.set_verbosity(absl_logging.ERROR)
    tfds.disable_progress_bar()
    return tfds


def _offline_hint(name: str) -> str:
    return (f"Offline? Point `data_dir` or TFDS_DATA_DIR at a folder holding a prepared TFDS "
            f"copy of {name}" + (", or pass `manual_dir` with the four original MNIST .gz files."
                                 if name == "mnist" else "."))


def _check_reachable(name: str, url: str, data_dir: Path, timeout_s: float = 5.0) -> None:
    """Fails fast offline: TFDS would otherwise retry each download for minutes."""
    parsed = urllib.parse.urlparse(url)
    if not parsed.hostname:
        return  # nothing to check; let TFDS try
    try:
        socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout_s).close()
    except OSError as e:
        raise DatasetNotFoundError(
            f"{name} is not prepared in {data_dir} (looked for {data_dir}/{name}/) and its "
            f"download site {parsed.hostname} cannot be reached ({e}). "
            + _offline_hint(name)) from None


def _download_urls(builder) -> list[str]:
    """One URL per host that ``builder`` downloads from.

    From the URLs its checksums register (``url_infos``, a local file): most builders
    (cifar10, svhn_cropped, ...) have no ``URL`` attribute, and TFDS retried their downloads
    for minutes offline (cifar10: 209 s) before failing. ``URL`` is the fallback.
    """
    try:
        urls = list(type(builder).url_infos or ())
    except Exception:  # no checksums registered: nothing to learn here
        urls = []
    hosts: dict = {}
    for url in urls or [getattr(type(builder), "URL", "") or ""]:
        hosts.setdefault(urllib.parse.urlparse(url).hostname, url)
    return [url for host, url in sorted(hosts.items()) if host]


def _builder(tfds, name: str, data_dir: Path):
    try:
        return tfds.builder(name, data_dir=str(data_dir))
    except Exception as e:
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        if "NotFound" in type(e).__name__ or "not found" in str(e):  # name, config, version
            raise DatasetNotFoundError(f"{name} is not a dataset tensorflow-datasets knows "
                                       f"({reason})") from None
        # e.g. a damaged dataset_info.json in the prepared folder
        raise DatasetError(f"tensorflow-datasets could not open {name} in {data_dir} "
                           f"({reason})") from None


def _dataset_info(builder) -> tuple[DatasetInfo, str, str, tuple[str, str]]:
    """``(info, image_key, label_key, (train_split, test_split))`` of a TFDS builder, or
    ``DatasetError`` saying why it is not an image-classification set an MLP can take."""
    name = builder.info.full_name.rsplit("/", 1)[0]  # without the version
    features = builder.info.features
    keys = builder.info.supervised_keys
    if not (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)):
        kinds = lambda kind: [k for k, f in features.items() if type(f).__name__ == kind]
        images, labels = kinds("Image"), kinds("ClassLabel")
        if len(images) != 1 or len(labels) != 1:
            raise DatasetError(f"{name} is not image classification: jaxmlp needs one image "
                               f"feature and one class-label feature, it has {_kinds(features)}")
        keys = (images[0], labels[0])
    image, label = (features[k] if k in features else None for k in keys)
    if type(image).__name__ != "Image":
        raise DatasetError(f"{name} has no image feature ({keys[0]!r} is "
                           f"{type(image).__name__}); its features: {_kinds(features)}")
    if type(label).__name__ != "ClassLabel":
        raise DatasetError(f"{name} has no class-label feature ({keys[1]!r} is "
                           f"{type(label).__name__}); its features: {_kinds(features)}")
    assert image is not None and label is not None  # their kinds were checked above
    shape, dtype = tuple(image.shape), np.dtype(image.np_dtype)
    if dtype != np.uint8:
        raise DatasetError(f"{name} images are {dtype}: jaxmlp takes uint8 images (0-255)")
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise DatasetError(f"{name} images have shape {shape}: an MLP needs one fixed size "
                           "(height, width, channels)")
    splits = set(builder.info.splits.keys()) or {"train", "test"}  # unknown until prepared
    test = next((s for s in _TEST_SPLITS if s in splits), None)
    if "train" not in splits or test is None:
        raise DatasetError(f"{name} needs a train split and a test (or validation) split; it "
                           f"has {', '.join(sorted(splits))}")
    if not isinstance(label.num_classes, int) or label.num_classes < 1:
        raise DatasetError(f"{name}'s class count is not known ({keys[1]!r} has "
                           f"{label.num_classes} classes)")
    return DatasetInfo(name, shape, int(label.num_classes)), keys[0], keys[1], ("train", test)


def _kinds(features) -> str:
    return ", ".join(f"{k} ({type(f).__name__})" for k, f in features.items())


def _prepare(tfds, builder, name: str, data_dir: Path, manual_dir: Optional[Path],
             download: bool) -> None:
    if manual_dir is None and not download:
        raise DatasetNotFoundError(
            f"{name} is not prepared in {data_dir} (looked for {data_dir}/{name}/"
            f"{builder.version}/) and downloading is off. " + _offline_hint(name))
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    if manual_dir is None:
        for url in _download_urls(builder):
            _check_reachable(name, url, data_dir)
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None)
    try:
        builder.download_and_prepare(download_config=config)
    except NonMatchingChecksumError:
        raise DatasetError(
            f"the {name} files in {manual_dir} do not match the originals' checksums that "
            "tensorflow-datasets expects: corrupt, or re-compressed (the bytes inside may "
            "still be right, but TFDS checks the files themselves). Use the files exactly as "
            "downloaded, or a prepared TFDS copy via `data_dir`.") from None
    except Exception as e:  # network down, DNS, HTTP errors: all mean "not obtainable"
        where = f"{manual_dir} (manual files) and " if manual_dir else ""
        raise DatasetNotFoundError(
            f"{name} could not be prepared: looked in {where}{data_dir}, then tried to "
            f"download it and failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            + _offline_hint(name)) from None


def _read_split(tfds, builder, split: str, keys: tuple[str, str], info: DatasetInfo,
                data_dir: Path, held=lambda: "") -> tuple[np.ndarray, np.ndarray]:
    images, labels, failure = [], [], None
    try:
        upright = info.name.split("/")[0] in _TRANSPOSED
        for batch in tfds.as_numpy(builder.as_dataset(split=split).batch(10_000)):
            pixels = np.asarray(batch[keys[0]])
            if upright:
                pixels = np.ascontiguousarray(pixels.transpose(0, 2, 1, 3))
            images.append(pixels.reshape(-1, info.in_dim))
            labels.append(np.asarray(batch[keys[1]], np.int32))
    except Exception as e:  # TensorFlow's "{{function_node …}}" suffix only names its op
        failure = (type(e).__name__, (str(e).splitlines() or [""])[0].split("{{")[0].strip())
    # Raised here, not in the except clause: the error's traceback would keep TensorFlow's
    # iterator alive past _held_stderr, and its destructor logs a warning of its own.
    if failure:
        # A corrupt record's DataLossError may say nothing itself; its reason was logged.
        reason = failure[1][:300] or _logged_reason(held()) or "no reason given"
        raise DatasetError(f"could not read the {info.name} {split} split in {data_dir}: "
                           f"{failure[0]}: {reason}")
    if not images:
        raise DatasetError(f"the {info.name} {split} split in {data_dir} is empty")
    return np.concatenate(images), np.concatenate(labels)


def _load_tfds(name: str, data_dir: Path, manual_dir: Optional[Path], download: bool,
               check) -> tuple[Dataset, Optional[Path]]:
    """The dataset read by TFDS, and its prepared ``dataset_info.json`` (the cache key)."""
    with _held_stderr() as held, _tfds_tempdir():
        tfds = _import_tfds()
        builder = _builder(tfds, name, data_dir)
        # Refuse a dataset jaxmlp (or the caller) cannot use before preparing it.
        check(_dataset_info(builder)[0]._replace(name=name))
        if not builder.is_prepared():
            _prepare(tfds, builder, name, data_dir, manual_dir, download)
        info, image_key, label_key, (train, test) = _dataset_info(builder)  # splits now known
        info = info._replace(name=name)
        arrays = {}
        for ours, split in (("train", train), ("test", test)):
            arrays[f"{ours}_images"], arrays[f"{ours}_labels"] = _read_split(
                tfds, builder, split, (image_key, label_key), info, data_dir, held)
        prepared = Path(builder.data_dir) / "dataset_info.json"
        return Dataset(**arrays, info=info), prepared if prepared.is_file() else None


def read_cache(path: Path, name: str) -> Optional[Dataset]:
    try:
        with np.load(path) as f:
            info = DatasetInfo(name, tuple(int(s) for s in f["image_shape"]),
                               int(f["num_classes"]))
            arrays = {k: f[k] for k in ("train_images", "train_labels", "test_images",
                                        "test_labels")}
        return check_dataset(Dataset(**arrays, info=info))
    except Exception:
        return None  # a damaged cache is rebuilt from the TFDS copy


def write_cache(path: Path, data: Dataset) -> None:
    try:
        save_npz_atomic(path, image_shape=np.asarray(data.info.image_shape),
                        num_classes=np.asarray(data.info.num_classes),
                        **{k: getattr(data, k) for k in ("train_images", "train_labels",
                                                         "test_images", "test_labels")})
    except OSError:
        pass  # a read-only cache folder only costs speed


def _image_array(x, key: str, name: str) -> tuple[np.ndarray, tuple]:
    """``x`` as ``(N, H·W·C)`` uint8 pixels and its ``(H, W, C)``, or ``DatasetError``."""
    x = np.asarray(x)
    if x.ndim not in (3, 4) or len(x) == 0 or (x.ndim == 4 and not 1 <= x.shape[3] <= 4):
        raise DatasetError(f"{name}: {key} must be images (N, H, W) or (N, H, W, C) with N >= 1 "
                           f"and C from 1 to 4, got shape {x.shape}")
    if x.dtype == np.uint8:
        pixels = x
    elif np.issubdtype(x.dtype, np.floating) and x.dtype.itemsize <= 8:
        finite = bool(np.isfinite(x).all())
        if not finite or x.min() < 0 or x.max() > 1:
            got = ("NaN or infinite values" if not finite
                   else f"values in [{x.min():.4g}, {x.max():.4g}]")
            raise DatasetError(f"{name}: {key} holds floats, which must be in [0, 1]; got {got}")
        pixels = np.round(x * 255).astype(np.uint8)
    else:
        raise DatasetError(f"{name}: {key} must be uint8 (0 to 255) or floats in [0, 1], got "
                           f"{x.dtype}")
    shape = tuple(x.shape[1:]) if x.ndim == 4 else (*x.shape[1:], 1)
    return pixels.reshape(len(x), -1), shape


def _label_array(y, key: str, count: int, name: str) -> np.ndarray:
    """``y`` as ``(count,)`` int32 labels from 0, or ``DatasetError``."""
    y = np.asarray(y)
    if y.shape != (count,) or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{name}: {key} must be ({count},) integer labels, one per image, "
                           f"got {y.shape} {y.dtype}")
    if y.min() < 0 or y.max() >= 2 ** 31:
        raise DatasetError(f"{name}: {key} labels must be in [0, 2**31), got values in "
                           f"[{y.min()}, {y.max()}]")
    return y.astype(np.int32)


def _load_npz(name: str, path: Path) -> Dataset:
    """``npz:FILE`` (``name``; ``path`` its file): the arrays ``x_train``, ``y_train``,
    ``x_test``, ``y_test`` of FILE (``np.savez`` or ``np.savez_compressed``; never pickles),
    as ``Dataset.from_arrays``."""
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = {i.filename[:-4]: i.file_size for i in archive.infolist()}
        if sum(sizes.values()) > _MAX_NPZ_BYTES:
            raise DatasetError(f"{path} holds {sum(sizes.values()):,} bytes of arrays, more "
                               f"than the {_MAX_NPZ_BYTES:,} jaxmlp reads")
        missing = [k for k in _NPZ_ARRAYS if k not in sizes]
        if missing:
            raise DatasetError(f"{path} has no {', '.join(missing)}: an npz dataset holds "
                               f"{', '.join(_NPZ_ARRAYS)}")
        with np.load(path, allow_pickle=False) as arrays:
            loaded = [arrays[k] for k in _NPZ_ARRAYS]
    except FileNotFoundError:
        raise DatasetNotFoundError(f"no file at {path} (the dataset {name})") from None
    except IsADirectoryError:
        raise DatasetNotFoundError(f"{path} is a folder, not an .npz file") from None
    except DatasetError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DatasetError(f"{path} is not a readable .npz of arrays ({type(e).__name__}: "
                           f"{str(e)[:120]})") from None
    except Exception:  # a damaged .npy header: numpy's parser raises tokenize's errors too
        raise DatasetError(f"{path} is not a readable .npz of arrays (an array's header is "
                           "damaged)") from None
    return _from_own_arrays(path, f"{NPZ}{path.resolve()}", *loaded)


def _from_own_arrays(where: Path, name: str, *arrays, num_classes=None) -> Dataset:
    """``Dataset.from_arrays`` of an npz's or a folder's arrays, a problem named by the file
    or folder ``where`` they came from, as its other problems are."""
    try:
        return Dataset.from_arrays(*arrays, name=name, num_classes=num_classes)
    except DatasetError as e:
        raise DatasetError(f"{where}: {str(e).removeprefix(f'{name}: ')}") from None


def _load_folder(name: str, root: Path, cache_root: Path, use_cache: bool) -> Dataset:
    """``folder:DIR`` (``name``; ``root`` its folder) as a ``Dataset``; from the cache when
    no file changed since it was decoded (``jaxmlp/_image_folder.py``)."""
    classes, files = _image_folder.listing(root, name)
    cache = cache_root / f"folder-{_image_folder.digest(root, files)}.npz"
    if use_cache and os.path.lexists(cache) and (cached := read_cache(cache, name)) is not None:
        return cached
    arrays = _image_folder.decode(files)
    data = _from_own_arrays(root, name, *arrays["train"], *arrays["test"],
                            num_classes=len(classes))
    if use_cache:
        write_cache(cache, data)
    return data


def load_dataset(name: str = DEFAULT_DATASET, *, data_dir=None, manual_dir=None,
                 download: bool = True, cache_dir=None, use_cache: bool = True,
                 check=lambda info: None) -> Dataset:
    """Loads a TFDS image-classification dataset as uint8 numpy arrays.

    Args:
      name: the TFDS name, with its config where it has several (``"emnist/letters"``); or
        ``"npz:FILE"``, your own arrays ``x_train``, ``y_train``, ``x_test``, ``y_test`` in
        FILE (as ``Dataset.from_arrays`` takes them; the other arguments then do nothing);
        or ``"folder:DIR"``, your own images in ``DIR/train/CLASS/`` and ``DIR/test/CLASS/``
        (``jaxmlp/_image_folder.py``; decoded once, then from ``cache_dir``).
      data_dir: TFDS data folder; defaults to ``default_data_dir()``. When given, it must exist.
      manual_dir: a folder with the dataset's original files (for MNIST, the four
        ``*-ubyte.gz``); TFDS prepares from them instead of downloading.
      download: let TFDS download the dataset when it is not prepared (connected machines).
      cache_dir: where decoded arrays are cached; defaults to ``default_cache_dir()``.
      use_cache: read and write that cache (only for data prepared on disk).
      check: called with the ``DatasetInfo`` as soon as it is known, before the data is
        prepared or read; whatever it raises stops the load (``train`` checks the output
        layer here, so a wrong ``--arch`` is named before a download is tried).

    Returns:
      A checked ``Dataset`` with train and test splits (no validation split: see
      ``with_validation``).

    Raises:
      DatasetNotFoundError: an unknown name, or nothing found where it looked and nothing
        could be obtained.
      DatasetError: the data is corrupt, or not image classification with uint8 images.
    """
    check_name(name)
    own = own_data(name)
    if own:  # your own arrays (no TFDS, no cache: an .npz loads as fast) or images
        if own[0] == NPZ:
            data = _load_npz(name, own[1])
        else:
            data = _load_folder(name, own[1], _cache_root(cache_dir), use_cache)
        check(data.info)
        return data
    for arg, value in (("data_dir", data_dir), ("manual_dir", manual_dir)):
        if value is not None and not str(value).strip():  # Path("") would be "."
            raise ValueError(f"{arg} must name a folder (or be None), got an empty string")
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            what = "is not a folder" if data_dir.exists() else "does not exist"
            raise DatasetNotFoundError(f"`data_dir` {data_dir} {what} (pass a TFDS data "
                                       f"folder that holds {name}/, or omit `data_dir`)")
    else:
        data_dir = default_data_dir(name, cache_dir)
    if manual_dir is not None:
        manual_dir = Path(manual_dir).expanduser()
        if not manual_dir.is_dir():
            raise DatasetNotFoundError(f"`manual_dir` {manual_dir} does not exist")
    cache_root = _cache_root(cache_dir)
    info = _prepared_info(data_dir, name) if use_cache else None
    if info is not None and (cached := read_cache(_cache_path(cache_root, name, info), name)):
        check(cached.info)
        _remember(name, data_dir, cache_dir)
        return cached
    data, prepared = _load_tfds(name, data_dir, manual_dir, download, check)
    check_dataset(data)
    # Written only under the key that the next load looks up: TFDS may have read another
    # folder than the one _prepared_info finds ("emnist" reads emnist/byclass/<version>/;
    # a newer version may sit beside the one TFDS reads), and a cache written where no
    # load looks would be written again, whole, on every run.
    info = _prepared_info(data_dir, name) if use_cache and prepared is not None else None
    if info is not None and prepared is not None and info.resolve() == prepared.resolve():
        write_cache(_cache_path(cache_root, name, info), data)
    if prepared is not None:
        _remember(name, data_dir, cache_dir)
    return data


def _load_mnist(**kwargs) -> Dataset:
    """``load_dataset("mnist", **kwargs)``: the seed's dataset."""
    return load_dataset("mnist", **kwargs)
