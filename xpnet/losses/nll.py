"""Negative log-likelihood of log-probabilities: PyTorch's NLLLoss, the loss after ``LogSoftmax(dim=1)``."""

from __future__ import annotations

from typing import Any

from .._user import is_int
from ..backend import namespace, untracked
from .base import HostWeights, check_dout, check_reduction, element_count
from .labels import LabelLoss


class NLLLoss(LabelLoss):
    """PyTorch's NLLLoss: per position ``-weight[t] * y[t]``, the log-probability of the label picked out;
    the mean divides by the sum of the counted labels' weights (their number without ``weight``), the sum
    (``reduction="sum"``) by 1.

    y: (N, C) or (N, C, d1, ...) log-probabilities, the classes on axis 1 as PyTorch's (``LogSoftmax(dim=1)``);
    t: (N,) or (N, d1, ...) integer labels in [0, C) or equal to ``ignore_index``, which count for nothing.
    ``weight``: C class weights >= 0, kept on the host. Where every label is ignored (or weighs 0) the loss
    and its gradient are 0 (PyTorch gives NaN), as SoftmaxCrossEntropy's. Caches the labels (M,) and each
    position's weight over the divisor (M, 1). ``check=False`` skips the label-range check (a device read).
    LogSoftmax then NLLLoss is SoftmaxCrossEntropy on the logits, which takes one step for both.
    """

    _soft_targets = "NLLLoss takes class indices only; for target probabilities use KLDivLoss"

    def __init__(self, weight: Any = None, *, ignore_index: int = -100, reduction: str = "mean") -> None:
        if isinstance(weight, str):  # NLLLoss(weight, size_average, ignore_index, reduce, reduction)
            raise TypeError(f"{self.name}: the first argument is weight (an array), got {weight!r}; pass "
                            f"reduction={weight!r} by name")
        if not is_int(ignore_index):
            raise ValueError(f"{self.name}: ignore_index must be an int, got {ignore_index!r}")
        self.weight = None if weight is None else HostWeights(weight, self.name, "weight", ndim=1)
        self.ignore_index = int(ignore_index)
        self.reduction = check_reduction(self.name, reduction, ", with ignore_index to leave positions out")
        self._labels = self._rows = self._shape = None
        self._start_counting()

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        y, t = untracked(y), untracked(t)
        xp = self._check_pair(y, t)
        if y.ndim < 2:
            hint = ("; one sample's (C,) (PyTorch takes it unbatched; a batch of one made (C,) by .squeeze()): keep "
                    "the batch axis, y[None] with labels of shape (1,), or squeeze only the axis you mean, "
                    "y.squeeze(1)" if y.ndim == 1 else "")
            raise ValueError(f"{self.name}: expected log-probabilities of shape (N, C) or (N, C, d1, ...), got "
                             f"{tuple(y.shape)}{hint}")
        c, positions = y.shape[1], (y.shape[0], *y.shape[2:])
        if tuple(t.shape) != tuple(positions):
            last = y.ndim > 2 and tuple(t.shape) == tuple(y.shape[:-1])
            hint = ("; the classes are on axis 1 as PyTorch's NLLLoss has them, (N, C, T): for (N, T, C) "
                    "log-probabilities pass xp.permute_dims(y, (0, 2, 1))" if last else "")
            raise ValueError(f"{self.name}: labels must be integer indices of shape {tuple(positions)} for "
                             f"log-probabilities {tuple(y.shape)}, got {tuple(t.shape)}{hint}")
        if self.weight is not None and self.weight.shape[0] != c:
            raise ValueError(f"{self.name}: weight holds {self.weight.shape[0]} class weights but the input has "
                             f"{c} classes")
        m = element_count(t)
        y2 = y if y.ndim == 2 else xp.reshape(xp.permute_dims(y, (0, *range(2, y.ndim), 1)), (m, c))
        labels = self._checked_labels(xp, t, m, c, check)
        self._count, self._counted = (m, None) if self._vouched else (None, labels)
        valid = labels != self.ignore_index
        labels = xp.where(valid, labels, xp.zeros_like(labels))
        rows = xp.astype(valid, y.dtype)[:, None]
        if self.weight is not None:
            rows = rows * xp.take(self.weight.like(y2), labels)[:, None]
        divisor = xp.sum(rows)
        divisor = xp.ones_like(divisor) if self.reduction == "sum" else \
            xp.where(divisor > 0, divisor, xp.ones_like(divisor))
        self._labels, self._rows, self._shape = labels, rows / divisor, tuple(y.shape)
        return -xp.sum(xp.take_along_axis(y2, labels[:, None], axis=1) * rows) / divisor

    def backward(self, dout: Any = 1.0) -> Any:
        if self._labels is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        check_dout(self, dout)
        rows, shape = self._rows, self._shape
        xp = namespace(rows)
        hit = xp.astype(self._arange(xp, shape[1], rows) == self._labels[:, None], rows.dtype)
        dy = hit * (rows * -dout)
        if len(shape) == 2:
            return dy
        moved = (shape[0], *shape[2:], shape[1])
        return xp.permute_dims(xp.reshape(dy, moved), (0, len(shape) - 1, *range(1, len(shape) - 1)))

    def __repr__(self) -> str:
        args = [f"weight={self.weight!r}"] if self.weight is not None else []
        args += [f"ignore_index={self.ignore_index}"] if self.ignore_index != -100 else []
        args += [f"reduction={self.reduction!r}"] if self.reduction != "mean" else []
        return f"{self.name}({', '.join(args)})"
