"""torchvision's VGG (``torchvision/models/vgg.py``): the same module tree, names and init, so that
``torchvision.models.vgg16(weights=...).state_dict()`` loads with ``xn.load_torch_state_dict`` and
``xn.torch_state_dict(model)`` loads back into torchvision's.

x: (N, 3, H, W) -> scores (N, num_classes); any H, W of at least 32 pixels (the five max pools halve the image
five times; the average pool takes what is left to 7x7). ``features`` is ``make_layers(cfg, batch_norm)``
(keys ``features.0.weight``, with BatchNorm ``features.1.running_mean``), the classifier torchvision's
(``classifier.0``, ``classifier.3``, ``classifier.6`` the Linears). torchvision's ``ReLU(inplace=True)`` are plain
ReLUs here (xpnet writes into no layer's input), and its ``torch.flatten`` a reshape in forward (no state).
"""

from __future__ import annotations

import math
from typing import Any

from .._user import flag, is_int
from ..backend import namespace
from ..init.pytorch import constant_, kaiming_normal_, normal_, uniform_
from ..layers import AdaptiveAvgPool2d, BatchNorm, Conv2d, Dropout, Linear, MaxPool2d, ReLU
from ..layers.base import Layer, positive_int
from .chain import StopsWhereNothingTrains, backward_chain
from .model import Model
from .resnet import no_download
from .sequential import Sequential

__all__ = ["pytorch_conv2d", "pytorch_linear", "make_layers", "cfgs", "FeaturesPoolClassifier", "VGG", "vgg11",
           "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]

# torchvision's: the output channels of each 3x3 convolution, "M" a 2x2 max pool (VGG-11, 13, 16, 19)
cfgs: dict[str, list[Any]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _uniform(bound: float) -> Any:
    return lambda shape, rng: rng.uniform(-bound, bound, shape)


def pytorch_conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                   padding: int = 0) -> Conv2d:
    """``nn.Conv2d`` drawn as PyTorch draws it: weight (kaiming_uniform_(a=sqrt(5))) and bias from U(-b, b),
    b = 1 / sqrt(in_channels * kernel_size**2)."""
    bound = 1 / math.sqrt(in_channels * kernel_size ** 2)
    conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding, init=_uniform(bound))
    uniform_(conv.bias, -bound, bound)
    return conv


def pytorch_linear(in_features: int, out_features: int) -> Linear:
    """``nn.Linear`` drawn as PyTorch draws it: weight (kaiming_uniform_(a=sqrt(5))) and bias from U(-b, b),
    b = 1 / sqrt(in_features)."""
    bound = 1 / math.sqrt(in_features)
    linear = Linear(in_features, out_features, init=_uniform(bound))
    uniform_(linear.bias, -bound, bound)
    return linear


def make_layers(cfg: list[Any], batch_norm: bool = False) -> Sequential:
    """torchvision's: from 3 channels, each int in ``cfg`` a 3x3 convolution (padding 1) to that many channels,
    followed by ReLU (``batch_norm``: BatchNorm, ReLU), each "M" a 2x2 max pool (stride 2). The convolutions are
    drawn as PyTorch's nn.Conv2d (VGG's ``init_weights`` draws them again)."""
    if not isinstance(cfg, (list, tuple)) or not all(v == "M" or (is_int(v) and v >= 1) for v in cfg):
        raise ValueError(f"make_layers: cfg must list channel counts (ints >= 1) and 'M' (a 2x2 max pool), as "
                         f"xpnet.models.vgg.cfgs['A'], got {cfg!r}")
    batch_norm = flag(batch_norm, "make_layers", "batch_norm")
    layers: list[Layer] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(MaxPool2d(kernel_size=2, stride=2))
        else:
            conv = pytorch_conv2d(in_channels, int(v), kernel_size=3, padding=1)
            layers += [conv, BatchNorm(int(v)), ReLU()] if batch_norm else [conv, ReLU()]
            in_channels = int(v)
    return Sequential(*layers)


class FeaturesPoolClassifier(StopsWhereNothingTrains, Model):
    """torchvision's VGG and AlexNet: ``features`` -> ``avgpool`` -> flatten -> ``classifier`` (a Sequential whose
    last layer is the head), set by the subclass's ``__init__``. Caches the pooled shape for backward."""

    _pooled_shape: tuple[int, ...] | None = None

    def config(self) -> dict[str, Any]:
        config = super().config()
        head = self.classifier.layers[-1]  # a replaced head (classifier[6] = Linear(4096, 10)): what a file rebuilds
        return {**config, "num_classes": getattr(head, "out_features", config.get("num_classes", 1000))}

    def forward(self, x: Any, train: bool = True) -> Any:
        h = self.avgpool.forward(self.features.forward(x, train), train)
        self._pooled_shape = tuple(h.shape)
        return self.classifier.forward(namespace(h).reshape(h, (h.shape[0], -1)), train)

    def backward(self, dy: Any, input_grad: bool = True) -> Any:
        """dy (N, num_classes) -> dx; ``input_grad=False``: no dx (None), and nothing below the earliest part
        that trains is backpropagated (``backward_chain``)."""
        def unflatten(d: Any) -> Any:
            return namespace(d).reshape(d, self._pooled_shape)

        return backward_chain([self.features, self.avgpool, unflatten, self.classifier], dy, input_grad)


class VGG(FeaturesPoolClassifier):
    """features (``make_layers(cfg, batch_norm)``, 512 channels out) -> avgpool (adaptive, to 7x7), flatten
    -> classifier (Linear(512 * 7 * 7, 4096), ReLU, Dropout(dropout), Linear(4096, 4096), ReLU, Dropout(dropout),
    Linear(4096, num_classes)). x: (N, 3, H, W) -> (N, num_classes). ``init_weights``: torchvision's init,
    convolutions kaiming_normal_(mode='fan_out', nonlinearity='relu') with zero bias, BatchNorm 1 and 0, Linears
    N(0, 0.01) with zero bias; without it, PyTorch's own init of each layer (for weights loaded next).
    Caches the pooled shape."""

    def __init__(self, features: Any, num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5):
        super().__init__()
        if not isinstance(features, Layer):
            raise TypeError(f"VGG: features must be an xpnet layer or model (xpnet.models.vgg.make_layers(cfg, "
                            f"batch_norm)), got {type(features).__name__}")
        num_classes = positive_int(self, "num_classes", num_classes)
        init_weights = flag(init_weights, self.name, "init_weights")
        self.features = features
        self.avgpool = AdaptiveAvgPool2d((7, 7))
        # torchvision's Linears draw PyTorch's init, then init_weights N(0, 0.01): here the one that stays, once
        linear = (lambda n_in, n_out: Linear(n_in, n_out, init=0.01)) if init_weights else pytorch_linear
        self.classifier = Sequential(linear(512 * 7 * 7, 4096), ReLU(), Dropout(dropout), linear(4096, 4096), ReLU(),
                                     Dropout(dropout), linear(4096, num_classes))
        if init_weights:
            for m in features.named_modules().values():
                if isinstance(m, Conv2d):
                    kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        constant_(m.bias, 0)
                elif isinstance(m, BatchNorm):
                    constant_(m.weight, 1)
                    constant_(m.bias, 0)
                elif isinstance(m, Linear):
                    normal_(m.weight, 0, 0.01)
                    constant_(m.bias, 0)


def _vgg(cfg: str, batch_norm: bool, name: str, weights: Any, kwargs: dict[str, Any]) -> VGG:
    return VGG(make_layers(cfgs[cfg], batch_norm=batch_norm), **no_download(name, weights, kwargs))


def vgg11(*, weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-11 (cfg "A"); ``num_classes=1000``, ``init_weights=True``, ``dropout=0.5`` as :class:`VGG`."""
    return _vgg("A", False, "vgg11", weights, kwargs)


def vgg11_bn(*, weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-11 with BatchNorm after each convolution; arguments as :func:`vgg11`."""
    return _vgg("A", True, "vgg11_bn", weights, kwargs)


def vgg13(*, weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-13 (cfg "B"); arguments as :func:`vgg11`."""
    return _vgg("B", False, "vgg13", weights, kwargs)


def vgg13_bn(*, weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-13 with BatchNorm after each convolution; arguments as :func:`vgg11`."""
    return _vgg("B", True, "vgg13_bn", weights, kwargs)


def vgg16(*, weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-16 (cfg "D"); arguments as :func:`vgg11`."""
    return _vgg("D", False, "vgg16", weights, kwargs)


def vgg16_bn(*, weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-16 with BatchNorm after each convolution; arguments as :func:`vgg11`."""
    return _vgg("D", True, "vgg16_bn", weights, kwargs)


def vgg19(*, weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-19 (cfg "E"); arguments as :func:`vgg11`."""
    return _vgg("E", False, "vgg19", weights, kwargs)


def vgg19_bn(*, weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-19 with BatchNorm after each convolution; arguments as :func:`vgg11`."""
    return _vgg("E", True, "vgg19_bn", weights, kwargs)
