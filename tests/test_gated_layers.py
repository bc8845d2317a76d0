"""PyTorch's GLU, Softmin, Threshold, Tanhshrink, Softshrink, Hardshrink, Dropout1d, CosineSimilarity and
PairwiseDistance: against PyTorch in float64 on NumPy and array-api-strict's second device (y and every input's
gradient, at the kinks too), Dropout1d's channels, files, refusals."""

import math

import numpy as np
import pytest

import xpnet as xn
from conftest import DEVICE_MAKERS
from torch_reference import torch_run

L = xn.layers
TORCH = "torch is not installed (pip install -e '.[backends]')"
DEVICES = ["numpy", "strict-device1", pytest.param("cupy", marks=pytest.mark.gpu)]

# (xpnet's layer, PyTorch's module by name and arguments)
ONE_INPUT = [
    (lambda: L.GLU(), ("GLU",)),
    (lambda: L.GLU(1), ("GLU", 1)),
    (lambda: L.Softmin(1), ("Softmin", 1)),
    (lambda: L.Threshold(0.5, -2.0), ("Threshold", 0.5, -2.0)),
    (lambda: L.Tanhshrink(), ("Tanhshrink",)),
    (lambda: L.Softshrink(), ("Softshrink",)),
    (lambda: L.Hardshrink(), ("Hardshrink",)),
    (lambda: L.Hardshrink(-0.25), ("Hardshrink", -0.25)),
]

# (xpnet's layer, PyTorch's module by name and arguments, x1's shape, x2's shape): broadcasting included
TWO_INPUTS = [
    (lambda: L.CosineSimilarity(), ("CosineSimilarity",), (3, 4, 2), (3, 4, 2)),
    (lambda: L.CosineSimilarity(-1, 0.5), ("CosineSimilarity", -1, 0.5), (3, 1, 5), (4, 5)),
    (lambda: L.PairwiseDistance(), ("PairwiseDistance",), (4, 5), (4, 5)),
    (lambda: L.PairwiseDistance(1.0, keepdim=True), ("PairwiseDistance", 1.0, 1e-6, True), (4, 5), (5,)),
    (lambda: L.PairwiseDistance(3.5), ("PairwiseDistance", 3.5), (2, 3, 5), (3, 5)),
    (lambda: L.PairwiseDistance(0.5), ("PairwiseDistance", 0.5), (4, 5), (4, 5)),
    (lambda: L.PairwiseDistance(math.inf, 0.0), ("PairwiseDistance", math.inf, 0.0), (4, 5), (4, 5)),
]


def _check(got, expected, dev, what):
    xn.testing.assert_placed(got, dev, "float64")
    np.testing.assert_allclose(xn.to_numpy(got), expected, rtol=1e-12, atol=1e-14, err_msg=what)


@pytest.mark.parametrize("device", DEVICES)
def test_one_input_layers_equal_pytorch_at_their_kinks_too(device, rng):
    torch = pytest.importorskip("torch", reason=TORCH)
    dev = DEVICE_MAKERS[device]()
    x = rng.standard_normal((3, 4, 6))
    x[0, 0] = [0.5, -0.5, 0.25, -0.25, 0.0, 2.0]  # the kinks of Threshold(0.5, ...) and the shrinks
    for make, (name, *args) in ONE_INPUT:
        y_t, dy, (dx_t,) = torch_run(torch, getattr(torch.nn, name)(*args), x, rng=rng)
        layer = make()
        y, dx = layer.forward(xn.to_device(x, dev)), layer.backward(xn.to_device(dy, dev))
        _check(y, y_t, dev, repr(layer))
        _check(dx, dx_t, dev, repr(layer))


@pytest.mark.parametrize("device", DEVICES)
def test_two_input_layers_equal_pytorch_for_both_gradients(device, rng):
    torch = pytest.importorskip("torch", reason=TORCH)
    dev = DEVICE_MAKERS[device]()
    for make, (name, *args), s1, s2 in TWO_INPUTS:
        x1, x2 = rng.standard_normal(s1), rng.standard_normal(s2)
        if name == "PairwiseDistance" and s1 == s2:  # a tie at the maximum (p=inf), a tiny difference (p < 1)
            x1[..., 0, :3], x2[..., 0, :3] = [2.0, -2.0, 0.5], [0.0, 0.0, 0.5]
        y_t, dy, (dx1_t, dx2_t) = torch_run(torch, getattr(torch.nn, name)(*args), x1, x2, rng=rng)
        layer = make()
        y = layer(xn.to_device(x1, dev), xn.to_device(x2, dev))
        dx1, dx2 = layer.backward(xn.to_device(dy, dev))
        for got, expected in ((y, y_t), (dx1, dx1_t), (dx2, dx2_t)):
            _check(got, expected, dev, repr(layer))


def test_cosine_similarity_floors_small_norms_as_pytorch():
    """PyTorch floors each norm at eps and still differentiates the norm itself (0 for a zero vector)."""
    torch = pytest.importorskip("torch", reason=TORCH)
    x1, x2 = np.array([[1e-10, 2e-10, 0.0], [1.0, 2.0, 3.0]]), np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    torch.nn.CosineSimilarity()(t1, t2).backward(torch.tensor([1.0, 2.0], dtype=torch.float64))
    layer = L.CosineSimilarity()
    layer(x1, x2)
    for got, expected in zip(layer.backward(np.array([1.0, 2.0])), (t1.grad.numpy(), t2.grad.numpy())):
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_pairwise_distance_p0_counts_and_passes_no_gradient():
    torch = pytest.importorskip("torch", reason=TORCH)
    x1, x2 = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]]), np.array([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    layer = L.PairwiseDistance(0, eps=0.0)
    expected = torch.nn.PairwiseDistance(0, eps=0.0)(torch.from_numpy(x1), torch.from_numpy(x2)).numpy()
    np.testing.assert_array_equal(layer(x1, x2), expected)
    for dx in layer.backward(np.ones(2)):
        np.testing.assert_array_equal(dx, np.zeros((2, 3)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(8, 16, 5), (16, 5)])
def test_dropout1d_zeroes_whole_channels_with_dropouts_draws(shape, device, rng):
    """On CuPy the draws are made on the device (Philox), the same for Dropout1d and Dropout of one seed."""
    dev = DEVICE_MAKERS[device]()
    x = rng.standard_normal(shape) + 5.0
    layer = L.Dropout1d(0.25, seed=3)
    y = layer.forward(xn.to_device(x, dev))
    kept = xn.to_numpy(L.Dropout(0.25, seed=3).forward(xn.to_device(np.ones((*shape[:-1], 1)), dev))) != 0
    _check(y, np.where(kept, x / 0.75, 0.0), dev, "y")
    assert 0 < (~kept).sum() < kept.size
    _check(layer.backward(xn.to_device(np.ones(shape), dev)), np.where(kept, 1 / 0.75, np.zeros(shape)), dev, "dx")
    layer.eval()
    x_dev = xn.to_device(x, dev)
    assert layer(x_dev) is x_dev


def test_saved_and_loaded_with_their_arguments(tmp_path, rng):
    model = xn.Sequential(L.Threshold(0.1, 20.0), L.Softshrink(0.25), L.Hardshrink(), L.Tanhshrink(),
                          L.Dropout1d(0.3, seed=5), L.GLU(1), L.Softmin(-1))
    model.save(tmp_path / "gated.npz")
    loaded = xn.load(tmp_path / "gated.npz")
    assert repr(loaded) == repr(model)
    assert "(5): GLU(dim=1)" in repr(model) and "Softshrink(lambd=0.25)" in repr(model)
    x = rng.standard_normal((2, 4, 3))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    for layer in (L.CosineSimilarity(2, 1e-3), L.PairwiseDistance(1.0, 0.0, True)):
        assert repr(type(layer).from_config(layer.config())) == repr(layer)


@pytest.mark.parametrize("make, message", [
    (lambda: L.GLU().forward(np.zeros((2, 5))),
     r"^GLU: dim=-1 of the input of shape \(2, 5\) has size 5, which must be even \(its halves are the values and "
     r"their gates\)$"),
    (lambda: L.Softmin(), r"^Softmin: dim is required: PyTorch's dim=None picks dim 0 .* write Softmin\(dim=-1\)"),
    (lambda: L.Softshrink(-1.0), r"^Softshrink: lambd must be >= 0 \(PyTorch's rule\), got -1.0$"),
    (lambda: L.Threshold(0.5, None), r"^Threshold: value must be a finite number, got None$"),
    (lambda: L.Dropout1d(0.5).forward(np.zeros((1, 2, 3, 4))),
     r"^Dropout1d: expected \(N, C, L\) or \(C, L\), got shape \(1, 2, 3, 4\); images \(N, C, H, W\) go to "
     r"Dropout2d$"),
    (lambda: L.CosineSimilarity()(np.zeros((2, 3)), np.zeros((4, 3))),
     r"^CosineSimilarity: x1 \(2, 3\) and x2 \(4, 3\) do not broadcast to one shape$"),
    (lambda: L.CosineSimilarity(2)(np.zeros((2, 3)), np.zeros((2, 3))),
     r"^CosineSimilarity: dim=2 is not an axis of the inputs, broadcast to \(2, 3\)$"),
    (lambda: L.PairwiseDistance(-1), r"^PairwiseDistance: p must be a number >= 0 or math.inf, got -1 \(xpnet does "
                                     r"not take PyTorch's negative p\)$"),
    (lambda: L.PairwiseDistance()(np.zeros((2, 3)), np.zeros((2, 3), np.float32)),
     r"^PairwiseDistance: x1 and x2 must share namespace, device and dtype, got float64 numpy.ndarray on cpu and "
     r"float32 numpy.ndarray on cpu"),
])
def test_refusals_are_one_line_saying_what_to_write(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_third_input_is_refused_naming_both_inputs():
    with pytest.raises(TypeError, match=r"^PairwiseDistance.forward\(x1, x2, train\): train must be True or False, "
                                        r"got ndarray; PairwiseDistance takes two inputs, x1 and x2, and no third$"):
        L.PairwiseDistance()(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)))
