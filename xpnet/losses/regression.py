"""Losses of real-valued predictions against targets of their shape, one term per element: squared
(MeanSquaredError), absolute (MeanAbsoluteError, PyTorch's L1Loss) and the two that are squared near 0
and absolute further out (SmoothL1Loss, HuberLoss). Each takes PyTorch's ``reduction``, ``"mean"`` (over
every element, the default) or ``"sum"``, and caches the difference y - t; the derivatives at the kinks
are PyTorch's."""

from __future__ import annotations

from typing import Any

from .._user import is_real
from ..backend import namespace
from ..backend.namespaces import sign
from .base import ElementwiseLoss


class MeanSquaredError(ElementwiseLoss):
    """Mean over all elements of (y - t)**2 (as PyTorch's MSELoss); ``reduction="sum"``: their sum.

    y, t: the same shape (N, ...). Caches y - t.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self._diff = None

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        xp, y, t = self._pair(y, t)
        self._diff = y - t
        return self._reduced(xp, self._diff * self._diff)

    def backward(self, dout: Any = 1.0) -> Any:
        return self._diff * (2.0 * self._scale(dout))


class MeanAbsoluteError(ElementwiseLoss):
    """Mean over all elements of |y - t| (PyTorch's L1Loss); ``reduction="sum"``: their sum.

    y, t: the same shape (N, ...). Caches y - t. The derivative where y == t is 0, as PyTorch's.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self._diff = None

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        xp, y, t = self._pair(y, t)
        self._diff = y - t
        return self._reduced(xp, xp.abs(self._diff))

    def backward(self, dout: Any = 1.0) -> Any:
        scale = self._scale(dout)
        return sign(self._diff) * scale


class SmoothL1Loss(ElementwiseLoss):
    """PyTorch's SmoothL1Loss: per element, with d = y - t, ``0.5 * d**2 / beta`` where |d| < beta, else
    ``|d| - 0.5 * beta``; the mean over all elements (``reduction="sum"``: the sum).

    y, t: the same shape (N, ...). Caches y - t. ``beta`` >= 0 (default 1.0); ``beta=0`` is
    MeanAbsoluteError, derivative 0 where y == t, as PyTorch's. It is HuberLoss(delta=beta) / beta.
    """

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        if not is_real(beta) or not beta >= 0 or beta == float("inf"):
            raise ValueError(f"{self.name}: beta must be a finite float >= 0 (the width of the squared part), "
                             f"got {beta!r}")
        super().__init__(reduction)
        self.beta = float(beta)
        self._diff = None

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        xp, y, t = self._pair(y, t)
        d = self._diff = y - t
        a = xp.abs(d)
        if self.beta == 0:
            return self._reduced(xp, a)
        return self._reduced(xp, xp.where(a < self.beta, (0.5 / self.beta) * d * d, a - 0.5 * self.beta))

    def backward(self, dout: Any = 1.0) -> Any:
        scale, d = self._scale(dout), self._diff
        xp = namespace(d)
        if self.beta == 0:
            return sign(d) * scale
        return xp.where(xp.abs(d) < self.beta, d / self.beta, sign(d)) * scale

    def _settings(self) -> list[str]:
        return super()._settings() + ([f"beta={self.beta}"] if self.beta != 1.0 else [])


class HuberLoss(ElementwiseLoss):
    """PyTorch's HuberLoss: per element, with d = y - t, ``0.5 * d**2`` where |d| < delta, else
    ``delta * (|d| - 0.5 * delta)``; the mean over all elements (``reduction="sum"``: the sum).

    y, t: the same shape (N, ...). Caches y - t. ``delta`` > 0 (default 1.0): the derivative is d
    clipped to [-delta, delta].
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        if not is_real(delta) or not delta > 0 or delta == float("inf"):
            raise ValueError(f"{self.name}: delta must be a finite float > 0 (where the loss turns linear), "
                             f"got {delta!r}")
        super().__init__(reduction)
        self.delta = float(delta)
        self._diff = None

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        xp, y, t = self._pair(y, t)
        d = self._diff = y - t
        a = xp.abs(d)
        return self._reduced(xp, xp.where(a < self.delta, 0.5 * d * d, self.delta * (a - 0.5 * self.delta)))

    def backward(self, dout: Any = 1.0) -> Any:
        scale, d = self._scale(dout), self._diff
        xp = namespace(d)
        # maximum and minimum, not xp.clip: array-api-compat's clip copies its Python bounds to the device,
        # which a CUDA-graph capture refuses.
        return xp.minimum(xp.maximum(d, -self.delta), self.delta) * scale

    def _settings(self) -> list[str]:
        return super()._settings() + ([f"delta={self.delta}"] if self.delta != 1.0 else [])
