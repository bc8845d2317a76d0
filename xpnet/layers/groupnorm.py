"""Normalisation over groups of channels of each sample: PyTorch's nn.GroupNorm (InstanceNorm's base too)."""

from __future__ import annotations

from typing import Any

from .. import init as _init
from .._user import flag, is_real
from ..backend import fast_path, untracked
from .base import DEVICE_DEFAULT, Layer, positive_int, pytorch_defaults_only
from .layernorm import layernorm_backward, layernorm_forward
from .pytorch_params import PyTorchParam


class _ChannelGroupNorm(Layer):
    """Each sample's channels in ``groups`` groups, each group normalised over its channels and positions
    (LayerNorm's rows of (N*G, C/G*L), its Numba kernels on NumPy), then gamma and beta per channel.
    Caches x_hat (N*G, C/G*L), 1/sqrt(var + eps) (N*G, 1), N and the input shape."""

    weight = PyTorchParam("gamma")  # PyTorch's name and layout
    bias = PyTorchParam("beta")  # None when built without one

    def _build(self, channels: int, groups: int, eps: Any, affine: Any, bias: Any, device: Any, dtype: Any) -> None:
        if not is_real(eps) or not eps > 0.0:
            raise ValueError(f"{self.name}: eps must be a float > 0, got {eps!r}")
        self.eps = float(eps)
        self.affine, self.has_bias = flag(affine, self.name, "affine"), flag(bias, self.name, "bias")
        pytorch_defaults_only(self.name, {"device": DEVICE_DEFAULT}, {"device": device})
        self.dtype = _init.dtype_name(dtype, self.name)
        self._channels, self._groups = channels, groups
        if self.affine:
            self.params["gamma"] = _init.ones((channels,), dtype=dtype)
            if self.has_bias:
                self.params["beta"] = _init.zeros((channels,), dtype=dtype)
        self._x_hat = self._inv_std = self._shape = self._n = None

    def _check_samples(self, x: Any, n: int) -> None:
        """Raise for an input of no samples: the group rows' reshapes fail on it inside the array library (PyTorch
        returns it empty, and its running statistics turn NaN)."""
        if n == 0:
            raise ValueError(f"{self.name}: the input {tuple(x.shape)} holds no samples (N = 0); xpnet's "
                             f"{self.name} needs N >= 1")

    def _normalise(self, x: Any, xp: Any, n: int) -> Any:
        """y of x (N, C, ...), or (C, ...) with n = 1, after the layer's own checks of its shape."""
        self._check_like_params(x)
        forward = fast_path("layernorm_forward", xp, layernorm_forward)
        y, self._x_hat, self._inv_std = forward(xp.reshape(x, (n * self._groups, -1)), None, None, self.eps)
        y = xp.reshape(y, (n, self._channels, -1))
        if self.affine:
            y = y * xp.reshape(self.params["gamma"], (-1, 1))
            if self.has_bias:
                y = y + xp.reshape(self.params["beta"], (-1, 1))
        self._shape, self._n = tuple(x.shape), n
        return xp.reshape(y, x.shape)

    def backward(self, dy: Any) -> Any:
        """LayerNorm's dx over each group's row of g = dy * gamma; dgamma = sum(dy * x_hat) and dbeta = sum(dy)
        over the samples and positions."""
        dy = untracked(dy)
        x_hat = self._need(self._x_hat)
        xp = self._check_grad(dy, self._shape)
        g = dy3 = xp.reshape(dy, (self._n, self._channels, -1))
        if self.affine:
            if not self._frozen:  # requires_grad_(False): no sums for dgamma and dbeta, dx only
                self.grads["gamma"] = xp.sum(dy3 * xp.reshape(x_hat, dy3.shape), axis=(0, 2))
                if self.has_bias:
                    self.grads["beta"] = xp.sum(dy3, axis=(0, 2))
            g = dy3 * xp.reshape(self.params["gamma"], (-1, 1))
        backward = fast_path("layernorm_backward", xp, layernorm_backward)
        dx = backward(xp.reshape(g, x_hat.shape), x_hat, self._inv_std, None, False)[0]
        return xp.reshape(dx, self._shape)


class GroupNorm(_ChannelGroupNorm):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, mean and (biased) variance over each group of
    ``num_channels // num_groups`` channels and all positions of one sample; gamma and beta per channel.

    x: (N, C, *) -> y: the same shape ((N, C), (N, C, L), (N, C, H, W)...). Training and evaluation are the
    same (no batch statistics, no buffers). params: gamma (PyTorch's ``weight``), beta (its ``bias``), (C,),
    starting at 1 and 0; no beta with ``bias=False``, neither with ``affine=False``. Caches x_hat
    (N*G, C/G*L), 1/sqrt(var + eps) (N*G, 1) and the input shape.

    The arguments are PyTorch's, in its order (``num_groups, num_channels, eps, affine, device, dtype``,
    ``bias`` by keyword); ``device`` only at None (move the layer with ``.to(device)``).
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device: Any = None, dtype: Any = "float32", *, bias: bool = True):
        super().__init__()
        self.num_groups = positive_int(self, "num_groups", num_groups)
        self.num_channels = positive_int(self, "num_channels", num_channels)
        if self.num_channels % self.num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups}), as PyTorch's")
        self._build(self.num_channels, self.num_groups, eps, affine, bias, device, dtype)

    def config(self) -> dict[str, Any]:
        return {"num_groups": self.num_groups, "num_channels": self.num_channels, "eps": self.eps,
                "affine": self.affine, "dtype": self.dtype, "bias": self.has_bias}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_train(train)
        xp = self._check_float(x)
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: expected input (N, {self.num_channels}, ...), its channels on axis 1, got "
                             f"shape {tuple(x.shape)}")
        self._check_samples(x, x.shape[0])
        return self._normalise(x, xp, x.shape[0])
