"""PyTorch's nn.Unfold (im2col: every window of an image as a column) and nn.Fold (col2im: the columns summed
back where their windows lie). Each is the other's backward (adjoint); the columns are in PyTorch's order,
channel-major then kernel offsets row-major, xpnet's im2col with ``per_sample``."""

from __future__ import annotations

from typing import Any

from ..backend import untracked
from ._im2col import as_pair, check_images, col2im, conv_out_hw, im2col, span
from .base import Layer


class _Windows(Layer):
    """The window arguments in PyTorch's order, each an int or a pair; images (N, C, H, W) or unbatched."""

    def __init__(self, kernel_size: Any, dilation: Any, padding: Any, stride: Any) -> None:
        super().__init__()
        self.kernel_size = as_pair(self.name, "kernel_size", kernel_size, 1)
        self.dilation = as_pair(self.name, "dilation", dilation, 1)
        self.padding = as_pair(self.name, "padding", padding, 0)
        self.stride = as_pair(self.name, "stride", stride, 1)
        self._shape = None  # the image's (N, C, H, W) and whether the input had N

    def config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "dilation": list(self.dilation),
                "padding": list(self.padding), "stride": list(self.stride)}

    def _unfold(self, image: Any) -> Any:
        return im2col(image, self.kernel_size, self.stride, self.padding, True, self.dilation)

    def _fold(self, cols: Any, shape: tuple[int, ...]) -> Any:
        return col2im(cols, shape, self.kernel_size, self.stride, self.padding, True, self.dilation)

    def _cols_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The columns' (N, C*kh*kw, L) of an image of ``shape`` (N, C, H, W)."""
        n, c, h, w = shape
        oh, ow = conv_out_hw((h, w), self.kernel_size, self.stride, self.padding, self.dilation)
        return n, c * self.kernel_size[0] * self.kernel_size[1], oh * ow


class Unfold(_Windows):
    """x: (N, C, H, W) or (C, H, W) -> (N, C*kh*kw, L) or (C*kh*kw, L), L = oh*ow, PyTorch's
    ``(H + 2p - d*(k - 1) - 1) // s + 1`` per axis. Caches the input's shape."""

    def __init__(self, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1) -> None:
        super().__init__(kernel_size, dilation, padding, stride)

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_float(x)
        batched = x.ndim == 4
        image = x if batched or x.ndim != 3 else x[None, ...]
        check_images(self.name, image, self.kernel_size, self.padding, dilation=self.dilation)
        self._shape = (tuple(image.shape), batched)
        cols = self._unfold(image)
        return cols if batched else cols[0, ...]

    def backward(self, dy: Any) -> Any:
        shape, batched = self._need(self._shape)
        cols = untracked(dy) if batched else untracked(dy)[None, ...]
        self._check_grad(cols, self._cols_shape(shape))
        dx = self._fold(cols, shape)
        return dx if batched else dx[0, ...]


class Fold(_Windows):
    """x: (N, C*kh*kw, L) or (C*kh*kw, L) -> (N, C, H, W) or (C, H, W), (H, W) = ``output_size``, each
    column summed into its window (overlaps add up); L must be the number of windows of an (H, W) image.
    Caches the input's shape."""

    def __init__(self, output_size: Any, kernel_size: Any, dilation: Any = 1, padding: Any = 0,
                 stride: Any = 1) -> None:
        super().__init__(kernel_size, dilation, padding, stride)
        self.output_size = as_pair(self.name, "output_size", output_size, 1)

    def config(self) -> dict[str, Any]:
        return {"output_size": list(self.output_size), **super().config()}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_float(x)
        batched = x.ndim == 3
        cols = x if batched or x.ndim != 2 else x[None, ...]
        kk = self.kernel_size[0] * self.kernel_size[1]
        n, ckk = (cols.shape[0], cols.shape[1]) if cols.ndim == 3 else (0, 0)
        shape = (n, ckk // kk, *self.output_size)
        rows, width = span(self.kernel_size, self.dilation)
        (h, w), (ph, pw) = self.output_size, self.padding
        if h + 2 * ph < rows or w + 2 * pw < width:
            raise ValueError(f"{self.name}: output_size {self.output_size} padded by {self.padding} is smaller than "
                             f"the {self.kernel_size} kernel (spanning {rows}x{width})")
        if cols.ndim != 3 or ckk % kk or tuple(cols.shape) != self._cols_shape(shape):
            raise ValueError(f"{self.name}: expected (N, C*{kk}, L) or (C*{kk}, L) with L = "
                             f"{self._cols_shape(shape)[2]}, the windows of a {self.output_size} output, got shape "
                             f"{tuple(x.shape)}")
        self._shape = (shape, batched)
        image = self._fold(cols, shape)
        return image if batched else image[0, ...]

    def backward(self, dy: Any) -> Any:
        shape, batched = self._need(self._shape)
        image = untracked(dy) if batched else untracked(dy)[None, ...]
        self._check_grad(image, shape)
        cols = self._unfold(image)
        return cols if batched else cols[0, ...]

