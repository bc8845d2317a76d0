"""AdaptiveAvgPool2d, AdaptiveMaxPool2d and Upsample(mode='area'): equal to PyTorch's F.adaptive_avg_pool2d,
F.adaptive_max_pool2d and F.interpolate(mode='area') in float64 (outputs and input gradients) on every device, at
sizes that divide and that do not, outputs larger than the input and None in output_size (the max with ties, NaN and
-inf as PyTorch's kernel picks); gradcheck, save/load and clear errors."""

import copy

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import AdaptiveAvgPool2d, AdaptiveMaxPool2d, Upsample
from xpnet.testing import assert_placed

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
F = torch.nn.functional

TOL = {"rtol": 1e-12, "atol": 1e-12}

AVG_CASES = [
    pytest.param(7, (14, 14), id="divides"),
    pytest.param((3, 5), (7, 6), id="does-not-divide"),
    pytest.param((5, 7), (3, 2), id="larger-than-input"),
    pytest.param((6, 4), (3, 2), id="whole-multiple"),
    pytest.param((None, 2), (4, 5), id="none-keeps-h"),
    pytest.param(1, (5, 6), id="one"),
]
AREA_CASES = [
    pytest.param({"scale_factor": 0.5}, (7, 9), id="scale-half"),
    pytest.param({"size": (5, 3)}, (4, 6), id="size"),
    pytest.param({"scale_factor": (1.5, 2)}, (3, 4), id="scale-up"),
]


def assert_as_pytorch(layer, reference, hw, dev, ties=False):
    """layer on dev gives reference's (a function of a torch tensor) y and input gradient in float64; with ties,
    on whole numbers (windows with several maxima), a NaN and an image of -inf."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *hw))
    if ties:
        x = np.round(x)
        x[0, 0, hw[0] // 2, hw[1] // 2] = x[0, 1, 0, :] = np.nan
        x[1, 2] = -np.inf
    tx = torch.tensor(x, requires_grad=True)
    ty = reference(tx)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(dy))
    y = layer.forward(xn.to_device(x, dev))
    dx = layer.backward(xn.to_device(dy, dev))
    assert_placed(y, dev, "float64")
    assert_placed(dx, dev, "float64")
    np.testing.assert_allclose(xn.to_numpy(y), ty.detach().numpy(), **TOL)
    np.testing.assert_allclose(xn.to_numpy(dx), tx.grad.numpy(), **TOL)
    copy.deepcopy(layer)  # as summary() and gradcheck do: the plan's key must copy (JAX's Device does not)


def test_adaptive_avg_pool_equals_pytorchs_on_every_device(dev):
    assert_as_pytorch(AdaptiveAvgPool2d((3, None)), lambda t: F.adaptive_avg_pool2d(t, (3, None)), (5, 7), dev)


@pytest.mark.parametrize("output_size,hw", AVG_CASES)
def test_adaptive_avg_pool_equals_pytorchs(output_size, hw, resize_path):
    assert_as_pytorch(AdaptiveAvgPool2d(output_size), lambda t: F.adaptive_avg_pool2d(t, output_size), hw,
                      xn.device("cpu"))


def test_adaptive_max_pool_equals_pytorchs_on_every_device(dev):
    assert_as_pytorch(AdaptiveMaxPool2d((3, None)), lambda t: F.adaptive_max_pool2d(t, (3, None)), (5, 7), dev)


@pytest.mark.parametrize("output_size,hw", AVG_CASES)
@pytest.mark.parametrize("ties", [False, True], ids=["", "ties-nan-inf"])
def test_adaptive_max_pool_equals_pytorchs(output_size, hw, ties):
    assert_as_pytorch(AdaptiveMaxPool2d(output_size), lambda t: F.adaptive_max_pool2d(t, output_size), hw,
                      xn.device("cpu"), ties)


def test_upsample_area_equals_pytorchs_interpolate_on_every_device(dev):
    kwargs = {"scale_factor": (0.6, 1.5), "mode": "area"}
    assert_as_pytorch(Upsample(**kwargs), lambda t: F.interpolate(t, **kwargs), (5, 3), dev)


@pytest.mark.parametrize("kwargs,hw", AREA_CASES)
def test_upsample_area_equals_pytorchs_interpolate(kwargs, hw, resize_path):
    assert_as_pytorch(Upsample(mode="area", **kwargs), lambda t: F.interpolate(t, mode="area", **kwargs), hw,
                      xn.device("cpu"))


def test_gradcheck(rng):
    for layer in (AdaptiveAvgPool2d((3, 2)), AdaptiveMaxPool2d((3, 2)), Upsample(size=(2, 5), mode="area")):
        assert xn.gradcheck(layer, rng.standard_normal((2, 2, 5, 4))).ok


def test_save_load_and_repr(tmp_path, rng):
    L = xn.layers
    model = xn.Sequential(L.AdaptiveAvgPool2d((3, None)), L.Upsample(scale_factor=2, mode="area"),
                          L.AdaptiveMaxPool2d(5))
    x = rng.standard_normal((2, 1, 5, 4)).astype(np.float32)
    model.save(tmp_path / "adaptive.npz")
    loaded = xn.load(tmp_path / "adaptive.npz")
    assert repr(loaded) == repr(model)
    assert repr(model[0]) == "AdaptiveAvgPool2d(output_size=(3, None))"
    assert repr(model[2]) == "AdaptiveMaxPool2d(output_size=5)"
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    assert model.forward(x).shape == (2, 1, 5, 5)


@pytest.mark.parametrize("layer", [AdaptiveAvgPool2d, AdaptiveMaxPool2d])
@pytest.mark.parametrize("output_size", [0, -1, (2, 0), (2,), (2, 2, 2), 2.5, True, None, "7"])
def test_bad_output_size_is_named_clearly(layer, output_size):
    with pytest.raises(ValueError, match=rf"^{layer.__name__}: output_size must be an int >= 1 or an \(oh, ow\) "
                                         r"pair of them, None keeping that side's input size \(as PyTorch's; its 0 "
                                         r"would give an empty output\), got " + repr(output_size).replace("(", r"\(")
                                         .replace(")", r"\)") + "$"):
        layer(output_size)


def test_bad_inputs_are_named_clearly():
    with pytest.raises(ValueError, match=r"^AdaptiveAvgPool2d: expected a 4-d input \(N, C, H, W\), got shape "
                                         r"\(3, 5, 5\)$"):
        AdaptiveAvgPool2d(2).forward(np.zeros((3, 5, 5)))
    layer = AdaptiveMaxPool2d(2)
    layer.forward(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match=r"^AdaptiveMaxPool2d: expected dy of shape \(1, 2, 2, 2\) \(the last "
                                         r"forward's output\), got \(1, 2, 5, 5\)$"):
        layer.backward(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match=r"^AdaptiveMaxPool2d: return_indices=True is not supported"):
        AdaptiveMaxPool2d(2, return_indices=True)
    with pytest.raises(ValueError, match=r"^Upsample: align_corners=False applies to the interpolating modes "
                                         r"\('bilinear', 'bicubic'\), not mode='area'"):
        Upsample(scale_factor=2, mode="area", align_corners=False)
