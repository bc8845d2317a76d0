"""Softmax cross-entropy: logits against class labels or probability rows."""

from __future__ import annotations

from typing import Any

from .. import _chainer
from .._user import is_int, is_real, keyword_hints
from ..backend import fast_path, index_dtype, namespace, untracked
from .base import HostWeights, check_dout, check_reduction, element_count
from .labels import LabelLoss
from .summed import _BACKWARD_AT, _CALLS, _SUMMED


class SoftmaxCrossEntropy(LabelLoss):
    """Mean cross-entropy of softmax(y) against labels, through log-sum-exp (no NaN for logits of 1e4).

    y: (N, C) logits, or (N, T, C) for sequences (any (N, ..., C): classes on the last axis, as the
    book's TimeSoftmaxWithLoss). PyTorch's cross_entropy has them on axis 1, (N, C, T) and (N, C, H, W):
    ``dim=1`` (keyword-only) reads that layout, labels (N, T) or (N, H, W), probability targets and dy in
    y's own layout; ``dim=-1`` says classes last. Left out (``None``), the classes are last, and logits
    of 3 or more axes whose targets fit both readings are refused, naming both: probability targets of
    the logits' shape, or labels (N, C) for (N, C, C) logits (read classes last, PyTorch's would be
    another loss, silently). Logits of one class are refused: softmax over one class is 1, the loss 0
    whatever they are (PyTorch's gives 0); one logit per example is SigmoidCrossEntropy's.
    t: integer class indices of y's shape without the class axis, (N,) or (N, T), in [0, C), of any integer
    dtype (cast to the namespace's index dtype, int64 or JAX's int32, where they are another); or
    one-hot/probability rows of y's shape (any rows >= 0, as PyTorch's: a multi-hot row's gradient is
    softmax * sum(row) - row). Caches the softmax probabilities, and the labels (or the target rows and
    their sums) with each row's weight in the mean; on CuPy, for integer labels and up to
    ``xpnet.backend.cupy_layers.MAX_CLASSES`` classes, one kernel writes each row's loss, dy (for
    ``dout=1``, then returned as it is by ``backward()``: do not write into it) and whether the row's
    first maximum is at its label (:meth:`correct_count`), and only dy and those are cached.
    ``check=False`` skips the label-range check, which reads a value back from the device.

    ``ignore_index`` (PyTorch's name and default, -100; the book's is -1): integer labels equal to it
    count for nothing, and the loss is the mean over the other positions, as PyTorch's (one >= 0 with
    probability rows is refused, as PyTorch refuses it: it would leave nothing out). Where every
    label is ignored the loss and its gradient are 0 (PyTorch gives NaN).
    ``label_smoothing`` (PyTorch's name and meaning, default 0.0) mixes every target row with the
    uniform distribution: ``(1 - label_smoothing) * target + label_smoothing / C``.
    ``reduction`` (PyTorch's name): ``"mean"``, the default of both, or ``"sum"``, the sum over the
    positions that count (the mean times their number; dy alike), for a loop of your own: ``xn.train``
    and ``xn.evaluate`` average over batches and ranks, and take the mean only. ``"none"`` (a loss per
    position) is refused, and so are PyTorch's ``size_average``/``reduce``.
    ``weight`` (PyTorch's class weights, keyword-only here: the first positional argument is
    ``ignore_index``): C weights >= 0, each label's term multiplied by its class's weight. With integer
    labels the mean divides by the sum of the counted labels' weights, and label smoothing's uniform part
    weighs each class by its weight under the same divisor, as PyTorch's; with probability rows the mean
    divides by the number of rows, as PyTorch's. Kept on the host, copied once to each device and dtype
    it is used on. ``xn.train`` and ``xn.evaluate`` weigh each batch's weighted mean by its counted
    positions (:meth:`mean_count`), so their figure is PyTorch's weighted mean over the data only where
    the data is one batch; the gradient of each step is PyTorch's.
    """

    @keyword_hints("SoftmaxCrossEntropy", _chainer.SOFTMAX_CROSS_ENTROPY)
    def __init__(self, ignore_index: int = -100, label_smoothing: float = 0.0, *, reduction: str = "mean",
                 weight: Any = None, dim: int | None = None) -> None:
        if not is_int(ignore_index):
            if hasattr(ignore_index, "shape") or isinstance(ignore_index, (list, tuple)):
                raise TypeError(f"{self.name}: the first argument is ignore_index (an int), got a "
                                f"{type(ignore_index).__name__}; PyTorch's first, weight (class weights), is passed "
                                "by name here: SoftmaxCrossEntropy(weight=...)")
            raise ValueError(f"{self.name}: ignore_index must be an int, got {ignore_index!r}")
        if not is_real(label_smoothing) or not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"{self.name}: label_smoothing must be a float in [0, 1], got {label_smoothing!r}")
        self.reduction = check_reduction(self.name, reduction, ", with ignore_index to leave positions out")
        self.weight = None if weight is None else HostWeights(weight, self.name, "weight", ndim=1)
        if dim is not None and not is_int(dim):
            raise ValueError(f"{self.name}: dim (the class axis of the logits) must be an int, -1 ((N, ..., C), "
                             f"the book's) or 1 (PyTorch's (N, C, ...)), or None (classes last), got {dim!r}")
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)
        self.dim = -1 if dim is None else int(dim)
        self.dim_given = dim is not None  # False: a layout that reads both ways is refused (_refuse_both)
        self._back: tuple[int, ...] | None = None  # dim not last: the axes that put dy back in y's layout
        self._p = None
        self._t = None  # target rows (M, C), for one-hot/probability targets
        self._labels = None  # (M,) class indices (0 where ignored), for integer labels
        self._rows = None  # (M, 1) weight of each row in the mean; None: 1 / M each
        self._spread = None  # class weights: (M, 1) each counted row's 1 / (sum of weights); target rows: their sums
        self._dy = None  # dy for dout = 1, written by a fused forward (CuPy)
        self._hits = None  # (M,) bool, argmax(row) == label, written by a fused forward
        self._shape: tuple[int, ...] | None = None
        self._start_counting()

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        y, t = untracked(y), untracked(t)
        xp = self._check_pair(y, t)
        if y.ndim < 2:
            raise ValueError(f"{self.name}: expected logits of shape (N, C) or (N, T, C), got {tuple(y.shape)}")
        back = None  # kept (_back) once the forward is taken: a refused one leaves the last one's backward
        if self.dim != -1:
            y, t, back = self._classes_last(xp, y, t)
        elif not self.dim_given and y.ndim > 2:
            self._refuse_both(y, t)
        value = self._forward_last(xp, y, t, check, back)
        self._back = back
        return value

    def _refuse_both(self, y: Any, t: Any) -> None:
        """Refuse logits of 3 or more axes whose targets fit both the book's layout and PyTorch's, dim not given:
        read classes last, a PyTorch user's (N, C, ...) logits would be another loss, without an error."""
        soft = tuple(t.shape) == tuple(y.shape)
        if not soft and not tuple(t.shape) == tuple(y.shape[:-1]) == _labels_shape(y, 1):
            return
        what = "probability targets of their shape" if soft else f"labels of shape {tuple(t.shape)}"
        raise ValueError(f"{self.name}: logits of shape {tuple(y.shape)} with {what} read two ways: classes on the "
                         f"last axis (N, ..., C), the book's TimeSoftmaxWithLoss, or on axis 1 (N, C, ...), "
                         f"PyTorch's CrossEntropyLoss; say which: SoftmaxCrossEntropy(dim=-1) or "
                         f"SoftmaxCrossEntropy(dim=1)")

    def _classes_last(self, xp: Any, y: Any, t: Any) -> tuple[Any, Any, tuple[int, ...] | None]:
        """y with its class axis ``dim`` moved last, and t too where it is probability rows of y's shape, with the
        axes that move dy back (None: the classes are last already)."""
        if not -y.ndim <= self.dim < y.ndim or self.dim % y.ndim == 0:
            raise ValueError(f"{self.name}: dim={self.dim} is not a class axis of logits of shape {tuple(y.shape)} "
                             f"(expected an axis in [1, {y.ndim}) or in [{1 - y.ndim}, -1]; axis 0 is the batch)")
        axis = self.dim % y.ndim
        if axis == y.ndim - 1:
            return y, t, None
        order = (*(a for a in range(y.ndim) if a != axis), axis)
        soft = tuple(t.shape) == tuple(y.shape)  # probability rows (labels have one axis fewer)
        return (xp.permute_dims(y, order), xp.permute_dims(t, order) if soft else t,
                tuple(order.index(a) for a in range(y.ndim)))

    def _forward_last(self, xp: Any, y: Any, t: Any, check: bool, back: tuple[int, ...] | None) -> Any:
        """forward on logits whose classes are on the last axis (``back``: the axes that give y's own layout).
        Nothing is changed before the checks pass."""
        c, m = y.shape[-1], element_count(y) // y.shape[-1] if y.shape[-1] else 0
        given = tuple(y.shape) if back is None else tuple(y.shape[a] for a in back)  # y's own layout
        if c == 1:  # PyTorch's gives 0 without a word, and a model trained so learns nothing
            raise ValueError(f"{self.name}: logits of shape {given} have 1 class: softmax over one class is 1, so the "
                             f"loss is 0 and its gradient 0 whatever the logits, and nothing trains; for one logit "
                             f"per example (two classes) use SigmoidCrossEntropy (PyTorch's BCEWithLogitsLoss) with "
                             f"targets of the logits' shape, or give the model one output per class")
        if t.shape[0] != y.shape[0]:
            raise ValueError(f"{self.name}: {y.shape[0]} predictions but {t.shape[0]} labels")
        y2 = y if y.ndim == 2 else xp.reshape(y, (m, c))
        eps = self.label_smoothing
        if self.weight is not None and self.weight.shape[0] != c:
            raise ValueError(f"{self.name}: weight holds {self.weight.shape[0]} class weights but the logits have "
                             f"{c} classes")
        if tuple(t.shape) == tuple(y.shape[:-1]):
            labels = self._checked_labels(xp, t, m, c, check)
            self._spread = None
            self._count, self._counted = (m, None) if self._vouched else (None, labels)
            if self.weight is not None:
                value, self._p, self._labels, self._rows, self._spread = weighted_cross_entropy_labels(
                    y2, labels, self.ignore_index, eps, self.weight.like(y2), self.reduction == "sum")
                self._t = self._dy = self._hits = None
                self._shape = tuple(y.shape)
                return value
            fused = fast_path("softmax_cross_entropy", xp, _unfused)(y2, labels, self.ignore_index, eps,
                                                                     count=self._count)
            if fused is not None:
                value, self._dy, self._hits = fused
                self._p = self._t = self._labels = self._rows = None
                self._shape = tuple(y.shape)
                return value if self.reduction == "mean" else self._summed(value)  # (_summed's mean, no call)
            run = fast_path("cross_entropy_labels", xp, cross_entropy_labels)
            value, self._p, self._labels, self._rows = run(y2, labels, self.ignore_index, eps)
            self._t = None
        elif tuple(t.shape) == tuple(y.shape):
            if self.ignore_index >= 0:  # it would leave nothing out: it applies to integer labels only
                raise ValueError(f"{self.name}: ignore_index={self.ignore_index} leaves out integer labels only, and "
                                 "the targets are probability (one-hot) rows; pass the labels as integer indices "
                                 "(PyTorch refuses ignore_index >= 0 with probability targets too)")
            if check and m and float(xp.min(t)) < 0:
                raise ValueError(f"{self.name}: target probabilities must be >= 0, got a minimum of "
                                 f"{float(xp.min(t)):g} (a negative target makes the loss negative)")
            target = t if t.dtype == y.dtype else xp.astype(t, y.dtype)
            target = target if t.ndim == 2 else xp.reshape(target, (m, c))
            if eps:
                target = target * (1.0 - eps) + eps / c
            if self.weight is not None:
                target = target * self.weight.like(y2)
            # each row's sum: dy = p * sum(t) - t, as PyTorch's, where a row does not sum to 1 (multi-hot, weighted)
            self._spread = xp.sum(target, axis=1, keepdims=True)
            z, e, total, log_total = _log_softmax_parts(xp, y2)
            value = -xp.sum(target * (z - log_total)) / m
            self._count, self._counted = m, None
            self._p, self._t, self._labels, self._rows = e / total, target, None, None
        elif t.ndim == y.ndim and tuple(t.shape[:-1]) == tuple(y.shape[:-1]):
            raise ValueError(f"{self.name}: one-hot labels must have {c} columns like the logits, "
                             f"got shape {tuple(t.shape)}")
        else:
            pytorch = back is None and y.ndim >= 3 and tuple(t.shape) == _labels_shape(y, 1)
            layouts = ("(N, T, C)", "(N, C, T)") if y.ndim == 3 else ("(N, ..., C)", "(N, C, ...)")
            hint = (f"; the classes are on the last axis, {layouts[0]}, where PyTorch's CrossEntropyLoss has them on "
                    f"axis 1, {layouts[1]}: pass dim=1, SoftmaxCrossEntropy(dim=1)" if pytorch else "")
            raise ValueError(f"{self.name}: labels must be integer indices of shape {tuple(y.shape[:-1])} or "
                             f"one-hot rows of shape {given}, got {tuple(t.shape)}{hint}")
        self._dy = self._hits = None
        self._shape = tuple(y.shape)
        return self._summed(value)

    def planned_calls(self) -> tuple[Any, Any] | None:
        """``(forward(y, t), backward())`` for steps whose logits (N, C) and labels (N,) have the type, dtype and
        shape of the last forward's, which passed its checks and ran the fused kernel (``xn.train``'s planned
        steps, :mod:`xpnet.training.planned`): that kernel found once, the calls counted as ``counted_forward``
        and ``checked_backward`` count them. ``forward`` gives None, nothing changed, where the kernel declines
        (a label out of range): the ordinary forward then says what it says. None where the last forward took
        another path (class weights, label smoothing, ``reduction="sum"``, soft targets, (N, T, C) scores). An
        exception in ``forward`` leaves the counts the ordinary forward leaves where its kernel raises."""
        if self._dy is None or self.weight is not None or self.label_smoothing or self.reduction != "mean" \
                or self._shape is None or len(self._shape) != 2:
            return None
        xp = namespace(self._dy)
        fused, index, ignore = fast_path("softmax_cross_entropy", xp, _unfused), index_dtype(xp, self._dy.device), \
            self.ignore_index
        own = self.__dict__

        def forward(y: Any, t: Any) -> Any:
            m, vouched, labels = y.shape[0], own["_vouched"], None
            try:
                labels = t if t.dtype == index else xp.astype(t, index)
                found = fused(y, labels, ignore, 0.0, count=m if vouched else None)
            except BaseException:  # (a KeyboardInterrupt): what the ordinary forward wrote before its kernel
                own[_CALLS], own[_SUMMED], own["_spread"] = own.get(_CALLS, 0) + 1, 0, None
                if labels is not None:
                    own["_count"], own["_counted"] = (m, None) if vouched else (None, labels)
                raise
            if found is None:
                return None
            own[_CALLS], own[_SUMMED] = own.get(_CALLS, 0) + 1, 0
            own["_spread"] = None
            own["_count"], own["_counted"] = (m, None) if vouched else (None, labels)
            value, own["_dy"], own["_hits"] = found
            own["_p"] = own["_t"] = own["_labels"] = own["_rows"] = own["_back"] = None  # (N, C): dy's own layout
            own["_shape"] = tuple(y.shape)
            return value

        def backward() -> Any:
            own[_BACKWARD_AT] = own.get(_CALLS, 0)
            return own["_dy"]

        return forward, backward

    def _summed(self, mean: Any) -> Any:
        """The loss under ``reduction``: the mean, or the mean times the counted positions (the sum)."""
        if self.reduction == "mean":
            return mean
        count = self.mean_count()
        return mean * (count if isinstance(count, int) else namespace(mean).astype(count, mean.dtype))

    def correct_count(self) -> Any:
        hits = self._hits
        return None if hits is None else namespace(hits).count_nonzero(hits)

    def __repr__(self) -> str:
        args = [f"ignore_index={self.ignore_index}"] if self.ignore_index != -100 else []
        args += [f"label_smoothing={self.label_smoothing}"] if self.label_smoothing else []
        args += [f"reduction={self.reduction!r}"] if self.reduction != "mean" else []
        args += [f"weight={self.weight!r}"] if self.weight is not None else []
        args += [f"dim={self.dim}"] if self.dim_given else []
        return f"{self.name}({', '.join(args)})"

    def backward(self, dout: Any = 1.0) -> Any:
        dy = self._backward_last(dout)
        return dy if self._back is None else namespace(dy).permute_dims(dy, self._back)

    def _backward_last(self, dout: Any) -> Any:
        """backward in the layout forward computed in, classes last."""
        if self._p is None and self._dy is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        one = type(dout) is float and dout == 1.0  # the default: a number, and no product to make (every step)
        if not one:
            check_dout(self, dout)
        if self.weight is not None and self._labels is not None:
            xp = namespace(self._p)
            dy = weighted_cross_entropy_labels_backward(self._p, self._labels, self._rows, self._spread,
                                                        self.label_smoothing, self.weight.like(self._p), dout,
                                                        self._arange(xp, self._p.shape[1], self._p))
            return dy if len(self._shape) == 2 else xp.reshape(dy, self._shape)
        if self.reduction == "sum":
            count, like = self.mean_count(), self._p if self._dy is None else self._dy
            dout = dout * (count if isinstance(count, int) else namespace(like).astype(count, like.dtype))
            one = False
        if self._dy is not None:
            dy = self._dy if one or (is_real(dout) and dout == 1) else self._dy * dout
            return dy if len(self._shape) == 2 else namespace(dy).reshape(dy, self._shape)
        p = self._p
        m, c = p.shape
        if self._labels is None:
            dy = ((p if self._spread is None else p * self._spread) - self._t) * (dout / m)
        else:
            xp = namespace(p)
            run = fast_path("cross_entropy_labels_backward", xp, cross_entropy_labels_backward)
            dy = run(p, self._labels, self._rows, self.label_smoothing, dout, self._arange(xp, c, p))
        return dy if self._shape is None or len(self._shape) == 2 else namespace(dy).reshape(dy, self._shape)


def _labels_shape(y: Any, axis: int) -> tuple[int, ...]:
    """The shape of the integer labels of logits ``y`` whose classes are on ``axis``: y's without it."""
    return tuple(n for a, n in enumerate(y.shape) if a != axis)


def _log_softmax_parts(xp: Any, y2: Any) -> tuple[Any, Any, Any, Any]:
    """(z, exp(z), its row sums, their log) for logits (M, C), z = y - max(y) per row (log-sum-exp)."""
    z = y2 - xp.max(y2, axis=1, keepdims=True)
    e = xp.exp(z)
    total = xp.sum(e, axis=1, keepdims=True)
    return z, e, total, xp.log(total)


def _unfused(y2: Any, labels: Any, ignore_index: int, label_smoothing: float, count: int | None = None) -> None:
    """Where no library fuses the softmax cross-entropy (``softmax_cross_entropy``, CuPy's kernel): None."""
    return None


def cross_entropy_labels(y2: Any, labels: Any, ignore_index: int, label_smoothing: float) -> tuple[Any, ...]:
    """SoftmaxCrossEntropy over logits (M, C) and integer labels (M,): (the mean loss, softmax (M, C),
    the labels with ignored ones set to class 0, each row's weight in the mean (M, 1)). Where every label
    is ignored the mean is over max(count, 1) rows: 0. NumPy's fast path (``fast_numpy``) takes the
    common case, no ignored label and no smoothing, in fewer passes; the tests compare the two."""
    xp = namespace(y2)
    m, c = y2.shape
    z, e, total, log_total = _log_softmax_parts(xp, y2)
    valid = labels != ignore_index
    labels = xp.where(valid, labels, xp.zeros_like(labels))
    weight = xp.astype(valid, y2.dtype)[:, None]
    per_row = xp.take_along_axis(z, labels[:, None], axis=1) - log_total
    if label_smoothing:
        per_row = per_row * (1.0 - label_smoothing) + (xp.sum(z, axis=1, keepdims=True) - c * log_total) * (
            label_smoothing / c)
    count = xp.sum(weight)
    count = xp.maximum(count, xp.ones_like(count))
    return -xp.sum(per_row * weight) / count, e / total, labels, weight / count


def cross_entropy_labels_backward(p: Any, labels: Any, rows: Any, label_smoothing: float, dout: Any,
                                  classes: Any) -> Any:
    """dy (M, C) of :func:`cross_entropy_labels`: (softmax - target) times each row's weight and dout.
    ``rows`` None: every row weighs 1/M. ``classes``: arange(C) as a (1, C) row on p's device."""
    xp = namespace(p)
    m, c = p.shape
    hit = xp.astype(classes == labels[:, None], p.dtype)
    target = hit * (1.0 - label_smoothing) + label_smoothing / c if label_smoothing else hit
    return (p - target) * (dout / m if rows is None else rows * dout)


def weighted_cross_entropy_labels(y2: Any, labels: Any, ignore_index: int, label_smoothing: float, weight: Any,
                                  summed: bool) -> tuple[Any, ...]:
    """SoftmaxCrossEntropy with class weights ``weight`` (C,) over logits (M, C) and integer labels (M,), as
    PyTorch's: each counted row's term is its label's weight times -log p[label], mixed by label smoothing with
    ``sum_c weight[c] * -log p[c] / C``; the mean divides by the counted labels' weights (``summed``: by 1).
    Returns (the loss, softmax (M, C), the labels with ignored ones set to class 0, each row's label weight
    over that divisor (M, 1), each counted row's 1 over it (M, 1)). A divisor of 0 (every label ignored, or
    of weight 0) is taken as 1: the loss is finite where PyTorch's is NaN."""
    xp = namespace(y2)
    c = y2.shape[1]
    z, e, total, log_total = _log_softmax_parts(xp, y2)
    valid = labels != ignore_index
    labels = xp.where(valid, labels, xp.zeros_like(labels))
    counted = xp.astype(valid, y2.dtype)[:, None]
    label_weight = xp.take(weight, labels)[:, None] * counted
    per_row = (xp.take_along_axis(z, labels[:, None], axis=1) - log_total) * label_weight
    if label_smoothing:
        uniform = xp.sum(z * weight, axis=1, keepdims=True) - xp.sum(weight) * log_total
        per_row = per_row * (1.0 - label_smoothing) + uniform * (counted * (label_smoothing / c))
    divisor = xp.sum(label_weight)
    divisor = xp.ones_like(divisor) if summed else xp.where(divisor > 0, divisor, xp.ones_like(divisor))
    return -xp.sum(per_row) / divisor, e / total, labels, label_weight / divisor, counted / divisor


def weighted_cross_entropy_labels_backward(p: Any, labels: Any, rows: Any, spread: Any, label_smoothing: float,
                                           weight: Any, dout: Any, classes: Any) -> Any:
    """dy (M, C) of :func:`weighted_cross_entropy_labels`: (softmax - one-hot) times each row's label weight
    over the divisor (``rows``), mixed by label smoothing with (softmax * sum(weight) - weight) over the divisor
    (``spread``), times dout. ``classes``: arange(C) as a (1, C) row on p's device."""
    xp = namespace(p)
    c = p.shape[1]
    dy = (p - xp.astype(classes == labels[:, None], p.dtype)) * rows
    if label_smoothing:
        dy = dy * (1.0 - label_smoothing) + (p * xp.sum(weight) - weight) * (spread * (label_smoothing / c))
    return dy * dout
