"""Winograd F(2x2, 3x3) for a 3x3, stride-1 convolution on NumPy arrays (Lavin & Gray 2015), its tile transforms
as Numba kernels (one thread) and its 16 products as one batched ``np.matmul``.

The output is cut into 2x2 tiles, tile t = (n, a, b) reading the 4x4 input patch at (2a - p, 2b - p) (zeros
outside the image). With B^T, G and A^T the F(2, 3) matrices (``_G`` below; B^T and A^T
written out in the kernels), for each of the 16 transform-domain points k:

    V[k] (C, T) = (B^T d B)[k]     U[k] (F, C) = (G g G^T)[k]     M[k] = U[k] @ V[k]     y tile = A^T M A

The backward is the exact adjoint of that forward (the same tiles, the transforms transposed): with
D[k] (F, T) = (A dy A^T)[k] from dy's 2x2 tiles, dW = G^T (D[k] @ V[k]^T) G and each input patch gets
B (U[k]^T @ D[k]) B^T, overlapping patches (stride 2) added. V is cached from the forward instead of im2col's
matrix (16 values per 2x2 output pixels and channel against im2col's 9 per pixel: 0.44x its size).
Each product is 2.25x smaller than im2col's (16 multiplies per 4 outputs against 36), but 16 narrow products
(K = C_in) run further from the BLAS peak than im2col's one, and V, D and M are 4x x's or y's size each.

Measured, not adopted in xpnet (``benchmarks/conv_winograd.py`` times it against Conv2d's im2col path and
PyTorch; see its docstring for the figures): this module is that benchmark's helper, not part of xpnet.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

_kernel = numba.njit(cache=True, nogil=True)

_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


@_kernel
def _input_tiles(x, v, ph, pw, th, tw):
    """v (16, C, N*th*tw) = B^T d B of each 4x4 patch of x (N, C, H, W) padded by (ph, pw) (zeros): a sample's
    image a channel at a time, copied into a local padded one, B^T along its columns for a row of tiles, then
    along the rows."""
    n, c, h, w = x.shape
    hp, wp = 2 * th + 2, 2 * tw + 2
    img = np.zeros((hp, wp), dtype=v.dtype)
    rows = np.empty((4, wp), dtype=v.dtype)
    for ch in range(c):
        for b in range(n):
            for y in range(h):
                for q in range(w):
                    img[y + ph, q + pw] = x[b, ch, y, q]
            base = b * th * tw
            for ta in range(th):
                r = 2 * ta
                for q in range(wp):
                    d0, d1, d2, d3 = img[r, q], img[r + 1, q], img[r + 2, q], img[r + 3, q]
                    rows[0, q] = d0 - d2
                    rows[1, q] = d1 + d2
                    rows[2, q] = d2 - d1
                    rows[3, q] = d1 - d3
                for i in range(4):
                    for tb in range(tw):
                        s = 2 * tb
                        e0, e1, e2, e3 = rows[i, s], rows[i, s + 1], rows[i, s + 2], rows[i, s + 3]
                        t = base + ta * tw + tb
                        v[4 * i, ch, t] = e0 - e2
                        v[4 * i + 1, ch, t] = e1 + e2
                        v[4 * i + 2, ch, t] = e2 - e1
                        v[4 * i + 3, ch, t] = e1 - e3


@_kernel
def _output_tiles(m, bias, y, th, tw):
    """y (N, F, oh, ow) = A^T M A of each tile of m (16, F, N*th*tw), plus bias (F,) (the part inside y).
    A sample's tiles a channel at a time: A^T along the rows over contiguous runs of tiles (which vectorise),
    then along the columns into a local 2th x 2tw image, copied into y."""
    n, f, oh, ow = y.shape
    nt = th * tw
    s = np.empty((8, nt), dtype=y.dtype)
    img = np.empty((2 * th, 2 * tw), dtype=y.dtype)
    for ch in range(f):
        bf = bias[ch]
        for b in range(n):
            base = b * nt
            for j in range(4):
                for t in range(nt):
                    m0, m1, m2, m3 = m[j, ch, base + t], m[4 + j, ch, base + t], m[8 + j, ch, base + t], \
                        m[12 + j, ch, base + t]
                    s[j, t] = m0 + m1 + m2
                    s[4 + j, t] = m1 - m2 - m3
            for u in range(2):
                for ta in range(th):
                    for tb in range(tw):
                        t = ta * tw + tb
                        e0, e1, e2, e3 = s[4 * u, t], s[4 * u + 1, t], s[4 * u + 2, t], s[4 * u + 3, t]
                        img[2 * ta + u, 2 * tb] = e0 + e1 + e2 + bf
                        img[2 * ta + u, 2 * tb + 1] = e1 - e2 - e3 + bf
            for r in range(oh):
                for q in range(ow):
                    y[b, ch, r, q] = img[r, q]


@_kernel
def _grad_tiles(dy, d, th, tw):
    """d (16, F, N*th*tw) = A dy A^T of each 2x2 tile of dy (N, F, oh, ow) (zeros past its edge): a sample's
    image a channel at a time, copied into a local 2th x 2tw one, then each tile row's 16 runs written."""
    n, f, oh, ow = dy.shape
    nt = th * tw
    img = np.zeros((2 * th, 2 * tw), dtype=d.dtype)
    for ch in range(f):
        for b in range(n):
            for r in range(oh):
                for q in range(ow):
                    img[r, q] = dy[b, ch, r, q]
            base = b * nt
            for ta in range(th):
                r = 2 * ta
                for tb in range(tw):
                    q = 2 * tb
                    g00, g01, g10, g11 = img[r, q], img[r, q + 1], img[r + 1, q], img[r + 1, q + 1]
                    t = base + ta * tw + tb
                    # A g A^T, A's rows (1, 0), (1, 1), (1, -1), (0, -1): first down the columns, then along rows
                    c00, c01 = g00, g01
                    c10, c11 = g00 + g10, g01 + g11
                    c20, c21 = g00 - g10, g01 - g11
                    c30, c31 = -g10, -g11
                    d[0, ch, t] = c00
                    d[1, ch, t] = c00 + c01
                    d[2, ch, t] = c00 - c01
                    d[3, ch, t] = -c01
                    d[4, ch, t] = c10
                    d[5, ch, t] = c10 + c11
                    d[6, ch, t] = c10 - c11
                    d[7, ch, t] = -c11
                    d[8, ch, t] = c20
                    d[9, ch, t] = c20 + c21
                    d[10, ch, t] = c20 - c21
                    d[11, ch, t] = -c21
                    d[12, ch, t] = c30
                    d[13, ch, t] = c30 + c31
                    d[14, ch, t] = c30 - c31
                    d[15, ch, t] = -c31


@_kernel
def _input_grad_tiles(dv, dx, ph, pw, th, tw):
    """dx (N, C, H, W) = the sum of B dV B^T over the 4x4 patches of each tile of dv (16, C, N*th*tw), the
    padding (ph, pw) cut off: a sample's patches a channel at a time, added into a local image."""
    n, c, h, w = dx.shape
    hp, wp = 2 * th + 2, 2 * tw + 2
    img = np.empty((hp, wp), dtype=dx.dtype)
    e = np.empty((4, 4), dtype=dx.dtype)
    for ch in range(c):
        for b in range(n):
            img[:] = 0
            base = b * th * tw
            for ta in range(th):
                for tb in range(tw):
                    t = base + ta * tw + tb
                    # B z: (z0, z1 - z2 + z3, z1 + z2 - z0, -z3), over rows k then columns
                    for j in range(4):
                        z0, z1, z2, z3 = dv[j, ch, t], dv[4 + j, ch, t], dv[8 + j, ch, t], dv[12 + j, ch, t]
                        e[0, j] = z0
                        e[1, j] = z1 - z2 + z3
                        e[2, j] = z1 + z2 - z0
                        e[3, j] = -z3
                    r, q = 2 * ta, 2 * tb
                    for i in range(4):
                        z0, z1, z2, z3 = e[i, 0], e[i, 1], e[i, 2], e[i, 3]
                        img[r + i, q] += z0
                        img[r + i, q + 1] += z1 - z2 + z3
                        img[r + i, q + 2] += z1 + z2 - z0
                        img[r + i, q + 3] -= z3
            for y in range(h):
                for q in range(w):
                    dx[b, ch, y, q] = img[y + ph, q + pw]


def tiles(out_hw: tuple[int, int]) -> tuple[int, int]:
    """(th, tw): the 2x2 tiles covering an (oh, ow) output."""
    return (out_hw[0] + 1) // 2, (out_hw[1] + 1) // 2


def weight_tiles(w: Any) -> Any:
    """U (16, F, C) = G g G^T of each 3x3 kernel of w (F, C, 3, 3)."""
    g = np.asarray(_G, dtype=w.dtype)
    u = g @ w @ g.T
    return np.ascontiguousarray(u.transpose(2, 3, 0, 1)).reshape(16, w.shape[0], w.shape[1])


def forward(x: Any, w: Any, b: Any, padding: tuple[int, int]) -> tuple[Any, Any]:
    """y (N, F, oh, ow) of x (N, C, H, W) and w (F, C, 3, 3) (b (F,) or None), stride 1, zero ``padding`` (ph, pw);
    and V, the cache :func:`backward` takes."""
    n, c, h, wd = x.shape
    f = w.shape[0]
    oh, ow = h + 2 * padding[0] - 2, wd + 2 * padding[1] - 2
    th, tw = tiles((oh, ow))
    v = np.empty((16, c, n * th * tw), dtype=x.dtype)
    _input_tiles(x, v, padding[0], padding[1], th, tw)
    m = np.matmul(weight_tiles(w), v)
    y = np.empty((n, f, oh, ow), dtype=x.dtype)
    _output_tiles(m, np.zeros(f, dtype=x.dtype) if b is None else b, y, th, tw)
    return y, v


def backward(dy: Any, v: Any, w: Any, x_shape: tuple[int, ...], padding: tuple[int, int], input_grad: bool,
             weight_grad: bool) -> tuple[Any, Any]:
    """(dx (N, C, H, W) or None, dW (F, C, 3, 3) or None) of :func:`forward`'s convolution from dy (N, F, oh, ow)
    and its cache V."""
    n, f, oh, ow = dy.shape
    th, tw = tiles((oh, ow))
    d = np.empty((16, f, n * th * tw), dtype=dy.dtype)
    _grad_tiles(dy, d, th, tw)
    dw = None
    if weight_grad:
        # D @ V^T, not (V @ D^T)^T: 7.5 against 8.7 ms alone on 1 OpenBLAS thread (32 -> 64 channels at 14x14,
        # batch 100); on 2 threads, loaded, the latter stack took 747 against 140 ms at batch 1000
        mw = np.matmul(d, v.transpose(0, 2, 1)).reshape(4, 4, f, v.shape[1])
        g = np.asarray(_G, dtype=dy.dtype)
        dw = np.ascontiguousarray(g.T @ mw.transpose(2, 3, 0, 1) @ g)
    dx = None
    if input_grad:
        dv = np.matmul(np.ascontiguousarray(weight_tiles(w).transpose(0, 2, 1)), d)
        dx = np.empty(x_shape, dtype=dy.dtype)
        _input_grad_tiles(dv, dx, padding[0], padding[1], th, tw)
    return dx, dw
