"""Predictions from a trained network, and image files turned into network inputs.

``predict`` gives class probabilities for images in any form ``prepare_images`` takes.
``_load_image`` turns an image file (PNG, JPEG, BMP, GIF, WebP; any size or mode) into a
network input: for MNIST-shaped models (28×28, one channel) a white-on-black digit made the
way MNIST itself was made, for any other image shape a plain resize (see ``_load_image``);
``load_inputs`` reads a list of image and ``.npy`` files into one batch with a name per row;
``top_k`` picks the likeliest classes.
"""
import contextlib
import functools
import os
import warnings
from pathlib import Path

import jax
import numpy as np

from jaxmlp import _checks
from jaxmlp._checks import positive_int
from jaxmlp._arch import parse_arch
from jaxmlp._data import MNIST
from jaxmlp._image_folder import SUFFIXES, eight_bit
from jaxmlp._images import check_image_shape, check_images, image_forms, prepare_images
from jaxmlp._mlp import Params, forward
from jaxmlp._softmax import softmax

_MNIST_SHAPE = MNIST.image_shape  # image files of this shape go through the digit pipeline
_SIDE = _MNIST_SHAPE[0]  # MNIST images are 28×28 ...
_BOX = 20  # ... with the digit scaled into a 20×20 box; the pipeline serves ...
# ... when the dataset is handwriting made the way MNIST was (centred in a 20×20 box):
# not Fashion-MNIST, whose items fill the frame.
_HANDWRITING = ("mnist", "emnist", "kmnist")


def digit_pipeline(info) -> bool:
    """Whether photos for a model of ``info`` (a ``DatasetInfo``) are cut out and centred as
    MNIST digits (``_load_image``'s ``digits``), rather than only resized."""
    return tuple(info.image_shape) == _MNIST_SHAPE and info.name.split("/")[0] in _HANDWRITING
_IMAGE_SUFFIXES = SUFFIXES  # what a folder dataset reads, predict reads
# Image files are read reduced so that their longer side is at most this many pixels: the
# digit ends up 20 px tall, so more detail only costs time and memory (read whole, a
# 108-megapixel JPEG took 12 s and 2.7 GB; reduced, 0.3 s).
_MAX_SIDE = 1600
# The filter that resizes image files for models of other image shapes (``load_image``):
# Lanczos, which Pillow widens to the scale factor when shrinking (anti-aliased).
_RESAMPLE = "LANCZOS"  # a PIL.Image.Resampling name
# Grey levels (of 255) the digit must stand out from the background by.
_INK_LEVEL = 32


@functools.partial(jax.jit, static_argnums=2)
def _probabilities(params: Params, x: jax.Array, arch) -> jax.Array:
    return softmax(forward(params, x, arch))


def predict(params: Params, images, arch, *, chunk_size: int = 4096,
            image_shape=None) -> np.ndarray:
    """Class probabilities ``softmax(forward(params, x, arch))`` for a batch of images.

    Images go through ``prepare_images`` (uint8 scaled by 1/255; floating taken as already
    in [0, 1] and range-checked), ``chunk_size`` rows at a time, so memory stays bounded
    however many images there are. Every chunk has the same shape (the last one is padded),
    so the jitted forward pass compiles once.

    Args:
      params: as from ``init_params`` or a checkpoint; the input width is ``params[0]["w"]``'s
        first dimension.
      images: uint8 or floating, ``(N, in_dim)``; with ``image_shape`` ``(H, W, C)`` also
        ``(N, H, W, C)`` (and ``(N, H, W)`` when ``C`` is 1); without it, for a square
        ``in_dim`` also ``(N, side, side)`` or ``(N, side, side, 1)`` (MNIST: ``(N, 28, 28)``).
      arch: anything ``parse_arch`` accepts.
      chunk_size: rows per jitted call.
      image_shape: the model's ``(height, width, channels)`` (``Run.info.image_shape``);
        it must have ``in_dim`` pixels.

    Returns:
      ``(N, n_classes)`` numpy probabilities, each row summing to 1.

    Raises:
      ValueError, TypeError: naming the argument, before any work: ``params`` that do not
        fit ``arch`` (checked first: a transposed ``w`` is named as such, not as images of
        the wrong width), then as ``prepare_images`` and ``forward`` raise them.
    """
    arch = parse_arch(arch)
    _checks.params_fit(params, arch)
    positive_int(chunk_size, "chunk_size")
    if image_shape is not None:
        check_image_shape(image_shape)
    images = _checks.array(images, "images")
    in_dim = int(np.shape(params[0]["w"])[0])
    # Shape and dtype errors before any work, with the full shape and real dtype in the message.
    check_images(images, in_dim=in_dim, image_shape=image_shape)
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
        x = prepare_images(part, in_dim=in_dim, image_shape=image_shape)
        out.append(np.asarray(_probabilities(params, x, arch))[:m])
    return np.concatenate(out)


def predict_ensemble(params: Params, images, arch, *, chunk_size: int = 4096,
                     image_shape=None) -> np.ndarray:
    """A committee's class probabilities: the mean over its K members of ``predict``'s.

    Args:
      params: the members' params stacked on a leading axis (``Ensemble.params``: each
        ``w`` ``(K, fan_in, units)``, each ``b`` ``(K, units)``).
      images, arch, chunk_size, image_shape: as ``predict`` takes them.

    Returns:
      ``(N, n_classes)`` numpy probabilities, each row summing to 1.
    """
    k = _checks.params_fit(params, parse_arch(arch), stacked=True)
    members = [[{name: leaf[i] for name, leaf in layer.items()} for layer in params]
               for i in range(k)]
    return np.mean([predict(p, images, arch, chunk_size=chunk_size, image_shape=image_shape)
                    for p in members], axis=0)


def top_k(probs, k: int = 3) -> list[list[tuple[int, float]]]:
    """The ``k`` likeliest classes of each row, likeliest first (ties: lower class first).

    Args:
      probs: ``(N, n_classes)`` probabilities, as from ``predict``.
      k: classes per row; at most ``n_classes`` are returned.

    Returns:
      one list per row of ``(class, probability)`` pairs.
    """
    probs = _checks.array(probs, "probs")
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise ValueError(f"probs must have shape (N, n_classes) with n_classes >= 1, got "
                         f"{probs.shape}")
    if not _checks._real_dtype(probs.dtype):
        raise TypeError(f"probs must be numbers, got dtype {probs.dtype}")
    positive_int(k, "k")
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


@contextlib.contextmanager
def _reading(path: Path):
    """Pillow's errors while reading ``path`` as one ``ValueError`` naming it (a missing or
    unreadable file stays ``FileNotFoundError``/``PermissionError``)."""
    from PIL import Image

    try:
        yield
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise ValueError(f"{path}: image too large: over {limit:.0f} megapixels, "
                         "Pillow's limit against decompression bombs") from None
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError... on bad files
        raise ValueError(f"{path}: not a readable image ({e})") from None


def _open(path: Path):
    """``Image.open(path)``, without Pillow's warning above 89 megapixels (such photos are
    read reduced; above twice that Pillow raises ``DecompressionBombError``)."""
    from PIL import Image  # imported here: only reading image files needs Pillow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def _read_gray(path: Path) -> np.ndarray:
    """The image as float64 grey levels in [0, 255], transparency composited away, reduced
    to at most ``_MAX_SIDE`` pixels a side (a JPEG decoded at 1/2 to 1/8 scale already)."""
    scale = 1.0
    with _reading(path), _open(path) as image:
        factor = -(-max(image.size) // _MAX_SIDE)
        if factor > 1:  # JPEG: decode at a reduced scale; other formats ignore it
            image.draft(None, (image.width // factor, image.height // factor))
        if image.mode.startswith("I;16") or image.mode == "I":
            # 16-bit grey (Pillow may call it "I"): convert("L") would clip at 255
            # instead of scaling 0-65535 down.
            image, scale = image.convert("I"), 1 / 257
        elif _has_alpha(image):
            image = image.convert("RGBA").convert("LA")
        else:
            image = image.convert("L")
        factor = -(-max(image.size) // _MAX_SIDE)
        if factor > 1:  # box averages, over premultiplied alpha for "LA"
            image = image.reduce(factor)
        la = np.clip(np.asarray(image, np.float64) * scale, 0, 255)
    if la.ndim == 2:
        return la
    gray, alpha = la[..., 0], la[..., 1] / 255.0
    return alpha * gray + (1 - alpha) * _backdrop(gray, alpha)


def _has_alpha(image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def _read_resized(path: Path, image_shape: tuple[int, int, int]) -> np.ndarray:
    """The image as uint8 ``(H, W, C)``, ``C`` 1 (grey) or 3 (RGB): see ``_load_image``."""
    from PIL import Image, ImageOps

    h, w, c = image_shape
    mode = "L" if c == 1 else "RGB"
    with _reading(path), _open(path) as image:
        # JPEG: decode at a reduced scale that keeps at least 4× the target's pixels a side
        # (either way round: the EXIF orientation may swap them); other formats ignore it.
        image.draft(None, (4 * max(h, w), 4 * max(h, w)))
        try:
            image = ImageOps.exif_transpose(image)
        except Exception:  # EXIF that Pillow cannot parse: the pixels are still fine
            image.load()
        image = eight_bit(image)  # 16-bit grey: scaled, not clipped
        if _has_alpha(image):  # transparent pixels composited onto white
            rgba = image.convert("RGBA")
            image = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image.alpha_composite(rgba)
        image = image.convert(mode).resize((w, h), Image.Resampling[_RESAMPLE])
        pixels = np.asarray(image, np.uint8)
    return pixels.reshape(h, w, c)


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


def _border_ring(a: np.ndarray) -> np.ndarray:
    """The outer ring of pixels, each once."""
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])


def _pieces(gray: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Where the digit's ink is at ``level``, and where ink touches the image's edge.

    Pixels above ``level`` form connected pieces. Those touching the edge (a table edge, a
    shadow, a dark corner) are dropped when others remain (else the digit itself touches
    the edge), and so are specks (noise where uneven light nears the level, dust) under 1/20
    of the largest piece's area.
    """
    from scipy import ndimage

    labels, _ = ndimage.label(gray > level)
    sizes = np.bincount(labels.ravel())  # pixels per piece; label 0 is the background
    sizes[0] = 0
    at_edge = np.zeros(len(sizes), bool)
    at_edge[_border_ring(labels)] = True
    at_edge[0] = False
    if (inner := np.where(at_edge, 0, sizes)).any():
        sizes = inner
    return (sizes >= sizes.max() / 20)[labels], at_edge[labels]


def _cut_out(gray: np.ndarray, path: Path, inverted: bool) -> np.ndarray:
    """The digit of a white-on-black page, cropped to its ink: background 0, ink up to 255.

    Made for photos: the background is the median grey (most pixels are paper, however
    unevenly lit); ink stands more than halfway from it to the brightest pixel not in ink
    at the image's edge (see ``_pieces``). In the crop, pixels farther than half a pixel of
    the 20-px box from the ink are zeroed, so that unevenly lit paper there is not read as
    faint strokes.
    """
    from scipy import ndimage

    background, peak = float(np.median(gray)), float(gray.max())
    if peak - background < _INK_LEVEL:
        hint = ("inverted; do not invert it: --no-invert, or invert=False" if inverted
                else "not inverted; invert it: --invert, or invert=True")
        raise ValueError(f"{path}: no digit brighter than the background ({hint})")
    rim = 2 * max(1, max(gray.shape) // 200) + 1  # the blurred rims of pieces at the edge
    ink, edge = _pieces(gray, (background + peak) / 2)
    while True:
        # Was the brightest pixel in ink at the edge (a black table, dark corners)? Then
        # halfway to the brightest elsewhere instead, so that faint strokes (pencil) count
        # as on a clean page, if that finds ink clear of the edge, holding the ink found
        # clear of it before (the digit did not merge into the table), and not mere specks.
        top = float(gray[~ndimage.maximum_filter(edge, size=rim)].max(initial=background))
        if not background + _INK_LEVEL <= top < peak:
            break
        again, again_edge = _pieces(gray, (background + top) / 2)
        if ((again & again_edge).any() or not again[ink & ~edge].all()
                or again.sum() < ink.sum() / 20):
            break
        ink, edge, peak = again, again_edge, top
    rows, cols = np.nonzero(ink)
    box = np.s_[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    ink, crop = ink[box], gray[box]
    reach = max(1, round(max(crop.shape) / (2 * _BOX)))
    near = ndimage.maximum_filter(ink, size=2 * reach + 1)
    # Background to 0 and the digit's ink to 255, as in MNIST: its 90th percentile, not its
    # maximum, so that one noisy or darker spot does not dim the whole stroke.
    full = np.percentile(crop[ink], 90)
    return np.clip((crop - background) / (full - background) * 255.0, 0, 255) * near


def _normalise(digit: np.ndarray) -> np.ndarray:
    """MNIST's own normalisation of a cropped white-on-black digit of any size into 28×28.

    MNIST was made this way (LeCun et al.): each NIST digit was scaled, keeping its aspect
    ratio, to fit a 20×20 box (anti-aliased, hence grey levels), then placed in a 28×28
    field with its centre of mass at the centre.
    """
    from PIL import Image

    h, w = digit.shape
    scale = _BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Float mode ("F") keeps the resampling free of 8-bit rounding. Bilinear, which Pillow
    # widens to the scale factor when shrinking, anti-aliases like an area average, without
    # the ringing a Lanczos filter leaves around sharp strokes.
    small = np.asarray(Image.fromarray(digit.astype(np.float32), mode="F").resize(
        size, Image.Resampling.BILINEAR), np.float64)
    small = np.clip(small, 0, 255)  # float round-off only: the filter has no negative lobes
    h, w = small.shape
    total = small.sum()
    cy = (small.sum(axis=1) @ np.arange(h)) / total
    cx = (small.sum(axis=0) @ np.arange(w)) / total
    # Move the centre of mass onto pixel (14, 14), staying inside the field.
    top = int(np.clip(round(_SIDE / 2 - cy), 0, _SIDE - h))
    left = int(np.clip(round(_SIDE / 2 - cx), 0, _SIDE - w))
    field = np.zeros((_SIDE, _SIDE))
    field[top:top + h, left:left + w] = small
    return field


def _load_image(path, *, invert: bool | None = None, image_shape=_MNIST_SHAPE,
               digits: bool | None = None) -> np.ndarray:
    """An image file (PNG, JPEG, BMP, GIF, WebP) as one input of a model taking
    ``image_shape`` images.

    With ``digits`` (by default: for ``image_shape`` ``(28, 28, 1)``; ``digit_pipeline``
    says it for a dataset: MNIST, EMNIST, KMNIST, not Fashion-MNIST) an MNIST image: 28×28
    grey levels, white digit on black. Steps: grey levels (any mode; transparent pixels
    composited onto a backdrop that contrasts with the drawing, see
    ``_backdrop``; images over ``_MAX_SIDE`` pixels a side read reduced); inversion when the
    digit is dark on a light background; then, unless the image is already 28×28 (taken as
    MNIST-formatted, as is), the digit cut out (see ``_cut_out``: background subtracted,
    ink at the image's edge ignored, contrast stretched to 255) and MNIST's normalisation
    (see ``_normalise``: scaled into 20×20 and centred by mass).

    Otherwise, for any ``(H, W, C)``, a plain conversion: the image turned upright by its EXIF
    orientation, converted to grey (``C`` 1) or RGB (``C`` 3) by Pillow (transparent pixels
    composited onto white, 16-bit grey scaled to 8 bits), and resized to W×H with a
    Lanczos filter (``_RESAMPLE``; anti-aliased when shrinking), stretched if its aspect
    ratio differs: nothing is cropped, and nothing is inverted unless ``invert`` is True.

    Args:
      path: the image file.
      invert: for MNIST-shaped models, ``None`` inverts when the median grey (the
        background: most of the pixels) is nearer the image's brightest pixel than its
        darkest, i.e. the digit is dark on light paper; ``True``/``False`` force it. For
        other shapes only ``True`` inverts (255 − x), after resizing.
      image_shape: the model's ``(height, width, channels)``; image files can be read for
        1 or 3 channels.
      digits: the digit pipeline (only for ``(28, 28, 1)``) or the plain conversion; ``None``
        takes the digit pipeline exactly for ``(28, 28, 1)``.

    Returns:
      uint8 ``(H·W·C,)``, row-major, channels last (MNIST: ``(784,)``).

    Raises:
      FileNotFoundError: no such file.
      ValueError: not a readable image, one over Pillow's decompression-bomb limit (twice
        ``PIL.Image.MAX_IMAGE_PIXELS``, about 179 megapixels); for MNIST-shaped models also a
        blank one, or (other than 28×28) one without a digit brighter than its background
        once inverted or not; the message names the file. Also an ``image_shape`` that is
        not 1 or 3 channels.
    """
    image_shape = check_image_shape(image_shape)
    digits = image_shape == _MNIST_SHAPE if digits is None else digits
    if digits and image_shape != _MNIST_SHAPE:
        raise ValueError(f"digits=True: the digit pipeline makes (28, 28, 1) images, not "
                         f"{image_shape}")
    if not digits:
        if image_shape[2] not in (1, 3):
            raise ValueError(f"image files can be read for models of 1 or 3 channels, this one "
                             f"takes {image_shape[2]} {image_shape}: pass .npy arrays instead")
        pixels = _read_resized(_existing_file(path), image_shape)
        return (255 - pixels if invert else pixels).reshape(-1)
    path = _existing_file(path)
    gray = _read_gray(path)
    lo, median, hi = (float(v) for v in np.percentile(gray, [0, 50, 100]))
    if hi - lo < _INK_LEVEL:
        raise ValueError(f"{path}: blank image, no digit found (all pixels within "
                         f"{_INK_LEVEL} grey levels of each other)")
    if invert is None:
        # Not the border's brightness: vignetting, shadows and table edges darken a photo's
        # border, while the background, most of the pixels, sets the median.
        invert = hi - median < median - lo
    if invert:
        gray = 255.0 - gray
    if gray.shape != (_SIDE, _SIDE):
        gray = _normalise(_cut_out(gray, path, invert))
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8).reshape(_SIDE * _SIDE)


def _load_npy(path: Path, invert: bool | None = None,
              image_shape=_MNIST_SHAPE) -> tuple[np.ndarray, list[str]]:
    """The images a ``.npy`` holds, as float32 ``(N, in_dim)`` in [0, 1], named ``path[i]``.

    Arrays are taken as already in the model's format: only ``invert=True`` changes them,
    to 255 − x (uint8) or 1 − x (floating); ``None`` and ``False`` leave them as they are.
    """
    try:
        array = np.load(path, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as e:  # truncated, not .npy, or pickled objects
        why = str(e) if isinstance(e, (ValueError, OSError)) else "its header is damaged"
        if "pickle" in why:  # numpy takes what lacks its magic for a pickle: say which it is
            with open(path, "rb") as f:
                why = ("it holds Python objects, which are not read" if f.read(6) == b"\x93NUMPY"
                       else "not NumPy's .npy format")
        raise ValueError(f"{path}: not a readable .npy array ({why})") from None
    if not isinstance(array, np.ndarray):  # np.load reads a zip by its content, not its name
        array.close()
        raise ValueError(f"{path}: an .npz archive, not a .npy array")
    single = array.shape in image_forms(image_shape=image_shape)[1]
    batch = array[None] if single else array
    try:
        # First: inverting needs a dtype whose scale is known.
        check_images(batch, image_shape=image_shape)
        images = np.asarray(prepare_images(255 - batch if invert and batch.dtype == np.uint8
                                           else batch, image_shape=image_shape))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None
    if invert and batch.dtype != np.uint8:  # floating: after its range check, on its values
        images = 1 - images
    names = [str(path)] if single else [f"{path}[{i}]" for i in range(len(images))]
    return images, names


def _paths(paths) -> list:
    """``paths`` as a list: one path (a string or ``os.PathLike``) or an iterable of them;
    ``TypeError`` naming ``paths`` otherwise (None, a number, bytes, an empty name)."""
    one = lambda p: isinstance(p, (str, os.PathLike))  # noqa: E731
    if one(paths):
        items = [paths]
    elif isinstance(paths, (bytes, bytearray)) or not hasattr(paths, "__iter__"):
        raise TypeError(f"paths must be a file path or a list of them, got "
                        f"{type(paths).__name__}")
    else:
        items = list(paths)
    for p in items:
        if not one(p):
            raise TypeError(f"paths must be file paths (str or pathlib.Path), got "
                            f"{type(p).__name__} {p!r}")
        if not str(p) or "\0" in str(p):
            raise ValueError(f"paths must be file paths, got {str(p)!r}")
    return items


def load_inputs(paths, *, invert: bool | None = None, image_shape=_MNIST_SHAPE,
                digits: bool | None = None) -> tuple[np.ndarray, list[str]]:
    """Reads image files (PNG, JPEG, BMP, GIF, WebP) and ``.npy`` arrays into one batch,
    naming every row.

    Args:
      paths: files. A ``.png``/``.jpg``/``.jpeg`` gives one row (``_load_image``), named by
        its path. A ``.npy`` gives the images it holds, for ``image_shape`` ``(H, W, C)``:
        ``(N, H, W, C)``, ``(N, H·W·C)``, ``(N, H, W)`` when ``C`` is 1, or one image
        ``(H, W, C)``/``(H·W·C,)``/``(H, W)`` (MNIST: ``(N, 28, 28)``, ``(N, 28, 28, 1)``,
        ``(N, 784)``, ``(28, 28)``, ``(28, 28, 1)``, ``(784,)``); uint8, or floating in
        [0, 1]; rows named ``path[i]`` (a single image: ``path``). Read without pickle.
      invert: passed to ``_load_image``. ``.npy`` images are taken as already in the model's
        format, so ``None`` leaves them as they are; ``True`` inverts them too (255 − x for
        uint8, 1 − x for floating), ``False`` never.
      image_shape: the model's ``(height, width, channels)`` (``Run.info.image_shape``);
        MNIST's by default.
      digits: passed to ``_load_image`` (``digit_pipeline(run.info)`` for a run).

    Returns:
      ``(images, names)``: float32 ``(N, H·W·C)`` in [0, 1] and one name per row.

    Raises:
      FileNotFoundError: a missing file.
      ValueError: an unknown extension, a corrupt or truncated file, a wrong shape, dtype
        or range, or a blank image; each message names the file.
    """
    image_shape = check_image_shape(image_shape)
    _checks.flag(invert, "invert", none=True)
    _checks.flag(digits, "digits", none=True)
    paths = _paths(paths)
    if not paths:
        raise ValueError("no input files given (paths is empty)")
    blocks, names = [], []
    for path in map(Path, paths):
        suffix = path.suffix.lower()
        _existing_file(path)
        if suffix == ".npy":
            images, block_names = _load_npy(path, invert, image_shape)
        elif suffix in _IMAGE_SUFFIXES:
            images = _load_image(path, invert=invert, image_shape=image_shape,
                                digits=digits)[None].astype(
                np.float32) / np.float32(255)
            block_names = [str(path)]
        else:
            raise ValueError(f"{path}: unknown file type {suffix or '(no extension)'!r}; "
                             f"expected {', '.join(_IMAGE_SUFFIXES)} or .npy")
        blocks.append(images)
        names.extend(block_names)
    return np.concatenate(blocks), names
