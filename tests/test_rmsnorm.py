"""RMSNorm against PyTorch's nn.RMSNorm in float64 on every device (JAX: one case): one and two normalised axes,
no leading axes, elementwise_affine=False, an eps of one's own; eps=None as the input dtype's epsilon in float32
and float64; xn.gradcheck; saving and loading; clear errors."""

import numpy as np
import pytest

import xpnet as xn
from norm_checks import check_loads_on_device1, compare_with_pytorch
from xpnet.layers import RMSNorm

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

# (positional arguments, keyword arguments, input shape)
CASES = [((6,), {}, (3, 4, 6)), (((4, 6),), {"eps": 1e-2}, (2, 4, 6)), ((6,), {"elementwise_affine": False}, (6,)),
         (([2, 3],), {}, (5, 2, 3))]


def test_equal_to_pytorch(dev, rng):
    for args, kwargs, shape in CASES[:1] if dev.name.startswith("jax") else CASES:
        compare_with_pytorch(dev, rng, RMSNorm(*args, dtype="float64", **kwargs),
                             torch.nn.RMSNorm(*args, dtype=torch.float64, **kwargs), shape)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_eps_none_is_the_input_dtypes_epsilon_as_pytorchs(dtype):
    """Inputs so small that eps dominates mean(x**2): a fixed eps (LayerNorm's 1e-5, or float64's epsilon on
    float32) gives other outputs."""
    x = np.geomspace(1e-9, 1e-3, 12).reshape(2, 6).astype(dtype)
    expected = torch.nn.RMSNorm(6, dtype=getattr(torch, dtype))(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(RMSNorm(6, dtype=dtype).forward(x), expected, rtol=1e-6 if dtype == "float32" else 1e-13)


@pytest.mark.parametrize("dev", ["numpy", "strict-device1", pytest.param("cupy", marks=pytest.mark.gpu)],
                         indirect=True)  # the other libraries' arrays take the same code as device1's
def test_gradcheck_passes(dev):
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(5, 6), RMSNorm(6), xn.layers.Tanh(), RMSNorm((4, 6), 1e-3, False),
                          xn.layers.Linear(6, 3)).to(dev)
    x = xn.to_device(np.random.default_rng(0).standard_normal((2, 4, 5)).astype("float32"), dev)
    report = xn.gradcheck(model, x)
    assert report.ok, str(report)
    assert report["1.gamma"].ok and report["input"].ok


def test_saved_and_loaded_on_another_device(tmp_path, rng):
    model = xn.Sequential(xn.layers.Linear(5, 6), RMSNorm((4, 6), eps=1e-3), RMSNorm(6, elementwise_affine=False))
    model[1].params["gamma"] = rng.uniform(0.5, 2, (4, 6)).astype(np.float32)
    check_loads_on_device1(tmp_path, rng, model, ["0.W", "0.b", "1.gamma"], (2, 4, 5))


def test_repr_and_pytorchs_positional_order():
    assert repr(RMSNorm(8)) == "RMSNorm(normalized_shape=8)"
    assert repr(RMSNorm((4, 4), 1e-6, False)) == "RMSNorm(normalized_shape=(4, 4), eps=1e-06, elementwise_affine=False)"
    layer = RMSNorm(4, 1e-3, True, None, "float64")
    assert (layer.eps, layer.dtype, set(layer.params)) == (1e-3, "float64", {"gamma"})


@pytest.mark.parametrize("build,message", [
    (lambda: RMSNorm(0), "^RMSNorm: normalized_shape must be a positive int"),
    (lambda: RMSNorm(4.0), "^RMSNorm: normalized_shape must be an int or a tuple of ints"),
    (lambda: RMSNorm(4, 0.0), r"^RMSNorm: eps must be a float > 0 or None \(the input dtype's machine epsilon"),
    (lambda: RMSNorm(4, device="cuda"), r"^RMSNorm: device='cuda' is not supported"),
    (lambda: RMSNorm(6).forward(np.zeros((2, 5), np.float32)),
     r"^RMSNorm: expected input \(\.\.\., 6\), its last 1 axis"),
])
def test_bad_arguments_and_inputs_are_named_clearly(build, message):
    with pytest.raises(ValueError, match=message):
        build()
