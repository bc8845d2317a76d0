"""PyTorch's nn.PixelShuffle and nn.PixelUnshuffle (super-resolution's sub-pixel convolution): channels moved into
r x r blocks of pixels and back. Each is the other's backward."""

from __future__ import annotations

from typing import Any

from ..backend import namespace, untracked
from .base import Layer, positive_int


def pixel_shuffle(x: Any, r: int) -> Any:
    """(..., C * r * r, H, W) -> (..., C, H * r, W * r): channel c * r * r + i * r + j of pixel (h, w) goes to
    channel c, pixel (h * r + i, w * r + j)."""
    xp = namespace(x)
    *lead, c, h, w = x.shape
    k = len(lead)
    blocks = xp.reshape(x, (*lead, c // (r * r), r, r, h, w))
    moved = xp.permute_dims(blocks, (*range(k), k, k + 3, k + 1, k + 4, k + 2))
    return xp.reshape(moved, (*lead, c // (r * r), h * r, w * r))


def pixel_unshuffle(x: Any, r: int) -> Any:
    """(..., C, H * r, W * r) -> (..., C * r * r, H, W), the inverse of :func:`pixel_shuffle`."""
    xp = namespace(x)
    *lead, c, hr, wr = x.shape
    k = len(lead)
    blocks = xp.reshape(x, (*lead, c, hr // r, r, wr // r, r))
    moved = xp.permute_dims(blocks, (*range(k), k, k + 2, k + 4, k + 1, k + 3))
    return xp.reshape(moved, (*lead, c * r * r, hr // r, wr // r))


class _Shuffle(Layer):
    """A rearrangement by a factor r of (..., C, H, W) inputs (3 axes or more); caches the input's shape."""

    arg = ""  # PyTorch's name of the factor

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = positive_int(self, self.arg, factor)
        self._shape = None
        self._out = None

    def config(self) -> dict[str, Any]:
        return {self.arg: self.factor}

    def forward_op(self, x: Any, r: int) -> Any:
        raise NotImplementedError

    def backward_op(self, dy: Any, r: int) -> Any:
        raise NotImplementedError

    def _check_input(self, x: Any) -> None:
        raise NotImplementedError

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_float(x)
        if x.ndim < 3:
            raise ValueError(f"{self.name}: expected (N, C, H, W) (3 axes or more), got shape {tuple(x.shape)}")
        self._check_input(x)
        y = self.forward_op(x, self.factor)
        self._shape, self._out = tuple(x.shape), tuple(y.shape)
        return y

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        self._need(self._shape)
        self._check_grad(dy, self._out)
        return self.backward_op(dy, self.factor)


class PixelShuffle(_Shuffle):
    """PyTorch's nn.PixelShuffle(upscale_factor): (N, C * r**2, H, W) -> (N, C, H * r, W * r), PyTorch's order."""

    arg = "upscale_factor"
    forward_op, backward_op = staticmethod(pixel_shuffle), staticmethod(pixel_unshuffle)

    def __init__(self, upscale_factor: int) -> None:
        super().__init__(upscale_factor)

    def _check_input(self, x: Any) -> None:
        if x.shape[-3] % (self.factor * self.factor):
            raise ValueError(f"PixelShuffle: the channels, {x.shape[-3]} (axis -3 of {tuple(x.shape)}), must be "
                             f"divisible by upscale_factor**2 = {self.factor * self.factor}")


class PixelUnshuffle(_Shuffle):
    """PyTorch's nn.PixelUnshuffle(downscale_factor): (N, C, H * r, W * r) -> (N, C * r**2, H, W)."""

    arg = "downscale_factor"
    forward_op, backward_op = staticmethod(pixel_unshuffle), staticmethod(pixel_shuffle)

    def __init__(self, downscale_factor: int) -> None:
        super().__init__(downscale_factor)

    def _check_input(self, x: Any) -> None:
        if x.shape[-2] % self.factor or x.shape[-1] % self.factor:
            raise ValueError(f"PixelUnshuffle: height and width {tuple(x.shape[-2:])} must be divisible by "
                             f"downscale_factor = {self.factor}")
