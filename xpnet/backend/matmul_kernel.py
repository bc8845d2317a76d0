"""The CUDA source of xpnet's own matrix product, as a string, and its launch plan: importable without CuPy.

cuBLAS refuses to run while a CUDA graph is being captured (CuPy: "calling cuBLAS API during stream
capture is currently unsupported"), so a captured training step multiplies with this kernel instead
(:mod:`xpnet.backend.fast_cupy_capture`); eager steps keep cuBLAS.

The kernel is tiled in shared memory, as CuPy's own integer ``tensordot`` kernel and every GEMM textbook:

- a block of ``THREADS`` (16 x 16) threads computes a ``TILE_M`` x ``TILE_N`` (64 x 64) tile of ``c = a @ b``;
  each thread holds ``TILE_M // 16`` x ``TILE_N // 16`` (4 x 4) outputs in registers, rows ``ty + 16 i`` and
  columns ``tx + 16 j`` of the tile, so that the threads of a warp read consecutive columns of the staged
  ``b`` (no bank conflict) and write consecutive elements of ``c`` (coalesced);
- the shared axis is walked ``TILE_K`` (16) at a time: the block stages a 64 x 16 slice of ``a`` and a
  16 x 64 slice of ``b`` in shared memory (4 elements of each per thread; out-of-range ones as zeros, so
  any m, n, k work, k = 0 included), waits at ``__syncthreads()``, multiplies, waits again;
- ``a`` and ``b`` are read through their strides (in elements), so a transposed operand (``x.T @ dy``,
  ``dy @ W.T`` in Linear's backward, ``col.T @ dout`` in Conv2d's) is passed as the view it is, never
  copied; the threads of a warp stage along whichever axis of the operand has the smaller stride, so the
  loads stay coalesced for a view too;
- a stack of products (``(batch, m, k) @ (batch, k, n)``, either side possibly one matrix for all: Conv2d's
  per-sample products) is one launch: each operand has a batch stride (0 for the shared one);
- split-K (:func:`plan`): where the output has few tiles but the shared axis is long (Conv2d's weight
  gradient: 27 x 16 outputs summed over the batch's 78,400 pixels), the blocks of one tile each take a
  ``chunk`` of the shared axis and write their partial product into a ``(batch, splits, m, n)`` buffer,
  which is then summed over its second axis (a CuPy reduction, allowed in a capture). Results stay
  deterministic (no atomics). ``blockIdx.z`` counts ``batch * splits``.

Nothing here has been timed: the tile sizes are the textbook's, and :data:`TARGET_BLOCKS` (how many blocks
split-K aims for) is a guess near an H100/H200's 132 multiprocessors, to be measured on a GPU.
"""

from __future__ import annotations

from .cupy_kernels import C_TYPES

__all__ = ["TILE_M", "TILE_N", "TILE_K", "THREADS", "TARGET_BLOCKS", "MIN_CHUNK", "matmul_source", "matmul_name",
           "plan"]

TILE_M, TILE_N, TILE_K = 64, 64, 16  # the tile of c a block computes, and the step along the shared axis
THREADS = (16, 16)  # threads per block: x along the columns of c, y along its rows
TARGET_BLOCKS = 128  # split-K aims for about this many blocks where the output alone gives fewer
MIN_CHUNK = 256  # the shortest stretch of the shared axis a split-K block takes

_DTYPES = ("float32", "float64")


def matmul_name(dtype: str) -> str:
    """The kernel's name for ``dtype`` ("float32" or "float64")."""
    return f"xpnet_matmul_{dtype}"


def matmul_source(dtype: str) -> str:
    """``extern "C" __global__ void xpnet_matmul_<dtype>(a, b, c, m, n, k, sa0, sa1, sb0, sb1, chunk, splits,
    sab, sbb)``: c (batch, splits, m, n), C-contiguous, ``c[h, s] = a[h][:, s*chunk:(s+1)*chunk] @
    b[h][s*chunk:(s+1)*chunk, :]`` for a[h] (m, k), b[h] (k, n), with a[h][i, p] at ``a[h * sab + i * sa0 +
    p * sa1]`` and b[h][p, j] at ``b[h * sbb + p * sb0 + j * sb1]`` (strides in elements, any sign; a batch
    stride of 0 shares one matrix). Sizes and strides are ``long long`` (CuPy passes a Python int as one).
    Launched as :func:`plan` says: blocks of :data:`THREADS`, blockIdx.x over the row tiles (up to 2**31 - 1
    of them), blockIdx.y over the column tiles, blockIdx.z over ``batch * splits``."""
    if dtype not in _DTYPES:
        raise ValueError(f"matmul_source: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return r"""
typedef CTYPE xpnet_t;
extern "C" __global__ void NAME(const xpnet_t* __restrict__ a, const xpnet_t* __restrict__ b, xpnet_t* __restrict__ c,
                                long long m, long long n, long long k, long long sa0, long long sa1, long long sb0,
                                long long sb1, long long chunk, long long splits, long long sab, long long sbb) {
    constexpr int TM = TILE_M, TN = TILE_N, TK = TILE_K, TX = THREADS_X, TY = THREADS_Y, RM = TM / TY, RN = TN / TX;
    // One column of padding: a warp staging along the shared axis writes to different banks.
    __shared__ xpnet_t as[TK][TM + 1];
    __shared__ xpnet_t bs[TK][TN + 1];
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * TX + tx;
    const long long row0 = (long long)blockIdx.x * TM, col0 = (long long)blockIdx.y * TN;
    const long long h = blockIdx.z / splits, p_begin = blockIdx.z % splits * chunk;
    a += h * sab;
    b += h * sbb;
    const long long p_end = p_begin + chunk < k ? p_begin + chunk : k;
    const bool a_along_k = (sa1 < 0 ? -sa1 : sa1) <= (sa0 < 0 ? -sa0 : sa0);
    const bool b_along_n = (sb1 < 0 ? -sb1 : sb1) <= (sb0 < 0 ? -sb0 : sb0);
    xpnet_t acc[RM][RN];
    for (int i = 0; i < RM; ++i)
        for (int j = 0; j < RN; ++j) acc[i][j] = 0;
    for (long long p0 = p_begin; p0 < p_end; p0 += TK) {
        for (int r = 0; r < TM * TK / (TX * TY); ++r) {
            const int l = tid + r * TX * TY;
            const int i = a_along_k ? l / TK : l % TM, p = a_along_k ? l % TK : l / TM;
            const long long gi = row0 + i, gp = p0 + p;
            as[p][i] = gi < m && gp < p_end ? a[gi * sa0 + gp * sa1] : (xpnet_t)0;
        }
        for (int r = 0; r < TK * TN / (TX * TY); ++r) {
            const int l = tid + r * TX * TY;
            const int j = b_along_n ? l % TN : l / TK, p = b_along_n ? l / TN : l % TK;
            const long long gj = col0 + j, gp = p0 + p;
            bs[p][j] = gj < n && gp < p_end ? b[gp * sb0 + gj * sb1] : (xpnet_t)0;
        }
        __syncthreads();
        for (int p = 0; p < TK; ++p) {
            xpnet_t av[RM], bv[RN];
            for (int i = 0; i < RM; ++i) av[i] = as[p][ty + TY * i];
            for (int j = 0; j < RN; ++j) bv[j] = bs[p][tx + TX * j];
            for (int i = 0; i < RM; ++i)
                for (int j = 0; j < RN; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }
    xpnet_t* out = c + (long long)blockIdx.z * m * n;
    for (int i = 0; i < RM; ++i) {
        const long long row = row0 + ty + TY * i;
        for (int j = 0; j < RN; ++j) {
            const long long col = col0 + tx + TX * j;
            if (row < m && col < n) out[row * n + col] = acc[i][j];
        }
    }
}
""".replace("CTYPE", C_TYPES[dtype]).replace("NAME", matmul_name(dtype)).replace("TILE_M", str(TILE_M)) \
        .replace("TILE_N", str(TILE_N)).replace("TILE_K", str(TILE_K)).replace("THREADS_X", str(THREADS[0])) \
        .replace("THREADS_Y", str(THREADS[1]))


def plan(m: int, n: int, k: int, batch: int = 1) -> tuple[tuple[int, int, int], tuple[int, int], int, int]:
    """(grid, block, chunk, splits) for ``batch`` (m, k) @ (k, n) products: grid (row tiles, column tiles,
    batch * splits), block :data:`THREADS`, the shared axis cut in ``splits`` of ``chunk`` (a multiple of
    ``TILE_K``). ``splits > 1`` only where the outputs have fewer than :data:`TARGET_BLOCKS` tiles and each
    split still gets at least :data:`MIN_CHUNK` of the shared axis. ``batch`` and the column tiles are at
    most 65535 each (CUDA's limit on gridDim.z and gridDim.y)."""
    if not 1 <= batch <= 65535:
        raise ValueError(f"plan: batch must be 1 to 65535 (CUDA's limit on gridDim.z), got {batch}")
    rows, cols = max(1, -(-m // TILE_M)), max(1, -(-n // TILE_N))
    if cols > 65535:
        raise ValueError(f"plan: n = {n} columns make {cols} column tiles of {TILE_N}, past CUDA's limit of 65535 "
                         "on gridDim.y; a product this wide cannot be captured")
    splits = max(1, min(k // MIN_CHUNK, -(-TARGET_BLOCKS // (rows * cols * batch)), 65535 // batch))
    chunk = -(-max(TILE_K, -(-k // splits)) // TILE_K) * TILE_K
    splits = max(1, -(-k // chunk))
    return (rows, cols, batch * splits), THREADS, chunk, splits
