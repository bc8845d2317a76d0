"""Layers around other layers for the common graphs, so most models need no backward of their own:
``Residual`` (a skip connection) and ``Concat`` (branches side by side)."""

from __future__ import annotations

from typing import Any

from ..backend import namespace
from .base import Layer
from .container import Container

__all__ = ["Residual", "Concat"]


def _layer_arg(owner: str, arg: str, value: Any) -> Layer:
    if not isinstance(value, Layer):
        raise TypeError(f"{owner}: {arg} must be an xpnet layer or model, got {type(value).__name__}")
    return value


class Residual(Container):
    """y = body(x) + shortcut(x): a skip connection around ``body`` (ResNet's block, before its last ReLU).

    ``shortcut=None`` is the identity, for a body that keeps x's shape; where the body changes it
    (stride, channels), a layer that maps x to the body's output shape, e.g.
    ``Sequential(Conv2d(c_in, c_out, 1, stride=2), BatchNorm(c_out))``.
    x: (N, ...) -> y: the body's output shape. backward: dx = body's dx + shortcut's dx (dy itself
    for the identity), the skip's gradient added as the book adds a fan-out's. Caches nothing itself.
    Body and shortcut are called as ``layer(x)`` and taken back in reverse (the shortcut's backward first), so a
    layer object in both (one ``relu`` for the whole model) is two uses (:mod:`xpnet.layers.uses`).
    """

    def __init__(self, body: Layer, shortcut: Layer | None = None):
        super().__init__()
        self.body = _layer_arg("Residual", "body", body)
        self.shortcut = None if shortcut is None else _layer_arg("Residual", "shortcut", shortcut)

    def config(self) -> dict[str, Any]:
        return {"body": self.body, "shortcut": self.shortcut}

    def forward(self, x: Any, train: bool = True) -> Any:
        y = self.body(x, train=train)
        s = x if self.shortcut is None else self.shortcut(x, train=train)
        if tuple(y.shape) != tuple(s.shape):
            what = "the input" if self.shortcut is None else "the shortcut"
            raise ValueError(f"Residual: the body gives shape {tuple(y.shape)} but {what} {tuple(s.shape)} for an "
                             f"input of shape {tuple(x.shape)}; pass a shortcut that maps x to the body's output "
                             "shape, e.g. Sequential(Conv2d(c_in, c_out, 1, stride=2), BatchNorm(c_out))")
        return y + s

    def backward(self, dy: Any) -> Any:
        skip = dy if self.shortcut is None else self.shortcut.backward(dy)  # the last call's backward first
        return self.body.backward(dy) + skip

    def backward_params(self, dy: Any) -> None:
        if self.shortcut is not None:
            self.shortcut.backward_params(dy)
        self.body.backward_params(dy)


class Concat(Container):
    """y = concat([branch(x) for branch in branches], axis): branches applied to one input, their
    outputs side by side (Inception's block; ``axis=1`` is the channels of NCHW or the features of (N, D)).

    The outputs must agree on every axis but ``axis``. backward: dy is cut along ``axis`` into each
    branch's part and the branches' dx are summed. Caches each branch's size along ``axis``. The branches are
    called as ``layer(x)`` and taken back last first, so one layer object in two branches is two uses.
    """

    def __init__(self, *branches: Layer, axis: int = 1):
        super().__init__()
        if not branches:
            raise ValueError("Concat: expected at least one branch")
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(f"Concat: axis must be an int other than 0 (the samples), got {axis!r}")
        self.branches = [_layer_arg("Concat", f"branch {i}", b) for i, b in enumerate(branches)]
        self.axis = axis
        self._sizes: list[int] | None = None

    def config(self) -> dict[str, Any]:
        return {"branches": list(self.branches), "axis": self.axis}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Concat":
        return cls(*config["branches"], axis=config["axis"])

    def forward(self, x: Any, train: bool = True) -> Any:
        ys = [b(x, train=train) for b in self.branches]
        axis = self.axis % ys[0].ndim
        shapes = [tuple(y.shape[:axis]) + tuple(y.shape[axis + 1:]) for y in ys]
        if len(set(shapes)) > 1 or any(y.ndim != ys[0].ndim for y in ys):
            raise ValueError(f"Concat: the branches' outputs {[tuple(y.shape) for y in ys]} differ on an axis "
                             f"other than axis={self.axis}")
        self._sizes = [int(y.shape[axis]) for y in ys]
        return namespace(*ys).concat(ys, axis=axis)

    def _parts(self, dy: Any) -> list[Any]:
        sizes = self._need(self._sizes)
        axis = self.axis % dy.ndim
        parts, start = [], 0
        for size in sizes:
            parts.append(dy[(slice(None),) * axis + (slice(start, start + size), ...)])
            start += size
        return parts

    def backward(self, dy: Any) -> Any:
        pairs = list(zip(self.branches, self._parts(dy)))
        dxs = [b.backward(part) for b, part in reversed(pairs)][::-1]  # the last call's backward first
        dx = dxs[0]
        for more in dxs[1:]:
            dx = dx + more
        return dx

    def backward_params(self, dy: Any) -> None:
        for b, part in reversed(list(zip(self.branches, self._parts(dy)))):
            b.backward_params(part)
