"""PyTorch's ZeroPad1d, ConstantPad1d, ChannelShuffle, Unfold, Fold, Bilinear and AlphaDropout: y and every
gradient equal to torch.nn's in float64 on NumPy, array-api-strict and CuPy (gpu); files; refusals."""

import numpy as np
import pytest

import xpnet as xn
from conftest import DEVICE_MAKERS
from torch_reference import assert_rearranging_layers_equal_torch

L = xn.layers
TORCH = "torch is not installed (pip install -e '.[backends]')"
DEVICES = ["numpy", "strict-device1", pytest.param("cupy", marks=pytest.mark.gpu)]

# (xpnet's layer, PyTorch's module by name and arguments, input shape)
LAYERS = [
    (lambda: L.ZeroPad1d((1, 3)), ("ZeroPad1d", (1, 3)), (2, 3, 5)),
    (lambda: L.ConstantPad1d(2, -1.5), ("ConstantPad1d", 2, -1.5), (3, 4)),
    (lambda: L.ChannelShuffle(3), ("ChannelShuffle", 3), (2, 6, 2, 3)),
    (lambda: L.ChannelShuffle(2), ("ChannelShuffle", 2), (2, 8, 3)),
    (lambda: L.Unfold(3), ("Unfold", 3), (2, 3, 5, 4)),
    (lambda: L.Unfold((2, 3), 2, (1, 0), (2, 1)), ("Unfold", (2, 3), 2, (1, 0), (2, 1)), (2, 2, 6, 7)),
    (lambda: L.Unfold(2, padding=1, stride=2), ("Unfold", 2, 1, 1, 2), (3, 5, 4)),
    (lambda: L.Fold((5, 4), 3), ("Fold", (5, 4), 3), (2, 27, 6)),
    (lambda: L.Fold(6, (2, 3), 2, 1, (2, 1)), ("Fold", 6, (2, 3), 2, 1, (2, 1)), (2, 12, 12)),
    (lambda: L.Fold((4, 5), 2, stride=2, padding=1), ("Fold", (4, 5), 2, 1, 1, 2), (8, 9)),
]


@pytest.mark.parametrize("device", DEVICES)
def test_rearranging_layers_equal_pytorch(device):
    torch = pytest.importorskip("torch", reason=TORCH)
    assert_rearranging_layers_equal_torch(torch, LAYERS, DEVICE_MAKERS[device](), np.random.default_rng(3))


def test_saved_and_loaded_with_their_arguments(tmp_path):
    model = xn.Sequential(L.ZeroPad1d((1, 0)), L.ConstantPad1d((0, 1), 2.0), L.ChannelShuffle(2))
    model.save(tmp_path / "m.npz")
    loaded = xn.load(tmp_path / "m.npz")
    assert repr(loaded) == repr(model)
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))
    windows = xn.Sequential(L.Unfold((2, 3), 2, 1, (2, 1)), L.Fold((5, 6), (2, 3), 2, 1, (2, 1)))
    windows.save(tmp_path / "w.npz")
    assert repr(xn.load(tmp_path / "w.npz")) == repr(windows)


@pytest.mark.parametrize("make, message", [
    (lambda: L.Unfold(0), r"Unfold: kernel_size must be an int >= 1 or a pair of them, got 0"),
    (lambda: L.Unfold(3).forward(np.zeros((1, 1, 2, 5))), r"Unfold: input \(1, 1, 2, 5\) padded by \(0, 0\) is 2x5"),
    (lambda: L.Fold(4, 2).forward(np.zeros((1, 8, 10))), r"Fold: expected \(N, C\*4, L\) or \(C\*4, L\) with L = 9"),
    (lambda: L.Fold(2, 3).forward(np.zeros((1, 9, 1))), r"Fold: output_size \(2, 2\) padded by \(0, 0\) is smaller"),
    (lambda: L.ZeroPad1d((1, 2, 3, 4)), r"ZeroPad1d: padding must be an int or 2 ints \(left, right\)"),
    (lambda: L.ConstantPad1d(-1, 0.0), "ConstantPad1d: padding .* has a negative side"),
    (lambda: L.ZeroPad1d(1).forward(np.zeros((1, 2, 3, 4))), r"ZeroPad1d: expected \(N, C, W\) or \(C, W\)"),
    (lambda: L.ChannelShuffle(0), "ChannelShuffle: groups must be a positive int, got 0"),
    (lambda: L.ChannelShuffle(4).forward(np.zeros((2, 6, 3))), "ChannelShuffle: .*C divisible by groups = 4"),
])
def test_refusals_name_the_layer_and_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


class _BilinearModel(xn.Model):
    def __init__(self, bias):
        super().__init__()
        self.bil = L.Bilinear(3, 4, 2, bias=bias, dtype="float64")

    def forward(self, x1, x2, train=True):
        return self.bil.forward(x1, x2, train)

    def backward(self, dy):
        return self.bil.backward(dy)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bias", [True, False])
def test_bilinear_equals_pytorch_with_its_state_dict(device, bias):
    """PyTorch's weights loaded by name; y, dx1, dx2 and both parameter gradients equal in float64, over a
    leading axis beyond the batch too."""
    torch = pytest.importorskip("torch", reason=TORCH)
    dev, rng = DEVICE_MAKERS[device](), np.random.default_rng(5)
    ref = torch.nn.Module()
    ref.bil = torch.nn.Bilinear(3, 4, 2, bias=bias, dtype=torch.float64)
    model = _BilinearModel(bias)
    xn.load_torch_state_dict(model, ref.state_dict())
    model.to(dev)
    x1, x2 = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 4))
    t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    yt = ref.bil(t1, t2)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(dy))
    y = model.forward(xn.to_device(x1, dev), xn.to_device(x2, dev))
    dx1, dx2 = model.backward(xn.to_device(dy, dev))
    expected = {"y": yt, "dx1": t1.grad, "dx2": t2.grad, "bil.W": ref.bil.weight.grad, "bil.b": ref.bil.bias}
    got = {"y": y, "dx1": dx1, "dx2": dx2, **model.named_grads()}
    assert set(got) == {"y", "dx1", "dx2", "bil.W"} | ({"bil.b"} if bias else set())
    if bias:
        expected["bil.b"] = ref.bil.bias.grad
    for key, value in got.items():
        xn.testing.assert_placed(value, dev, "float64")
        np.testing.assert_allclose(xn.to_numpy(value), expected[key].detach().numpy(), rtol=1e-12, atol=1e-12,
                                   err_msg=key)


def test_bilinear_draws_as_pytorch_and_refuses_what_it_cannot_take():
    xn.init.seed(0)
    layer = L.Bilinear(16, 3, 500)
    bound = 1 / 4
    for w in (layer.weight, layer.bias):
        assert w.dtype == np.float32 and -bound <= w.min() and w.max() <= bound and w.max() > 0.9 * bound
    assert layer.weight.shape == (500, 16, 3)
    with pytest.raises(ValueError, match=r"Bilinear: expected x1 \(..., 16\) and x2 \(..., 3\) with the same leading "
                                         r"axes, got \(2, 16\) and \(3, 3\)"):
        layer(np.zeros((2, 16), np.float32), np.zeros((3, 3), np.float32))
    with pytest.raises(TypeError, match="Bilinear: bias must be True or False"):
        L.Bilinear(2, 2, 2, "yes")


@pytest.mark.parametrize("device", DEVICES)
def test_alpha_dropout_equals_pytorch_for_pytorchs_mask(device, monkeypatch):
    """PyTorch's draw read back from its output (a dropped element is -alpha * a * (1 - p)), given to
    xpnet's draw: y and dx as PyTorch's."""
    torch = pytest.importorskip("torch", reason=TORCH)
    dev, rng, p = DEVICE_MAKERS[device](), np.random.default_rng(2), 0.3
    x = rng.standard_normal((6, 50))
    xt = torch.tensor(x, requires_grad=True)
    torch.manual_seed(0)
    yt = torch.nn.AlphaDropout(p)(xt)
    dy = rng.standard_normal(x.shape)
    yt.backward(torch.from_numpy(dy))
    a = 1 / np.sqrt((1.7580993408473766 ** 2 * p + 1) * (1 - p))
    dropped = np.isclose(yt.detach().numpy(), -1.7580993408473766 * a * (1 - p), rtol=0, atol=1e-12)
    assert 0 < dropped.sum() < dropped.size
    draw = np.where(dropped, 0.0, 0.99)  # xpnet's numbers, drawn on the host or (CuPy) on the device
    monkeypatch.setattr("xpnet.backend.random._host_draw", lambda gen, shape, like: draw)
    monkeypatch.setattr("xpnet.backend.random.uniform", lambda gen, shape, like, owner: xn.to_device(draw, dev))
    layer = L.AlphaDropout(p)
    y, dx = layer.forward(xn.to_device(x, dev)), layer.backward(xn.to_device(dy, dev))
    for got, expected in ((y, yt.detach().numpy()), (dx, xt.grad.numpy())):
        xn.testing.assert_placed(got, dev, "float64")
        np.testing.assert_allclose(xn.to_numpy(got), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", ["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_alpha_dropout_keeps_mean_and_variance_and_is_the_identity_in_evaluation(device):
    """Drawn as Dropout draws (on CuPy on the device, Philox): it drops where Dropout of its seed drops."""
    dev = DEVICE_MAKERS[device]()
    host = np.random.default_rng(0).standard_normal((200, 1000))
    x = xn.to_device(host, dev)
    layer = L.AlphaDropout(0.2, seed=1)
    y_dev = layer.forward(x)
    xn.testing.assert_placed(y_dev, dev, "float64")
    y = xn.to_numpy(y_dev)
    assert abs(y.mean()) < 0.01 and abs(y.var() - 1) < 0.01
    dropped = xn.to_numpy(layer.backward(xn.to_device(np.ones_like(host), dev))) == 0
    assert abs(dropped.mean() - 0.2) < 0.005
    np.testing.assert_array_equal(dropped, xn.to_numpy(L.Dropout(0.2, seed=1).forward(x)) == 0)
    np.testing.assert_array_equal(xn.to_numpy(layer.forward(x, train=False)), host)
    np.testing.assert_array_equal(xn.to_numpy(layer.backward(x)), host)
    np.testing.assert_array_equal(xn.to_numpy(L.AlphaDropout(0.2, seed=1).forward(x)), y)
