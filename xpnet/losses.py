"""Losses: ``forward(y, t) -> 0-d array`` (mean over the batch) and ``backward() -> dy``.

Calling a loss, ``loss = criterion(y, t)`` as in PyTorch, gives a :class:`LossValue`: a Python float
whose ``backward()`` says what to write instead (xpnet has no autograd).
"""

from __future__ import annotations

from typing import Any

from ._user import is_real, not_here
from .backend import device_of, isdtype, namespace, same_device


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

    y: (N, C) logits. t: (N,) integer class indices in [0, C), or (N, C) one-hot/probability rows.
    Caches the softmax probabilities and the targets (as a one-hot mask for integer labels).
    ``check=False`` skips the label-range check, which reads a value back from the device.

    ``label_smoothing`` (PyTorch's name and meaning, default 0.0) mixes every target row with the
    uniform distribution: ``(1 - label_smoothing) * target + label_smoothing / C``.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not is_real(label_smoothing) or not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"{self.name}: label_smoothing must be a float in [0, 1], got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self._p = None
        self._t = None
        self._classes: tuple[Any, Any] = (None, None)  # (key, arange(C) on the logits' device)

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        xp = self._check_pair(y, t)
        if y.ndim != 2:
            raise ValueError(f"{self.name}: expected logits of shape (N, C), got {tuple(y.shape)}")
        n, c = y.shape
        if t.shape[0] != n:
            raise ValueError(f"{self.name}: {n} predictions but {t.shape[0]} labels")
        z = y - xp.max(y, axis=1, keepdims=True)
        e = xp.exp(z)
        total = xp.sum(e, axis=1, keepdims=True)
        logp = z - xp.log(total)
        if t.ndim == 1:
            if not isdtype(xp, t.dtype, "integral"):
                raise TypeError(f"{self.name}: labels of shape (N,) must be integer class indices, got dtype "
                                f"{t.dtype}; pass one-hot rows of shape (N, {c}) for soft targets")
            if check and n and (int(xp.min(t)) < 0 or int(xp.max(t)) >= c):
                raise ValueError(f"{self.name}: labels must lie in [0, {c}), got values in "
                                 f"[{int(xp.min(t))}, {int(xp.max(t))}]")
            target = xp.astype(self._arange(xp, c, y) == t[:, None], y.dtype)
        elif t.ndim == 2:
            if t.shape[1] != c:
                raise ValueError(f"{self.name}: one-hot labels must have {c} columns like the logits, "
                                 f"got shape {tuple(t.shape)}")
            target = t if t.dtype == y.dtype else xp.astype(t, y.dtype)
        else:
            raise ValueError(f"{self.name}: labels must be (N,) indices or (N, {c}) one-hot, got {tuple(t.shape)}")
        if self.label_smoothing:
            target = target * (1.0 - self.label_smoothing) + self.label_smoothing / c
        self._p = e / total
        self._t = target
        return -xp.sum(target * logp) / n

    def __repr__(self) -> str:
        return f"{self.name}(label_smoothing={self.label_smoothing})" if self.label_smoothing else f"{self.name}()"

    def _arange(self, xp: Any, c: int, y: Any) -> Any:
        """arange(C) as a (1, C) row on ``y``'s device, made once per namespace, device and C."""
        key = (xp, c, y.device)
        if self._classes[0] != key:
            self._classes = (key, xp.arange(c, device=y.device)[None, :])
        return self._classes[1]

    def backward(self, dout: Any = 1.0) -> Any:
        if self._p is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        n = self._p.shape[0]
        return (self._p - self._t) * (dout / n)


class MeanSquaredError(Loss):
    """Mean over all elements of (y - t)**2 (as PyTorch's MSELoss).

    y, t: the same shape (N, ...). Caches y - t.
    """

    def __init__(self) -> None:
        self._diff = None

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        xp = self._check_pair(y, t)
        if tuple(y.shape) != tuple(t.shape):
            raise ValueError(f"{self.name}: predictions {tuple(y.shape)} and targets {tuple(t.shape)} differ in shape")
        if t.dtype != y.dtype:
            t = xp.astype(t, y.dtype)
        self._diff = y - t
        return xp.sum(self._diff * self._diff) / _size(y)

    def backward(self, dout: Any = 1.0) -> Any:
        if self._diff is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        return self._diff * (2.0 * dout / _size(self._diff))


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


# What a PyTorch user reaches for in torch.nn, and what xpnet has instead.
_PYTORCH_NAMES = {
    "CrossEntropyLoss": "xn.losses.SoftmaxCrossEntropy() takes logits and int class labels (or one-hot rows) as "
                        "CrossEntropyLoss does, the mean over the batch, with its label_smoothing; classes on the "
                        "last axis",
    "NLLLoss": "xpnet has no separate log-softmax layer: xn.losses.SoftmaxCrossEntropy() takes the logits",
    "MSELoss": "xn.losses.MeanSquaredError() (the mean over every element, as MSELoss)",
}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, _PYTORCH_NAMES)
