"""Paths as users give them, and what is on disk there: a save or a load touches regular files only.

- :func:`fspath`: a ``str``, ``bytes`` or ``os.PathLike`` path as a ``str``; anything else (an open
  file, a number, which ``open`` would take as a file descriptor) is a TypeError naming the caller.
- :func:`open_regular`: a file opened for reading only after ``os.stat`` shows it is a regular file,
  so that a FIFO without a writer never blocks and ``/dev/zero`` is never read; opened without
  blocking and checked again once open, so that a file swapped in between is refused too.
- :func:`save_target`: where a save to a path writes: through symlinks to the file they name, which
  must be a regular file or absent (never ``/dev/null``, a FIFO or a folder), with its mode bits.
"""

from __future__ import annotations

import os
import stat
from typing import IO, Any, Callable

__all__ = ["XpnetFileError", "fspath", "open_regular", "save_target"]


class XpnetFileError(ValueError):
    """A model or checkpoint file cannot be used: the message names the path, the field and what
    was expected."""


def fspath(path: Any, who: str, file_objects: str = "") -> str:
    """``path`` (str, bytes or os.PathLike) as a str; any other type raises TypeError naming ``who`` (and
    ``file_objects``, the file objects ``who`` takes too, as what was expected: "io.BytesIO, open(path, 'rb')")."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        also = f", or a binary file object ({file_objects})" if file_objects else ""
        raise TypeError(f"{who}: path must be a str, bytes or os.PathLike such as 'model.npz'{also}, got "
                        f"{type(path).__name__}")
    return os.fsdecode(os.fspath(path))


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def open_regular(path: str, error: Callable[[str], Exception]) -> IO[bytes]:
    """``path`` opened for binary reading, after checking it is a regular file; otherwise raises
    ``error(why)``. A missing file raises FileNotFoundError (which names the path)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise error(f"it is {_kind(mode)}, not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # replaced between the stat and the open
            raise error(f"it is {_kind(mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def save_target(path: str) -> tuple[str, int | None]:
    """``(file, mode)``: the absolute path a save to ``path`` replaces (symlinks followed to their
    target) and that file's permission bits, or None when it does not exist yet. Raises
    :class:`XpnetFileError` when something other than a regular file is there."""
    target = os.path.realpath(os.path.abspath(path))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target, None
    if not stat.S_ISREG(st.st_mode):
        via = "" if target == os.path.abspath(path) else f" (where the symlink {path!r} leads)"
        raise XpnetFileError(f"cannot save to {target!r}{via}: it is {_kind(st.st_mode)}, not a regular file; "
                             "give the path of a file to write")
    return target, stat.S_IMODE(st.st_mode)
