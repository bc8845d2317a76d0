"""Atomic file writes: a temporary file beside the target, fsync, a rename over it, fsync the folder.

The target is what is on disk at the path (:func:`xpnet.io.paths.save_target`): a symlink is followed
and its target replaced (atomically, in the target's folder), and anything that exists but is not a
regular file (``/dev/null``, a FIFO, a folder) is refused before anything is written. The temporary
file is named ``.<target name>.<pid>.<host>.<space>.<random>.xpnet-tmp`` in the target's folder and gets the
existing file's permission bits, or for a new file the mode a plain ``open`` would give (``0o666``
less the umask), where the filesystem lets a mode be set (FAT and SMB shares refuse chmod: the file
keeps the mode they give). An error while writing (a full disk, a read-only folder) names the path
being saved, never the temporary file, and leaves the old file as it was. Ctrl-C or SIGTERM during a
write removes it (SIGTERM then ends the process as it would have); a process killed outright
(SIGKILL, power loss) leaves it, and the next save to the same target removes the leftovers of
writers that are gone.

A temporary file's name is its writer's claim: ``.<name>.<pid>.<host>.<space>.<random><suffix>``, as a lock
file names its holder: ``<host>`` this machine's name (:func:`host_tag`), ``<space>`` the pid namespace the pid
counts in (:func:`space_tag`; Linux only, left out elsewhere: containers sharing one host name, ``docker run
--network host``, each number their processes from 1). A folder shared between machines (an NFS home under
``mpiexec``) or containers holds the files of writers whose pids mean nothing here: a file of this host and space
(or of this host and no space: an xpnet before spaces, a system without them) is a leftover once its pid no longer
runs; any other (or of an xpnet that wrote no host) only once nothing has written to it for :data:`STALE_AFTER_S`
seconds, far longer than a live writer pauses (a download writes what each read brings, and a read waits 60 s at
most). Its age is read by the clock that stamps the folder's files (an NFS server's), from the time of a file made
there for the purpose, not by this machine's clock, which may run ahead of the server's.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import socket
import tempfile
from typing import IO, Any, Callable, Iterator

import numpy as np

from .paths import fspath, save_target
from .signals import sigterm_raises

TEMP_SUFFIX = ".xpnet-tmp"
STALE_AFTER_S = 30 * 60  # another host's temporary file with no write for this long is a leftover


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file in ``path``'s folder; on a clean exit it is flushed, fsynced and renamed
    over ``path`` and the folder fsynced, on any exception (KeyboardInterrupt, SIGTERM too) it is
    removed. An interrupted write never leaves a broken ``path``: the old file, if any, stays.
    ``path`` may be a symlink (its target is replaced); anything else that is not a regular file
    raises :class:`xpnet.XpnetFileError` first. An OSError names ``path``."""
    given = fspath(path, "save")
    path, kept_mode = save_target(given)
    folder, name = os.path.split(path)
    remove_leftovers(path)
    with sigterm_raises():
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=temp_prefix(name), suffix=TEMP_SUFFIX, dir=folder)
            with os.fdopen(fd, mode) as f:
                set_mode(f.fileno(), tmp, new_file_mode() if kept_mode is None else kept_mode)
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):  # what stopped the save is the error; a file left is a leftover
                    os.unlink(tmp)
            if isinstance(exc, OSError) and exc.errno is not None and _ours(exc.filename, folder):
                why = exc.strerror
                if exc.errno == errno.ENOENT and not os.path.isdir(folder):  # not "No such file" of the file to write
                    why = f"its folder {folder!r} does not exist; make it first (os.makedirs(folder, exist_ok=True))"
                raise OSError(exc.errno, why, given) from None
            raise
        fsync_folder(folder)


def temp_prefix(name: str) -> str:
    """The start of the name of a temporary file this process writes for the file ``name``:
    ``.<name>.<pid>.<host>.<space>.`` (``.<name>.<pid>.<host>.`` where there is no space tag), its claim (see the
    module docstring)."""
    return f".{name}.{os.getpid()}.{'.'.join(_here())}."


def _here() -> list[str]:
    """The claim's fields between the pid and the random part: [host] or [host, space]."""
    space = space_tag()
    return [host_tag(), space] if space else [host_tag()]


def space_tag() -> str:
    """What tells this process's pids from those of another process of the same host name: 8 hex digits of a hash
    of its pid namespace (``/proc/self/ns/pid``, a container's own) and the kernel's boot id (two machines of one
    name: the first namespace has one number on every Linux); "" where there is no namespace to read (macOS,
    Windows: one pid space per host name). ``/etc/machine-id`` would not do: a container has its image's."""
    try:
        space = os.readlink("/proc/self/ns/pid")
    except (OSError, AttributeError, NotImplementedError):
        return ""
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as f:
        space += " " + f.read().strip()
    return hashlib.sha256(space.encode()).hexdigest()[:8]


def host_tag() -> str:
    """This machine's name as a temporary file's name holds it: no dots (the name's separator) or other
    characters outside ``[A-Za-z0-9-]``, each an underscore; one longer than 24 characters is cut to its first 15
    and 8 hex digits of a hash of the whole, so that the file names stay well under the filesystem's limit."""
    host = socket.gethostname()
    tag = re.sub(r"[^A-Za-z0-9-]", "_", host) or "_"
    if len(tag) > 24:
        tag = f"{tag[:15]}-{hashlib.sha256(host.encode()).hexdigest()[:8]}"
    return tag


def new_file_mode() -> int:
    """The mode a plain ``open`` gives a new file: ``0o666`` less the umask."""
    return 0o666 & ~_umask()


def set_mode(fd: int, tmp: str, mode: int) -> None:
    """Give the file open as ``fd`` at ``tmp`` (a temporary file of mkstemp, 0600) ``mode``, where its filesystem
    lets it: FAT and SMB shares refuse chmod (EPERM, ENOTSUP) where a plain ``open`` writes, and the file keeps
    the mode they give."""
    try:
        os.chmod(fd if os.chmod in os.supports_fd else tmp, mode)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


def _ours(filename: Any, folder: str) -> bool:
    """Whether an OSError's file name is one the user never gave: none (ENOSPC from a write), the
    folder, or a temporary file there (a failed mkstemp or rename)."""
    return filename is None or filename == folder or (
        isinstance(filename, str) and os.path.dirname(filename) == folder and filename.endswith(TEMP_SUFFIX))


def atomic_savez(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """``numpy.savez`` of ``arrays`` to ``path``, atomically."""
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def remove_leftovers(path: str | os.PathLike, suffix: str = TEMP_SUFFIX) -> list[str]:
    """Remove the temporary files (``.<name>.<pid>.<host>.<space>.<random><suffix>`` beside ``path``) that killed
    writers of ``path`` left: this host's (and pid namespace's) whose process no longer runs, any other with no
    write for :data:`STALE_AFTER_S` seconds by the folder's clock; returns their paths."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    prefix = f".{name}."
    removed: list[str] = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    now: list[float | None] = []  # the folder's time, read once, where a file's age is asked

    def folder_time() -> float | None:
        if not now:
            now.append(_folder_time(folder, temp_prefix(name), suffix))
        return now[0]

    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(suffix)):
            continue
        left = os.path.join(folder, entry)
        if _abandoned(entry[len(prefix):-len(suffix)], left, folder_time):
            with contextlib.suppress(OSError):  # tidying only: gone already, or another user's (EPERM)
                os.unlink(left)
                removed.append(left)
    return removed


def _abandoned(claim: str, path: str, folder_time: Callable[[], float | None]) -> bool:
    """Whether the temporary file at ``path``, named with ``claim`` (``<pid>.<host>.<space>.<random>``;
    ``<pid>.<host>.<random>`` where the writer had no space tag; ``<pid>.<random>`` as xpnet wrote it before it
    named the host), is a leftover. ``folder_time()``: now by the clock that stamps the folder's files."""
    fields = claim.split(".")
    if len(fields) not in (2, 3, 4) or not fields[0].isdigit():
        return False  # another file's name, not a claim
    if len(fields) > 2:
        here = _here()
        if fields[1:-1] in (here, here[:1]):
            return not _running(int(fields[0]))
    try:
        written = os.stat(path).st_mtime
    except OSError:
        return False
    now = folder_time()
    return now is not None and now - written > STALE_AFTER_S


def _folder_time(folder: str, prefix: str, suffix: str) -> float | None:
    """Now by the clock that stamps the files of ``folder`` (an NFS server's, which this machine's may be ahead of
    by more than :data:`STALE_AFTER_S`): the modification time of a file made there, named as this process's
    temporary files are (``prefix``, ``suffix``: a leftover if the process is killed before it is removed); None
    where none can be made (nor can a file there be removed)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    except OSError:
        return None
    try:
        return os.fstat(fd).st_mtime
    except OSError:
        return None
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (where that cannot be told, as if it did: its file stays)."""
    if os.name == "nt":  # os.kill(pid, 0) there sends CTRL_C_EVENT (0) to the console process group pid
        return _running_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _running_windows(pid: int) -> bool:
    """``_running`` on Windows: the process opens and has no exit code yet (or may not be opened: it exists)."""
    try:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return True
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() != 87  # ERROR_INVALID_PARAMETER: no such process; access denied: one runs
    try:
        code = ctypes.c_ulong()
        return not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)) or code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask sets it to read it)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename into ``folder`` itself durable (POSIX): every writer here calls it after its ``os.replace``;
    a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
