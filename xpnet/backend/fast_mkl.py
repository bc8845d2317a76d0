"""NumPy fast path through Intel MKL: the recurrent layers' per-step products by weights packed once.

An LSTM's time loop multiplies a short (N, H) state by the same (H, 4H) matrix at every step, forward
(``h @ Wh``) and backward (``da @ Wh.T``). A BLAS copies ("packs") the whole matrix into its own layout at
each call; MKL's packed GEMM (``cblas_?gemm_pack`` once, ``cblas_?gemm_compute`` per step) does it once per
sequence, as PyTorch's oneDNN LSTM does. At the book's BetterRnnlm sizes (N=20, H=650, float32, one
thread) a step's product took 0.50 ms against OpenBLAS's 0.94 ms, for 0.6 ms of packing per forward or
backward (``benchmarks/lstm_lm.py``).

Used where the ``mkl`` package is installed (``pip install 'xpnet[mkl]'``; NumPy's own BLAS stays what it
is), on float32 and float64 weights; ``xn.backend.set_mkl(False)`` or ``XPNET_DISABLE_MKL=1`` switches it
off. MKL runs sequentially here (one thread, set before its first call): the products are small, and a
second thread pool beside NumPy's would fight it for the cores. The results are the same for the same
inputs whatever their memory alignment (checked in ``tests/test_mkl.py``), so training stays
reproducible; they differ from NumPy's products by rounding.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
from typing import Any, Callable

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS, _PACKED, _B_MATRIX = 101, 111, 112, 151, 162
_SEQUENTIAL, _LP64 = 1, 0
MIN_STEPS = 2  # packing costs about one product: a single step multiplies as NumPy does


def _library_path() -> str:
    """libmkl_rt from the ``mkl`` distribution's files (the wheel puts it in ``<prefix>/lib``)."""
    for f in importlib.metadata.files("mkl") or ():
        if f.name.startswith(("libmkl_rt.so", "mkl_rt.", "libmkl_rt.")):
            return str(f.locate())
    raise ImportError("the mkl package holds no mkl_rt library")


def _load() -> Any:
    lib = ctypes.CDLL(_library_path())
    lib.MKL_Set_Threading_Layer(_SEQUENTIAL)  # before any other call, or it is ignored
    lib.MKL_Set_Interface_Layer(_LP64)  # 32-bit integer arguments, whatever MKL_INTERFACE_LAYER says
    i, p = ctypes.c_int, ctypes.c_void_p
    for kind, real in (("s", ctypes.c_float), ("d", ctypes.c_double)):
        size = getattr(lib, f"cblas_{kind}gemm_pack_get_size")
        size.restype, size.argtypes = ctypes.c_size_t, [i, i, i, i]
        getattr(lib, f"cblas_{kind}gemm_pack").argtypes = [i, i, i, i, i, i, real, p, i, p]
        getattr(lib, f"cblas_{kind}gemm_compute").argtypes = [i, i, i, i, i, i, p, i, p, i, real, p, i]
    return lib


_lib = _load()
_KIND = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}


class PackedWeights:
    """``W`` (K, J) (or ``W.T`` with ``transpose``) for ``a @ packed``, a (M, K) by (K, J) product, packed for
    MKL on the first product with a given M (the packing depends on it) and reused for the others.

    ``a`` that is not a C-contiguous 2-D array of W's dtype, or an M other than the packed one, is
    multiplied by NumPy as ``a @ W``. ``__array_ufunc__ = None`` makes ``ndarray @ packed`` ask
    ``packed.__rmatmul__``, so code written for ``h @ Wh`` runs unchanged.
    """

    __array_ufunc__ = None

    def __init__(self, W: Any, transpose: bool = False):
        self.W = W.T if transpose else W  # what it multiplies by, for NumPy's fallback
        self._source = W  # C-contiguous, as stored: MKL reads it with the transposition flag
        self._trans = _TRANS if transpose else _NO_TRANS
        self._kind = _KIND[W.dtype]
        self._rows = -1
        self._buffer: Any = None
        self.shape, self.dtype = self.W.shape, W.dtype

    def _pack(self, rows: int) -> None:
        k, n = self.shape
        size = getattr(_lib, f"cblas_{self._kind}gemm_pack_get_size")(_B_MATRIX, rows, n, k)
        self._buffer = np.empty(-(-size // self.dtype.itemsize), dtype=self.dtype)
        one = 1.0
        getattr(_lib, f"cblas_{self._kind}gemm_pack")(_ROW_MAJOR, _B_MATRIX, self._trans, rows, n, k, one,
                                                      self._source.ctypes.data, self._source.shape[1],
                                                      self._buffer.ctypes.data)
        self._rows = rows

    def __rmatmul__(self, a: Any) -> Any:
        if not (isinstance(a, np.ndarray) and a.ndim == 2 and a.dtype == self.dtype and a.flags.c_contiguous
                and a.shape[1] == self.shape[0] and a.shape[0] > 0):
            return a @ self.W
        rows = a.shape[0]
        if self._rows < 0:
            self._pack(rows)
        elif rows != self._rows:
            return a @ self.W
        k, n = self.shape
        out = np.empty((rows, n), dtype=self.dtype)
        getattr(_lib, f"cblas_{self._kind}gemm_compute")(_ROW_MAJOR, _NO_TRANS, _PACKED, rows, n, k, a.ctypes.data,
                                                         k, self._buffer.ctypes.data, n, 0.0, out.ctypes.data, n)
        return out


def _packable(W: Any, steps: int) -> bool:
    return (steps >= MIN_STEPS and isinstance(W, np.ndarray) and W.ndim == 2 and W.dtype in _KIND
            and W.flags.c_contiguous and W.size > 0)


def step_weights(W: Any, steps: int) -> Any:
    """W (K, J) ready for ``steps`` products ``a @ W`` (a time loop's): packed for MKL."""
    return PackedWeights(W)


def step_weights_transposed(W: Any, steps: int) -> Any:
    """W.T (J, K) ready for ``steps`` products ``a @ W.T`` (a backward time loop's): packed for MKL from W
    itself (no transposed copy)."""
    return PackedWeights(W, transpose=True)


def register(add: Callable[..., Any]) -> None:
    add("step_weights", step_weights, accepts=_packable)
    add("step_weights_transposed", step_weights_transposed, accepts=_packable)
