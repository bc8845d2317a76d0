"""PyTorch's dilation of Conv2d, ConvTranspose2d and MaxPool2d: equal to torch.nn.functional in float64 (y, dx,
dW, db) on every device, through each of Conv2d's paths; gradcheck of a dilated model; save/load, PyTorch's
state dict and Chainer's dilate; bad dilations named."""

import numpy as np
import pytest

import xpnet as xn
from conftest import DEVICE_MAKERS
from xpnet.layers import Conv2d, ConvTranspose2d, MaxPool2d
from xpnet.testing import assert_placed

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
F = torch.nn.functional

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _everywhere(cases, on_jax):
    """Each case on numpy, array-api-strict device1, torch and CuPy (gpu); on JAX, which compiles each operation
    for each shape (seconds a case), only the case with id ``on_jax``."""
    where = ["numpy", "strict-device1", "torch", "cupy"]
    return [pytest.param(d, *case.values, id=f"{d}-{case.id}", marks=[pytest.mark.gpu] if d == "cupy" else [])
            for case in cases for d in where + (["jax"] if case.id == on_jax else [])]


def _compare(where, layer, x, reference):
    """layer on dev gives reference's y and gradients (input first, then W and b, as torch tensors) for x and
    one random dy; reference(x, *params) is the torch.nn.functional call."""
    rng = np.random.default_rng(1)
    for name in layer.params:
        layer.params[name] = rng.standard_normal(tuple(layer.params[name].shape))
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, *layer.params.values())]
    ty = reference(*theirs)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    dev = DEVICE_MAKERS[where]()
    layer.to(dev)
    y = layer.forward(xn.to_device(x, dev))
    dx = layer.backward(xn.to_device(dy, dev))
    assert_placed(y, dev, "float64")
    ours = [y, dx, *layer.grads.values()]
    for name, a, b in zip(["y", "dx", *layer.grads], ours, [ty, *(t.grad for t in theirs)]):
        np.testing.assert_allclose(xn.to_numpy(a), b.detach().numpy(), err_msg=name, **TOL)


# (in, out, kernel_size, stride, padding, dilation, groups, input H, W)
CONV = [
    pytest.param(2, 3, 3, 1, 2, 2, 1, 7, 6, id="per-sample-s1"),
    pytest.param(3, 2, 3, 2, (1, 2), (2, 3), 1, 9, 10, id="per-sample-s2-asymmetric"),
    # 72 rows of im2col: one product over the batch, dx by the stride-1 flat layout, then in parts (stride 2)
    pytest.param(8, 3, 3, 1, (2, 1), (2, 1), 1, 6, 5, id="one-product-s1"),
    pytest.param(16, 4, 3, 2, 1, 2, 2, 8, 7, id="one-product-s2-groups"),
    pytest.param(4, 8, (3, 2), (2, 1), 1, (2, 3), 4, 7, 8, id="depthwise"),
]


@pytest.mark.parametrize("where,cin,cout,k,s,p,d,g,h,w", _everywhere(CONV, "per-sample-s1"))
def test_conv2d_equal_to_pytorch(where, cin, cout, k, s, p, d, g, h, w):
    x = np.random.default_rng(0).standard_normal((2, cin, h, w))
    _compare(where, Conv2d(cin, cout, k, s, p, d, g, dtype="float64"), x,
             lambda x, W, b: F.conv2d(x, W, b, s, p, d, g))


# (in, out, kernel_size, stride, padding, output_padding, groups, dilation, input H, W)
TRANSPOSED = [
    pytest.param(2, 3, 3, 1, 0, 0, 1, 2, 3, 4, id="s1"),
    pytest.param(4, 4, 3, 2, 1, 1, 2, (2, 3), 3, 3, id="s2-groups-asymmetric"),
    # output_padding >= stride (allowed where dilation > stride): rows from the cropped padding, then bias only
    pytest.param(2, 2, 3, 1, (1, 0), (1, 1), 1, (2, 2), 3, 4, id="output-padding-from-the-padding"),
    pytest.param(2, 2, 2, 1, 0, 2, 1, 3, 2, 3, id="output-padding-past-the-windows"),
]


@pytest.mark.parametrize("where,cin,cout,k,s,p,op,g,d,h,w", _everywhere(TRANSPOSED, "output-padding-from-the-padding"))
def test_conv_transpose2d_equal_to_pytorch(where, cin, cout, k, s, p, op, g, d, h, w):
    x = np.random.default_rng(0).standard_normal((2, cin, h, w))
    _compare(where, ConvTranspose2d(cin, cout, k, s, p, op, g, True, d, dtype="float64"), x,
             lambda x, W, b: F.conv_transpose2d(x, W, b, s, p, op, g, d))


POOL = [pytest.param(3, 1, 1, 2, False, id="k3-p1"), pytest.param(2, 2, 1, (2, 3), True, id="s2-ceil-asymmetric"),
        pytest.param((2, 3), 1, 0, (3, 1), False, id="k2x3")]


@pytest.mark.parametrize("where,k,s,p,d,ceil_mode", _everywhere(POOL, "k2x3"))
def test_maxpool2d_equal_to_pytorch(where, k, s, p, d, ceil_mode):
    """On NumPy (Numba) and CuPy the kernels take contiguous windows only: a dilated window runs as portable code."""
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 8))
    _compare(where, MaxPool2d(k, s, p, d, False, ceil_mode), x, lambda x: F.max_pool2d(x, k, s, p, d, ceil_mode))


def _dilated_model():
    L = xn.layers
    return xn.Sequential(L.Conv2d(2, 4, 3, 1, 2, 2, dtype="float64"), L.Tanh(),
                         L.MaxPool2d(2, 1, 0, (2, 1)), L.ConvTranspose2d(4, 2, 2, 2, 1, 1, 1, True, (1, 3),
                                                                        dtype="float64"),
                         L.Flatten(), L.Linear(2 * 9 * 7, 3, dtype="float64"))


def test_a_dilated_model_passes_gradcheck_and_a_save_load_round_trip(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 5))
    model = _dilated_model()
    assert xn.gradcheck(model, x, max_entries=30).ok
    model.save(tmp_path / "dilated.npz")
    loaded = xn.load(tmp_path / "dilated.npz")
    assert [loaded[i].dilation for i in (0, 2, 3)] == [(2, 2), (2, 1), (1, 3)]
    np.testing.assert_array_equal(loaded.forward(x, train=False), model.forward(x, train=False))
    assert "dilation=2" in repr(model[0]) and "dilation" not in repr(Conv2d(1, 1, 3))


def test_pytorchs_dilated_conv2d_loads_with_its_state_dict():
    theirs = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding="same", dilation=2, dtype=torch.float64))
    model = xn.Sequential(Conv2d(2, 3, 3, padding="same", dilation=2, dtype="float64"))
    xn.load_torch_state_dict(model, theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 7))
    np.testing.assert_allclose(model.forward(x), theirs(torch.tensor(x)).detach().numpy(), **TOL)


def test_chainers_dilate_is_named_dilation():
    with pytest.raises(TypeError, match=r"^Conv2d\(\) got an unexpected keyword argument 'dilate': dilation=\.\.\. "
                                        r"is Chainer's dilate"):
        Conv2d(1, 2, 3, dilate=2)


@pytest.mark.parametrize("make,message", [
    (lambda: Conv2d(1, 2, 3, dilation=0), r"^Conv2d: dilation must be an int >= 1 or a pair of them, got 0$"),
    (lambda: Conv2d(1, 2, 3, dilation=(2, -1)), r"^Conv2d: dilation must be an int >= 1 or a pair of them, got "
                                                r"\(2, -1\)$"),
    (lambda: MaxPool2d(2, dilation=(False, 2)), r"^MaxPool2d: dilation must be an int >= 1 or a pair of them"),
    (lambda: Conv2d(1, 2, 2, padding="same", dilation=3), r"^Conv2d: padding='same' needs stride 1 and odd kernel "
                                                          r"sizes or an even dilation here"),
    (lambda: Conv2d(1, 2, 3, dilation=3).forward(np.zeros((1, 1, 6, 9), np.float32)),
     r"^Conv2d: input \(1, 1, 6, 9\) padded by \(0, 0\) is 6x9, smaller than the 3x3 kernel dilated by \(3, 3\) "
     r"\(7x7\)$"),
])
def test_bad_dilations_are_named_clearly(make, message):
    with pytest.raises(ValueError, match=message):
        make()
