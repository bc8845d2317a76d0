"""torchvision's ResNets (``torchvision/models/resnet.py``): the same module tree, attribute names and
initialisation, so that ``torchvision.models.resnet18(weights=...).state_dict()`` loads with
``xn.load_torch_state_dict(model, state_dict)`` and ``xn.torch_state_dict(model)`` loads back into torchvision's.

x: (N, 3, H, W) -> scores (N, num_classes); any H, W of at least 32 pixels (the stem and the four
stages halve the image five times; the average pool takes what is left). ResNeXt and the wide ResNets are the
same ResNet with wider, grouped Bottleneck convolutions (``groups``, ``width_per_group``), as torchvision builds them.

One difference in the tree, none in the state dict: torchvision's block applies its one ``relu`` two
(Bottleneck: three) times; an xpnet layer keeps what its backward needs from its last forward only,
so the block has one ReLU per use, ``relu``, ``relu2`` (, ``relu3``), in the order they run.
"""

from __future__ import annotations

import math
from typing import Any

from .._user import is_bool
from ..backend import namespace
from ..init.pytorch import kaiming_std, kaiming_uniform_, uniform_, zeros_
from ..layers import AdaptiveAvgPool2d, BatchNorm, Conv2d, Linear, MaxPool2d, ReLU
from ..layers.base import positive_int
from .chain import StopsWhereNothingTrains, backward_chain
from .model import Model
from .sequential import Sequential

__all__ = ["fan_out_conv", "no_download", "BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50",
           "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2",
           "wide_resnet101_2"]


def fan_out_conv(in_planes: int, out_planes: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, dilation: int = 1) -> Conv2d:
    """A convolution without bias, drawn as torchvision's models draw theirs: kaiming_normal_(mode='fan_out',
    gain sqrt(2)), fan_out = out_planes * kernel_size**2 (PyTorch's, whatever the groups)."""
    shape = (out_planes, in_planes // groups, kernel_size, kernel_size)
    std = kaiming_std(shape, mode="fan_out", nonlinearity="relu")
    return Conv2d(in_planes, out_planes, kernel_size, stride=stride, padding=padding, dilation=dilation,
                  groups=groups, bias=False, init=std)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> Conv2d:
    return fan_out_conv(in_planes, out_planes, 3, stride, padding=dilation, groups=groups, dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> Conv2d:
    return fan_out_conv(in_planes, out_planes, 1, stride)


class BasicBlock(StopsWhereNothingTrains, Model):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + identity), identity = downsample(x) or x.
    x: (N, inplanes, H, W) -> (N, planes, H / stride, W / stride). ``groups``, ``base_width`` and ``dilation``
    are torchvision's, refused (as there) but at their defaults: a ResNeXt or dilated stage needs Bottleneck."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Any = None, groups: int = 1,
                 base_width: int = 64, dilation: int = 1):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock: groups=1 and base_width=64 only (as torchvision's), got groups={groups!r} "
                             f"and base_width={base_width!r}; ResNeXt and wide ResNets are built of Bottleneck")
        if dilation > 1:
            raise NotImplementedError(f"BasicBlock: dilation > 1 is not supported (as in torchvision), got "
                                      f"{dilation!r}; replace_stride_with_dilation needs Bottleneck")
        self.conv1, self.bn1, self.relu = conv3x3(inplanes, planes, stride), BatchNorm(planes), ReLU()
        self.conv2, self.bn2 = conv3x3(planes, planes), BatchNorm(planes)
        self.downsample, self.relu2 = downsample, ReLU()

    def last_bn(self) -> BatchNorm:
        return self.bn2

    def forward(self, x: Any, train: bool = True) -> Any:
        out = self.relu.forward(self.bn1.forward(self.conv1.forward(x, train), train), train)
        out = self.bn2.forward(self.conv2.forward(out, train), train)
        identity = x if self.downsample is None else self.downsample.forward(x, train)
        return self.relu2.forward(out + identity, train)

    def backward(self, dy: Any, input_grad: bool = True) -> Any:
        return _block_backward(self, [self.conv1, self.bn1, self.relu, self.conv2, self.bn2], self.relu2, dy,
                               input_grad)


class Bottleneck(StopsWhereNothingTrains, Model):
    """relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))) + identity), the stride on conv2 (ResNet v1.5,
    torchvision's). x: (N, inplanes, H, W) -> (N, 4 * planes, H / stride, W / stride). conv1 and conv2 have
    ``width = int(planes * base_width / 64) * groups`` channels, conv2 in ``groups`` groups with ``dilation``
    (ResNeXt: groups=32, base_width=4; wide ResNets: base_width=128)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Any = None, groups: int = 1,
                 base_width: int = 64, dilation: int = 1):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1, self.bn1 = conv1x1(inplanes, width), BatchNorm(width)
        self.conv2, self.bn2 = conv3x3(width, width, stride, groups, dilation), BatchNorm(width)
        self.conv3, self.bn3 = conv1x1(width, planes * self.expansion), BatchNorm(planes * self.expansion)
        self.relu, self.relu2, self.relu3 = ReLU(), ReLU(), ReLU()
        self.downsample = downsample

    def last_bn(self) -> BatchNorm:
        return self.bn3

    def forward(self, x: Any, train: bool = True) -> Any:
        out = self.relu.forward(self.bn1.forward(self.conv1.forward(x, train), train), train)
        out = self.relu2.forward(self.bn2.forward(self.conv2.forward(out, train), train), train)
        out = self.bn3.forward(self.conv3.forward(out, train), train)
        identity = x if self.downsample is None else self.downsample.forward(x, train)
        return self.relu3.forward(out + identity, train)

    def backward(self, dy: Any, input_grad: bool = True) -> Any:
        branch = [self.conv1, self.bn1, self.relu, self.conv2, self.bn2, self.relu2, self.conv3, self.bn3]
        return _block_backward(self, branch, self.relu3, dy, input_grad)


def _block_backward(block: Any, branch: list[Any], relu: ReLU, dy: Any, input_grad: bool) -> Any:
    """A block's backward: ``relu`` after the sum of ``branch`` (its layers in forward order) and the identity or
    downsample; ``input_grad=False``: the parameter gradients only (``backward_chain``), returns None."""
    d = relu.backward(dy)  # the sum's gradient, shared by both branches
    dx = backward_chain(branch, d, input_grad)
    shortcut = d if block.downsample is None else backward_chain([block.downsample], d, input_grad)
    return dx + shortcut if input_grad else None


_BLOCKS = {"BasicBlock": BasicBlock, "Bottleneck": Bottleneck}


class ResNet(StopsWhereNothingTrains, Model):
    """conv1 (7x7, stride 2), bn1, relu, maxpool (3x3, stride 2) -> layer1..layer4 (``xn.Sequential`` of
    blocks, the last three starting with stride 2) -> avgpool (to 1x1), flatten -> fc.
    x: (N, 3, H, W) -> (N, num_classes). ``block``: ``BasicBlock`` or ``Bottleneck`` (or its name),
    ``layers``: the blocks per stage. ``zero_init_residual``: each block's last BatchNorm starts with
    gamma = 0, so that every block starts as the identity (torchvision's option). ``groups`` and
    ``width_per_group``: each Bottleneck's 3x3 convolution in ``groups`` groups of ``width_per_group`` channels
    per 64 of torchvision's base width (ResNeXt 32x4d: 32 and 4; wide ResNets: 1 and 128).
    ``replace_stride_with_dilation``: three flags for layer2..layer4; a stage flagged keeps the resolution,
    its 3x3 convolutions dilated by the stride it drops, as torchvision's (segmentation backbones; Bottleneck
    only). torchvision's ``norm_layer`` is refused but for None: the blocks use ``xn.layers.BatchNorm``."""

    def __init__(self, block: Any, layers: Any, num_classes: int = 1000, zero_init_residual: bool = False,
                 groups: int = 1, width_per_group: int = 64, replace_stride_with_dilation: Any = None,
                 norm_layer: Any = None):
        super().__init__()
        block = _BLOCKS.get(block, block)
        if block not in _BLOCKS.values():
            raise ValueError(f"ResNet: block must be BasicBlock or Bottleneck (or its name), got {block!r}")
        if len(layers) != 4:
            raise ValueError(f"ResNet: layers must give the blocks of 4 stages, got {layers!r}")
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3 or not all(map(is_bool, replace_stride_with_dilation)):
            raise ValueError("ResNet: replace_stride_with_dilation must be None or 3 flags (True or False) for "
                             f"layer2, layer3 and layer4, got {replace_stride_with_dilation!r}")
        if norm_layer is not None:
            raise ValueError(f"ResNet: norm_layer must be None (the blocks use xn.layers.BatchNorm), got "
                             f"{norm_layer!r}; for torchvision's norm_layer=FrozenBatchNorm2d, build the model, "
                             "then xn.freeze_batch_norm(model)")
        self._block, self.inplanes, self.dilation = block, 64, 1
        self.groups = positive_int(self, "groups", groups)
        self.base_width = positive_int(self, "width_per_group", width_per_group)
        self.conv1 = fan_out_conv(3, self.inplanes, 7, stride=2, padding=3)
        self.bn1, self.relu, self.maxpool = BatchNorm(self.inplanes), ReLU(), MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=replace_stride_with_dilation[2])
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.fc = Linear(512 * block.expansion, num_classes)
        # nn.Linear's own init, which torchvision keeps: kaiming_uniform_(a=sqrt(5)), bias U(-1/sqrt(in), ..).
        kaiming_uniform_(self.fc.weight, a=math.sqrt(5))
        uniform_(self.fc.bias, -1 / math.sqrt(self.fc.in_features), 1 / math.sqrt(self.fc.in_features))
        if zero_init_residual:
            for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
                for b in stage.layers:
                    zeros_(b.last_bn().params["gamma"])

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> Sequential:
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                    BatchNorm(planes * block.expansion))
        first = block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation)
        self.inplanes = planes * block.expansion
        return Sequential(first, *(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                                         dilation=self.dilation) for _ in range(1, blocks)))

    def config(self) -> dict[str, Any]:
        config = super().config()
        # the classes a replaced head gives (model.fc = Linear(512, 10) to fine-tune), so that a file rebuilds it
        config = {**config, "block": self._block.__name__, "layers": list(config["layers"]),
                  "num_classes": getattr(self.fc, "out_features", config.get("num_classes", 1000))}
        if config.get("replace_stride_with_dilation") is not None:
            config["replace_stride_with_dilation"] = [bool(f) for f in config["replace_stride_with_dilation"]]
        return config

    def forward(self, x: Any, train: bool = True) -> Any:
        h = self.maxpool.forward(self.relu.forward(self.bn1.forward(self.conv1.forward(x, train), train), train),
                                 train)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            h = stage.forward(h, train)
        h = self.avgpool.forward(h, train)
        return self.fc.forward(namespace(h).reshape(h, (h.shape[0], h.shape[1])), train)

    def backward(self, dy: Any, input_grad: bool = True) -> Any:
        """dy (N, num_classes) -> dx (N, 3, H, W); ``input_grad=False``: no dx (None), and nothing below the
        earliest part that trains is backpropagated (``backward_chain``): a frozen backbone costs nothing."""
        def unflatten(d: Any) -> Any:
            return namespace(d).reshape(d, (d.shape[0], d.shape[1], 1, 1))

        parts = [self.conv1, self.bn1, self.relu, self.maxpool, self.layer1, self.layer2, self.layer3, self.layer4,
                 self.avgpool, unflatten, self.fc]
        return backward_chain(parts, dy, input_grad)


def no_download(name: str, weights: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` without torchvision's ``pretrained`` and ``progress``; its weights refused, saying what to do."""
    if weights is not None or kwargs.pop("pretrained", False):
        raise ValueError(f"xn.models.{name}: xpnet downloads no weights; build the model, then load torchvision's "
                         f"file (its download cache is ~/.cache/torch/hub/checkpoints/), no torch needed: model = "
                         f"xn.models.{name}(); xn.load_torch_state_dict(model, '{name}-<hash>.pth'); or, with "
                         f"torchvision, xn.load_torch_state_dict(model, torchvision.models.{name}(weights=...)"
                         ".state_dict())")
    kwargs.pop("progress", None)
    return kwargs


def _resnet(block: type, layers: list[int], weights: Any, kwargs: dict[str, Any], name: str, **fixed: int) -> ResNet:
    """ResNet(block, layers, **kwargs) with the arguments ``fixed`` by the architecture: given another value, as
    torchvision does, refused."""
    kwargs = no_download(name, weights, kwargs)
    for arg, value in fixed.items():
        if kwargs.setdefault(arg, value) != value:
            raise ValueError(f"xn.models.{name}: {arg} is {value} in {name}, got {arg}={kwargs[arg]!r}; for "
                             f"another, build xn.models.ResNet('{block.__name__}', {layers}, {arg}=...)")
    return ResNet(block, layers, **kwargs)


def resnet18(*, weights: Any = None, **kwargs: Any) -> ResNet:
    """ResNet-18: BasicBlock, [2, 2, 2, 2]; ``num_classes=1000``, ``zero_init_residual=False`` and the other
    arguments of :class:`ResNet` (``replace_stride_with_dilation`` with Bottleneck only)."""
    return _resnet(BasicBlock, [2, 2, 2, 2], weights, kwargs, "resnet18")


def resnet34(*, weights: Any = None, **kwargs: Any) -> ResNet:
    """ResNet-34: BasicBlock, [3, 4, 6, 3]; arguments as :func:`resnet18`."""
    return _resnet(BasicBlock, [3, 4, 6, 3], weights, kwargs, "resnet34")


def resnet50(*, weights: Any = None, **kwargs: Any) -> ResNet:
    """ResNet-50: Bottleneck, [3, 4, 6, 3]; arguments as :func:`resnet18`."""
    return _resnet(Bottleneck, [3, 4, 6, 3], weights, kwargs, "resnet50")


def resnet101(*, weights: Any = None, **kwargs: Any) -> ResNet:
    """ResNet-101: Bottleneck, [3, 4, 23, 3]; arguments as :func:`resnet18`."""
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, kwargs, "resnet101")


def resnet152(*, weights: Any = None, **kwargs: Any) -> ResNet:
    """ResNet-152: Bottleneck, [3, 8, 36, 3]; arguments as :func:`resnet18`."""
    return _resnet(Bottleneck, [3, 8, 36, 3], weights, kwargs, "resnet152")


def resnext50_32x4d(*, weights: Any = None, **kwargs: Any) -> ResNet:
    """ResNeXt-50 32x4d: Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4; arguments as
    :func:`resnet18`, those fixed here refused if given another value (as torchvision does)."""
    return _resnet(Bottleneck, [3, 4, 6, 3], weights, kwargs, "resnext50_32x4d", groups=32, width_per_group=4)


def resnext101_32x8d(*, weights: Any = None, **kwargs: Any) -> ResNet:
    """ResNeXt-101 32x8d: Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=8; arguments as
    :func:`resnext50_32x4d`."""
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, kwargs, "resnext101_32x8d", groups=32, width_per_group=8)


def resnext101_64x4d(*, weights: Any = None, **kwargs: Any) -> ResNet:
    """ResNeXt-101 64x4d: Bottleneck, [3, 4, 23, 3], groups=64, width_per_group=4; arguments as
    :func:`resnext50_32x4d`."""
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, kwargs, "resnext101_64x4d", groups=64, width_per_group=4)


def wide_resnet50_2(*, weights: Any = None, **kwargs: Any) -> ResNet:
    """Wide ResNet-50-2: ResNet-50 with Bottlenecks twice as wide inside (width_per_group=128: the last block
    2048-1024-2048 channels where ResNet-50's has 2048-512-2048); arguments as :func:`resnext50_32x4d`."""
    return _resnet(Bottleneck, [3, 4, 6, 3], weights, kwargs, "wide_resnet50_2", width_per_group=128)


def wide_resnet101_2(*, weights: Any = None, **kwargs: Any) -> ResNet:
    """Wide ResNet-101-2: ResNet-101 with Bottlenecks twice as wide inside (width_per_group=128); arguments as
    :func:`resnext50_32x4d`."""
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, kwargs, "wide_resnet101_2", width_per_group=128)
