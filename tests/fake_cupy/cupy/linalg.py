"""The fake's ``cupy.linalg``: NumPy's, results on the current device. On a capturing stream the
cuSOLVER routines (all but the norms and products) raise CuPy's NotImplementedError, the products cuBLAS's."""

import numpy.linalg as _linalg

import cupy as _cupy

__all__ = [n for n in dir(_linalg) if n in _cupy._names.LINALG and callable(getattr(_linalg, n))
           and not isinstance(getattr(_linalg, n), type)]
_NO_SOLVER = {"norm", "vector_norm", "matrix_norm", "matmul", "tensordot", "matrix_power", "multi_dot", "vecdot",
              "cross", "outer", "diagonal", "trace", "matrix_transpose"}


def _refusing(name):
    wrapped = _cupy._function(name, getattr(_linalg, name), _cupy._names.LINALG)

    def call(*args, **kwargs):
        if name not in _NO_SOLVER and _cupy.cuda.stream.capturing() is not None:
            raise NotImplementedError("calling cuSOLVER API during stream capture is currently unsupported")
        return wrapped(*args, **kwargs)

    call.__name__ = name
    return call


globals().update({n: _refusing(n) for n in __all__})
