"""torchvision's MobileNetV2 (``torchvision/models/mobilenetv2.py``): the same module tree, names and init,
so that ``torchvision.models.mobilenet_v2(weights=...).state_dict()`` loads with ``xn.load_torch_state_dict``.

x: (N, 3, H, W) -> scores (N, num_classes). ``features.0`` and each ``ConvNormActivation`` are
``xn.Sequential(Conv2d, BatchNorm, ReLU6)`` (keys ``features.0.0.weight``, ``features.0.1.running_mean``);
each block's ``conv`` is an ``xn.Sequential`` too (``features.2.conv.1.0.weight``, the depthwise one).
torchvision pools with ``F.adaptive_avg_pool2d`` and ``torch.flatten``; here that is the layer ``pool``
(``GlobalAvgPool``, no state).
"""

from __future__ import annotations

from typing import Any

from ..layers import BatchNorm, Dropout, GlobalAvgPool, Linear, ReLU6
from .chain import StopsWhereNothingTrains, backward_chain
from .model import Model
from .resnet import fan_out_conv, no_download
from .sequential import Sequential

__all__ = ["InvertedResidual", "MobileNetV2", "mobilenet_v2"]

# t (expansion), c (channels), n (blocks), s (the first block's stride)
_SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]


def _make_divisible(v: float, divisor: int) -> int:
    """``v`` rounded to a multiple of ``divisor``, not below ``divisor`` nor below 90 % of ``v`` (torchvision's)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def conv_bn_relu6(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                  groups: int = 1) -> Sequential:
    """torchvision's ``Conv2dNormActivation(..., activation_layer=nn.ReLU6)``: conv (no bias, padding
    (kernel_size - 1) // 2), BatchNorm, ReLU6."""
    conv = fan_out_conv(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups)
    return Sequential(conv, BatchNorm(out_channels), ReLU6())


class InvertedResidual(StopsWhereNothingTrains, Model):
    """conv: [1x1 expansion to inp * expand_ratio channels (none where it is 1)], 3x3 depthwise (stride),
    1x1 projection, BatchNorm; x + conv(x) where stride is 1 and inp == oup.
    x: (N, inp, H, W) -> (N, oup, H / stride, W / stride)."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride!r}")
        hidden_dim = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers = [conv_bn_relu6(inp, hidden_dim, kernel_size=1)] if expand_ratio != 1 else []
        self.conv = Sequential(*layers, conv_bn_relu6(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
                               fan_out_conv(hidden_dim, oup, 1), BatchNorm(oup))

    def forward(self, x: Any, train: bool = True) -> Any:
        y = self.conv.forward(x, train)
        return x + y if self.use_res_connect else y

    def backward(self, dy: Any, input_grad: bool = True) -> Any:
        """``input_grad=False``: conv's parameter gradients only (the skip has none), returns None."""
        dx = self.conv.backward(dy, input_grad)
        if not input_grad:
            return None
        return dx + dy if self.use_res_connect else dx


class MobileNetV2(StopsWhereNothingTrains, Model):
    """features (conv_bn_relu6 stride 2, 17 InvertedResidual blocks, a 1x1 conv_bn_relu6 to
    ``last_channel``) -> pool (global average) -> classifier (Dropout(dropout), Linear).
    x: (N, 3, H, W) -> (N, num_classes); channels scaled by ``width_mult`` and rounded to multiples of
    ``round_nearest``, as torchvision's."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, *, round_nearest: int = 8,
                 dropout: float = 0.2):
        super().__init__()
        input_channel = _make_divisible(32 * width_mult, round_nearest)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features = [conv_bn_relu6(3, input_channel, stride=2)]
        for t, c, n, s in _SETTING:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, expand_ratio=t))
                input_channel = output_channel
        features.append(conv_bn_relu6(input_channel, self.last_channel, kernel_size=1))
        self.features = Sequential(*features)
        self.pool = GlobalAvgPool()
        # torchvision's Linear init: normal_(0, 0.01), zeros_ bias
        self.classifier = Sequential(Dropout(dropout), Linear(self.last_channel, num_classes, init=0.01))

    def config(self) -> dict[str, Any]:
        config = super().config()
        head = self.classifier.layers[-1]  # a replaced head (classifier[1] = Linear(1280, 10)) is what a file rebuilds
        return {**config, "num_classes": getattr(head, "out_features", config.get("num_classes", 1000))}

    def forward(self, x: Any, train: bool = True) -> Any:
        return self.classifier.forward(self.pool.forward(self.features.forward(x, train), train), train)

    def backward(self, dy: Any, input_grad: bool = True) -> Any:
        """dy (N, num_classes) -> dx; ``input_grad=False``: no dx (None), and nothing below the earliest part
        that trains is backpropagated (``backward_chain``)."""
        return backward_chain([self.features, self.pool, self.classifier], dy, input_grad)


def mobilenet_v2(*, weights: Any = None, **kwargs: Any) -> MobileNetV2:
    """MobileNetV2; ``num_classes=1000``, ``width_mult=1.0``, ``round_nearest=8``, ``dropout=0.2``."""
    return MobileNetV2(**no_download("mobilenet_v2", weights, kwargs))
