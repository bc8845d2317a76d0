"""Out-of-range integer indices wrap, as CuPy's kernels take them (``cupy/_core/_routines_indexing.pyx``,
v14.2.0: ``_take_kernel_core``'s ``indices % index_range``, the scatter kernels' ``indices % adim`` behind
``a[idx] = v`` and ``cupyx.scatter_add``, and ``_prepare_array_indexing``, "wrap all out-of-bound indices", behind
``a[idx0, idx1]``): where NumPy raises ``IndexError``, CuPy reads or writes another row, silently. Integer
scalars are basic indexing, checked by CuPy as by NumPy; ``take_along_axis`` is fancy indexing in CuPy.
"""

import numpy as _np


def _wrapped(indices, length):
    """``indices`` (NumPy integers) modulo ``length``, in their own dtype; other things as they came."""
    if isinstance(indices, list):
        try:
            indices = _np.asarray(indices)
        except ValueError:
            return indices
    if not isinstance(indices, _np.ndarray) or indices.dtype.kind not in "iu" or not length:
        return indices
    return _np.mod(indices, length).astype(indices.dtype, copy=False)


def _axes(part):
    """How many axes of the indexed array an index part consumes."""
    if part is None or part is Ellipsis:
        return 0
    if isinstance(part, (list, _np.ndarray)) and _np.asarray(part).dtype == bool:
        return _np.asarray(part).ndim
    return 1


def key(key, shape):
    """A ``__getitem__``/``__setitem__`` key (NumPy arrays inside) with its integer arrays wrapped."""
    parts = list(key) if isinstance(key, tuple) else [key]
    rest = len(shape) - sum(_axes(p) for p in parts)
    out, axis = [], 0
    for part in parts:
        if part is Ellipsis:
            axis += rest
        elif axis < len(shape):
            part = _wrapped(part, shape[axis])
        out.append(part)
        axis += _axes(part)
    return tuple(out) if isinstance(key, tuple) else out[0]


ALONG = ("take", "take_along_axis")


def along(name, f, a=None):
    """``f`` (NumPy's ``take``/``take_along_axis``, or ``a.take``) with its indices wrapped along their axis when
    it runs (a kernel recorded in a capture reads them at its replay)."""
    def call(*args, **kwargs):
        array, rest = (a, list(args)) if a is not None else (args[0], list(args[1:]))
        if not rest and "indices" not in kwargs:
            return f(*args, **kwargs)
        axis = rest[1] if len(rest) > 1 else kwargs.get("axis", -1 if name == "take_along_axis" else None)
        length = array.size if axis is None else array.shape[axis]
        if rest:
            rest[0] = _wrapped(rest[0], length)
        else:
            kwargs = {**kwargs, "indices": _wrapped(kwargs["indices"], length)}
        return f(*args[:len(args) - len(rest)], *rest, **kwargs)

    return call
