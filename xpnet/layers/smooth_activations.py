"""PyTorch's smooth activations built on the sigmoid, softplus and tanh: Mish, Softsign, LogSigmoid, Tanhshrink,
with its formulas for y and dx, computed without overflow for any finite x; shapes are kept: x: (N, ...) -> y:
(N, ...), and each caches x. GLU, the gate of gated models, halves one axis."""

from __future__ import annotations

from typing import Any

from ..backend import namespace, untracked
from .activations import Elementwise, sigmoid
from .softmax import _AlongDim


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


class Tanhshrink(Elementwise):
    """PyTorch's nn.Tanhshrink: y = x - tanh(x); dx = dy * tanh(x)**2."""

    def __init__(self) -> None:
        super().__init__()

    def _y(self, xp: Any, x: Any) -> Any:
        return x - xp.tanh(x)

    def _dx(self, xp: Any, x: Any, dy: Any) -> Any:
        t = xp.tanh(x)
        return dy * (t * t)


class GLU(_AlongDim):
    """PyTorch's nn.GLU(dim=-1): x split along ``dim`` (of even size) into halves a, b -> y = a * sigmoid(b), half
    x's size there; dx = concat(dy * s, dy * a * s * (1 - s)) along ``dim``, s = sigmoid(b). Caches a and s."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__(dim)

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        axis = self._axis(x)
        size = x.shape[axis]
        if size % 2:
            raise ValueError(f"{self.name}: dim={self.dim} of the input of shape {tuple(x.shape)} has size {size}, "
                             "which must be even (its halves are the values and their gates)")
        cut = (slice(None),) * axis
        a, s = x[cut + (slice(0, size // 2), ...)], sigmoid(x[cut + (slice(size // 2, size), ...)])
        self._y = (a, s)
        return a * s

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        a, s = self._need(self._y)
        xp = self._check_grad(dy, a.shape)
        gated = dy * s
        return xp.concat([gated, gated * a * (1.0 - s)], axis=self.dim % a.ndim)
