"""Reading PyTorch's ``.pt``/``.pth`` files without torch: what ``torch.save`` writes since torch 1.6.

How a file is read (:func:`read_torch_archive`, which ``xn.read_torch_file`` and ``xn.load_torch_state_dict`` call),
following ``torch/serialization.py``'s ``_load``:

1. The path must be a regular file holding a zip archive, the format of ``torch.save`` since torch 1.6 (every
   torchvision weight file), or a binary file object holding one at its position (``torch.load(buffer)``'s).
   torch's older format (a pickle after a magic number), a TorchScript archive (``torch.jit.save``) and anything
   else are refused, naming the path and what to do.
2. The archive's records lie in one folder, ``<name>/``: ``data.pkl`` (the pickled object), ``data/<key>`` (each
   storage's raw bytes) and ``byteorder`` (``little`` or ``big``; absent in older files, which are little-endian,
   as torch reads them).
3. ``data.pkl`` is unpickled with an allow-list, :data:`ALLOWED`: torch's own for ``weights_only=True``
   (``torch/_weights_only_unpickler.py``) cut to what state dicts and checkpoint dicts holding them need. Any
   other global the file names (``os.system``, the model class of a ``torch.save(model)``) is refused, naming
   it, before anything is called. The names lead to guards, never to torch: the rebuild functions
   (``torch/_utils.py``) build NumPy arrays, ``torch.Size`` is a tuple, storage types and dtypes are
   descriptions that cannot be called; no guard takes pickle's BUILD (``__setstate__`` refuses).
4. A storage, the persistent id ``('storage', storage_type, key, location, numel)``, is read once into host
   memory (``location``, the device it was saved from, is not used), after checking that its record holds
   ``numel`` elements. Each tensor is a view of it by ``(storage_offset, size, stride)`` in elements, checked to
   lie inside it; a view whose strides are not C-contiguous is copied, so contiguous tensors that shared a
   storage in PyTorch (views, ties) share memory here too. Copies and conversions (byte order, bfloat16) may
   take 4 times the file's size and 64 MiB at most: a view that repeats its storage's elements (stride 0,
   torch's ``expand``) is refused past that, so that a small file cannot fill the memory; so is a storage
   record that is compressed (``torch.save`` stores them as they are, never more bytes than the file holds).

Every failure is an :class:`XpnetFileError` naming the path.
"""

from __future__ import annotations

import contextlib
import io
import math
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .npz import TORCH_LEGACY, TORCH_LEGACY_MAGIC, fill
from .paths import XpnetFileError, fspath, open_regular
from .streams import archive_at, describe, is_file_object
from .unpickle import _encode

__all__ = ["ALLOWED", "DTYPES", "read_torch_archive"]

# torch dtype -> the NumPy dtype of its elements; bfloat16's are read as their bits, then widened to float32
DTYPES = {"float64": "f8", "float32": "f4", "float16": "f2", "bfloat16": "u2", "complex128": "c16",
          "complex64": "c8", "int64": "i8", "int32": "i4", "int16": "i2", "int8": "i1", "uint8": "u1",
          "uint16": "u2", "uint32": "u4", "uint64": "u8", "bool": "?"}
# torch's typed storage classes (torch.storage._dtype_to_storage_type_map) -> their dtype
_STORAGES = {"DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
             "BFloat16Storage": "bfloat16", "ComplexDoubleStorage": "complex128", "ComplexFloatStorage": "complex64",
             "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
             "ByteStorage": "uint8", "BoolStorage": "bool"}
_REBUILD = ("_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter", "_rebuild_parameter_with_state")

# (module, name) a file may name -> what it gets: a guard of _TorchUnpickler (a method name), or a description
# ("storage:<dtype>", "dtype:<dtype>", "class") that refuses to be called.
ALLOWED: dict[tuple[str, str], str] = {
    **{("torch._utils", f): f for f in _REBUILD},
    **{(m, "_rebuild_from_type_v2"): "_rebuild_from_type_v2" for m in ("torch._tensor", "torch.tensor")},
    ("collections", "OrderedDict"): "_ordered_dict",
    ("torch", "Size"): "_size",
    **{(m, "set"): "_set" for m in ("builtins", "__builtin__")},  # __builtin__: protocol 2, as torch.save pickles
    ("_codecs", "encode"): "_encode",  # how protocol 2 stores bytes
    **{("torch", s): f"storage:{d}" for s, d in _STORAGES.items()},
    **{(m, "UntypedStorage"): "storage:uint8" for m in ("torch", "torch.storage")},
    **{("torch", d): f"dtype:{d}" for d in DTYPES},
    ("torch", "Tensor"): "class",
    ("torch.nn.parameter", "Parameter"): "class",
}

_DTYPE_WORDS = ("float", "bfloat", "complex", "int", "uint", "qint", "quint", "bits")
_MAX_DEFLATE = 1032  # the most that deflate can expand a byte
_CHUNK = 1 << 24  # a storage is read in pieces this large, never held twice
_DAMAGED = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, RuntimeError,
            NotImplementedError, struct.error, OverflowError)


class _Refused(pickle.UnpicklingError):
    pass


class _Description:
    """What the file gets for a torch class, storage type or dtype: ``name`` and its ``dtype``, never called."""

    __slots__ = ("name", "kind", "dtype")

    def __init__(self, name: str, kind: str, dtype: str | None = None):
        self.name, self.kind, self.dtype = name, kind, dtype

    def __repr__(self) -> str:
        return self.name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _Refused(f"refused to call {self.name}: a file of torch.save names it only as a description")

    def __setstate__(self, state: Any) -> None:
        raise _Refused(f"refused to set the state of {self.name}")


class _Storage:
    """One storage: its raw bytes (shared by every reference to its key) and the dtype it is read as."""

    __slots__ = ("raw", "dtype", "key")

    def __init__(self, raw: np.ndarray, dtype: str, key: str):
        self.raw, self.dtype, self.key = raw, dtype, key

    def __setstate__(self, state: Any) -> None:
        raise _Refused(f"refused to set the state of storage {self.key!r}")


def _refusal(module: str, name: str) -> str:
    """Why ``module.name`` is refused, and what to do."""
    if module == "torch" and (name.endswith("Storage") or name.startswith(_DTYPE_WORDS)):
        why = "a tensor type that NumPy has no equivalent of (quantized, float8, complex32...)"
    elif module.startswith("torch.nn.modules") or module == "__main__":
        why = ("a whole pickled model (torch.save(model)) holds its classes: in torch, save its state dict, "
               "torch.save(torch.load(path, weights_only=False).state_dict(), 'weights.pt'), and read that")
    elif module.startswith("numpy"):
        why = ("NumPy objects are not what torch.save writes for tensors (torch.load's weights_only refuses them "
               "too): save tensors or Python numbers")
    else:
        why = "a state dict (or a checkpoint dict of them) holds only tensors, dicts, lists, numbers and strings"
    return f"refused to load {module}.{name}: {why}"


class _TorchUnpickler(pickle.Unpickler):
    """The restricted unpickler of ``data.pkl``; ``storage(key, dtype, numel)`` reads a storage's record."""

    _ordered_dict = OrderedDict
    _encode = staticmethod(_encode)

    def __init__(self, file: Any, storage: Callable[[str, str, int], _Storage], byteorder: str, budget: int):
        super().__init__(file)
        self.storage, self.byteorder = storage, byteorder
        self.budget = budget  # bytes the tensors may take beyond their storages (copies, conversions)

    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED.get((module, name))
        if found is None:
            raise _Refused(_refusal(module, name))
        kind, _, dtype = found.partition(":")
        if kind in ("storage", "dtype", "class"):
            return _Description(f"{module}.{name}", kind, dtype or None)
        return getattr(self, found)

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise _Refused(f"refused the persistent id {pid!r}: torch.save writes ('storage', storage_type, key, "
                           "location, numel)")
        _, storage_type, key, _, numel = pid
        if not (isinstance(storage_type, _Description) and storage_type.kind == "storage" and isinstance(key, str)
                and type(numel) is int and numel >= 0):
            raise _Refused(f"refused the persistent id {pid!r}: expected ('storage', a torch storage type, a key, "
                           "a location, a number of elements >= 0)")
        return self.storage(key, storage_type.dtype, numel)

    @staticmethod
    def _size(values: Any = ()) -> tuple[int, ...]:
        if not isinstance(values, (tuple, list)) or not all(type(v) is int and v >= 0 for v in values):
            raise _Refused(f"refused torch.Size({values!r}): expected ints >= 0")
        return tuple(values)

    @staticmethod
    def _set(values: Any = ()) -> set:
        if not isinstance(values, (tuple, list)):
            raise _Refused(f"refused set({type(values).__name__}): protocol 2 pickles a set as set(list)")
        return set(values)

    def _rebuild_tensor_v2(self, storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any,
                           backward_hooks: Any, metadata: Any = None) -> np.ndarray:
        return self._tensor(storage, storage_offset, size, stride, None, metadata)

    def _rebuild_tensor_v3(self, storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any,
                           backward_hooks: Any, dtype: Any, metadata: Any = None) -> np.ndarray:
        if not (isinstance(dtype, _Description) and dtype.kind == "dtype"):
            raise _Refused(f"refused _rebuild_tensor_v3 with dtype {dtype!r}: expected a torch dtype")
        return self._tensor(storage, storage_offset, size, stride, dtype.dtype, metadata)

    def _rebuild_parameter(self, data: Any, requires_grad: Any, backward_hooks: Any) -> np.ndarray:
        if not isinstance(data, np.ndarray):
            raise _Refused(f"refused a Parameter of {type(data).__name__}: expected a tensor")
        return data

    def _rebuild_parameter_with_state(self, data: Any, requires_grad: Any, backward_hooks: Any,
                                      state: Any) -> np.ndarray:
        return self._rebuild_parameter(data, requires_grad, backward_hooks)  # state: Python attributes, dropped

    def _rebuild_from_type_v2(self, func: Any, new_type: Any, args: Any, state: Any) -> np.ndarray:
        ours = getattr(func, "__self__", None) is self and getattr(func, "__name__", None) in _REBUILD
        if not ours or not isinstance(new_type, _Description) or new_type.kind != "class" \
                or not isinstance(args, tuple):
            raise _Refused(f"refused _rebuild_from_type_v2({func!r}, {new_type!r}, ...): only a tensor or Parameter "
                           "(with attributes of its own, which are dropped) is allowed")
        return func(*args)

    def _tensor(self, storage: Any, offset: Any, size: Any, stride: Any, dtype: str | None,
                metadata: Any) -> np.ndarray:
        """The tensor ``(storage_offset, size, stride)`` of ``storage`` as a NumPy array (see the module's 4.)."""
        if not isinstance(storage, _Storage):
            raise _Refused(f"refused to rebuild a tensor of {type(storage).__name__}: expected a storage")
        dtype = storage.dtype if dtype is None else dtype
        ints = isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) and \
            all(type(v) is int and v >= 0 for v in (offset, *size, *stride))
        if not ints:
            raise _Refused(f"refused a tensor of offset {offset!r}, size {size!r} and stride {stride!r}: expected "
                           "ints >= 0, as many strides as sizes")
        kind = np.dtype(DTYPES[dtype]).newbyteorder("<" if self.byteorder == "little" else ">")
        if storage.raw.nbytes % kind.itemsize:
            raise _Refused(f"refused a {dtype} tensor of storage {storage.key!r}: its {storage.raw.nbytes} bytes are "
                           f"no whole number of {kind.itemsize}-byte elements")
        elements = storage.raw.view(kind)
        count = math.prod(size)
        end = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if count else offset
        if end > elements.size:
            raise _Refused(f"refused a tensor of offset {offset}, size {size} and stride {stride}: it reaches "
                           f"element {end - 1} of storage {storage.key!r}, which holds {elements.size}")
        contiguous = all(s == math.prod(size[i + 1:]) for i, (n, s) in enumerate(zip(size, stride)) if n != 1)
        converted = self.byteorder != "little" or dtype == "bfloat16" or bool(metadata)
        if count and (converted or not contiguous):  # memory of its own: a view repeating its storage could take
            self.budget -= count * max(kind.itemsize, 4)  # far more than the file holds (stride 0, torch's expand)
            if self.budget < 0:
                raise _Refused(f"refused a tensor of size {size} and stride {stride} of storage {storage.key!r}: "
                               "the copies of the file's tensors would take more memory than 4 times the file and "
                               "64 MiB (views that repeat their storage's elements, such as torch's expand)")
        if count == 0:
            array = np.zeros(size, kind)
        elif contiguous:
            array = elements[offset:offset + count].reshape(size)
        else:
            array = as_strided(elements[offset:], size, [s * kind.itemsize for s in stride], writeable=False).copy()
        array = array.astype(kind.newbyteorder("="), copy=False)
        if dtype == "bfloat16":  # its bits are a float32's upper half
            array = (array.astype(np.uint32) << 16).view(np.float32)
        metadata = metadata or {}
        if not isinstance(metadata, dict) or set(metadata) - {"conj", "neg"}:
            raise _Refused(f"refused tensor metadata {metadata!r}: torch writes only its conj and neg bits")
        if metadata.get("neg"):
            array = -array
        return np.conj(array) if metadata.get("conj") else array


class _Archive:
    """The records of one ``torch.save`` zip archive; ``error(why)`` the exception naming the file."""

    def __init__(self, archive: zipfile.ZipFile, size: int, error: Callable[[str], XpnetFileError]):
        self.zip, self.size, self.error = archive, size, error
        self.records = {info.filename: info for info in archive.infolist()}
        pickles = [n for n in self.records if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1:
            names = ", ".join(map(repr, list(self.records)[:5])) + (", ..." if len(self.records) > 5 else "")
            raise error(f"a zip archive without one <name>/data.pkl, as torch.save writes (it holds {names})")
        self.prefix = pickles[0][:-len("data.pkl")]
        if self.prefix + "constants.pkl" in self.records:
            raise error("it is a TorchScript archive (torch.jit.save), a program, not a state dict: in torch, "
                        "torch.save(torch.jit.load(path).state_dict(), 'weights.pt'), and read that")
        order = self.record("byteorder") if self.prefix + "byteorder" in self.records else b"little"
        if order not in (b"little", b"big"):
            raise error(f"its byteorder record is {order[:20]!r}, expected b'little' or b'big'")
        self.byteorder = order.decode()
        self.storages: dict[str, np.ndarray] = {}

    def _check(self, info: zipfile.ZipInfo) -> zipfile.ZipInfo:
        """``info``, after checking that its record claims no more bytes than the file can hold."""
        stored = info.compress_type == zipfile.ZIP_STORED
        if info.compress_size > self.size or info.file_size > (info.compress_size if stored else
                                                                _MAX_DEFLATE * info.compress_size + 1024):
            raise self.error(f"its record {info.filename!r} claims {info.file_size} bytes, more than the file's "
                             f"{self.size} bytes can hold")
        return info

    def record(self, name: str) -> bytes:
        try:
            return self.zip.read(self._check(self.records[self.prefix + name]))
        except _DAMAGED as exc:
            raise self.error(f"its record {self.prefix + name!r} is damaged ({exc})") from None

    def storage(self, key: str, dtype: str, numel: int) -> _Storage:
        """Storage ``key`` of ``numel`` elements of ``dtype``, read from ``data/<key>`` once."""
        nbytes = numel * np.dtype(DTYPES[dtype]).itemsize
        if key not in self.storages:
            info = self.records.get(f"{self.prefix}data/{key}")
            if info is None:
                raise self.error(f"its data.pkl names storage {key!r}, but the archive has no record "
                                 f"{self.prefix}data/{key}")
            if info.file_size != nbytes:
                raise self.error(f"storage {key!r} should hold {numel} elements of {dtype} ({nbytes} bytes), its "
                                 f"record holds {info.file_size} bytes")
            if info.compress_type != zipfile.ZIP_STORED:  # torch.save stores them: a storage never outgrows the file
                raise self.error(f"its record {info.filename!r} is compressed, where torch.save stores each storage "
                                 "as it is: re-save the file with torch.save")
            self.storages[key] = self._read(self._check(info))
        raw = self.storages[key]
        if raw.nbytes != nbytes:
            raise self.error(f"storage {key!r} is named as {numel} elements of {dtype} ({nbytes} bytes) and as "
                             f"{raw.nbytes} bytes")
        return _Storage(raw, dtype, key)

    def _read(self, info: zipfile.ZipInfo) -> np.ndarray:
        raw = np.empty(info.file_size, np.uint8)
        try:
            with self.zip.open(info) as f:
                filled = fill(f, memoryview(raw), _CHUNK)
        except _DAMAGED as exc:
            raise self.error(f"its record {info.filename!r} is damaged ({exc})") from None
        if filled != raw.size:
            raise self.error(f"its record {info.filename!r} is truncated: {filled} of {raw.size} bytes")
        return raw

    def load(self) -> Any:
        unpickler = _TorchUnpickler(io.BytesIO(self.record("data.pkl")), self.storage, self.byteorder,
                                    4 * self.size + (64 << 20))
        return unpickler.load()


def _not_zip(head: bytes) -> str:
    """Why a file starting with ``head`` is no ``torch.save`` archive."""
    if head[2:14] == b"\x8a\x0a" + TORCH_LEGACY_MAGIC or head[257:262] == b"ustar":
        return TORCH_LEGACY
    return f"it starts with {head[:8]!r}, where a zip archive starts with b'PK\\x03\\x04'"


def read_torch_archive(path: Any, who: str) -> Any:
    """What the ``torch.save`` file at ``path`` holds, every tensor a NumPy array (``who`` names the caller
    in errors). ``path`` may be a binary file object that reads and seeks, as ``torch.load(buffer)``: the archive
    at its position is read, and it is left at that archive's end (:func:`.streams.archive_at`). See the module's
    docstring."""
    if is_file_object(path):
        name, opened = describe(path), contextlib.closing(archive_at(path, who))
    else:
        path = fspath(path, who, "io.BytesIO, open(path, 'rb')")
        name, opened = repr(path), None

    def error(why: str) -> XpnetFileError:
        return XpnetFileError(f"{who}: {name} is not a file of torch.save (the zip archive of torch 1.6 and later): "
                              f"{why}")

    with opened or open_regular(path, error) as f:  # FileNotFoundError names the path
        head = f.read(512)
        if not head:
            raise error("the file is empty (0 bytes)" if opened is None else "there are no bytes at its position")
        if not head.startswith(b"PK\x03\x04"):
            raise error(_not_zip(head))
        try:
            f.seek(0)
            archive = zipfile.ZipFile(f)
        except _DAMAGED as exc:
            raise error(f"it is not a complete zip archive ({exc}); truncated?") from None
        with archive:
            try:
                return _Archive(archive, f.seek(0, io.SEEK_END), error).load()
            except _Refused as exc:
                raise XpnetFileError(f"{who}: {name}: {exc}") from None
            except XpnetFileError:
                raise
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                    MemoryError, OverflowError, RecursionError) as exc:
                raise error(f"its data.pkl cannot be read ({type(exc).__name__}: {exc})") from None
