"""Layers: one object per operation, ``forward`` and ``backward`` side by side.

Every layer is also a node of a model (``tree``: dotted names, modes, state dicts); ``Container``
holds layers as its attributes (the base of ``xn.Model``), ``Residual`` and ``Concat`` are the
ready-made graphs built on it (``branches``), and ``records`` writes a tree as JSON for model files.
"""

from typing import Any

from .._chainer import LAYERS as _CHAINER_NAMES
from .._user import not_here
from .adaptive_pool import AdaptiveAvgPool2d, AdaptiveMaxPool2d
from .activations import CELU, ELU, GELU, SELU, Identity, LeakyReLU, ReLU, Sigmoid, SiLU, Softplus, Tanh
from .attention import Attention
from .base import Layer
from .bilinear import Bilinear
from .branches import Concat, Residual
from .channel_shuffle import ChannelShuffle
from .container import Container
from .conv import Conv2d
from .conv1d import Conv1d, ConvTranspose1d
from .conv_transpose import ConvTranspose2d
from .distances import CosineSimilarity, PairwiseDistance
from .dropout import AlphaDropout, Dropout, Dropout1d, Dropout2d
from .embedding import Embedding
from .embedding_bag import EmbeddingBag
from .flatten import Flatten, Unflatten
from .fold import Fold, Unfold
from .frozen_norm import FrozenBatchNorm2d
from .groupnorm import GroupNorm
from .instancenorm import InstanceNorm1d, InstanceNorm2d
from .hard_activations import Hardshrink, Hardsigmoid, Hardswish, Hardtanh, ReLU6, Softshrink, Threshold
from .layernorm import LayerNorm
from .linear import Linear
from .mode_padding import (CircularPad1d, CircularPad2d, ReflectionPad1d, ReflectionPad2d, ReplicationPad1d,
                           ReplicationPad2d)
from .multihead_attention import MultiheadAttention
from .norm import BatchNorm
from .packed import PackedSequence, pack_padded_sequence, pad_packed_sequence, pad_sequence
from .pool1d import AdaptiveAvgPool1d, AdaptiveMaxPool1d, AvgPool1d, MaxPool1d
from .padding import ConstantPad1d, ConstantPad2d, ZeroPad1d, ZeroPad2d
from .pixel_shuffle import PixelShuffle, PixelUnshuffle
from .pool import AvgPool2d, GlobalAvgPool, MaxPool2d
from .positional import PositionalEncoding
from .prelu import PReLU
from .recurrent import GRU, LSTM, RNN
from .recurrent_cells import GRUCell, LSTMCell, RNNCell
from .reparametrized import SpectralNorm, WeightNorm
from .rmsnorm import RMSNorm
from .scaled_dot_product import ScaledDotProductAttention
from .smooth_activations import GLU, LogSigmoid, Mish, Softsign, Tanhshrink
from .softmax import LogSoftmax, Softmax, Softmin
from .spatial_transform import AffineGrid, GridSample
from .tied import TiedLinear
from .transformer import TransformerEncoder, TransformerEncoderLayer
from .transformer_decoder import Transformer, TransformerDecoder, TransformerDecoderLayer
from .unpool import MaxUnpool1d, MaxUnpool2d
from .upsample import Upsample

__all__ = ["Layer", "Container", "Linear", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU", "SiLU",
           "Softplus", "SELU", "CELU", "Hardtanh", "ReLU6", "Hardsigmoid", "Hardswish", "Mish",
           "Softsign", "LogSigmoid", "PReLU", "Softmax", "LogSoftmax", "Identity", "Flatten", "Unflatten", "Dropout",
           "Dropout2d", "Dropout1d", "GLU", "Softmin", "Threshold", "Tanhshrink", "Softshrink", "Hardshrink",
           "CosineSimilarity", "PairwiseDistance", "AffineGrid", "GridSample",
           "Embedding", "EmbeddingBag", "TiedLinear", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell",
           "PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pad_sequence",
           "Attention",
           "MultiheadAttention", "ScaledDotProductAttention", "TransformerEncoderLayer", "TransformerEncoder",
           "TransformerDecoderLayer",
           "TransformerDecoder", "Transformer", "PositionalEncoding",
           "Conv2d", "ConvTranspose2d", "MaxPool2d", "MaxUnpool2d", "AvgPool2d", "GlobalAvgPool",
           "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Upsample", "ZeroPad2d", "ConstantPad2d",
           "ReflectionPad1d", "ReflectionPad2d", "ReplicationPad1d", "ReplicationPad2d", "CircularPad1d",
           "CircularPad2d", "PixelShuffle",
           "PixelUnshuffle", "BatchNorm", "FrozenBatchNorm2d",
           "Conv1d", "ConvTranspose1d", "MaxPool1d", "MaxUnpool1d", "AvgPool1d", "AdaptiveAvgPool1d",
           "AdaptiveMaxPool1d",
           "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "RMSNorm",
           "Residual", "Concat", "ZeroPad1d", "ConstantPad1d", "ChannelShuffle", "Bilinear", "Unfold",
           "Fold", "AlphaDropout", "SpectralNorm", "WeightNorm"]

# What a PyTorch user reaches for in torch.nn, and what xpnet has instead.
_BATCHNORM = ("xn.layers.BatchNorm(num_features) normalises (N, D) features, (N, C, L) sequences and (N, C, H, W) "
              "images per channel")

_PARALLEL = ("no wrapper: xn.train(model, data, ..., comm=xn.distributed.init()) under mpiexec trains data "
             "parallel, one process per GPU")

_PYTORCH_NAMES = {
    "Sequential": "a model, not a layer: xn.Sequential(layer, layer, ...)",
    "Module": "a model of your own subclasses xn.Model (forward and backward written out, the book's way); "
              "xn.Sequential(layer, ...) stacks layers; a layer of your own subclasses xn.layers.Layer",
    "BatchNorm1d": _BATCHNORM,
    "BatchNorm2d": _BATCHNORM,
    "FrozenBatchNorm1d": "xn.layers.FrozenBatchNorm2d(num_features) takes (N, D) features too, as xn.layers.BatchNorm "
                         "does",
    "CrossEntropyLoss": "losses are in xn.losses: xn.losses.SoftmaxCrossEntropy()",
    "MSELoss": "losses are in xn.losses: xn.losses.MeanSquaredError()",
    "BCEWithLogitsLoss": "losses are in xn.losses: xn.losses.SigmoidCrossEntropy()",
    "L1Loss": "losses are in xn.losses: xn.losses.MeanAbsoluteError()",
    "SmoothL1Loss": "losses are in xn.losses: xn.losses.SmoothL1Loss()",
    "HuberLoss": "losses are in xn.losses: xn.losses.HuberLoss()",
    "NLLLoss": "losses are in xn.losses: xn.losses.NLLLoss()",
    "BCELoss": "losses are in xn.losses: xn.losses.BCELoss()",
    "KLDivLoss": "losses are in xn.losses: xn.losses.KLDivLoss()",
    "UpsamplingNearest2d": "xn.layers.Upsample(size=None, scale_factor=None) is nn.UpsamplingNearest2d: its mode, "
                           "'nearest', is the default (whole-number scales)",
    "UpsamplingBilinear2d": "xn.layers.Upsample(size=None, scale_factor=None, mode='bilinear', align_corners=True) "
                            "is nn.UpsamplingBilinear2d (its corners aligned; nn.Upsample's bilinear default is "
                            "align_corners=False)",
    "Lambda": "a layer needs its backward too (xpnet has no autograd): subclass xn.layers.Layer with forward(x, "
              "train=True) and backward(dy); the tutorial's x.view(-1, 1, 28, 28) is xn.layers.Unflatten(1, (1, 28, "
              "28)) (or load the images with flatten=False), and x.view(x.size(0), -1) is xn.layers.Flatten()",
    "ModuleList": "assign a plain list of layers as an attribute of your xn.Model (self.blocks = [...]): its layers "
                  "are found, as 'blocks.0.W'...",
    "ModuleDict": "assign a plain dict of layers as an attribute of your xn.Model (self.heads = {...}): its layers "
                  "are found, as 'heads.age.W'...",
    "Parameter": "a parameter is an array in a layer's params dict: self.params['W'] = ... in a layer or model of "
                 "your own, its gradient in self.grads['W'], filled by your backward",
    "DataParallel": _PARALLEL,
    "DistributedDataParallel": _PARALLEL,
    "utils": "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm) is xn.optim.clip_grad_norm(model, "
             "max_norm), or xn.train(..., clip_grad_norm=max_norm); torch.nn.utils.spectral_norm(m) is "
             "xn.layers.SpectralNorm(m), weight_norm(m) xn.layers.WeightNorm(m)",
    "spectral_norm": "torch.nn.utils.parametrizations.spectral_norm(m, n_power_iterations=1, eps=1e-12, dim=None) is "
                     "xn.layers.SpectralNorm(m, n_power_iterations=1, eps=1e-12, dim=None): a layer wrapping m, "
                     "put in the model where m was",
    "weight_norm": "torch.nn.utils.parametrizations.weight_norm(m, dim=0) is xn.layers.WeightNorm(m, dim=0): a "
                   "layer wrapping m, put in the model where m was",
    **{name: "losses are in xn.losses: xn.losses." + name + "()" for name in (
        "SoftMarginLoss", "MultiLabelSoftMarginLoss", "PoissonNLLLoss", "HingeEmbeddingLoss")},
    **{name: f"losses are in xn.losses, which has no {name} either: getattr(xn.losses, {name!r}) says what to write "
             "instead" for name in (
        "CTCLoss", "TripletMarginLoss", "GaussianNLLLoss", "MarginRankingLoss", "CosineEmbeddingLoss",
        "MultiMarginLoss", "MultiLabelMarginLoss", "TripletMarginWithDistanceLoss", "AdaptiveLogSoftmaxWithLoss",
        "LinearCrossEntropyLoss")},
    "NLLLoss2d": "losses are in xn.losses: xn.losses.NLLLoss() takes (N, C, H, W) log-probabilities and (N, H, W) "
                 "labels, as PyTorch's NLLLoss (NLLLoss2d is its deprecated name)",
    **{f"{kind}3d": f"xpnet's layers are 1-d and 2-d, on (N, C, L) and (N, C, H, W); it has no 3-d (volumetric) "
                    f"layers: xn.layers.{kind}2d is the 2-d one" for kind in (
        "Conv", "ConvTranspose", "MaxPool", "AvgPool", "AdaptiveAvgPool", "AdaptiveMaxPool", "MaxUnpool",
        "InstanceNorm", "Dropout", "ReflectionPad", "ReplicationPad", "CircularPad", "ZeroPad", "ConstantPad")},
    **{name: "xpnet's layers are 1-d and 2-d, on (N, C, L) and (N, C, H, W), and take their input size when built: "
             "no 3-d (volumetric) or lazy layers" for name in (
        "BatchNorm3d", "LazyBatchNorm3d", "LazyConv3d", "LazyConvTranspose3d", "LazyInstanceNorm3d", "LPPool3d",
        "FractionalMaxPool3d")},
    "SyncBatchNorm": "xpnet has no SyncBatchNorm: under xn.train(..., comm=xn.distributed.init()) each rank's "
                     "xn.layers.BatchNorm(num_features) normalises its own share of the batch, as DDP's BatchNorm2d "
                     "without convert_sync_batchnorm (docs/distributed.md says so)",
    "Softmax2d": "xn.layers.Softmax(dim=-3) is nn.Softmax2d: the softmax over the channels of (N, C, H, W) or "
                 "(C, H, W)",
    "RReLU": "xpnet has no RReLU (its slope drawn per element in training): xn.layers.LeakyReLU(negative_slope=(lower "
             "+ upper) / 2) is RReLU's evaluation mode",
    "LocalResponseNorm": "xpnet has no LocalResponseNorm (the 2012 AlexNet's and GoogLeNet's; torchvision's alexnet, "
                         "xn.models.alexnet(), has none): BatchNorm, GroupNorm or LayerNorm in its place, or a layer "
                         "of your own (xn.layers.Layer, forward and backward)",
    "CrossMapLRN2d": "xpnet has no CrossMapLRN2d (LocalResponseNorm's legacy form): BatchNorm, GroupNorm or LayerNorm "
                     "in its place, or a layer of your own (xn.layers.Layer, forward and backward)",
    "FeatureAlphaDropout": "xpnet has xn.layers.AlphaDropout(p), value by value; no channel-wise form: "
                           "xn.layers.Dropout2d(p) drops whole channels (without SELU's scaling)",
    **{name: "xpnet has no LP pooling: xn.layers.AvgPool" + name[-2:] + " or MaxPool" + name[-2:] + " (LP pooling's "
             "limits p = 1, times the window size, and p = inf)" for name in ("LPPool1d", "LPPool2d")},
    "FractionalMaxPool2d": "xpnet has no fractional max pooling: xn.layers.AdaptiveMaxPool2d(output_size) pools to a "
                           "size of your choice with fixed windows",
    **{name: "a parameter is an array in a layer's params dict: self.params['w0'] = ... (one key per array) in a "
             "layer or model of your own, its gradient in self.grads['w0']" for name in ("ParameterList",
                                                                                           "ParameterDict")},
    **{name: "the recurrent layers' base classes are not public: xn.layers.RNN, LSTM, GRU (and the cells RNNCell, "
             "LSTMCell, GRUCell)" for name in ("RNNBase", "RNNCellBase")},
}

_BOOK_TABLE = "; docs/from-the-book.md maps the book's classes to xpnet's"
_CHAINER_BN = "Chainer's BatchNormalization(size) is xn.layers.BatchNorm(num_features)"

# What a reader of the book (both volumes) or a Chainer user reaches for, and what xpnet has instead.
_OTHER_NAMES = {
    "Affine": "the book's Affine(W, b) is xn.layers.Linear(in_features, out_features), W (in, out) as the book's; "
              "on (N, T, H) inputs it is also the book's TimeAffine" + _BOOK_TABLE,
    "TimeAffine": "the book's TimeAffine(W, b) is xn.layers.Linear(H, V): it takes any leading axes, (N, T, H) too"
                  + _BOOK_TABLE,
    "Relu": "the book's Relu is xn.layers.ReLU()" + _BOOK_TABLE,
    "Convolution": "the book's Convolution(W, b, stride, pad), W (FN, C, FH, FW), is xn.layers.Conv2d(C, FN, FH, "
                   "stride, pad), the same W layout" + _BOOK_TABLE,
    "Convolution2D": "Chainer's Convolution2D(in_channels, out_channels, ksize, stride, pad) is xn.layers.Conv2d("
                     "in_channels, out_channels, kernel_size, stride, padding)",
    "Pooling": "the book's Pooling(pool_h, pool_w, stride, pad) is xn.layers.MaxPool2d(kernel_size, stride, padding); "
               "its stride defaults to kernel_size, as PyTorch's (the printed book's to 1)" + _BOOK_TABLE,
    "BatchNormalization": "the book's BatchNormalization(gamma, beta) is xn.layers.BatchNorm(num_features, "
                          "convention='book'); " + _CHAINER_BN,
    "SoftmaxWithLoss": "the book's SoftmaxWithLoss is a loss here: xn.losses.SoftmaxCrossEntropy()" + _BOOK_TABLE,
    "TimeSoftmaxWithLoss": "the book's TimeSoftmaxWithLoss is xn.losses.SoftmaxCrossEntropy() on (N, T, V) scores "
                           "and (N, T) ids (ignore_index=-1 for the book's ignore_label)" + _BOOK_TABLE,
    "TimeEmbedding": "the book's TimeEmbedding(W) is xn.layers.Embedding(V, D)" + _BOOK_TABLE,
    "TimeRNN": "the book's TimeRNN(Wx, Wh, b, stateful) is xn.layers.RNN(D, H, stateful=...)" + _BOOK_TABLE,
    "TimeLSTM": "the book's TimeLSTM(Wx, Wh, b, stateful) is xn.layers.LSTM(D, H, stateful=...) (gate blocks in "
                "PyTorch's order i, f, g, o; xn.load_book_params converts the book's files)" + _BOOK_TABLE,
    "TimeGRU": "the book's TimeGRU is xn.layers.GRU(D, H, stateful=..., convention='book')" + _BOOK_TABLE,
    "TimeAttention": "the book's TimeAttention is xn.layers.Attention()" + _BOOK_TABLE,
    "MatMul": "the book's MatMul(W) is xn.layers.Linear(in_features, out_features, bias=False), W (in, out); on "
              "ids, xn.layers.Embedding(V, H) is the same product without the one-hot vectors" + _BOOK_TABLE,
    "TimeDropout": "the book's TimeDropout is xn.layers.Dropout(p): it takes (N, T, D) too" + _BOOK_TABLE,
}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, {**_OTHER_NAMES, **_CHAINER_NAMES, **_PYTORCH_NAMES})
