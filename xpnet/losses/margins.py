"""PyTorch's losses of scores against targets of their shape that are not regression nor plain cross-entropy:
SoftMarginLoss (labels +-1, a logistic margin), HingeEmbeddingLoss (distances, labels +-1),
MultiLabelSoftMarginLoss (BCE on logits, averaged over the classes) and PoissonNLLLoss (counts). Each takes
PyTorch's ``reduction``, ``"mean"`` (the default) or ``"sum"``; values and gradients are PyTorch's."""

from __future__ import annotations

import math
from typing import Any

from .._user import flag, is_real
from .base import ElementwiseLoss
from .binary import SigmoidCrossEntropy


class SoftMarginLoss(ElementwiseLoss):
    """PyTorch's SoftMarginLoss: per element ``log(1 + exp(-t * y))``, the mean (or ``reduction="sum"``: the sum).

    y: scores of any shape (N, ...); t: labels 1 or -1 of y's shape. Caches -t * sigmoid(-t * y).
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self._grad = None

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        xp, y, t = self._pair(y, t)
        z = -t * y
        a = xp.abs(z)
        e = xp.exp(-a)
        self._grad = -t * xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return self._reduced(xp, xp.log1p(e) + 0.5 * (z + a))  # log(1 + exp(z)) without overflow

    def backward(self, dout: Any = 1.0) -> Any:
        return self._grad * self._scale(dout)


class HingeEmbeddingLoss(ElementwiseLoss):
    """PyTorch's HingeEmbeddingLoss: per element ``y`` where t == 1, ``max(0, margin - y)`` where t == -1
    (PyTorch's formula: both terms where t is neither), the mean (``reduction="sum"``: the sum).

    y: distances of any shape (N, ...); t: labels 1 or -1 of y's shape. Caches the derivative; at
    y == margin it is -1, as PyTorch's.
    """

    def __init__(self, margin: float = 1.0, reduction: str = "mean") -> None:
        if not is_real(margin) or not math.isfinite(margin):
            raise ValueError(f"{self.name}: margin must be a finite number, got {margin!r}")
        super().__init__(reduction)
        self.margin = float(margin)
        self._grad = None

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        xp, y, t = self._pair(y, t)
        gap = self.margin - y
        pushed, kept = t != 1, t != -1
        zero = xp.zeros_like(y)
        self._grad = xp.where(pushed & (gap >= 0), -1.0, zero) + xp.where(kept, 1.0, zero)
        return self._reduced(xp, xp.where(pushed, xp.maximum(gap, zero), zero) + xp.where(kept, y, zero))

    def backward(self, dout: Any = 1.0) -> Any:
        return self._grad * self._scale(dout)

    def _settings(self) -> list[str]:
        return ([f"margin={self.margin!r}"] if self.margin != 1.0 else []) + super()._settings()


class MultiLabelSoftMarginLoss(SigmoidCrossEntropy):
    """PyTorch's MultiLabelSoftMarginLoss: per sample the mean over the C classes of the binary cross-entropy
    of sigmoid(y) (times ``weight``, (C,)), then the mean over the samples (``reduction="sum"``: their sum).

    y: logits (N, C) or (C,); t: 0/1 labels of y's shape. Under "mean" it equals
    ``SigmoidCrossEntropy(weight)``; under "sum" that divided by C.
    """

    _other_classes = "each class's target is 0 or 1 (several classes may be 1); for one class of many per sample " \
        "use SoftmaxCrossEntropy"

    def __init__(self, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(weight, reduction)
        self._classes = 1

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        if hasattr(y, "ndim") and y.ndim not in (1, 2):
            raise ValueError(f"{self.name}: expected logits (N, C) or (C,), got shape {tuple(y.shape)}")
        value = super().forward(y, t, check)
        self._classes = int(y.shape[-1])
        return value if self.reduction == "mean" else value / self._classes

    def backward(self, dout: Any = 1.0) -> Any:
        grad = super().backward(dout)
        return grad if self.reduction == "mean" else grad / self._classes


class PoissonNLLLoss(ElementwiseLoss):
    """PyTorch's PoissonNLLLoss: per element ``exp(y) - t * y`` (``log_input=True``: y is the log of the rate)
    or ``y - t * log(y + eps)`` (y the rate), plus Stirling's ``t log t - t + log(2 pi t) / 2`` where t > 1
    when ``full``; the mean (``reduction="sum"``: the sum).

    y: any shape (N, ...); t: counts of y's shape. Caches the derivative. ``eps`` and ``reduction`` are
    keyword-only: PyTorch's third positional argument is its deprecated ``size_average``.
    """

    def __init__(self, log_input: bool = True, full: bool = False, *, eps: float = 1e-8,
                 reduction: str = "mean") -> None:
        self.log_input = flag(log_input, self.name, "log_input")
        self.full = flag(full, self.name, "full")
        if not is_real(eps) or not eps >= 0 or not math.isfinite(eps):
            raise ValueError(f"{self.name}: eps must be a finite number >= 0, got {eps!r}")
        super().__init__(reduction)
        self.eps = float(eps)
        self._grad = None

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        xp, y, t = self._pair(y, t)
        if self.log_input:
            rate = xp.exp(y)
            terms, self._grad = rate - t * y, rate - t
        else:
            terms, self._grad = y - t * xp.log(y + self.eps), 1.0 - t / (y + self.eps)
        if self.full:
            big = t > 1
            safe = xp.where(big, t, xp.ones_like(t))
            stirling = safe * xp.log(safe) - safe + 0.5 * xp.log((2 * math.pi) * safe)
            terms = terms + xp.where(big, stirling, xp.zeros_like(t))
        return self._reduced(xp, terms)

    def backward(self, dout: Any = 1.0) -> Any:
        return self._grad * self._scale(dout)

    def _settings(self) -> list[str]:
        given = [f"log_input={self.log_input}"] if not self.log_input else []
        given += [f"full={self.full}"] if self.full else []
        given += [f"eps={self.eps!r}"] if self.eps != 1e-8 else []
        return given + super()._settings()
