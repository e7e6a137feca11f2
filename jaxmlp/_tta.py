"""Test-time augmentation: a model's class probabilities averaged over each image and N
distortions of it (the records distort at training time only; the speedrun habit,
airbench's flipped and shifted copies among it, also votes over distortions at test time).

    p̄_b = (1 / (N + 1)) · (softmax(f(x_b)) + Σ_{t=1..N} softmax(f(T_{t,b}(x_b))))

``T_{t,b}`` is ``jaxmlp.augment``'s distortion drawn from the key ``fold_in(fold_in(
key(seed), t), b)`` for image ``b`` of the set: each image's distortions depend on its
index and the seed only, never on the chunk it is evaluated in, so the result is the same
for any ``max_bytes``. ``TTA`` holds the three settings, checked once where it is built.
"""
import dataclasses
from functools import partial
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import _checks
from jaxmlp._arch import parse_arch
from jaxmlp._augment import Augmentation, augment, parse_augment
from jaxmlp._images import check_image_shape, check_images, check_range, prepare_images
from jaxmlp._mlp import Params, forward
from jaxmlp._softmax import softmax

MAX_TTA = 1000  # distortions per image are below it: each costs one more pass over the set


# A one-pixel jitter: on simard2003-like nets it adds about 0.1 point at 8 distortions,
# where the training distortions themselves (elastic, alpha=34) cost half a point
# (docs/results.md, "Test-time augmentation").
DEFAULT_AUGMENT = "translation=1"


@dataclasses.dataclass(frozen=True)
class TTA:
    """``n`` distortions of each image (1 to ``MAX_TTA`` - 1), drawn by ``augment`` (an
    ``Augmentation`` or its ``--augment`` text; default ``DEFAULT_AUGMENT``) from ``seed``.
    ``ValueError``/``TypeError`` naming the field when built."""

    n: int
    augment: Union[Augmentation, str] = DEFAULT_AUGMENT
    seed: int = 0

    def __post_init__(self):
        _checks.positive_int(self.n, "TTA n", limit=MAX_TTA)
        _checks.seed(self.seed, "TTA seed")
        if isinstance(self.augment, str):
            object.__setattr__(self, "augment", parse_augment(self.augment))
        elif not isinstance(self.augment, Augmentation):
            raise TypeError(f"TTA augment must be an Augmentation or its text, got "
                            f"{type(self.augment).__name__}")
        if not self.distortion.active:
            raise ValueError("TTA augment distorts nothing: give at least one strength")

    @property
    def distortion(self) -> Augmentation:
        assert isinstance(self.augment, Augmentation)  # (a text became one when built)
        return self.augment

    def record(self) -> dict:
        """What ``eval.json`` keeps of it: ``{"n", "augment", "seed"}``."""
        return {"n": self.n, "augment": self.distortion.spec, "seed": self.seed}


def check_tta(tta) -> None:
    """``TypeError`` unless ``tta`` is a ``TTA`` or None (the evaluators' ``tta``)."""
    if tta is not None and not isinstance(tta, TTA):
        raise TypeError(f"tta must be a jaxmlp.TTA or None, got {type(tta).__name__}")


@partial(jax.jit, static_argnames=("rows", "arch", "aug", "n", "image_shape"))
def _chunk_tta(params, images, root, start, rows, arch, aug, n, image_shape):
    """Mean softmax ``(rows, classes)`` over the rows' images and ``n`` distortions each."""
    x = prepare_images(jax.lax.dynamic_slice_in_dim(images, start, rows),
                       in_dim=params[0]["w"].shape[0])
    index = start + jnp.arange(rows)

    def one(key, image):  # one image's distortion: independent of the chunk it is in
        return augment(key, image.reshape(1, *image_shape), aug).reshape(-1)

    def add(t, total):
        keys = jax.vmap(lambda b: jax.random.fold_in(jax.random.fold_in(root, t), b))(index)
        return total + softmax(forward(params, jax.vmap(one)(keys, x), arch))

    return jax.lax.fori_loop(1, n + 1, add, softmax(forward(params, x, arch))) / (n + 1)


def tta_probabilities(params: Params, images, arch, tta: TTA, *, image_shape,
                      max_bytes: int = 64 * 2**20) -> np.ndarray:
    """``p̄`` of the module docstring for every image: ``(N, classes)``, float32.

    Args:
      params, arch: one model (``load_run``'s).
      images: ``(N, in_dim)`` uint8 or floats in [0, 1].
      tta: how many distortions, which, and their seed.
      image_shape: ``(H, W, C)`` of one image (the distortions act on it).
      max_bytes: activations of one chunk (as ``evaluate``).
    """
    from jaxmlp._metrics import chunks  # (evaluation's chunking: one owner)

    arch = parse_arch(arch)
    _checks.params_fit(params, arch)
    _checks.positive_int(max_bytes, "max_bytes")
    if not isinstance(tta, TTA):
        raise TypeError(f"tta must be a jaxmlp.TTA, got {type(tta).__name__}")
    aug = tta.distortion
    image_shape = check_image_shape(image_shape)
    images = _checks.array(images, "images")
    check_images(images, in_dim=params[0]["w"].shape[0], image_shape=image_shape)
    if isinstance(images, np.ndarray):
        check_range(images)
    images, root = jnp.asarray(images), jax.random.key(tta.seed)
    # A chunk holds its images, a distorted copy and the copy's field (two displacements)
    # beside one pass's activations: a quarter of evaluate's rows keeps it in max_bytes.
    parts = [_chunk_tta(params, images, root, start, rows, arch, aug, tta.n, image_shape)
             for start, rows in chunks(arch, params[0]["w"].shape[0], images.shape[0],
                                       max_bytes // 4)]
    return np.array(jax.device_get(jnp.concatenate(parts)))
