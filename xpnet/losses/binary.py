"""Binary cross-entropy on logits: PyTorch's BCEWithLogitsLoss, the book's SigmoidWithLoss."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import namespace
from .base import ElementwiseLoss, HostWeights


class SigmoidCrossEntropy(ElementwiseLoss):
    """Mean binary cross-entropy of sigmoid(y) against targets in [0, 1], as PyTorch's BCEWithLogitsLoss,
    through ``log(1 + exp(-|y|))``: no overflow, no NaN, for logits of any size.

    y: logits of any shape (N, ...) (a binary classifier's (N, 1), or (N, K) for K labels at once);
    t: targets of y's shape in [0, 1]: 0/1 labels of any integer or bool dtype, or probabilities (as
    PyTorch's), cast to y's dtype. Per element, with ``sp(y) = log(1 + exp(-y))`` (-log sigmoid(y)),
    ``loss = weight * ((1 - t) * y + (1 + (pos_weight - 1) * t) * sp(y))``; the mean over every element
    (``reduction="sum"``: the sum). Caches y, t and sigmoid(y). ``check=False`` skips the targets' range
    check, which reads two values back from the device.

    ``weight`` (PyTorch's name and meaning): a rescaling of each element's term, broadcast to y's
    shape; the mean still divides by the number of elements, as PyTorch's. ``pos_weight``: the weight
    of the positive term, broadcast to y's shape as PyTorch's: a (K,) array weighs the K labels of the
    last axis (pos_weight = negatives / positives balances a rare label). Both: arrays of weights >= 0,
    kept on the host and copied once to each device and dtype they are used on.

    :meth:`correct_count` counts the elements whose logit is on their target's side (y > 0 where
    t >= 0.5, Keras's binary_accuracy): ``xn.train`` logs it as the accuracy where each sample has one
    target. The book's SigmoidWithLoss (vol. 2, ch. 4) is this loss on (N,) scores and 0/1 labels, the
    mean over the batch; it adds 1e-7 inside its log (a loss of at most 16.1 per sample, where this one
    grows with the logit) and its sigmoid overflows for scores below -709.
    """

    _other_classes = "for more than two classes use SoftmaxCrossEntropy"  # the end of the target check's message

    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None) -> None:
        if isinstance(weight, str):  # BCEWithLogitsLoss(weight, size_average, reduce, reduction, pos_weight)
            raise TypeError(f"{self.name}: the first argument is weight (an array), got {weight!r}; pass "
                            f"reduction={weight!r} by name")
        super().__init__(reduction)
        self.weight = None if weight is None else HostWeights(weight, self.name, "weight")
        self.pos_weight = None if pos_weight is None else HostWeights(pos_weight, self.name, "pos_weight")
        self._y = self._t = self._sigmoid = None

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        xp, y, t = self._pair_of(y, t)
        if check and self._n and not (float(xp.min(t)) >= 0 and float(xp.max(t)) <= 1):
            raise ValueError(f"{self.name}: targets must lie in [0, 1] (0/1 labels or probabilities), got values in "
                             f"[{float(xp.min(t)):g}, {float(xp.max(t)):g}]: outside it the loss has no minimum; "
                             f"{self._other_classes}")
        check_broadcast(self.name, "logits'", {"weight": self.weight, "pos_weight": self.pos_weight}, tuple(y.shape))
        a = xp.abs(y)
        e = xp.exp(-a)
        softplus = xp.log1p(e) + 0.5 * (a - y)  # -log(sigmoid(y)); 0.5 * (|y| - y) is max(-y, 0) exactly
        if self.pos_weight is None:
            terms = (1.0 - t) * y + softplus
        else:
            terms = (1.0 - t) * y + (1.0 + (self.pos_weight.like(y) - 1.0) * t) * softplus
        if self.weight is not None:
            terms = terms * self.weight.like(y)
        self._y, self._t = y, t
        self._sigmoid = xp.where(y >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return self._reduced(xp, terms)

    def _pair_of(self, y: Any, t: Any) -> tuple[Any, Any, Any]:
        """:meth:`_pair`, saying where the targets are a row short of the logits (PyTorch refuses them too)."""
        if hasattr(y, "shape") and hasattr(t, "shape") and tuple(y.shape) == (*t.shape, 1):
            raise ValueError(f"{self.name}: predictions {tuple(y.shape)} and targets {tuple(t.shape)} differ in "
                             f"shape: reshape the targets to {tuple(y.shape)} (xn.train does it for you)")
        return self._pair(y, t)

    def backward(self, dout: Any = 1.0) -> Any:
        scale, p, t = self._scale(dout), self._sigmoid, self._t
        if self.pos_weight is None:
            grad = p - t
        else:
            pt = self.pos_weight.like(p) * t
            grad = (pt + 1.0 - t) * p - pt  # PyTorch's form of (1 - t) - (1 + (pos_weight - 1) * t) * sigmoid(-y)
        if self.weight is not None:
            grad = grad * self.weight.like(p)
        return grad * scale

    def correct_count(self) -> Any:
        """The elements of the last forward whose logit is > 0 where the target is >= 0.5, <= 0 elsewhere."""
        if self._y is None:
            return None
        return namespace(self._y).count_nonzero((self._y > 0) == (self._t >= 0.5))

    def _settings(self) -> list[str]:
        weights = [f"{k}={v!r}" for k, v in (("weight", self.weight), ("pos_weight", self.pos_weight)) if v is not None]
        return weights + super()._settings()


def check_broadcast(who: str, whose: str, weights: dict[str, Any], shape: tuple[int, ...]) -> None:
    """Each of ``weights`` (HostWeights or None, by argument name) broadcasts to ``shape`` without growing it."""
    for which, w in weights.items():
        if w is not None and not _broadcasts_to(w.shape, shape):
            raise ValueError(f"{who}: {which} of shape {w.shape} does not broadcast to the {whose} shape {shape} "
                             f"(a (K,) {which} weighs the last axis)")


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` without growing it."""
    try:
        return np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False
