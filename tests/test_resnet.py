"""xn.models.resnet18/34/50 against torchvision's ResNets: the same state-dict keys and shapes, its trained
weights loaded strictly, the same outputs, input gradient and parameter gradients in float64, and xpnet's weights
loaded back into torchvision's; groups, width_per_group and dilated stages likewise on a small ResNet, and the
ResNeXt and wide ResNet builders' state-dict keys, shapes and torchvision's published parameter counts."""

import math

import numpy as np
import pytest
from vision_checks import check_equals_torch, randomise_batch_norm

import xpnet as xn

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
nn = torch.nn


# torchvision/models/resnet.py (pytorch/vision, as in torchvision 0.20), transcribed: conv3x3, conv1x1, BasicBlock,
# Bottleneck and ResNet as torchvision writes them, without norm_layer (its default, BatchNorm2d).
def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups, bias=False,
                     dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class TorchBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class TorchBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class TorchResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, groups=1, width_per_group=64,
                 replace_stride_with_dilation=None):
        super().__init__()
        self.inplanes = 64
        self.dilation = 1
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError("replace_stride_with_dilation should be None "
                             f"or a 3-element tuple, got {replace_stride_with_dilation}")
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, TorchBottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, TorchBasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                         dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


ARCHS = {"resnet18": (TorchBasicBlock, [2, 2, 2, 2]), "resnet34": (TorchBasicBlock, [3, 4, 6, 3]),
         "resnet50": (TorchBottleneck, [3, 4, 6, 3])}
# torchvision's builders of ResNeXt and the wide ResNets: the block, the layers, the arguments each fixes, and the
# num_params its weights' metadata publishes (Wide_ResNet50_2_Weights.IMAGENET1K_V1.meta["num_params"]...)
WIDER = {"resnext50_32x4d": (TorchBottleneck, [3, 4, 6, 3], {"groups": 32, "width_per_group": 4}, 25028904),
         "resnext101_32x8d": (TorchBottleneck, [3, 4, 23, 3], {"groups": 32, "width_per_group": 8}, 88791336),
         "resnext101_64x4d": (TorchBottleneck, [3, 4, 23, 3], {"groups": 64, "width_per_group": 4}, 83455272),
         "wide_resnet50_2": (TorchBottleneck, [3, 4, 6, 3], {"width_per_group": 64 * 2}, 68883240),
         "wide_resnet101_2": (TorchBottleneck, [3, 4, 23, 3], {"width_per_group": 64 * 2}, 126886696)}


def _reference(block, layers, seed=0, **kwargs):
    """torchvision's model in float64 with random BatchNorm parameters and running statistics (as trained)."""
    torch.manual_seed(seed)
    return randomise_batch_norm(torch, TorchResNet(block, layers, **kwargs).double())


def test_resnet18_equals_torchvision_forward_backward_and_state_dict_both_ways():
    rng = np.random.default_rng(0)
    check_equals_torch(torch, xn.models.resnet18(num_classes=10).to(dtype="float64"),
                       _reference(*ARCHS["resnet18"], num_classes=10),
                       _reference(*ARCHS["resnet18"], seed=1, num_classes=10),
                       rng.standard_normal((2, 3, 32, 32)), np.array([3, 7]))


@pytest.mark.parametrize("arch", ["resnet34", "resnet50"])
def test_deeper_resnets_have_torchvisions_state_dict(arch):
    ref = _reference(*ARCHS[arch]).eval()
    model = getattr(xn.models, arch)()
    expected = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in xn.torch_state_dict(model).items()} == expected
    if arch == "resnet50":  # Bottleneck runs as torchvision's
        xn.load_torch_state_dict(model.to(dtype="float64"), ref.state_dict(), strict=True)
        x = np.random.default_rng(1).standard_normal((1, 3, 32, 32))
        np.testing.assert_allclose(model.forward(x, train=False), ref(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-9, atol=1e-12)


def test_resnext_with_dilated_stages_equals_torchvision_forward_backward_and_state_dict_both_ways():
    """groups, width_per_group and replace_stride_with_dilation: layer3 and layer4 keep layer2's 4x4 pixels; a
    stage's first block takes the dilation before it (layer4's: 2), the others the stage's own (layer4's: 4)."""
    config = {"num_classes": 10, "groups": 4, "width_per_group": 8, "replace_stride_with_dilation": [False, True, True]}
    model = xn.models.ResNet("Bottleneck", [1, 1, 1, 2], **config).to(dtype="float64")
    assert [model.named_modules()[f"layer4.{i}.conv2"].dilation for i in (0, 1)] == [(2, 2), (4, 4)]
    rng = np.random.default_rng(0)
    check_equals_torch(torch, model, _reference(TorchBottleneck, [1, 1, 1, 2], **config),
                       _reference(TorchBottleneck, [1, 1, 1, 2], seed=1, **config),
                       rng.standard_normal((1, 3, 32, 32)), np.array([3]))


@pytest.mark.parametrize("arch", list(WIDER))
def test_resnext_and_wide_resnets_have_torchvisions_state_dict_and_parameter_count(arch):
    block, layers, fixed, num_params = WIDER[arch]
    with torch.device("meta"):  # shapes only, nothing allocated or drawn
        ref = TorchResNet(block, layers, **fixed)
    with xn.init.skip_init():
        model = getattr(xn.models, arch)()
    expected = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in xn.torch_state_dict(model).items()} == expected
    assert sum(math.prod(w.shape) for w in model.named_params().values()) == num_params
