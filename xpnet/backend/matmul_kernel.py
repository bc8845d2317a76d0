"""The CUDA source of xpnet's own matrix product, as a string: importable without CuPy.

cuBLAS refuses to run while a CUDA graph is being captured (CuPy: "calling cuBLAS API during stream
capture is currently unsupported"), so a captured training step multiplies with this kernel instead
(:mod:`xpnet.backend.fast_cupy_capture`); eager steps keep cuBLAS.

One thread computes a ``TILE`` x ``TILE`` block of ``c = a @ b`` in registers, walking the shared
axis once; ``a`` and ``b`` are read through their strides (in elements), so a transposed operand
(``x.T @ dy``, ``dy @ W.T`` in Linear's backward) is passed as the view it is, never copied. No shared
memory: the fake CuPy of ``tests/fake_cupy`` runs the threads one after another, which a kernel with
barriers would not survive, and the products of the networks captured here are small
(100 x 784 by 784 x 100), where a launch costs more than the arithmetic.
"""

from __future__ import annotations

from .cupy_kernels import C_TYPES

__all__ = ["TILE", "BLOCK", "matmul_source", "matmul_name", "launch_shape"]

TILE = 2  # outputs per thread along each axis
BLOCK = (16, 16)  # threads per block: x along the columns of c, y along its rows

_DTYPES = ("float32", "float64")


def matmul_name(dtype: str) -> str:
    """The kernel's name for ``dtype`` ("float32" or "float64")."""
    return f"xpnet_matmul_{dtype}"


def matmul_source(dtype: str) -> str:
    """``extern "C" __global__ void xpnet_matmul_<dtype>(a, b, c, m, n, k, sa0, sa1, sb0, sb1)``: c (m, n),
    C-contiguous, = a (m, k) @ b (k, n), with a[i, p] at ``a[i * sa0 + p * sa1]`` and b[p, j] at
    ``b[p * sb0 + j * sb1]``. Sizes and strides are ``long long`` (CuPy passes a Python int as one)."""
    if dtype not in _DTYPES:
        raise ValueError(f"matmul_source: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return r"""
typedef CTYPE xpnet_t;
extern "C" __global__ void NAME(const xpnet_t* a, const xpnet_t* b, xpnet_t* c, long long m, long long n,
                                long long k, long long sa0, long long sa1, long long sb0, long long sb1) {
    const long long col0 = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * TILE;
    const long long row0 = ((long long)blockIdx.y * blockDim.y + threadIdx.y) * TILE;
    if (row0 >= m || col0 >= n) return;
    xpnet_t acc[TILE][TILE];
    for (int i = 0; i < TILE; ++i)
        for (int j = 0; j < TILE; ++j) acc[i][j] = 0;
    for (long long p = 0; p < k; ++p) {
        xpnet_t av[TILE], bv[TILE];
        for (int i = 0; i < TILE; ++i) av[i] = row0 + i < m ? a[(row0 + i) * sa0 + p * sa1] : (xpnet_t)0;
        for (int j = 0; j < TILE; ++j) bv[j] = col0 + j < n ? b[p * sb0 + (col0 + j) * sb1] : (xpnet_t)0;
        for (int i = 0; i < TILE; ++i)
            for (int j = 0; j < TILE; ++j) acc[i][j] += av[i] * bv[j];
    }
    for (int i = 0; i < TILE; ++i)
        for (int j = 0; j < TILE; ++j)
            if (row0 + i < m && col0 + j < n) c[(row0 + i) * n + col0 + j] = acc[i][j];
}
""".replace("CTYPE", C_TYPES[dtype]).replace("NAME", matmul_name(dtype)).replace("TILE", str(TILE))


def launch_shape(m: int, n: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(grid, block) covering an (m, n) result: a block holds BLOCK threads, each a TILE x TILE tile."""
    bx, by = BLOCK
    return (max(1, -(-n // (bx * TILE))), max(1, -(-m // (by * TILE)))), BLOCK
