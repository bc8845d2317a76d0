"""Losses: ``forward(y, t) -> 0-d array`` (mean over the batch; SoftmaxCrossEntropy's ``reduction="sum"``
the sum) and ``backward() -> dy``.

Calling a loss, ``loss = criterion(y, t)`` as in PyTorch, gives a :class:`LossValue`: a Python float
whose ``backward()`` says what to write instead (xpnet has no autograd).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from ._user import is_int, is_real, not_here
from .backend import device_of, fast_path, index_dtype, isdtype, namespace, same_device, untracked


class Loss:
    """Base class: checks shared by losses."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{self.name}()"

    def __call__(self, y: Any, t: Any) -> "LossValue":
        """``forward(y, t)`` read back as a :class:`LossValue` (a float), for PyTorch-style loops. In a loop
        that must not wait for the device each step, call ``forward`` (a 0-d array on the device)."""
        return LossValue(self.forward(y, t), self)

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        raise NotImplementedError

    def backward(self, dout: Any = 1.0) -> Any:
        raise NotImplementedError

    def mean_count(self) -> Any:
        """How many terms the last forward's mean is over: an int, or a 0-d integer array on the device
        (cross-entropy's labels that are not ``ignore_index``, counted when asked); None where the loss does
        not say. The loops weigh each batch's mean by it (``xn.evaluate``'s loss is the mean over every
        target of the data, whatever ``batch_size``, and with ``comm`` each rank's gradient by its count);
        None: by the batch's rows."""
        return None

    def ignores_any(self, t: Any) -> bool:
        """Whether some target of the data ``t`` would count for nothing in the mean (cross-entropy: a label
        equal to ``ignore_index``): the loops ask once per run (one read from the device), then vouch for
        the answer with :meth:`none_ignored`."""
        return False

    @contextmanager
    def none_ignored(self, vouched: bool = True) -> Iterator[None]:
        """Within (where ``vouched``), the caller has checked once that no target of its data is ignored
        (cross-entropy: no label equals ``ignore_index``): :meth:`mean_count` is then a Python int from the
        shapes alone, with no device work per batch. A loss that ignores nothing has nothing to do."""
        yield

    def correct_count(self) -> Any:
        """How many rows of the last forward's predictions have their first maximum at their label, as
        ``count_nonzero(argmax(y, axis=-1) == t)``: a 0-d integer array on the device where the loss
        found it along the way (CuPy's fused softmax cross-entropy), else None (count it yourself)."""
        return None

    def _check_pair(self, y: Any, t: Any) -> Any:
        xp = namespace(y)
        if namespace(t) is not xp or not same_device(y, t):
            raise ValueError(f"{self.name}: predictions are on {device_of(y)} but targets are on {device_of(t)}; "
                             "move both to one device")
        if not isdtype(xp, y.dtype, "real floating"):
            raise TypeError(f"{self.name}: expected floating-point predictions, got dtype {y.dtype}")
        return xp


class LossValue(float):
    """The value of ``criterion(y, t)``: the mean loss as a Python float, so that PyTorch's ``loss.item()``,
    ``float(loss)``, ``f"{loss:.4f}"`` and sums over a loop work. There is no graph behind it:
    ``loss.backward()`` raises, saying to call the loss layer's ``backward()`` for dy, then
    ``model.backward(dy)``."""

    def __new__(cls, value: Any, loss: Loss | None = None) -> "LossValue":
        self = super().__new__(cls, float(value))
        self.loss_name = loss.name if loss is not None else "loss layer"
        return self

    def item(self) -> float:
        return float(self)

    def __getattr__(self, name: str) -> Any:
        which = self.__dict__.get("loss_name", "loss layer")
        hints = {"backward": f"xpnet has no autograd: the loss layer's backward() gives dy, then the model takes it: "
                             f"model.backward(criterion.backward()), criterion being the {which} you called"}
        raise not_here(type(self).__name__, name, hints, kind="object")


class SoftmaxCrossEntropy(Loss):
    """Mean cross-entropy of softmax(y) against labels, through log-sum-exp (no NaN for logits of 1e4).

    y: (N, C) logits, or (N, T, C) for sequences (any (N, ..., C): classes on the last axis, as the
    book's TimeSoftmaxWithLoss; PyTorch's cross_entropy wants them on axis 1, (N, C, T)).
    t: integer class indices of y's shape without the last axis, (N,) or (N, T), in [0, C), of any integer
    dtype (cast to the namespace's index dtype, int64 or JAX's int32, where they are another); or
    one-hot/probability rows of y's shape. Caches the softmax probabilities, and the labels (or the
    target rows) with each row's weight in the mean; on CuPy, for integer labels and up to
    ``xpnet.backend.cupy_layers.MAX_CLASSES`` classes, one kernel writes each row's loss, dy (for
    ``dout=1``, then returned as it is by ``backward()``: do not write into it) and whether the row's
    first maximum is at its label (:meth:`correct_count`), and only dy and those are cached.
    ``check=False`` skips the label-range check, which reads a value back from the device.

    ``ignore_index`` (PyTorch's name and default, -100; the book's is -1): integer labels equal to it
    count for nothing, and the loss is the mean over the other positions, as PyTorch's. Where every
    label is ignored the loss and its gradient are 0 (PyTorch gives NaN).
    ``label_smoothing`` (PyTorch's name and meaning, default 0.0) mixes every target row with the
    uniform distribution: ``(1 - label_smoothing) * target + label_smoothing / C``.
    ``reduction`` (PyTorch's name): ``"mean"``, the default of both, or ``"sum"``, the sum over the
    positions that count (the mean times their number; dy alike), for a loop of your own: ``xn.train``
    and ``xn.evaluate`` average over batches and ranks, and take the mean only. ``"none"`` (a loss per
    position) is refused, and so are PyTorch's class ``weight`` (its first positional argument) and
    ``size_average``/``reduce``: there are no class weights here.
    """

    def __init__(self, ignore_index: int = -100, label_smoothing: float = 0.0, *, reduction: str = "mean") -> None:
        if not is_int(ignore_index):
            if hasattr(ignore_index, "shape") or isinstance(ignore_index, (list, tuple)):
                raise TypeError(f"{self.name}: the first argument is ignore_index (an int), got a "
                                f"{type(ignore_index).__name__}; PyTorch's first, weight (class weights), has no "
                                "counterpart here: xpnet offers ignore_index and label_smoothing")
            raise ValueError(f"{self.name}: ignore_index must be an int, got {ignore_index!r}")
        if not is_real(label_smoothing) or not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"{self.name}: label_smoothing must be a float in [0, 1], got {label_smoothing!r}")
        if reduction not in ("mean", "sum"):
            why = ("xpnet has no loss per position (its backward starts from one number): pass 'mean' or 'sum', "
                   "with ignore_index to leave positions out") if reduction == "none" else "expected 'mean' or 'sum'"
            raise ValueError(f"{self.name}: reduction={reduction!r} is not supported: {why}")
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)
        self.reduction = reduction
        self._p = None
        self._t = None  # target rows (M, C), for one-hot/probability targets
        self._labels = None  # (M,) class indices (0 where ignored), for integer labels
        self._rows = None  # (M, 1) weight of each row in the mean; None: 1 / M each
        self._dy = None  # dy for dout = 1, written by a fused forward (CuPy)
        self._hits = None  # (M,) bool, argmax(row) == label, written by a fused forward
        self._shape: tuple[int, ...] | None = None
        self._count: Any = None  # the positions the last mean is over (mean_count), once known
        self._counted: Any = None  # the labels (M,) whose non-ignored ones mean_count counts when asked
        self._vouched = False  # none_ignored: no label is ignore_index, the count is every position
        self._classes: tuple[Any, Any] = (None, None)  # (key, arange(C) on the logits' device)

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        y, t = untracked(y), untracked(t)
        xp = self._check_pair(y, t)
        if y.ndim < 2:
            raise ValueError(f"{self.name}: expected logits of shape (N, C) or (N, T, C), got {tuple(y.shape)}")
        c, m = y.shape[-1], _size(y) // y.shape[-1] if y.shape[-1] else 0
        if t.shape[0] != y.shape[0]:
            raise ValueError(f"{self.name}: {y.shape[0]} predictions but {t.shape[0]} labels")
        y2 = y if y.ndim == 2 else xp.reshape(y, (m, c))
        eps = self.label_smoothing
        if tuple(t.shape) == tuple(y.shape[:-1]):
            labels = self._checked_labels(xp, t, m, c, check)
            self._count, self._counted = (m, None) if self._vouched else (None, labels)
            fused = fast_path("softmax_cross_entropy", xp, _unfused)(y2, labels, self.ignore_index, eps)
            if fused is not None:
                value, self._dy, self._hits = fused
                self._p = self._t = self._labels = self._rows = None
                self._shape = tuple(y.shape)
                return self._summed(value)
            run = fast_path("cross_entropy_labels", xp, cross_entropy_labels)
            value, self._p, self._labels, self._rows = run(y2, labels, self.ignore_index, eps)
            self._t = None
        elif tuple(t.shape) == tuple(y.shape):
            if check and m and float(xp.min(t)) < 0:
                raise ValueError(f"{self.name}: target probabilities must be >= 0, got a minimum of "
                                 f"{float(xp.min(t)):g} (a negative target makes the loss negative)")
            target = t if t.dtype == y.dtype else xp.astype(t, y.dtype)
            target = target if t.ndim == 2 else xp.reshape(target, (m, c))
            if eps:
                target = target * (1.0 - eps) + eps / c
            z, e, total, log_total = _log_softmax_parts(xp, y2)
            value = -xp.sum(target * (z - log_total)) / m
            self._count, self._counted = m, None
            self._p, self._t, self._labels, self._rows = e / total, target, None, None
        elif t.ndim == y.ndim and tuple(t.shape[:-1]) == tuple(y.shape[:-1]):
            raise ValueError(f"{self.name}: one-hot labels must have {c} columns like the logits, "
                             f"got shape {tuple(t.shape)}")
        else:
            pytorch = y.ndim == 3 and tuple(t.shape) == (y.shape[0], y.shape[2])
            hint = ("; the classes are on the last axis, (N, T, C), where PyTorch's CrossEntropyLoss has them on "
                    "axis 1, (N, C, T): pass xp.permute_dims(scores, (0, 2, 1))" if pytorch else "")
            raise ValueError(f"{self.name}: labels must be integer indices of shape {tuple(y.shape[:-1])} or "
                             f"one-hot rows of shape {tuple(y.shape)}, got {tuple(t.shape)}{hint}")
        self._dy = self._hits = None
        self._shape = tuple(y.shape)
        return self._summed(value)

    def _summed(self, mean: Any) -> Any:
        """The loss under ``reduction``: the mean, or the mean times the counted positions (the sum)."""
        if self.reduction == "mean":
            return mean
        count = self.mean_count()
        return mean * (count if isinstance(count, int) else namespace(mean).astype(count, mean.dtype))

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

    def correct_count(self) -> Any:
        hits = self._hits
        return None if hits is None else namespace(hits).count_nonzero(hits)

    def _checked_labels(self, xp: Any, t: Any, m: int, c: int, check: bool) -> Any:
        """The labels as (M,), after checking their dtype and (with ``check``) their range."""
        if not isdtype(xp, t.dtype, "integral"):
            shape = {1: "(N,)", 2: "(N, T)"}.get(t.ndim, str(tuple(t.shape)))
            raise TypeError(f"{self.name}: labels of shape {shape} must be integer class indices, got dtype "
                            f"{t.dtype}; pass one-hot rows of the logits' shape (..., {c}) for soft targets")
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
                             f"got values in [{low}, {high}]")
        return labels

    def __repr__(self) -> str:
        args = [f"ignore_index={self.ignore_index}"] if self.ignore_index != -100 else []
        args += [f"label_smoothing={self.label_smoothing}"] if self.label_smoothing else []
        args += [f"reduction={self.reduction!r}"] if self.reduction != "mean" else []
        return f"{self.name}({', '.join(args)})"

    def _arange(self, xp: Any, c: int, y: Any) -> Any:
        """arange(C) as a (1, C) row on ``y``'s device, made once per namespace, device and C."""
        key = (xp, c, y.device)
        if self._classes[0] != key:
            self._classes = (key, xp.arange(c, device=y.device)[None, :])
        return self._classes[1]

    def backward(self, dout: Any = 1.0) -> Any:
        if self._p is None and self._dy is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        _check_dout(self, dout)
        if self.reduction == "sum":
            count, like = self.mean_count(), self._p if self._dy is None else self._dy
            dout = dout * (count if isinstance(count, int) else namespace(like).astype(count, like.dtype))
        if self._dy is not None:
            dy = self._dy if is_real(dout) and dout == 1 else self._dy * dout
            return dy if len(self._shape) == 2 else namespace(dy).reshape(dy, self._shape)
        p = self._p
        m, c = p.shape
        if self._labels is None:
            dy = (p - self._t) * (dout / m)
        else:
            xp = namespace(p)
            run = fast_path("cross_entropy_labels_backward", xp, cross_entropy_labels_backward)
            dy = run(p, self._labels, self._rows, self.label_smoothing, dout, self._arange(xp, c, p))
        return dy if self._shape is None or len(self._shape) == 2 else namespace(dy).reshape(dy, self._shape)


def _log_softmax_parts(xp: Any, y2: Any) -> tuple[Any, Any, Any, Any]:
    """(z, exp(z), its row sums, their log) for logits (M, C), z = y - max(y) per row (log-sum-exp)."""
    z = y2 - xp.max(y2, axis=1, keepdims=True)
    e = xp.exp(z)
    total = xp.sum(e, axis=1, keepdims=True)
    return z, e, total, xp.log(total)


def _unfused(y2: Any, labels: Any, ignore_index: int, label_smoothing: float) -> None:
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


class MeanSquaredError(Loss):
    """Mean over all elements of (y - t)**2 (as PyTorch's MSELoss).

    y, t: the same shape (N, ...). Caches y - t.
    """

    def __init__(self) -> None:
        self._diff = None

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        y, t = untracked(y), untracked(t)
        xp = self._check_pair(y, t)
        if tuple(y.shape) != tuple(t.shape):
            raise ValueError(f"{self.name}: predictions {tuple(y.shape)} and targets {tuple(t.shape)} differ in shape")
        if t.dtype != y.dtype:
            t = xp.astype(t, y.dtype)
        self._diff = y - t
        return xp.sum(self._diff * self._diff) / _size(y)

    def mean_count(self) -> Any:
        return None if self._diff is None else _size(self._diff)

    def backward(self, dout: Any = 1.0) -> Any:
        if self._diff is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        _check_dout(self, dout)
        return self._diff * (2.0 * dout / _size(self._diff))


def _check_dout(loss: Loss, dout: Any) -> None:
    """``dout``, the gradient of what follows the loss, is a number (1.0: the loss itself) or a 0-d array."""
    if not (is_real(dout) or getattr(dout, "shape", None) == ()):
        raise TypeError(f"{loss.name}: backward(dout): dout must be a number (1.0 by default), got {dout!r}")


def _size(a: Any) -> int:
    n = 1
    for d in a.shape:
        n *= int(d)
    return n


LOSSES = {"softmax_cross_entropy": SoftmaxCrossEntropy, "cross_entropy": SoftmaxCrossEntropy,
          "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError}


def get(loss: Any) -> Loss:
    """A loss instance from an instance, a class or a name such as ``"cross_entropy"``."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, type) and issubclass(loss, Loss):
        return loss()
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]()
    raise ValueError(f"loss: expected a Loss, or one of {sorted(LOSSES)}, got {loss!r}")


def check_mean(loss: Loss, who: str) -> Loss:
    """``loss`` when it averages (every loss but one built with ``reduction="sum"``): ``who`` (``train``,
    ``evaluate``) weighs batches and ranks by their size, which a sum would count twice."""
    if getattr(loss, "reduction", "mean") != "mean":
        raise ValueError(f"{who}: the loss has reduction={loss.reduction!r}; {who} averages the loss over batches "
                         f"(and ranks), so pass the loss with reduction='mean' (PyTorch's default; for the gradient "
                         f"of a sum over a batch of B counted positions, multiply the learning rate by B)")
    return loss


# What a PyTorch user reaches for in torch.nn, and what xpnet has instead.
_PYTORCH_NAMES = {
    "CrossEntropyLoss": "xn.losses.SoftmaxCrossEntropy() takes logits and int class labels (or one-hot rows) as "
                        "CrossEntropyLoss does, the mean over the batch, with its label_smoothing; classes on the "
                        "last axis",
    "NLLLoss": "xpnet has no separate log-softmax layer: xn.losses.SoftmaxCrossEntropy() takes the logits",
    "MSELoss": "xn.losses.MeanSquaredError() (the mean over every element, as MSELoss)",
    # The book's names (both volumes).
    "SoftmaxWithLoss": "the book's SoftmaxWithLoss is xn.losses.SoftmaxCrossEntropy() (int labels or one-hot rows)",
    "TimeSoftmaxWithLoss": "the book's TimeSoftmaxWithLoss is xn.losses.SoftmaxCrossEntropy() on (N, T, V) scores "
                           "and (N, T) ids (ignore_index=-1 for the book's ignore_label)",
    "SigmoidWithLoss": "xpnet has no sigmoid cross-entropy loss: for two classes, a Linear with 2 outputs and "
                       "xn.losses.SoftmaxCrossEntropy() (the same model, reparametrised)",
}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, _PYTORCH_NAMES)
