"""The base of the losses on integer class labels (SoftmaxCrossEntropy, NLLLoss): the labels' checks, and
the count of those that are not ``ignore_index`` that the loops weigh each batch's mean by."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from ..backend import index_dtype, isdtype, namespace
from .base import Loss


class LabelLoss(Loss):
    """A loss over integer labels with ``ignore_index``: a subclass sets ``self.ignore_index`` and calls
    :meth:`_start_counting` in ``__init__``, then :meth:`_checked_labels` in forward."""

    _soft_targets = "pass one-hot rows of the logits' shape (..., {c}) for soft targets"

    def _start_counting(self) -> None:
        self._count: Any = None  # the positions the last mean is over (mean_count), once known
        self._counted: Any = None  # the labels (M,) whose non-ignored ones mean_count counts when asked
        self._vouched = False  # none_ignored: no label is ignore_index, the count is every position
        self._classes: tuple[Any, Any] = (None, None)  # (key, arange(C) on the scores' device)

    def mean_count(self) -> Any:
        """The positions of the last forward whose label is not ``ignore_index``: a 0-d count on the device,
        counted at the first call (no device work for a caller that does not ask); an int, every position,
        for one-hot or probability targets and within :meth:`none_ignored`."""
        if self._count is None and self._counted is not None:
            labels = self._counted
            self._count, self._counted = namespace(labels).count_nonzero(labels != self.ignore_index), None
        return self._count

    def ignores_any(self, t: Any) -> bool:
        xp = namespace(t)
        return isdtype(xp, t.dtype, "integral") and bool(xp.any(t == self.ignore_index))

    @contextmanager
    def none_ignored(self, vouched: bool = True) -> Iterator[None]:
        before, self._vouched = self._vouched, bool(vouched)
        try:
            yield
        finally:
            self._vouched = before

    def _checked_labels(self, xp: Any, t: Any, m: int, c: int, check: bool) -> Any:
        """The labels as (M,), after checking their dtype and (with ``check``) their range."""
        if not isdtype(xp, t.dtype, "integral"):
            shape = {1: "(N,)", 2: "(N, T)"}.get(t.ndim, str(tuple(t.shape)))
            raise TypeError(f"{self.name}: labels of shape {shape} must be integer class indices, got dtype "
                            f"{t.dtype}; {self._soft_targets.format(c=c)}")
        labels = t if t.ndim == 1 else xp.reshape(t, (m,))
        index = index_dtype(xp, labels.device)
        if labels.dtype != index:
            # PyTorch's take_along_dim takes only int64, and uint8 labels cannot hold ignore_index=-100.
            labels = xp.astype(labels, index)
        if not (check and m):
            return labels
        valid = labels != self.ignore_index
        if bool(xp.any(valid & ((labels < 0) | (labels >= c)))):
            low = int(xp.min(xp.where(valid, labels, xp.full_like(labels, c - 1))))
            high = int(xp.max(xp.where(valid, labels, xp.zeros_like(labels))))
            raise ValueError(f"{self.name}: labels must lie in [0, {c}) (or equal ignore_index={self.ignore_index}), "
                             f"got values in [{low}, {high}]"
                             + ("; Chainer's ignore_label=-1 is ignore_index=-1" if low == -1 else ""))
        return labels

    def _arange(self, xp: Any, c: int, y: Any) -> Any:
        """arange(C) as a (1, C) row on ``y``'s device, made once per namespace, device and C."""
        key = (xp, c, y.device)
        if self._classes[0] != key:
            self._classes = (key, xp.arange(c, device=y.device)[None, :])
        return self._classes[1]
