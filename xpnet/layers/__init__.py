"""Layers: one object per operation, ``forward`` and ``backward`` side by side.

Every layer is also a node of a model (``tree``: dotted names, modes, state dicts); ``Container``
holds layers as its attributes (the base of ``xn.Model``), ``Residual`` and ``Concat`` are the
ready-made graphs built on it (``branches``), and ``records`` writes a tree as JSON for model files.
"""

from .activations import ReLU, Sigmoid, Tanh
from .base import Layer
from .branches import Concat, Residual
from .container import Container
from .conv import Conv2d
from .dropout import Dropout
from .flatten import Flatten
from .linear import Linear
from .norm import BatchNorm
from .pool import AvgPool2d, GlobalAvgPool, MaxPool2d

__all__ = ["Layer", "Container", "Linear", "ReLU", "Sigmoid", "Tanh", "Flatten", "Dropout",
           "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool", "BatchNorm", "Residual", "Concat"]
