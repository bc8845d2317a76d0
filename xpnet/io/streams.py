"""Binary file objects given instead of a path, as PyTorch's ``torch.save(obj, buffer)`` and ``torch.load(buffer)``
take them: an ``io.BytesIO``, a file opened ``"wb"`` or ``"rb"``, a socket's ``makefile("wb")`` to send one.

- :func:`is_file_object`: whether a save or a load was given one rather than a path (str, bytes, os.PathLike).
- :func:`describe`: how errors name it where they would name a path (``<BytesIO>``,
  ``<BufferedReader name='model.npz'>``).
- :func:`save_npz`: a save to a file object writes the ``.npz`` at its position, then flushes it; it neither closes
  nor seeks it (the caller owns it), and nothing there is atomic (a save to a path is, :mod:`.atomic`). A text
  stream, or one opened for reading, is refused first (:func:`check_writable`).
- :func:`archive_at`: a load reads the one zip archive that starts at the object's position, through a window on
  it that ends where that archive ends. Several archives saved one after another into one file are told apart by
  their end records, read backwards from the end of the file: each gives where its archive starts, which is where
  the one before it ends. Closing the window leaves the object at the end of its archive, where the next load
  starts. A stream that cannot seek is refused (as ``torch.load``): zip keeps its directory at the end.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from typing import Any

import numpy as np

from .atomic import atomic_savez
from .paths import fspath

__all__ = ["is_file_object", "describe", "check_writable", "save_npz", "archive_at"]

_END = struct.Struct("<4s4H2LH")  # end of central directory: ..., directory size, its offset, comment length
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")  # zip64's: ..., directory size, its offset
_ENTRY = struct.Struct("<4s4B4HL2L5H2L")  # a directory entry: ..., sizes, name, extra, ..., local header offset
_MAX_COMMENT = 0xFFFF


def is_file_object(obj: Any) -> bool:
    """Whether ``obj`` is a file object (it reads or writes) rather than a path."""
    return not isinstance(obj, (str, bytes, os.PathLike)) and (hasattr(obj, "read") or hasattr(obj, "write"))


def describe(f: Any) -> str:
    """``f`` as errors name it: its type, and the name of the file it was opened on where it has one."""
    name = getattr(f, "name", None)
    return f"<{type(f).__name__} name={name!r}>" if isinstance(name, str) else f"<{type(f).__name__}>"


def _text(f: Any) -> bool:
    mode = getattr(f, "mode", None)  # gzip's is an int
    return isinstance(f, io.TextIOBase) or (isinstance(mode, str) and "b" not in mode)


def _can(f: Any, what: str) -> bool:
    """Whether ``f`` can ``what`` ("read", "write", "seek"): its ``readable()`` (...) where it has one, else whether
    it has the method."""
    ask = getattr(f, {"read": "readable", "write": "writable", "seek": "seekable"}[what], None)
    if not callable(ask):
        return hasattr(f, what)
    try:
        return bool(ask())
    except ValueError:  # a closed file
        return False


def _open_binary(f: Any, who: str, does: str, mode: str) -> None:
    """Raise unless ``f`` is open and binary: a save (``does`` "save writes", ``mode`` "wb") or a load ("load
    reads", "rb") moves bytes."""
    if getattr(f, "closed", False) is True:
        raise ValueError(f"{who}: the file object {describe(f)} is closed")
    if _text(f):
        raise TypeError(f"{who}: the file object {describe(f)} is a text stream; a {does} bytes: give a binary one "
                        f"(io.BytesIO, open(path, {mode!r}))")


def check_writable(f: Any, who: str) -> None:
    """Raise unless ``f`` is an open binary file object that writes (and flushes)."""
    _open_binary(f, who, "save writes", "wb")
    if not _can(f, "write"):
        raise TypeError(f"{who}: the file object {describe(f)} does not write (opened for reading?); give one "
                        "opened for writing in binary (io.BytesIO, open(path, 'wb'))")
    if not callable(getattr(f, "flush", None)):
        raise TypeError(f"{who}: the file object {describe(f)} has no flush(), which zipfile calls at the end of "
                        "an archive; give it one (io.RawIOBase's does nothing)")


def save_npz(target: Any, arrays: dict[str, np.ndarray], who: str) -> None:
    """``numpy.savez`` of ``arrays`` to ``target``: a path, atomically, or a binary file object, at its position (one
    that cannot seek or read, such as a socket's, too)."""
    if not is_file_object(target):
        atomic_savez(fspath(target, who, "io.BytesIO, open(path, 'wb')"), arrays)
        return
    check_writable(target, who)
    # numpy.savez's archive, written as numpy writes it: numpy.savez takes an object without ``read`` for a path.
    with zipfile.ZipFile(target, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    target.flush()


def archive_at(f: Any, who: str) -> "_Window":
    """A read-only window on ``f`` from its position to the end of the zip archive that starts there (where none is
    found, to the start of the next archive found after it or to the end of ``f``, for the reader to refuse);
    raises unless ``f`` is an open binary file object that reads and seeks."""
    _open_binary(f, who, "load reads", "rb")
    if not _can(f, "read"):
        raise TypeError(f"{who}: the file object {describe(f)} does not read (opened for writing only?); give one "
                        "opened for reading in binary (io.BytesIO, open(path, 'rb'))")
    if not _can(f, "seek"):
        raise TypeError(f"{who}: the file object {describe(f)} cannot seek, and a zip archive keeps its directory "
                        "at its end; read it into memory first: io.BytesIO(stream.read())")
    start = f.tell()
    end = f.seek(0, io.SEEK_END)
    while end > start:
        found = _archive_before(f, start, end)
        if found is None:
            break
        if found[0] == start:
            return _Window(f, start, found[1])
        end = found[0]  # an archive saved after the one at ``start``, which must end before it
    return _Window(f, start, end)


def _archive_before(f: Any, start: int, end: int) -> tuple[int, int] | None:
    """``(first, last)``: the bytes of the last zip archive that ends at or before ``end``, from its end record
    (found as zipfile finds it: the last signature in the 64 KiB a comment may take); None where there is none.

    Where the archive starts is not what its records say: zipfile counts offsets from where the file object began,
    not from where the archive did. The directory's offset less its first entry's (both counted alike) is how far
    the directory lies past the archive's first byte, whichever the count."""
    lo = max(start, end - _END.size - _MAX_COMMENT)
    f.seek(lo)
    tail = f.read(end - lo)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END.size:
        return None
    fields = _END.unpack_from(tail, at)
    where, size, offset = lo + at, fields[5], fields[6]
    last = min(where + _END.size + fields[7], end)
    if where - start >= _END64_LOCATOR.size + _END64.size:  # zip64's records come just before it, as zipfile reads
        f.seek(where - _END64_LOCATOR.size)
        if f.read(4) == b"PK\x06\x07":
            where -= _END64_LOCATOR.size + _END64.size
            f.seek(where)
            record = _END64.unpack(f.read(_END64.size))
            if record[0] != b"PK\x06\x06":
                return None
            size, offset = record[-2], record[-1]
    directory = where - size
    if directory < start:
        return None
    first = directory if size == 0 else directory - offset + _first_entry_offset(f, directory)
    if first < start:
        return None
    f.seek(first)
    return (first, last) if size == 0 or f.read(4) == b"PK\x03\x04" else None


def _first_entry_offset(f: Any, directory: int) -> int:
    """The offset of the local header of the directory's first entry (from zip64's extra field where it is
    0xFFFFFFFF); -2**63 where that entry is unreadable, which no archive starts at."""
    f.seek(directory)
    head = f.read(_ENTRY.size)
    if len(head) < _ENTRY.size or head[:4] != b"PK\x01\x02":
        return -1 << 63
    fields = _ENTRY.unpack(head)
    if fields[-1] != 0xFFFFFFFF:
        return fields[-1]
    f.seek(directory + _ENTRY.size + fields[12])
    extra = f.read(fields[13])
    while len(extra) >= 4:  # zip64's block (id 1) holds the sizes that overflowed, then the offset
        kind, n = struct.unpack_from("<2H", extra)
        if kind == 1:
            values = struct.unpack_from(f"<{min(n, len(extra) - 4) // 8}Q", extra, 4)
            skip = (fields[11] == 0xFFFFFFFF) + (fields[10] == 0xFFFFFFFF)
            return values[skip] if len(values) > skip else -1 << 63
        extra = extra[4 + n:]
    return -1 << 63


class _Window(io.RawIOBase):
    """Bytes ``[first, last)`` of the file object ``f`` as a file of their own; closing it leaves ``f`` at ``last``
    (open: the caller's)."""

    def __init__(self, f: Any, first: int, last: int):
        super().__init__()
        self._f, self._first, self._last, self._at = f, first, last, 0
        self.name = describe(f)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: self._last - self._first}[whence]
        if base + offset < 0:
            raise OSError(f"seek to {base + offset}, before the start of {self.name}")
        self._at = base + offset
        return self._at

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._last - self._first - self._at))
        self._f.seek(self._first + self._at)
        if callable(getattr(self._f, "readinto", None)):  # no copy in between
            got = self._f.readinto(memoryview(buffer).cast("B")[:n]) or 0
        else:
            data = self._f.read(n)
            got = len(data)
            buffer[:got] = data
        self._at += got
        return got

    def close(self) -> None:
        if not self.closed:
            self._f.seek(self._last)
        super().close()
