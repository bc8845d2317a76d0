"""Numba kernels for a stride-1 Conv2d's input gradient on NumPy arrays (the two passes around its product).

:func:`xpnet.layers._im2col.input_grad_stride1` lays dy out flat (zeros, then dy copied in), multiplies,
and sums the product's kernel-offset rows back with kh*kw shifted adds over the whole image buffer, then
copies the result to NCHW. Here the flat dy is written in one pass, and each dx element is summed from its
kh*kw terms, in the portable order, and written once, in NCHW order: the same bits, fewer passes over memory.
Imported only by :mod:`xpnet.backend.fast_numba`.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

_exact = numba.njit(cache=True, nogil=True)


@_exact
def _fill_flat(dy, out):
    """out (F, N, R, wp) = dy (N, F, oh, ow) at its top left, zeros elsewhere."""
    n, f, oh, ow = dy.shape
    rows, wp = out.shape[2], out.shape[3]
    for c in range(f):
        for b in range(n):
            for r in range(rows):
                if r < oh:
                    for q in range(ow):
                        out[c, b, r, q] = dy[b, c, r, q]
                    for q in range(ow, wp):
                        out[c, b, r, q] = 0
                else:
                    for q in range(wp):
                        out[c, b, r, q] = 0


@_exact
def _shifted_sums(dcol, out, kw, rows, wp, ph, pw, dh, dw):
    """out (N, C, H, W) from dcol (C, kh*kw, L), one channel at a time: its flat image (L + the last offset's
    shift long, in cache) zeroed, offset k's row added at start_k = dh*(k // kw)*wp + dw*(k % kw) (offsets in
    order), then the (H, W) windows at n*R*wp + ph*wp + pw copied out."""
    n, c, h, w = out.shape
    kk, length = dcol.shape[1], dcol.shape[2]
    img = np.empty(length + dh * (kk // kw - 1) * wp + dw * (kw - 1), dtype=out.dtype)
    for ch in range(c):
        img[:] = 0
        for k in range(kk):
            start = dh * (k // kw) * wp + dw * (k % kw)
            _add_run(img[start:start + length], dcol[ch, k])
        for b in range(n):
            for y in range(h):
                at = b * rows * wp + (y + ph) * wp + pw
                for x in range(w):
                    out[b, ch, y, x] = img[at + x]


@_exact
def _add_run(dst, src):
    """dst += src (two views of one length: indices from ``range``, which LLVM vectorises)."""
    for m in range(src.shape[0]):
        dst[m] += src[m]


def flat_dy(dy: Any, rows: int, wp: int) -> Any:
    """dy (N, F, oh, ow) -> (F, N*R*wp), the portable ``conv_flat_dy``'s values."""
    n, f = dy.shape[0], dy.shape[1]
    out = np.empty((f, n, rows, wp), dtype=dy.dtype)
    _fill_flat(dy, out)
    return out.reshape(f, n * rows * wp)


def shifted_sums(dcol: Any, x_shape: tuple[int, ...], kernel: Any, padding: Any, dilation: Any, rows: int,
                 wp: int) -> Any:
    """dcol (C, kh*kw, N*R*wp) -> dx (N, C, H, W), C-contiguous, the portable ``conv_shifted_sums``'s values."""
    out = np.empty(x_shape, dtype=dcol.dtype)
    _shifted_sums(dcol, out, kernel[1], rows, wp, padding[0], padding[1], dilation[0], dilation[1])
    return out
