"""2-d transposed convolution over NCHW images: Conv2d's input gradient as a layer (col2im of W^T x)."""

from __future__ import annotations

import math
import operator
from typing import Any

from .. import init as _init
from .._user import flag
from ..backend import fast_path, untracked
from ._im2col import as_pair, channel_groups, col2im, concat_groups, group_blocks, im2col, pad2d, row_major, span
from .base import DEVICE_DEFAULT, Layer, positive_int, pytorch_defaults_only
from .pytorch_params import PyTorchParam


class ConvTranspose2d(Layer):
    """PyTorch's nn.ConvTranspose2d: each input pixel x[n, c, i, j] adds W[c] (a kernel per output channel) times
    it into the output window at (i*sh - ph, j*sw - pw); overlapping windows sum. It is the input gradient of a
    Conv2d(out_channels, in_channels, kernel_size, stride, padding) whose W is this layer's, so it undoes that
    Conv2d's change of size.

    x: (N, in_channels, H, W) -> y: (N, out_channels, oh, ow),
    oh = (H - 1)*sh - 2*ph + dh*(kh - 1) + oph + 1 (ow alike): ``output_padding`` (< ``stride`` or < ``dilation``,
    PyTorch's rule) adds rows and columns at the bottom and right (of the bottom and right padding otherwise
    cropped; past it only the bias reaches them), to pick among the input sizes a strided Conv2d maps to H.
    The arguments are PyTorch's, in its order; ``groups`` as PyTorch's (channel block j of the output from block j
    of the input); ``dilation`` (9th) as PyTorch's, the kernel's taps that many pixels apart;
    ``padding_mode="zeros"`` and ``device=None`` are accepted, other values refused; ``init`` and ``dtype`` are
    keyword-only.
    params: W (in_channels, out_channels // groups, kh, kw) (PyTorch's ``weight`` layout), b (out_channels,).
    ``init="pytorch"`` (the default) draws W and b as PyTorch does, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
    PyTorch's fan_in of W, (out_channels // groups)*kh*kw; Conv2d's initialisers ("he", "xavier", a standard
    deviation, a callable) from the same fan_in, b then zeros.
    Forward: y = col2im(W^T @ x) per group, x as (in_channels, N*H*W), unpadded, then its (oh, ow) part from
    (ph, pw). Backward: col = im2col(dy) (a Conv2d forward of dy, placed back at (ph, pw)), dx = W @ col,
    dW = x @ col^T, db the sum of dy over N, oh, ow. Caches x as
    (in_channels, N*H*W) and its shape. The products go through the ``"matmul"`` fast path, as Conv2d's.
    PyTorch's ``forward(x, output_size)`` is not taken (an output size in train's place is refused): the output
    size is chosen with ``output_padding``.
    """

    weight = PyTorchParam("W")  # PyTorch's name and layout
    bias = PyTorchParam("b")  # None when built without one

    train_hint = ("PyTorch's forward(x, output_size) is not taken here: choose the output size with "
                  "ConvTranspose2d(..., output_padding=...)")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 output_padding: Any = 0, groups: Any = 1, bias: bool = True, dilation: Any = 1,
                 padding_mode: Any = "zeros", device: Any = None, *, init: Any = "pytorch", dtype: str = "float32"):
        super().__init__()
        self.in_channels = positive_int(self, "in_channels", in_channels)
        self.out_channels = positive_int(self, "out_channels", out_channels)
        self.groups = channel_groups(self, self.in_channels, self.out_channels, groups)
        self.kernel_size = as_pair(self.name, "kernel_size", kernel_size, 1)
        self.stride = as_pair(self.name, "stride", stride, 1)
        self.padding = as_pair(self.name, "padding", padding, 0)
        self.output_padding = as_pair(self.name, "output_padding", output_padding, 0)
        self.dilation = as_pair(self.name, "dilation", dilation, 1)
        if any(op >= max(s, d) for op, s, d in zip(self.output_padding, self.stride, self.dilation)):
            raise ValueError(f"{self.name}: output_padding must be smaller than stride or dilation (PyTorch's rule), "
                             f"got output_padding={self.output_padding}, stride={self.stride} and "
                             f"dilation={self.dilation}")
        pytorch_defaults_only(self.name, {
            "padding_mode": ("zeros", "PyTorch's ConvTranspose2d pads with zeros only; leave padding_mode='zeros'"),
            "device": DEVICE_DEFAULT},
            {"padding_mode": padding_mode, "device": device})
        self.init, self.has_bias, self.dtype = init, flag(bias, self.name, "bias"), _init.dtype_name(dtype, self.name)
        kh, kw = self.kernel_size
        # PyTorch's fan_in and fan_out: W's size(1) and size(0) times the kernel's pixels.
        fan_in, fan_out = self.out_channels // self.groups * kh * kw, self.in_channels * kh * kw
        shape = (self.in_channels, self.out_channels // self.groups, kh, kw)
        if isinstance(init, str) and init == "pytorch":
            bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) and the bias's bound, as _ConvNd's
            self.params["W"] = _init.uniform(shape, bound, self.dtype)
            if self.has_bias:
                self.params["b"] = _init.uniform((self.out_channels,), bound, self.dtype)
        else:
            self.params["W"] = _init.weights(shape, fan_in, fan_out, init=init, dtype=self.dtype, who=self.name,
                                             also=("pytorch",))
            if self.has_bias:
                self.params["b"] = _init.zeros((self.out_channels,), dtype=self.dtype)
        self._x2 = None
        self._shape = None

    def config(self) -> dict[str, Any]:
        init = self.init if isinstance(self.init, (str, int, float)) else "pytorch"
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": list(self.padding),
                "output_padding": list(self.output_padding), "groups": self.groups, "bias": self.has_bias,
                "dilation": list(self.dilation), "init": init,
                "dtype": self.dtype}

    def forward(self, x: Any, train: bool = True) -> Any:
        self._check_train(train)
        x = untracked(x)
        xp = self._check_float(x)
        self._check_like_params(x)
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected a 4-d input (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self.name}: expected {self.in_channels} input channels (N, {self.in_channels}, H, W), "
                             f"got shape {tuple(x.shape)}")
        n, _, h, w = x.shape
        out_hw = self._out_hw(h, w)
        self._shape = tuple(x.shape)
        self._x2 = xp.reshape(xp.permute_dims(x, (1, 0, 2, 3)), (self.in_channels, n * h * w))
        matmul = fast_path("matmul", xp, operator.matmul)
        shape_g = (n, self.out_channels // self.groups, *self._full_hw(h, w))
        y = concat_groups(xp, [
            col2im(matmul(xp.matrix_transpose(xp.reshape(w_g, (w_g.shape[0], -1))), x_g), shape_g, self.kernel_size,
                   self.stride, (0, 0), False, self.dilation)
            for w_g, x_g in zip(group_blocks(self.params["W"], 0, self.groups),
                                group_blocks(self._x2, 0, self.groups))], 1)
        y = row_major(xp, _window(y, self.padding, out_hw))
        if self.has_bias:
            y += xp.reshape(self.params["b"], (self.out_channels, 1, 1))
        return y

    def backward(self, dy: Any) -> Any:
        xp, col = self._param_grads(dy)
        n, _, h, w = self._shape
        matmul = fast_path("matmul", xp, operator.matmul)
        w_blocks = group_blocks(self.params["W"], 0, self.groups)
        dx2 = concat_groups(xp, [matmul(xp.reshape(w_g, (w_g.shape[0], -1)), col_g)
                                 for w_g, col_g in zip(w_blocks, group_blocks(col, 0, self.groups))], 0)
        return row_major(xp, xp.permute_dims(xp.reshape(dx2, (self.in_channels, n, h, w)), (1, 0, 2, 3)))

    def backward_params(self, dy: Any) -> None:
        self._param_grads(dy)

    def _param_grads(self, dy: Any) -> tuple[Any, Any]:
        """Fill grads["W"], grads["b"] (not when frozen); returns the namespace and im2col of dy,
        (out_channels*kh*kw, N*H*W)."""
        dy = untracked(dy)
        x2 = self._need(self._x2)
        xp = self._check_float(dy)
        n, _, h, w = self._shape
        expected = (n, self.out_channels, *self._out_hw(h, w))
        if tuple(dy.shape) != expected:
            raise ValueError(f"{self.name}: expected dy of shape {expected} (the last forward's output), got "
                             f"{tuple(dy.shape)}")
        (ph, pw), full_hw = self.padding, self._full_hw(h, w)
        col = im2col(_window(dy, (-ph, -pw), full_hw), self.kernel_size, self.stride, (0, 0), False, self.dilation)
        if self._frozen:  # requires_grad_(False): no weight product, the saving fine-tuning is for
            return xp, col
        matmul = fast_path("matmul", xp, operator.matmul)
        dW = [matmul(x_g, xp.matrix_transpose(col_g))
              for x_g, col_g in zip(group_blocks(x2, 0, self.groups), group_blocks(col, 0, self.groups))]
        self.grads["W"] = xp.reshape(concat_groups(xp, dW, 0), self.params["W"].shape)
        if self.has_bias:
            self.grads["b"] = xp.sum(dy, axis=(0, 2, 3))
        return xp, col

    def _out_hw(self, h: int, w: int) -> tuple[int, int]:
        """(oh, ow) for an (H, W) input; a ValueError where padding leaves less than one pixel."""
        out = tuple((size - 1) * s - 2 * p + d * (k - 1) + op + 1 for size, s, p, d, k, op in
                    zip((h, w), self.stride, self.padding, self.dilation, self.kernel_size, self.output_padding))
        if min(out) < 1:
            raise ValueError(f"{self.name}: an input of {h}x{w} gives an output of {out[0]}x{out[1]} ((H - 1)*stride "
                             f"- 2*padding + dilation*(kernel_size - 1) + output_padding + 1, with padding="
                             f"{self.padding}): padding is too large for this input")
        return out

    def _full_hw(self, h: int, w: int) -> tuple[int, int]:
        """The (rows, cols) the windows of an (H, W) input cover before padding is cropped: (H - 1)*s + the
        kernel's span. The output is its part from (ph, pw), zeros past it (output_padding may reach there)."""
        rows, cols = span(self.kernel_size, self.dilation)
        return (h - 1) * self.stride[0] + rows, (w - 1) * self.stride[1] + cols


def _window(a: Any, offset: tuple[int, int], out_hw: tuple[int, int]) -> Any:
    """The (oh, ow) part of a (N, C, H, W) from row and column ``offset`` (negative: from before a's start),
    zeros where it lies outside a."""
    (t, l), (oh, ow), (h, w) = offset, out_hw, a.shape[2:]
    part = a[:, :, max(t, 0):min(t + oh, h), max(l, 0):min(l + ow, w)]
    return pad2d(part, (max(-t, 0), max(-l, 0)), 0.0, out_hw)
