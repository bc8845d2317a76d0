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
from .layernorm import LayerNorm
from .linear import Linear
from .norm import BatchNorm
from .pool import AvgPool2d, GlobalAvgPool, MaxPool2d
from .recurrent import GRU, LSTM, RNN
from .tied import TiedLinear

__all__ = ["Layer", "Container", "Linear", "ReLU", "Sigmoid", "Tanh", "Flatten", "Dropout",
           "Embedding", "TiedLinear", "RNN", "LSTM", "GRU", "Attention",
           "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool", "BatchNorm", "LayerNorm",
           "Residual", "Concat"]

# What a PyTorch user reaches for in torch.nn, and what xpnet has instead.
_BATCHNORM = "xn.layers.BatchNorm(num_features) normalises (N, D) features and (N, C, H, W) images per channel"
_ATTENTION = ("xn.layers.Attention() is the book's dot-product attention of decoder states over encoder states, "
              "attention(hs_enc (N, T_enc, H), hs_dec (N, T_dec, H)) -> context (N, T_dec, H): one head, "
              "no projections and no mask")
_TRANSFORMER = ("xpnet has no Transformer layers; its sequence layers are xn.layers.Embedding, RNN, LSTM, GRU and "
                "Attention() (the book's attention of decoder states over encoder states)")
_CELL = ("a cell of one step is not a layer in xpnet: xn.layers.{0}(input_size, hidden_size) runs a whole sequence "
         "(N, T, D) in one forward and one backward; for one step at a time (generating), {0}(..., stateful=True) "
         "on (N, 1, D) starts each call from the state the last one ended with")

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
    "MultiheadAttention": _ATTENTION,
    "Transformer": _TRANSFORMER,
    "TransformerEncoder": _TRANSFORMER,
    "TransformerEncoderLayer": _TRANSFORMER,
    "TransformerDecoder": _TRANSFORMER,
    "TransformerDecoderLayer": _TRANSFORMER,
    "LSTMCell": _CELL.format("LSTM"),
    "GRUCell": _CELL.format("GRU"),
    "RNNCell": _CELL.format("RNN"),
    "EmbeddingBag": "xpnet has no EmbeddingBag: xn.layers.Embedding(num_embeddings, embedding_dim) gives (N, T, D) "
                    "for (N, T) ids; sum or average over T in a model of your own (xn.Model)",
}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, _PYTORCH_NAMES)
