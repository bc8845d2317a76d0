"""PReLU: LeakyReLU with a learned slope, PyTorch's nn.PReLU."""

from __future__ import annotations

from typing import Any

from .. import init as _init
from ..backend import untracked
from .activations import number
from .base import DEVICE_DEFAULT, Layer, positive_int, pytorch_defaults_only
from .pytorch_params import PyTorchParam


class PReLU(Layer):
    """PyTorch's nn.PReLU: y = x where x > 0, else weight * x, one slope for every value (``num_parameters=1``)
    or one per channel, axis 1 of x: (N, num_parameters, ...) -> y of the same shape (any shape with one slope).

    params: weight (num_parameters,), PyTorch's name and shape, starting at ``init`` (decayed by the optimizers'
    weight decay as a weight, as PyTorch's ``weight_decay`` decays it). Caches x; backward gives dx = dy where
    x > 0, else weight * dy (at x = 0 too, as PyTorch's), and grads["weight"] the sum of x * dy where x <= 0
    over every axis but the channels'.
    """

    weight = PyTorchParam("weight")  # PyTorch's name and layout

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device: Any = None,
                 dtype: Any = "float32") -> None:
        super().__init__()
        pytorch_defaults_only(self.name, {"device": DEVICE_DEFAULT}, {"device": device})
        self.num_parameters = positive_int(self, "num_parameters", num_parameters)
        self.init = number(self, "init", init)
        self.dtype = _init.dtype_name(dtype, self.name)
        self.params["weight"] = _init.ones((self.num_parameters,), dtype=self.dtype) * self.init
        self._x = None

    def config(self) -> dict[str, Any]:
        return {"num_parameters": self.num_parameters, "init": self.init, "dtype": self.dtype}

    def _slope(self, xp: Any, x: Any) -> Any:
        """weight shaped to broadcast over x: (1, C, 1, ...) per channel, (1,) for one slope."""
        w = self.params["weight"]
        if self.num_parameters == 1:
            return w
        if x.ndim < 2 or x.shape[1] != self.num_parameters:
            raise ValueError(f"PReLU: num_parameters={self.num_parameters} slopes for axis 1 (the channels), got an "
                             f"input of shape {tuple(x.shape)}; PReLU() has one slope for any shape")
        return xp.reshape(w, (1, self.num_parameters) + (1,) * (x.ndim - 2))

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        self._check_like_params(x)
        slope = self._slope(xp, x)
        self._x = x
        return xp.where(x > 0, x, x * slope)

    def pieces(self) -> Any:
        return None if self._x is None else self._x > 0

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        x = self._need(self._x)
        xp = self._check_grad(dy, x.shape)
        positive = x > 0
        if not self._frozen:
            per_value = xp.where(positive, xp.zeros_like(dy), x * dy)
            axes = tuple(a for a in range(x.ndim) if a != 1 or self.num_parameters == 1)
            self.grads["weight"] = xp.reshape(xp.sum(per_value, axis=axes), (self.num_parameters,))
        return xp.where(positive, dy, dy * self._slope(xp, x))
