"""Losses of real-valued predictions against targets of their shape."""

from __future__ import annotations

from typing import Any

from ..backend import untracked
from .base import Loss, check_dout, element_count


class MeanSquaredError(Loss):
    """Mean over all elements of (y - t)**2 (as PyTorch's MSELoss).

    y, t: the same shape (N, ...). Caches y - t.
    """

    def __init__(self) -> None:
        self._diff = None

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        y, t = untracked(y), untracked(t)
        xp = self._check_pair(y, t)
        if tuple(y.shape) != tuple(t.shape):
            raise ValueError(f"{self.name}: predictions {tuple(y.shape)} and targets {tuple(t.shape)} differ in shape")
        if t.dtype != y.dtype:
            t = xp.astype(t, y.dtype)
        self._diff = y - t
        return xp.sum(self._diff * self._diff) / element_count(y)

    def mean_count(self) -> Any:
        return None if self._diff is None else element_count(self._diff)

    def backward(self, dout: Any = 1.0) -> Any:
        if self._diff is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        check_dout(self, dout)
        return self._diff * (2.0 * dout / element_count(self._diff))
