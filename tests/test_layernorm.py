"""LayerNorm against PyTorch's nn.LayerNorm itself in float64 on every device: (N, D) features, (N, T, D)
sequences, several normalised axes, no leading axes, bias=False and elementwise_affine=False; xn.gradcheck;
saving and loading; the book's weight decay leaving its scale alone; a planted gradient bug that must be
caught; clear errors."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import LayerNorm
from norm_checks import check_loads_on_device1, compare_with_pytorch

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

SHAPES = [pytest.param(6, (5, 6), id="features"), pytest.param(6, (2, 4, 6), id="sequence-NTD"),
          pytest.param((4, 6), (2, 4, 6), id="last-two-axes"), pytest.param([3, 2, 2], (2, 3, 2, 2), id="CHW"),
          pytest.param(6, (6,), id="no-leading-axes")]
OPTIONS = [pytest.param({}, id="default"), pytest.param({"bias": False}, id="bias-False"),
           pytest.param({"elementwise_affine": False}, id="elementwise_affine-False"),
           pytest.param({"eps": 1e-2}, id="eps")]


def _compare_with_pytorch(dev, rng, normalized_shape, shape, kwargs, ours=None):
    """y, dx and every parameter gradient of xpnet's LayerNorm on ``dev`` and PyTorch's, float64, with random
    gamma and beta (PyTorch's weight and bias), each in xpnet's namespace, device and dtype."""
    ours = LayerNorm(normalized_shape, dtype="float64", **kwargs) if ours is None else ours
    compare_with_pytorch(dev, rng, ours, torch.nn.LayerNorm(normalized_shape, dtype=torch.float64, **kwargs), shape)


@pytest.mark.parametrize("kwargs", OPTIONS)
@pytest.mark.parametrize("normalized_shape,shape", SHAPES)
def test_layernorm_equals_pytorch(dev, rng, normalized_shape, shape, kwargs):
    _compare_with_pytorch(dev, rng, normalized_shape, shape, kwargs)


class _ConstantStatistics(LayerNorm):
    """Bug: dx = dy * gamma / sqrt(var + eps), as if the mean and the variance did not depend on x."""

    def backward(self, dy):
        super().backward(dy)
        xp = xn.backend.namespace(dy)
        return dy * self.params["gamma"] * xp.reshape(self._inv_std, (*self._shape[:-1], 1))


def test_a_gradient_that_leaves_out_the_statistics_is_caught(rng):
    with pytest.raises(AssertionError, match="dx"):
        _compare_with_pytorch(xn.device("cpu"), rng, 6, (2, 4, 6), {},
                              ours=_ConstantStatistics(6, dtype="float64"))


@pytest.mark.parametrize("layer", [lambda: LayerNorm(6), lambda: LayerNorm((4, 6), bias=False)], ids=["D", "TD"])
def test_gradcheck_passes(dev, layer):
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(5, 6), layer(), xn.layers.Tanh(), xn.layers.Linear(6, 3)).to(dev)
    x = xn.to_device(np.random.default_rng(0).standard_normal((2, 4, 5)).astype("float32"), dev)
    report = xn.gradcheck(model, x)
    assert report.ok, str(report)
    assert report["1.gamma"].ok and report["input"].ok


def test_saved_and_loaded_on_another_device(tmp_path, rng):
    model = xn.Sequential(xn.layers.Linear(5, 6), LayerNorm((4, 6), eps=1e-3, bias=False),
                          LayerNorm(6, elementwise_affine=False))
    model[1].params["gamma"] = rng.uniform(0.5, 2, (4, 6)).astype(np.float32)
    check_loads_on_device1(tmp_path, rng, model, ["0.W", "0.b", "1.gamma"], (2, 4, 5))


def test_repr_shows_the_shape_as_given_and_the_other_arguments_away_from_their_defaults():
    assert repr(LayerNorm(8)) == "LayerNorm(normalized_shape=8, bias=True)"
    assert repr(LayerNorm((4, 4), 1e-6, False)) == \
        "LayerNorm(normalized_shape=(4, 4), eps=1e-06, elementwise_affine=False, bias=True)"
    assert repr(LayerNorm([8], bias=False, dtype="float64")) == \
        "LayerNorm(normalized_shape=8, dtype='float64', bias=False)"


def test_the_books_weight_decay_leaves_gamma_alone():
    """weight_decay_on="weights" (the default) decays W only, "all" gamma too, as PyTorch's (with zero
    gradients, only the decay moves a parameter; b and beta start at 0, where decay leaves them)."""
    for on, decayed in (("weights", {"0.W"}), ("all", {"0.W", "1.gamma"})):
        model = xn.Sequential(xn.layers.Linear(3, 4, dtype="float64"), LayerNorm(4, dtype="float64"))
        before = {k: v.copy() for k, v in model.named_params().items()}
        model.forward(np.zeros((2, 3)))
        model.backward(np.zeros((2, 4)))
        xn.optim.SGD(model, lr=0.1, weight_decay=0.5, weight_decay_on=on).step()
        assert {k for k, v in model.named_params().items() if not np.array_equal(v, before[k])} == decayed, on


@pytest.mark.parametrize("build,x,message", [
    (lambda: LayerNorm(6), np.zeros((2, 5), np.float32), r"expected input \(\.\.\., 6\), its last 1 axis"),
    (lambda: LayerNorm((4, 6)), np.zeros((2, 6), np.float32), r"expected input \(\.\.\., 4, 6\), its last 2 axes"),
    (lambda: LayerNorm(6), np.zeros((2, 6), np.int32), "floating-point input"),
    (lambda: LayerNorm(6), np.zeros((2, 6), np.float64), "dtype float64 does not match"),
])
def test_bad_input_is_named_clearly(build, x, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build().forward(x)


@pytest.mark.parametrize("kwargs,error", [
    ({"normalized_shape": 0}, ValueError), ({"normalized_shape": (4, 0)}, ValueError),
    ({"normalized_shape": ()}, ValueError), ({"normalized_shape": 4.0}, ValueError),
    ({"normalized_shape": 4, "eps": 0.0}, ValueError), ({"normalized_shape": 4, "bias": "no"}, TypeError),
    ({"normalized_shape": 4, "device": "cuda"}, ValueError)])
def test_bad_arguments_are_named_clearly(kwargs, error):
    with pytest.raises(error, match="^LayerNorm: "):
        LayerNorm(**kwargs)


def test_pytorchs_positional_order():
    layer = LayerNorm(4, 1e-3, True, False, None, "float64")
    assert (layer.eps, layer.elementwise_affine, layer.bias, layer.dtype) == (1e-3, True, None, "float64")
    assert set(layer.params) == {"gamma"}
