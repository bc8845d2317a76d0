"""A CuPy stand-in for machines without a GPU: NumPy arrays dressed as CuPy's, under CuPy's device rules.

Only ever first on ``sys.path`` of a subprocess (``tests/test_cupy_rules.py``), never in the pytest
process: array-api-compat would keep its wrapper of this module for the rest of the session.

What it reproduces, each read from CuPy's source (tags v13.6.0 and v14.2.0):

- ``cupy.cuda.Device`` compares by id and cannot be hashed (``cupy/cuda/device.pyx``: ``__richcmp__``,
  no ``__hash__``); ``with Device(n)`` makes GPU n current until the block ends.
- Arrays are made on the current device: creation functions, kernel results, ``astype``
  (array-api-compat's ``zeros``/``empty``/``full``/``arange`` drop ``device=`` for CuPy, and its
  ``asarray`` runs under ``with cupy.cuda.Device(device)``). ``asarray``/``array``/``copy`` of an array
  on another device copy it to the current one (``_core/core.pyx``: ``_array_from_cupy_ndarray``, ``copy``).
- A kernel given an array on a device other than the current one raises ``ValueError`` (``_core/_kernel.pyx``:
  ``_check_peer_access``, as where peer access is unavailable), or with ``FAKE_CUPY_PEER_ACCESS=1`` warns
  (``PerformanceWarning``, a RuntimeWarning) and runs, its result on the current device.
- Random generators hold their state on the device current at their making, and refuse to draw under
  another (``cupy/random/_bit_generator.pyx``); see :mod:`cupy.random`.
- A kernel given a NumPy array raises ``TypeError`` ("Unsupported type"), as does ``numpy.asarray`` of a
  fake array (``__array__``): host arrays and host copies do not pass unseen.
- CuPy 14.2's names only, not NumPy's (:mod:`cupy._names`, generated from CuPy's source by
  ``tests/fake_cupy/make_names.py``): ``cupy``, ``linalg``, ``fft``, ``lib.stride_tricks`` and the ``ndarray``
  methods and attributes; a call with a parameter CuPy's function or method lacks (``where=``, ``like=``,
  ``stable=``...), a ufunc method or keyword CuPy refuses (``maximum.reduce``, ``add(where=)``) and a sort
  ``kind`` other than None/'stable' raise as in CuPy (:mod:`cupy._strict`); sorts are stable, as CuPy's.
  So no ``vecdot`` (array-api-compat falls back to a batched ``matmul``).
- Stream capture (:mod:`cupy.cuda.stream`): on a capturing stream every kernel below is recorded, not
  run, and its new outputs hold garbage until the graph is launched; a launch replays the records.
  Refused there, as CuPy and CUDA refuse them: device-to-host copies and synchronisation, cuBLAS
  (``matmul``/``@``, ``dot``, ``vdot``, ``inner``, ``tensordot``, ``einsum``, ``linalg.matrix_power``
  on float or complex arrays), cuSOLVER (``linalg``), the legacy cuRAND calls (``cupy.random.rand``...).
  A host-to-device copy (``asarray`` of host data) is refused while capturing, as CuPy refuses it
  (``cupy/cuda/memory.pyx``: ``copy_from_host_async`` raises "the current stream is capturing, so H2D
  transfers are disallowed"); stricter than CuPy, also for a 0-d one (CuPy's ``_array_default`` fills
  it with a kernel, its value then baked into the graph), and a launch is refused once an array the
  graph writes, made during the capture from the shared memory pool (or raw cudaMalloc), was freed.
- Integer-array indices out of range wrap (row ``i % n``) in ``take``, ``take_along_axis``, fancy indexing
  (get and set) and ``ufunc.at``, where NumPy raises (:mod:`cupy._indices`).
- ``ElementwiseKernel`` runs its body (plain arithmetic, one statement per ``;``) as NumPy statements,
  ``ReductionKernel`` its map expression summed (``a + b`` reductions only), both under CuPy's type rules
  for their arguments (:mod:`cupy._kernels`); ``RawKernel`` its CUDA source compiled by the host's C++
  compiler with the threads run one after another (:mod:`cupy._raw`).

Here: the array class, NumPy's names wrapped as kernels, ``asarray``/``array``/``asnumpy``. Every kernel
goes through :mod:`cupy._dispatch`: the checks before a launch, the refusals and the recording on a
capturing stream.

``FAKE_CUPY_DEVICES`` sets the number of GPUs (default 1), ``FAKE_CUPY_SMS`` their multiprocessors (132);
``FAKE_CUPY_IMPORT_WARNING=1`` makes ``import cupy`` warn (a RuntimeWarning), as an install may.
"""

import builtins as _builtins
import operator as _operator
import os as _os
import types as _types
import warnings as _warnings

import numpy as _np
from numpy import *  # noqa: F403 - the fake offers NumPy's names, wrapped below
from numpy import abs, bool_, max, min, round  # noqa: F401, A004 - not in NumPy's star import

from . import _indices, cuda
from .cuda.memory import get_default_memory_pool, get_default_pinned_memory_pool  # noqa: F401 - cupy's names
from ._dispatch import PerformanceWarning  # noqa: F401 - where it has been: cupy.PerformanceWarning
# The functions and ndarray below look _call up here, where tests/cupy_layer_checks.py replaces it to count launches.
from ._dispatch import _call, _check, _flat, _host, _kernel, _mask_count, _refuse_library, _to_host, _wrap
from . import _names, _strict

if _os.environ.get("FAKE_CUPY_IMPORT_WARNING") == "1":
    _warnings.warn("CUDA path could not be detected (fake)", RuntimeWarning)


class ndarray:
    """A NumPy array on a (pretend) GPU: ``device``, ``data.device_id``; every kernel checks that its
    arrays live on the current device; no implicit conversion to NumPy (``.get()``), as CuPy."""

    __array_priority__ = 100

    def __init__(self, a, device_id, owner=None):
        self._a, self._device_id, self._owner = a, device_id, owner

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T, self._device_id, self))
    mT = property(lambda self: ndarray(self._a.mT, self._device_id, self))

    @property
    def device(self):
        return cuda.Device(self._device_id)

    @property
    def base(self):
        """CuPy's: the array whose memory a view shares (the first one's, for a view of a view), None for an
        array that owns its memory (``_core/core.pyx``: ``v.base = self.base if self.base is not None else
        self``), where NumPy's would name the NumPy array under the fake."""
        owner = self._owner
        return owner if owner is None or owner._owner is None else owner.base

    @property
    def data(self):
        class Memory:
            device_id = self._device_id
            ptr = self._a.__array_interface__["data"][0]
        return Memory()

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly.")

    def get(self, stream=None, order="C", out=None):
        _to_host()
        return _np.array(self._a, order=order, copy=True)

    def copy(self, order="C"):
        a = self._a
        return _kernel("copy", lambda: _np.array(a, order=order, copy=True), (self,))

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and _np.dtype(dtype) == self.dtype:
            return self
        _check(self)
        a = self._a
        return _kernel("astype", lambda: a.astype(dtype, order=order), (self,))

    def __getattr__(self, name):
        # Only cupy.ndarray's own (no __array_interface__ & co.: NumPy must not read the memory).
        if name not in _names.NDARRAY:
            raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}' (fake CuPy: not in CuPy 14)")
        method = getattr(self._a, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            _strict.check_call(f"ndarray.{name}", _names.NDARRAY[name], args, kwargs)
            kwargs = _strict.stable(f"ndarray.{name}", args, kwargs)
            run = _indices.along(name, self._a.take, self._a) if name == "take" else \
                (lambda *a, **k: getattr(self._a, name)(*a, **k))
            return _call(name, run, args, kwargs)

        return call

    def __getitem__(self, key):
        fancy = _builtins.any(isinstance(k, (ndarray, _np.ndarray, list)) for k in _flat([key]))
        if not fancy:
            h_key = _host(key)
            view = self._a[h_key]
            if isinstance(view, _np.generic):  # every axis indexed by an int: CuPy's is a 0-d view, NumPy's a copy
                view = self._a[(*h_key, Ellipsis) if isinstance(h_key, tuple) else (h_key, Ellipsis)]
            return _wrap(view, self._device_id, self)
        _mask_count(key)
        indices = [k for k in _flat([key]) if isinstance(k, ndarray)]
        _check(self, *indices)
        a, h_key = self._a, _host(key)
        return _kernel("getitem", lambda: a[_indices.key(h_key, a.shape)], (self, *indices))

    def __setitem__(self, key, value):
        arrays = [k for k in _flat([key, value]) if isinstance(k, ndarray)]
        _check(self, *arrays)
        _mask_count(key)

        a, h_key, h_value = self._a, _host(key), _host(value)

        def run():
            a[_indices.key(h_key, a.shape)] = h_value

        _kernel("setitem", run, arrays, (self,), finish=lambda r: None)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _strict.check_ufunc(ufunc, method, kwargs)
        out = kwargs.get("out", ())
        _check(*inputs, *out)
        _refuse_library(ufunc.__name__, inputs)

        h_inputs, h_kwargs = _host(inputs), _host(kwargs)
        finish = (lambda r: out[0] if len(out) == 1 else out) if out else None
        if method == "at":  # ufunc.at(a, indices, b): CuPy's scatter kernels wrap the indices
            return _kernel(f"{ufunc.__name__}.at", lambda: ufunc.at(h_inputs[0], _indices.key(
                h_inputs[1], h_inputs[0].shape), *h_inputs[2:]), inputs[1:], inputs[:1], lambda r: None)
        return _kernel(f"{ufunc.__name__}.{method}" if method != "__call__" else ufunc.__name__,
                       lambda: getattr(ufunc, method)(*h_inputs, **h_kwargs), inputs, out, finish)

    def __array_function__(self, func, types, args, kwargs):
        # CuPy runs its own function of that name, or returns NotImplemented (core.pyx:2028-2044).
        module = {"numpy": _names.CUPY, "numpy.linalg": _names.LINALG, "numpy.fft": _names.FFT}.get(func.__module__)
        if module is None or func.__name__ not in module:
            return NotImplemented
        _strict.check_call(func.__name__, module[func.__name__], args, kwargs)
        return _call(func.__name__, func, args, kwargs)

    def __repr__(self):
        return f"fake cupy {self._a!r} on {self.device}"

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self):
        _to_host()
        return _builtins.bool(self._a)

    def __float__(self):
        _to_host()
        return float(self._a)

    def __int__(self):
        _to_host()
        return int(self._a)

    def __index__(self):
        _to_host()
        return _operator.index(self._a)

    def __complex__(self):
        _to_host()
        return complex(self._a)


ndarray.__module__ = "cupy"


def _operators():
    unary = {"neg": negative, "pos": positive, "abs": absolute, "invert": invert}  # noqa: F405
    binary = {"add": add, "sub": subtract, "mul": multiply, "truediv": true_divide,  # noqa: F405
              "floordiv": floor_divide, "mod": remainder, "pow": power, "matmul": matmul,  # noqa: F405
              "and": bitwise_and, "or": bitwise_or, "xor": bitwise_xor,  # noqa: F405
              "lshift": left_shift, "rshift": right_shift}  # noqa: F405
    compare = {"eq": equal, "ne": not_equal, "lt": less, "le": less_equal, "gt": greater,  # noqa: F405
               "ge": greater_equal}  # noqa: F405
    for name, u in unary.items():
        setattr(ndarray, f"__{name}__", lambda self, u=u: u(self))
    for name, u in {**binary, **compare}.items():
        setattr(ndarray, f"__{name}__", lambda self, other, u=u: u(self, other))
    for name, u in binary.items():
        setattr(ndarray, f"__r{name}__", lambda self, other, u=u: u(other, self))
        setattr(ndarray, f"__i{name}__", lambda self, other, u=u: u(self, other, out=(self,)))
    ndarray.__hash__ = None


_operators()


def asarray(a, dtype=None, order=None, **kwargs):
    if isinstance(a, ndarray) and a._device_id != cuda.get_device_id():
        a = a.copy()
    if isinstance(a, ndarray):
        return a if dtype is None or _np.dtype(dtype) == a.dtype else a.astype(dtype)
    if cuda.stream.capturing() is not None:
        raise RuntimeError(f"the current stream is capturing, so H2D transfers are disallowed (fake CuPy: "
                           f"{type(a).__name__} -> cupy.ndarray; a 0-d one CuPy fills by a kernel whose value stays "
                           "baked into the graph). Make the array before the capture and fill it there")
    cuda.stream.uploaded()
    return _wrap(_np.array(a, dtype=dtype, order=order, copy=True))


def array(a, dtype=None, copy=True, order="K", **kwargs):
    if isinstance(a, ndarray) and (copy or a._device_id != cuda.get_device_id()):
        a = a.copy()
    return asarray(a, dtype=dtype)


def asnumpy(a, stream=None, order="C", out=None):
    return a.get() if isinstance(a, ndarray) else _np.asarray(a)


def _function(name, f, names=_names.CUPY):
    """NumPy's ``f`` as CuPy's ``name`` (its parameters from ``names``): a kernel."""
    def call(*args, **kwargs):
        _strict.check_call(name, names.get(name), args, kwargs)
        return _call(name, _indices.along(name, f) if name in _indices.ALONG else f, args,
                     _strict.stable(name, args, kwargs))

    call.__name__ = call.__qualname__ = name
    return call


for _name in list(globals()):
    _f = globals()[_name]
    if (not _name.startswith("_") and callable(_f) and getattr(_f, "__module__", "").startswith("numpy")
            and not isinstance(_f, (type, _np.ufunc))):
        globals()[_name] = _function(_name, _f)


from ._kernels import ElementwiseKernel, ReductionKernel  # noqa: E402, F401 - after ndarray, which they use
from ._raw import RawKernel  # noqa: E402, F401 - after ndarray, which it uses

lib = _types.SimpleNamespace(stride_tricks=_types.SimpleNamespace(
    as_strided=_function("as_strided", _np.lib.stride_tricks.as_strided, _names.STRIDE_TRICKS)))

asarray, array, asnumpy = (_strict.checked(f.__name__, f, _names.CUPY[f.__name__]) for f in (asarray, array, asnumpy))

# CuPy's names only (cupy/_names.py): NumPy's others came with the star import, as its fft, linalg, random.
for _name in [n for n in globals() if not n.startswith("_") and n not in _names.CUPY]:
    del globals()[_name]
for _name in ("fft", "linalg", "random"):
    globals().pop(_name, None)
from . import fft, linalg, random  # noqa: E402 - submodules after the names they use
