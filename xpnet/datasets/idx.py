"""The IDX file format of MNIST-style datasets, gzipped or raw.

Layout: 2 zero bytes, a dtype code, the number of dimensions ``ndim``, ``ndim`` big-endian uint32 sizes,
then the data in C order, big-endian. Whether a file is gzipped is told by its first bytes, not its name.
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import BinaryIO, Sequence

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype code -> big-endian NumPy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IDXFormatError(ValueError):
    """An IDX file is truncated, corrupt, or not of the expected dtype or shape."""


def read_idx(path: str | os.PathLike, dtype=None, shape: Sequence[int | None] | None = None,
             hasher=None) -> np.ndarray:
    """Read one IDX file (gzipped or raw) into a writable native-byte-order array.

    ``dtype``: the dtype the file must hold (e.g. ``np.uint8``); ``shape``: the shape it must have,
    ``None`` for a free dimension (``(None, 28, 28)``). ``hasher`` (e.g. ``hashlib.sha256()``), if given, is
    fed the uncompressed bytes (header and data), so a checksum of the content costs no second read.
    Raises IDXFormatError naming the file when it is truncated, corrupt, or not as expected.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
            return _read_stream(stream, path, dtype, shape, hasher)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise IDXFormatError(f"{path}: corrupt or truncated gzip stream ({e})") from e


def _read_stream(stream: BinaryIO, path: str, dtype, shape, hasher) -> np.ndarray:
    magic = _read_exactly(stream, 4, path, "the 4-byte magic number")
    if magic[:2] != b"\x00\x00" or magic[2] not in IDX_DTYPES:
        raise IDXFormatError(
            f"{path}: not an IDX file (magic bytes {magic.hex()}, expected 0000 followed by a dtype code "
            f"in {sorted(hex(c) for c in IDX_DTYPES)} and the number of dimensions)")
    file_dtype, ndim = IDX_DTYPES[magic[2]], magic[3]
    if ndim == 0:
        raise IDXFormatError(f"{path}: IDX header declares 0 dimensions")
    header = _read_exactly(stream, 4 * ndim, path, f"the sizes of its {ndim} dimensions")
    dims = tuple(int(d) for d in np.frombuffer(header, dtype=">u4"))
    if hasher is not None:
        hasher.update(magic + header)

    if dtype is not None and file_dtype.newbyteorder("=") != np.dtype(dtype):
        raise IDXFormatError(f"{path}: holds {file_dtype.newbyteorder('=').name} (code {magic[2]:#04x}), "
                             f"expected {np.dtype(dtype).name}")
    if shape is not None and (len(shape) != ndim or any(s is not None and s != d for s, d in zip(shape, dims))):
        wanted = tuple("N" if s is None else s for s in shape)
        raise IDXFormatError(f"{path}: has shape {dims} ({ndim} dimensions), expected {wanted}")

    # The buffer grows with the data actually read: a header declaring more than the file holds
    # fails as truncated instead of allocating the declared size first.
    nbytes = file_dtype.itemsize
    for d in dims:
        nbytes *= d
    buf = bytearray()
    while len(buf) < nbytes:
        chunk = stream.read(min(nbytes - len(buf), 1 << 24))
        if not chunk:
            break
        buf += chunk
    if len(buf) < nbytes:
        raise IDXFormatError(f"{path}: truncated: shape {dims} of {file_dtype.name} needs {nbytes} data bytes "
                             f"after the header, found {len(buf)}")
    if stream.read(1):
        raise IDXFormatError(f"{path}: has bytes after the {nbytes} data bytes that shape {dims} needs")
    if hasher is not None:
        hasher.update(buf)
    data = np.frombuffer(buf, dtype=file_dtype).reshape(dims)
    return data.astype(file_dtype.newbyteorder("="), copy=False)


def _read_exactly(stream: BinaryIO, n: int, path: str, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise IDXFormatError(f"{path}: truncated: ended after {len(data)} of the {n} bytes of {what}")
    return data
