"""Inverted dropout: zero a fraction ``p`` of activations in training and scale the rest by 1/(1-p)."""

from __future__ import annotations

from typing import Any

from .. import init as _init
from ..backend import uniform
from .base import Layer


class Dropout(Layer):
    """x: (N, ...) -> y: (N, ...). In training, y = x * mask / (1 - p); in evaluation y = x.

    Caches the scaled mask. The mask is drawn from the layer's own generator (seeded from
    ``seed``, else from ``xn.init``'s generator), on the device where the backend allows it.
    """

    def __init__(self, p: float = 0.5, seed: int | None = None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be a float in [0, 1), got {p!r}")
        self.p = float(p)
        self.seed = seed
        self.rng = _init.make_rng(seed)
        self._scale = None

    def config(self) -> dict[str, Any]:
        return {"p": self.p, "seed": self.seed}

    def forward(self, x: Any, train: bool = True) -> Any:
        xp = self._check_float(x)
        if not train or self.p == 0.0:
            self._scale = 1.0
            return x
        keep = uniform(self.rng, tuple(x.shape), x) >= self.p
        self._scale = xp.astype(keep, x.dtype) * (1.0 / (1.0 - self.p))
        return x * self._scale

    def backward(self, dy: Any) -> Any:
        return dy * self._need(self._scale)
