"""Checkpoints: params, optimizer state, step and PRNG key in one ``.npz``, written atomically.

The file holds only arrays (no pickle). Restoring needs a template state of the
same structure, which ``train.py`` rebuilds from the run's config.
"""
import os
import tempfile
from pathlib import Path

import jax
import numpy as np


def save_npz_atomic(path, *arrays, **named) -> None:
    """``np.savez(path, *arrays, **named)``, all or nothing.

    The bytes go to a temporary file in the same folder, are flushed to disk, then
    renamed over ``path``: a crash leaves either the old file or the new one, never a
    torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, *arrays, **named)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_checkpoint(path, state) -> None:
    """Writes the pytree ``state`` to ``path`` atomically (``save_npz_atomic``)."""
    save_npz_atomic(path, *[np.asarray(leaf) for leaf in jax.tree.leaves(state)])


def load_checkpoint(path, template):
    """Reads ``path`` into a pytree shaped like ``template``.

    Raises:
      FileNotFoundError: no checkpoint at ``path``.
      ValueError: the checkpoint does not match the template's structure.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    leaves, treedef = jax.tree.flatten(template)
    with np.load(path) as f:
        saved = [f[f"arr_{i}"] for i in range(len(f.files))]
    if len(saved) != len(leaves):
        raise ValueError(f"checkpoint {path} holds {len(saved)} arrays, expected {len(leaves)}: "
                         "was it written for another architecture or optimizer?")
    for i, (got, want) in enumerate(zip(saved, leaves)):
        if got.shape != np.shape(want) or got.dtype != np.asarray(want).dtype:
            raise ValueError(f"checkpoint {path}: array {i} is {got.shape} {got.dtype}, expected "
                             f"{np.shape(want)} {np.asarray(want).dtype}")
    return jax.tree.unflatten(treedef, saved)
