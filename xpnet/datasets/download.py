"""Downloads that keep nothing unverified: each file goes to a temporary name beside its target and gets
its final name only once it is complete and its SHA-256 is accepted (MNIST, Penn Treebank).

A transfer is bounded: each read waits :data:`DOWNLOAD_TIMEOUT_S` seconds at most, and a reply of more than
:data:`MAX_DOWNLOAD_BYTES` (larger than any dataset file) is stopped as it comes, so that a mirror or proxy
that never ends its reply cannot fill the disk. There is no deadline for a whole transfer, as pip has none
(its ``--timeout``, 15 s by default, bounds each socket operation) and torchvision's downloads have no timeout
at all: a link that stalls fails within a read's timeout, while a slow one that keeps sending (26 MB at 20 kB/s
takes 22 minutes) would fail a deadline after the work, to start again from nothing. A server that trickles
a byte within each read's timeout is held by no limit here: a limit of your own (a batch scheduler's, Ctrl-C)
ends any transfer cleanly. Ctrl-C or SIGTERM during a transfer removes the temporary
file (SIGTERM then ends the process as it would have); one a process killed outright left
(``.<name>.<pid>.<host>.<space>.<random>.part``) is removed by the next download of the same file once that
process no longer runs, or, another host's or container's (a cache folder on NFS shared by the nodes of a job),
once nothing has written to it for :data:`xpnet.io.atomic.STALE_AFTER_S` seconds by the folder's clock, as
:func:`xpnet.io.atomic.remove_leftovers` does for saves. A file kept gets the mode a plain ``open`` gives.

Ranks of one job that load a dataset at once each download it to their own ``.part`` and rename it into place
when it is verified: the renames are atomic and their files alike, so the last one wins and every rank reads a
whole file; no rank waits for another.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

from ..io.atomic import fsync_folder, new_file_mode, remove_leftovers, set_mode, temp_prefix
from ..io.signals import sigterm_raises

DOWNLOAD_TIMEOUT_S = 60.0
MAX_DOWNLOAD_BYTES = 128 << 20  # Fashion-MNIST's training images, the largest file, are 26 MB gzipped
CHUNK = 1 << 20
PART_SUFFIX = ".part"

__all__ = ["fetch_verified", "file_sha256", "cache_folder", "DOWNLOAD_TIMEOUT_S", "MAX_DOWNLOAD_BYTES"]


class DiskError(OSError):
    """Writing a download to the disk failed (a full disk, a read-only folder): the disk's error, named with the
    file being downloaded. No other mirror would mend it, so the loaders raise it at once."""


def fetch_verified(url: str, dest: Path, accept: Callable[[str, str], bool]) -> str | None:
    """Download ``url`` to a temporary file beside ``dest`` and rename it to ``dest`` once it is complete
    and ``accept(sha256_of_its_bytes, temporary_path)`` is true (the file and then its folder fsynced, as
    :func:`xpnet.io.atomic.atomic_write` does); return None then, else the SHA-256 it had.
    The temporary file never outlives the call, so an interrupted transfer leaves nothing a later run
    could take for data. Raises OSError / http.client.HTTPException when the transfer fails or passes
    :data:`MAX_DOWNLOAD_BYTES`, and :class:`DiskError` (an OSError naming ``dest``) when the disk fails it."""
    remove_leftovers(dest, PART_SUFFIX)
    with sigterm_raises():
        with _on_disk(dest):
            fd, tmp = tempfile.mkstemp(prefix=temp_prefix(dest.name), suffix=PART_SUFFIX, dir=dest.parent)
        try:
            try:
                with _on_disk(dest):
                    set_mode(fd, tmp, new_file_mode())
                got = _receive(url, fd, dest)
                with _on_disk(dest):
                    os.fsync(fd)
            finally:
                with _on_disk(dest):
                    os.close(fd)
            with _on_disk(dest):
                if not accept(got, tmp):
                    os.unlink(tmp)
                    return got
                os.replace(tmp, dest)
                fsync_folder(dest.parent)
            return None
        except BaseException:
            # the error under way is the one to report (a SIGTERM's Terminated must go on to end the process):
            # a part file the disk will not remove now is a leftover, which a download after this process removes
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _receive(url: str, fd: int, dest: Path) -> str:
    """Write the reply to ``url`` to the file open as ``fd`` as it comes; return its SHA-256. Raises OSError /
    http.client.HTTPException where the transfer fails, :class:`DiskError` where writing does."""
    hasher = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        if length is not None and not (length.isascii() and length.isdigit()):
            raise http.client.HTTPException(f"its reply's Content-Length is {length!r}, not a number of "
                                            "bytes: not downloaded")
        limit = MAX_DOWNLOAD_BYTES
        if length is not None and int(length) > limit:
            raise OSError(f"its reply announces {length} bytes, more than {limit} bytes (larger than any "
                          "dataset file): not downloaded")
        received = 0
        # what each read brings goes to the file at once: its last write tells other hosts it is live
        while chunk := response.read1(min(CHUNK, limit + 1 - received)):
            hasher.update(chunk)
            with _on_disk(dest):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            received += len(chunk)
            if received > limit:
                raise OSError(f"its reply is more than {limit} bytes (larger than any dataset file): "
                              "stopped, nothing kept")
        if length is not None and received != int(length):
            raise http.client.IncompleteRead(b"", int(length) - received)
    return hasher.hexdigest()


@contextlib.contextmanager
def _on_disk(dest: Path) -> Iterator[None]:
    """Raise an OSError of the ``with`` body with an errno (the disk's) as a :class:`DiskError` naming ``dest``;
    one without (gzip's BadGzipFile of a file the mirror sent, read by ``accept``) is the mirror's."""
    try:
        yield
    except DiskError:
        raise
    except OSError as exc:
        if exc.errno is None:
            raise
        raise DiskError(exc.errno, f"{exc.strerror or exc} (writing its download)", os.fspath(dest)) from exc


def file_sha256(path: str | os.PathLike) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


@contextlib.contextmanager
def cache_folder(folder: Path, refused: Callable[[str], BaseException]) -> Iterator[Path]:
    """Make ``folder`` and its missing parents for the downloads of the ``with`` body (where it cannot be made,
    raise ``refused(why)``); where the body raises, remove those it made that stayed empty, deepest first, so
    that a failed download leaves no empty cache folder behind."""
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise refused(f"cannot create the cache folder: {e}") from e
    try:
        yield folder
    except BaseException:
        for p in made:
            try:
                p.rmdir()
            except OSError:
                break
        raise
