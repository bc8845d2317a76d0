"""BatchNorm over features (N, D) and channels (N, C, H, W): training and evaluation forward against
a NumPy reference, book-style running statistics, gradients, buffers kept in the layer dtype and moved
and saved with the model, clear errors."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import BatchNorm
from xpnet.testing import assert_gradients_ok, assert_placed

SHAPES = [pytest.param((6, 4), id="features"), pytest.param((3, 4, 3, 2), id="channels")]


def _axes(shape):
    return (0,) if len(shape) == 2 else (0, 2, 3)


def _bcast(v, shape):
    return v.reshape((1, -1) + (1,) * (len(shape) - 2))


def _tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-10, "atol": 1e-12}


def _layer(rng, c, dtype, **kw):
    layer = BatchNorm(c, dtype=dtype, **kw)
    layer.params["gamma"] = rng.uniform(0.5, 2.0, c).astype(dtype)
    layer.params["beta"] = rng.standard_normal(c).astype(dtype)
    return layer


@pytest.mark.parametrize("shape", SHAPES)
def test_training_forward_and_running_statistics(case, rng, shape):
    dev, dtype = case
    layer = _layer(rng, 4, dtype, momentum=0.8)
    gamma, beta = layer.params["gamma"].astype(np.float64), layer.params["beta"].astype(np.float64)
    x = rng.standard_normal(shape) * 3 + 1
    layer.to(dev)
    y = layer.forward(xn.to_device(x.astype(dtype), dev), train=True)
    assert_placed(y, dev, dtype)
    mean, var = x.mean(axis=_axes(shape)), x.var(axis=_axes(shape))
    expected = _bcast(gamma, shape) * (x - _bcast(mean, shape)) / np.sqrt(_bcast(var, shape) + 1e-5) \
        + _bcast(beta, shape)
    np.testing.assert_allclose(xn.to_numpy(y), expected, **_tol(dtype))
    for name, batch, start in (("running_mean", mean, 0.0), ("running_var", var, 1.0)):
        assert_placed(layer.buffers[name], dev, dtype)
        np.testing.assert_allclose(xn.to_numpy(layer.buffers[name]), 0.8 * start + 0.2 * batch, **_tol(dtype))


@pytest.mark.parametrize("shape", SHAPES)
def test_evaluation_uses_running_statistics_and_leaves_them(case, rng, shape):
    dev, dtype = case
    layer = _layer(rng, 4, dtype)
    rm, rv = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    layer.buffers["running_mean"], layer.buffers["running_var"] = rm.astype(dtype), rv.astype(dtype)
    gamma, beta = layer.params["gamma"].astype(np.float64), layer.params["beta"].astype(np.float64)
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    layer.to(dev)
    y = layer.forward(xn.to_device(x.astype(dtype), dev), train=False)
    dx = layer.backward(xn.to_device(dy.astype(dtype), dev))
    scale = _bcast(gamma / np.sqrt(rv + 1e-5), shape)
    np.testing.assert_allclose(xn.to_numpy(y), scale * (x - _bcast(rm, shape)) + _bcast(beta, shape), **_tol(dtype))
    np.testing.assert_allclose(xn.to_numpy(dx), scale * dy, **_tol(dtype))
    np.testing.assert_allclose(xn.to_numpy(layer.buffers["running_mean"]), rm, **_tol(dtype))


@pytest.mark.parametrize("shape", SHAPES)
def test_training_gradients_match_central_differences(dev, rng, shape):
    layer = _layer(rng, 4, "float64").to(dev)
    assert_gradients_ok(layer, xn.to_device(rng.standard_normal(shape), dev), max_entries=40)


def test_same_numbers_on_numpy_and_strict_device1(rng):
    strict = pytest.importorskip("array_api_strict")
    dev1 = xn.Device(strict, strict.Device("device1"))
    x, dy = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal((4, 3, 2, 2))
    out = []
    for dev in (xn.device("cpu"), dev1):
        layer = _layer(np.random.default_rng(0), 3, "float64").to(dev)
        y = layer.forward(xn.to_device(x, dev))
        dx = layer.backward(xn.to_device(dy, dev))
        out.append([xn.to_numpy(a) for a in (y, dx, layer.grads["gamma"], layer.buffers["running_var"])])
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_matches_pytorch_outputs_and_gradients(rng):
    torch = pytest.importorskip("torch")
    x, dy = rng.standard_normal((5, 3, 4, 2)), rng.standard_normal((5, 3, 4, 2))
    ours = _layer(rng, 3, "float64")
    theirs = torch.nn.BatchNorm2d(3, eps=1e-5, momentum=0.1, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.params["gamma"]))
        theirs.bias.copy_(torch.tensor(ours.params["beta"]))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(ours.forward(x), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.grads["gamma"], theirs.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    # momentum=0.9 here is PyTorch's 0.1 (PyTorch keeps the unbiased variance, so compare the mean).
    np.testing.assert_allclose(ours.buffers["running_mean"], theirs.running_mean.numpy(), rtol=1e-12, atol=1e-12)


def test_buffers_move_with_the_model_and_are_saved(tmp_path, rng):
    strict = pytest.importorskip("array_api_strict")
    dev1 = xn.Device(strict, strict.Device("device1"))
    model = xn.Sequential(BatchNorm(3))
    model.forward(rng.standard_normal((8, 3)).astype(np.float32))
    model.save(tmp_path / "bn.npz")
    loaded = xn.load(tmp_path / "bn.npz", device=dev1)
    for name in ("running_mean", "running_var"):
        assert_placed(loaded[0].buffers[name], dev1, "float32")
        np.testing.assert_array_equal(xn.to_numpy(loaded[0].buffers[name]), model[0].buffers[name])
    x = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(xn.to_numpy(loaded.forward(xn.to_device(x, dev1), train=False)),
                                  model.forward(x, train=False))


@pytest.mark.parametrize("x,train,message", [
    (np.zeros((4, 5), np.float32), True, r"expected input \(N, 3\) or \(N, 3, H, W\)"),
    (np.zeros((4, 3, 2), np.float32), True, "got shape"),
    (np.zeros((1, 3), np.float32), True, "more than one value per feature"),
    (np.zeros((4, 3), np.int32), True, "floating-point input"),
])
def test_bad_input_is_named_clearly(x, train, message):
    with pytest.raises((ValueError, TypeError), match=message):
        BatchNorm(3).forward(x, train=train)


def test_a_single_sample_is_fine_in_evaluation():
    y = BatchNorm(3).forward(np.ones((1, 3), np.float32), train=False)
    np.testing.assert_allclose(y, np.ones((1, 3)) / np.sqrt(1 + 1e-5), rtol=1e-6)


@pytest.mark.parametrize("kwargs", [{"momentum": 1.5}, {"eps": 0.0}, {"num_features": 0}])
def test_bad_arguments_are_named_clearly(kwargs):
    with pytest.raises(ValueError, match="BatchNorm"):
        BatchNorm(**{"num_features": 3, **kwargs})
