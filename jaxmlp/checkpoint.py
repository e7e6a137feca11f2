"""Pytrees of arrays in ``.npz`` files: written atomically, arrays under readable names.

The files hold only arrays (never pickles): ``params/0/w``, ``opt_state/0/trace/0/b``,
``step``. Restoring needs a template pytree of the same structure, which ``run.py``
rebuilds from the run's config.
"""
import os
import tempfile
from pathlib import Path

import jax
import numpy as np


def _write_atomic(path, write) -> None:
    """Calls ``write(f)`` on a binary file that becomes ``path`` all or nothing.

    The bytes go to a temporary file in the same folder, are flushed to disk, then
    renamed over ``path``: a crash leaves either the old file or the new one, never a
    torn one, and a failed write leaves no temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _save_npz_atomic(path, *arrays, **named) -> None:
    """``np.savez(path, *arrays, **named)``, all or nothing (``_write_atomic``)."""
    _write_atomic(path, lambda f: np.savez(f, *arrays, **named))


def _name(path) -> str:
    """``(DictKey('params'), SequenceKey(0), DictKey('w'))`` → ``"params/0/w"``."""
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):  # DictKey, SequenceKey/FlattenedIndexKey, GetAttrKey
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
    return "/".join(parts)


def _named_leaves(tree) -> dict[str, np.ndarray]:
    """The pytree's leaves as numpy arrays under readable names (``params/0/w``, ``step``)."""
    return {_name(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _save_checkpoint(path, state) -> None:
    """Writes the pytree ``state`` to ``path`` atomically, each leaf under its name."""
    _save_npz_atomic(path, **_named_leaves(state))


def _read_npz(path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (never unpickling), or one clear error naming the file.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: the file is truncated, corrupt, or not an ``.npz`` of plain arrays.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no file at {path}")
    if not path.is_file():  # a FIFO would block np.load forever
        raise ValueError(f"{path} is not a regular file")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as e:  # BadZipFile, EOFError, zlib.error, pickled data refused, ...
        # numpy reads stray bytes as a pickle and suggests allow_pickle: never the cure here.
        reason = ("its contents are not plain arrays" if "pickle" in str(e)
                  else str(e).splitlines()[0][:120] if str(e) else type(e).__name__)
        raise ValueError(f"{path} is not a readable .npz of arrays ({reason}): truncated, "
                         "corrupt, or not written by jaxmlp") from None


def _load_checkpoint(path, template):
    """Reads ``path`` into a pytree shaped like ``template``, matching arrays by name.

    Raises:
      FileNotFoundError: no checkpoint at ``path``.
      ValueError: the file is unreadable, or does not fit the template (names, shapes, dtypes).
    """
    saved = _read_npz(path)
    want = _named_leaves(template)
    if set(saved) != set(want):
        missing, extra = sorted(set(want) - set(saved)), sorted(set(saved) - set(want))
        raise ValueError(f"checkpoint {path} does not fit this run (missing {missing[:3]}, "
                         f"unexpected {extra[:3]}): written for another architecture or optimizer?")
    for name, leaf in want.items():
        if saved[name].shape != leaf.shape or saved[name].dtype != leaf.dtype:
            raise ValueError(f"checkpoint {path}: {name} is {saved[name].shape} "
                             f"{saved[name].dtype}, expected {leaf.shape} {leaf.dtype}")
    leaves = [saved[name] for name in want]  # dicts keep the template's leaf order
    return jax.tree.unflatten(jax.tree.structure(template), leaves)
