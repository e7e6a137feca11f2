"""Distortions of training images on the device: elastic (Simard et al. 2003) and affine.

Pure, jittable and vmappable functions of a PRNG key and a batch ``(B, H, W, C)``. Each
builds a displacement field ``(dy, dx)`` (``(B, H, W)`` each: output pixel ``(i, j)`` reads
the input at ``(i + dy, j + dx)``), and ``resample`` reads the images there, bilinearly,
zero outside. ``augment`` composes both into one field, so an image is resampled once.

The elastic field is Simard's: per-pixel displacements uniform in (−1, 1), smoothed by a
Gaussian of std ``sigma`` (zero outside the image), scaled by ``alpha``. Smoothing is linear,
``G U Gᵀ`` with ``G`` the (H, H) Gaussian matrix, so with ``G = V Λ Vᵀ`` the field is
``V Λ (Vᵀ U V) Λ Vᵀ``; the entries of ``Vᵀ U V`` are uncorrelated with U's variance 1/3.
We draw them directly, uniform in (−1, 1), in the ``k`` leading modes of ``G`` that hold
99.9% of the field's variance (k = 7 of 28 at σ = 4): the same covariance as Simard's field
(up to that 0.1%), from 2k² random numbers instead of 2HW and two k-wide products instead
of H-wide ones. Random-number generation and those products were most of the cost.
"""
import dataclasses
import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import _checks
from jaxmlp._errors import Invalid, WrongType
from jaxmlp._images import MAX_PIXELS

_KEPT_VARIANCE = 0.999


# Each strength's range, the one place it is stated: its largest value (``open``: only
# below it) and unit. Beyond these a distortion is no longer one (a shear of 90° is a line,
# a scale of 1 a point), or its arithmetic leaves what float32 and memory hold: the Gaussian
# of ``sigma`` has 8σ + 1 taps (σ = 1e8 took 12.8 GB), alpha = 1e39 overflows float32. A
# field of 1,000 pixels (alpha 10,000 is 300 times Simard's 34) already moves any image
# jaxmlp trains on out of its frame.
_RANGES = {"alpha": (1e4, False, "pixels"), "sigma": (1e3, False, "pixels"),
           "rotation": (180.0, False, "degrees"), "scale": (1.0, True, "(factors in 1 ± scale)"),
           "shear": (90.0, True, "degrees"), "translation": (1e3, False, "pixels")}
_MIN_SIGMA = 0.01  # pixels: a Gaussian is one tap below 0.125 already; at 0 it divides by 0


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What ``--augment`` sets: elastic ``alpha`` (0: none) and ``sigma`` in pixels; affine
    ``rotation`` and ``shear`` in degrees, ``scale`` as a fraction (each axis its own factor
    in 1 ± scale), ``translation`` in pixels (each axis); each drawn uniformly in ± its
    value, per image. Every value is checked when it is built (``_RANGES``): ``ValueError``
    or ``TypeError`` naming the field."""

    alpha: float = 0.0
    sigma: float = 4.0
    rotation: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    translation: float = 0.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer,
                                                                 np.floating)):
                raise WrongType(f"augment {f.name} must be a number", repr(value))
            top, open_, unit = _RANGES[f.name]
            low = _MIN_SIGMA if f.name == "sigma" else 0
            # Comparisons only: NaN fails them, and an int of 400 digits is never a float.
            if not (low <= value and (value < top if open_ else value <= top)):
                close = ")" if open_ else "]"
                raise Invalid(f"augment {f.name} must be in [{low:g}, {top:g}{close} {unit}",
                               _shown(value))
            object.__setattr__(self, f.name, float(value))

    @property
    def affine(self) -> bool:
        return any((self.rotation, self.scale, self.shear, self.translation))

    @property
    def active(self) -> bool:
        """Whether it distorts at all (every strength 0: the identity)."""
        return bool(self.alpha) or self.affine

    @property
    def spec(self) -> str:
        """The canonical ``--augment`` text: the fields that distort, in field order, each
        value as Python writes it (``sigma`` whenever ``alpha`` is on); ``""`` for none.
        Two spellings of one distortion give one spec (a resume compares them so)."""
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if (self.alpha if f.name == "sigma" else value):  # sigma only shapes alpha's field
                parts.append(f"{f.name}={format_number(value)}")
        return ",".join(parts)


def _shown(value) -> str:
    """A value for a message: ``1e+39``, ``-3``, ``nan``; a huge int by its size."""
    if isinstance(value, (int, np.integer)) and abs(int(value)) > 1e15:
        return _checks._shown(value)
    return f"{float(value):g}"


def format_number(value: float) -> str:
    """``34.0`` → ``"34"``, ``0.15`` → ``"0.15"``: exact (``repr``), without a bare ``.0``."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def parse_augment(spec: str) -> Augmentation:
    """``"alpha=34,sigma=4,rotation=15"`` → ``Augmentation``; ``ValueError`` naming the fault
    (the ranges are ``Augmentation``'s)."""
    if not isinstance(spec, str):
        raise WrongType("augment spec must be a string of NAME=VALUE pairs", repr(spec))
    names = [f.name for f in dataclasses.fields(Augmentation)]
    values = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or name not in names:
            raise Invalid(f"augment takes NAME=VALUE pairs, NAME one of {', '.join(names)}",
                           repr(part))
        if name in values:
            raise Invalid(f"augment sets {name} twice")
        try:
            values[name] = _checks.parse_float(value, f"augment {name}")
        except _checks.TooLarge:
            raise
        except ValueError:
            raise Invalid(f"augment {name} must be a number", repr(value.strip())) from None
    return Augmentation(**values)


def check_image_batch(images, name: str = "images") -> tuple:
    """``images``' shape ``(B, H, W, C)``, each at least 1, else ``ValueError`` naming it."""
    shape = tuple(getattr(images, "shape", ()))
    if not hasattr(images, "shape") or len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"{name} must be a batch (B, H, W, C) of at least one image, got "
                         f"{shape if hasattr(images, 'shape') else type(images).__name__}")
    return shape


_MAX_FIELD = 1 << 26  # displacements of one field (each 4 bytes, two of them): 512 MiB


def _check_field(shape, batch) -> tuple:
    """``(batch, (H, W))`` for a field of ``batch`` images of ``shape`` ``(H, W[, C])``."""
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    try:
        h, w = (int(d) for d in tuple(shape)[:2])
        ok = len(tuple(shape)) in (2, 3) and h >= 1 and w >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"shape must be an image's (H, W) or (H, W, C), got {shape!r}")
    if h * w > MAX_PIXELS or batch * h * w > _MAX_FIELD:  # memory, before any is taken
        raise ValueError(f"a field of {batch} images of {h}x{w} is too large: at most "
                         f"{MAX_PIXELS:,} pixels an image and {_MAX_FIELD:,} in all")
    return int(batch), (h, w)


# --- sampling -------------------------------------------------------------------------


def resample(images: jax.Array, dy: jax.Array, dx: jax.Array) -> jax.Array:
    """``images`` ``(B, H, W, C)`` read at ``(i + dy, j + dx)``, bilinearly, zero outside.

    ``dy, dx`` ``(B, H, W)``. Returns float32. The four neighbours of a point are read in one
    gather, from a copy of the image whose pixel ``(i, j)`` holds its 2×2 block (faster
    than four gathers on CPU). Whole-pixel displacements read exact pixels.
    """
    b, h, w, c = check_image_batch(images)
    if tuple(jnp.shape(dy)) != (b, h, w) or tuple(jnp.shape(dx)) != (b, h, w):
        raise ValueError(f"dy and dx must have shape (B, H, W) = {(b, h, w)}, got "
                         f"{tuple(jnp.shape(dy))} and {tuple(jnp.shape(dx))}")
    # Clipped to one pixel outside: a point beyond it reads the zero border alone.
    y = jnp.clip(jnp.arange(h, dtype=jnp.float32)[:, None] + dy, -1, h)
    x = jnp.clip(jnp.arange(w, dtype=jnp.float32)[None, :] + dx, -1, w)
    y0, x0 = jnp.floor(y), jnp.floor(x)
    wy, wx = y - y0, x - x0
    index = ((y0.astype(jnp.int32) + 1) * (w + 2) + x0.astype(jnp.int32) + 1).reshape(b, -1, 1)

    def channel(image):  # (B, H, W): XLA:CPU is several times slower with a trailing C axis
        padded = jnp.pad(image.astype(jnp.float32), ((0, 0), (1, 2), (1, 2)))
        quads = jnp.stack([padded[:, :-1, :-1], padded[:, :-1, 1:],
                           padded[:, 1:, :-1], padded[:, 1:, 1:]], axis=-1)  # (B, H+2, W+2, 4)
        # mode="clip": every index is in bounds already (the clip above), and XLA:CPU's
        # gather runs a quarter faster without the default's out-of-bounds fill.
        v = jnp.take_along_axis(quads.reshape(b, -1, 4), index, axis=1,
                                mode="clip").reshape(b, h, w, 4)
        return ((1 - wy) * ((1 - wx) * v[..., 0] + wx * v[..., 1])
                + wy * ((1 - wx) * v[..., 2] + wx * v[..., 3]))

    return jnp.stack([channel(images[..., k]) for k in range(c)], axis=-1)


def _uniform(key: jax.Array, shape) -> jax.Array:
    """Uniform in [−1, 1) from a counter-based hash seeded by 64 bits of ``key``.

    The distortions need many numbers per step and no cryptographic quality: threefry
    (``jax.random.uniform``) took half of an augmented epoch's cost on CPU, this hash
    (two rounds of Wellons' ``lowbias32`` over the element's index) a tenth of that. The
    same key gives the same numbers under jit, vmap and any sharding (pure integer maths).
    """
    seed = jax.random.bits(key, (2,), jnp.uint32)

    def mix(v):
        v = (v ^ (v >> 16)) * jnp.uint32(0x7FEB352D)
        v = (v ^ (v >> 15)) * jnp.uint32(0x846CA68B)
        return v ^ (v >> 16)

    bits = mix(mix(jax.lax.iota(jnp.uint32, math.prod(shape)) ^ seed[0]) + seed[1])
    return ((bits >> 8).astype(jnp.float32) * (2.0 / 2 ** 24) - 1.0).reshape(shape)


# --- elastic --------------------------------------------------------------------------


def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """``G[i, j] = g(i − j)``: a Gaussian of std ``sigma``, truncated at 4σ and summing to 1,
    so ``G @ u`` is ``scipy.ndimage.gaussian_filter1d(u, sigma, mode="constant")``."""
    r = int(4 * sigma + 0.5)
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    g /= g.sum()
    d = np.arange(n)[:, None] - np.arange(n)[None, :]
    return np.where(np.abs(d) <= r, g[np.clip(d + r, 0, 2 * r)], 0.0)


@functools.lru_cache(maxsize=None)
def _modes(n: int, sigma: float) -> np.ndarray:
    """``V_k Λ_k`` ``(n, k)``: the leading modes of ``G``, enough for 99.9% of ``G U Gᵀ``'s
    variance (which is ``(Σ λ²)²/3`` over the kept modes, since the field is separable)."""
    lam, v = np.linalg.eigh(_gaussian_matrix(n, sigma))
    order = np.argsort(-np.abs(lam))
    lam, v = lam[order], v[:, order]
    share = np.cumsum(lam ** 2) / np.sum(lam ** 2)
    k = int(np.searchsorted(share, math.sqrt(_KEPT_VARIANCE)) + 1)
    return (v[:, :k] * lam[:k]).astype(np.float32)


def elastic_field(key: jax.Array, batch: int, shape, *, sigma: float, alpha: float):
    """Simard's displacement field, ``(dy, dx)`` ``(batch, H, W)`` each (see the module's
    docstring for how it is drawn)."""
    batch, (h, w) = _check_field(shape, batch)
    Augmentation(alpha=alpha, sigma=sigma)  # their ranges, named
    mh, mw = jnp.asarray(_modes(h, float(sigma))), jnp.asarray(_modes(w, float(sigma)))
    z = _uniform(key, (2, batch, mh.shape[1], mw.shape[1]))
    field = alpha * jnp.einsum("ik,cbkl,jl->cbij", mh, z, mw)
    return field[0], field[1]


def elastic(key: jax.Array, images: jax.Array, *, sigma: float, alpha: float) -> jax.Array:
    """``images`` ``(B, H, W, C)`` under Simard's elastic distortion; float32."""
    check_image_batch(images)
    return resample(images, *elastic_field(key, images.shape[0], images.shape[1:],
                                           sigma=sigma, alpha=alpha))


# --- affine ---------------------------------------------------------------------------


def affine_field(shape, matrix: jax.Array, offset: jax.Array):
    """The field of ``source = c + matrix @ (p − c) + offset`` about the centre ``c``:
    ``matrix`` ``(B, 2, 2)`` and ``offset`` ``(B, 2)`` in (row, column) order."""
    b = int(jnp.shape(matrix)[0]) if jnp.ndim(matrix) == 3 else 0
    _, (h, w) = _check_field(shape, b or 1)
    if tuple(jnp.shape(matrix)) != (b, 2, 2) or tuple(jnp.shape(offset)) != (b, 2) or not b:
        raise ValueError(f"matrix must be (B, 2, 2) and offset (B, 2), got "
                         f"{tuple(jnp.shape(matrix))} and {tuple(jnp.shape(offset))}")
    py = jnp.arange(h, dtype=jnp.float32)[:, None] - (h - 1) / 2  # (H, 1)
    px = jnp.arange(w, dtype=jnp.float32)[None, :] - (w - 1) / 2  # (1, W)
    m, t = matrix[:, :, :, None, None], offset[:, :, None, None]
    return (m[:, 0, 0] * py + m[:, 0, 1] * px + t[:, 0] - py,
            m[:, 1, 0] * py + m[:, 1, 1] * px + t[:, 1] - px)


def _random_affine(key, batch, *, rotation, scale, shear, translation):
    """Per image: rotation and shear in ± degrees, a factor in 1 ± scale per axis, a shift
    in ± translation pixels per axis, all uniform."""
    u = _uniform(key, (6, batch))
    theta, phi = jnp.deg2rad(rotation) * u[0], jnp.deg2rad(shear) * u[1]
    sy, sx = 1 + scale * u[2], 1 + scale * u[3]
    cos, sin, tan = jnp.cos(theta), jnp.sin(theta), jnp.tan(phi)
    rot = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)
    shear_scale = jnp.stack([jnp.stack([sy, tan * sx], -1),
                             jnp.stack([jnp.zeros_like(sx), sx], -1)], -2)
    return rot @ shear_scale, translation * u[4:].T


def affine(key: jax.Array, images: jax.Array, *, rotation: float = 0.0, scale: float = 0.0,
           shear: float = 0.0, translation: float = 0.0) -> jax.Array:
    """``images`` ``(B, H, W, C)`` under a random affine map per image; float32."""
    check_image_batch(images)
    Augmentation(rotation=rotation, scale=scale, shear=shear, translation=translation)
    matrix, offset = _random_affine(key, images.shape[0], rotation=rotation, scale=scale,
                                    shear=shear, translation=translation)
    return resample(images, *affine_field(images.shape[1:], matrix, offset))


# --- both -----------------------------------------------------------------------------


def augment(key: jax.Array, images: jax.Array, aug: Optional[Augmentation]) -> jax.Array:
    """``images`` ``(B, H, W, C)`` under ``aug``'s affine map and elastic field, composed
    into one field and one resampling; float32 (``aug`` None or all zero: the images)."""
    check_image_batch(images)
    if aug is not None and not isinstance(aug, Augmentation):
        raise TypeError(f"aug must be an Augmentation (parse_augment makes one) or None, got "
                        f"{type(aug).__name__}")
    if aug is None or not aug.active:
        return images.astype(jnp.float32)
    b, shape = images.shape[0], images.shape[1:]
    fields = []
    if aug.affine:
        matrix, offset = _random_affine(jax.random.fold_in(key, 0), b, rotation=aug.rotation,
                                        scale=aug.scale, shear=aug.shear,
                                        translation=aug.translation)
        fields.append(affine_field(shape, matrix, offset))
    if aug.alpha:
        fields.append(elastic_field(jax.random.fold_in(key, 1), b, shape, sigma=aug.sigma,
                                    alpha=aug.alpha))
    return resample(images, *(functools.reduce(jnp.add, parts) for parts in zip(*fields)))
