"""JAX's fast paths: the window operations (im2col, col2im, the stride-1 input gradient's two passes, max pooling)
and ``jax.scipy.special.erf`` for GELU. Imported only when a JAX array asks for one of them.

Why: xpnet runs JAX eagerly, and XLA compiles each distinct primitive call (op, shapes, slice bounds) on first use,
some 40 ms each. The portable window code is one strided slice (and one ``.at[].add``) per kernel offset, dozens of
compiles per layer shape. Here each operation is one ``jax.jit`` function of its geometry (static arguments), so one
compile per shape, which XLA fuses into a loop or two:

- im2col is one gather of every window through integer index arrays (host NumPy, constants of the compiled
  function: built once per geometry). Not ``jax.lax.conv_general_dilated_patches``: it multiplies by a one-hot
  filter, so an inf in x would make its neighbours' columns NaN.
- What goes back into an image (col2im, the stride-1 input gradient's shifted sums, MaxPool2d's backward) is the
  portable sum over the kernel offsets, each offset's values spread onto the image by ``lax.pad`` (its stride as
  interior padding), in the portable order: the same sums, bit for bit, and deterministic on a GPU too. Measured
  against one scatter-add (``.at[rows, cols].add``) on (8, 16, 14, 14) float64, 3x3 windows: 50-80 ms to compile
  against 60-115 ms, and 0.3-0.45 ms a call against 1.0-1.9 ms.
- AvgPool2d's window sums and its backward, the same way (the slices added in the portable order; the shares
  spread back as col2im's).
- MaxPool2d's forward is the portable running maximum over the offsets' strided slices (80 ms to compile, 0.2-0.3
  ms a call on the shape above), cheaper than one gather of all taps reduced with max/argmax (130-140 ms, 0.55-0.75
  ms).

The portable functions (``xpnet.layers._im2col``, ``xpnet.layers.pool``) stay the reference these are tested equal
to.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import jax.scipy.special
import numpy as np

from .windows import conv_out_hw, first_inside, span, window_reach, window_slices

Pair = tuple[int, int]


def _pair(value: Any) -> Pair:
    """A hashable (int, int), as ``jax.jit``'s static arguments must be (a caller may pass a list)."""
    return int(value[0]), int(value[1])


def _window_index(kernel: Pair, stride: Pair, out_hw: Pair, dilation: Pair) -> tuple[Any, Any]:
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
    rows, cols = _window_index(kernel, stride, out_hw, dilation)
    taps = _pad(x, padding, (h + 2 * padding[0], w + 2 * padding[1]), 0.0)[:, :, rows, cols]
    if per_sample:
        return jnp.reshape(taps, (n, -1, out_hw[0] * out_hw[1]))
    return jnp.reshape(jnp.transpose(taps, (1, 2, 0, 3, 4)), (c * kernel[0] * kernel[1], -1))


def im2col(x: Any, kernel: Pair, stride: Pair, padding: Pair, per_sample: bool = False,
           dilation: Pair = (1, 1)) -> Any:
    """``im2col_portable``'s col, (C*kh*kw, N*oh*ow) or (N, C*kh*kw, oh*ow): one gather of every window."""
    return _im2col(x, _pair(kernel), _pair(stride), _pair(padding), bool(per_sample), _pair(dilation))


def _spread(a: Any, start: Pair, stride: Pair, size: Pair) -> Any:
    """a (..., oh, ow) -> (..., *size) zeros but a[..., p, q] at (start[0] + stride[0]*p, start[1] + stride[1]*q):
    one kernel offset's values where ``window_slices`` takes them from."""
    spans = [(lo, n - lo - (m - 1) * s - 1, s - 1) for lo, s, n, m in zip(start, stride, size, a.shape[-2:])]
    return jax.lax.pad(a, jnp.zeros((), dtype=a.dtype), [(0, 0, 0)] * (a.ndim - 2) + spans)


def _sum_windows(parts: Any, kernel: Pair, stride: Pair, dilation: Pair, size: Pair) -> Any:
    """parts (N, C, kh*kw, oh, ow) -> (N, C, *size): each offset's windows added where they lie, offsets in
    row-major order from zeros, as the portable ``add_at`` per offset does."""
    out = jnp.zeros((*parts.shape[:2], *size), dtype=parts.dtype)
    for k in range(kernel[0] * kernel[1]):
        i, j = divmod(k, kernel[1])
        out = out + _spread(parts[:, :, k], (dilation[0] * i, dilation[1] * j), stride, size)
    return out


def _scatter_windows(parts: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair,
                     dilation: Pair) -> Any:
    """A pool's dx (N, C, H, W) from each offset's share parts (N, C, kh*kw, oh, ow), as the portable
    ``scatter_windows``: the windows added back over the reach of the padded input, the padding then cut off."""
    h, w = x_shape[2:]
    ph, pw = padding
    reach = window_reach((h, w), span(kernel, dilation), stride, padding, tuple(parts.shape[3:]))
    return _sum_windows(parts, kernel, stride, dilation, reach)[:, :, ph:ph + h, pw:pw + w]


@partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _col2im(col: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair, per_sample: bool,
            dilation: Pair) -> Any:
    n, c, h, w = x_shape
    (kh, kw), (ph, pw) = kernel, padding
    out_hw = conv_out_hw((h, w), kernel, stride, padding, dilation)
    if per_sample:
        parts = jnp.reshape(col, (n, c, kh * kw, *out_hw))
    else:
        parts = jnp.transpose(jnp.reshape(col, (c, kh * kw, n, *out_hw)), (2, 0, 1, 3, 4))
    img = _sum_windows(parts, kernel, stride, dilation, (h + 2 * ph, w + 2 * pw))
    return img[:, :, ph:ph + h, pw:pw + w]


def col2im(col: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair,
           per_sample: bool = False, dilation: Pair = (1, 1)) -> Any:
    """``col2im_portable``'s (N, C, H, W), its sums in its order: the windows added back, the padding cut off."""
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
    img = jnp.zeros((c, length), dtype=dcol.dtype)
    zero = jnp.zeros((), dtype=dcol.dtype)
    for k in range(kh * kw):  # only the first ``length`` of the shifted image are kept: what lies past is dropped
        start = dh * (k // kw) * wp + dw * (k % kw)
        if start < length:
            img = img + jax.lax.pad(dcol[:, k, :length - start], zero, [(0, 0, 0), (start, 0, 0)])
    img = jnp.reshape(img, (c, n, rows, wp))
    return jnp.transpose(img[:, :, ph:ph + h, pw:pw + w], (1, 0, 2, 3))


def shifted_sums(dcol: Any, x_shape: tuple[int, ...], kernel: Pair, padding: Pair, dilation: Pair, rows: int,
                 wp: int) -> Any:
    """``shifted_sums_portable``: dcol (C, kh*kw, N*rows*wp) -> dx (N, C, H, W), its sums in its order."""
    return _shifted_sums(dcol, tuple(int(s) for s in x_shape), _pair(kernel), _pair(padding), _pair(dilation),
                         int(rows), int(wp))


@partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _maxpool2d_forward(x: Any, kernel: Pair, stride: Pair, padding: Pair, out_hw: Pair, index_dtype: Any,
                       dilation: Pair) -> tuple[Any, Any]:
    reach = window_reach(tuple(x.shape[2:]), span(kernel, dilation), stride, padding, out_hw)
    xpad = _pad(x, padding, reach, -np.inf)
    slices = list(window_slices(kernel, stride, out_hw, dilation))
    y = xpad[:, :, slices[0][0], slices[0][1]]
    inside = first_inside(np, out_hw, kernel[1], stride, padding, dilation, np.int32, "cpu")
    first = jnp.broadcast_to(jnp.asarray(inside, dtype=index_dtype), y.shape)
    for k, (r, s) in enumerate(slices[1:], start=1):
        v = xpad[:, :, r, s]
        raised = (v > y) | jnp.isnan(v)  # PyTorch's `val > maxval || isnan(val)`, as the portable code
        first = jnp.maximum(first, raised.astype(first.dtype) * k)
        y = jnp.maximum(y, v)
    return y, first


def maxpool2d_forward(x: Any, kernel: Pair, stride: Pair, padding: Pair, out_hw: Pair, index_dtype: Any,
                      dilation: Pair = (1, 1)) -> tuple[Any, Any]:
    """``maxpool2d_forward`` of ``xpnet.layers.pool``, its values and offsets (PyTorch's choice: the first maximum,
    the last NaN, the first tap inside the input of a window of only -inf): its running maximum over the offsets'
    strided slices, compiled as one function."""
    return _maxpool2d_forward(x, _pair(kernel), _pair(stride), _pair(padding), _pair(out_hw), index_dtype,
                              _pair(dilation))


@partial(jax.jit, static_argnums=(2, 3, 4, 5, 6))
def _maxpool2d_backward(dy: Any, first: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair,
                        dilation: Pair) -> Any:
    picked = first[:, :, None] == jnp.arange(kernel[0] * kernel[1], dtype=first.dtype)[:, None, None]
    # dy times each offset's mask, as the portable code: an inf or NaN in dy makes its whole window NaN. Written
    # as a where, since XLA rewrites dy * convert(mask) into one (inf * 0 then gives 0).
    parts = jnp.where(picked, dy[:, :, None], dy[:, :, None] * 0.0)
    return _scatter_windows(parts, x_shape, kernel, stride, padding, dilation)


def maxpool2d_backward(dy: Any, first: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair,
                       dilation: Pair = (1, 1)) -> Any:
    """``maxpool2d_backward`` of ``xpnet.layers.pool``: dx (N, C, H, W), each offset's share of dy added back, in
    the portable order."""
    return _maxpool2d_backward(dy, first, tuple(int(s) for s in x_shape), _pair(kernel), _pair(stride),
                               _pair(padding), _pair(dilation))


@partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _avgpool2d_sums(x: Any, kernel: Pair, stride: Pair, padding: Pair, out_hw: Pair) -> Any:
    xpad = _pad(x, padding, window_reach(tuple(x.shape[2:]), kernel, stride, padding, out_hw), 0.0)
    slices = list(window_slices(kernel, stride, out_hw))
    y = xpad[:, :, slices[0][0], slices[0][1]]
    for r, s in slices[1:]:
        y = y + xpad[:, :, r, s]
    return y


def avgpool2d_sums(x: Any, kernel: Pair, stride: Pair, padding: Pair, out_hw: Pair) -> Any:
    """``avgpool2d_sums`` of ``xpnet.layers.pool``: each window's sum, the offsets' slices added in its order."""
    return _avgpool2d_sums(x, _pair(kernel), _pair(stride), _pair(padding), _pair(out_hw))


@partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _avgpool2d_backward(share: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair) -> Any:
    parts = jnp.broadcast_to(share[:, :, None], (*share.shape[:2], kernel[0] * kernel[1], *share.shape[2:]))
    return _scatter_windows(parts, x_shape, kernel, stride, padding, (1, 1))


def avgpool2d_backward(share: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair) -> Any:
    """``avgpool2d_backward`` of ``xpnet.layers.pool``: dx (N, C, H, W), each window's share added back to its
    pixels in the portable order."""
    return _avgpool2d_backward(share, tuple(int(s) for s in x_shape), _pair(kernel), _pair(stride), _pair(padding))


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
    add("avgpool2d_sums", avgpool2d_sums)
    add("avgpool2d_backward", avgpool2d_backward)
