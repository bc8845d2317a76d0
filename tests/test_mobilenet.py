"""xn.models.mobilenet_v2 against torchvision's MobileNetV2: its state dict loaded strictly, the same outputs, input
and parameter gradients in float64, xpnet's weights loaded back into torchvision's; width_mult's channels."""

import numpy as np
import pytest
from vision_checks import check_equals_torch, randomise_batch_norm

import xpnet as xn

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
nn = torch.nn


# torchvision/models/mobilenetv2.py, _utils.py's _make_divisible and ops/misc.py's Conv2dNormActivation
# (pytorch/vision), transcribed with their defaults (BatchNorm2d, ReLU6, the standard inverted_residual_setting).
def _make_divisible(v, divisor, min_value=None):
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvNormActivation(nn.Sequential):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, groups=1):
        padding = (kernel_size - 1) // 2
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU6(inplace=True))


class TorchInvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(ConvNormActivation(inp, hidden_dim, kernel_size=1))
        layers.extend([ConvNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
                       nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)])
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TorchMobileNetV2(nn.Module):
    def __init__(self, num_classes=1000, width_mult=1.0, round_nearest=8, dropout=0.2):
        super().__init__()
        input_channel, last_channel = 32, 1280
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
                   [6, 320, 1, 1]]
        input_channel = _make_divisible(input_channel * width_mult, round_nearest)
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features = [ConvNormActivation(3, input_channel, stride=2)]
        for t, c, n, s in setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(TorchInvertedResidual(input_channel, output_channel, s if i == 0 else 1, t))
                input_channel = output_channel
        features.append(ConvNormActivation(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def _reference(seed=0, **kwargs):
    torch.manual_seed(seed)
    return randomise_batch_norm(torch, TorchMobileNetV2(**kwargs).double())


def test_mobilenet_v2_equals_torchvision_forward_backward_and_state_dict_both_ways():
    # no dropout, so that training-mode outputs can be compared; 64x64 so that the last stages' BatchNorm sees
    # 2x2 pixels: five stages at 1x1 normalise 2 values per channel each and amplify rounding beyond 1e-8
    rng = np.random.default_rng(0)
    check_equals_torch(torch, xn.models.mobilenet_v2(num_classes=10, width_mult=0.1, dropout=0.0).to(dtype="float64"),
                       _reference(num_classes=10, width_mult=0.1, dropout=0.0),
                       _reference(seed=1, num_classes=10, width_mult=0.1, dropout=0.0),
                       rng.standard_normal((2, 3, 64, 64)), np.array([3, 7]), transposed=("classifier.1.W",))


def test_width_mult_makes_torchvisions_channels():
    model = xn.models.mobilenet_v2(width_mult=0.35)
    expected = {k: tuple(v.shape) for k, v in TorchMobileNetV2(width_mult=0.35).state_dict().items()}
    assert {k: tuple(v.shape) for k, v in xn.torch_state_dict(model).items()} == expected
