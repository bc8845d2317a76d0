"""``LossValue``: what calling a loss gives, ``loss = criterion(y, t)``, a Python float for PyTorch-style loops."""

from __future__ import annotations

import operator as _operator
from typing import Any

import numpy as np

from .._user import not_here
from .summed import first_call, merged, repeated, summed_hint

_OWN = ("xpnet has no autograd: the loss layer's backward() gives dy, then the model takes it: "
        "model.backward(criterion.backward()), criterion being the {} you called")
_PARTS = ("xpnet has no autograd: each loss layer's backward() gives the gradient of its own part (scaled as you "
          "scaled it: criterion.backward() / k for loss / k); model.backward takes their sum where two reach one "
          "output, each in its place where they reach several, and a part computed by hand (a VAE's KL term) needs "
          "its gradient written out (docs/from-pytorch.md)")


class LossValue(float):
    """The value of ``criterion(y, t)``: the mean loss as a Python float, so that PyTorch's ``loss.item()``,
    ``loss.sum().item()``, ``loss.detach()``, ``loss.cpu().numpy()``, ``float(loss)``, ``f"{loss:.4f}"`` and sums
    over a loop work, and ``loss.tolist()`` (a float), ``loss.clone()``, ``loss.to('cpu')``, ``loss.dim()``
    and ``loss.numel()`` as a 0-d tensor's. There is no graph behind it: ``loss.backward()`` raises, saying to
    call the loss layer's ``backward()`` for dy, then ``model.backward(dy)``, as ``loss.requires_grad`` and
    ``loss.grad`` do. Sums, differences, products and quotients with numbers
    stay LossValues (DCGAN's ``errD = errD_real + errD_fake``, a VAE's ``BCE + KLD``), whose ``backward()`` says
    how the parts' gradients go back."""

    # NumPy's scalars and arrays defer to its operators (numpy/_core/src/common/binop_override.h: a higher
    # __array_priority__ and no __array_ufunc__): 0.25 * np.sum(...) + 0.75 * loss and np.float32(0.5) * loss stay
    # LossValues (a NumPy scalar would drop it, and its backward() hint with it). __array_ufunc__ = None would do
    # the same and make np.isfinite(loss), np.exp(loss) raise.
    __array_priority__ = 1000

    def __new__(cls, value: Any, loss: Any = None, parts: bool = False,
                calls: tuple[tuple[Any, int, int], ...] = ()) -> "LossValue":
        self = super().__new__(cls, float(value))
        self.loss_name = loss.name if loss is not None else "loss layer"
        self.parts = parts
        self.calls = first_call(loss) if loss is not None else calls  # (loss, first, last call) it sums
        return self

    def item(self) -> float:
        return float(self)

    def sum(self) -> "LossValue":
        """Itself, as a 0-d tensor's ``sum()`` (siamese_network's ``criterion(outputs, targets).sum().item()``)."""
        return self

    mean = sum  # a 0-d tensor's mean is itself too
    detach = sum  # nothing to detach from: no graph behind it
    clone = sum  # a float is immutable: a copy could not differ
    cpu = sum  # a float on the host already (the hyperparameter-tuning tutorial's ``loss.cpu().numpy()``)

    def to(self, *args: Any, **kwargs: Any) -> "LossValue":
        """Itself, whatever the device or dtype asked: the value is a float on the host (``loss.to('cpu')``)."""
        return self

    def tolist(self) -> float:
        """The value as a Python float, as a 0-d tensor's ``tolist()`` gives one."""
        return float(self)

    def dim(self) -> int:
        """0, a 0-d tensor's number of axes."""
        return 0

    def numel(self) -> int:
        """1, a 0-d tensor's number of elements."""
        return 1

    def numpy(self) -> Any:
        """The value as a 0-d float64 NumPy array, as a 0-d tensor's ``numpy()`` gives one."""
        return np.asarray(float(self))

    def __getattr__(self, name: str) -> Any:
        again = repeated(self.__dict__.get("calls", ()))
        hint = (f"xpnet has no autograd, and {again.name} keeps its last call only. {summed_hint(again.name)}"
                if again is not None else
                _PARTS if self.__dict__.get("parts") else _OWN.format(self.__dict__.get("loss_name", "loss layer")))
        graph = ("xpnet records no graph, so a loss has no grad_fn (the blitz tutorial's loss.grad_fn.next_functions): "
                 "the way back is the model's backward, written out, the loss layer's backward() giving its dy")
        data = "loss.item() is the value, a Python float (PyTorch's older loss.data[0] and loss.data.item())"
        flags = (f"xpnet records no graph: a loss value is a Python float, with no {name}; the way back is the loss "
                 f"layer's backward() giving dy, then model.backward(dy) filling each layer's grads")
        raise not_here(type(self).__name__, name, {"backward": hint, "grad_fn": graph, "data": data,
                                                   "requires_grad": flags, "grad": flags, "is_leaf": flags},
                       kind="object")

    def __neg__(self) -> "LossValue":
        return LossValue(-float(self), parts=True, calls=self.calls)

    def __pos__(self) -> "LossValue":
        return self


def _number(other: Any) -> Any:
    """``other`` as a Python float where it is a real NumPy scalar that is no float (``np.float32(0.5)``) or a real
    0-d NumPy array, else ``other``."""
    if isinstance(other, (np.generic, np.ndarray)) and other.shape == () and other.dtype.kind in "biuf":
        return float(other)
    return other


def _combined(name: str) -> Any:
    """float's operator ``name``, its result a LossValue of several parts where it is a number (a NumPy scalar
    or 0-d array too); with an array (which defers to it, ``__array_priority__``), the array's result with the
    plain number."""
    operator = getattr(float, name)
    plain = getattr(_operator, name.replace("__r", "__", 1))

    def run(self: LossValue, other: Any) -> Any:
        value = operator(self, _number(other))
        if value is NotImplemented:
            return plain(other, float(self)) if name.startswith("__r") else plain(float(self), other)
        calls = merged(self.calls, other.calls) if isinstance(other, LossValue) else self.calls
        return LossValue(value, parts=True, calls=calls)
    run.__name__ = name
    return run


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__"):
    setattr(LossValue, _name, _combined(_name))
