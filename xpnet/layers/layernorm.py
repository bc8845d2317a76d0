"""Layer normalisation over the last axes of each sample: PyTorch's nn.LayerNorm."""

from __future__ import annotations

import math
from typing import Any

from .. import init as _init
from .._user import flag, is_int, is_real
from ..backend import fast_path, namespace, untracked
from .base import DEVICE_DEFAULT, Layer, positive_int, pytorch_defaults_only
from .pytorch_params import PyTorchParam


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

    weight = PyTorchParam("gamma")  # PyTorch's name and layout
    bias = PyTorchParam("beta")  # None when built without one

    def __init__(self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device: Any = None, dtype: Any = "float32"):
        super().__init__()
        self.normalized_shape = normalized_shape_of(self, normalized_shape)
        if not is_real(eps) or not eps > 0.0:
            raise ValueError(f"LayerNorm: eps must be a float > 0, got {eps!r}")
        self.eps = float(eps)
        self.elementwise_affine = flag(elementwise_affine, self.name, "elementwise_affine")
        self.has_bias = flag(bias, self.name, "bias")
        pytorch_defaults_only(self.name, {"device": DEVICE_DEFAULT}, {"device": device})
        self.dtype = _init.dtype_name(dtype, self.name)
        if self.elementwise_affine:
            self.params["gamma"] = _init.ones(self.normalized_shape, dtype=dtype)
            if self.has_bias:
                self.params["beta"] = _init.zeros(self.normalized_shape, dtype=dtype)
        self._size = math.prod(self.normalized_shape)
        self._x_hat = None
        self._inv_std = None
        self._shape = None

    def config(self) -> dict[str, Any]:
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "bias": self.has_bias, "dtype": self.dtype}

    def __repr__(self) -> str:
        return shape_repr(self, {"eps": 1e-5, "elementwise_affine": True, "dtype": "float32"},
                          f", bias={self.has_bias!r}")

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_train(train)
        xp = self._check_float(x)
        self._check_like_params(x)
        check_last_axes(self, x)
        x2 = xp.reshape(x, (-1, self._size))
        forward = fast_path("layernorm_forward", xp, layernorm_forward)
        y, self._x_hat, self._inv_std = forward(x2, *self._affine(xp), self.eps)
        self._shape = tuple(x.shape)
        return xp.reshape(y, x.shape)

    def _affine(self, xp: Any) -> tuple[Any, Any]:
        """gamma and beta as (D,) vectors, None where the layer has none."""
        gamma, beta = (self.params.get(k) for k in ("gamma", "beta"))
        return tuple(None if p is None else xp.reshape(p, (-1,)) for p in (gamma, beta))

    def backward(self, dy: Any) -> Any:
        """dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat)), g = dy * gamma, means over the normalised
        axes; dgamma = sum(dy * x_hat) and dbeta = sum(dy) over the leading ones."""
        dy = untracked(dy)
        x_hat = self._need(self._x_hat)
        xp = self._check_grad(dy, self._shape)
        gamma, beta = self._affine(xp)
        backward = fast_path("layernorm_backward", xp, layernorm_backward)
        dx, dgamma, dbeta = backward(xp.reshape(dy, x_hat.shape), x_hat, self._inv_std, gamma, beta is not None,
                                     grads=not self._frozen)  # frozen: no column sums, the saving fine-tuning is for
        if dgamma is not None:
            self.grads["gamma"] = xp.reshape(dgamma, self.normalized_shape)
        if dbeta is not None:
            self.grads["beta"] = xp.reshape(dbeta, self.normalized_shape)
        return xp.reshape(dx, self._shape)


def normalized_shape_of(layer: Layer, value: Any) -> tuple[int, ...]:
    """PyTorch's ``normalized_shape`` (an int or a sequence of ints) as a tuple of positive ints."""
    shape = (value,) if is_int(value) else value
    if not isinstance(shape, (tuple, list)) or not shape:
        raise ValueError(f"{layer.name}: normalized_shape must be an int or a tuple of ints, got {value!r}")
    return tuple(positive_int(layer, "normalized_shape", d) for d in shape)


def check_last_axes(layer: Any, x: Any) -> None:
    """Raise unless the last axes of ``x`` are ``layer.normalized_shape``."""
    shape = layer.normalized_shape
    k = len(shape)
    if x.ndim < k or tuple(x.shape[x.ndim - k:]) != shape:
        raise ValueError(f"{layer.name}: expected input (..., {', '.join(map(str, shape))}), its last {k} "
                         f"ax{'is' if k == 1 else 'es'} normalized_shape, got shape {tuple(x.shape)}")


def shape_repr(layer: Any, defaults: dict[str, Any], tail: str = "") -> str:
    """The base's repr, but a shape (4, 4) stays (4, 4) (the base shows a pair of equal ints as one, a kernel
    size): ``normalized_shape``, then the attributes away from ``defaults``, then ``tail``."""
    shape = layer.normalized_shape[0] if len(layer.normalized_shape) == 1 else layer.normalized_shape
    shown = [f"normalized_shape={shape!r}"]
    shown += [f"{k}={getattr(layer, k)!r}" for k, default in defaults.items() if getattr(layer, k) != default]
    return f"{layer.name}({', '.join(shown)}{tail})"


def layernorm_forward(x2: Any, gamma: Any, beta: Any, eps: float) -> tuple[Any, Any, Any]:
    """(y, x_hat, inv_std) of each row of x2 (M, D): x_hat = (x - mean) * inv_std (M, D), inv_std =
    1 / sqrt(var + eps) (M, 1), y = x_hat * gamma + beta ((D,) each; either may be None), portable."""
    xp = namespace(x2)
    xc = x2 - xp.mean(x2, axis=1, keepdims=True)
    inv_std = 1.0 / xp.sqrt(xp.mean(xc * xc, axis=1, keepdims=True) + eps)
    x_hat = xc * inv_std
    y = x_hat
    if gamma is not None:
        y = y * gamma
        if beta is not None:
            y += beta
    return y, x_hat, inv_std


def layernorm_backward(dy2: Any, x_hat: Any, inv_std: Any, gamma: Any, bias: bool,
                       grads: bool = True) -> tuple[Any, Any, Any]:
    """(dx (M, D), dgamma (D,), dbeta (D,)) from dy2 (M, D) and what :func:`layernorm_forward` kept, portable:
    dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat)) over each row, g = dy * gamma; dgamma = sum(dy * x_hat)
    and dbeta = sum(dy) over the rows (None without gamma, or without a bias, or with ``grads=False``: dx only)."""
    xp = namespace(dy2)
    dgamma = dbeta = None
    g = dy2
    if gamma is not None:
        if grads:
            dgamma = xp.sum(dy2 * x_hat, axis=0)
            if bias:
                dbeta = xp.sum(dy2, axis=0)
        g = dy2 * gamma
    dx = g - xp.mean(g, axis=1, keepdims=True) - x_hat * xp.mean(g * x_hat, axis=1, keepdims=True)
    return dx * inv_std, dgamma, dbeta
