"""Normalisation over the positions of each channel of each sample: PyTorch's nn.InstanceNorm1d and 2d."""

from __future__ import annotations

import math
from typing import Any

from .._user import flag, is_real
from ..backend import untracked
from .base import positive_int
from .groupnorm import _ChannelGroupNorm


class _InstanceNorm(_ChannelGroupNorm):
    """GroupNorm with one group per channel; the subclasses say how many spatial axes follow the channels."""

    _spatial = 0
    _axes = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Any = 0.1, affine: bool = False,
                 track_running_stats: bool = False, device: Any = None, dtype: Any = "float32", *, bias: bool = True):
        super().__init__()
        self.num_features = positive_int(self, "num_features", num_features)
        if momentum is not None and (not is_real(momentum) or not 0.0 <= momentum <= 1.0):
            raise ValueError(f"{self.name}: momentum must be a float in [0, 1] or None, got {momentum!r}")
        self.momentum = None if momentum is None else float(momentum)
        if flag(track_running_stats, self.name, "track_running_stats"):
            raise ValueError(f"{self.name}: track_running_stats=True is not supported: xpnet normalises each "
                             "sample with its own statistics in training and evaluation alike, PyTorch's default "
                             "(track_running_stats=False); leave it out")
        self.track_running_stats = False
        self._build(self.num_features, self.num_features, eps, affine, bias, device, dtype)

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum, "affine": self.affine,
                "dtype": self.dtype, "bias": self.has_bias}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_train(train)
        xp = self._check_float(x)
        batched = x.ndim == self._spatial + 2
        c = self.num_features
        if x.ndim not in (self._spatial + 1, self._spatial + 2) or x.shape[int(batched)] != c:
            raise ValueError(f"{self.name}: expected input (N, {c}, {self._axes}) or ({c}, {self._axes}), got shape "
                             f"{tuple(x.shape)}")
        if math.prod(x.shape[x.ndim - self._spatial:]) < 2:
            raise ValueError(f"{self.name}: expected more than 1 spatial element per channel (as PyTorch), got input "
                             f"shape {tuple(x.shape)}")
        return self._normalise(x, xp, x.shape[0] if batched else 1)


class InstanceNorm1d(_InstanceNorm):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, mean and (biased) variance over the L positions of each
    channel of each sample (GroupNorm with num_features groups).

    x: (N, C, L) or (C, L) -> y: the same shape. Training and evaluation are the same. params, only with
    ``affine=True`` (PyTorch's default is False): gamma (PyTorch's ``weight``), beta (its ``bias``), (C,),
    starting at 1 and 0; no beta with ``bias=False``. Caches x_hat (N*C, L), 1/sqrt(var + eps) (N*C, 1), N and
    the input shape.

    The arguments are PyTorch's, in its order (``num_features, eps, momentum, affine, track_running_stats,
    device, dtype``, ``bias`` by keyword); ``momentum`` is unused, as PyTorch's without running statistics;
    ``track_running_stats=True`` is refused; ``device`` only at None (move the layer with ``.to(device)``).
    """

    _spatial, _axes = 1, "L"


class InstanceNorm2d(_InstanceNorm):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, mean and (biased) variance over the H * W positions of
    each channel of each image (GroupNorm with num_features groups): style transfer's normalisation.

    x: (N, C, H, W) or (C, H, W) -> y: the same shape. Training and evaluation are the same. params, only with
    ``affine=True`` (PyTorch's default is False): gamma (PyTorch's ``weight``), beta (its ``bias``), (C,),
    starting at 1 and 0; no beta with ``bias=False``. Caches x_hat (N*C, H*W), 1/sqrt(var + eps) (N*C, 1), N and
    the input shape.

    The arguments are PyTorch's, as InstanceNorm1d's.
    """

    _spatial, _axes = 2, "H, W"
