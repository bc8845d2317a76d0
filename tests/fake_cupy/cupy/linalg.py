"""The fake's ``cupy.linalg``: NumPy's, results on the current device."""

import numpy.linalg as _linalg

import cupy as _cupy

__all__ = [n for n in dir(_linalg) if not n.startswith("_") and callable(getattr(_linalg, n))
           and not isinstance(getattr(_linalg, n), type)]
globals().update({n: _cupy._function(n, getattr(_linalg, n)) for n in __all__})
