"""torchvision's AlexNet (``torchvision/models/alexnet.py``, the "one weird trick" variant): the same module tree,
names and init, so that ``torchvision.models.alexnet(weights=...).state_dict()`` loads with
``xn.load_torch_state_dict`` and ``xn.torch_state_dict(model)`` loads back into torchvision's.

x: (N, 3, H, W) -> scores (N, num_classes); any H, W of at least 63 pixels (torchvision's ``min_size``: the
convolution of stride 4 and three 3x3 max pools of stride 2 leave one pixel there; the average pool takes what
is left to 6x6). Keys ``features.0.weight`` ... ``features.10.bias``, ``classifier.1``, ``classifier.4``,
``classifier.6`` (the Linears). Every layer keeps PyTorch's own init, as torchvision's does. Its
``ReLU(inplace=True)`` are plain ReLUs here, and its ``torch.flatten`` a reshape in forward (no state).
"""

from __future__ import annotations

from typing import Any

from ..layers import AdaptiveAvgPool2d, Dropout, MaxPool2d, ReLU
from ..layers.base import positive_int
from .resnet import no_download
from .sequential import Sequential
from .vgg import FeaturesPoolClassifier, pytorch_conv2d, pytorch_linear

__all__ = ["AlexNet", "alexnet"]


class AlexNet(FeaturesPoolClassifier):
    """features (conv 11x11 stride 4 to 64 channels, ReLU, max pool 3x3 stride 2, conv 5x5 to 192, ReLU, max pool,
    convs 3x3 to 384, 256 and 256, each with ReLU, max pool) -> avgpool (adaptive, to 6x6), flatten -> classifier
    (Dropout(dropout), Linear(256 * 6 * 6, 4096), ReLU, Dropout(dropout), Linear(4096, 4096), ReLU,
    Linear(4096, num_classes)). x: (N, 3, H >= 63, W >= 63) -> (N, num_classes). Caches the pooled shape."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        num_classes = positive_int(self, "num_classes", num_classes)
        self.features = Sequential(
            pytorch_conv2d(3, 64, kernel_size=11, stride=4, padding=2), ReLU(), MaxPool2d(kernel_size=3, stride=2),
            pytorch_conv2d(64, 192, kernel_size=5, padding=2), ReLU(), MaxPool2d(kernel_size=3, stride=2),
            pytorch_conv2d(192, 384, kernel_size=3, padding=1), ReLU(),
            pytorch_conv2d(384, 256, kernel_size=3, padding=1), ReLU(),
            pytorch_conv2d(256, 256, kernel_size=3, padding=1), ReLU(), MaxPool2d(kernel_size=3, stride=2))
        self.avgpool = AdaptiveAvgPool2d((6, 6))
        self.classifier = Sequential(Dropout(dropout), pytorch_linear(256 * 6 * 6, 4096), ReLU(), Dropout(dropout),
                                     pytorch_linear(4096, 4096), ReLU(), pytorch_linear(4096, num_classes))


def alexnet(*, weights: Any = None, **kwargs: Any) -> AlexNet:
    """AlexNet; ``num_classes=1000``, ``dropout=0.5``."""
    return AlexNet(**no_download("alexnet", weights, kwargs))
