"""The models of ``tests/test_graph_layers.py`` trained on a CuPy device, eagerly or with the step
captured as a CUDA graph: imported in a fresh process on the fake CuPy of ``tests/fake_cupy`` and by the
``gpu`` tests on a real GPU.

100 samples in batches of 32: each epoch is 3 full batches (2 eager warm-up steps and a capture in the
first epoch, launches after) and a short batch of 4, run eagerly.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np

import xpnet as xn
from xpnet.backend.graphs import StepGraph

L = xn.layers
N, BATCH = 100, 32
FULL = N // BATCH


def _batchnorm() -> Any:
    # No bias before BatchNorm: its gradient is zero up to rounding, which Adam would scale up to steps of lr
    # whose sign the rounding picks, different in any two runs.
    return xn.Sequential(L.Linear(12, 16, bias=False), L.BatchNorm(16), L.ReLU(), L.Linear(16, 4))


def _batchnorm_options() -> Any:
    """PyTorch's options: the cumulative average (its batch count a buffer the launches move on), no gamma
    and beta, and the batch's statistics alone."""
    return xn.Sequential(L.Linear(12, 16, bias=False), L.BatchNorm(16, momentum=None, affine=False), L.ReLU(),
                         L.Linear(16, 8, bias=False), L.BatchNorm(8, track_running_stats=False), L.Tanh(),
                         L.Linear(8, 4))


def _pooling() -> Any:
    """Images (N, 2, 6, 6): BatchNorm per channel, then three poolings side by side, flattened, then Linear."""
    return xn.Sequential(L.BatchNorm(2),
                         L.Concat(xn.Sequential(L.MaxPool2d(2), L.Flatten()),
                                  xn.Sequential(L.AvgPool2d(3, stride=2, padding=1), L.Flatten()),
                                  L.GlobalAvgPool()),
                         L.Tanh(), L.Linear(2 * 9 + 2 * 9 + 2, 4))


def _pooling_options() -> Any:
    """Images (N, 2, 6, 6) through PyTorch's pooling options: ceil_mode's windows past the padding, and
    divisors that differ from window to window (count_include_pad=False; ceil_mode's clipped windows)."""
    return xn.Sequential(L.Concat(xn.Sequential(L.MaxPool2d(3, 2, ceil_mode=True), L.Flatten()),
                                  xn.Sequential(L.AvgPool2d(3, 2, 1, count_include_pad=False), L.Flatten()),
                                  xn.Sequential(L.AvgPool2d(2, 3, 1, ceil_mode=True), L.Flatten())),
                         L.Tanh(), L.Linear(2 * 9 + 2 * 9 + 2 * 9, 4))


def _adaptive() -> Any:
    """Images (N, 2, 7, 6): BatchNorm, then PyTorch's adaptive poolings side by side: AdaptiveAvgPool2d's products
    over overlapping windows (7 -> 3 rows, 6 -> 4 columns), and AdaptiveMaxPool2d's running maxima and gathers
    followed by Upsample(mode='area'), flattened, then Linear."""
    return xn.Sequential(L.BatchNorm(2),
                         L.Concat(xn.Sequential(L.AdaptiveAvgPool2d((3, 4)), L.Flatten()),
                                  xn.Sequential(L.AdaptiveMaxPool2d((3, None)), L.Upsample(size=(2, 3), mode="area"),
                                                L.Flatten())),
                         L.Tanh(), L.Linear(2 * 3 * 4 + 2 * 2 * 3, 4))


def _residual() -> Any:
    return xn.Sequential(L.Linear(12, 16),
                         L.Residual(xn.Sequential(L.Linear(16, 16), L.ReLU(), L.Linear(16, 16))), L.ReLU(),
                         L.Residual(xn.Sequential(L.Linear(16, 8), L.Sigmoid()), shortcut=L.Linear(16, 8)),
                         L.Linear(8, 4))


def _cnn() -> Any:
    """Images (N, 2, 8, 8) through each of Conv2d's paths: one product per sample (18 rows of im2col), one
    product over the batch with the stride-1 input gradient (72 rows), and the strided input gradient made
    in parts (72 rows, stride 2); BatchNorm, ReLU, MaxPool2d, Flatten, Linear."""
    return xn.Sequential(L.Conv2d(2, 8, 3, padding=1, bias=False), L.BatchNorm(8), L.ReLU(),
                         L.Conv2d(8, 8, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
                         L.Conv2d(8, 8, 3, stride=2, padding=1), L.ReLU(), L.Flatten(), L.Linear(32, 4))


def _activations() -> Any:
    """PyTorch's activations between Linear layers: GELU's erf a CuPy kernel of its own, Softmax's and
    LogSoftmax's reductions (a Linear after it: cross-entropy refuses a model ending in LogSoftmax)."""
    return xn.Sequential(L.Linear(12, 16), L.GELU(), L.Linear(16, 16), L.LeakyReLU(0.1), L.ELU(0.5), L.SiLU(),
                         L.Linear(16, 16), L.Softplus(2.0, 10.0), L.GELU(approximate="tanh"), L.Identity(),
                         L.Softmax(dim=1), L.Linear(16, 4), L.LogSoftmax(dim=-1), L.Linear(4, 4))


def _more_activations() -> Any:
    """PyTorch's piecewise-linear activations (MobileNet's), the ELU family, Mish, Softsign, LogSigmoid, and PReLU's
    learned slopes (one, and one per feature)."""
    return xn.Sequential(L.Linear(12, 16), L.Hardswish(), L.PReLU(16), L.Linear(16, 16), L.ReLU6(), L.PReLU(),
                         L.Hardtanh(-2.0, 0.5), L.Hardsigmoid(), L.Linear(16, 16), L.SELU(), L.CELU(0.5), L.Mish(),
                         L.Linear(16, 16), L.Softsign(), L.LogSigmoid(), L.Linear(16, 4))


def _super_resolution() -> Any:
    """Images (N, 1, 4, 4) through PyTorch's super-resolution and MobileNet pieces: ZeroPad2d before an unpadded
    convolution, PReLU per channel, PixelShuffle up, Dropout2d (whole channels, drawn in the graph), an asymmetric
    ConstantPad2d and PixelUnshuffle down (one convolution: the fake CuPy runs its products thread by thread)."""
    return xn.Sequential(L.ZeroPad2d(1), L.Conv2d(1, 8, 3), L.PReLU(8), L.PixelShuffle(2), L.Dropout2d(0.25),
                         L.ConstantPad2d((2, 0, 1, 1), 0.5), L.Hardswish(), L.PixelUnshuffle(2), L.Flatten(),
                         L.Linear(8 * 5 * 5, 4))


def _decoder() -> Any:
    """Images (N, 2, 8, 8) down by a strided Conv2d, through a Linear bottleneck (Flatten, Unflatten) and back up
    by ConvTranspose2d (overlapping windows summed by col2im, output_padding) and Upsample (a broadcast), then
    resized by Upsample's products (bilinear, A_h @ x @ A_w^T: xpnet's kernel while captured) and classified."""
    return xn.Sequential(L.Conv2d(2, 8, 3, stride=2, padding=1), L.ReLU(),
                         L.Flatten(), L.Linear(8 * 4 * 4, 8 * 4 * 4), L.Unflatten(1, (8, 4, 4)),
                         L.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), L.Tanh(),
                         L.Upsample(scale_factor=2), L.ConvTranspose2d(4, 2, 2, stride=2, bias=False), L.ReLU(),
                         L.MaxPool2d(4), L.Upsample(size=(6, 10), mode="bilinear", align_corners=True), L.Flatten(),
                         L.Linear(2 * 6 * 10, 4))


def _grouped() -> Any:
    """Images (N, 4, 8, 8) through the grouped paths: Conv2d with groups=2 (a product per group), a depthwise
    Conv2d with channel multiplier 2 (window sums added back into the padded input), a strided grouped Conv2d
    (its input gradient in parts) and a grouped ConvTranspose2d."""
    return xn.Sequential(L.Conv2d(4, 8, 3, padding=1, groups=2), L.ReLU(),
                         L.Conv2d(8, 16, 3, padding=1, groups=8, bias=False), L.Tanh(),
                         L.Conv2d(16, 8, 3, stride=2, padding=1, groups=4), L.ReLU(),
                         L.ConvTranspose2d(8, 4, 2, stride=2, groups=2), L.ReLU(),
                         L.MaxPool2d(4), L.Flatten(), L.Linear(4 * 2 * 2, 4))


def _dilated() -> Any:
    """Images (N, 1, 6, 6) through PyTorch's dilation: Conv2d, a dilated MaxPool2d (portable code on CuPy) and a
    ConvTranspose2d whose output_padding passes its stride (possible with dilation), kept small (the fake CuPy
    runs the captured products thread by thread)."""
    return xn.Sequential(L.Conv2d(1, 4, 3, padding=2, dilation=2), L.ReLU(), L.MaxPool2d(3, 2, 1, dilation=2),
                         L.ConvTranspose2d(4, 2, 2, 1, 0, 1, dilation=2), L.Tanh(), L.Flatten(), L.Linear(2 * 5 * 5, 4))


def _layernorm() -> Any:
    """LayerNorm over the features, with and without its affine parameters, and over a sample's (C, H, W)."""
    return xn.Sequential(L.LayerNorm((2, 6, 6)), L.Flatten(), L.Linear(72, 16), L.LayerNorm(16), L.GELU(),
                         L.Linear(16, 16), L.LayerNorm(16, elementwise_affine=False), L.ReLU(), L.Linear(16, 4))


def _groupnorm() -> Any:
    """Images (N, 2, 6, 6) through InstanceNorm2d (no affine, PyTorch's default) and GroupNorm, then features
    through GroupNorm of 4 groups and, seen as (N, 4, 4), InstanceNorm1d with its affine parameters. No bias
    before a GroupNorm: its gradient is zero up to rounding (see _batchnorm)."""
    return xn.Sequential(L.InstanceNorm2d(2), L.GroupNorm(1, 2), L.Flatten(), L.Linear(72, 16, bias=False),
                         L.GroupNorm(4, 16), L.ReLU(), L.Unflatten(1, (4, 4)), L.InstanceNorm1d(4, affine=True),
                         L.Flatten(), L.Linear(16, 4))


def _rmsnorm() -> Any:
    """Sequences (N, 6, 8) through RMSNorm with its scale and PyTorch's eps=None (the dtype's epsilon), and over
    the last two axes with an eps of its own."""
    return xn.Sequential(L.RMSNorm(8), L.Linear(8, 16), L.GELU(), L.RMSNorm((6, 16), 1e-6), L.Flatten(),
                         L.Linear(96, 4))


def _transformer() -> Any:
    """Sequences (N, 6, 8) through PositionalEncoding (its table made in the warm-up steps, its dropout drawn in
    the graph), a stack of two pre-norm GELU Transformer encoder layers with dropout (the attention's own
    included: drawn in the graph) and a final LayerNorm, a post-norm ReLU layer, then classified.
    No biases: the key projection's bias has a gradient of zero up to rounding (softmax ignores what is added to
    all of a query's scores), which Adam would scale up to steps of lr whose sign the rounding picks."""
    layer = L.TransformerEncoderLayer(8, 2, 16, dropout=0.1, activation="gelu", norm_first=True, bias=False)
    return xn.Sequential(L.PositionalEncoding(8, 0.1), L.TransformerEncoder(layer, 2, norm=L.LayerNorm(8)),
                         L.TransformerEncoderLayer(8, 4, 16, dropout=0.0, bias=False), L.Flatten(),
                         L.Linear(6 * 8, 4))


def _sequence() -> Any:
    """Sequences (N, 4, 12) through the 1-d layers (their 2-d ones on (N, C, 1, L)): a grouped, dilated Conv1d,
    MaxPool1d, a strided Conv1d (its input gradient in parts), ConvTranspose1d, AvgPool1d and the adaptive ones."""
    return xn.Sequential(L.Conv1d(4, 8, 3, padding=2, dilation=2, groups=2), L.ReLU(), L.MaxPool1d(2),
                         L.Conv1d(8, 8, 3, stride=2, padding=1), L.Tanh(), L.ConvTranspose1d(8, 4, 2, stride=2),
                         L.AvgPool1d(3, 1, 1), L.Concat(L.AdaptiveAvgPool1d(3), L.AdaptiveMaxPool1d(3)), L.Flatten(),
                         L.Linear(4 * 6, 4))


def _padding_modes() -> Any:
    """Images (N, 2, 4, 5) through PyTorch's reflection, replication and circular paddings, as layers and as
    Conv2d's and Conv1d's padding_mode (concatenated slices, flips and broadcasts; their gradients summed back),
    InstanceNorm2d and 1d tracking running statistics (moved on in place), then, seen as (N, 4, 10), the 1-d ones.
    No bias before an InstanceNorm (see _batchnorm)."""
    return xn.Sequential(L.ReflectionPad2d((1, 2, 0, 1)),
                         L.Conv2d(2, 3, 3, padding=1, bias=False, padding_mode="circular"),
                         L.InstanceNorm2d(3, affine=True, track_running_stats=True), L.ReplicationPad2d(1),
                         L.Conv2d(3, 2, 3, stride=2, padding=1, padding_mode="reflect"), L.Tanh(), L.Flatten(),
                         L.Unflatten(1, (4, 10)), L.ReflectionPad1d(2),
                         L.Conv1d(4, 2, 3, padding=1, bias=False, padding_mode="replicate"), L.CircularPad1d((1, 2)),
                         L.InstanceNorm1d(2, momentum=0.2, track_running_stats=True), L.ReplicationPad1d(1),
                         L.Flatten(), L.Linear(2 * 19, 4))


def _gated() -> Any:
    """PyTorch's GLU (halves of the features, then of the channels), Threshold, the shrinks, Softmin, and
    Dropout1d's whole channels of (N, 4, 4), drawn in the graph."""
    return xn.Sequential(L.Linear(12, 16), L.GLU(), L.Linear(8, 16), L.Threshold(0.1, -0.5), L.Softshrink(0.2),
                         L.Linear(16, 16), L.Hardshrink(0.1), L.Tanhshrink(), L.Unflatten(1, (4, 4)),
                         L.Dropout1d(0.25), L.GLU(1), L.Flatten(), L.Softmin(dim=1), L.Linear(8, 4))


def _windows() -> Any:
    """Images (N, 2, 6, 6): ShuffleNet's grouped convolutions with ChannelShuffle between, Unfold's overlapping
    windows (im2col) summed back by Fold (col2im), then, seen as (N, 4, 36), ZeroPad1d and ConstantPad1d, and
    SELU with AlphaDropout, drawn in the graph."""
    return xn.Sequential(L.Conv2d(2, 4, 1, groups=2), L.ChannelShuffle(2), L.Conv2d(4, 4, 3, padding=1, groups=2),
                         L.Unfold(3, padding=1, stride=2), L.Tanh(), L.Fold((6, 6), 3, padding=1, stride=2),
                         L.Flatten(), L.Unflatten(1, (4, 36)), L.ZeroPad1d((1, 2)), L.ConstantPad1d(1, 0.5),
                         L.Flatten(), L.SELU(), L.AlphaDropout(0.2), L.Linear(4 * 41, 4))

def _frozen_batchnorm() -> Any:
    """Images (N, 2, 6, 6): a convolution whose BatchNorm xn.freeze_batch_norm froze, with statistics and affine
    of its own (drawn from a generator of the model's), then a frozen BatchNorm over features."""
    model = xn.Sequential(L.Conv2d(2, 4, 3, padding=1, bias=False), L.BatchNorm(4), L.ReLU(), L.MaxPool2d(2),
                          L.Flatten(), L.BatchNorm(36), L.Tanh(), L.Linear(36, 4))
    rng = np.random.default_rng(5)
    for bn in (model[1], model[5]):
        c = bn.num_features
        bn.params.update(gamma=rng.uniform(0.5, 2, c).astype(np.float32), beta=rng.normal(size=c).astype(np.float32))
        bn.buffers.update(running_mean=rng.normal(size=c).astype(np.float32),
                          running_var=rng.uniform(0.5, 2, c).astype(np.float32))
    return xn.freeze_batch_norm(model)

# name -> (the model, the shape of one sample)
MODELS: dict[str, tuple[Callable[[], Any], tuple[int, ...]]] = {
    "batchnorm": (_batchnorm, (12,)), "batchnorm-options": (_batchnorm_options, (12,)),
    "pooling": (_pooling, (2, 6, 6)), "pooling-options": (_pooling_options, (2, 6, 6)),
    "adaptive": (_adaptive, (2, 7, 6)),
    "residual": (_residual, (12,)), "cnn": (_cnn, (2, 8, 8)), "activations": (_activations, (12,)),
    "more-activations": (_more_activations, (12,)), "super-resolution": (_super_resolution, (1, 4, 4)),
    "decoder": (_decoder, (2, 8, 8)), "grouped": (_grouped, (4, 8, 8)),
    "dilated": (_dilated, (1, 6, 6)), "layernorm": (_layernorm, (2, 6, 6)),
    "groupnorm": (_groupnorm, (2, 6, 6)), "rmsnorm": (_rmsnorm, (6, 8)),
    "transformer": (_transformer, (6, 8)), "sequence": (_sequence, (4, 12)),
    "padding-modes": (_padding_modes, (2, 4, 5)), "gated": (_gated, (12,)),
    "windows": (_windows, (2, 6, 6)), "frozen-batchnorm": (_frozen_batchnorm, (2, 6, 6))}


@contextlib.contextmanager
def counting_launches() -> Iterator[list[int]]:
    """The number of graph launches made inside the block, in ``count[0]``."""
    count = [0]
    launch = StepGraph.launch

    def counted(self: Any) -> None:
        count[0] += 1
        launch(self)

    StepGraph.launch = counted
    try:
        yield count
    finally:
        StepGraph.launch = launch


def train(name: str, graph: bool | None, epochs: int = 3, dev: Any = "cuda", samples: int = N) -> dict[str, Any]:
    """``epochs`` of Adam on model ``name`` from seed 0 (``samples`` of data): its state (parameters and running
    statistics), the epochs' losses and accuracies, the graph launches and the optimizer's step count."""
    make, sample = MODELS[name]
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((samples, *sample)).astype(np.float32), rng.integers(0, 4, samples)
    xn.init.seed(0)
    model, optimizer = make(), xn.optim.Adam(0.01)
    with counting_launches() as launches:
        h = xn.train(model, (x, t), loss="cross_entropy", optimizer=optimizer, epochs=epochs, batch_size=BATCH,
                     device=dev, progress=False, graph=graph)
    return {"state": {k: xn.to_numpy(v).tolist() for k, v in model.state().items()},
            "losses": [e["train_loss"] for e in h.epochs], "accuracy": [e["train_accuracy"] for e in h.epochs],
            "launches": launches[0], "t": optimizer.t}


def assert_same_training(eager: dict[str, Any], captured: dict[str, Any], rtol: float = 2e-4,
                         atol: float = 2e-5) -> None:
    """The captured run's state equals the eager run's within float32 rounding, its losses too, its
    accuracies and step count exactly."""
    assert captured["state"].keys() == eager["state"].keys()
    for k, v in eager["state"].items():
        np.testing.assert_allclose(captured["state"][k], v, rtol=rtol, atol=atol, err_msg=k)
    np.testing.assert_allclose(captured["losses"], eager["losses"], rtol=1e-5)
    assert captured["accuracy"] == eager["accuracy"]
    assert captured["t"] == eager["t"]
