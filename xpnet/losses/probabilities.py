"""Losses on probabilities: PyTorch's BCELoss (after a Sigmoid) and KLDivLoss (log-probabilities against
probabilities). On logits, SigmoidCrossEntropy and SoftmaxCrossEntropy are the stabler choice."""

from __future__ import annotations

from typing import Any

from .._user import flag, warn
from ..backend import namespace
from .base import ElementwiseLoss, HostWeights, check_reduction
from .binary import check_broadcast

# PyTorch's floor of each log in BCELoss, and of (1 - p) * p in its gradient: its EPSILON is the float 1e-12,
# 9.99999996e-13 in double, which moves the gradient at p of 0 or 1 by 4e-9 relative.
_LOG_FLOOR, _EPSILON = -100.0, 9.999999960041972e-13


class BCELoss(ElementwiseLoss):
    """PyTorch's BCELoss: per element ``-weight * (t * log(p) + (1 - t) * log(1 - p))`` with each log
    floored at -100 as PyTorch's (p of 0 or 1 gives a finite loss); the mean over every element
    (``reduction="sum"``: the sum). dy is PyTorch's ``(p - t) / max((1 - p) * p, 1e-12)``.

    p: probabilities of any shape (N, ...) in [0, 1] (a Sigmoid's output); t: targets of its shape in
    [0, 1]. ``weight``: each element's rescaling, broadcast to p's shape. Caches p and t. ``check=False``
    skips the range check of p and t (device reads). On logits, SigmoidCrossEntropy is exact where this
    loss floors.
    """

    def __init__(self, weight: Any = None, reduction: str = "mean") -> None:
        if isinstance(weight, str):  # BCELoss(weight, size_average, reduce, reduction)
            raise TypeError(f"{self.name}: the first argument is weight (an array), got {weight!r}; pass "
                            f"reduction={weight!r} by name")
        super().__init__(reduction)
        self.weight = None if weight is None else HostWeights(weight, self.name, "weight")
        self._p = self._t = None

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        xp, p, t = self._pair(y, t)
        if check and self._n:
            for what, a in (("input probabilities", p), ("targets", t)):
                lo, hi = float(xp.min(a)), float(xp.max(a))
                if not (lo >= 0 and hi <= 1):
                    raise ValueError(f"{self.name}: {what} must lie in [0, 1], got values in [{lo:g}, {hi:g}]"
                                     + ("; on logits use SigmoidCrossEntropy (loss='bce')" if what[0] == "i" else ""))
        check_broadcast(self.name, "input's", {"weight": self.weight}, tuple(p.shape))
        one = xp.ones_like(p)
        # log(0) is -inf (and a NumPy warning): where p is 0 or 1 the floored log is the floor itself.
        log_p = xp.where(p > 0, xp.maximum(xp.log(xp.where(p > 0, p, one)), _LOG_FLOOR), _LOG_FLOOR)
        log_q = xp.where(p < 1, xp.maximum(xp.log1p(-xp.where(p < 1, p, xp.zeros_like(p))), _LOG_FLOOR), _LOG_FLOOR)
        terms = (t - 1.0) * log_q - t * log_p
        if self.weight is not None:
            terms = terms * self.weight.like(p)
        self._p, self._t = p, t
        return self._reduced(xp, terms)

    def backward(self, dout: Any = 1.0) -> Any:
        scale, p = self._scale(dout), self._p
        grad = (p - self._t) / namespace(p).maximum((1.0 - p) * p, _EPSILON)
        if self.weight is not None:
            grad = grad * self.weight.like(p)
        return grad * scale

    def correct_count(self) -> Any:
        """The elements of the last forward whose probability is > 0.5 where the target is >= 0.5, <= 0.5
        elsewhere (as SigmoidCrossEntropy's logit > 0)."""
        if self._p is None:
            return None
        return namespace(self._p).count_nonzero((self._p > 0.5) == (self._t >= 0.5))

    def _settings(self) -> list[str]:
        return ([f"weight={self.weight!r}"] if self.weight is not None else []) + super()._settings()


class KLDivLoss(ElementwiseLoss):
    """PyTorch's KLDivLoss: per element ``t * (log(t) - y)`` (0 where t is 0), y log-probabilities (after
    ``LogSoftmax``) and t probabilities, or with ``log_target=True`` t log-probabilities:
    ``exp(t) * (t - y)``. dy is ``-t`` (``-exp(t)``) times the reduction's scale.

    y, t: the same shape (N, ...). ``reduction``: ``"batchmean"``, the sum over N (the KL divergence's
    mean over the batch), ``"sum"``, or ``"mean"`` (PyTorch's default, kept: the mean over every element,
    the divergence over the number of classes too, and PyTorch warns about it; so does xpnet). Caches
    the targets (``exp(t)`` with ``log_target``).
    """

    def __init__(self, reduction: str = "mean", log_target: bool = False) -> None:
        self.log_target = flag(log_target, self.name, "log_target")  # "no" was taken as True
        if reduction != "batchmean":
            check_reduction(self.name, reduction)
        if reduction == "mean":
            warn(f"{self.name}: reduction='mean' divides by every element (by the batch and the classes), as "
                 "PyTorch's does and warns: the KL divergence's mean over the batch is reduction='batchmean'")
        self.reduction = reduction
        self._n, self._target = None, None

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        xp, y, t = self._pair(y, t)
        if self.log_target:
            self._target = xp.exp(t)
            terms = self._target * (t - y)
        else:
            self._target = t
            # xlogy: 0 * log(0) is 0, as PyTorch's.
            terms = t * xp.log(xp.where(t > 0, t, xp.ones_like(t))) - t * y
        if self.reduction == "batchmean":
            self._n = int(y.shape[0])
        return self._reduced(xp, terms)

    def backward(self, dout: Any = 1.0) -> Any:
        return self._target * -self._scale(dout)

    def _settings(self) -> list[str]:
        return super()._settings() + (["log_target=True"] if self.log_target else [])
