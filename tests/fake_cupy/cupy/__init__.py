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
- No ``vecdot`` (not in CuPy 14: array-api-compat falls back to a batched ``matmul``).
- ``ElementwiseKernel`` runs its body (plain arithmetic, one statement per ``;``) as NumPy statements,
  ``ReductionKernel`` its map expression summed (``a + b`` reductions only), ``RawKernel`` its CUDA source
  compiled by the host's C++ compiler with the threads run one after another (:mod:`cupy._raw`).

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

from . import cuda

if _os.environ.get("FAKE_CUPY_IMPORT_WARNING") == "1":
    _warnings.warn("CUDA path could not be detected (fake)", RuntimeWarning)

del vecdot  # noqa: F821 - CuPy 14 has none

# Functions and methods that only make a view or read metadata: no kernel, so no device check (as in
# CuPy), and the result lives where its input does.
_VIEWS = {"reshape", "ravel", "transpose", "permute_dims", "moveaxis", "swapaxes", "expand_dims", "squeeze",
          "broadcast_to", "broadcast_arrays", "matrix_transpose", "unstack", "view", "shape", "ndim", "size",
          "result_type", "may_share_memory", "shares_memory", "isdtype", "can_cast", "as_strided"}


class PerformanceWarning(RuntimeWarning):
    """``cupy._util.PerformanceWarning``."""


def _check(*arrays):
    """What CuPy checks before a kernel: its arrays are on the current device, none is NumPy's."""
    current = cuda.get_device_id()
    for a in arrays:
        if isinstance(a, _np.ndarray):
            raise TypeError(f"Unsupported type {type(a)}")
        if isinstance(a, ndarray) and a._device_id != current:
            message = (f"The device where the array resides ({a._device_id}) is different from the current "
                       f"device ({current}).")
            if _os.environ.get("FAKE_CUPY_PEER_ACCESS") != "1":
                raise ValueError(f"{message} Peer access is unavailable between these devices.")
            _warnings.warn(f"{message} Peer access has been activated automatically.", PerformanceWarning)


def _flat(args):
    for a in args:
        if isinstance(a, (list, tuple)):
            yield from _flat(a)
        elif isinstance(a, dict):
            yield from _flat(a.values())
        else:
            yield a


def _host(a):
    """The NumPy array inside a fake one (anything else unchanged), also inside lists, tuples and dicts."""
    if isinstance(a, ndarray):
        return a._a
    if isinstance(a, (list, tuple)):
        return type(a)(_host(x) for x in a)
    if isinstance(a, dict):
        return {k: _host(v) for k, v in a.items()}
    return a


def _wrap(r, device_id=None):
    """NumPy results as fake arrays on ``device_id`` (default: the current device); CuPy returns 0-d
    arrays where NumPy returns scalars."""
    if isinstance(r, (_np.ndarray, _np.generic)):
        return ndarray(_np.asarray(r), cuda.get_device_id() if device_id is None else device_id)
    if isinstance(r, tuple) and hasattr(r, "_fields"):
        return type(r)(*(_wrap(x, device_id) for x in r))
    if isinstance(r, (list, tuple)):
        return type(r)(_wrap(x, device_id) for x in r)
    return r


def _call(name, f, args, kwargs):
    """``f`` on the NumPy arrays inside ``args``: a kernel (checked, result on the current device) or,
    for the names in _VIEWS, a view (unchecked, result where the first array lives)."""
    arrays = [a for a in _flat([args, kwargs]) if isinstance(a, ndarray)]
    if name in _VIEWS:
        return _wrap(f(*_host(args), **_host(kwargs)), arrays[0]._device_id if arrays else None)
    _check(*arrays)
    return _wrap(f(*_host(args), **_host(kwargs)))


class ndarray:
    """A NumPy array on a (pretend) GPU: ``device``, ``data.device_id``; every kernel checks that its
    arrays live on the current device; no implicit conversion to NumPy (``.get()``), as CuPy."""

    __array_priority__ = 100

    def __init__(self, a, device_id):
        self._a, self._device_id = a, device_id

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T, self._device_id))
    mT = property(lambda self: ndarray(self._a.mT, self._device_id))

    @property
    def device(self):
        return cuda.Device(self._device_id)

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
        return _np.array(self._a, order=order, copy=True)

    def copy(self, order="C"):
        return _wrap(_np.array(self._a, order=order, copy=True))

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and _np.dtype(dtype) == self.dtype:
            return self
        _check(self)
        return _wrap(self._a.astype(dtype, order=order))

    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__ & co.: NumPy must not read the memory
            raise AttributeError(name)
        method = getattr(self._a, name)
        if not callable(method):
            return method
        return lambda *args, **kwargs: _call(name, lambda *a, **k: getattr(self._a, name)(*a, **k), args, kwargs)

    def __getitem__(self, key):
        fancy = _builtins.any(isinstance(k, (ndarray, _np.ndarray, list)) for k in _flat([key]))
        if fancy:
            _check(self, *(k for k in _flat([key]) if isinstance(k, ndarray)))
        return _wrap(self._a[_host(key)], None if fancy else self._device_id)

    def __setitem__(self, key, value):
        _check(self, *(k for k in _flat([key, value]) if isinstance(k, ndarray)))
        self._a[_host(key)] = _host(value)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out", ())
        _check(*inputs, *out)
        result = getattr(ufunc, method)(*_host(inputs), **_host(kwargs))
        return (out[0] if len(out) == 1 else out) if out else _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        return _call(func.__name__, func, args, kwargs)

    def __repr__(self):
        return f"fake cupy {self._a!r} on {self.device}"

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self):
        return _builtins.bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return _operator.index(self._a)

    def __complex__(self):
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
    return _wrap(_np.array(a, dtype=dtype, order=order, copy=True))


def array(a, dtype=None, copy=True, order="K", **kwargs):
    if isinstance(a, ndarray) and (copy or a._device_id != cuda.get_device_id()):
        a = a.copy()
    return asarray(a, dtype=dtype)


def asnumpy(a):
    return a.get() if isinstance(a, ndarray) else _np.asarray(a)


def _function(name, f):
    def call(*args, **kwargs):
        return _call(name, f, args, kwargs)

    call.__name__ = call.__qualname__ = name
    return call


for _name in list(globals()):
    _f = globals()[_name]
    if (not _name.startswith("_") and callable(_f) and getattr(_f, "__module__", "").startswith("numpy")
            and not isinstance(_f, (type, _np.ufunc))):
        globals()[_name] = _function(_name, _f)


def _scope(params, args):
    names = [p.split()[-1] for p in params.split(",") if p.strip()]
    return dict(zip(names, args)), names


class ElementwiseKernel:
    """The kernel body run as NumPy statements on the arrays' memory; scalars cast to the arrays' dtype."""

    def __init__(self, in_params, out_params, operation, name="kernel", **kwargs):
        self.in_params, self.out_params, self.operation = in_params, out_params, operation

    def __call__(self, *args):
        _check(*args)
        dtype = next(a for a in args if isinstance(a, ndarray)).dtype
        scope, _ = _scope(f"{self.in_params}, {self.out_params}", args)
        scope = {k: v._a if isinstance(v, ndarray) else dtype.type(v) for k, v in scope.items()}
        outputs = {k: scope[k] for k in _scope(self.out_params, ())[1]}
        for statement in filter(None, (s.strip() for s in self.operation.split(";"))):
            exec(statement, {"sqrt": _np.sqrt}, scope)  # noqa: S102 - the package's own kernel bodies
        for k, target in outputs.items():
            if scope[k] is not target:
                target[...] = scope[k]


class ReductionKernel:
    """``map_expr`` evaluated in NumPy and summed over ``axis`` (``reduce_expr`` must be ``a + b``)."""

    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity, name="reduce",
                 **kwargs):
        if reduce_expr.replace(" ", "") != "a+b" or post_map_expr.replace(" ", "") not in ("", "y=a"):
            raise NotImplementedError("the fake ReductionKernel sums a map expression into y, nothing else")
        self.in_params, self.map_expr = in_params, map_expr

    def __call__(self, *args, axis=None, keepdims=False):
        _check(*args)
        scope, _ = _scope(self.in_params, _host(args))
        mapped = eval(self.map_expr, {"sqrt": _np.sqrt}, scope)  # noqa: S307 - the package's own kernels
        return _wrap(_np.sum(mapped, axis=axis, keepdims=keepdims, dtype=args[0].dtype))


from ._raw import RawKernel  # noqa: E402, F401 - needs ndarray and _check above

lib = _types.SimpleNamespace(stride_tricks=_types.SimpleNamespace(
    as_strided=_function("as_strided", _np.lib.stride_tricks.as_strided)))

for _name in ("fft", "linalg", "random"):  # NumPy's modules of these names came with the star import
    globals().pop(_name, None)
from . import fft, linalg, random  # noqa: E402 - submodules after the names they use
