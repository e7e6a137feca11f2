"""Pytrees of arrays in ``.npz`` files: written atomically, arrays under readable names.

The files hold only arrays (never pickles): ``params/0/w``, ``opt_state/0/trace/0/b``,
``step``. Restoring needs a template pytree of the same structure, which ``run.py``
rebuilds from the run's config.
"""
import math
import os
import tempfile
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp._errors import RunError
from jaxmlp._files import open_file


def write_atomic(path, write) -> None:
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


def save_npz_atomic(path, *arrays, **named) -> None:
    """``np.savez(path, *arrays, **named)``, all or nothing (``write_atomic``)."""
    write_atomic(path, lambda f: np.savez(f, *arrays, **named))


def leaf_name(path) -> str:
    """``(DictKey('params'), SequenceKey(0), DictKey('w'))`` → ``"params/0/w"``: the name a
    checkpoint gives the leaf at that key path."""
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):  # DictKey, SequenceKey/FlattenedIndexKey, GetAttrKey
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
    return "/".join(parts)


def _named_leaves(tree) -> dict[str, np.ndarray]:
    """The pytree's leaves as numpy arrays under readable names (``params/0/w``, ``step``)."""
    return {leaf_name(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def save_checkpoint(path, state) -> None:
    """Writes the pytree ``state`` to ``path`` atomically, each leaf under its name."""
    save_npz_atomic(path, **_named_leaves(state))


class Npz:
    """An ``.npz`` opened to read some of its arrays, by name, each checked against what the
    caller expects from its header before a byte of its data is read.

    ``np.load`` would read whichever arrays the file holds: a small model beside a planted
    1 GiB array took a reader to 1.24 GB. Here an array is read only when asked for, only
    when its shape and dtype are what the run implies, and only when stored uncompressed
    (as ``np.savez`` writes it), so that no array read is larger than the file itself.
    The file is opened as ``jaxmlp._files`` opens run files (no links, regular files only).

    Raises (from the constructor and ``read``):
      FileNotFoundError: no file at ``path``.
      RunError: (a ``ValueError``) the file is a link, not a regular file, truncated,
        corrupt, compressed, not an ``.npz`` of plain arrays, or an array is not what the
        caller expects (``_Mismatch``). Messages name the file and the array, never quote
        the file's bytes.
      KeyError: ``read`` of an array the file does not hold.
    """

    def __init__(self, path, *, within=None):
        self.path = Path(path)
        self._file = open_file(self.path, within=within)
        try:
            self._zip = zipfile.ZipFile(self._file)
            self._members = {i.filename[:-len(".npy")]: i for i in self._zip.infolist()
                             if i.filename.endswith(".npy")}
        except Exception as e:
            self._file.close()
            raise self._unreadable(e) from None

    @property
    def names(self) -> set:
        return set(self._members)

    def read(self, name: str, expect) -> np.ndarray:
        """The array ``name``; ``expect(shape, dtype)`` returns what is wrong with an array
        of that header (``None``: fine) and is asked before its data is read."""
        member = self._members.get(name)
        if member is None:
            raise KeyError(name)
        if member.compress_type != zipfile.ZIP_STORED:
            raise RunError(f"{self.path}: {name} is compressed; jaxmlp reads the arrays of "
                           "an .npz as np.savez stores them, uncompressed")
        try:
            with self._zip.open(member) as f:
                version = np.lib.format.read_magic(f)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError("an unknown .npy format version")
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
                if dtype.hasobject:
                    raise ValueError("its contents are not plain arrays")
                problem = expect(shape, dtype)
                if problem:
                    raise _Mismatch(f"{self.path}: {name} {problem}")
                size = math.prod(shape) * dtype.itemsize
                data = f.read(size)
                if len(data) != size:
                    raise EOFError
                array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
                return array.copy()  # writable, and no view of the bytes read
        except _Mismatch:
            raise
        except Exception as e:
            raise self._unreadable(e) from None

    def _unreadable(self, e: Exception) -> Exception:
        if isinstance(e, (RunError, FileNotFoundError)):
            return e
        reason = (str(e) if isinstance(e, ValueError) and str(e) in _REASONS
                  else _REASONS_BY_TYPE.get(type(e).__name__, type(e).__name__))
        return RunError(f"{self.path} is not a readable .npz of arrays ({reason}): truncated, "
                        "corrupt, or not written by jaxmlp")

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Mismatch(RunError):
    """An array of a readable ``.npz`` that is not what the run implies."""


# Why an archive cannot be read, in jaxmlp's words: never the library's message, which may
# quote the file's own bytes (member names, header text).
_REASONS = ("an unknown .npy format version", "its contents are not plain arrays")
_REASONS_BY_TYPE = {"BadZipFile": "not a zip archive, or a damaged one",
                    "EOFError": "it ends too soon", "error": "damaged data"}


def expect_exactly(shape, dtype):
    """An ``expect`` for ``Npz.read``: this shape and this dtype."""
    shape, dtype = tuple(shape), np.dtype(dtype)

    def expect(got_shape, got_dtype):
        if tuple(got_shape) != shape or got_dtype != dtype:
            return f"is {tuple(got_shape)} {got_dtype}, expected {shape} {dtype}"
    return expect


def expect_floats(shape):
    """An ``expect``: this shape, any floating dtype (a model saved in float64 is fine)."""
    shape = tuple(shape)

    def expect(got_shape, got_dtype):
        if tuple(got_shape) != shape or got_dtype.kind != "f":
            return f"is {tuple(got_shape)} {got_dtype}, expected {shape} floats"
    return expect


def expect_text(max_chars: int):
    """An ``expect``: one string (a 0-d unicode array) of at most ``max_chars``."""
    def expect(got_shape, got_dtype):
        if tuple(got_shape) != () or got_dtype.kind != "U" or got_dtype.itemsize > 4 * max_chars:
            return f"is not a string of at most {max_chars} characters"
    return expect


def load_checkpoint(path, template):
    """Reads ``path`` into a pytree shaped like ``template``, matching arrays by name.

    Raises:
      FileNotFoundError: no checkpoint at ``path``.
      ValueError: the file is unreadable, or does not fit the template (names, shapes, dtypes).
    """
    want = _named_leaves(template)
    with Npz(path) as npz:
        if npz.names != set(want):
            missing = sorted(set(want) - npz.names)
            extra = len(npz.names - set(want))
            raise ValueError(f"checkpoint {path} does not fit this run (missing {missing[:3]}, "
                             f"{extra} array{'s' if extra != 1 else ''} it does not need): "
                             "written for another architecture or optimizer?")
        try:
            leaves = [npz.read(name, expect_exactly(leaf.shape, leaf.dtype))  # the template's order
                      for name, leaf in want.items()]
        except _Mismatch as e:
            raise ValueError(f"checkpoint {e}") from None
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


def checkpoint_state(params, opt_state, step, key) -> dict:
    """The checkpoint: params, optimizer state, step and the data key(s)."""
    return {"params": params, "opt_state": opt_state, "step": jnp.asarray(step, jnp.int32),
            "key": jax.random.key_data(key)}
