"""Predictions from a trained network, and image files turned into MNIST-format inputs.

``predict`` gives class probabilities for images in any form ``prepare_images`` takes.
``load_image`` turns a PNG or JPEG (any size or mode) into a 28×28 white-on-black digit the
way MNIST itself was made; ``load_inputs`` reads a list of PNG/JPEG/``.npy`` files into one
batch with a name per row; ``top_k`` picks the likeliest classes.
"""
import functools
from pathlib import Path

import jax
import numpy as np

from jaxmlp.arch import parse_arch
from jaxmlp.images import prepare_images
from jaxmlp.mlp import Params, forward
from jaxmlp.softmax import softmax

SIDE = 28  # MNIST images are 28×28 ...
BOX = 20  # ... with the digit scaled into a 20×20 box
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Grey levels (of 255) a pixel must stand above the background to count as ink.
_INK_LEVEL = 32


@functools.partial(jax.jit, static_argnums=2)
def _probabilities(params: Params, x: jax.Array, arch) -> jax.Array:
    return softmax(forward(params, x, arch))


def predict(params: Params, images, arch, *, chunk_size: int = 4096) -> np.ndarray:
    """Class probabilities ``softmax(forward(params, x, arch))`` for a batch of images.

    Images go through ``prepare_images`` (uint8 scaled by 1/255; floating taken as already
    in [0, 1] and range-checked), ``chunk_size`` rows at a time, so memory stays bounded
    however many images there are. Every chunk has the same shape (the last one is padded),
    so the jitted forward pass compiles once.

    Args:
      params: as from ``init_params`` or a checkpoint; the input width is ``params[0]["w"]``'s
        first dimension.
      images: uint8 or floating, ``(N, in_dim)``, ``(N, 28, 28)`` or ``(N, 28, 28, 1)``.
      arch: anything ``parse_arch`` accepts.
      chunk_size: rows per jitted call.

    Returns:
      ``(N, n_classes)`` numpy probabilities, each row summing to 1.

    Raises:
      ValueError, TypeError: as ``prepare_images`` and ``forward`` raise them.
    """
    arch = parse_arch(arch)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if not hasattr(images, "shape"):
        images = np.asarray(images)
    in_dim = int(np.shape(params[0]["w"])[0])
    # Shape and dtype errors before any work, with the full shape in the message.
    jax.eval_shape(functools.partial(prepare_images, in_dim=in_dim),
                   jax.ShapeDtypeStruct(images.shape, images.dtype))
    n = images.shape[0]
    rows = min(n, chunk_size)
    out = []
    for start in range(0, n, rows):
        part = np.asarray(images[start:start + rows])
        m = part.shape[0]
        if m < rows:  # repeats of the last image: no values that are not the caller's
            part = np.concatenate([part, np.repeat(part[-1:], rows - m, axis=0)])
        # Eager, so the range of floating pixels is checked on concrete values (the error
        # then reports this chunk's range).
        x = prepare_images(part, in_dim=in_dim)
        out.append(np.asarray(_probabilities(params, x, arch))[:m])
    return np.concatenate(out)


def top_k(probs, k: int = 3) -> list[list[tuple[int, float]]]:
    """The ``k`` likeliest classes of each row, likeliest first (ties: lower class first).

    Args:
      probs: ``(N, n_classes)`` probabilities, as from ``predict``.
      k: classes per row; at most ``n_classes`` are returned.

    Returns:
      one list per row of ``(class, probability)`` pairs.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must have shape (N, n_classes), got {probs.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(int(c), float(row[c])) for c in idx] for row, idx in zip(probs, order)]


def _existing_file(path) -> Path:
    """``path`` as a ``Path``, or FileNotFoundError / ValueError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    return path


def _read_gray(path: Path) -> np.ndarray:
    """The image as float64 grey levels in [0, 255], transparency composited away."""
    from PIL import Image  # imported here: only reading image files needs Pillow

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode.startswith("I;16") or image.mode == "I":
                # 16-bit grey (Pillow may call it "I"): convert("L") would clip at 255
                # instead of scaling 0-65535 down.
                return np.clip(np.asarray(image, np.float64) / 257.0, 0, 255)
            has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
            la = np.asarray(image.convert("RGBA" if has_alpha else "L").convert(
                "LA" if has_alpha else "L"), np.float64)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError... on bad files
        raise ValueError(f"{path}: not a readable PNG/JPEG image ({e})") from None
    if not has_alpha:
        return la
    gray, alpha = la[..., 0], la[..., 1] / 255.0
    return alpha * gray + (1 - alpha) * _backdrop(gray, alpha)


def _backdrop(gray: np.ndarray, alpha: np.ndarray) -> float:
    """The grey (0 or 255) to composite transparent pixels onto.

    If the opaque pixels cover less than half the image, they are the digit drawn on a
    transparent canvas: the backdrop contrasts with them (dark ink → white paper). If they
    cover more, they hold the background too, and the backdrop matches their mean.
    """
    coverage = float(alpha.mean())
    if coverage == 0:
        return 0.0
    mean = float((alpha * gray).sum() / alpha.sum())
    dark = mean < 127.5
    return 255.0 if dark == (coverage < 0.5) else 0.0


def _border_ring(gray: np.ndarray) -> np.ndarray:
    """The outer ring of pixels, each once."""
    return np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])


def _normalise(ink: np.ndarray) -> np.ndarray:
    """MNIST's own normalisation of a white-on-black digit of any size into 28×28.

    MNIST was made this way (LeCun et al.): each NIST digit was scaled, keeping its aspect
    ratio, to fit a 20×20 box (anti-aliased, hence grey levels), then placed in a 28×28
    field with its centre of mass at the centre.
    """
    from PIL import Image

    rows, cols = np.nonzero(ink >= _INK_LEVEL)
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Float mode ("F") keeps the resampling free of 8-bit rounding. Bilinear, which Pillow
    # widens to the scale factor when shrinking, anti-aliases like an area average, without
    # the ringing a Lanczos filter leaves around sharp strokes.
    small = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize(
        size, Image.Resampling.BILINEAR), np.float64)
    small = np.clip(small, 0, 255)  # float round-off only: the filter has no negative lobes
    h, w = small.shape
    total = small.sum()
    cy = (small.sum(axis=1) @ np.arange(h)) / total
    cx = (small.sum(axis=0) @ np.arange(w)) / total
    # Move the centre of mass onto pixel (14, 14), staying inside the field.
    top = int(np.clip(round(SIDE / 2 - cy), 0, SIDE - h))
    left = int(np.clip(round(SIDE / 2 - cx), 0, SIDE - w))
    field = np.zeros((SIDE, SIDE))
    field[top:top + h, left:left + w] = small
    return field


def load_image(path, *, invert: bool | None = None) -> np.ndarray:
    """A PNG or JPEG digit as an MNIST image: 28×28 grey levels, white digit on black.

    Steps: grey levels (any mode; transparent pixels composited onto a backdrop that
    contrasts with the drawing, see ``_backdrop``); inversion when the digit is dark on a
    light background; then, unless the image is already 28×28 (taken as MNIST-formatted,
    as is), MNIST's normalisation (see ``_normalise``): background subtracted, contrast
    stretched to 255, the ink's bounding box scaled into 20×20 and centred by mass.

    Args:
      path: the image file.
      invert: ``None`` inverts when the border (the outer ring of pixels) is on average
        brighter than mid-grey (a dark digit on light paper); ``True``/``False`` force it.

    Returns:
      uint8 ``(784,)``, row-major.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not a readable image, a blank one, or (other than 28×28) one without
        a digit brighter than its background once inverted or not; the message names the file.
    """
    path = _existing_file(path)
    gray = _read_gray(path)
    if gray.max() - gray.min() < _INK_LEVEL:
        raise ValueError(f"{path}: blank image, no digit found (all pixels within "
                         f"{_INK_LEVEL} grey levels of each other)")
    if invert is None:
        invert = float(_border_ring(gray).mean()) > 127.5
    if invert:
        gray = 255.0 - gray
    if gray.shape != (SIDE, SIDE):
        background = float(np.median(_border_ring(gray)))
        if gray.max() - background < _INK_LEVEL:
            raise ValueError(f"{path}: no digit brighter than the background "
                             f"({'inverted' if invert else 'not inverted'}; try invert={not invert})")
        # Background to 0, brightest ink to 255, as in MNIST.
        gray = _normalise(np.clip((gray - background) / (gray.max() - background) * 255.0, 0, 255))
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8).reshape(SIDE * SIDE)


def _load_npy(path: Path) -> tuple[np.ndarray, list[str]]:
    """The images a ``.npy`` holds, as float32 ``(N, 784)`` in [0, 1], named ``path[i]``."""
    try:
        array = np.load(path, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as e:  # truncated, not .npy, or pickled objects
        raise ValueError(f"{path}: not a readable .npy array ({e})") from None
    if not isinstance(array, np.ndarray):  # np.load reads a zip by its content, not its name
        array.close()
        raise ValueError(f"{path}: an .npz archive, not a .npy array")
    single = array.shape in ((SIDE, SIDE), (SIDE * SIDE,))
    try:
        images = np.asarray(prepare_images(array[None] if single else array))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None
    names = [str(path)] if single else [f"{path}[{i}]" for i in range(len(images))]
    return images, names


def load_inputs(paths, *, invert: bool | None = None) -> tuple[np.ndarray, list[str]]:
    """Reads PNG/JPEG images and ``.npy`` arrays into one batch, naming every row.

    Args:
      paths: files. A ``.png``/``.jpg``/``.jpeg`` gives one row (``load_image``), named by
        its path. A ``.npy`` gives the images it holds: ``(N, 28, 28)``, ``(N, 28, 28, 1)``,
        ``(N, 784)``, or one image ``(28, 28)``/``(784,)``; uint8, or floating in [0, 1];
        rows named ``path[i]`` (a single image: ``path``). Read without pickle.
      invert: passed to ``load_image``; ``.npy`` images are taken as they are.

    Returns:
      ``(images, names)``: float32 ``(N, 784)`` in [0, 1] and one name per row.

    Raises:
      FileNotFoundError: a missing file.
      ValueError: an unknown extension, a corrupt or truncated file, a wrong shape, dtype
        or range, or a blank image; each message names the file.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ValueError("no input files given")
    blocks, names = [], []
    for path in map(Path, paths):
        suffix = path.suffix.lower()
        _existing_file(path)
        if suffix == ".npy":
            images, block_names = _load_npy(path)
        elif suffix in IMAGE_SUFFIXES:
            images = load_image(path, invert=invert)[None].astype(np.float32) / np.float32(255)
            block_names = [str(path)]
        else:
            raise ValueError(f"{path}: unknown file type {suffix or '(no extension)'!r}; "
                             f"expected .png, .jpg, .jpeg or .npy")
        blocks.append(images)
        names.extend(block_names)
    return np.concatenate(blocks), names
