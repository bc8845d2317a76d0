"""2-d convolution (cross-correlation, as in the book and PyTorch) over NCHW images, via im2col."""

from __future__ import annotations

import operator
from typing import Any

from .. import _chainer
from .. import init as _init
from .._user import flag, is_bool, keyword_hints
from ..backend import fast_path, untracked
from ._depthwise import depthwise_backward, depthwise_forward
from ._im2col import (as_pair, channel_groups, check_images, col2im, concat_groups, conv_out_hw, group_blocks,
                      im2col, input_grad_stride1, row_major, span)
from .base import DEVICE_DEFAULT, Layer, positive_int, pytorch_defaults_only
from .mode_padding import MODES, mode_pad, mode_unpad
from .pytorch_params import PyTorchParam


_ONE_PRODUCT_MIN_ROWS = 64
_DCOL_CHUNK_BYTES = 4 << 20
_DEPTHWISE_WINDOWS = True  # groups == in_channels through _depthwise.py (tests turn it off to compare)


class Conv2d(Layer):
    """y[n, f] = sum_c W[f, c] (*) x_pad[n, c] + b[f], windows taken every ``stride`` pixels.

    x: (N, in_channels, H, W) -> y: (N, out_channels, oh, ow), oh = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1 (ow
    alike). ``kernel_size``, ``stride``, ``padding`` (zeros), ``dilation`` (the kernel's taps that many pixels
    apart, PyTorch's and Chainer's ``dilate``) are ints or (h, w) pairs; ``padding="same"`` (stride 1, an even
    d*(k - 1): d*(k - 1) // 2, the output the input's size) and ``"valid"`` (0) as PyTorch's. The positional
    arguments are PyTorch's, in its order: ``dilation`` the 6th, ``groups`` the 7th, ``bias`` the 8th; ``init``
    and ``dtype`` are keyword-only, so that no positional value of PyTorch's means something else here.
    ``padding_mode`` as PyTorch's: "zeros", or "reflect", "replicate", "circular" (x padded so, as
    ``mode_padding`` pads, then convolved without padding; backward adds the border's gradient back).
    PyTorch's ``device=None`` is accepted; another device is refused with what to do.
    ``groups`` = g as PyTorch's: in_ch and out_ch divisible by g, output channel block j (out_ch // g
    channels) sees input channel block j only; g = in_ch is a depthwise convolution. Each block is the
    same im2col product on channel slices, the outputs concatenated along channels; a depthwise one
    (g = in_ch > 1) is instead a sum over the kernel offsets of windows times weights (``_depthwise.py``).
    params: W (out_ch, in_ch // g, kh, kw) (PyTorch's layout), b (out_ch,). Caches one im2col matrix per
    group, (in_ch // g * kh*kw, N*oh*ow) or for few rows (N, in_ch // g * kh*kw, oh*ow) (see
    ``_per_sample``), or the padded input for a depthwise one, and the input shape.
    The products go through the ``"matmul"`` fast path, as Linear's: the library's own product, except on
    CuPy while a CUDA graph is captured, where xpnet's kernel stands in for cuBLAS.
    """

    weight = PyTorchParam("W")  # PyTorch's name and layout
    bias = PyTorchParam("b")  # None when built without one

    @keyword_hints("Conv2d", _chainer.CONV2D)
    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: Any = 1, bias: bool = True, padding_mode: Any = "zeros", device: Any = None,
                 *, init: Any = "he", dtype: str = "float32"):
        super().__init__()
        if in_channels is None:
            raise ValueError(_chainer.lazy_size(self.name, "in_channels"))
        self._refuse_pytorch_only(dilation, groups, padding_mode, device)
        self.in_ch = positive_int(self, "in_channels", in_channels)
        self.out_ch = positive_int(self, "out_channels", out_channels)
        self.groups = channel_groups(self, self.in_ch, self.out_ch, groups)
        self.kernel_size = as_pair(self.name, "kernel_size", kernel_size, 1)
        self.stride = as_pair(self.name, "stride", stride, 1)
        self.dilation = as_pair(self.name, "dilation", dilation, 1)
        self.padding = self._padding(padding)
        self.padding_mode = padding_mode
        # The convolution's own zero padding: none where x is padded in another mode first.
        self._conv_pad = self.padding if padding_mode == "zeros" else (0, 0)
        self.init, self.has_bias, self.dtype = init, flag(bias, self.name, "bias"), _init.dtype_name(dtype, self.name)
        kh, kw = self.kernel_size
        cg = self.in_ch // self.groups
        # fan_in and fan_out as PyTorch's (from W's size(1) and size(0)): fan_in counts one group's inputs.
        self.params["W"] = _init.weights((self.out_ch, cg, kh, kw), cg * kh * kw, self.out_ch * kh * kw,
                                         init=init, dtype=dtype, who=self.name)
        if self.has_bias:
            self.params["b"] = _init.zeros((self.out_ch,), dtype=dtype)
        self._col = None
        self._shape = None
        self._unpadded = None

    def _padding(self, padding: Any) -> tuple[int, int]:
        """``padding`` as a pair; PyTorch's ``"valid"`` is 0 and ``"same"`` (stride 1, an even d*(k - 1): PyTorch's
        total padding, then split evenly) d*(k - 1) // 2."""
        if isinstance(padding, str) and padding == "valid":
            return 0, 0
        if isinstance(padding, str) and padding == "same":
            rows, cols = span(self.kernel_size, self.dilation)
            if self.stride != (1, 1) or (rows - 1) % 2 or (cols - 1) % 2:
                raise ValueError(f"{self.name}: padding='same' needs stride 1 and odd kernel sizes or an even "
                                 f"dilation here (got stride={self.stride}, kernel_size={self.kernel_size}, "
                                 f"dilation={self.dilation}); pass padding as ints")
            return (rows - 1) // 2, (cols - 1) // 2
        return as_pair(self.name, "padding", padding, 0)

    def _refuse_pytorch_only(self, dilation: Any, groups: Any, padding_mode: Any, device: Any) -> None:
        """PyTorch's padding_mode one of its four, device its default, else refused saying what to do;
        a string in dilation's place is an init passed where xpnet once took it, a bool there Chainer's
        nobias; a bool in groups' place a bias."""
        if isinstance(dilation, str):
            raise TypeError(f"{self.name}: the sixth argument is PyTorch's dilation, got {dilation!r}; pass the "
                            f"initialiser by keyword: init={dilation!r}")
        if is_bool(dilation):
            raise TypeError(f"{self.name}: the sixth argument is PyTorch's dilation, got {dilation!r}; Chainer's "
                            f"sixth, nobias, is bias={not dilation!r} here, by keyword")
        if is_bool(groups):
            raise TypeError(f"{self.name}: the seventh argument is PyTorch's groups, got {groups!r}; bias is the "
                            f"eighth, or pass it by keyword: bias={groups!r}")
        if not isinstance(padding_mode, str) or padding_mode not in ("zeros", *MODES):
            raise ValueError(f"{self.name}: padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular' "
                             f"(PyTorch's), got {padding_mode!r}")
        pytorch_defaults_only(self.name, {"device": DEVICE_DEFAULT}, {"device": device})

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Conv2d":
        # Files saved before the PyTorch names hold in_ch/out_ch.
        renamed = {"in_ch": "in_channels", "out_ch": "out_channels"}
        return cls(**{renamed.get(k, k): v for k, v in config.items()})

    def config(self) -> dict[str, Any]:
        init = self.init if isinstance(self.init, (str, int, float)) else "he"
        return {"in_channels": self.in_ch, "out_channels": self.out_ch, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": list(self.padding), "dilation": list(self.dilation),
                "groups": self.groups, "padding_mode": self.padding_mode, "init": init,
                "bias": self.has_bias, "dtype": self.dtype}

    @property
    def in_channels(self) -> int:
        return self.in_ch

    @property
    def out_channels(self) -> int:
        return self.out_ch

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        self._check_like_params(x)
        if self.padding_mode != "zeros":
            self._unpadded = tuple(x.shape)
            x = mode_pad(self.name, x, self._sides(), self.padding_mode)
        check_images(self.name, x, self.kernel_size, self._conv_pad, channels=self.in_ch, dilation=self.dilation)
        n, _, h, w = x.shape
        oh, ow = self._out_hw(h, w)
        self._shape = tuple(x.shape)
        if self._depthwise():
            y, xpad = depthwise_forward(x, self.params["W"], self.stride, self._conv_pad, (oh, ow), self.dilation)
            self._col = [xpad]
            return y + xp.reshape(self.params["b"], (self.out_ch, 1, 1)) if self.has_bias else y
        per_sample = self._per_sample()
        matmul = fast_path("matmul", xp, operator.matmul)
        self._col = [im2col(x_g, self.kernel_size, self.stride, self._conv_pad, per_sample, self.dilation)
                     for x_g in group_blocks(x, 1, self.groups)]
        w2 = xp.reshape(self.params["W"], (self.out_ch, -1))
        y = concat_groups(xp, [matmul(w_g, col) for w_g, col in zip(group_blocks(w2, 0, self.groups), self._col)], -2)
        if self.has_bias:
            y += xp.reshape(self.params["b"], (self.out_ch, 1))
        if per_sample:
            return xp.reshape(y, (n, self.out_ch, oh, ow))
        return row_major(xp, xp.permute_dims(xp.reshape(y, (self.out_ch, n, oh, ow)), (1, 0, 2, 3)))

    def _sides(self) -> tuple[int, int, int, int]:
        """``padding`` as PyTorch's F.pad takes it: (left, right, top, bottom)."""
        ph, pw = self.padding
        return pw, pw, ph, ph

    def backward(self, dy: Any) -> Any:
        dx = self._input_grad(dy)
        if self.padding_mode == "zeros":
            return dx
        return mode_unpad(dx, self._sides(), self.padding_mode, self._unpadded)

    def _input_grad(self, dy: Any) -> Any:
        """dx of the convolution proper (of the padded input, for a padding_mode other than zeros)."""
        if self._depthwise():
            return self._depthwise_grads(dy)
        xp, dy, dy2 = self._param_grads(dy)
        n, c, h, w = self._shape
        shape_g = (n, c // self.groups, h, w)
        w_blocks = group_blocks(self.params["W"], 0, self.groups)
        if self._per_sample():
            matmul = fast_path("matmul", xp, operator.matmul)
            dy2 = self._dy_rows(xp, dy) if dy2 is None else dy2
            return concat_groups(xp, [
                col2im(matmul(xp.matrix_transpose(xp.reshape(w_g, (w_g.shape[0], -1))), dy_g), shape_g,
                       self.kernel_size, self.stride, self._conv_pad, True, self.dilation)
                for w_g, dy_g in zip(w_blocks, group_blocks(dy2, 1, self.groups))], 1)
        if self.stride == (1, 1):
            # col's last use was dW: dropped before dcol (as large) is made, which keeps the step's
            # peak memory where it was (one backward per forward, as Layer says).
            self._col = None
            dy_blocks = group_blocks(dy, 1, self.groups)
            return row_major(xp, concat_groups(xp, [input_grad_stride1(dy_g, w_g, shape_g, self._conv_pad,
                                                                       self.dilation)
                                                    for w_g, dy_g in zip(w_blocks, dy_blocks)], 1))
        dy2 = self._dy_rows(xp, dy) if dy2 is None else dy2
        return row_major(xp, concat_groups(xp, [self._input_grad_in_parts(xp, w_g, dy_g, shape_g)
                                                for w_g, dy_g in zip(w_blocks, group_blocks(dy2, 0, self.groups))], 1))

    def _input_grad_in_parts(self, xp: Any, weight: Any, dy2: Any, shape: tuple[int, ...]) -> Any:
        """dx (N, C, H, W) of one group from its weights (F, C, kh, kw) and dy2 (F, N*oh*ow), any stride:
        dcol = W.T @ dy is as large as col; made a few input channels at a time and each part summed back
        by col2im at once, it never is whole, which keeps a step's peak memory down."""
        n, c, h, w = shape
        w_t = xp.matrix_transpose(xp.reshape(weight, (weight.shape[0], -1)))
        kk = self.kernel_size[0] * self.kernel_size[1]
        per = max(1, _DCOL_CHUNK_BYTES // (kk * dy2.shape[1] * (xp.finfo(dy2.dtype).bits // 8)))
        matmul = fast_path("matmul", xp, operator.matmul)
        parts = [col2im(matmul(w_t[c0 * kk:min(c0 + per, c) * kk, :], dy2), (n, min(per, c - c0), h, w),
                        self.kernel_size, self.stride, self._conv_pad, False, self.dilation)
                 for c0 in range(0, c, per)]
        return concat_groups(xp, parts, 1)

    def backward_params(self, dy: Any) -> None:
        if self._depthwise():
            self._depthwise_grads(dy)
        else:
            self._param_grads(dy)

    def _depthwise_grads(self, dy: Any) -> Any:
        """Fill grads["W"], grads["b"] of a depthwise convolution; returns dx."""
        xp, dy, cols = self._checked_dy(dy)
        dx, dW = depthwise_backward(dy, cols[0], self.params["W"], self.stride, self._conv_pad, self._shape[2:],
                                    self.dilation)
        if self._frozen:  # dW comes with dx from one pass here: computed, not kept
            return dx
        self.grads["W"] = dW
        if self.has_bias:
            self.grads["b"] = xp.sum(dy, axis=(0, 2, 3))
        return dx

    def _checked_dy(self, dy: Any) -> tuple[Any, Any, list[Any]]:
        """The namespace, dy (checked to be of y's shape) and the forward's cache."""
        dy = untracked(dy)
        cols = self._need(self._col)
        xp = self._check_float(dy)
        n, _, h, w = self._shape
        oh, ow = self._out_hw(h, w)
        if tuple(dy.shape) != (n, self.out_ch, oh, ow):
            raise ValueError(f"Conv2d: expected dy of shape {(n, self.out_ch, oh, ow)}, got {tuple(dy.shape)}")
        return xp, dy, cols

    def _dy_rows(self, xp: Any, dy: Any) -> Any:
        """dy (N, out_ch, oh, ow) as the products take it: (out_ch, N*oh*ow) (a copy), or per sample
        (N, out_ch, oh*ow) (a view)."""
        n, f, oh, ow = dy.shape
        if self._per_sample():
            return xp.reshape(dy, (n, f, oh * ow))
        return xp.reshape(xp.permute_dims(dy, (1, 0, 2, 3)), (f, n * oh * ow))

    def _param_grads(self, dy: Any) -> tuple[Any, Any, Any]:
        """Fill grads["W"], grads["b"] (not when frozen); returns the namespace, dy checked and dy as
        :meth:`_dy_rows` gives it, None when frozen (the stride-1 dx reads dy itself: no copy for nothing)."""
        xp, dy, cols = self._checked_dy(dy)
        if self._frozen:  # requires_grad_(False): no weight product, the saving fine-tuning is for
            return xp, dy, None
        matmul = fast_path("matmul", xp, operator.matmul)
        per_sample = self._per_sample()
        dy2 = self._dy_rows(xp, dy)
        if per_sample:
            dW = [xp.sum(matmul(dy_g, xp.matrix_transpose(col)), axis=0)
                  for dy_g, col in zip(group_blocks(dy2, 1, self.groups), cols)]
            axes = (0, 2)
        else:
            # col @ dy.T, transposed, not dy @ col.T: OpenBLAS splits the long inner dimension far
            # better with the small (out_ch-wide) operand last; 1.1x to 2.5x faster here.
            dW = [xp.matrix_transpose(matmul(col, xp.matrix_transpose(dy_g)))
                  for dy_g, col in zip(group_blocks(dy2, 0, self.groups), cols)]
            axes = (1,)
        self.grads["W"] = xp.reshape(concat_groups(xp, dW, 0), self.params["W"].shape)
        if self.has_bias:
            self.grads["b"] = xp.sum(dy2, axis=axes)
        return xp, dy, dy2

    def _depthwise(self) -> bool:
        return _DEPTHWISE_WINDOWS and self.groups == self.in_ch > 1

    def _per_sample(self) -> bool:
        """One small product per sample (col (N, C*kh*kw, oh*ow), NCHW out with no copy) when col has
        few rows; else one large product over the batch (col (C*kh*kw, N*oh*ow)), which needs an NCHW
        copy of y and of dy. Measured: at 9 rows (3x3 on gray images) per sample was 2x faster for the
        layer, at 25 (the book's 5x5) 1.1x for the SimpleConvNet step at batch 1000; at 288 one product
        was 1.15x faster with 1 BLAS thread and 2.5x on the loaded machine with 2 (each small product
        pays the threads' start-up). The threshold lies between."""
        w_shape = self.params["W"].shape
        return w_shape[1] * w_shape[2] * w_shape[3] < _ONE_PRODUCT_MIN_ROWS

    def _out_hw(self, h: int, w: int) -> tuple[int, int]:
        return conv_out_hw((h, w), self.kernel_size, self.stride, self._conv_pad, self.dilation)
