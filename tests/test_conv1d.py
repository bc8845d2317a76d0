"""Conv1d, ConvTranspose1d, MaxPool1d, AvgPool1d, AdaptiveAvgPool1d and AdaptiveMaxPool1d: each built with the same
arguments as PyTorch's nn class of its name gives PyTorch's y, dx, dW and db in float64 (its weights loaded from its
state dict) on NumPy and array-api-strict's device1, one case on torch and JAX; gradcheck; a PyTorch text CNN's
state dict; PyTorch's init; save, load and repr; errors of one line."""

import re

import numpy as np
import pytest

import xpnet as xn
from conftest import DEVICE_MAKERS
from xpnet.testing import assert_placed

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

TOL = {"rtol": 1e-12, "atol": 1e-12}
L = xn.layers

# (PyTorch's class name and xpnet's, the positional arguments, the keyword arguments, the input's L)
CASES = [
    pytest.param("Conv1d", (4, 6, 3, 2, 1, 2, 2), {}, 11, id="conv-s2-p1-d2-g2"),
    pytest.param("Conv1d", (3, 4, 5), {"padding": "same", "bias": False}, 7, id="conv-same-nobias"),
    pytest.param("Conv1d", (16, 4, 5, 1, 2), {}, 9, id="conv-one-product-s1"),
    pytest.param("Conv1d", (16, 4, 5, 3, 1), {}, 9, id="conv-one-product-s3"),
    pytest.param("Conv1d", (4, 8, 3, 1, 1, 1, 4), {}, 6, id="conv-depthwise"),
    pytest.param("ConvTranspose1d", (4, 6, 3, 2, 1, 1, 2), {}, 5, id="convT-s2-p1-op1-g2"),
    pytest.param("ConvTranspose1d", (3, 2, 2, 1, 0, 1), {"dilation": 2, "bias": False}, 4, id="convT-d2-op1-nobias"),
    pytest.param("MaxPool1d", (3, 2, 1), {"ceil_mode": True}, 10, id="max-s2-p1-ceil"),
    pytest.param("MaxPool1d", (2,), {"dilation": 2}, 9, id="max-d2"),
    pytest.param("AvgPool1d", (3, 2, 1, True, False), {}, 10, id="avg-ceil-exclude-pad"),
    pytest.param("AvgPool1d", (2,), {}, 7, id="avg-k2"),
    pytest.param("AdaptiveAvgPool1d", (4,), {}, 11, id="adaptive-avg"),
    pytest.param("AdaptiveMaxPool1d", (3,), {}, 11, id="adaptive-max"),
]


def assert_as_pytorch(name, args, kwargs, length, dev):
    rng = np.random.default_rng(0)
    theirs = getattr(torch.nn, name)(*args, **kwargs).double()
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape))))
    x = rng.standard_normal((2, args[0] if "Conv" in name else 3, length))
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(dy))
    layer = getattr(L, name)(*args, **kwargs)
    model = xn.Sequential(layer).to(dev, dtype="float64")
    assert xn.load_torch_state_dict(model, {"0." + k: v for k, v in theirs.state_dict().items()}) == ([], [])
    y = layer.forward(xn.to_device(x, dev))
    dx = layer.backward(xn.to_device(dy, dev))
    assert_placed(y, dev, "float64")
    assert_placed(dx, dev, "float64")
    ours = [y, dx, *(layer.grads[k] for k in ("W", "b") if k in layer.params)]
    expected = [ty.detach().numpy(), tx.grad.numpy(), *(p.grad.numpy() for p in theirs.parameters())]
    assert len(ours) == len(expected)
    for what, a, b in zip(["y", "dx", "dW", "db"], ours, expected):
        np.testing.assert_allclose(xn.to_numpy(a), b, err_msg=what, **TOL)


@pytest.mark.parametrize("device", ["numpy", "strict-device1"])
@pytest.mark.parametrize("name,args,kwargs,length", CASES)
def test_equal_to_pytorch_in_float64(device, name, args, kwargs, length):
    assert_as_pytorch(name, args, kwargs, length, DEVICE_MAKERS[device]())


@pytest.mark.parametrize("device", ["torch", "jax"])
def test_equal_to_pytorch_on_torch_and_jax(device):
    assert_as_pytorch("Conv1d", (4, 6, 3, 2, 1, 2, 2), {}, 11, DEVICE_MAKERS[device]())


def test_gradcheck_of_a_sequence_model(rng):
    xn.init.seed(0)
    model = xn.Sequential(L.Conv1d(2, 4, 3, padding=1, groups=2, dtype="float64"), L.Tanh(), L.MaxPool1d(2),
                          L.ConvTranspose1d(4, 3, 3, stride=2, dtype="float64"), L.AvgPool1d(3, 2, 1),
                          L.AdaptiveAvgPool1d(3))
    report = xn.gradcheck(model, rng.standard_normal((2, 2, 8)), rng.standard_normal((2, 3, 3)), "mse")
    assert report.ok, report


def test_backward_params_and_a_frozen_layer(rng):
    layer = L.Conv1d(3, 4, 3, 2, dtype="float64")
    x, dy = rng.standard_normal((2, 3, 9)), rng.standard_normal((2, 4, 4))
    layer.forward(x)
    layer.backward(dy)
    full = {k: np.array(v) for k, v in layer.grads.items()}
    layer.forward(x)
    assert layer.backward_params(dy) is None
    for k, v in full.items():
        np.testing.assert_array_equal(layer.grads[k], v)
    frozen = xn.Sequential(L.Conv1d(3, 4, 3, 2, dtype="float64")).requires_grad_(False)
    frozen.forward(x)
    frozen.backward(dy)
    assert frozen[0].grads == {}


def _text_cnn(sequential, nn):
    return sequential(nn.Conv1d(8, 6, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(6, 4, 3, dilation=2),
                         nn.ReLU(), nn.ConvTranspose1d(4, 4, 2, stride=2), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                         nn.Linear(4, 2))


def test_pytorchs_state_dict_gives_pytorchs_outputs_and_comes_back(rng):
    torch.manual_seed(0)
    theirs = _text_cnn(torch.nn.Sequential, torch.nn).double()
    ours = _text_cnn(xn.Sequential, L).to("cpu", dtype="float64")
    x = rng.standard_normal((3, 8, 12))
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    assert xn.load_torch_state_dict(ours, theirs.state_dict()) == ([], [])
    np.testing.assert_allclose(ours.forward(x, train=False), expected, **TOL)
    back = xn.torch_state_dict(ours)
    assert {k: v.shape for k, v in back.items()} == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}


def test_init_is_pytorchs_and_the_same_on_every_device():
    xn.init.seed(7)
    layer = L.Conv1d(16, 32, 5, groups=2)
    xn.init.seed(7)
    moved = L.Conv1d(16, 32, 5, groups=2).to(DEVICE_MAKERS["strict-device1"]())
    bound = 1 / np.sqrt(8 * 5)  # PyTorch's fan_in: in_channels // groups * k
    for name in ("W", "b"):
        v = layer.params[name]
        assert v.shape == tuple(getattr(torch.nn.Conv1d(16, 32, 5, groups=2), {"W": "weight", "b": "bias"}[name]).shape)
        assert np.abs(v).max() <= bound and v.max() > 0.8 * bound and v.min() < -0.8 * bound
        np.testing.assert_array_equal(xn.to_numpy(moved.params[name]), v)
    he = L.Conv1d(16, 32, 5, init="he").params
    assert 0.9 * np.sqrt(2 / 80) < he["W"].std() < 1.1 * np.sqrt(2 / 80) and not he["b"].any()


def test_save_load_and_repr(tmp_path, rng):
    model = xn.Sequential(L.Conv1d(3, 4, 3, padding="same", init="he"), L.MaxPool1d(2, ceil_mode=True),
                          L.ConvTranspose1d(4, 2, 3, 2, 1, 1, bias=False), L.AvgPool1d(3, 1, 1),
                          L.AdaptiveMaxPool1d(2))
    x = rng.standard_normal((2, 3, 7)).astype(np.float32)
    model.save(tmp_path / "m.npz")
    loaded = xn.load(tmp_path / "m.npz")
    assert repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    assert [repr(layer) for layer in model.layers] == [
        "Conv1d(in_channels=3, out_channels=4, kernel_size=3, padding=1, init='he', bias=True)",
        "MaxPool1d(kernel_size=2, stride=2, ceil_mode=True)",
        "ConvTranspose1d(in_channels=4, out_channels=2, kernel_size=3, stride=2, padding=1, output_padding=1, "
        "bias=False)",
        "AvgPool1d(kernel_size=3, stride=1, padding=1)", "AdaptiveMaxPool1d(output_size=2)"]


@pytest.mark.parametrize("make,message", [
    (lambda: L.Conv1d(4, 6, 3).forward(np.zeros((2, 11, 4), np.float32)),
     "Conv1d: expected 4 input channels (N, 4, L), got shape (2, 11, 4); this looks batch first (N, L, C), as an "
     "Embedding or LSTM gives: permute it to (N, C, L), xp.permute_dims(x, (0, 2, 1)), as PyTorch's Conv1d needs too"),
    (lambda: L.Conv1d(4, 6, 3).forward(np.zeros((2, 11), np.float32)),
     "Conv1d: expected a 3-d input (N, 4, L), got shape (2, 11); a batch of one-channel sequences (N, L) is "
     "x[:, None, :], one unbatched sequence (C, L) x[None]"),
    (lambda: L.MaxPool1d(2).forward(np.zeros((2, 3, 4, 4), np.float32)),
     "MaxPool1d: expected a 3-d input (N, C, L), got shape (2, 3, 4, 4); images (N, C, H, W) go to MaxPool2d"),
    (lambda: L.Conv1d(4, 6, (3, 3)), "Conv1d: kernel_size must be an int >= 1 (or a tuple of one), got (3, 3)"),
    (lambda: L.AvgPool1d(2, -1), "AvgPool1d: stride must be an int >= 1 (or a tuple of one), got -1"),
    (lambda: L.Conv1d(4, 6, 5).forward(np.zeros((2, 4, 3), np.float32)),
     "Conv1d: input (2, 4, 3) padded by 0 is of length 3, smaller than the kernel of length 5 (run as Conv2d on x "
     "(N, C, L) viewed as (N, C, 1, L))"),
    (lambda: L.Conv1d(4, 6, 3, 1, 0, "he"), "Conv1d: the sixth argument is PyTorch's dilation, got 'he'; pass the "
     "initialiser by keyword: init='he' (run as Conv2d"),
    (lambda: L.Conv1d(4, 6, 3, padding_mode="mirror"), "Conv1d: padding_mode must be one of 'zeros', 'reflect', "
     "'replicate', 'circular' (PyTorch's), got 'mirror' (run as Conv2d"),
    (lambda: L.Conv1d(4, 6, 3).forward(np.zeros((2, 4, 9), np.float32)).shape and
     L.Conv1d(4, 6, 3).backward(np.zeros((2, 6, 7), np.float32)), "Conv1d: backward called before forward"),
])
def test_errors_are_one_line_naming_the_layer(make, message):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=re.escape(message)):
        make()
