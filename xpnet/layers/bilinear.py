"""PyTorch's nn.Bilinear: y = x1^T A x2 + b for each output, a layer of two inputs."""

from __future__ import annotations

import math
from typing import Any

from .. import init as _init
from .._user import flag
from ..backend import untracked
from .base import DEVICE_DEFAULT, positive_int, pytorch_defaults_only
from .pytorch_params import PyTorchParam
from .two_inputs import _TwoInputs


class Bilinear(_TwoInputs):
    """x1: (N, *, in1_features), x2: (N, *, in2_features) -> y: (N, *, out_features),
    ``y[..., o] = sum_ij x1[..., i] W[o, i, j] x2[..., j] + b[o]``.

    params: W (out_features, in1_features, in2_features) and b (out_features,), PyTorch's ``weight`` and
    ``bias`` in its layout, both drawn as PyTorch's from U(-1/sqrt(in1_features), 1/sqrt(in1_features)).
    ``forward(x1, x2)``; ``backward(dy)`` returns ``(dx1, dx2)``. Caches x1, x2 as rows and x1 A (M, out, in2).
    """

    weight = PyTorchParam("W")  # PyTorch's name and layout
    bias = PyTorchParam("b")  # None when built without one

    def __init__(self, in1_features: int, in2_features: int, out_features: int, bias: bool = True,
                 device: Any = None, dtype: str = "float32") -> None:
        super().__init__()
        pytorch_defaults_only(self.name, {"device": DEVICE_DEFAULT}, {"device": device})
        self.in1_features = positive_int(self, "in1_features", in1_features)
        self.in2_features = positive_int(self, "in2_features", in2_features)
        self.out_features = positive_int(self, "out_features", out_features)
        self.has_bias, self.dtype = flag(bias, self.name, "bias"), _init.dtype_name(dtype, self.name)
        bound = 1.0 / math.sqrt(self.in1_features)
        self.params["W"] = _init.uniform((self.out_features, self.in1_features, self.in2_features), bound, dtype)
        if self.has_bias:
            self.params["b"] = _init.uniform((self.out_features,), bound, dtype)
        self._cache = None

    def config(self) -> dict[str, Any]:
        return {"in1_features": self.in1_features, "in2_features": self.in2_features,
                "out_features": self.out_features, "bias": self.has_bias, "dtype": self.dtype}

    def forward(self, x1: Any, x2: Any, train: bool = True) -> Any:  # type: ignore[override]
        self._check_pair_train(train)
        x1, x2 = untracked(x1), untracked(x2)
        xp = self._check_float(x1)
        self._check_like_params(x1, "x1", "x1")
        self._check_like_params(x2, "x2", "x2")
        lead = tuple(x1.shape[:-1])
        if x1.ndim < 1 or x1.shape[-1] != self.in1_features or tuple(x2.shape) != (*lead, self.in2_features):
            raise ValueError(f"{self.name}: expected x1 (..., {self.in1_features}) and x2 (..., {self.in2_features}) "
                             f"with the same leading axes, got {tuple(x1.shape)} and {tuple(x2.shape)}")
        a = xp.reshape(x1, (-1, self.in1_features))
        c = xp.reshape(x2, (-1, self.in2_features))
        a_w = xp.reshape(a @ self._flat_w(xp), (-1, self.out_features, self.in2_features))
        y = xp.sum(a_w * c[:, None, :], axis=-1)
        if self.has_bias:
            y = y + self.params["b"]
        self._cache = (a, c, a_w, lead)
        return xp.reshape(y, (*lead, self.out_features))

    def backward(self, dy: Any) -> Any:
        a, c, a_w, lead = self._need(self._cache)
        xp = self._check_grad(untracked(dy), (*lead, self.out_features))
        g = xp.reshape(dy, (-1, self.out_features))
        dc = xp.sum(g[:, :, None] * a_w, axis=1)
        g_c = xp.reshape(g[:, :, None] * c[:, None, :], (-1, self.out_features * self.in2_features))
        da = g_c @ self._flat_w(xp).T
        if not self._frozen:  # requires_grad_(False): dx1 and dx2 only
            dw = xp.reshape(a.T @ g_c, (self.in1_features, self.out_features, self.in2_features))
            self.grads["W"] = xp.permute_dims(dw, (1, 0, 2))
            if self.has_bias:
                self.grads["b"] = xp.sum(g, axis=0)
        return xp.reshape(da, (*lead, self.in1_features)), xp.reshape(dc, (*lead, self.in2_features))

    def _flat_w(self, xp: Any) -> Any:
        """W as (in1, out * in2): x1 rows times it give x1 A for every output at once."""
        return xp.reshape(xp.permute_dims(self.params["W"], (1, 0, 2)), (self.in1_features, -1))
