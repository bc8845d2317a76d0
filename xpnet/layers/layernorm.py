"""Layer normalisation over the last axes of each sample: PyTorch's nn.LayerNorm."""

from __future__ import annotations

import math
from typing import Any

from .. import init as _init
from .._user import flag, is_int, is_real
from ..backend import untracked
from .base import DEVICE_DEFAULT, Layer, positive_int, pytorch_defaults_only


class LayerNorm(Layer):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, mean and (biased) variance over the last
    ``len(normalized_shape)`` axes, separately at every position of the leading ones.

    x: (..., *normalized_shape) -> y: the same shape; (N, T, D) with ``LayerNorm(D)`` normalises each
    of the N * T vectors of a sequence model. Training and evaluation are the same (no batch
    statistics, no buffers). params: gamma (PyTorch's ``weight``) and beta (its ``bias``), of shape
    ``normalized_shape``, starting at 1 and 0; no beta with ``bias=False``, neither with
    ``elementwise_affine=False``. The names are BatchNorm's: the book's weight decay spares them, as it
    spares BatchNorm's. Caches x_hat = (x - mean) / sqrt(var + eps) as (M, D) (M positions, D the
    normalised size), 1/sqrt(var + eps) (M, 1) and the input shape.

    The arguments are PyTorch's, in its order (``normalized_shape, eps, elementwise_affine, bias, device,
    dtype``); ``device`` only at None (move the layer with ``.to(device)``).
    """

    def __init__(self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device: Any = None, dtype: Any = "float32"):
        super().__init__()
        shape = (normalized_shape,) if is_int(normalized_shape) else normalized_shape
        if not isinstance(shape, (tuple, list)) or not shape:
            raise ValueError(f"LayerNorm: normalized_shape must be an int or a tuple of ints, got {normalized_shape!r}")
        self.normalized_shape = tuple(positive_int(self, "normalized_shape", d) for d in shape)
        if not is_real(eps) or not eps > 0.0:
            raise ValueError(f"LayerNorm: eps must be a float > 0, got {eps!r}")
        self.eps = float(eps)
        self.elementwise_affine = flag(elementwise_affine, self.name, "elementwise_affine")
        self.bias = flag(bias, self.name, "bias")
        pytorch_defaults_only(self.name, {"device": DEVICE_DEFAULT}, {"device": device})
        self.dtype = _init.dtype_name(dtype, self.name)
        if self.elementwise_affine:
            self.params["gamma"] = _init.ones(self.normalized_shape, dtype=dtype)
            if self.bias:
                self.params["beta"] = _init.zeros(self.normalized_shape, dtype=dtype)
        self._size = math.prod(self.normalized_shape)
        self._x_hat = None
        self._inv_std = None
        self._shape = None

    def config(self) -> dict[str, Any]:
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "bias": self.bias, "dtype": self.dtype}

    def __repr__(self) -> str:
        # The base's, but a shape (4, 4) stays (4, 4): the base shows a pair of equal ints as one (a kernel size).
        shape = self.normalized_shape[0] if len(self.normalized_shape) == 1 else self.normalized_shape
        defaults = {"eps": 1e-5, "elementwise_affine": True, "dtype": "float32"}
        shown = [f"normalized_shape={shape!r}"]
        shown += [f"{k}={getattr(self, k)!r}" for k, default in defaults.items() if getattr(self, k) != default]
        return f"{self.name}({', '.join(shown)}, bias={self.bias!r})"

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_train(train)
        xp = self._check_float(x)
        self._check_like_params(x)
        k = len(self.normalized_shape)
        if x.ndim < k or tuple(x.shape[x.ndim - k:]) != self.normalized_shape:
            raise ValueError(f"LayerNorm: expected input (..., {', '.join(map(str, self.normalized_shape))}), its "
                             f"last {k} ax{'is' if k == 1 else 'es'} normalized_shape, got shape {tuple(x.shape)}")
        x2 = xp.reshape(x, (-1, self._size))
        xc = x2 - xp.mean(x2, axis=1, keepdims=True)
        self._inv_std = 1.0 / xp.sqrt(xp.mean(xc * xc, axis=1, keepdims=True) + self.eps)
        self._x_hat = xc * self._inv_std
        self._shape = tuple(x.shape)
        y = self._x_hat
        if self.elementwise_affine:
            y = y * xp.reshape(self.params["gamma"], (-1,))
            if self.bias:
                y += xp.reshape(self.params["beta"], (-1,))
        return xp.reshape(y, x.shape)

    def backward(self, dy: Any) -> Any:
        """dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat)), g = dy * gamma, means over the normalised
        axes; dgamma = sum(dy * x_hat) and dbeta = sum(dy) over the leading ones."""
        dy = untracked(dy)
        x_hat = self._need(self._x_hat)
        xp = self._check_grad(dy, self._shape)
        dy2 = xp.reshape(dy, x_hat.shape)
        g = dy2
        if self.elementwise_affine:
            self.grads["gamma"] = xp.reshape(xp.sum(dy2 * x_hat, axis=0), self.normalized_shape)
            if self.bias:
                self.grads["beta"] = xp.reshape(xp.sum(dy2, axis=0), self.normalized_shape)
            g = dy2 * xp.reshape(self.params["gamma"], (-1,))
        dx = g - xp.mean(g, axis=1, keepdims=True) - x_hat * xp.mean(g * x_hat, axis=1, keepdims=True)
        return xp.reshape(dx * self._inv_std, self._shape)
