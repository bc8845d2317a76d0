"""Layers of two inputs that compare them: PyTorch's nn.CosineSimilarity and nn.PairwiseDistance.

``forward(x1, x2)`` takes both (broadcast against each other, as PyTorch's), ``backward(dy)`` returns
``(dx1, dx2)``, each summed back to its input's shape.
"""

from __future__ import annotations

import math
from typing import Any

from .._user import flag, is_int, is_real
from ..backend import untracked
from ..backend.namespaces import sign
from .two_inputs import _TwoInputs


def _unbroadcast(xp: Any, g: Any, shape: tuple[int, ...]) -> Any:
    """``g`` summed over the axes that broadcasting added or stretched, back to ``shape``."""
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return xp.reshape(xp.sum(g, axis=axes, keepdims=True), shape) if axes else g


class _Pair(_TwoInputs):
    """The two inputs' checks and broadcast; the forward of a subclass gets x1 and x2 broadcast to one shape."""

    _shapes: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # the inputs' shapes, for backward

    def _pair(self, x1: Any, x2: Any, train: Any) -> tuple[Any, Any, Any]:
        """The namespace and x1, x2 broadcast, after the checks; the input shapes are cached."""
        self._check_pair_train(train)
        x1, x2 = untracked(x1), untracked(x2)
        xp = self._check_pair(x1, x2)
        s1, s2 = tuple(x1.shape), tuple(x2.shape)
        n = max(len(s1), len(s2))
        p1, p2 = (1,) * (n - len(s1)) + s1, (1,) * (n - len(s2)) + s2
        if any(a != b and 1 not in (a, b) for a, b in zip(p1, p2)):
            raise ValueError(f"{self.name}: x1 {s1} and x2 {s2} do not broadcast to one shape")
        shape = tuple(max(a, b) if 1 in (a, b) else a for a, b in zip(p1, p2))
        self._shapes = (s1, s2)
        return xp, xp.broadcast_to(x1, shape), xp.broadcast_to(x2, shape)

    def _grads(self, xp: Any, d1: Any, d2: Any) -> tuple[Any, Any]:
        s1, s2 = self._need(self._shapes)
        return _unbroadcast(xp, d1, s1), _unbroadcast(xp, d2, s2)


class CosineSimilarity(_Pair):
    """PyTorch's nn.CosineSimilarity(dim=1, eps=1e-8): y = sum(x1 / max(|x1|, eps) * x2 / max(|x2|, eps)) along
    ``dim``, the norms each floored at ``eps`` (PyTorch's formula). x1, x2: (..., D, ...) -> y: that shape without
    ``dim``. The gradient through each norm is PyTorch's: that of the norm itself, not floored (0 for a zero
    vector). Caches the broadcast inputs, their norms and y."""

    def __init__(self, dim: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        if not is_int(dim):
            raise ValueError(f"{self.name}: dim must be an int (an axis of the inputs), got {dim!r}")
        if not is_real(eps) or not eps >= 0:
            raise ValueError(f"{self.name}: eps must be a number >= 0, got {eps!r}")
        self.dim, self.eps = int(dim), float(eps)
        self._cache = None

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "eps": self.eps}

    def forward(self, x1: Any, x2: Any, train: bool = True) -> Any:  # type: ignore[override]
        xp, a, b = self._pair(x1, x2, train)
        if not -a.ndim <= self.dim < a.ndim:
            raise ValueError(f"{self.name}: dim={self.dim} is not an axis of the inputs, broadcast to "
                             f"{tuple(a.shape)}")
        axis = self.dim % a.ndim
        n1, n2 = (xp.sqrt(xp.sum(v * v, axis=axis, keepdims=True)) for v in (a, b))
        c1, c2 = xp.maximum(n1, self.eps), xp.maximum(n2, self.eps)
        y = xp.sum((a / c1) * (b / c2), axis=axis)
        self._cache = (axis, a, b, n1, n2, c1, c2, y)
        return y

    def backward(self, dy: Any) -> tuple[Any, Any]:  # type: ignore[override]
        dy = untracked(dy)
        axis, a, b, n1, n2, c1, c2, y = self._need(self._cache)
        xp = self._check_grad(dy, y.shape)
        dy, y = xp.expand_dims(dy, axis=axis), xp.expand_dims(y, axis=axis)
        unit1 = xp.where(n1 > 0, a / xp.where(n1 > 0, n1, 1.0), 0.0)
        unit2 = xp.where(n2 > 0, b / xp.where(n2 > 0, n2, 1.0), 0.0)
        return self._grads(xp, dy * (b / (c1 * c2) - y / c1 * unit1), dy * (a / (c1 * c2) - y / c2 * unit2))


class PairwiseDistance(_Pair):
    """PyTorch's nn.PairwiseDistance(p=2.0, eps=1e-6, keepdim=False): y = ||x1 - x2 + eps||_p over the last axis.
    x1, x2: (..., D) -> y: (...) ((..., 1) with ``keepdim``). ``p`` >= 0 or inf (p = 0 counts the non-zero
    differences, with a zero gradient); the gradient is PyTorch's: 0 where the norm is 0, for p = inf shared
    evenly by the entries at the maximum. Caches the differences and the norms."""

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> None:
        super().__init__()
        if not is_real(p) or not p >= 0:
            raise ValueError(f"{self.name}: p must be a number >= 0 or math.inf, got {p!r} (xpnet does not take "
                             "PyTorch's negative p)")
        if not is_real(eps):
            raise ValueError(f"{self.name}: eps must be a number, got {eps!r}")
        self.p, self.eps, self.keepdim = float(p), float(eps), flag(keepdim, self.name, "keepdim")
        self._cache = None

    def config(self) -> dict[str, Any]:
        return {"p": self.p, "eps": self.eps, "keepdim": self.keepdim}

    def forward(self, x1: Any, x2: Any, train: bool = True) -> Any:  # type: ignore[override]
        xp, a, b = self._pair(x1, x2, train)
        if a.ndim == 0:
            raise ValueError(f"{self.name}: expected inputs of at least one axis, got 0-d arrays")
        d, p = a - b + self.eps, self.p
        mag = xp.abs(d)
        if p == 0:
            n = xp.sum(xp.astype(d != 0, d.dtype), axis=-1, keepdims=True)
        elif p == math.inf:
            n = xp.max(mag, axis=-1, keepdims=True)
        elif p == 1:
            n = xp.sum(mag, axis=-1, keepdims=True)
        elif p == 2:
            n = xp.sqrt(xp.sum(d * d, axis=-1, keepdims=True))
        else:
            n = xp.sum(mag ** p, axis=-1, keepdims=True) ** (1.0 / p)
        self._cache = (d, n)
        return n if self.keepdim else n[..., 0]

    def backward(self, dy: Any) -> tuple[Any, Any]:  # type: ignore[override]
        dy = untracked(dy)
        d, n = self._need(self._cache)
        xp = self._check_grad(dy, n.shape if self.keepdim else n.shape[:-1])
        dy, p = dy if self.keepdim else xp.expand_dims(dy, axis=-1), self.p
        if p == 0:
            g = xp.zeros_like(d)
        elif p == math.inf:
            at_max = xp.astype(xp.abs(d) == n, d.dtype)
            g = sign(d) * at_max * (dy / xp.sum(at_max, axis=-1, keepdims=True))
        elif p == 1:
            g = sign(d) * dy
        else:
            mag = xp.abs(d)
            scale = xp.where(n == 0, 0.0, dy / xp.where(n == 0, 1.0, n) ** (p - 1))
            g = sign(d) * xp.where(d == 0, 0.0, xp.where(d == 0, 1.0, mag) ** (p - 1)) * scale
        return self._grads(xp, g, -g)
