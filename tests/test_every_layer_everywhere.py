"""Every public layer of xn.layers, written once against the array API, agrees with itself on NumPy and on
array_api_strict "device1" (always), PyTorch on the CPU (where installed), CuPy (``gpu``) and, for ``JAX_CASES``,
JAX: the training forward, dx of every input, every parameter gradient, the buffers (running statistics) and an
evaluation forward, each output, dx and gradient kept on the input's device in float32.

``CASES`` holds one small case per layer class, ``VARIANTS`` options with code of their own; a public layer
without a case fails ``test_every_layer_has_a_case``, naming it.

Cases that draw a mask (the dropouts, and the variants of the attention, Transformer and stacked LSTM with
dropout > 0) compare in training mode where the mask is drawn on the host from the layer's seeded generator
(NumPy, strict, PyTorch, JAX: the same numbers, so an exact test of mask and scaling). CuPy draws it on the GPU
from a generator of its own, so there they compare in evaluation mode (CuPy's numbers are checked against a
reference Philox, and its Dropout kernel against the portable code, in tests/cupy_random_checks.py).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
from test_cross_backend import PAIRS

import xpnet as xn
from xpnet import layers as L
from xpnet.testing import assert_backends_agree, assert_placed

# Not layers a user puts in a model as they are: each is tested through the layers built on it.
EXCLUDED = {
    "Layer": "the base class: its forward and backward raise NotImplementedError",
    "Container": "the base of xn.Model and of Residual and Concat (both tested), no operation of its own",
}


def _forward(layer: Any, *xs: Any, train: bool) -> Any:
    return layer.forward(*xs, train=train)


def _backward(layer: Any, *dys: Any) -> Any:
    return layer.backward(*dys)


@dataclass(frozen=True)
class Case:
    """``make`` builds the layer (after ``xn.init.seed(0)``); ``inputs`` are shapes (float32 normal draws) or host
    arrays (ids, indices); ``forward``/``backward`` call the layer where its signature is not ``forward(*xs)`` and
    ``backward(*dys)`` (one dy per float output)."""

    make: Callable[[], Any]
    inputs: tuple[Any, ...]
    forward: Callable[..., Any] = _forward
    backward: Callable[..., Any] = _backward
    draws_mask: bool = False


def _ids(high: int, shape: tuple[int, ...]) -> np.ndarray:
    """Integer ids with repeats (their gradients add up in Embedding's backward)."""
    return np.random.default_rng(3).integers(0, high, shape)


def _pooled(pool: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(y, indices) of a max pool with return_indices=True on NumPy: the unpool layers' inputs."""
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    return pool.forward(x, train=False)


def _tied() -> Any:
    """TiedLinear shares W with an Embedding that is part of the same model (not its child)."""
    embedding = L.Embedding(10, 4)
    return xn.Sequential(embedding, L.Tanh(), L.TiedLinear(embedding))


def _from_state(layer: Any, x: Any, h: Any, train: bool) -> Any:
    """The book's set_state(h) then forward: dh of the start state is layer.dh after backward."""
    layer.set_state(h)
    return layer.forward(x, train=train)


def _frozen_batch_norm() -> Any:
    """xn.freeze_batch_norm of a BatchNorm whose statistics and affine are not the defaults."""
    bn, rng = L.BatchNorm(3), np.random.default_rng(5)
    bn.params.update(gamma=rng.uniform(0.5, 2, 3).astype(np.float32), beta=rng.standard_normal(3).astype(np.float32))
    bn.buffers.update(running_mean=rng.standard_normal(3).astype(np.float32),
                      running_var=rng.uniform(0.5, 2, 3).astype(np.float32))
    return xn.freeze_batch_norm(bn)


def _transformer(**kw: Any) -> dict[str, Any]:
    return {"d_model": 8, "nhead": 2, "dim_feedforward": 16, "dropout": 0.0, **kw}


def _encoder_layer() -> Any:
    return L.TransformerEncoderLayer(**_transformer())


def _decoder_layer() -> Any:
    return L.TransformerDecoderLayer(**_transformer())


ROWS, IMAGES, SIGNALS, SEQUENCES = (3, 7), (2, 3, 4, 4), (2, 3, 7), (2, 3, 4)
CASES: dict[str, Case] = {
    "Linear": Case(lambda: L.Linear(6, 4), ((3, 6),)),
    **{name: Case(getattr(L, name), (ROWS,)) for name in (
        "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU", "SiLU", "Softplus", "SELU", "CELU", "Hardtanh",
        "ReLU6", "Mish", "Softsign", "LogSigmoid", "Identity", "Tanhshrink", "Softshrink", "Hardshrink")},
    "Hardsigmoid": Case(L.Hardsigmoid, (ROWS,)),
    "Hardswish": Case(L.Hardswish, (ROWS,)),
    "Threshold": Case(lambda: L.Threshold(0.1, 20.0), (ROWS,)),
    "PReLU": Case(lambda: L.PReLU(3), (SIGNALS,)),
    "Softmax": Case(lambda: L.Softmax(dim=1), (ROWS,)),
    "LogSoftmax": Case(lambda: L.LogSoftmax(dim=1), (ROWS,)),
    "Softmin": Case(lambda: L.Softmin(dim=1), (ROWS,)),
    "GLU": Case(lambda: L.GLU(dim=-1), ((3, 8),)),
    "Flatten": Case(L.Flatten, (IMAGES,)),
    "Unflatten": Case(lambda: L.Unflatten(1, (2, 3)), ((4, 6),)),
    "Dropout": Case(lambda: L.Dropout(0.4, seed=2), ((6, 9),), draws_mask=True),
    "Dropout1d": Case(lambda: L.Dropout1d(0.5, seed=2), ((4, 3, 5),), draws_mask=True),
    "Dropout2d": Case(lambda: L.Dropout2d(0.5, seed=2), ((4, 3, 2, 2),), draws_mask=True),
    "AlphaDropout": Case(lambda: L.AlphaDropout(0.3, seed=2), ((6, 9),), draws_mask=True),
    "CosineSimilarity": Case(lambda: L.CosineSimilarity(dim=1), ((4, 6), (4, 6))),
    "PairwiseDistance": Case(L.PairwiseDistance, ((4, 6), (4, 6))),
    "AffineGrid": Case(L.AffineGrid, ((2, 2, 3),), forward=lambda m, theta, train: m.forward(theta, (2, 1, 4, 5),
                                                                                             train=train)),
    "GridSample": Case(L.GridSample, ((2, 3, 4, 5), (2, 3, 4, 2))),  # normal draws: points outside the input too
    "Bilinear": Case(lambda: L.Bilinear(3, 4, 5), ((6, 3), (6, 4))),
    "Embedding": Case(lambda: L.Embedding(10, 4), (_ids(6, (3, 5)),)),
    "EmbeddingBag": Case(lambda: L.EmbeddingBag(10, 4), (_ids(6, (3, 5)),)),
    "TiedLinear": Case(_tied, (_ids(6, (3, 5)),)),
    "RNN": Case(lambda: L.RNN(4, 5), (SEQUENCES,)),
    "LSTM": Case(lambda: L.LSTM(4, 5), (SEQUENCES,)),
    "GRU": Case(lambda: L.GRU(4, 5), (SEQUENCES,)),
    "RNNCell": Case(lambda: L.RNNCell(4, 5), ((3, 4), (3, 5))),
    "GRUCell": Case(lambda: L.GRUCell(4, 5), ((3, 4), (3, 5))),
    "LSTMCell": Case(lambda: L.LSTMCell(4, 5), ((3, 4), (3, 5), (3, 5)),
                     forward=lambda m, x, h, c, train: m.forward(x, (h, c), train=train)),
    "Attention": Case(L.Attention, ((2, 5, 4), (2, 3, 4))),
    "ScaledDotProductAttention": Case(L.ScaledDotProductAttention, ((2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 6))),
    "MultiheadAttention": Case(lambda: L.MultiheadAttention(8, 2), ((2, 3, 8), (2, 4, 8), (2, 4, 8)),
                               backward=lambda m, dy, dweights: m.backward(dy)),
    "TransformerEncoderLayer": Case(_encoder_layer, ((2, 3, 8),)),
    "TransformerEncoder": Case(lambda: L.TransformerEncoder(_encoder_layer(), 2), ((2, 3, 8),)),
    "TransformerDecoderLayer": Case(_decoder_layer, ((2, 3, 8), (2, 4, 8))),
    "TransformerDecoder": Case(lambda: L.TransformerDecoder(_decoder_layer(), 2), ((2, 3, 8), (2, 4, 8))),
    "Transformer": Case(lambda: L.Transformer(**_transformer(num_encoder_layers=1, num_decoder_layers=1)),
                        ((2, 4, 8), (2, 3, 8))),
    "Conv2d": Case(lambda: L.Conv2d(2, 3, 3, stride=2, padding=1), ((2, 2, 7, 7),)),
    "ConvTranspose2d": Case(lambda: L.ConvTranspose2d(2, 3, 3, stride=2, padding=1), ((2, 2, 4, 4),)),
    "MaxPool2d": Case(lambda: L.MaxPool2d(2), ((2, 3, 6, 6),)),
    "MaxUnpool2d": Case(lambda: L.MaxUnpool2d(2), _pooled(L.MaxPool2d(2, return_indices=True), IMAGES)),
    "AvgPool2d": Case(lambda: L.AvgPool2d(3, stride=2, padding=1), ((2, 3, 7, 7),)),
    "GlobalAvgPool": Case(L.GlobalAvgPool, (IMAGES,)),
    "AdaptiveAvgPool2d": Case(lambda: L.AdaptiveAvgPool2d((2, 3)), ((2, 3, 5, 7),)),
    "AdaptiveMaxPool2d": Case(lambda: L.AdaptiveMaxPool2d((2, 3)), ((2, 3, 5, 7),)),
    "Upsample": Case(lambda: L.Upsample(scale_factor=2, mode="bilinear"), ((1, 2, 3, 4),)),
    "ZeroPad2d": Case(lambda: L.ZeroPad2d((1, 2, 0, 1)), (IMAGES,)),
    "ConstantPad2d": Case(lambda: L.ConstantPad2d(1, 0.5), (IMAGES,)),
    "ZeroPad1d": Case(lambda: L.ZeroPad1d((1, 2)), (SIGNALS,)),
    "ConstantPad1d": Case(lambda: L.ConstantPad1d(2, -1.0), (SIGNALS,)),
    **{f"{mode}Pad1d": Case(lambda mode=mode: getattr(L, f"{mode}Pad1d")((2, 1)), (SIGNALS,))
       for mode in ("Reflection", "Replication", "Circular")},
    **{f"{mode}Pad2d": Case(lambda mode=mode: getattr(L, f"{mode}Pad2d")((1, 2, 2, 1)), (IMAGES,))
       for mode in ("Reflection", "Replication", "Circular")},
    "PixelShuffle": Case(lambda: L.PixelShuffle(2), ((1, 8, 2, 3),)),
    "PixelUnshuffle": Case(lambda: L.PixelUnshuffle(2), ((1, 2, 4, 6),)),
    "ChannelShuffle": Case(lambda: L.ChannelShuffle(2), ((2, 4, 3, 3),)),
    "Unfold": Case(lambda: L.Unfold(2, padding=1), ((1, 2, 3, 4),)),
    "Fold": Case(lambda: L.Fold((3, 4), 2), ((1, 8, 6),)),
    "BatchNorm": Case(lambda: L.BatchNorm(3), (IMAGES,)),
    "FrozenBatchNorm2d": Case(_frozen_batch_norm, (IMAGES,)),
    "Conv1d": Case(lambda: L.Conv1d(3, 2, 3, padding=1), (SIGNALS,)),
    "ConvTranspose1d": Case(lambda: L.ConvTranspose1d(3, 2, 3, stride=2), (SIGNALS,)),
    "MaxPool1d": Case(lambda: L.MaxPool1d(2), (SIGNALS,)),
    "MaxUnpool1d": Case(lambda: L.MaxUnpool1d(2), _pooled(L.MaxPool1d(2, return_indices=True), (2, 3, 6))),
    "AvgPool1d": Case(lambda: L.AvgPool1d(3, stride=2, padding=1), (SIGNALS,)),
    "AdaptiveAvgPool1d": Case(lambda: L.AdaptiveAvgPool1d(3), (SIGNALS,)),
    "AdaptiveMaxPool1d": Case(lambda: L.AdaptiveMaxPool1d(3), (SIGNALS,)),
    "LayerNorm": Case(lambda: L.LayerNorm(4), (SEQUENCES,)),
    "RMSNorm": Case(lambda: L.RMSNorm(4), (SEQUENCES,)),
    "GroupNorm": Case(lambda: L.GroupNorm(2, 4), ((2, 4, 3, 3),)),
    "InstanceNorm1d": Case(lambda: L.InstanceNorm1d(3, affine=True, track_running_stats=True), (SIGNALS,)),
    "InstanceNorm2d": Case(lambda: L.InstanceNorm2d(3, affine=True, track_running_stats=True), (IMAGES,)),
    "Residual": Case(lambda: L.Residual(L.Linear(5, 5)), ((3, 5),)),
    "SpectralNorm": Case(lambda: L.SpectralNorm(L.Conv2d(2, 3, 3)), ((2, 2, 4, 4),)),
    "WeightNorm": Case(lambda: L.WeightNorm(L.Linear(6, 4)), ((3, 6),)),
    "Concat": Case(lambda: L.Concat(L.Linear(5, 3), L.Tanh()), ((3, 5),)),
    "PositionalEncoding": Case(lambda: L.PositionalEncoding(4, 0.3), (SEQUENCES,), draws_mask=True),
}
# JAX runs the same array-API code as array_api_strict, except GELU's erf (jax.scipy's, its one fast path), and
# compiles each operation at its first use: about a second per layer here, two minutes for all of them. So JAX
# compares GELU and the layers that bring arrays of their own to the input's device: a mask drawn on the host
# (Dropout2d), integer ids (Embedding) and indices (MaxUnpool1d), interpolation matrices and the sinusoid table made
# on the host (Upsample, PositionalEncoding), and a layer with parameters (Linear). Every case and variant passed on
# JAX when this module was written.
JAX_CASES = ("GELU", "Dropout2d", "Embedding", "MaxUnpool1d", "Upsample", "PositionalEncoding", "Linear")

# Options that take code paths of their own ("Name-what": the layer's name first).
VARIANTS: dict[str, Case] = {
    "GELU-tanh": Case(lambda: L.GELU(approximate="tanh"), (ROWS,)),
    "Softplus-threshold": Case(lambda: L.Softplus(beta=2.0, threshold=0.5), (ROWS,)),
    "Dropout-book": Case(lambda: L.Dropout(0.4, seed=2, convention="book"), ((6, 9),), draws_mask=True),
    "PairwiseDistance-p1-keepdim": Case(lambda: L.PairwiseDistance(p=1.0, keepdim=True), ((4, 6), (4, 6))),
    "Embedding-padding_idx": Case(lambda: L.Embedding(10, 4, padding_idx=2), (_ids(6, (3, 5)),)),
    "EmbeddingBag-offsets-max-padding_idx": Case(lambda: L.EmbeddingBag(10, 4, mode="max", padding_idx=2),
                                                 (_ids(6, (9,)), np.array([0, 3, 3, 7]))),
    "EmbeddingBag-sum-per_sample_weights": Case(lambda: L.EmbeddingBag(10, 4, mode="sum"),
                                                (_ids(6, (9,)), np.array([0, 4]), (9,))),
    "GRU-book": Case(lambda: L.GRU(4, 5, convention="book"), (SEQUENCES,)),
    "MultiheadAttention-kdim-vdim": Case(lambda: L.MultiheadAttention(8, 2, kdim=5, vdim=6),
                                         ((2, 3, 8), (2, 4, 5), (2, 4, 6)),
                                         backward=lambda m, dy, dweights: m.backward(dy)),
    "MultiheadAttention-dropout": Case(lambda: L.MultiheadAttention(8, 2, dropout=0.3), ((2, 3, 8),) * 3,
                                       backward=lambda m, dy, dweights: m.backward(dy), draws_mask=True),
    "ScaledDotProductAttention-dropout-causal": Case(
        lambda: L.ScaledDotProductAttention(dropout=0.3, scale=0.5), ((2, 4, 3), (2, 4, 3), (2, 4, 5)),
        forward=lambda m, q, k, v, train: m.forward(q, k, v, is_causal=True, train=train), draws_mask=True),
    "ScaledDotProductAttention-gqa": Case(lambda: L.ScaledDotProductAttention(enable_gqa=True),
                                          ((2, 4, 3, 4), (2, 2, 5, 4), (2, 2, 5, 6))),
    "TransformerEncoderLayer-norm_first-gelu-causal": Case(
        lambda: L.TransformerEncoderLayer(**_transformer(norm_first=True, activation="gelu")), ((2, 3, 8),),
        forward=lambda m, x, train: m.forward(x, is_causal=True, train=train)),
    "Transformer-dropout": Case(
        lambda: L.Transformer(**_transformer(num_encoder_layers=1, num_decoder_layers=1, dropout=0.2)),
        ((2, 4, 8), (2, 3, 8)), draws_mask=True),
    "Conv2d-depthwise-dilation": Case(lambda: L.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4), ((2, 4, 5, 5),)),
    "Conv2d-reflect": Case(lambda: L.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), ((2, 2, 5, 5),)),
    "ConvTranspose2d-groups": Case(lambda: L.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1, groups=2),
                                   ((2, 4, 3, 3),)),
    "MaxPool2d-ceil-dilation": Case(lambda: L.MaxPool2d(2, stride=2, dilation=2, ceil_mode=True),
                                    ((2, 3, 6, 6),)),
    "AvgPool2d-ceil-excluding-pad": Case(lambda: L.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
                                         ((2, 3, 6, 6),)),
    "Upsample-nearest": Case(lambda: L.Upsample(scale_factor=2), ((1, 2, 3, 4),)),
    "Upsample-bicubic": Case(lambda: L.Upsample(size=(5, 7), mode="bicubic", align_corners=True), ((1, 2, 3, 4),)),
    "Upsample-area": Case(lambda: L.Upsample(size=(2, 3), mode="area"), ((1, 2, 5, 7),)),
    "Fold-stride-dilation": Case(lambda: L.Fold((5, 6), 2, dilation=2, padding=1, stride=2), ((1, 8, 9),)),
    "BatchNorm-book": Case(lambda: L.BatchNorm(6, convention="book"), ((8, 6),)),
    "LSTM-stacked-bidirectional-dropout": Case(lambda: L.LSTM(4, 5, num_layers=2, bidirectional=True, dropout=0.3),
                                               (SEQUENCES,), draws_mask=True),
    "RNN-set_state": Case(lambda: L.RNN(4, 5), (SEQUENCES, (2, 5)), forward=_from_state,
                          backward=lambda m, dy: (m.backward(dy), m.dh)),
    "Conv1d-circular-groups": Case(lambda: L.Conv1d(4, 2, 3, padding=1, groups=2, padding_mode="circular"),
                                   ((2, 4, 6),)),
    "ConvTranspose1d-dilation-output_padding": Case(
        lambda: L.ConvTranspose1d(3, 2, 3, stride=2, dilation=2, output_padding=1), (SIGNALS,)),
    "InstanceNorm2d-batch-statistics": Case(lambda: L.InstanceNorm2d(3), (IMAGES,)),
    "LayerNorm-no-affine": Case(lambda: L.LayerNorm((3, 4), elementwise_affine=False), (SEQUENCES,)),
    "Upsample-bilinear-taps": Case(lambda: L.Upsample(scale_factor=2, mode="bilinear"), ((1, 2, 16, 17),)),
    "PositionalEncoding-time-first": Case(lambda: L.PositionalEncoding(4, 0.0, batch_first=False), (SEQUENCES,)),
    "LSTM-proj_size": Case(lambda: L.LSTM(4, 5, proj_size=3), (SEQUENCES,)),
    "LSTM-two-biases": Case(lambda: L.LSTM(4, 5, convention="pytorch"), (SEQUENCES,)),
    "RNNCell-two-biases": Case(lambda: L.RNNCell(4, 5, convention="pytorch"), ((3, 4), (3, 5))),
    "GRU-return_state": Case(lambda: L.GRU(4, 5, return_state=True), (SEQUENCES, (1, 2, 5)),
                             backward=lambda m, dy, dh_n: (m.backward(dy, dh_n), m.dh)),
    "LSTM-return_state-stacked-bidirectional": Case(
        lambda: L.LSTM(4, 5, num_layers=2, bidirectional=True, return_state=True), (SEQUENCES, (4, 2, 5), (4, 2, 5)),
        forward=lambda m, x, h, c, train: m.forward(x, (h, c), train=train),
        backward=lambda m, dy, dh_n, dc_n: (m.backward(dy, dh_n, dc_n), m.dh, m.dc)),
    "SpectralNorm-Linear-dim1": Case(lambda: L.SpectralNorm(L.Linear(6, 4), n_power_iterations=2, dim=1), ((3, 6),)),
    "WeightNorm-ConvTranspose1d-whole": Case(lambda: L.WeightNorm(L.ConvTranspose1d(3, 2, 3), dim=None), (SIGNALS,)),
    "Upsample-nearest-exact-fractional": Case(lambda: L.Upsample(scale_factor=1.5, mode="nearest-exact"),
                                              ((1, 2, 3, 4),)),
}


def _public_layer_classes() -> list[str]:
    return [name for name in L.__all__
            if inspect.isclass(getattr(L, name)) and issubclass(getattr(L, name), L.Layer)]


def test_every_layer_has_a_case():
    """A layer added to xn.layers.__all__ later fails here, by name, until it has a case (or a reason)."""
    missing = sorted(set(_public_layer_classes()) - set(CASES) - set(EXCLUDED))
    assert not missing, f"public layers with no case in CASES (or reason in EXCLUDED): {missing}"
    assert not set(CASES) & set(EXCLUDED) and set(JAX_CASES) <= set(CASES)
    named = set(CASES) | set(EXCLUDED) | {name.split("-")[0] for name in VARIANTS}
    assert named <= set(L.__all__), f"cases that name no public layer: {sorted(named - set(L.__all__))}"


def _arrays(value: Any) -> list[Any]:
    """The arrays in a layer's result (an array, a tuple of them, LSTMCell's nested pair, None), in order."""
    if value is None:
        return []
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _arrays(v)]
    return [value]


def _inputs(case: Case) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(x).astype(np.float32) if isinstance(x, tuple) else x for x in case.inputs]


def _run(case: Case, train: bool) -> Callable[..., dict[str, Any]]:
    floats = sum(isinstance(x, tuple) or x.dtype.kind == "f" for x in case.inputs)

    def run(xs: list[Any], device: Any) -> dict[str, Any]:
        xn.init.seed(0)
        layer = case.make().to(device)
        ys = _arrays(case.forward(layer, *xs, train=train))
        rng = np.random.default_rng(1)
        dys = [xn.to_device(rng.standard_normal(tuple(y.shape)).astype(np.float32), device) for y in ys]
        dxs = _arrays(case.backward(layer, *dys))
        assert len(dxs) == floats, f"{len(dxs)} dx for {floats} float inputs"
        out = {"y": ys, "dx": dxs, "grads": layer.named_grads(), "buffers": layer.named_buffers(),
               "y_eval": _arrays(case.forward(layer, *xs, train=False))}
        for a in [*ys, *dxs, *out["y_eval"], *out["grads"].values(), *out["buffers"].values()]:
            assert_placed(a, device, "float32")
        return out

    return run


def _pairs_and_names() -> list[Any]:
    """(pair, name) for every case on every pair of PAIRS, JAX's only for JAX_CASES."""
    return [pytest.param(pair.values[0], name, id=f"{pair.id}-{name}", marks=pair.marks)
            for pair in PAIRS for name in sorted({**CASES, **VARIANTS})
            if pair.id != "numpy-vs-jax" or name in JAX_CASES]


@pytest.mark.parametrize("pair,name", _pairs_and_names())
def test_layer_agrees_across_backends(pair, name):
    case, devices = {**CASES, **VARIANTS}[name], pair()
    gpu = any(getattr(d, "is_cupy", False) for d in devices)
    train = not (case.draws_mask and gpu)
    # A GPU sums in another order (cuBLAS, CUB) with CUDA's exp: through a Transformer's stack a float32 gradient
    # of 0.03 came 4e-6 off NumPy's on the fake CuPy with FAKE_CUPY_ROUNDING=1, past atol=2e-6.
    rtol, atol = (1e-4, 1e-5) if gpu else (2e-5, 2e-6)
    assert_backends_agree(_run(case, train), _inputs(case), devices=devices, rtol=rtol, atol=atol)
