"""Flatten: x: (N, d1, d2, ...) -> (N, d1*d2*...), or the axes ``start_dim..end_dim`` merged, as PyTorch's
``nn.Flatten``; Unflatten, its inverse, PyTorch's ``nn.Unflatten``. Each caches the input shape."""

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


class Unflatten(Layer):
    """Split axis ``dim`` (negative counting from the end) into ``unflattened_size``, PyTorch's
    ``nn.Unflatten``: ``Unflatten(1, (64, 7, 7))`` turns (N, 3136) into (N, 64, 7, 7), as a decoder does after
    its Linear layer; one size may be -1 (the rest of the axis). Backward restores the shape. Caches the input
    shape."""

    def __init__(self, dim: int, unflattened_size: Any) -> None:
        super().__init__()
        if not is_int(dim):
            raise TypeError(f"Unflatten: dim must be an int (an axis), got {dim!r}")
        sizes = tuple(unflattened_size) if isinstance(unflattened_size, (tuple, list)) else None
        if not sizes or not all(is_int(d) and (d >= 1 or d == -1) for d in sizes) or sizes.count(-1) > 1:
            raise TypeError(f"Unflatten: unflattened_size must be a tuple of ints >= 1 (one of them may be -1), got "
                            f"{unflattened_size!r}")
        self.dim, self.unflattened_size = int(dim), tuple(int(d) for d in sizes)
        self._shape = None
        self._out = None

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"Unflatten: dim={self.dim} is out of range for a {x.ndim}-d input of shape "
                             f"{tuple(x.shape)}")
        axis = self.dim % x.ndim
        shape = tuple(int(d) for d in x.shape)
        known = math.prod(d for d in self.unflattened_size if d != -1)
        sizes = tuple(shape[axis] // known if d == -1 else d for d in self.unflattened_size)
        if math.prod(sizes) != shape[axis] or known == 0:
            raise ValueError(f"Unflatten: sizes {list(self.unflattened_size)} do not multiply up to axis {self.dim} of "
                             f"the input, {shape[axis]} (input shape {shape})")
        self._shape = x.shape
        self._out = (*shape[:axis], *sizes, *shape[axis + 1:])
        return xp.reshape(x, self._out)

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        shape = self._need(self._shape)
        xp = self._check_grad(dy, self._out)
        return xp.reshape(dy, shape)
