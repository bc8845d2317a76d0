"""NumPy and CuPy fast paths for ops whose portable form loops over kernel offsets.

Registered with :func:`xpnet.backend.register_fast_path` and picked by ``fast_path(op, xp)``;
``xpnet.backend.set_fast_paths(False)`` (or ``XPNET_DISABLE_FAST_PATHS=1``) falls back to the
portable code in ``xpnet.layers._im2col``, which tests compare these against. CuPy is imported
only when a CuPy array arrives, so importing this module never needs it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import register_fast_path
from .layers._im2col import Pair, out_size, pad2d


def _im2col_strided(as_strided: Any, ascontiguousarray: Any, x: Any, kernel: Pair, stride: Pair,
                    padding: Pair) -> Any:
    """im2col as one copy of a strided view (N, C, kh, kw, oh, ow) of the padded input: that view's
    memory order is already the col layout, so there is no transpose and no Python loop."""
    (kh, kw), (sh, sw) = kernel, stride
    n, c, h, w = x.shape
    oh, ow = out_size(h, kh, sh, padding[0]), out_size(w, kw, sw, padding[1])
    xpad = ascontiguousarray(pad2d(x, padding))
    s_n, s_c, s_h, s_w = xpad.strides
    # Read-only use: the view aliases overlapping windows and is copied at once.
    windows = as_strided(xpad, shape=(n, c, kh, kw, oh, ow),
                         strides=(s_n, s_c, s_h, s_w, s_h * sh, s_w * sw))
    return ascontiguousarray(windows).reshape(n, c * kh * kw, oh * ow)


@register_fast_path("im2col", "numpy")
def im2col_numpy(x: Any, kernel: Pair, stride: Pair, padding: Pair) -> Any:
    return _im2col_strided(np.lib.stride_tricks.as_strided, np.ascontiguousarray, x, kernel, stride, padding)


@register_fast_path("im2col", "cupy")
def im2col_cupy(x: Any, kernel: Pair, stride: Pair, padding: Pair) -> Any:
    import cupy  # noqa: PLC0415 - only reached with a CuPy array, so CuPy is present

    return _im2col_strided(cupy.lib.stride_tricks.as_strided, cupy.ascontiguousarray, x, kernel, stride, padding)
