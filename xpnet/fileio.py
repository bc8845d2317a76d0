"""Atomic file writes: a temporary file beside the target, fsync, then a rename over it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", suffix: str = "") -> Iterator[IO[Any]]:
    """Open a temporary file in ``path``'s folder; on a clean exit it is flushed, fsynced and renamed
    over ``path``, on any exception (KeyboardInterrupt too) it is removed. An interrupted write never
    leaves a broken ``path``: the old file, if any, stays as it was."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_savez(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """``numpy.savez`` of ``arrays`` to ``path``, atomically."""
    with atomic_write(path, "wb", suffix=".npz") as f:
        np.savez(f, **arrays)
