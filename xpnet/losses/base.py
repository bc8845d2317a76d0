"""The base of every loss (:class:`Loss`), the value a call gives (:class:`LossValue`), and the checks they share."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from .._user import is_real, not_here
from ..backend import device_of, isdtype, namespace, same_device


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



def check_dout(loss: Loss, dout: Any) -> None:
    """``dout``, the gradient of what follows the loss, is a number (1.0: the loss itself) or a 0-d array."""
    if not (is_real(dout) or getattr(dout, "shape", None) == ()):
        raise TypeError(f"{loss.name}: backward(dout): dout must be a number (1.0 by default), got {dout!r}")


def element_count(a: Any) -> int:
    n = 1
    for d in a.shape:
        n *= int(d)
    return n
