"""Window geometry of the convolutions and poolings (a kernel's span, output sizes, the padded input a window
reaches, the strided slice of each kernel offset, max pooling's first tap inside the input): pure arithmetic on
shapes, shared by the portable layers (:mod:`xpnet.layers._im2col`, :mod:`xpnet.layers.pool`) and the fast paths
that stand for them (:mod:`xpnet.backend.fast_jax`)."""

from __future__ import annotations

from typing import Any, Iterator

from .namespaces import index_dtype

Pair = tuple[int, int]


def span(kernel: Pair, dilation: Pair) -> Pair:
    """The (rows, cols) a kernel's window covers with its taps ``dilation`` apart: d*(k - 1) + 1 each."""
    return dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1


def out_size(size: int, k: int, s: int, p: int, ceil_mode: bool = False) -> int:
    """Output length of a window of ``k`` (a dilated kernel's span) with stride ``s`` over ``size`` padded by
    ``p`` each side: the windows that fit, or with ``ceil_mode`` (pooling) one more where a part of the padded
    input is left, PyTorch's rule (``pooling_output_shape`` in ATen's Pool.h): the last window must start inside
    the input or its left padding, so it may run past the right padding but never lies wholly in it."""
    if not ceil_mode:
        return (size + 2 * p - k) // s + 1
    n = (size + 2 * p - k + s - 1) // s + 1
    return n - 1 if (n - 1) * s >= size + p else n


def conv_out_hw(hw: Pair, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair = (1, 1)) -> Pair:
    """A convolution's (oh, ow) for an (H, W) input, PyTorch's (H + 2*p - d*(k - 1) - 1) // s + 1."""
    rows, cols = span(kernel, dilation)
    return out_size(hw[0], rows, stride[0], padding[0]), out_size(hw[1], cols, stride[1], padding[1])


def window_reach(hw: Pair, kernel: Pair, stride: Pair, padding: Pair, out_hw: Pair) -> Pair:
    """(rows, cols) of the padded input that the windows (``kernel``: their span) of an (oh, ow) output cover:
    (H + 2*ph, W + 2*pw), or more where ceil_mode's last window runs past the padding (pooling pads that part
    too)."""
    (h, w), (kh, kw), (sh, sw), (ph, pw), (oh, ow) = hw, kernel, stride, padding, out_hw
    return max(h + 2 * ph, (oh - 1) * sh + kh), max(w + 2 * pw, (ow - 1) * sw + kw)


def window_slices(kernel: Pair, stride: Pair, out_hw: Pair, dilation: Pair = (1, 1)) -> Iterator[tuple[slice, slice]]:
    """For each kernel offset (i, j), row-major, the (rows, cols) slices of the padded input that
    the offset touches (from row dh*i, column dw*j): ``x_pad[:, :, rows, cols]`` has shape (N, C, oh, ow)."""
    (kh, kw), (sh, sw), (oh, ow), (dh, dw) = kernel, stride, out_hw, dilation
    for i in range(kh):
        for j in range(kw):
            yield slice(dh * i, dh * i + sh * (oh - 1) + 1, sh), slice(dw * j, dw * j + sw * (ow - 1) + 1, sw)


def first_inside(xp: Any, out_hw: Pair, kw: int, stride: Pair, padding: Pair, dilation: Pair, dtype: Any,
                 device: Any) -> Any:
    """(oh, ow): each window's first kernel offset inside the input (past its top and left padding), where
    PyTorch's kernel starts; made on the device (no host copy, which a CUDA-graph capture refuses)."""
    index = index_dtype(xp)
    starts = []
    for n, s, p, d in zip(out_hw, stride, padding, dilation):
        before = p - xp.arange(n, dtype=index, device=device) * s  # padding taps before the window's input
        starts.append((xp.maximum(before, xp.zeros_like(before)) + d - 1) // d)
    return xp.astype(xp.reshape(starts[0], (-1, 1)) * kw + starts[1], dtype)
