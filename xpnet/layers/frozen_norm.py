"""BatchNorm with its statistics and affine fixed (torchvision's ``FrozenBatchNorm2d``), and the conversions of a
model's BatchNorm layers into it and back (timm's ``freeze_batch_norm_2d`` and ``unfreeze_batch_norm_2d``)."""

from __future__ import annotations

from typing import Any, Callable

from .. import init as _init
from .._user import is_real
from ..backend import dtype_name, namespace, untracked
from .base import Layer, positive_int
from .norm import BatchNorm, _bcast, check_channels
from .pytorch_params import PyTorchParam
from .submodules import replace_everywhere

__all__ = ["FrozenBatchNorm2d", "freeze_batch_norm", "unfreeze_batch_norm", "freeze_named"]


class FrozenBatchNorm2d(Layer):
    """y = x * scale + shift per channel, scale = weight / sqrt(running_var + eps), shift = bias - running_mean *
    scale: torchvision's ``FrozenBatchNorm2d``, the same in training and evaluation.

    x: (N, C, H, W), or (N, C) features as ``BatchNorm`` takes them -> y: x's shape. No params: weight, bias,
    running_mean and running_var (C,) are buffers (torchvision's names, so PyTorch's state dicts load by name;
    their ``num_batches_tracked`` is dropped, as there), saved and moved with the model, never trained or
    updated; ``layer.weight``, ``layer.running_mean``... read and assign them as torchvision's attributes.
    backward: dx = dy * scale. Caches scale (C,) and the input shape. ``dtype`` (keyword) as BatchNorm's.
    """

    weight = PyTorchParam("weight", store="buffers")
    bias = PyTorchParam("bias", store="buffers")
    running_mean = PyTorchParam("running_mean", store="buffers")
    running_var = PyTorchParam("running_var", store="buffers")

    def __init__(self, num_features: int, eps: float = 1e-5, *, dtype: Any = "float32"):
        super().__init__()
        self.num_features = positive_int(self, "num_features", num_features)
        if not is_real(eps) or not eps >= 0.0:  # torchvision's default was 0 before 0.9: allowed
            raise ValueError(f"FrozenBatchNorm2d: eps must be a float >= 0, got {eps!r}")
        self.eps = float(eps)
        self.dtype = _init.dtype_name(dtype, self.name)
        shape = (self.num_features,)
        self.buffers.update(weight=_init.ones(shape, dtype), bias=_init.zeros(shape, dtype),
                            running_mean=_init.zeros(shape, dtype), running_var=_init.ones(shape, dtype))
        self._scale = None
        self._shape = None

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "dtype": self.dtype}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_train(train)
        xp = self._check_float(x)
        self._check_like_params(x)
        check_channels(self, x)
        b = self.buffers
        scale = b["weight"] / xp.sqrt(b["running_var"] + self.eps)
        x3 = xp.reshape(x, (x.shape[0], self.num_features, -1))
        y = x3 * _bcast(xp, scale) + _bcast(xp, b["bias"] - b["running_mean"] * scale)
        self._scale, self._shape = scale, tuple(x.shape)
        return xp.reshape(y, x.shape)

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        scale = self._need(self._scale)
        xp = self._check_grad(dy, self._shape)
        return xp.reshape(xp.reshape(dy, (dy.shape[0], self.num_features, -1)) * _bcast(xp, scale), dy.shape)


def freeze_batch_norm(model: Layer) -> Layer:
    """Replace every ``BatchNorm`` inside ``model`` (a Sequential's layers, a model's attributes and its lists,
    tuples and dicts of layers, at any depth) by a :class:`FrozenBatchNorm2d` holding copies of its running
    statistics and gamma and beta (ones and zeros where ``affine=False``), its eps, dtype and device: timm's
    ``freeze_batch_norm_2d``, for every BatchNorm since xpnet's one class takes (N, C) and (N, C, H, W).
    Returns ``model``, or the new layer where ``model`` is a BatchNorm itself. A BatchNorm without running
    statistics (``track_running_stats=False``) has none to freeze: refused, naming it, before anything changes."""
    return _convert(model, BatchNorm, _frozen, "xn.freeze_batch_norm")


def unfreeze_batch_norm(model: Layer) -> Layer:
    """The inverse of :func:`freeze_batch_norm` (timm's ``unfreeze_batch_norm_2d``): every
    ``FrozenBatchNorm2d`` inside ``model`` becomes a ``BatchNorm(num_features, eps)`` whose gamma, beta and
    running statistics are copies of its buffers, with PyTorch's other defaults (momentum 0.1, as timm's)."""
    return _convert(model, FrozenBatchNorm2d, _unfrozen, "xn.unfreeze_batch_norm")


def freeze_named(model: Layer, names: list[str], who: str) -> Layer:
    """:func:`freeze_batch_norm` of the BatchNorm layers ``names`` (dotted names in ``model``) only."""
    return _convert(model, BatchNorm, _frozen, who, names)


def _copy(a: Any) -> Any:
    return namespace(a).asarray(a, copy=True)


def _frozen(bn: BatchNorm, where: str) -> FrozenBatchNorm2d:
    if not bn.track_running_stats:
        raise ValueError(f"{where} is BatchNorm(track_running_stats=False), which normalises with every batch's own "
                         "statistics and keeps none to freeze: build it with track_running_stats=True and train it, "
                         "or leave it out of the model")
    b = bn.buffers
    new = FrozenBatchNorm2d(bn.num_features, bn.eps, dtype=dtype_name(b["running_mean"]))
    xp = namespace(b["running_mean"])
    gamma, beta = (bn.params["gamma"], bn.params["beta"]) if bn.affine else (xp.ones_like(b["running_var"]),
                                                                             xp.zeros_like(b["running_mean"]))
    new.buffers.update(weight=_copy(gamma), bias=_copy(beta), running_mean=_copy(b["running_mean"]),
                       running_var=_copy(b["running_var"]))
    return new


def _unfrozen(frozen: FrozenBatchNorm2d, where: str) -> BatchNorm:
    b = frozen.buffers
    new = BatchNorm(frozen.num_features, frozen.eps, dtype=dtype_name(b["weight"]))
    new.params.update(gamma=_copy(b["weight"]), beta=_copy(b["bias"]))
    new.buffers.update(running_mean=_copy(b["running_mean"]), running_var=_copy(b["running_var"]))
    return new


def _convert(model: Layer, kind: type, make: Callable[[Any, str], Layer], who: str,
             names: list[str] | None = None) -> Layer:
    """Every node of ``model`` of class ``kind`` (of ``names`` only, where given) replaced by ``make(node, where)``
    wherever a node of the model holds it (by identity: a layer held twice stays one layer). The new layers keep
    the mode and the ``requires_grad`` of those they replace."""
    if not isinstance(model, Layer):
        raise TypeError(f"{who}: expected an xpnet model or layer, got {type(model).__name__}")
    modules = model.named_modules()
    chosen = modules if names is None else {name: modules[name] for name in names}
    new: dict[int, Layer] = {}
    for name, node in chosen.items():
        if isinstance(node, kind) and id(node) not in new:
            new[id(node)] = make(node, f"{who}: layer {name!r}" if name else f"{who}: the layer")
            new[id(node)].training, new[id(node)]._frozen = node.training, node._frozen
    if id(model) in new:
        return new[id(model)]
    replace_everywhere(modules.values(), new)
    return model
