"""PyTorch's ZeroPad2d, ConstantPad2d, PixelShuffle, PixelUnshuffle (against PyTorch on every device, y and dx) and
Dropout2d (whole channels, Dropout's draws); gradcheck, arguments, files."""

import numpy as np
import pytest

import xpnet as xn
from torch_reference import assert_rearranging_layers_equal_torch

L = xn.layers

# (xpnet's layer, PyTorch's module by name and arguments, input shape)
LAYERS = [
    (lambda: L.ZeroPad2d(2), ("ZeroPad2d", 2), (2, 3, 4, 5)),
    (lambda: L.ConstantPad2d((1, 2, 0, 3), -1.5), ("ConstantPad2d", (1, 2, 0, 3), -1.5), (2, 3, 4, 5)),
    (lambda: L.ConstantPad2d(1, 2.0), ("ConstantPad2d", 1, 2.0), (3, 4, 5)),
    (lambda: L.PixelShuffle(2), ("PixelShuffle", 2), (2, 8, 3, 5)),
    (lambda: L.PixelShuffle(3), ("PixelShuffle", 3), (1, 2, 9, 2, 3)),
    (lambda: L.PixelUnshuffle(2), ("PixelUnshuffle", 2), (2, 3, 4, 6)),
]


def test_each_layer_equals_pytorch(dev, rng):
    """Data moved, not computed: equal exactly, forward and backward, in float64."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    assert_rearranging_layers_equal_torch(torch, LAYERS, dev, rng)


def test_dropout2d_zeroes_whole_channels_with_dropouts_draws_and_scaling(dev, rng):
    x = xn.to_device(rng.standard_normal((8, 16, 3, 2)) + 5.0, dev)
    y = xn.to_numpy(L.Dropout2d(0.25, seed=3).forward(x))
    kept = xn.to_numpy(L.Dropout(0.25, seed=3).forward(xn.to_device(np.ones((8, 16, 1, 1)), dev))) != 0
    np.testing.assert_allclose(y, np.where(kept, xn.to_numpy(x) / 0.75, 0.0), rtol=1e-15)
    assert 0 < (~kept).sum() < kept.size
    layer = L.Dropout2d(0.25, seed=3)
    layer.eval()
    assert layer(x) is x


def test_dropout2d_backward_drops_the_same_channels_and_passes_gradcheck(rng):
    layer = L.Dropout2d(0.5, seed=0)
    y = layer.forward(np.ones((4, 6, 2, 2)))
    np.testing.assert_array_equal(layer.backward(np.ones((4, 6, 2, 2))), y)
    xn.init.seed(0)
    model = xn.Sequential(L.Conv2d(2, 8, 3, padding=1, dtype="float64"), L.Dropout2d(0.5, seed=1),
                          L.PixelShuffle(2), L.ConstantPad2d((1, 1, 0, 2), 0.5), L.PixelUnshuffle(2), L.Flatten(),
                          L.Linear(128, 3, dtype="float64"))
    report = xn.gradcheck(model, rng.standard_normal((2, 2, 3, 3)))
    assert report.ok, str(report)


def test_saved_and_loaded_with_their_arguments(tmp_path, rng):
    model = xn.Sequential(L.ZeroPad2d((1, 0, 2, 0)), L.ConstantPad2d(1, -2.0), L.PixelShuffle(2),
                          L.PixelUnshuffle(2), L.Dropout2d(0.3, seed=5))
    model.save(tmp_path / "image.npz")
    loaded = xn.load(tmp_path / "image.npz")
    assert repr(loaded) == repr(model) == ("Sequential(\n  (0): ZeroPad2d(padding=(1, 0, 2, 0))\n  (1): ConstantPad2d("
                                           "padding=(1, 1, 1, 1), value=-2.0)\n  (2): PixelShuffle(upscale_factor=2)"
                                           "\n  (3): PixelUnshuffle(downscale_factor=2)\n  (4): Dropout2d(p=0.3, "
                                           "seed=5)\n)")
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))


@pytest.mark.parametrize("make, message", [
    (lambda: L.ZeroPad2d(-1), r"^ZeroPad2d: padding \(-1, -1, -1, -1\) has a negative side, which PyTorch reads as a "
                              r"crop; xpnet pads only: slice the input instead"),
    (lambda: L.ConstantPad2d((1, 2), 0.0), r"^ConstantPad2d: padding must be an int or 4 ints \(left, right, top, "
                                           r"bottom\), PyTorch's, got \(1, 2\)$"),
    (lambda: L.ConstantPad2d(1, "0"), r"^ConstantPad2d: value must be a number, got '0'$"),
    (lambda: L.ZeroPad2d(1).forward(np.zeros((2, 3))), r"^ZeroPad2d: expected \(N, C, H, W\) or \(C, H, W\), got "
                                                       r"shape \(2, 3\)$"),
    (lambda: L.PixelShuffle(0), r"^PixelShuffle: upscale_factor must be a positive int, got 0$"),
    (lambda: L.PixelShuffle(2).forward(np.zeros((1, 6, 2, 2))),
     r"^PixelShuffle: the channels, 6 \(axis -3 of \(1, 6, 2, 2\)\), must be divisible by upscale_factor\*\*2 = 4$"),
    (lambda: L.PixelUnshuffle(2).forward(np.zeros((1, 1, 4, 3))),
     r"^PixelUnshuffle: height and width \(4, 3\) must be divisible by downscale_factor = 2$"),
    (lambda: L.Dropout2d(0.5).forward(np.zeros((2, 3, 4))),
     r"^Dropout2d: expected \(N, C, H, W\), got shape \(2, 3, 4\) \(PyTorch reads a 3-d input as \(N, C, L\)\); "
     r"for that, Dropout1d$"),
    (lambda: L.Dropout2d(0.25).forward(np.zeros((8, 64))),  # mnist_rnn's Dropout2d after a BatchNorm1d
     r"^Dropout2d: expected \(N, C, H, W\), got shape \(8, 64\); PyTorch drops single values of a 2-d input, as "
     r"Dropout does \(deprecated, with a warning\): use xn.layers.Dropout\(p\)$"),
    (lambda: L.Dropout2d(0.5, True), r"^Dropout2d: the second argument is seed \(an int\), got True"),
    (lambda: L.Dropout2d(inplace=True), r"^Dropout2d: inplace=True is not supported"),
    (lambda: L.Dropout2d(1.0), r"^Dropout2d: p must be a float in \[0, 1\), got 1.0$"),
])
def test_bad_arguments_and_inputs_say_what_to_write(make, message):
    with pytest.raises(ValueError, match=message):
        make()
