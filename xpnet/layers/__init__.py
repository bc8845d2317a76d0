"""Layers: one object per operation, ``forward`` and ``backward`` side by side."""

from .activations import ReLU, Sigmoid, Tanh
from .attention import Attention
from .base import Layer
from .conv import Conv2d
from .dropout import Dropout
from .embedding import Embedding
from .flatten import Flatten
from .linear import Linear
from .norm import BatchNorm
from .pool import AvgPool2d, GlobalAvgPool, MaxPool2d
from .recurrent import GRU, LSTM, RNN

__all__ = ["Layer", "Linear", "ReLU", "Sigmoid", "Tanh", "Flatten", "Dropout",
           "Embedding", "RNN", "LSTM", "GRU", "Attention",
           "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool", "BatchNorm"]
