"""JAX's fast paths: the window operations (im2col, col2im, the stride-1 input gradient's two passes, max pooling)
and ``jax.scipy.special.erf`` for GELU. Imported only when a JAX array asks for one of them.

Why: xpnet runs JAX eagerly, and XLA compiles each distinct primitive call (op, shapes, slice bounds) on first use,
some 40 ms each. The portable window code is one strided slice (and one ``.at[].add``) per kernel offset, dozens of
compiles per layer shape. Here each operation is one ``jax.jit`` function of the geometry (static arguments): one
gather of all windows through integer index arrays (host NumPy, constants of the compiled function, so built once
per geometry with its compile) and one scatter-add back, a single compile per shape. Not
``jax.lax.conv_general_dilated_patches``: it multiplies by a one-hot filter, so an inf in x would make its
neighbours' columns NaN. The portable functions (``xpnet.layers._im2col``, ``xpnet.layers.pool``) stay the
reference these are tested equal to.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import jax.scipy.special
import numpy as np

from ..layers._im2col import conv_out_hw, span, window_reach
from ..layers.pool import first_inside

Pair = tuple[int, int]


def _pair(value: Any) -> Pair:
    """A hashable (int, int), as ``jax.jit``'s static arguments must be (a caller may pass a list)."""
    return int(value[0]), int(value[1])


def window_index(kernel: Pair, stride: Pair, out_hw: Pair, dilation: Pair) -> tuple[Any, Any]:
    """(rows (kh*kw, oh, 1), cols (kh*kw, 1, ow)) int32: tap k = i*kw + j of output (p, q) reads padded pixel
    (dh*i + sh*p, dw*j + sw*q), as ``window_slices`` orders them; ``a[:, :, rows, cols]`` is (N, C, kh*kw, oh, ow)."""
    (kh, kw), (sh, sw), (oh, ow), (dh, dw) = kernel, stride, out_hw, dilation
    i, j = np.divmod(np.arange(kh * kw), kw)
    rows = dh * i[:, None, None] + sh * np.arange(oh)[None, :, None]
    cols = dw * j[:, None, None] + sw * np.arange(ow)[None, None, :]
    return rows.astype(np.int32), cols.astype(np.int32)


def _pad(x: Any, padding: Pair, reach: Pair, value: float) -> Any:
    """x (N, C, H, W) -> (N, C, *reach) with ``value`` in the top/left ``padding`` and everything past x."""
    (ph, pw), (h, w) = padding, x.shape[2:]
    return jnp.pad(x, ((0, 0), (0, 0), (ph, reach[0] - h - ph), (pw, reach[1] - w - pw)), constant_values=value)


@partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _im2col(x: Any, kernel: Pair, stride: Pair, padding: Pair, per_sample: bool, dilation: Pair) -> Any:
    n, c, h, w = x.shape
    out_hw = conv_out_hw((h, w), kernel, stride, padding, dilation)
    rows, cols = window_index(kernel, stride, out_hw, dilation)
    taps = _pad(x, padding, (h + 2 * padding[0], w + 2 * padding[1]), 0.0)[:, :, rows, cols]
    if per_sample:
        return jnp.reshape(taps, (n, -1, out_hw[0] * out_hw[1]))
    return jnp.reshape(jnp.transpose(taps, (1, 2, 0, 3, 4)), (c * kernel[0] * kernel[1], -1))


def im2col(x: Any, kernel: Pair, stride: Pair, padding: Pair, per_sample: bool = False,
           dilation: Pair = (1, 1)) -> Any:
    """``im2col_portable``'s col, (C*kh*kw, N*oh*ow) or (N, C*kh*kw, oh*ow): one gather of every window."""
    return _im2col(x, _pair(kernel), _pair(stride), _pair(padding), bool(per_sample), _pair(dilation))


@partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _col2im(col: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair, per_sample: bool,
            dilation: Pair) -> Any:
    n, c, h, w = x_shape
    (kh, kw), (ph, pw) = kernel, padding
    out_hw = conv_out_hw((h, w), kernel, stride, padding, dilation)
    rows, cols = window_index(kernel, stride, out_hw, dilation)
    if per_sample:
        parts = jnp.reshape(col, (n, c, kh * kw, *out_hw))
    else:  # (C, kh*kw, N, ...) -> (N, C, kh*kw, ...): the offsets stay the slowest of the scatter's indices
        parts = jnp.transpose(jnp.reshape(col, (c, kh * kw, n, *out_hw)), (2, 0, 1, 3, 4))
    img = jnp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=col.dtype).at[:, :, rows, cols].add(parts)
    return img[:, :, ph:ph + h, pw:pw + w]


def col2im(col: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair,
           per_sample: bool = False, dilation: Pair = (1, 1)) -> Any:
    """``col2im_portable``'s (N, C, H, W): one scatter-add of every window, the padding then cut off."""
    return _col2im(col, tuple(int(s) for s in x_shape), _pair(kernel), _pair(stride), _pair(padding),
                   bool(per_sample), _pair(dilation))


@partial(jax.jit, static_argnums=(1, 2))
def _flat_dy(dy: Any, rows: int, wp: int) -> Any:
    n, f, oh, ow = dy.shape
    flat = jnp.pad(jnp.transpose(dy, (1, 0, 2, 3)), ((0, 0), (0, 0), (0, rows - oh), (0, wp - ow)))
    return jnp.reshape(flat, (f, n * rows * wp))


def flat_dy(dy: Any, rows: int, wp: int) -> Any:
    """``flat_dy_portable``: dy (N, F, oh, ow) -> (F, N*rows*wp), one pad."""
    return _flat_dy(dy, int(rows), int(wp))


@partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _shifted_sums(dcol: Any, x_shape: tuple[int, ...], kernel: Pair, padding: Pair, dilation: Pair, rows: int,
                  wp: int) -> Any:
    n, c, h, w = x_shape
    (kh, kw), (ph, pw), (dh, dw) = kernel, padding, dilation
    length = dcol.shape[2]
    i, j = np.divmod(np.arange(kh * kw), kw)
    shifted = ((dh * i * wp + dw * j)[:, None] + np.arange(length)).astype(np.int32)  # (kh*kw, length)
    img = jnp.zeros((c, length + dh * (kh - 1) * wp + dw * (kw - 1)), dtype=dcol.dtype).at[:, shifted].add(dcol)
    img = jnp.reshape(img[:, :length], (c, n, rows, wp))
    return jnp.transpose(img[:, :, ph:ph + h, pw:pw + w], (1, 0, 2, 3))


def shifted_sums(dcol: Any, x_shape: tuple[int, ...], kernel: Pair, padding: Pair, dilation: Pair, rows: int,
                 wp: int) -> Any:
    """``shifted_sums_portable``: dcol (C, kh*kw, N*rows*wp) -> dx (N, C, H, W), one scatter-add of the offsets'
    rows into the flat image."""
    return _shifted_sums(dcol, tuple(int(s) for s in x_shape), _pair(kernel), _pair(padding), _pair(dilation),
                         int(rows), int(wp))


@partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _maxpool2d_forward(x: Any, kernel: Pair, stride: Pair, padding: Pair, out_hw: Pair, index_dtype: Any,
                       dilation: Pair) -> tuple[Any, Any]:
    reach = window_reach(tuple(x.shape[2:]), span(kernel, dilation), stride, padding, out_hw)
    rows, cols = window_index(kernel, stride, out_hw, dilation)
    taps = _pad(x, padding, reach, -np.inf)[:, :, rows, cols]  # (N, C, kh*kw, oh, ow)
    last = kernel[0] * kernel[1] - 1
    y = jnp.max(taps, axis=2)  # NaN where the window holds one
    nan = jnp.isnan(taps)
    last_nan = last - jnp.argmax(nan[:, :, ::-1], axis=2)
    first_max = jnp.argmax(taps == y[:, :, None], axis=2)  # the first True
    inside = first_inside(np, out_hw, kernel[1], stride, padding, dilation, np.int32, "cpu")
    first = jnp.where(jnp.any(nan, axis=2), last_nan, jnp.where(y == -jnp.inf, inside, first_max))
    return y, first.astype(index_dtype)


def maxpool2d_forward(x: Any, kernel: Pair, stride: Pair, padding: Pair, out_hw: Pair, index_dtype: Any,
                      dilation: Pair = (1, 1)) -> tuple[Any, Any]:
    """``maxpool2d_forward`` of ``xpnet.layers.pool``, its values and offsets: one gather of all taps
    (N, C, kh*kw, oh, ow), then PyTorch's choice as reductions over them (the last NaN of a window holding any;
    else its first maximum; a window of only -inf its first tap inside the input)."""
    return _maxpool2d_forward(x, _pair(kernel), _pair(stride), _pair(padding), _pair(out_hw), index_dtype,
                              _pair(dilation))


@partial(jax.jit, static_argnums=(2, 3, 4, 5, 6))
def _maxpool2d_backward(dy: Any, first: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair,
                        dilation: Pair) -> Any:
    n, c, h, w = x_shape
    ph, pw = padding
    out_hw = tuple(dy.shape[2:])
    hp, wp = window_reach((h, w), span(kernel, dilation), stride, padding, out_hw)
    rows, cols = window_index(kernel, stride, out_hw, dilation)
    picked = first[:, :, None] == jnp.arange(kernel[0] * kernel[1], dtype=first.dtype)[:, None, None]
    # dy times each offset's mask, as the portable code: an inf or NaN in dy makes its whole window NaN. Written
    # as a where, since XLA rewrites dy * convert(mask) into one (inf * 0 then gives 0).
    parts = jnp.where(picked, dy[:, :, None], dy[:, :, None] * 0.0)
    at = jnp.zeros((n, c, hp, wp), dtype=dy.dtype).at[:, :, rows, cols]
    overlap = any(s < k for s, k in zip(stride, span(kernel, dilation)))
    dx = at.add(parts) if overlap else at.set(parts)
    return dx[:, :, ph:ph + h, pw:pw + w]


def maxpool2d_backward(dy: Any, first: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair,
                       dilation: Pair = (1, 1)) -> Any:
    """``maxpool2d_backward`` of ``xpnet.layers.pool``: dx (N, C, H, W), one scatter of every tap's share."""
    return _maxpool2d_backward(dy, first, tuple(int(s) for s in x_shape), _pair(kernel), _pair(stride),
                               _pair(padding), _pair(dilation))


def erf(x: Any) -> Any:
    """GELU's erf, in place of the portable one (``xpnet.layers._erf``), which JAX would compile as some sixty
    operations."""
    return jax.scipy.special.erf(x)


def register(add: Callable[..., Any]) -> None:
    add("erf", erf)
    add("im2col", im2col)
    add("col2im", col2im)
    add("conv_flat_dy", flat_dy)
    add("conv_shifted_sums", shifted_sums)
    add("maxpool2d_forward", maxpool2d_forward)
    add("maxpool2d_backward", maxpool2d_backward)
