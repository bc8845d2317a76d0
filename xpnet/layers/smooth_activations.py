"""PyTorch's smooth activations built on the sigmoid and softplus: Mish, Softsign, LogSigmoid, with its formulas
for y and dx, computed without overflow for any finite x. Shapes are kept: x: (N, ...) -> y: (N, ...). Each
caches x."""

from __future__ import annotations

from typing import Any

from ..backend import namespace
from .activations import Elementwise, sigmoid


def _softplus(x: Any) -> Any:
    """log(1 + exp(x)) as max(x, 0) + log1p(exp(-|x|)): never overflows."""
    xp = namespace(x)
    return xp.maximum(x, 0.0) + xp.log1p(xp.exp(-xp.abs(x)))


class Mish(Elementwise):
    """PyTorch's nn.Mish: y = x * tanh(softplus(x)); dx = dy * (t + x * sigmoid(x) * (1 - t**2)), t =
    tanh(softplus(x)) (PyTorch's formula)."""

    def _y(self, xp: Any, x: Any) -> Any:
        return x * xp.tanh(_softplus(x))

    def _dx(self, xp: Any, x: Any, dy: Any) -> Any:
        t = xp.tanh(_softplus(x))
        return dy * (t + x * sigmoid(x) * (1.0 - t * t))


class Softsign(Elementwise):
    """PyTorch's nn.Softsign: y = x / (1 + |x|); dx = dy / (1 + |x|)**2, divided twice (no overflow)."""

    def __init__(self) -> None:
        super().__init__()

    def _y(self, xp: Any, x: Any) -> Any:
        return x / (1.0 + xp.abs(x))

    def _dx(self, xp: Any, x: Any, dy: Any) -> Any:
        d = 1.0 + xp.abs(x)
        return dy / d / d


class LogSigmoid(Elementwise):
    """PyTorch's nn.LogSigmoid: y = log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)); dx = dy * sigmoid(-x)."""

    def __init__(self) -> None:
        super().__init__()

    def _y(self, xp: Any, x: Any) -> Any:
        return xp.minimum(x, 0.0) - xp.log1p(xp.exp(-xp.abs(x)))

    def _dx(self, xp: Any, x: Any, dy: Any) -> Any:
        return dy * sigmoid(-x)
