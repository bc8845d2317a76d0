"""Reading xpnet's ``.npz`` files without trusting them.

How a file is read (``xn.load`` and ``resume_from`` both go through :class:`NpzReader`):

1. The file is opened as a zip archive, only if it is a regular file (a FIFO or a device is refused
   before it is opened), or read from a binary file object where the caller takes one (the archive at
   its position, :mod:`.streams`); a zero-byte, truncated, non-zip or single-array ``.npy`` file fails
   here with one :class:`XpnetFileError` naming the path (or the object) and what was expected.
2. The JSON record (architecture, format version, ...) is read first, bounded in size and in
   nesting depth.
3. Each array's ``.npy`` header (shape, dtype) is read and checked against what the caller expects
   *before* its data: a header that declares more bytes than the archive member holds, an object
   dtype (pickles) or a shape the architecture does not give fails without allocating anything.
4. Only then is the data read into an array of exactly the checked size.

Whatever the damage (a flipped bit anywhere, a truncated member, a header that claims encryption or
an unknown zip version), every failure is an :class:`XpnetFileError` naming the path: the errors of
``zipfile``, ``zlib`` and NumPy's header parser are caught where the archive is read.
"""

from __future__ import annotations

import json
import math
import struct
import tokenize
import zipfile
import zlib
from typing import Any

import numpy as np

from .paths import XpnetFileError, fspath, open_regular
from .streams import archive_at, describe, is_file_object

__all__ = ["XpnetFileError", "NpzReader", "fill"]

_NPY_MAGIC = b"\x93NUMPY"
TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # torch.serialization.MAGIC_NUMBER
TORCH_LEGACY = ("it is in torch's older format (torch < 1.6, or torch.save(..., "
                "_use_new_zipfile_serialization=False)), a pickle that xpnet does not read: re-save it with a recent "
                "torch, torch.save(torch.load(path), 'new.pt'), and read that")
_MAX_RECORD_BYTES = 64 << 20
MAX_RECORD_DEPTH = 100
# What reading a damaged archive raises: zipfile's BadZipFile, RuntimeError ("is encrypted"),
# NotImplementedError ("zip file version", a compression method), OSError (a seek before the start).
_DAMAGED = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError,
            NotImplementedError, struct.error, OverflowError)


class NpzReader:
    """The arrays of one ``.npz`` archive, read one checked header at a time.

    ``what`` says what the file should be (``"an xpnet model file (written by model.save)"``); every
    error names ``path`` (``source``: its repr, or how a file object is named) and ``what``. With
    ``file_objects=True``, ``path`` may be a binary file object that reads and seeks: the archive at its
    position is read, and closing leaves it at that archive's end (:func:`.streams.archive_at`); ``who``
    names the caller in a TypeError. Use as a context manager.
    """

    def __init__(self, path: Any, what: str, who: str = "load", file_objects: bool = False):
        self.what = what
        if file_objects and is_file_object(path):
            self.path, self.source = None, describe(path)
            self._file = archive_at(path, who)
        else:
            self.path = fspath(path, who, "io.BytesIO, open(path, 'rb')" if file_objects else "")
            self.source = repr(self.path)
            # FileNotFoundError and PermissionError name the path themselves.
            self._file = open_regular(self.path, self.error)
        try:
            head = self._file.read(14)
            if not head:
                raise self.error("the file is empty (0 bytes)" if self.path is not None else
                                 "there are no bytes at its position")
            if head.startswith(_NPY_MAGIC):
                raise self.error("it is a single NumPy array (.npy, numpy.save), not an .npz archive")
            if head[2:] == b"\x8a\x0a" + TORCH_LEGACY_MAGIC:
                raise self.error(f"{TORCH_LEGACY} with xn.read_torch_file(path)")
            if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
                raise self.error("it is a Python pickle, not an .npz archive (the book's params.pkl: "
                                 "xn.load_book_params(path, model) reads it, with a restricted unpickler)")
            if head.startswith(b"\x89HDF"):
                raise self.error("it is an HDF5 file (Keras' .h5?), not an .npz archive")
            try:
                self._file.seek(0)
                self._zip = zipfile.ZipFile(self._file)
            except _DAMAGED as exc:
                raise self.error(f"it is not a complete zip archive ({exc}); truncated or not an .npz") from None
        except BaseException:
            self._file.close()
            raise
        self._members = {info.filename[:-4]: info for info in self._zip.infolist()
                         if info.filename.endswith(".npy")}

    def __enter__(self) -> "NpzReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._zip.close()
        self._file.close()

    @property
    def names(self) -> list[str]:
        return list(self._members)

    @property
    def archive_names(self) -> list[str]:
        """Every member of the archive, ``.npy`` or not (what wrote a foreign file shows there)."""
        return self._zip.namelist()

    def error(self, why: str) -> XpnetFileError:
        return XpnetFileError(f"{self.source} is not {self.what}: {why}")

    def record(self, name: str) -> Any:
        """The JSON record stored as a 0-d string array ``name`` (None when absent)."""
        if name not in self._members:
            return None
        shape, dtype = self.header(name)
        if shape != () or dtype.kind != "U":
            raise self.error(f"its record {name!r} is a {dtype} array of shape {shape}, expected a JSON string")
        try:
            record = json.loads(str(self._read(name, shape, dtype)[()]))
        except RecursionError:
            record = None
        except (ValueError, UnicodeError) as exc:  # json.JSONDecodeError is a ValueError
            raise self.error(f"its record {name!r} is not valid JSON ({exc})") from None
        if record is None or _depth(record, MAX_RECORD_DEPTH) > MAX_RECORD_DEPTH:
            raise self.error(f"its record {name!r} nests lists or objects more than {MAX_RECORD_DEPTH} deep; "
                             "xpnet writes only a few levels")
        return record

    def header(self, name: str, objects: bool = False) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype of array ``name`` from its ``.npy`` header; no data is read. ``objects=True``
        returns an object dtype (a pickle, never read) for the caller to name instead of raising."""
        with self._open(name) as f:
            shape, _, dtype, _ = self._read_header(name, f, objects)
        return shape, dtype

    def expect(self, name: str, shape: tuple[int, ...], dtype: Any, needed_by: str = "the architecture") -> None:
        """Raise unless array ``name``'s header says exactly ``shape`` and ``dtype``."""
        found_shape, found_dtype = self.header(name)
        if found_shape != tuple(shape) or found_dtype.newbyteorder("=") != np.dtype(dtype):
            raise self.error(f"array {name!r} has shape {found_shape} and dtype {found_dtype.name}, "
                             f"{needed_by} needs shape {tuple(shape)} and dtype {np.dtype(dtype).name}")

    def array(self, name: str, shape: tuple[int, ...], dtype: Any, needed_by: str = "the architecture") -> np.ndarray:
        """Array ``name``, after checking its header holds exactly ``shape`` and ``dtype``."""
        self.expect(name, shape, dtype, needed_by)
        found_shape, found_dtype = self.header(name)
        return self._read(name, found_shape, found_dtype)

    # -- reading ---------------------------------------------------------------------------

    def _open(self, name: str) -> Any:
        if name not in self._members:
            raise self.error(f"it has no array {name!r}")
        try:
            return self._zip.open(self._members[name])
        except _DAMAGED as exc:
            raise self.error(f"its archive entry for array {name!r} is damaged ({exc})") from None

    def _read_header(self, name: str, f: Any, objects: bool = False) -> tuple[tuple[int, ...], bool, np.dtype, int]:
        try:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
        except (*_DAMAGED, SyntaxError, TypeError, tokenize.TokenError) as exc:  # NumPy tokenizes the header
            raise self.error(f"array {name!r} has a broken .npy header ({exc})") from None
        if dtype.hasobject and objects:
            return shape, fortran, dtype, -1
        if dtype.hasobject:
            raise self.error(f"array {name!r} holds Python objects (dtype {dtype}); xpnet never loads pickles")
        nbytes = math.prod(shape) * dtype.itemsize
        if self._members[name].file_size != offset + nbytes:
            raise self.error(f"array {name!r} declares shape {shape} of {dtype.name} ({nbytes} bytes) but the "
                             f"archive holds {self._members[name].file_size - offset} bytes of data for it")
        return shape, fortran, dtype, nbytes

    def _read(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        with self._open(name) as f:
            _, fortran, _, nbytes = self._read_header(name, f)
            out = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
            view = memoryview(out.reshape(-1).view(np.uint8))
            try:
                filled = fill(f, view[:nbytes])
            except _DAMAGED as exc:
                raise self.error(f"array {name!r} is corrupt ({exc})") from None
        if filled != nbytes:
            raise self.error(f"array {name!r} is truncated: {filled} of {nbytes} bytes")
        out = out.T if fortran else out
        return out.astype(dtype.newbyteorder("="), copy=False)


def _depth(value: Any, limit: int) -> int:
    """How deep lists and dicts nest in ``value`` (a scalar is 0), counted without recursion and
    only up to ``limit + 1``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level)
            if level <= limit:
                stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def fill(member: Any, view: memoryview, chunk: int | None = None) -> int:
    """Read the open zip ``member`` into ``view`` (writable bytes) until it is full or the member ends, ``chunk``
    bytes at a time at most, then one byte more, which reaches the member's end, where zipfile checks the CRC;
    returns the bytes read. zipfile's and zlib's errors are the caller's to turn into its message."""
    filled = 0
    while filled < len(view):
        n = member.readinto(view[filled:] if chunk is None else view[filled:filled + chunk])
        if not n:
            break
        filled += n
    member.read(1)
    return filled
