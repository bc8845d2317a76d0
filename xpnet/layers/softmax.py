"""Softmax, LogSoftmax and Softmin over one axis: PyTorch's nn.Softmax(dim), nn.LogSoftmax(dim), nn.Softmin(dim).

``dim`` is required. PyTorch's default, ``dim=None``, picks an axis from the input's number of axes (0 for
0-, 1- and 3-d inputs, 1 otherwise) and warns that this is deprecated; on (N, T, C) sequences it normalises
across the batch, which trains without an error and means nothing. So xpnet refuses ``dim=None`` when the layer
is made, saying which ``dim`` PyTorch would have picked; ``dim=-1`` is the last axis (the classes of (N, C) and
(N, T, C)). A ``dim`` outside the input's axes is refused at forward, naming both.

For training a classifier, ``xn.losses.SoftmaxCrossEntropy`` takes the scores (logits) and is the stabler
and cheaper choice, as PyTorch's CrossEntropyLoss is over LogSoftmax and NLLLoss.
"""

from __future__ import annotations

import math
from typing import Any

from .._user import is_int
from ..backend import fast_path, namespace, untracked
from .base import Layer
from .cached_output import cached_output


class _AlongDim(Layer):
    """The argument check shared by Softmax, LogSoftmax, Softmin (and GLU)."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        if dim is None:
            raise ValueError(f"{self.name}: dim is required: PyTorch's dim=None picks dim 0 for 0-, 1- and 3-d "
                             "inputs (the batch of (N, T, C) sequences) and 1 otherwise, and warns that this is "
                             f"deprecated; write {self.name}(dim=-1) for the last axis (the classes of (N, C) and "
                             "(N, T, C)) or the axis you mean")
        if not is_int(dim):
            raise ValueError(f"{self.name}: dim must be an int (an axis of the input), got {dim!r}")
        self.dim = int(dim)
        self._y = None

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim}

    def _axis(self, x: Any) -> int:
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"{self.name}: dim={self.dim} is not an axis of the {x.ndim}-d input of shape "
                             f"{tuple(x.shape)} (expected {-x.ndim} to {x.ndim - 1})" if x.ndim else
                             f"{self.name}: expected an input of at least one axis, got a 0-d array")
        return self.dim % x.ndim


class Softmax(_AlongDim):
    """y = exp(x) / sum(exp(x)) along ``dim`` (:func:`softmax`: no overflow; NaN, as PyTorch's, where every x
    of a slice is -inf). x: (...) -> y: the same shape. Caches y; backward is y * (dy - sum(dy * y)) along
    ``dim``, never writing into ``dy``."""

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_float(x)
        self._y = softmax(x, self._axis(x))
        return cached_output(self._y, train)

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        y = self._need(self._y)
        self._check_grad(dy, y.shape)
        return softmax_backward(y, dy, self.dim % y.ndim)


class Softmin(_AlongDim):
    """PyTorch's nn.Softmin(dim): y = softmax(-x) along ``dim``. x: (...) -> y: the same shape. Caches y; backward
    is minus softmax's, -y * (dy - sum(dy * y))."""

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_float(x)
        self._y = softmax(-x, self._axis(x))
        return cached_output(self._y, train)

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        y = self._need(self._y)
        self._check_grad(dy, y.shape)
        return -softmax_backward(y, dy, self.dim % y.ndim)


def softmax(x: Any, axis: int) -> Any:
    """exp(x) / sum(exp(x)) along ``axis``, from x - max(x) (no overflow); a slice of -inf only (every key masked,
    in attention) gives NaN, PyTorch's answer, without NumPy's "invalid value" warning."""
    xp = namespace(x)
    return fast_path("softmax", xp, _softmax)(x, axis % x.ndim)


def _softmax(x: Any, axis: int) -> Any:
    """:func:`softmax`, portable."""
    xp = namespace(x)
    m = xp.max(x, axis=axis, keepdims=True)
    e = xp.exp(x - xp.where(m == -math.inf, 0.0, m))
    z = xp.sum(e, axis=axis, keepdims=True)
    return e / xp.where(z > 0.0, z, math.nan)


def softmax_backward(y: Any, dy: Any, axis: int) -> Any:
    """dx of :func:`softmax` from its output ``y`` and ``dy``: y * (dy - sum(dy * y)) along ``axis``."""
    return fast_path("softmax_backward", namespace(y), _softmax_backward)(y, dy, axis % y.ndim)


def _softmax_backward(y: Any, dy: Any, axis: int) -> Any:
    """:func:`softmax_backward`, portable."""
    return y * (dy - namespace(y).sum(dy * y, axis=axis, keepdims=True))


class LogSoftmax(_AlongDim):
    """y = x - log(sum(exp(x))) along ``dim``, computed from x - max(x) (no overflow, no log of 0; NaN, as
    PyTorch's, where every x of a slice is -inf, without a warning). x: (...) -> y: the same shape. Caches y;
    backward is dy - exp(y) * sum(dy) along ``dim``, never writing into ``dy``."""

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        axis = self._axis(x)
        m = xp.max(x, axis=axis, keepdims=True)
        shifted = x - xp.where(m == -math.inf, 0.0, m)
        z = xp.sum(xp.exp(shifted), axis=axis, keepdims=True)
        self._y = shifted - xp.log(xp.where(z > 0.0, z, math.nan))
        return cached_output(self._y, train)

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        y = self._need(self._y)
        xp = self._check_grad(dy, y.shape)
        return dy - xp.exp(y) * xp.sum(dy, axis=self.dim % y.ndim, keepdims=True)
