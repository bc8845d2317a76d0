"""Downloads that keep nothing unverified: each file goes to a temporary name beside its target and gets
its final name only once it is complete and its SHA-256 is accepted (MNIST, Penn Treebank)."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable

DOWNLOAD_TIMEOUT_S = 60.0
CHUNK = 1 << 20

__all__ = ["fetch_verified", "file_sha256", "DOWNLOAD_TIMEOUT_S"]


def fetch_verified(url: str, dest: Path, accept: Callable[[str, str], bool]) -> str | None:
    """Download ``url`` to a temporary file beside ``dest`` and rename it to ``dest`` once it is complete
    and ``accept(sha256_of_its_bytes, temporary_path)`` is true; return None then, else the SHA-256 it had.
    The temporary file never outlives the call, so an interrupted transfer leaves nothing a later run
    could take for data. Raises OSError / http.client.HTTPException when the transfer fails."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        hasher = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(CHUNK):
                hasher.update(chunk)
                out.write(chunk)
                received += len(chunk)
            if length is not None and received != int(length):
                raise http.client.IncompleteRead(b"", int(length) - received)
            out.flush()
            os.fsync(out.fileno())
        got = hasher.hexdigest()
        if not accept(got, tmp):
            return got
        os.replace(tmp, dest)
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def file_sha256(path: str | os.PathLike) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()
