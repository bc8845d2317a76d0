"""Elementwise activations: ReLU, Sigmoid, Tanh. Shapes are kept: x: (N, ...) -> y: (N, ...)."""

from __future__ import annotations

from typing import Any

from ..backend import fast_path, namespace, untracked
from .base import Layer


class ReLU(Layer):
    """y = max(x, 0). Caches the mask x > 0; backward is dy * mask and never writes into ``dy``.

    An inf in ``dy`` where x <= 0 gives NaN there (inf * 0), where PyTorch gives 0; a non-finite
    gradient already means a lost step, which ``xn.train``'s guard reports with the layer.
    """

    def __init__(self) -> None:
        super().__init__()
        self._mask = None

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        y, self._mask = fast_path("relu_forward", xp, relu_forward)(x)
        return y

    def pieces(self) -> Any:
        return self._mask

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        mask = self._need(self._mask)
        xp = self._check_grad(dy, mask.shape)
        return fast_path("relu_backward", xp, relu_backward)(dy, mask)


def relu_forward(x: Any) -> tuple[Any, Any]:
    """y = max(x, 0) and the mask x > 0, portable. maximum and a multiply by the mask, not xp.where:
    NumPy's where is ~8x slower on the random sign patterns of conv activations (mispredictions)."""
    xp = namespace(x)
    return xp.maximum(x, 0.0), x > 0


def relu_backward(dy: Any, mask: Any) -> Any:
    """dx = dy * mask, portable."""
    xp = namespace(dy)
    return dy * xp.astype(mask, dy.dtype)


class Sigmoid(Layer):
    """y = 1 / (1 + exp(-x)), computed without overflow for large |x|. Caches y."""

    def __init__(self) -> None:
        super().__init__()
        self._y = None

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        # exp of -|x| never overflows; the two branches are the same function.
        e = xp.exp(-xp.abs(x))
        inv = 1.0 / (1.0 + e)
        self._y = xp.where(x >= 0, inv, e * inv)
        return self._y

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        y = self._need(self._y)
        self._check_grad(dy, y.shape)
        return dy * y * (1.0 - y)


class Tanh(Layer):
    """y = tanh(x). Caches y."""

    def __init__(self) -> None:
        super().__init__()
        self._y = None

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        self._y = xp.tanh(x)
        return self._y

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        y = self._need(self._y)
        self._check_grad(dy, y.shape)
        return dy * (1.0 - y * y)
