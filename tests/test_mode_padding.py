"""PyTorch's ReflectionPad, ReplicationPad, CircularPad (1d and 2d) and Conv2d's / Conv1d's padding_mode: against
PyTorch in float64 on NumPy and array-api-strict's second device (y, dx; dW, db), gradcheck, files, PyTorch's weights,
refusals."""

import numpy as np
import pytest

import xpnet as xn
from conftest import DEVICE_MAKERS
from torch_reference import torch_run

L = xn.layers
TORCH = "torch is not installed (pip install -e '.[backends]')"

# (layer name, padding, input shape): uneven sides, unbatched inputs, a reflection of size - 1, a full wrap
PADS = [
    ("ReflectionPad2d", (2, 1, 0, 3), (2, 3, 4, 5)),
    ("ReflectionPad1d", (4, 1), (3, 5)),
    ("ReplicationPad2d", (3, 0, 1, 4), (3, 2, 3)),
    ("ReplicationPad1d", 2, (2, 3, 1)),
    ("CircularPad2d", (3, 1, 2, 0), (1, 2, 3, 3)),
    ("CircularPad1d", (3, 2), (2, 3, 3)),
]


DEVICES = ["numpy", "strict-device1", pytest.param("cupy", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", DEVICES)
def test_pad_layers_equal_pytorch(device, rng):
    torch = pytest.importorskip("torch", reason=TORCH)
    dev = DEVICE_MAKERS[device]()
    for name, padding, shape in PADS:
        x = rng.standard_normal(shape)
        y_t, dy, (dx_t,) = torch_run(torch, getattr(torch.nn, name)(padding), x, rng=rng)
        layer = getattr(L, name)(padding)
        y, dx = layer.forward(xn.to_device(x, dev)), layer.backward(xn.to_device(dy, dev))
        xn.testing.assert_placed(y, dev, "float64")
        xn.testing.assert_placed(dx, dev, "float64")
        np.testing.assert_array_equal(xn.to_numpy(y), y_t, err_msg=name)
        np.testing.assert_allclose(xn.to_numpy(dx), dx_t, rtol=1e-13, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv_padding_modes_equal_pytorch(mode, device, rng):
    """Conv2d (strided and dilated, depthwise) and Conv1d: y, dx, dW, db."""
    torch = pytest.importorskip("torch", reason=TORCH)
    dev = DEVICE_MAKERS[device]()
    cases = [("Conv2d", (3, 4, 3), {"padding": (2, 1), "stride": 2, "dilation": (1, 2)}, (2, 3, 5, 6)),
             ("Conv2d", (3, 6, 3), {"padding": "same", "groups": 3}, (1, 3, 4, 4)),
             ("Conv1d", (2, 3, 3), {"padding": 2}, (2, 2, 5))]
    for name, args, kwargs, shape in cases:
        theirs = getattr(torch.nn, name)(*args, padding_mode=mode, dtype=torch.float64, **kwargs)
        ours = getattr(L, name)(*args, padding_mode=mode, dtype="float64", **kwargs)
        ours.load_state_dict({"W": theirs.weight.detach().numpy(), "b": theirs.bias.detach().numpy()})
        ours.to(dev)
        x = rng.standard_normal(shape)
        y_t, dy, (dx_t,) = torch_run(torch, theirs, x, rng=rng)
        y, dx = ours.forward(xn.to_device(x, dev)), ours.backward(xn.to_device(dy, dev))
        for got, expected in ((y, y_t), (dx, dx_t), (ours.grads["W"], theirs.weight.grad.numpy()),
                              (ours.grads["b"], theirs.bias.grad.numpy())):
            xn.testing.assert_placed(got, dev, "float64")
            np.testing.assert_allclose(xn.to_numpy(got), expected, rtol=1e-12, atol=1e-12, err_msg=repr(ours))


def test_gradcheck_through_reflection_and_circular_padding(rng):
    xn.init.seed(0)
    model = xn.Sequential(L.ReflectionPad2d((2, 1, 1, 2)), L.Conv2d(2, 3, 3, padding=1, padding_mode="circular",
                                                                   dtype="float64"),
                          L.ReplicationPad2d(1), L.Conv2d(3, 2, 3, padding=1, padding_mode="reflect", dtype="float64"),
                          L.Flatten(), L.Linear(2 * 9 * 8, 3, dtype="float64"))
    report = xn.gradcheck(model, rng.standard_normal((2, 2, 4, 3)))
    assert report.ok, str(report)


def test_files_keep_the_padding_and_pytorchs_weights_load(tmp_path, rng):
    torch = pytest.importorskip("torch", reason=TORCH)
    theirs = torch.nn.Sequential(torch.nn.ReflectionPad2d(1),
                                 torch.nn.Conv2d(2, 3, 3, padding=1, padding_mode="replicate"),
                                 torch.nn.CircularPad2d((1, 0, 2, 0)))
    model = xn.Sequential(L.ReflectionPad2d(1), L.Conv2d(2, 3, 3, padding=1, padding_mode="replicate"),
                          L.CircularPad2d((1, 0, 2, 0)))
    xn.load_torch_state_dict(model, theirs.state_dict())
    x = rng.standard_normal((2, 2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(model(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "pads.npz")
    loaded = xn.load(tmp_path / "pads.npz")
    assert repr(loaded) == repr(model)
    assert loaded[1].padding_mode == "replicate" and "padding_mode='replicate'" in repr(model)
    np.testing.assert_array_equal(loaded(x), model(x))


@pytest.mark.parametrize("make, message", [
    (lambda: L.ReflectionPad2d(3).forward(np.zeros((1, 1, 3, 4))),
     r"^ReflectionPad2d: reflect padding \(3, 3\) on axis -2 must be smaller than the input's size there, 3 "
     r"\(PyTorch's rule: a reflection repeats no edge value\), got input shape \(1, 1, 3, 4\); pad less, or use "
     r"ReplicationPad2d$"),
    (lambda: L.CircularPad1d((0, 4)).forward(np.zeros((2, 3))),
     r"^CircularPad1d: circular padding \(0, 4\) on axis -1 must be at most the input's size there, 3 \(PyTorch's "
     r"rule: the input wraps around once at most\)"),
    (lambda: L.ReplicationPad1d(1).forward(np.zeros((2, 3, 0))),
     r"^ReplicationPad1d: replicate padding needs a value to repeat, got an empty axis -1 in input shape \(2, 3, 0\)$"),
    (lambda: L.ReflectionPad1d((1, 2, 3)), r"^ReflectionPad1d: padding must be an int or 2 ints \(left, right\), "
                                           r"PyTorch's, got \(1, 2, 3\)$"),
    (lambda: L.ReplicationPad2d(-1), r"^ReplicationPad2d: padding \(-1, -1, -1, -1\) has a negative side, which "
                                     r"PyTorch reads as a crop; xpnet pads only: slice the input instead"),
    (lambda: L.ReflectionPad2d(1).forward(np.zeros((2, 3))),
     r"^ReflectionPad2d: expected \(N, C, H, W\) or \(C, H, W\), got shape \(2, 3\)$"),
    (lambda: L.CircularPad1d(1).forward(np.zeros((1, 2, 3, 4))),
     r"^CircularPad1d: expected \(N, C, W\) or \(C, W\), got shape \(1, 2, 3, 4\)$"),
    (lambda: L.Conv2d(1, 1, 3, padding=3, padding_mode="reflect").forward(np.zeros((1, 1, 3, 5), np.float32)),
     r"^Conv2d: reflect padding \(3, 3\) on axis -2 must be smaller than the input's size there, 3 .*; pad less, or "
     r"use padding_mode='replicate'$"),
    (lambda: L.Conv2d(1, 1, 3, padding_mode=None), r"^Conv2d: padding_mode must be one of 'zeros', 'reflect', "
                                                   r"'replicate', 'circular' \(PyTorch's\), got None$"),
    (lambda: L.ConvTranspose2d(1, 1, 3, padding_mode="circular"),
     r"^ConvTranspose2d: padding_mode='circular' is not supported: PyTorch's ConvTranspose2d pads with zeros only"),
])
def test_refusals_are_one_line_saying_what_to_write(make, message):
    with pytest.raises(ValueError, match=message):
        make()
