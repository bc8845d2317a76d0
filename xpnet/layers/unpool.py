"""PyTorch's nn.MaxUnpool2d and nn.MaxUnpool1d: each value put back where its max pool found it, zeros elsewhere."""

from __future__ import annotations

from typing import Any

from ..backend import index_dtype, isdtype, same_device, set_at, untracked
from ._im2col import Pair, as_pair, pad2d, window_reach, window_slices
from ._lifted import in_1d, lifted
from .base import Layer
from .uses import called


class MaxUnpool2d(Layer):
    """The partial inverse of ``MaxPool2d(kernel_size, stride, padding, return_indices=True)``, PyTorch's arguments.

    forward(x (N, C, H, W), indices (N, C, H, W), output_size=None) -> y (N, C, Ho, Wo), zeros but value
    (n, c, i, j) at flat index ``indices[n, c, i, j]`` = h*Wo + w of its plane, as PyTorch's ``self.unpool(x, idx)``.
    Default Ho = (H - 1)*sh - 2*ph + kh (the same for Wo); ``output_size`` (Ho, Wo) or (N, C, Ho, Wo) (the pooled
    input's shape) within a stride of it, as PyTorch's. Each index must lie in window (i, j) of the layer's
    kernel_size, stride and padding (a MaxPool2d's with the same three, dilation 1), else a ValueError (one host
    read per forward). Two windows giving the same index: the later one's value (row-major), as PyTorch's CPU
    kernel. backward(dy (N, C, Ho, Wo)) -> dx (N, C, H, W), dy at each index (as PyTorch's; none for indices).
    Portable: one strided slice of the output per kernel offset, no scatter. Caches each value's kernel offset.
    """

    _spatial = "H, W"
    _output_sizes = "(Ho, Wo) or (N, C, Ho, Wo)"

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0):
        super().__init__()
        self.kernel_size = as_pair(self.name, "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else as_pair(self.name, "stride", stride, 1)
        self.padding = as_pair(self.name, "padding", padding, 0)
        self._offset = self._shape = None

    def config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding)}

    def sequential_refusal(self) -> str:
        return ("takes two inputs (x and the pool's indices): write an xn.Model whose forward passes them "
                "(y, idx = self.pool(x); ...; self.unpool(h, idx))")

    def __call__(self, x: Any, indices: Any, output_size: Any = None,  # type: ignore[override]
                 train: bool | None = None) -> Any:
        return self.forward(x, indices, output_size, called(self, train, "x, indices, output_size"))

    def forward(self, x: Any, indices: Any, output_size: Any = None,  # type: ignore[override]
                train: bool = True) -> Any:
        x, indices = untracked(x), untracked(indices)
        self._check_train(train, "x, indices, output_size")
        xp = self._check_float(x)
        if x.ndim != 4 or tuple(indices.shape) != tuple(x.shape):
            raise ValueError(f"{self.name}: expected x (N, C, {self._spatial}) and indices of its shape, got "
                             f"{tuple(x.shape)} and {tuple(getattr(indices, 'shape', ()))}")
        if not same_device(x, indices) or not isdtype(xp, indices.dtype, "integral"):
            raise TypeError(f"{self.name}: indices must be an integer array beside x (the pool's return_indices=True "
                            f"output), got {type(indices).__name__} of dtype {indices.dtype}")
        n, c, h, w = x.shape
        ho, wo = self._out_hw((h, w), output_size)
        self._offset = self._offsets(xp, indices, (h, w), (ho, wo))
        reach = window_reach((ho, wo), self.kernel_size, self.stride, self.padding, (h, w))
        y = xp.zeros((n, c, *reach), dtype=x.dtype, device=x.device)
        slices = list(window_slices(self.kernel_size, self.stride, (h, w)))
        for k in reversed(range(len(slices))):  # the earlier offset of a pixel is the later window's: it wins
            at = (slice(None), slice(None), *slices[k])
            y = set_at(y, at, xp.where(self._offset == k, x, y[at]))
        self._shape = (tuple(x.shape), (n, c, ho, wo), reach)
        (ph, pw) = self.padding
        return y[:, :, ph:ph + ho, pw:pw + wo]

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        offset = self._need(self._offset)
        x_shape, y_shape, reach = self._shape
        xp = self._check_grad(dy, y_shape)
        dy_pad = pad2d(dy, self.padding, 0.0, reach)
        dx = xp.zeros(x_shape, dtype=dy.dtype, device=dy.device)
        for k, (r, s) in enumerate(window_slices(self.kernel_size, self.stride, x_shape[2:])):
            dx = xp.where(offset == k, dy_pad[:, :, r, s], dx)
        return dx

    def _out_hw(self, hw: Pair, output_size: Any) -> Pair:
        """(Ho, Wo): PyTorch's default, or ``output_size`` checked against it as PyTorch's _unpool_output_size."""
        default = tuple((i - 1) * s - 2 * p + k for i, k, s, p in zip(hw, self.kernel_size, self.stride, self.padding))
        if output_size is None:
            return default
        size = tuple(output_size) if isinstance(output_size, (tuple, list)) else None
        if size is not None and len(size) == 4:
            size = size[2:]
        if size is None or len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in size) \
                or not all(d - s < v < d + s for v, d, s in zip(size, default, self.stride)):
            raise ValueError(f"{self.name}: output_size must be {self._output_sizes}, each within a stride "
                             f"{self.stride} of the default {default} (PyTorch's rule), got {output_size!r}; pass "
                             "the pooled input's shape, x.shape")
        return size

    def _offsets(self, xp: Any, indices: Any, hw: Pair, out: Pair) -> Any:
        """Each index's kernel offset ki*kw + kj in its window, after checking it lies there."""
        index = index_dtype(xp)
        idx = xp.astype(indices, index)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        rows = xp.reshape(xp.arange(hw[0], dtype=index, device=idx.device) * sh - ph, (-1, 1))
        cols = xp.arange(hw[1], dtype=index, device=idx.device) * sw - pw
        ki, kj = idx // out[1] - rows, idx % out[1] - cols
        inside = (idx >= 0) & (idx < out[0] * out[1]) & (ki >= 0) & (ki < kh) & (kj >= 0) & (kj < kw)
        if not bool(xp.all(inside)):
            raise ValueError(f"{self.name}: indices outside the window of their position for kernel_size="
                             f"{self.kernel_size}, stride={self.stride}, padding={self.padding} and output "
                             f"{out}: pass the indices of a MaxPool with the same three (dilation 1) and, where "
                             "it dropped rows or columns, output_size=its input's shape")
        return ki * kw + kj


class MaxUnpool1d(MaxUnpool2d):
    """PyTorch's nn.MaxUnpool1d(kernel_size, stride=None, padding=0) (ints or tuples of one): MaxUnpool2d on x and
    indices viewed as (N, C, 1, L). forward(x (N, C, L), indices (N, C, L), output_size=None) -> y (N, C, Lo),
    Lo = (L - 1)*s - 2*p + k, or ``output_size`` (Lo,) or (N, C, Lo); backward(dy) -> dx (N, C, L)."""

    _spatial = "L"
    _output_sizes = "(Lo,) or (N, C, Lo)"

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0):
        super().__init__(lifted(self.name, "kernel_size", kernel_size, 1), lifted(self.name, "stride", stride, 1),
                         lifted(self.name, "padding", padding, 0, first=0))

    def config(self) -> dict[str, Any]:
        return {k: v[1] for k, v in super().config().items()}

    def forward(self, x: Any, indices: Any, output_size: Any = None,  # type: ignore[override]
                train: bool = True) -> Any:
        if x.ndim != 3 or tuple(getattr(indices, "shape", ())) != tuple(x.shape):
            raise ValueError(f"{self.name}: expected x (N, C, L) and indices of its shape, got {tuple(x.shape)} "
                             f"and {tuple(getattr(indices, 'shape', ()))}")
        xp = self._check_float(x)
        given = output_size
        if isinstance(output_size, (tuple, list)) and len(output_size) in (1, 3):
            output_size = (1, output_size[-1])
        n, c, length = x.shape
        try:
            y = super().forward(xp.reshape(x, (n, c, 1, length)), xp.reshape(indices, (n, c, 1, length)),
                                output_size, train)
        except ValueError as e:  # said in the 1-d terms the user gave, not the (N, C, 1, L) view's
            raise ValueError(in_1d(str(e).replace(f"got {output_size!r}", f"got {given!r}"))) from None
        return xp.reshape(y, (n, c, y.shape[3]))

    def backward(self, dy: Any) -> Any:
        xp = self._check_float(dy)
        dx = super().backward(xp.reshape(dy, (dy.shape[0], dy.shape[1], 1, dy.shape[-1])))
        return xp.reshape(dx, (dx.shape[0], dx.shape[1], dx.shape[3]))
