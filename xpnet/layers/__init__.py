"""Layers: one object per operation, ``forward`` and ``backward`` side by side.

Every layer is also a node of a model (``tree``: dotted names, modes, state dicts); ``Container``
holds layers as its attributes (the base of ``xn.Model``), ``Residual`` and ``Concat`` are the
ready-made graphs built on it (``branches``), and ``records`` writes a tree as JSON for model files.
"""

from typing import Any

from .._user import not_here
from .activations import ReLU, Sigmoid, Tanh
from .attention import Attention
from .base import Layer
from .branches import Concat, Residual
from .container import Container
from .conv import Conv2d
from .dropout import Dropout
from .embedding import Embedding
from .flatten import Flatten
from .linear import Linear
from .norm import BatchNorm
from .pool import AvgPool2d, GlobalAvgPool, MaxPool2d
from .recurrent import GRU, LSTM, RNN
from .tied import TiedLinear

__all__ = ["Layer", "Container", "Linear", "ReLU", "Sigmoid", "Tanh", "Flatten", "Dropout",
           "Embedding", "TiedLinear", "RNN", "LSTM", "GRU", "Attention",
           "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool", "BatchNorm",
           "Residual", "Concat"]

# What a PyTorch user reaches for in torch.nn, and what xpnet has instead.
_BATCHNORM = "xn.layers.BatchNorm(num_features) normalises (N, D) features and (N, C, H, W) images per channel"
_PYTORCH_NAMES = {
    "Sequential": "a model, not a layer: xn.Sequential(layer, layer, ...)",
    "Module": "a model of your own subclasses xn.Model (forward and backward written out, the book's way); "
              "xn.Sequential(layer, ...) stacks layers; a layer of your own subclasses xn.layers.Layer",
    "AdaptiveAvgPool2d": "xn.layers.GlobalAvgPool() is AdaptiveAvgPool2d(1) and the flatten after it: "
                         "(N, C, H, W) -> (N, C); other output sizes are not in xpnet",
    "BatchNorm1d": _BATCHNORM,
    "BatchNorm2d": _BATCHNORM,
    "CrossEntropyLoss": "losses are in xn.losses: xn.losses.SoftmaxCrossEntropy()",
    "MSELoss": "losses are in xn.losses: xn.losses.MeanSquaredError()",
}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, _PYTORCH_NAMES)
