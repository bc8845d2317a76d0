"""im2col / col2im and window slicing with standard array-API ops only (the portable path).

Layout: x (N, C, H, W) <-> col (C*kh*kw, N*oh*ow). Row ``c*kh*kw + i*kw + j`` of ``col`` holds
``x_pad[n, c, dh*i + sh*p, dw*j + sw*q]`` at column ``n*oh*ow + p*ow + q`` (``dilation`` (dh, dw):
PyTorch's, kernel taps ``d`` pixels apart, a window spanning ``d*(k - 1) + 1``; 1: contiguous windows).
(``per_sample=True`` gives the layout (N, C*kh*kw, oh*ow) instead, for convolutions with few rows: see
``Conv2d``.) With it a convolution is one matrix product ``W.reshape(F, C*kh*kw) @ col -> (F, N*oh*ow)``,
and so are the weight gradient ``dy @ col.T`` and ``W.T @ dy``: one large product runs near the BLAS peak,
where one small product per sample pays the BLAS threads' start-up N times (much more on a loaded machine).
The price is that the product's rows are channels: ``(F, N, oh, ow)``, copied once to NCHW
(:func:`row_major`), and ``dy`` is copied once the other way. Both copies are cheaper than the per-sample
products, and an NCHW array is what the next layer's elementwise work is fastest on (mixed memory orders in
one NumPy operation are several times slower than either).

``im2col``/``col2im`` take a registered fast path when there is one (``xpnet.backend.fast_numpy``,
``fast_cupy``, ``fast_torch``, ``fast_jax``); the ``*_portable`` functions are the reference they are tested against.
Writes into windows go through ``set_at``/``add_at``, so they also work on immutable (JAX) arrays.
"""

from __future__ import annotations

import operator
from typing import Any

from ..backend import add_at, fast_path, namespace, set_at
# The window geometry, imported from the backend that its fast paths share it with, and named here for the layers
from ..backend.windows import conv_out_hw, out_size, span, window_reach, window_slices  # noqa: F401
from .base import positive_int


Pair = tuple[int, int]


def as_pair(layer: str, arg: str, value: Any, minimum: int) -> Pair:
    """An int or a pair of ints (each >= ``minimum``) as a pair, else a ValueError naming layer and argument."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in items):
        raise ValueError(f"{layer}: {arg} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(items[0]), int(items[1])


def check_images(layer: str, x: Any, kernel: Pair, padding: Pair, channels: int | None = None,
                 dilation: Pair = (1, 1)) -> Pair:
    """Check ``x`` is (N, C, H, W) with a window of ``kernel`` (taps ``dilation`` apart) fitting the padded
    image; return (H, W) padded. Raises ValueError naming the layer, what it expected and what came."""
    if x.ndim != 4:
        unbatched = "; one unbatched (C, H, W) image, which PyTorch takes, is x[None] here" if x.ndim == 3 else ""
        raise ValueError(f"{layer}: expected a 4-d input (N, C, H, W), got shape {tuple(x.shape)}{unbatched}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{layer}: expected {channels} input channels (N, {channels}, H, W), "
                         f"got shape {tuple(x.shape)}")
    hp, wp = x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1]
    rows, cols = span(kernel, dilation)
    if hp < rows or wp < cols:
        dilated = "" if dilation == (1, 1) else f" dilated by {dilation} ({rows}x{cols})"
        raise ValueError(f"{layer}: input {tuple(x.shape)} padded by {padding} is {hp}x{wp}, smaller than "
                         f"the {kernel[0]}x{kernel[1]} kernel{dilated}")
    return hp, wp


def pad2d(x: Any, padding: Pair, value: float = 0.0, reach: Pair | None = None) -> Any:
    """x (N, C, H, W) -> (N, C, H + 2*ph, W + 2*pw) with ``value`` around, or (N, C, *reach) with more of it
    at the bottom and right (:func:`window_reach`); ``x`` itself when there is nothing to pad."""
    ph, pw = padding
    n, c, h, w = x.shape
    hp, wp = (h + 2 * ph, w + 2 * pw) if reach is None else reach
    if (hp, wp) == (h, w):
        return x
    xp = namespace(x)
    out = xp.full((n, c, hp, wp), value, dtype=x.dtype, device=x.device)
    return set_at(out, (slice(None), slice(None), slice(ph, ph + h), slice(pw, pw + w)), x)


def row_major(xp: Any, a: Any) -> Any:
    """``a`` with its memory in row-major order: a copy of a transposed view, ``a`` itself when it is
    already row-major. Flattening is what forces the copy (``permute_dims`` alone gives only a view)."""
    return xp.reshape(xp.reshape(a, (-1,)), a.shape)


def im2col_portable(x: Any, kernel: Pair, stride: Pair, padding: Pair, per_sample: bool = False,
                    dilation: Pair = (1, 1)) -> Any:
    """x (N, C, H, W) -> col (C*kh*kw, N*oh*ow), or (N, C*kh*kw, oh*ow) with ``per_sample``: one strided
    slice per kernel offset, stacked."""
    xp = namespace(x)
    n, c, h, w = x.shape
    out_hw = conv_out_hw((h, w), kernel, stride, padding, dilation)
    oh, ow = out_hw
    kk = kernel[0] * kernel[1]
    xpad = pad2d(x, padding)
    if per_sample:
        col = xp.stack([xpad[:, :, r, s] for r, s in window_slices(kernel, stride, out_hw, dilation)], axis=2)
        return xp.reshape(col, (n, c * kk, oh * ow))
    xpad = xp.permute_dims(xpad, (1, 0, 2, 3))
    col = xp.stack([xpad[:, :, r, s] for r, s in window_slices(kernel, stride, out_hw, dilation)], axis=1)
    return xp.reshape(col, (c * kk, n * oh * ow))


def col2im_portable(col: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair,
                    per_sample: bool = False, dilation: Pair = (1, 1)) -> Any:
    """col (C*kh*kw, N*oh*ow) (or (N, C*kh*kw, oh*ow) with ``per_sample``) -> (N, C, H, W), summing
    overlapping windows (the adjoint of im2col).

    Without ``per_sample`` the sums run in a (C, N, H, W) buffer, where each kernel offset's rows of
    ``col`` are one contiguous block, and the result is a transposed view of it (``row_major`` copies
    it to NCHW memory)."""
    xp = namespace(col)
    n, c, h, w = x_shape
    (kh, kw), (ph, pw) = kernel, padding
    oh, ow = conv_out_hw((h, w), kernel, stride, padding, dilation)
    hp, wp = h + 2 * ph, w + 2 * pw
    slices = list(window_slices(kernel, stride, (oh, ow), dilation))
    if per_sample:
        col = xp.reshape(col, (n, c, kh * kw, oh, ow))
        img = xp.zeros((n, c, hp, wp), dtype=col.dtype, device=col.device)
        for k, (r, s) in enumerate(slices):
            img = add_at(img, (slice(None), slice(None), r, s), col[:, :, k, ...])
        return img[:, :, ph:ph + h, pw:pw + w]
    col = xp.reshape(col, (c, kh * kw, n, oh, ow))
    img = xp.zeros((c, n, hp, wp), dtype=col.dtype, device=col.device)
    for k, (r, s) in enumerate(slices):
        img = add_at(img, (slice(None), slice(None), r, s), col[:, k, ...])
    return xp.permute_dims(img[:, :, ph:ph + h, pw:pw + w], (1, 0, 2, 3))


def input_grad_stride1(dy: Any, w: Any, x_shape: tuple[int, ...], padding: Pair, dilation: Pair = (1, 1)) -> Any:
    """dx (N, C, H, W) of a stride-1 convolution from dy (N, F, oh, ow) and w (F, C, kh, kw), with a
    col2im of kh*kw 2-d adds over long rows instead of adds over rows only ``ow`` long (returns a
    transposed view, or NCHW memory from the fast path; ``row_major`` copies a view to NCHW memory).

    Works in a flat layout: sample n's padded image starts at n*R*wp of one long row per channel, rows
    ``wp`` = W + 2*pw wide, R = H + ph rows per sample (a sample's bottom padding is the next one's top
    padding: both are dropped). dy is laid out the same way, zeros outside (oh, ow), so dcol = W.T @ dy
    is one product (C*kh*kw, N*R*wp), and the values kernel offset (i, j) sends back are its rows for
    (i, j), added to the image shifted by dh*i*wp + dw*j. For the modern CNN's second conv (32 -> 64 channels,
    14x14, batch 100), interleaved in one process: backward 16-18 ms against 18-26 ms through dcol in
    4 MiB parts and col2im, and against 17-29 ms with one product per kernel offset (small products:
    OpenBLAS's threads start 9 times). The two passes around the product go through the ``"conv_flat_dy"``
    and ``"conv_shifted_sums"`` fast paths (Numba's: :mod:`xpnet.backend.numba_conv`; JAX's: ``fast_jax``)."""
    xp = namespace(dy)
    _, c, h, wd = x_shape
    f, _, kh, kw = w.shape
    wp = wd + 2 * padding[1]
    rows = max(h + padding[0], dy.shape[2])  # R: the padded images overlap only in padding
    flat = fast_path("conv_flat_dy", xp, flat_dy_portable)(dy, rows, wp)
    dcol = xp.reshape(fast_path("matmul", xp, operator.matmul)(xp.matrix_transpose(xp.reshape(w, (f, -1))), flat),
                      (c, kh * kw, flat.shape[1]))
    return fast_path("conv_shifted_sums", xp, shifted_sums_portable)(dcol, x_shape, (kh, kw), padding, dilation,
                                                                     rows, wp)


def flat_dy_portable(dy: Any, rows: int, wp: int) -> Any:
    """dy (N, F, oh, ow) -> (F, N*rows*wp): sample n's rows from n*rows*wp, each ``wp`` long, zeros around."""
    xp = namespace(dy)
    n, f, oh, ow = dy.shape
    flat = xp.zeros((f, n, rows, wp), dtype=dy.dtype, device=dy.device)
    flat = set_at(flat, (slice(None), slice(None), slice(0, oh), slice(0, ow)), xp.permute_dims(dy, (1, 0, 2, 3)))
    return xp.reshape(flat, (f, n * rows * wp))


def shifted_sums_portable(dcol: Any, x_shape: tuple[int, ...], kernel: Pair, padding: Pair, dilation: Pair,
                          rows: int, wp: int) -> Any:
    """dcol (C, kh*kw, N*rows*wp) -> dx (N, C, H, W) (a transposed view): kernel offset (i, j)'s rows added to
    the flat image shifted by dh*i*wp + dw*j, offsets in row-major order, the padding then cut off."""
    xp = namespace(dcol)
    n, c, h, wd = x_shape
    (kh, kw), (ph, pw), (dh, dw) = kernel, padding, dilation
    length = dcol.shape[2]
    img = xp.zeros((c, length + dh * (kh - 1) * wp + dw * (kw - 1)), dtype=dcol.dtype, device=dcol.device)
    for k in range(kh * kw):
        start = dh * (k // kw) * wp + dw * (k % kw)
        img = add_at(img, (slice(None), slice(start, start + length)), dcol[:, k, :])
    img = xp.reshape(img[:, :length], (c, n, rows, wp))
    return xp.permute_dims(img[:, :, ph:ph + h, pw:pw + wd], (1, 0, 2, 3))


def im2col(x: Any, kernel: Pair, stride: Pair, padding: Pair, per_sample: bool = False,
           dilation: Pair = (1, 1)) -> Any:
    """:func:`im2col_portable`, or the backend's registered fast path for ``"im2col"``."""
    return fast_path("im2col", namespace(x), im2col_portable)(x, kernel, stride, padding, per_sample, dilation)


def col2im(col: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair,
           per_sample: bool = False, dilation: Pair = (1, 1)) -> Any:
    """:func:`col2im_portable`, or the backend's registered fast path for ``"col2im"``."""
    return fast_path("col2im", namespace(col), col2im_portable)(col, x_shape, kernel, stride, padding, per_sample,
                                                                dilation)


def channel_groups(layer: Any, in_channels: int, out_channels: int, groups: Any) -> int:
    """PyTorch's ``groups`` of a convolution: a positive int dividing both channel counts, else a ValueError
    naming the layer."""
    groups = positive_int(layer, "groups", groups)
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{layer.name}: in_channels ({in_channels}) and out_channels ({out_channels}) must both "
                         f"be divisible by groups ({groups})")
    return groups


def group_blocks(a: Any, axis: int, groups: int) -> list[Any]:
    """``a`` cut along ``axis`` into ``groups`` equal blocks (a grouped convolution's channel blocks); ``[a]``
    for one group."""
    if groups == 1:
        return [a]
    step = a.shape[axis] // groups
    lead = (slice(None),) * axis
    return [a[lead + (slice(g * step, (g + 1) * step), ...)] for g in range(groups)]


def concat_groups(xp: Any, parts: list[Any], axis: int) -> Any:
    """The per-group results concatenated along ``axis``; the one result itself for one group."""
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=axis)

