"""Normalisation over the positions of each channel of each sample: PyTorch's nn.InstanceNorm1d and 2d."""

from __future__ import annotations

import math
from typing import Any

from .. import init as _init
from .._user import flag, is_real
from ..backend import fast_path, untracked
from .base import positive_int
from .groupnorm import _ChannelGroupNorm
from .norm import batchnorm_running
from .pytorch_params import PyTorchParam


class _InstanceNorm(_ChannelGroupNorm):
    """GroupNorm with one group per channel; the subclasses say how many spatial axes follow the channels.
    With ``track_running_stats=True``: buffers running_mean (zeros) and running_var (ones), (C,), updated in
    training as PyTorch's: ``running = (1 - momentum) * running + momentum * batch``, batch the mean over the
    samples of each sample's per-channel mean and unbiased variance (``momentum=None``: weight 0, never updated,
    as PyTorch's); evaluation normalises with them (then caches x_hat (N, C, L) and 1/sqrt(running_var + eps))."""

    _spatial = 0
    _axes = ""
    running_mean = PyTorchParam("running_mean", store="buffers")  # None without track_running_stats, as PyTorch's
    running_var = PyTorchParam("running_var", store="buffers")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Any = 0.1, affine: bool = False,
                 track_running_stats: bool = False, device: Any = None, dtype: Any = "float32", *, bias: bool = True):
        super().__init__()
        self.num_features = positive_int(self, "num_features", num_features)
        if momentum is not None and (not is_real(momentum) or not 0.0 <= momentum <= 1.0):
            raise ValueError(f"{self.name}: momentum must be a float in [0, 1] or None, got {momentum!r}")
        self.momentum = None if momentum is None else float(momentum)
        self.track_running_stats = flag(track_running_stats, self.name, "track_running_stats")
        self._build(self.num_features, self.num_features, eps, affine, bias, device, dtype)
        if self.track_running_stats:
            self.buffers["running_mean"] = _init.zeros((self.num_features,), dtype=dtype)
            self.buffers["running_var"] = _init.ones((self.num_features,), dtype=dtype)
        self._running_inv_std = None

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum, "affine": self.affine,
                "track_running_stats": self.track_running_stats, "dtype": self.dtype, "bias": self.has_bias}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        train = self._check_train(train)
        xp = self._check_float(x)
        batched = x.ndim == self._spatial + 2
        c = self.num_features
        if x.ndim not in (self._spatial + 1, self._spatial + 2) or x.shape[int(batched)] != c:
            raise ValueError(f"{self.name}: expected input (N, {c}, {self._axes}) or ({c}, {self._axes}), got shape "
                             f"{tuple(x.shape)}")
        n = x.shape[0] if batched else 1
        self._check_samples(x, n)
        self._running_inv_std = None
        if self.track_running_stats and not train:
            return self._normalise_running(x, xp, n)
        if math.prod(x.shape[x.ndim - self._spatial:]) < 2:
            raise ValueError(f"{self.name}: expected more than 1 spatial element per channel (as PyTorch), got input "
                             f"shape {tuple(x.shape)}")
        if self.track_running_stats:
            self._update_running(xp.reshape(x, (n, c, -1)), xp)
        return self._normalise(x, xp, n)

    def _update_running(self, x3: Any, xp: Any) -> None:
        """The running statistics moved towards this batch's (x3: (N, C, L)), in place as BatchNorm's."""
        m = 0.0 if self.momentum is None else self.momentum
        mean = xp.mean(xp.mean(x3, axis=2), axis=0)
        var = xp.mean(xp.var(x3, axis=2, correction=1), axis=0)
        running = fast_path("batchnorm_running", xp, batchnorm_running)
        self.buffers["running_mean"], self.buffers["running_var"] = running(
            self.buffers["running_mean"], self.buffers["running_var"], mean, var, 1.0 - m, m, m)

    def _normalise_running(self, x: Any, xp: Any, n: int) -> Any:
        """y of x normalised with the running statistics (evaluation)."""
        self._check_like_params(x)
        inv_std = 1.0 / xp.sqrt(self.buffers["running_var"] + self.eps)
        x3 = xp.reshape(x, (n, self._channels, -1))
        self._x_hat = (x3 - xp.reshape(self.buffers["running_mean"], (-1, 1))) * xp.reshape(inv_std, (-1, 1))
        self._running_inv_std, self._shape, self._n = inv_std, tuple(x.shape), n
        y = self._x_hat
        if self.affine:
            y = y * xp.reshape(self.params["gamma"], (-1, 1))
            if self.has_bias:
                y = y + xp.reshape(self.params["beta"], (-1, 1))
        return xp.reshape(y, x.shape)

    def backward(self, dy: Any) -> Any:
        """GroupNorm's backward, or after an evaluation forward with the running statistics (constants):
        dx = dy * gamma / sqrt(running_var + eps), dgamma = sum(dy * x_hat), dbeta = sum(dy)."""
        if self._running_inv_std is None:
            return super().backward(dy)
        dy = untracked(dy)
        xp = self._check_grad(dy, self._shape)
        dy3 = xp.reshape(dy, self._x_hat.shape)
        scale = self._running_inv_std
        if self.affine:
            if not self._frozen:  # requires_grad_(False): dx only
                self.grads["gamma"] = xp.sum(dy3 * self._x_hat, axis=(0, 2))
                if self.has_bias:
                    self.grads["beta"] = xp.sum(dy3, axis=(0, 2))
            scale = scale * self.params["gamma"]
        return xp.reshape(dy3 * xp.reshape(scale, (-1, 1)), self._shape)


class InstanceNorm1d(_InstanceNorm):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, mean and (biased) variance over the L positions of each
    channel of each sample (GroupNorm with num_features groups).

    x: (N, C, L) or (C, L) -> y: the same shape. Training and evaluation are the same unless
    ``track_running_stats=True`` (see below). params, only with ``affine=True`` (PyTorch's default is False):
    gamma (PyTorch's ``weight``), beta (its ``bias``), (C,), starting at 1 and 0; no beta with ``bias=False``.
    Caches x_hat (N*C, L), 1/sqrt(var + eps) (N*C, 1), N and the input shape.

    The arguments are PyTorch's, in its order (``num_features, eps, momentum, affine, track_running_stats,
    device, dtype``, ``bias`` by keyword); ``momentum`` is used only with ``track_running_stats=True``, as
    PyTorch's; ``device`` only at None (move the layer with ``.to(device)``). ``track_running_stats=True``:
    buffers running_mean, running_var (C,), updated in training and used in evaluation as PyTorch's (see
    ``_InstanceNorm``); ``xn.load_torch_state_dict`` takes them (and drops ``num_batches_tracked``, unused).
    """

    _spatial, _axes = 1, "L"


class InstanceNorm2d(_InstanceNorm):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, mean and (biased) variance over the H * W positions of
    each channel of each image (GroupNorm with num_features groups): style transfer's normalisation.

    x: (N, C, H, W) or (C, H, W) -> y: the same shape. Training and evaluation are the same unless
    ``track_running_stats=True``. params, only with ``affine=True`` (PyTorch's default is False): gamma
    (PyTorch's ``weight``), beta (its ``bias``), (C,), starting at 1 and 0; no beta with ``bias=False``.
    Caches x_hat (N*C, H*W), 1/sqrt(var + eps) (N*C, 1), N and the input shape.

    The arguments are PyTorch's, as InstanceNorm1d's, ``track_running_stats=True`` too.
    """

    _spatial, _axes = 2, "H, W"
