"""Flatten: x: (N, d1, d2, ...) -> (N, d1*d2*...), or the axes ``start_dim..end_dim`` merged, as PyTorch's
``nn.Flatten``. Caches the input shape."""

from __future__ import annotations

import math
from typing import Any

from .._user import is_int
from ..backend import untracked
from .base import Layer


class Flatten(Layer):
    """Merge the axes ``start_dim`` to ``end_dim`` (both included, negative counting from the end) into one,
    PyTorch's arguments and defaults: ``Flatten()`` reshapes every sample to a vector, (N, C, H, W) ->
    (N, C*H*W); ``Flatten(2)`` gives (N, C, H*W). Backward restores the shape."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        for arg, value in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not is_int(value):
                raise TypeError(f"Flatten: {arg} must be an int (an axis), got {value!r}")
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)
        self._shape = None
        self._out = None

    def _axes(self, ndim: int) -> tuple[int, int]:
        """``start_dim`` and ``end_dim`` as axes of an ``ndim``-d input (PyTorch's rules and checks)."""
        axes = []
        for arg, value in (("start_dim", self.start_dim), ("end_dim", self.end_dim)):
            if not -ndim <= value < ndim:
                raise ValueError(f"Flatten: {arg}={value} is out of range for a {ndim}-d input (expected "
                                 f"{-ndim}..{ndim - 1})")
            axes.append(value % ndim)
        if axes[0] > axes[1]:
            raise ValueError(f"Flatten: start_dim={self.start_dim} comes after end_dim={self.end_dim} on a "
                             f"{ndim}-d input")
        return axes[0], axes[1]

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        if x.ndim < 1:
            raise ValueError("Flatten: expected an input of shape (N, ...), got a 0-d array")
        start, end = self._axes(x.ndim)
        shape = tuple(int(d) for d in x.shape)
        self._shape = x.shape
        self._out = (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])
        return xp.reshape(x, self._out)

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        shape = self._need(self._shape)
        xp = self._check_grad(dy, self._out)
        return xp.reshape(dy, shape)
