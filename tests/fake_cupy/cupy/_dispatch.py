"""Every kernel of the fake CuPy goes through :func:`_kernel`: CuPy's checks before a launch (arrays on
the current device, no NumPy array), the refusals on a capturing stream (cuBLAS, device-to-host copies),
and the recording of the kernel there instead of running it (:mod:`cupy.cuda.stream` replays the records).
:func:`_call` sends a NumPy function or method to it, or makes a view without a kernel.

The package imports the names it uses from here; ``tests/cupy_layer_checks.py`` counts launches by
replacing ``cupy._call``, which the package's functions and ``ndarray`` look up in the package.
"""

import os as _os
import warnings as _warnings
import weakref as _weakref

import numpy as _np

import cupy as _cupy
from . import _rounding, cuda

# Functions and methods that only make a view or read metadata: no kernel, so no device check (as in
# CuPy), and the result lives where its input does; but a reshape or ravel that has to copy is a kernel.
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
        if isinstance(a, _cupy.ndarray) and a._device_id != current:
            message = (f"The device where the array resides ({a._device_id}) is different from the current "
                       f"device ({current}).")
            if _os.environ.get("FAKE_CUPY_PEER_ACCESS") != "1":
                raise ValueError(f"{message} Peer access is unavailable between these devices.")
            _warnings.warn(f"{message} Peer access has been activated automatically.", PerformanceWarning)


_CUBLAS = {"matmul", "dot", "vdot", "inner", "tensordot", "einsum", "matrix_power"}


def _refuse_library(name, arrays):
    """cuBLAS on a capturing stream: CuPy's NotImplementedError (integer products use CuPy's own kernel)."""
    if name in _CUBLAS and cuda.stream.capturing() is not None \
            and any(a.dtype.kind in "fc" for a in arrays if isinstance(a, _cupy.ndarray)):
        raise NotImplementedError("calling cuBLAS API during stream capture is currently unsupported")


def _to_host():
    """A device-to-host copy (``get``, ``float``, ``item``...): the host waits for the GPU (counted,
    ``cupy.cuda.stream.host_waits``); while the current stream captures, CuPy refuses it before calling CUDA, so
    the capture goes on (``cupy/cuda/memory.pyx``: ``copy_to_host_async``)."""
    if cuda.stream.capturing() is not None:
        raise RuntimeError("the current stream is capturing, so D2H transfers are disallowed")
    cuda.stream.waited()


# Functions whose output shape depends on the data: CuPy reads a count back to the host to size it (a
# synchronising device-to-host copy, "# synchronize!" in its source): nonzero and its users
# (_core/_routines_indexing.pyx:123), bincount (_statistics/histogram.py:560), unique
# (_manipulation/add_remove.py:324).
_SIZED_BY_DATA = {"nonzero", "argwhere", "flatnonzero", "extract", "compress", "bincount", "unique", "unique_all",
                  "unique_counts", "unique_inverse", "unique_values", "trim_zeros"}


def _mask_count(key):
    """Indexing by a boolean array (``a[mask]``, ``a[mask] = v``, also inside a tuple): CuPy counts the mask's
    True entries on the host to size the result (``_core/_routines_indexing.pyx:802``, ``int(mask_scanned[-1])``;
    other boolean indices through nonzero, line 123), a device-to-host copy, refused while capturing."""
    if any(isinstance(k, (_np.ndarray, _cupy.ndarray)) and k.dtype == _np.bool_ for k in _flat([key])):
        _to_host()


def _sized_by_data(name, args, kwargs):
    """Whether CuPy's ``name`` called so reads a count back to the host (see _SIZED_BY_DATA; ``where`` of one
    argument is nonzero)."""
    return name in _SIZED_BY_DATA or (name == "where" and len(args) + len(kwargs) == 1)


def _garbage(a):
    """What fresh device memory holds before any kernel wrote it."""
    a[...] = _np.nan if a.dtype.kind in "fc" else (True if a.dtype.kind == "b" else -1)


def _leaves(r):
    """The arrays of a (nested) result, in order."""
    if isinstance(r, (list, tuple)):
        for x in r:
            yield from _leaves(x)
    elif isinstance(r, (_np.ndarray, _np.generic, _cupy.ndarray)):
        yield r


def _kernel(name, compute, inputs=(), writes=(), finish=None, label=None, counted_as=None):
    """Every kernel of the fake. ``compute()`` works on NumPy arrays only (the fake arrays' memory, taken
    when the kernel is launched) and returns NumPy results; ``finish`` makes of them what the call
    returns (default: fake arrays on the current device). ``writes`` are the fake arrays it writes in
    place. On a capturing stream the kernel is recorded and not run: ``compute`` gives the result's
    shapes, ``writes`` are put back as they were, new outputs are filled with garbage; the record holds
    memory, never the fake arrays (a graph keeps no Python object alive). Each call is counted in
    ``cupy.cuda.stream.launches`` under ``counted_as`` (default ``name``)."""
    finish = _wrap if finish is None else finish
    cuda.stream.launched(counted_as or name)
    compute = _rounding.wrap(label or name, compute, inputs, writes, _leaves)
    capture = cuda.stream.capturing()
    if capture is None:
        return finish(compute())
    if capture.invalid is not None:
        raise cuda.CUDARuntimeError(*cuda.stream.INVALIDATED)
    saved = [(w._a, w._a.copy()) for w in writes]
    try:
        raw = compute()
    finally:
        for a, old in saved:
            a[...] = old
    result = finish(raw)
    seen = [x._a for x in (*inputs, *writes) if isinstance(x, _cupy.ndarray)]
    targets = []
    for made, wrapped in zip(_leaves(raw), _leaves(result)):
        if not isinstance(wrapped, _cupy.ndarray) or any(_np.may_share_memory(wrapped._a, x) for x in seen):
            targets.append(None)
            continue
        _garbage(wrapped._a)
        targets.append(wrapped._a)
        capture.allocations.append((_weakref.ref(wrapped), cuda.memory.get_allocator(),
                                    f"{name} -> {wrapped.dtype}{wrapped.shape}"))
    capture.records.append(cuda.stream._Record(name, compute, targets))
    return result


def _freed_into_shared_pool(allocations):
    return [what for ref, allocator, what in allocations if ref() is None and cuda.memory.is_shared(allocator)]


def _flat(args, leaves=None):
    """The leaves of nested lists, tuples and dicts, in order (a list, built without generators: the fake
    flattens the arguments of every call)."""
    leaves = [] if leaves is None else leaves
    for a in args:
        if isinstance(a, (list, tuple)):
            _flat(a, leaves)
        elif isinstance(a, dict):
            _flat(a.values(), leaves)
        else:
            leaves.append(a)
    return leaves


def _host(a):
    """The NumPy array inside a fake one (anything else unchanged), also inside lists, tuples and dicts."""
    if isinstance(a, _cupy.ndarray):
        return a._a
    if isinstance(a, (list, tuple)):
        return type(a)([_host(x) for x in a])
    if isinstance(a, dict):
        return {k: _host(v) for k, v in a.items()}
    return a


def _wrap(r, device_id=None, owner=None):
    """NumPy results as fake arrays on ``device_id`` (default: the current device); CuPy returns 0-d
    arrays where NumPy returns scalars. A view keeps its ``owner`` alive, as CuPy's keeps its memory."""
    if isinstance(r, (_np.ndarray, _np.generic)):
        return _cupy.ndarray(_np.asarray(r), cuda.get_device_id() if device_id is None else device_id, owner)
    if isinstance(r, tuple) and hasattr(r, "_fields"):
        return type(r)(*(_wrap(x, device_id, owner) for x in r))
    if isinstance(r, (list, tuple)):
        return type(r)(_wrap(x, device_id, owner) for x in r)
    return r


def _call(name, f, args, kwargs):
    """``f`` on the NumPy arrays inside ``args``: a kernel (checked, result on the current device) or,
    for the names in _VIEWS, a view (unchecked, result where the first array lives)."""
    arrays = [a for a in _flat([args, kwargs]) if isinstance(a, _cupy.ndarray)]
    if name in _VIEWS:
        view = f(*_host(args), **_host(kwargs))
        # A reshape that cannot be a view copies, as CuPy's does with a kernel: run (or record) it as one.
        if not (name in ("reshape", "ravel") and arrays and isinstance(view, _np.ndarray) and view.size
                and not _np.may_share_memory(view, arrays[0]._a)):
            return _wrap(view, arrays[0]._device_id if arrays else None, arrays[0] if arrays else None)
    if name in ("get", "item", "tolist", "tobytes", "asnumpy") or _sized_by_data(name, args, kwargs):
        _to_host()
    _check(*arrays)
    _refuse_library(name, arrays)
    out = kwargs.get("out")
    writes = [out] if isinstance(out, _cupy.ndarray) else []
    h_args, h_kwargs = _host(args), _host(kwargs)
    return _kernel(name, lambda: f(*h_args, **h_kwargs), arrays, writes,
                   (lambda r: out) if writes else None)

