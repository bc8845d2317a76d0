"""NumPy fast path through Intel MKL: the layers' matrix products, and the recurrent layers' per-step
products by weights packed once.

Two things, where the ``mkl`` package is installed (``pip install 'xpnet[mkl]'``), on float32/float64 arrays:

1. **Packed weights for the time steps.** An LSTM's time loop multiplies a short (N, H) state by the same
   (H, 4H) matrix at every step, forward (``h @ Wh``) and backward (``da @ Wh.T``). A BLAS copies ("packs")
   the whole matrix into its own layout at each call; MKL's packed GEMM (``cblas_?gemm_pack`` once,
   ``cblas_?gemm_compute`` per step) does it once per sequence, as PyTorch's oneDNN LSTM does. At the
   book's BetterRnnlm sizes (N=20, H=650, float32, one thread) a step's product took 0.50 ms against
   OpenBLAS's 0.94 ms, for 0.6 ms of packing per forward or backward.
2. **One thread pool for the largest products.** Where MKL can run threaded (its GNU OpenMP layer, which
   needs libgomp), the layers' products of more than 2**30 multiply-adds whose three sides are each at
   least 256 (``fast_path("matmul")``: Linear, Conv2d, the recurrent layers' whole-sequence products,
   TiedLinear) go through MKL too, so that a language model's step (all of whose products are that
   large at the book's sizes) runs on one thread pool. Two BLAS pools in one training step fight:
   OpenBLAS's idle threads spin for tens of milliseconds after each product and take the core MKL's
   second thread needs (a step product on two threads took 0.26 ms after a pause, 0.49 ms right after an
   OpenBLAS product). Smaller products, and stacks of matrices (3-d operands), stay with NumPy, where
   OpenBLAS is the faster (MKL's threaded GEMM took 1.4-2.5x its time from 78 to 784 million
   multiply-adds); the MLPs and CNNs of ``benchmarks/compare.py`` run none of their products through
   MKL (see ``MIN_SIDE``).

MKL's thread count follows NumPy's BLAS at each call (``OMP_NUM_THREADS``, ``threadpoolctl`` limits and
xpnet's thread tuner set both). Without libgomp MKL runs sequentially and only the step products go
through it. NumPy keeps its own BLAS for everything else. Results differ from OpenBLAS's by rounding; at
a given thread count they do not depend on the operands' memory alignment (``tests/test_mkl.py``), so
reruns and resumes stay exact. ``xn.backend.set_mkl(False)`` or ``XPNET_DISABLE_MKL=1`` switches MKL off
(and keeps its library out of the process).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
from typing import Any, Callable

import numpy as np

from .threads import numpy_blas_threads

_ROW_MAJOR, _NO_TRANS, _TRANS, _PACKED, _B_MATRIX = 101, 111, 112, 151, 162
_SEQUENTIAL, _GNU, _LP64 = 1, 3, 0
MIN_STEPS = 2  # packing costs about one product: a single step multiplies as NumPy does
# m * n * k above this: MKL (2**30, about a billion multiply-adds, measured here: below it MKL's threaded
# GEMM took 1.4-2.5x OpenBLAS's time for a (1000, 784) by (784, 100) to a (1000, 784) by (784, 1000)
# product, at (700, 2600) by (2600, 650) and above 0.82-1.06x). Smaller products stay with NumPy.
MIN_PRODUCT = 2 ** 30
# ... and m, n and k each at least this. A convolution's products are as narrow as its channels (64 x 288 by
# 288 x 196,000 in the modern CNN of benchmarks/compare.py at batch 1000), and its step runs smaller
# products (its linear layers') on OpenBLAS beside them: two pools in one step, measured 2-9 % slower than
# this floor (one model, interleaved) and up to 18 % slower than MKL off in compare.py's "without MKL"
# column. A language model's products are at least 650 wide.
MIN_SIDE = 256


def _library_path() -> str:
    """libmkl_rt from the ``mkl`` distribution's files (the wheel puts it in ``<prefix>/lib``)."""
    for f in importlib.metadata.files("mkl") or ():
        if f.name.startswith(("libmkl_rt.so", "mkl_rt.", "libmkl_rt.")):
            return str(f.locate())
    raise ImportError("the mkl package holds no mkl_rt library")


def _gomp() -> bool:
    """Whether GNU OpenMP's runtime loads (MKL's GNU threading layer needs it)."""
    try:
        ctypes.CDLL("libgomp.so.1")
    except OSError:
        return False
    return True


def _load() -> tuple[Any, bool]:
    lib = ctypes.CDLL(_library_path())
    # Before any other call, or it is ignored.
    threaded = lib.MKL_Set_Threading_Layer(_GNU if _gomp() else _SEQUENTIAL) == _GNU
    lib.MKL_Set_Interface_Layer(_LP64)  # 32-bit integer arguments, whatever MKL_INTERFACE_LAYER says
    lib.MKL_Set_Num_Threads_Local.argtypes = [ctypes.c_int]
    i, p = ctypes.c_int, ctypes.c_void_p
    for kind, real in (("s", ctypes.c_float), ("d", ctypes.c_double)):
        size = getattr(lib, f"cblas_{kind}gemm_pack_get_size")
        size.restype, size.argtypes = ctypes.c_size_t, [i, i, i, i]
        getattr(lib, f"cblas_{kind}gemm_pack").argtypes = [i, i, i, i, i, i, real, p, i, p]
        getattr(lib, f"cblas_{kind}gemm_compute").argtypes = [i, i, i, i, i, i, p, i, p, i, real, p, i]
        getattr(lib, f"cblas_{kind}gemm").argtypes = [i, i, i, i, i, i, real, p, i, p, i, real, p, i]
    return lib, threaded


_lib, THREADED = _load()
_KIND = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}


def _use_threads() -> None:
    """This thread's MKL calls run on NumPy's BLAS thread count (one where MKL is sequential)."""
    if THREADED:
        _lib.MKL_Set_Num_Threads_Local(numpy_blas_threads())


def _layout(x: Any) -> tuple[int, int] | None:
    """(transposition flag, leading dimension) of a 2-d array MKL reads as it lies, or None."""
    rows, cols = x.shape
    if x.strides[1] == x.itemsize and x.strides[0] >= max(cols, 1) * x.itemsize:
        return _NO_TRANS, x.strides[0] // x.itemsize
    if x.strides[0] == x.itemsize and x.strides[1] >= max(rows, 1) * x.itemsize:
        return _TRANS, x.strides[1] // x.itemsize
    return None


def _multiplies(a: Any, b: Any) -> bool:
    """Two 2-d NumPy arrays of one float dtype whose product is large (see ``MIN_PRODUCT``, ``MIN_SIDE``), each
    laid out as MKL reads it. The size, which refuses a layer's every product below it, is asked first."""
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.ndim == 2 and b.ndim == 2):
        return False
    (m, k), n = a.shape, b.shape[1]
    return (m * k * n > MIN_PRODUCT and min(m, k, n) >= max(MIN_SIDE, 1) and k == b.shape[0]
            and a.dtype == b.dtype and a.dtype in _KIND and _layout(a) is not None and _layout(b) is not None)


def product(a: Any, b: Any) -> Any:
    """``a @ b``: by :func:`matmul` where :func:`_multiplies` takes the pair (threaded MKL only), else NumPy's own
    product, as the portable path would multiply it. The registered ``"matmul"``, with its size test first and
    inline: every product of every layer asks it, where a guard and its check were two calls more."""
    if THREADED and isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.ndim == 2 and b.ndim == 2 \
            and a.shape[0] * a.shape[1] * b.shape[1] > MIN_PRODUCT and _multiplies(a, b):
        return matmul(a, b)
    return a @ b


def matmul(a: Any, b: Any) -> Any:
    """``a @ b`` (2-d, one float dtype, each read through its strides: a transposed view is no copy) by
    MKL's GEMM on NumPy's BLAS thread count."""
    (ta, lda), (tb, ldb) = _layout(a), _layout(b)
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    out = np.empty((m, n), dtype=a.dtype)
    _use_threads()
    getattr(_lib, f"cblas_{_KIND[a.dtype]}gemm")(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a.ctypes.data, lda,
                                                   b.ctypes.data, ldb, 0.0, out.ctypes.data, n)
    return out


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
        getattr(_lib, f"cblas_{self._kind}gemm_pack")(_ROW_MAJOR, _B_MATRIX, self._trans, rows, n, k, 1.0,
                                                      self._source.ctypes.data, self._source.shape[1],
                                                      self._buffer.ctypes.data)
        self._rows = rows

    def __rmatmul__(self, a: Any) -> Any:
        if not (isinstance(a, np.ndarray) and a.ndim == 2 and a.dtype == self.dtype and a.flags.c_contiguous
                and a.shape[1] == self.shape[0] and a.shape[0] > 0):
            return a @ self.W
        rows = a.shape[0]
        _use_threads()
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
    # Sequential MKL beside a threaded OpenBLAS would take the large products off one of its threads: product
    # leaves every product to NumPy there.
    add("matmul", product)
