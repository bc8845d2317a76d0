"""Pooling over NCHW images: MaxPool2d, AvgPool2d, GlobalAvgPool."""

from __future__ import annotations

import math
from typing import Any

from .. import _chainer
from .._user import flag, keyword_hints
from ..backend import add_at, fast_path, index_dtype, namespace, same_device, set_at, untracked
from ..backend.windows import first_inside
from ._im2col import Pair, as_pair, check_images, out_size, pad2d, span, window_reach, window_slices
from .base import Layer, positive_int


class _Pool2d(Layer):
    dilation: Pair = (1, 1)  # MaxPool2d's own sets it: the window's taps that many pixels apart

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False):
        super().__init__()
        self.kernel_size = as_pair(self.name, "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else as_pair(self.name, "stride", stride, 1)
        self.padding = as_pair(self.name, "padding", padding, 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{self.name}: padding must be at most half the window, got padding "
                             f"{self.padding} for kernel_size={self.kernel_size}")
        self.ceil_mode = flag(ceil_mode, self.name, "ceil_mode")
        self._shape = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "_Pool2d":
        # Files saved before the PyTorch names hold k.
        return cls(**{("kernel_size" if k == "k" else k): v for k, v in config.items()})

    def config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "ceil_mode": self.ceil_mode}

    def _start(self, x: Any) -> tuple[Any, Pair]:
        """The namespace of x and the output's (oh, ow), after checking x; remembers x's shape."""
        xp = self._check_float(x)
        # With ceil_mode a window may run past the padded input (PyTorch's rule): only no window at all is refused.
        hp, wp = check_images(self.name, x, (1, 1) if self.ceil_mode else self.kernel_size, self.padding,
                              dilation=self.dilation)
        out_hw = self._out_hw(tuple(x.shape))
        if min(out_hw) < 1:
            raise ValueError(f"{self.name}: input {tuple(x.shape)} padded by {self.padding} is {hp}x{wp}, too small "
                             f"for a {self.kernel_size[0]}x{self.kernel_size[1]} window every {self.stride} pixels "
                             "even with ceil_mode=True")
        self._shape = tuple(x.shape)
        return xp, out_hw

    def _out_hw(self, x_shape: tuple[int, ...]) -> Pair:
        """(oh, ow) of the output for an input of ``x_shape`` (N, C, H, W)."""
        (kh, kw), (sh, sw), (ph, pw) = span(self.kernel_size, self.dilation), self.stride, self.padding
        return out_size(x_shape[2], kh, sh, ph, self.ceil_mode), out_size(x_shape[3], kw, sw, pw, self.ceil_mode)

    def _check_dy(self, dy: Any) -> None:
        """Raise when dy does not have the shape of the last forward's output."""
        n, c, _, _ = self._need(self._shape)
        if tuple(dy.shape[2:]) != self._out_hw(self._shape) or tuple(dy.shape[:2]) != (n, c):
            raise ValueError(f"{self.name}: dy of shape {tuple(dy.shape)} does not match the last forward "
                             f"(input {self._shape})")


def scatter_windows(xp: Any, dy: Any, parts: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair,
                    padding: Pair, dilation: Pair = (1, 1)) -> Any:
    """dx (N, C, H, W) from the gradient each kernel offset receives (``parts(k)``: (N, C, oh, ow)); what
    lands in the padding, also past it (ceil_mode), is dropped."""
    n, c, h, w = x_shape
    (ph, pw) = padding
    out_hw = (dy.shape[2], dy.shape[3])
    hp, wp = window_reach((h, w), span(kernel, dilation), stride, padding, out_hw)
    dx = xp.zeros((n, c, hp, wp), dtype=dy.dtype, device=dy.device)
    overlap = any(s < k for s, k in zip(stride, span(kernel, dilation)))
    write = add_at if overlap else set_at  # either works on immutable (JAX) arrays too
    for k, (r, s) in enumerate(window_slices(kernel, stride, out_hw, dilation)):
        dx = write(dx, (slice(None), slice(None), r, s), parts(k))
    return dx if (hp, wp) == (h, w) else dx[:, :, ph:ph + h, pw:pw + w]


class MaxPool2d(_Pool2d):
    """Maximum over ``kernel_size`` windows every ``stride`` (default ``kernel_size``) pixels; padding counts
    as -inf (PyTorch's names and defaults). ``ceil_mode=True``: the output size rounds up as PyTorch's
    (one more window where part of the padded input is left; the part of it past the input counts as -inf).

    x: (N, C, H, W) -> y: (N, C, oh, ow), oh = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1 (ceil_mode: rounded up).
    Caches for each output the kernel offset of its window's maximum (int8, or int32 for windows of more than
    127 pixels), so backward never reads x.
    The positional arguments are PyTorch's, in its order: ``dilation`` (an int or a pair) as PyTorch's, the
    window's taps that many pixels apart (the Numba and CuPy kernels take 1 only: other dilations run as
    portable code). ``return_indices=True``: forward returns (y, indices) as PyTorch's, indices (N, C, oh, ow)
    each window's maximum as the flat index h*W + w into its (n, c) input plane (int64; int32 on JAX without x64),
    for a MaxUnpool2d; backward still takes dy of y only. Such a pool has two outputs, so no Sequential holds it.
    On ties the whole gradient goes to the first maximum of the window in row-major order (as in the
    book and PyTorch), not split; a window holding NaN gives y NaN, its index and gradient at its last NaN,
    and one of -inf only its first pixel inside the input (PyTorch's kernel, ``val > max || isnan(val)``,
    on every path). Backward is dy times each window's mask on every path (portable,
    Numba, CuPy and JAX): an inf or NaN in dy makes the other pixels of its window NaN (inf * 0), as ReLU's
    dy * mask does, where PyTorch leaves them 0.
    """

    @keyword_hints("MaxPool2d", _chainer.POOL)
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 return_indices: bool = False, ceil_mode: bool = False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.dilation = as_pair(self.name, "dilation", dilation, 1)
        self.return_indices = flag(return_indices, self.name, "return_indices")
        self._first = None

    def config(self) -> dict[str, Any]:
        return {**super().config(), "dilation": list(self.dilation), "return_indices": self.return_indices}

    def sequential_refusal(self) -> str:
        if not self.return_indices:
            return ""
        return ("returns (y, indices) (return_indices=True), which the next layer cannot take: write an xn.Model "
                "whose forward passes them on (y, idx = self.pool(x); ...; self.unpool(h, idx)), or leave "
                "return_indices out")

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp, out_hw = self._start(x)
        index = xp.int8 if self.kernel_size[0] * self.kernel_size[1] <= 127 else xp.int32
        forward = fast_path("maxpool2d_forward", xp, maxpool2d_forward)
        y, self._first = forward(x, self.kernel_size, self.stride, self.padding, out_hw, index, self.dilation)
        if self.return_indices:
            return y, input_indices(xp, self._first, self._shape[3], self.kernel_size[1], self.stride,
                                    self.padding, self.dilation)
        return y

    def pieces(self) -> Any:
        return self._first

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        first = self._need(self._first)
        xp = self._check_float(dy)
        self._check_dy(dy)
        backward = fast_path("maxpool2d_backward", xp, maxpool2d_backward)
        return backward(dy, first, self._shape, self.kernel_size, self.stride, self.padding, self.dilation)


def input_indices(xp: Any, first: Any, width: int, kw: int, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """PyTorch's max-pooling indices (N, C, oh, ow): for each output, the flat index h*W + w in its input plane
    (``width`` W) of the window's maximum, from ``first``, its kernel offset (kernel ``(kh, kw)``, row-major)."""
    index = index_dtype(xp)
    k = xp.astype(first, index)
    oh, ow = first.shape[2:]
    rows = xp.arange(oh, dtype=index, device=first.device) * stride[0] - padding[0]
    cols = xp.arange(ow, dtype=index, device=first.device) * stride[1] - padding[1]
    return (xp.reshape(rows, (-1, 1)) + (k // kw) * dilation[0]) * width + cols + (k % kw) * dilation[1]


def maxpool2d_forward(x: Any, kernel: Pair, stride: Pair, padding: Pair, out_hw: Pair,
                      index_dtype: Any, dilation: Pair = (1, 1)) -> tuple[Any, Any]:
    """y (N, C, oh, ow), the maximum of each window, and for each output the kernel offset (``index_dtype``)
    PyTorch's kernel picks: its first maximum, its last NaN where it holds any, its first pixel inside the
    input where it holds only -inf. Portable: one running maximum over the kernel offsets."""
    xp = namespace(x)
    reach = window_reach(tuple(x.shape[2:]), span(kernel, dilation), stride, padding, out_hw)
    xpad = pad2d(x, padding, -math.inf, reach)
    slices = list(window_slices(kernel, stride, out_hw, dilation))
    r, s = slices[0]
    y = xp.asarray(xpad[:, :, r, s], copy=True)
    first = xp.zeros(y.shape, dtype=index_dtype, device=y.device)
    if any(padding):
        first = first + first_inside(xp, out_hw, kernel[1], stride, padding, dilation, index_dtype, y.device)
    for k, (r, s) in enumerate(slices[1:], start=1):
        v = xpad[:, :, r, s]
        # PyTorch's `val > maxval || isnan(val)`: a tie keeps the earlier offset, a later NaN takes over
        # (y is NaN from the first one on). The last offset that raised is the one picked.
        raised = (v > y) | xp.isnan(v)
        first = xp.maximum(first, xp.astype(raised, first.dtype) * k)
        y = xp.maximum(y, v)
    return y, first


def maxpool2d_backward(dy: Any, first: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair,
                       padding: Pair, dilation: Pair = (1, 1)) -> Any:
    """dx (N, C, H, W): each output's gradient sent to its window's first maximum, portable."""
    xp = namespace(dy)
    # A multiply by the mask: xp.where with a random mask is several times slower in NumPy.
    return scatter_windows(xp, dy, lambda k: dy * xp.astype(first == k, dy.dtype), x_shape, kernel, stride, padding,
                           dilation)


class AvgPool2d(_Pool2d):
    """Mean over ``kernel_size`` windows every ``stride`` (default ``kernel_size``) pixels, PyTorch's arguments
    in its order. x: (N, C, H, W) -> y: (N, C, oh, ow). Caches the input shape and 1 / the windows' divisors
    (an array where they differ, one kept per input size while the dtype and device stay the same).

    Each window's sum is divided as PyTorch's ``avg_pool2d`` divides it: by ``divisor_override`` when given;
    else by the pixels of the window inside the padded input (``count_include_pad=True``, the default: the
    zero padding counts, the part of a ``ceil_mode`` window past the padding does not) or inside the input
    alone (``count_include_pad=False``). ``ceil_mode=True`` rounds the output size up as in MaxPool2d."""

    @keyword_hints("AvgPool2d", _chainer.POOL)
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: Any = None):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = flag(count_include_pad, self.name, "count_include_pad")
        self.divisor_override = (None if divisor_override is None
                                 else positive_int(self, "divisor_override", divisor_override))
        self._scale = None
        self._tables: dict[Pair, Any] = {}  # (H, W) -> (oh, ow) array of 1 / divisor

    def config(self) -> dict[str, Any]:
        return {**super().config(), "count_include_pad": self.count_include_pad,
                "divisor_override": self.divisor_override}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp, out_hw = self._start(x)
        y = fast_path("avgpool2d_sums", xp, avgpool2d_sums)(x, self.kernel_size, self.stride, self.padding, out_hw)
        self._scale = self._reciprocal_divisors(y, out_hw)
        return y * self._scale

    def _reciprocal_divisors(self, like: Any, out_hw: Pair) -> Any:
        """1 / each window's divisor (see the class): a Python float where every window has the same one, else
        an (oh, ow) array of ``like``'s dtype and device. A window's count is its rows' count times its columns'."""
        if self.divisor_override is not None:
            return 1.0 / self.divisor_override
        counts = []
        for size, k, s, p, n in zip(self._shape[2:], self.kernel_size, self.stride, self.padding, out_hw):
            starts = [i * s - p for i in range(n)]
            stops = [min(start + k, size + p) for start in starts]  # ceil_mode's last window ends at the padding
            if self.count_include_pad:
                counts.append([stop - start for start, stop in zip(starts, stops)])
            else:
                counts.append([min(stop, size) - max(start, 0) for start, stop in zip(starts, stops)])
        rows, cols = counts
        if len(set(rows)) == 1 and len(set(cols)) == 1:
            return 1.0 / (rows[0] * cols[0])
        # Made once per input size and kept: a copy from the host at each step would also stop a CUDA-graph
        # capture of the training step (CuPy refuses host copies while capturing; the warm-up steps make it).
        # One per size, not only the last: a captured step reads its table at each launch, and an evaluation on
        # images of another size between epochs must not free it. Keyed by the size and checked against the
        # table itself, not by a namespace or device object: a module (and JAX's Device) cannot be deep-copied,
        # and summary(), gradcheck and xpnet.testing copy the model.
        size = tuple(self._shape[2:])
        table = self._tables.get(size)
        # same_device first: it compares the namespaces too, and two libraries' dtypes never compare.
        if table is None or not same_device(table, like) or table.dtype != like.dtype:
            xp = namespace(like)
            table = xp.asarray([[1.0 / (r * c) for c in cols] for r in rows], dtype=like.dtype, device=like.device)
            self._tables[size] = table
        return table

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        xp = self._check_float(dy)
        self._check_dy(dy)
        share = dy * self._need(self._scale)
        backward = fast_path("avgpool2d_backward", xp, avgpool2d_backward)
        return backward(share, self._shape, self.kernel_size, self.stride, self.padding)


def avgpool2d_sums(x: Any, kernel: Pair, stride: Pair, padding: Pair, out_hw: Pair) -> Any:
    """Each window's sum (N, C, oh, ow) over x (N, C, H, W) padded with zeros (also where a ceil_mode window runs
    past the padding): the kernel offsets' strided slices added in row-major order, portable."""
    xp = namespace(x)
    reach = window_reach(tuple(x.shape[2:]), kernel, stride, padding, out_hw)
    xpad = pad2d(x, padding, 0.0, reach)
    slices = list(window_slices(kernel, stride, out_hw))
    r, s = slices[0]
    y = xp.asarray(xpad[:, :, r, s], copy=True)
    for r, s in slices[1:]:
        y += xpad[:, :, r, s]
    return y


def avgpool2d_backward(share: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair) -> Any:
    """dx (N, C, H, W): each window's share of dy (N, C, oh, ow), dy over its divisor, given to each of its pixels,
    portable."""
    return scatter_windows(namespace(share), share, lambda k: share, x_shape, kernel, stride, padding)


class GlobalAvgPool(Layer):
    """Mean over all pixels of each channel: x (N, C, H, W) -> y (N, C), PyTorch's AdaptiveAvgPool2d(1) and the
    flatten after it (``AdaptiveAvgPool2d(1)`` alone keeps (N, C, 1, 1)). Caches the input shape."""

    def __init__(self) -> None:
        super().__init__()
        self._shape = None

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        if x.ndim != 4:
            raise ValueError(f"GlobalAvgPool: expected a 4-d input (N, C, H, W), got shape {tuple(x.shape)}")
        self._shape = tuple(x.shape)
        return xp.mean(x, axis=(2, 3))

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        n, c, h, w = self._need(self._shape)
        xp = self._check_float(dy)
        if tuple(dy.shape) != (n, c):
            raise ValueError(f"GlobalAvgPool: expected dy of shape {(n, c)}, got {tuple(dy.shape)}")
        return fast_path("global_avg_pool_backward", xp, global_avg_pool_backward)(dy, self._shape)


def global_avg_pool_backward(dy: Any, shape: tuple[int, int, int, int]) -> Any:
    """GlobalAvgPool's dx (N, C, H, W) from dy (N, C): each pixel dy / (H * W), a new array, portable (CuPy's fast path
    is one kernel, where this launches three)."""
    xp = namespace(dy)
    n, c, h, w = shape
    share = xp.reshape(dy * (1.0 / (h * w)), (n, c, 1, 1))
    return share + xp.zeros((n, c, h, w), dtype=dy.dtype, device=dy.device)
