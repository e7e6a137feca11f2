"""Opening a run's files to read them: never through a symbolic link, only regular files,
never more bytes than such a file can hold.

Every file in a run folder is jaxmlp's own, written whole and renamed into place, never as
a link (``jaxmlp._run``). A link found there was put there by someone else, and following it
would show whatever it points at: another user's file through ``jaxmlp serve``, a FIFO that
blocks a reader for good. So every reader opens run files here, and a link (the file, or a
folder between the run folder and it) is refused with one line that names it and never
quotes what is in it.
"""
import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from jaxmlp._errors import RunError


def open_file(path, *, within=None) -> BinaryIO:
    """``path`` opened for reading in binary, without following a symbolic link.

    ``within``: the run folder ``path`` lies in (``path`` may then be ``within/models/3/
    eval.json``): no folder from there down may be a link either. Without it only the file
    itself is checked (the folder is the one the caller named, link or not).

    Raises:
      FileNotFoundError: nothing at ``path`` (callers decide whether that is an error).
      RunError: a link, a folder that is a link or a file, something other than a regular
        file (a FIFO would block forever), or a file the OS will not open; the message names
        which, never what the file holds.
    """
    path = Path(path)
    base = Path(within) if within is not None else path.parent
    parts = path.relative_to(base).parts
    try:
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no file {path}") from None
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat refuses it below.
            flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                inner = os.open(part, flags, dir_fd=fd)
            except OSError as e:
                raise _refusal(e, base.joinpath(*parts[:i + 1]), path) from None
            os.close(fd)
            fd = inner
        opened, fd = fd, -1
    finally:
        if fd >= 0:
            os.close(fd)
    if not stat.S_ISREG(os.fstat(opened).st_mode):
        os.close(opened)
        raise RunError(f"{path} is not a regular file")
    os.set_blocking(opened, True)
    return os.fdopen(opened, "rb")


def _refusal(e: OSError, here: Path, path: Path) -> Exception:
    """The error for a part ``here`` of ``path`` that ``os.open`` refused with ``e``."""
    if e.errno == errno.ENOENT:
        return FileNotFoundError(errno.ENOENT, f"no file {path}")
    if os.path.islink(here):
        return RunError(f"{here} is a symbolic link: jaxmlp reads only the files it wrote in a "
                        "run folder, never a link (remove it)")
    if e.errno == errno.ENOTDIR:
        return RunError(f"{here} is not a folder")
    return RunError(f"cannot read {path}: {e.strerror or e}")


def read_bytes(path, *, limit: int, what: str, within=None) -> bytes:
    """The whole of ``path`` (``open_file``'s rules), refused when over ``limit`` bytes:
    ``what`` names the kind of file in that message ("a metrics file")."""
    with open_file(path, within=within) as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(limit + 1) if size <= limit else b""
        if size > limit or len(data) > limit:
            raise RunError(f"{path} holds {max(size, len(data)):,} bytes, more than {what} "
                           f"can ({limit:,}): not written by jaxmlp")
        return data
