"""Your own images as a dataset: ``folder:DIR`` holds ``train/`` and ``test/``, each with one
subfolder of images per class (the layout of Keras's ``image_dataset_from_directory`` and
torchvision's ``ImageFolder``).

Class ``k`` is the ``k``-th of ``train/``'s subfolders in sorted order; ``test/`` may hold
fewer classes, never others. Every image must have one size; they are kept grey (C = 1)
when every file is grey, else as RGB (C = 3; an alpha channel is dropped). Decoded once,
the arrays are cached (``<cache>/folder-<digest>.npz``), keyed by every file's path, size
and modification time, so a changed, added or removed image decodes the folder again.
"""
import hashlib
from pathlib import Path

import numpy as np

from jaxmlp._errors import DatasetError, DatasetNotFoundError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_SPLITS = ("train", "test")
# Bounds that keep a folder's load within memory and time: images, pixels an image, and
# the decoded bytes of all of them (as an npz's arrays).
MAX_IMAGES = 2_000_000
MAX_PIXELS = 4096 * 4096
MAX_BYTES = 8 << 30
_GREY = ("1", "L", "LA", "I", "I;16", "F")


def listing(root: Path, name: str) -> tuple[list[str], dict]:
    """``(classes, {split: [(file, label), …]})`` of the folder dataset ``name`` in ``root``,
    or ``DatasetError`` naming what is wrong."""
    if not root.exists():
        raise DatasetNotFoundError(f"no folder at {root} (the dataset {name})")
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root} is not a folder: a folder dataset is DIR with "
                                   "train/ and test/, one subfolder of images per class")
    for split in _SPLITS:
        if not (root / split).is_dir():
            raise DatasetError(f"{root} has no {split}/ folder: a folder dataset holds train/ "
                               "and test/, each with one subfolder of images per class")
    subfolders = {split: sorted(p.name for p in (root / split).iterdir()
                                if p.is_dir() and not p.name.startswith("."))
                  for split in _SPLITS}
    classes = subfolders["train"]
    if len(classes) < 2:
        raise DatasetError(f"{root / 'train'} holds {len(classes)} class folder(s): a "
                           "classifier needs at least 2, one subfolder of images per class")
    for other in subfolders["test"]:
        if other not in classes:
            raise DatasetError(f"{root / 'test' / other} is not a class of train/ (its "
                               f"classes: {', '.join(classes[:10])}"
                               f"{', …' if len(classes) > 10 else ''})")
    files: dict = {}
    for split in _SPLITS:
        files[split] = []
        for label, cls in enumerate(classes):
            folder = root / split / cls
            if not folder.is_dir():
                continue  # a class the test split does not hold
            found = sorted(p for p in folder.iterdir() if not p.name.startswith(".")
                           and p.suffix.lower() in SUFFIXES and p.is_file())
            if split == "train" and not found:
                raise DatasetError(f"{folder} holds no images ({', '.join(SUFFIXES)})")
            files[split] += [(p, label) for p in found]
            if sum(len(v) for v in files.values()) > MAX_IMAGES:
                raise DatasetError(f"{root} holds more than the {MAX_IMAGES:,} images jaxmlp "
                                   "reads from a folder")
    if not files["test"]:
        raise DatasetError(f"{root / 'test'} holds no images ({', '.join(SUFFIXES)})")
    return classes, files


def digest(root: Path, files: dict) -> str:
    """Every file's place, size and modification time: the cache's key. ``root`` as the
    files were listed from it (relative, or through a link, as given): they are named
    relative to it, and the folder by where it really is."""
    h = hashlib.sha256(str(root.resolve()).encode())
    for split in _SPLITS:
        for path, label in files[split]:
            st = path.stat()
            h.update(f"\0{path.relative_to(root)}\0{label}\0{st.st_size}\0{st.st_mtime_ns}"
                     .encode())
    return h.hexdigest()[:24]


def eight_bit(image):
    """A Pillow ``image`` of 16-bit grey (modes ``I;16…``, and ``I``, as Pillow may read a
    16-bit PNG) as 8-bit ``L``, 0–65535 scaled to 0–255 and rounded: ``convert("L")`` would
    clip every level above 255 to white. Other modes as they are."""
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode == "I":
        grey = np.clip(np.rint(np.asarray(image.convert("I"), np.float64) / 257), 0, 255)
        return Image.fromarray(grey.astype(np.uint8), "L")
    return image


def decode(files: dict) -> dict:
    """The images as ``(N, H, W, C)`` uint8 and labels, each file checked once."""
    from PIL import Image

    headers = []
    for split in _SPLITS:
        for path, _ in files[split]:
            try:
                with Image.open(path) as im:
                    headers.append((path, im.size, im.mode))
            except Exception as e:  # PIL raises many kinds for a file that is not an image
                raise DatasetError(f"{path} is not a readable image ({type(e).__name__})") from None
    (first, size, _), channels = headers[0], 1
    for path, other, mode in headers:
        if other != size:
            raise DatasetError(f"{path} is {other[0]}×{other[1]} pixels, but a folder "
                               f"dataset's images share one size ({size[0]}×{size[1]}, as "
                               f"{first})")
        if mode not in _GREY and not mode.startswith("I;16"):  # I;16B, I;16L too
            channels = 3
    if size[0] * size[1] > MAX_PIXELS:
        raise DatasetError(f"{first} is {size[0]}×{size[1]} pixels, more than the "
                           f"{MAX_PIXELS:,} jaxmlp takes an image")
    if len(headers) * size[0] * size[1] * channels > MAX_BYTES:
        raise DatasetError(f"{len(headers):,} images of {size[0]}×{size[1]}×{channels} are "
                           f"more than the {MAX_BYTES:,} bytes jaxmlp reads from a folder")
    arrays = {}
    for split in _SPLITS:
        images = np.empty((len(files[split]), size[1], size[0], channels), np.uint8)
        for i, (path, _) in enumerate(files[split]):
            try:
                with Image.open(path) as im:
                    pixels = np.asarray(eight_bit(im).convert("L" if channels == 1 else "RGB"))
                images[i] = pixels.reshape(size[1], size[0], channels)
            except Exception as e:
                raise DatasetError(f"{path} is not a readable image ({type(e).__name__})") from None
        arrays[split] = images, np.array([label for _, label in files[split]], np.int32)
    return arrays
