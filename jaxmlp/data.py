"""MNIST through tensorflow-datasets, loaded once into uint8 numpy arrays.

TensorFlow only reads the data: it is kept off accelerators and out of the training
loop. After the first load the decoded arrays are cached as ``.npz`` (keyed by the
TFDS dataset version and its metadata), so later runs skip TensorFlow entirely.
"""
import hashlib
import os
import socket
import urllib.parse
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from jaxmlp.checkpoint import save_npz_atomic

NUM_CLASSES = 10
IMAGE_PIXELS = 28 * 28
SPLIT_SIZES = {"train": 60_000, "test": 10_000}


class Mnist(NamedTuple):
    """MNIST as numpy arrays: images ``(N, 784)`` uint8 in [0, 255], labels ``(N,)`` int32."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


class MnistNotFoundError(FileNotFoundError):
    """MNIST is neither prepared where we looked nor obtainable (offline, no manual files)."""


class MnistDataError(ValueError):
    """MNIST was found but is corrupt or not what it should be."""


def default_data_dir() -> Path:
    """``$TFDS_DATA_DIR`` if set, else TFDS's own default ``~/tensorflow_datasets``."""
    return Path(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()


def default_cache_dir() -> Path:
    """``$JAXMLP_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxmlp``, else ``~/.cache/jaxmlp``."""
    if os.environ.get("JAXMLP_CACHE_DIR"):
        return Path(os.environ["JAXMLP_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "jaxmlp"


def _prepared_info(data_dir: Path) -> Optional[Path]:
    """The newest prepared ``mnist/<version>/dataset_info.json`` under ``data_dir``."""
    infos = [p for p in data_dir.glob("mnist/*/dataset_info.json")
             if p.parent.name.replace(".", "").isdigit()]
    key = lambda p: tuple(int(v) for v in p.parent.name.split("."))
    return max(infos, key=key) if infos else None


def _cache_path(cache_dir: Path, info: Path) -> Path:
    # Keyed by version and by the metadata TFDS wrote when it prepared the data (split
    # sizes, file checksums): re-preparing or upgrading the data invalidates the cache.
    digest = hashlib.sha256(info.read_bytes()).hexdigest()[:16]
    return cache_dir / f"mnist-{info.parent.name}-{digest}.npz"


def check_dataset(data: Mnist) -> Mnist:
    """Raises ``MnistDataError`` unless ``data`` is usable for training: images ``(N, 784)``
    uint8 beside ``(N,)`` integer labels in ``[0, NUM_CLASSES)``, for both splits (any N).

    Out-of-range labels would otherwise surface only as a NaN loss inside compiled code.
    """
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        if (np.ndim(images) != 2 or np.shape(images)[1] != IMAGE_PIXELS
                or np.asarray(images).dtype != np.uint8 or len(images) == 0):
            raise MnistDataError(f"MNIST {split} images must be (N, {IMAGE_PIXELS}) uint8 with N >= 1, "
                                 f"got {np.shape(images)} {np.asarray(images).dtype}")
        if np.shape(labels) != (len(images),) or not np.issubdtype(np.asarray(labels).dtype,
                                                                   np.integer):
            raise MnistDataError(f"MNIST {split} labels must be ({len(images)},) integers, got "
                                 f"{np.shape(labels)} {np.asarray(labels).dtype}")
        lo, hi = int(np.min(labels)), int(np.max(labels))
        if lo < 0 or hi >= NUM_CLASSES:
            raise MnistDataError(f"MNIST {split} labels outside [0, {NUM_CLASSES}): values in "
                                 f"[{lo}, {hi}]")
    return data


def validate(data: Mnist) -> Mnist:
    """Raises ``MnistDataError`` unless ``data`` is MNIST: ``check_dataset``'s rules, the
    split sizes, and every class present."""
    check_dataset(data)
    for split, size in SPLIT_SIZES.items():
        labels = getattr(data, f"{split}_labels")
        if len(labels) != size:
            raise MnistDataError(f"MNIST {split} split: expected {size} examples, got "
                                 f"{len(labels)}")
        if np.bincount(labels, minlength=NUM_CLASSES).min() == 0:
            raise MnistDataError(f"MNIST {split} labels miss a class: not MNIST")
    return data


def _import_tfds():
    # TensorFlow's C++ start-up notes (oneDNN, CPU features, absl) are noise here.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except ImportError as e:  # pragma: no cover - a broken install
        raise ImportError("tensorflow-datasets needs TensorFlow to read MNIST: "
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



def _check_reachable(url: str, data_dir: Path, timeout_s: float = 5.0) -> None:
    """Fails fast offline: TFDS would otherwise retry each download for minutes."""
    parsed = urllib.parse.urlparse(url)
    if not parsed.hostname:
        return  # nothing to check; let TFDS try
    try:
        socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout_s).close()
    except OSError as e:
        raise MnistNotFoundError(
            f"MNIST is not prepared in {data_dir} (looked for {data_dir}/mnist/) and its "
            f"download site {parsed.hostname} cannot be reached ({e}). Offline? Point "
            "--data-dir or TFDS_DATA_DIR at a prepared TFDS copy, or pass --manual-dir with "
            "the four original MNIST .gz files.") from None


def _load_tfds(data_dir: Path, manual_dir: Optional[Path], download: bool) -> Mnist:
    tfds = _import_tfds()
    builder = tfds.builder("mnist", data_dir=str(data_dir))
    if not builder.is_prepared():
        if manual_dir is None and not download:
            raise MnistNotFoundError(
                f"MNIST is not prepared in {data_dir} (looked for {data_dir}/mnist/"
                f"{builder.version}/) and downloading is off. Point --data-dir or TFDS_DATA_DIR "
                "at a folder holding a prepared TFDS copy, or pass --manual-dir with the four "
                "original MNIST .gz files.")
        from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

        if manual_dir is None:
            _check_reachable(getattr(type(builder), "URL", ""), data_dir)
        config = tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None)
        try:
            builder.download_and_prepare(download_config=config)
        except NonMatchingChecksumError:
            raise MnistDataError(
                f"the MNIST files in {manual_dir} do not match the originals' checksums that "
                "tensorflow-datasets expects: corrupt, or re-compressed (the IDX bytes inside "
                "may still be right, but TFDS checks the .gz files themselves). Use the files "
                "exactly as downloaded, or a prepared TFDS copy via --data-dir.") from None
        except Exception as e:  # network down, DNS, HTTP errors: all mean "not obtainable"
            where = f"{manual_dir} (manual files) and " if manual_dir else ""
            raise MnistNotFoundError(
                f"MNIST could not be prepared: looked in {where}{data_dir}, then tried to "
                f"download it and failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                "Offline? Point --data-dir or TFDS_DATA_DIR at a prepared TFDS copy, or pass "
                "--manual-dir with the four original MNIST .gz files.") from None
    arrays = []
    for split in SPLIT_SIZES:
        try:
            images, labels = tfds.as_numpy(builder.as_dataset(
                split=split, batch_size=-1, as_supervised=True))
        except Exception as e:
            raise MnistDataError(f"could not read the MNIST {split} split in {data_dir}: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
        arrays += [np.asarray(images).reshape(len(images), -1), np.asarray(labels, np.int32)]
    return Mnist(*arrays)


def load_mnist(*, data_dir=None, manual_dir=None, download: bool = True,
               cache_dir=None, use_cache: bool = True) -> Mnist:
    """Loads MNIST as uint8 numpy arrays, preparing it with TFDS on first use.

    Args:
      data_dir: TFDS data folder; defaults to ``default_data_dir()``. When given, it must exist.
      manual_dir: a folder with the four original ``*-ubyte.gz`` files; TFDS prepares
        from them (``DownloadConfig(manual_dir=...)``) instead of downloading.
      download: let TFDS download MNIST when it is not prepared (connected machines).
      cache_dir: where decoded arrays are cached; defaults to ``default_cache_dir()``.
      use_cache: read and write that cache.

    Returns:
      A validated ``Mnist``.

    Raises:
      MnistNotFoundError: nothing found where it looked and nothing could be obtained.
      MnistDataError: the data is corrupt or not MNIST.
    """
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            raise MnistNotFoundError(f"data dir {data_dir} does not exist (pass a TFDS data "
                                     "folder that holds mnist/, or omit --data-dir)")
    else:
        data_dir = default_data_dir()
    if manual_dir is not None:
        manual_dir = Path(manual_dir).expanduser()
        if not manual_dir.is_dir():
            raise MnistNotFoundError(f"manual dir {manual_dir} does not exist")
    cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
    cache = None
    info = _prepared_info(data_dir)
    if use_cache and info is not None:
        cache = _cache_path(cache_root, info)
        if cache.exists():
            try:
                with np.load(cache) as f:
                    return validate(Mnist(**{k: f[k] for k in Mnist._fields}))
            except Exception:
                pass  # a damaged cache is rebuilt from the TFDS copy below
    data = validate(_load_tfds(data_dir, manual_dir, download))
    if use_cache and cache is None and (info := _prepared_info(data_dir)) is not None:
        cache = _cache_path(cache_root, info)  # TFDS has just prepared it
    if cache is not None:
        try:
            save_npz_atomic(cache, **data._asdict())
        except OSError:
            pass  # a read-only cache folder only costs speed
    return data
