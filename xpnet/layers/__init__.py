"""Layers: one object per operation, ``forward`` and ``backward`` side by side."""

from .activations import ReLU, Sigmoid, Tanh
from .base import Layer
from .dropout import Dropout
from .flatten import Flatten
from .linear import Linear

__all__ = ["Layer", "Linear", "ReLU", "Sigmoid", "Tanh", "Flatten", "Dropout"]
