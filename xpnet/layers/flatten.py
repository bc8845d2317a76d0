"""Flatten: x: (N, d1, d2, ...) -> (N, d1*d2*...). Caches the input shape."""

from __future__ import annotations

from typing import Any

from ..backend import untracked
from .base import Layer


class Flatten(Layer):
    """Reshape every sample to a vector; backward restores the shape."""

    def __init__(self) -> None:
        super().__init__()
        self._shape = None

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        if x.ndim < 1:
            raise ValueError("Flatten: expected an input of shape (N, ...), got a 0-d array")
        self._shape = x.shape
        return xp.reshape(x, (x.shape[0], -1))

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        shape = self._need(self._shape)
        width = 1
        for d in shape[1:]:
            width *= int(d)
        xp = self._check_grad(dy, (shape[0], width))
        return xp.reshape(dy, shape)
