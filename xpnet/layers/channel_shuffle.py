"""PyTorch's nn.ChannelShuffle (ShuffleNet): the channels of each of ``groups`` groups dealt out in turn."""

from __future__ import annotations

from typing import Any

from ..backend import namespace, untracked
from .base import Layer, positive_int


def channel_shuffle(x: Any, groups: int) -> Any:
    """(N, C, *) -> (N, C, *): channel g * (C // groups) + i goes to channel i * groups + g. Its inverse is
    ``channel_shuffle(y, C // groups)``."""
    xp = namespace(x)
    n, c, *rest = x.shape
    split = xp.reshape(x, (n, groups, c // groups, *rest))
    return xp.reshape(xp.permute_dims(split, (0, 2, 1, *range(3, x.ndim + 1))), tuple(x.shape))


class ChannelShuffle(Layer):
    """x: (N, C, *) (3 axes or more, C divisible by ``groups``) -> y of x's shape, PyTorch's order; backward
    shuffles dy back. Caches the input's shape."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = positive_int(self, "groups", groups)
        self._shape = None

    def config(self) -> dict[str, Any]:
        return {"groups": self.groups}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_float(x)
        if x.ndim < 3 or x.shape[1] % self.groups:
            raise ValueError(f"{self.name}: expected (N, C, *) with 3 axes or more and C divisible by groups = "
                             f"{self.groups}, got shape {tuple(x.shape)}")
        self._shape = tuple(x.shape)
        return channel_shuffle(x, self.groups)

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        self._check_grad(dy, self._need(self._shape))
        return channel_shuffle(dy, self._shape[1] // self.groups)
