"""xn.models' VGGs and AlexNet against torchvision's: small ones with torchvision's state dict loaded strictly, the
same outputs, input and parameter gradients in float64, xpnet's weights loaded back into torchvision's; each
full-size builder's state-dict keys and shapes, classifier and torchvision's published parameter counts."""

import math

import numpy as np
import pytest
from vision_checks import check_equals_torch, randomise_batch_norm

import xpnet as xn
from xpnet.layers import Linear
from xpnet.models.vgg import make_layers as xn_make_layers

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
nn = torch.nn


# torchvision/models/vgg.py and alexnet.py (pytorch/vision, as in torchvision 0.29), transcribed: VGG, make_layers,
# cfgs and AlexNet as torchvision writes them; VGG's init loop as the method _initialize_weights (older torchvision's
# form), so that a model made on the meta device can be initialised once materialised.
class TorchVGG(nn.Module):
    def __init__(self, features, num_classes=1000, init_weights=True, dropout=0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
                                        nn.Linear(4096, num_classes))
        if init_weights:
            self._initialize_weights()

    def _initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def make_layers(cfg, batch_norm=False):
    layers = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            if batch_norm:
                layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            else:
                layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


cfgs = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class TorchAlexNet(nn.Module):
    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
                                        nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                                        nn.Linear(4096, num_classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# each builder: (its cfg and batch_norm, or None for AlexNet), the num_params its weights' metadata publishes
# (VGG16_Weights.IMAGENET1K_V1.meta["num_params"]...)
BUILDERS = {"vgg11": (("A", False), 132863336), "vgg11_bn": (("A", True), 132868840),
            "vgg13": (("B", False), 133047848), "vgg13_bn": (("B", True), 133053736),
            "vgg16": (("D", False), 138357544), "vgg16_bn": (("D", True), 138365992),
            "vgg19": (("E", False), 143667240), "vgg19_bn": (("E", True), 143678248),
            "alexnet": (None, 61100840)}
HIDDEN = 12  # the small models' classifier width, for torchvision's 4096


def _small(ref, linears, channels, seed):
    """``ref``, made on the meta device, with its classifier's Linears (at ``linears``) HIDDEN wide and 5 classes
    out, materialised, initialised as torchvision does and in float64, with random biases and BatchNorm (as after
    training)."""
    sizes = [channels, HIDDEN, HIDDEN, 5]
    for i, at in enumerate(linears):
        ref.classifier[at] = nn.Linear(sizes[i], sizes[i + 1], device="meta")
    torch.manual_seed(seed)
    ref.to_empty(device="cpu")
    if isinstance(ref, TorchVGG):
        ref._initialize_weights()
    else:  # AlexNet keeps each layer's own init
        for m in ref.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.reset_parameters()
    ref = randomise_batch_norm(torch, ref.double())
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.normal_(0, 0.1)
    return ref


def _small_vgg(cfg, batch_norm, seed):
    with torch.device("meta"):  # torchvision's 25088 x 4096 classifier is replaced before anything is drawn
        ref = TorchVGG(make_layers(cfg, batch_norm), num_classes=5, dropout=0.0)
    return _small(ref, (0, 3, 6), cfg[-2] * 7 * 7, seed)


def _small_alexnet(seed):
    with torch.device("meta"):
        ref = TorchAlexNet(num_classes=5, dropout=0.0)
    return _small(ref, (1, 4, 6), 256 * 6 * 6, seed)


def _shrink(model, linears, channels):
    """``model`` (built without drawing) with its classifier's Linears HIDDEN wide, as :func:`_small` makes them."""
    sizes = [channels, HIDDEN, HIDDEN, 5]
    for i, at in enumerate(linears):
        model.classifier[at] = Linear(sizes[i], sizes[i + 1])
    return model.to(dtype="float64")


@pytest.mark.parametrize("batch_norm", [False, True], ids=["vgg", "vgg_bn"])
def test_small_vgg_equals_torchvision_forward_backward_and_state_dict_both_ways(batch_norm):
    """cfg [8, "M", 16, "M"]: 16 channels of 8x8 pixels, average-pooled to 7x7 by overlapping windows; no dropout,
    so that training-mode outputs can be compared."""
    cfg = [8, "M", 16, "M"]
    with xn.init.skip_init():
        model = xn.models.VGG(xn_make_layers(cfg, batch_norm), num_classes=5, dropout=0.0)
    model = _shrink(model, (0, 3, 6), 16 * 7 * 7)
    check_equals_torch(torch, model, _small_vgg(cfg, batch_norm, 0), _small_vgg(cfg, batch_norm, 1),
                       np.random.default_rng(0).standard_normal((1, 3, 32, 32)), np.array([3]),
                       transposed=("classifier.0.W", "classifier.3.W", "classifier.6.W"))


def test_alexnet_equals_torchvision_forward_backward_and_state_dict_both_ways():
    """63x63 pixels, torchvision's min_size for AlexNet: its last max pool gives 1x1, average-pooled to 6x6."""
    with xn.init.skip_init():
        model = xn.models.AlexNet(num_classes=5, dropout=0.0)
    model = _shrink(model, (1, 4, 6), 256 * 6 * 6)
    check_equals_torch(torch, model, _small_alexnet(0), _small_alexnet(1),
                       np.random.default_rng(0).standard_normal((1, 3, 63, 63)), np.array([3]),
                       transposed=("classifier.1.W", "classifier.4.W", "classifier.6.W"))


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_builders_have_torchvisions_state_dict_classifier_and_parameter_count(arch):
    vgg, num_params = BUILDERS[arch]
    with torch.device("meta"):  # shapes only, nothing allocated or drawn
        ref = TorchAlexNet() if vgg is None else TorchVGG(make_layers(cfgs[vgg[0]], vgg[1]))
    with xn.init.skip_init():
        model = getattr(xn.models, arch)()
    # the features' by xn.torch_state_dict; the classifier's by its Linears' PyTorch views (weight, bias), since
    # torch_state_dict would copy and transpose its 120M placeholder entries (seconds)
    got = {f"features.{k}": tuple(v.shape) for k, v in xn.torch_state_dict(model.features).items()}
    got.update({f"classifier.{i}.{name}": tuple(getattr(layer, name).shape) for i, layer in enumerate(model.classifier)
                if isinstance(layer, Linear) for name in ("weight", "bias")})
    assert got == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert [(type(m).__name__, getattr(m, "p", None)) for m in model.classifier] == \
        [(type(m).__name__, getattr(m, "p", None)) for m in ref.classifier]
    assert sum(math.prod(w.shape) for w in model.named_params().values()) == num_params
