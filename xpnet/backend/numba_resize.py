"""Numba kernels for Upsample's and AdaptiveAvgPool2d's banded resizing along one axis on NumPy arrays
(``xpnet.layers._interp.taps``): each output row or column is the weighted sum of its k input taps, in one
pass over memory, where the portable code makes k gathers, k products and k - 1 sums of the whole output.

One thread, as :mod:`xpnet.backend.numba_kernels` (same reasons); compiled once and cached on disk. The output
is allocated by NumPy and filled here; the sums run in the input's dtype, tap by tap in order, as the portable
code adds them. Tested equal to the portable code (``tests/test_upsample_banded.py``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

_exact = numba.njit(cache=True, nogil=True)


@_exact
def _rows(v, index, weight, out):
    # v (B, n, R) -> out (B, out, R): out[b, o, :] = sum_j weight[o, j] * v[b, index[o, j], :]
    for b in range(v.shape[0]):
        for o in range(index.shape[0]):
            w = weight[o, 0]
            i = index[o, 0]
            for r in range(v.shape[2]):
                out[b, o, r] = w * v[b, i, r]
            for j in range(1, index.shape[1]):
                w = weight[o, j]
                i = index[o, j]
                for r in range(v.shape[2]):
                    out[b, o, r] += w * v[b, i, r]


@_exact
def _columns(v, index, weight, out):
    # v (B, n) -> out (B, out): out[b, o] = sum_j weight[o, j] * v[b, index[o, j]]
    for b in range(v.shape[0]):
        for o in range(index.shape[0]):
            acc = weight[o, 0] * v[b, index[o, 0]]
            for j in range(1, index.shape[1]):
                acc += weight[o, j] * v[b, index[o, j]]
            out[b, o] = acc


def taps(v: Any, index: Any, weight: Any, axis: int) -> Any:
    """See ``xpnet.layers._interp.taps``: v (N, C, H, W) resized along axis 2 or 3 by (out, k) taps."""
    v = np.ascontiguousarray(v)
    n, c, h, w = v.shape
    index, weight = np.ascontiguousarray(index), np.ascontiguousarray(weight)
    if axis == 2:
        out = np.empty((n, c, index.shape[0], w), dtype=v.dtype)
        _rows(v.reshape(n * c, h, w), index, weight, out.reshape(n * c, index.shape[0], w))
    else:
        out = np.empty((n, c, h, index.shape[0]), dtype=v.dtype)
        _columns(v.reshape(n * c * h, w), index, weight, out.reshape(n * c * h, index.shape[0]))
    return out
