"""Root-mean-square normalisation over the last axes of each sample: PyTorch's nn.RMSNorm."""

from __future__ import annotations

import math
from typing import Any

from .. import init as _init
from .._user import flag, is_real
from ..backend import untracked
from .base import DEVICE_DEFAULT, Layer, pytorch_defaults_only
from .layernorm import check_last_axes, normalized_shape_of, shape_repr
from .pytorch_params import PyTorchParam


class RMSNorm(Layer):
    """y = gamma * x / sqrt(mean(x**2) + eps), the mean over the last ``len(normalized_shape)`` axes, separately
    at every position of the leading ones (LLM-style Transformers; no centring, no beta).

    x: (..., *normalized_shape) -> y: the same shape. Training and evaluation are the same. params: gamma
    (PyTorch's ``weight``), of shape ``normalized_shape``, starting at 1; none with ``elementwise_affine=False``.
    ``eps=None`` (PyTorch's default) is ``finfo(x.dtype).eps`` of each input, as PyTorch's. Caches x_hat = x /
    sqrt(mean(x**2) + eps) as (M, D) (M positions, D the normalised size), 1/sqrt(mean(x**2) + eps) (M, 1) and
    the input shape.

    The arguments are PyTorch's, in its order (``normalized_shape, eps, elementwise_affine, device, dtype``);
    ``device`` only at None (move the layer with ``.to(device)``).
    """

    weight = PyTorchParam("gamma")  # PyTorch's name and layout

    def __init__(self, normalized_shape: Any, eps: float | None = None, elementwise_affine: bool = True,
                 device: Any = None, dtype: Any = "float32"):
        super().__init__()
        self.normalized_shape = normalized_shape_of(self, normalized_shape)
        if eps is not None and (not is_real(eps) or not eps > 0.0):
            raise ValueError(f"RMSNorm: eps must be a float > 0 or None (the input dtype's machine epsilon, "
                             f"PyTorch's default), got {eps!r}")
        self.eps = None if eps is None else float(eps)
        self.elementwise_affine = flag(elementwise_affine, self.name, "elementwise_affine")
        pytorch_defaults_only(self.name, {"device": DEVICE_DEFAULT}, {"device": device})
        self.dtype = _init.dtype_name(dtype, self.name)
        if self.elementwise_affine:
            self.params["gamma"] = _init.ones(self.normalized_shape, dtype=dtype)
        self._size = math.prod(self.normalized_shape)
        self._x_hat = self._inv_rms = self._shape = None

    def config(self) -> dict[str, Any]:
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "dtype": self.dtype}

    def __repr__(self) -> str:
        return shape_repr(self, {"eps": None, "elementwise_affine": True, "dtype": "float32"})

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_train(train)
        xp = self._check_float(x)
        self._check_like_params(x)
        check_last_axes(self, x)
        eps = float(xp.finfo(x.dtype).eps) if self.eps is None else self.eps
        x2 = xp.reshape(x, (-1, self._size))
        self._inv_rms = 1.0 / xp.sqrt(xp.mean(x2 * x2, axis=1, keepdims=True) + eps)
        self._x_hat = y = x2 * self._inv_rms
        if self.elementwise_affine:
            y = y * xp.reshape(self.params["gamma"], (-1,))
        self._shape = tuple(x.shape)
        return xp.reshape(y, x.shape)

    def backward(self, dy: Any) -> Any:
        """dx = inv_rms * (g - x_hat * mean(g * x_hat)), g = dy * gamma, the mean over the normalised axes;
        dgamma = sum(dy * x_hat) over the leading ones."""
        dy = untracked(dy)
        x_hat = self._need(self._x_hat)
        xp = self._check_grad(dy, self._shape)
        g = dy2 = xp.reshape(dy, x_hat.shape)
        if self.elementwise_affine:
            if not self._frozen:  # requires_grad_(False): no sum for dgamma, dx only
                self.grads["gamma"] = xp.reshape(xp.sum(dy2 * x_hat, axis=0), self.normalized_shape)
            g = dy2 * xp.reshape(self.params["gamma"], (-1,))
        dx = (g - x_hat * xp.mean(g * x_hat, axis=1, keepdims=True)) * self._inv_rms
        return xp.reshape(dx, self._shape)
