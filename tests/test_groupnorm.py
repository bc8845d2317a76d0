"""GroupNorm, InstanceNorm1d and InstanceNorm2d against PyTorch's own in float64 on every device (JAX: one case,
it compiles per shape): several group counts, (N, C) to (N, C, H, W) inputs, unbatched instances, affine=False
and bias=False; a planted gradient bug that must be caught; xn.gradcheck; saving and loading; clear errors."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import GroupNorm, InstanceNorm1d, InstanceNorm2d
from xpnet.testing import assert_placed

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

CLOSE = {"rtol": 1e-12, "atol": 1e-12}
NAMES = {"gamma": "weight", "beta": "bias"}
# (xpnet's class, PyTorch's, positional arguments, keyword arguments, input shape)
CASES = [
    (GroupNorm, "GroupNorm", (2, 4), {}, (3, 4, 3, 5)),
    (GroupNorm, "GroupNorm", (1, 4), {"affine": False}, (2, 4, 6)),
    (GroupNorm, "GroupNorm", (4, 4), {"bias": False}, (2, 4, 3, 3)),
    (GroupNorm, "GroupNorm", (3, 6), {"eps": 1e-2}, (3, 6)),
    (InstanceNorm2d, "InstanceNorm2d", (4,), {}, (3, 4, 3, 5)),
    (InstanceNorm2d, "InstanceNorm2d", (4,), {"affine": True}, (4, 3, 5)),
    (InstanceNorm1d, "InstanceNorm1d", (4,), {"affine": True, "bias": False}, (2, 4, 6)),
    (InstanceNorm1d, "InstanceNorm1d", (4,), {"affine": True}, (4, 6)),
]


def compare_with_pytorch(dev, rng, ours, theirs, shape):
    """y, dx and every parameter gradient of ``ours`` (an xpnet layer in float64, moved to ``dev``) and
    ``theirs`` (the PyTorch module in float64), with the same random parameters, in training and evaluation."""
    assert set(ours.params) == {k for k, v in NAMES.items() if getattr(theirs, v, None) is not None}
    for name, value in ours.params.items():
        value = rng.uniform(0.5, 2.0, value.shape) if name == "gamma" else rng.standard_normal(value.shape)
        ours.params[name] = value
        with torch.no_grad():
            getattr(theirs, NAMES[name]).copy_(torch.from_numpy(value))
    ours.to(dev)
    x, dy = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.from_numpy(dy))

    def close(a, b, what):
        assert_placed(a, dev, "float64")
        np.testing.assert_allclose(xn.to_numpy(a), b.detach().numpy(), **CLOSE, err_msg=what)

    for train in (True, False):
        close(ours.forward(xn.to_device(x, dev), train=train), yt, "y")
        close(ours.backward(xn.to_device(dy, dev)), xt.grad, "dx")
        assert set(ours.grads) == set(ours.params)
        for name in ours.grads:
            close(ours.grads[name], getattr(theirs, NAMES[name]).grad, f"d{name}")


def test_equal_to_pytorch(dev, rng):
    for cls, torch_name, args, kwargs, shape in CASES[:1] if dev.name.startswith("jax") else CASES:
        compare_with_pytorch(dev, rng, cls(*args, dtype="float64", **kwargs),
                             getattr(torch.nn, torch_name)(*args, dtype=torch.float64, **kwargs), shape)


class _ConstantStatistics(GroupNorm):
    """Bug: dx = dy * gamma / sqrt(var + eps), as if the groups' mean and variance did not depend on x."""

    def backward(self, dy):
        super().backward(dy)
        xp = xn.backend.namespace(dy)
        per_group = xp.reshape(self._inv_std, (self._n, self.num_groups, 1))
        spread = xp.reshape(xp.ones_like(dy), (self._n, self.num_groups, -1)) * per_group
        return dy * xp.reshape(self.params["gamma"], (-1, 1, 1)) * xp.reshape(spread, dy.shape)


def test_a_gradient_that_leaves_out_the_statistics_is_caught(rng):
    with pytest.raises(AssertionError, match="dx"):
        compare_with_pytorch(xn.device("cpu"), rng, _ConstantStatistics(2, 4, dtype="float64"),
                             torch.nn.GroupNorm(2, 4, dtype=torch.float64), (2, 4, 3, 3))


@pytest.mark.parametrize("dev", ["numpy", "strict-device1", pytest.param("cupy", marks=pytest.mark.gpu)],
                         indirect=True)  # the other libraries' arrays take the same code as device1's
def test_gradcheck_passes(dev):
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Conv2d(2, 4, 3, padding=1), GroupNorm(2, 4), xn.layers.Tanh(),
                          InstanceNorm2d(4, affine=True), xn.layers.Flatten(), xn.layers.Linear(36, 3)).to(dev)
    x = xn.to_device(np.random.default_rng(0).standard_normal((2, 2, 3, 3)).astype("float32"), dev)
    report = xn.gradcheck(model, x)
    assert report.ok, str(report)
    assert report["1.gamma"].ok and report["3.beta"].ok and report["input"].ok


def test_saved_and_loaded_on_another_device(tmp_path, rng):
    strict = pytest.importorskip("array_api_strict",
                                 reason="array-api-strict is not installed (pip install -e '.[test]')")
    dev1 = xn.Device(strict, strict.Device("device1"))
    model = xn.Sequential(GroupNorm(2, 4, 1e-3, bias=False), InstanceNorm1d(4, momentum=None),
                          InstanceNorm1d(4, affine=True, dtype="float32"))
    model[0].params["gamma"] = rng.uniform(0.5, 2, 4).astype(np.float32)
    model.save(tmp_path / "gn.npz")
    loaded = xn.load(tmp_path / "gn.npz", device=dev1)
    assert repr(loaded) == repr(model) and [m.config() for m in loaded] == [m.config() for m in model]
    assert sorted(loaded.named_params()) == ["0.gamma", "2.beta", "2.gamma"]
    assert_placed(loaded[0].params["gamma"], dev1, "float32")
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(xn.to_numpy(loaded.forward(xn.to_device(x, dev1))), model.forward(x),
                               rtol=1e-5, atol=1e-5)


def test_repr_and_pytorchs_positional_order():
    assert repr(GroupNorm(2, 4)) == "GroupNorm(num_groups=2, num_channels=4, bias=True)"
    layer = GroupNorm(2, 4, 1e-3, False, None, "float64")
    assert (layer.eps, layer.affine, layer.dtype, layer.params) == (1e-3, False, "float64", {})
    layer = InstanceNorm2d(3, 1e-3, 0.2, True, False, None, "float64")
    assert (layer.eps, layer.momentum, layer.affine, layer.dtype) == (1e-3, 0.2, True, "float64")
    assert set(layer.params) == {"gamma", "beta"} and not InstanceNorm1d(3).params  # affine=False, PyTorch's default
    assert repr(InstanceNorm1d(3)) == "InstanceNorm1d(num_features=3, bias=True)"


@pytest.mark.parametrize("build,shape,message", [
    (lambda: GroupNorm(2, 4), (2, 3, 5),
     r"GroupNorm: expected input \(N, 4, \.\.\.\), its channels on axis 1, got shape \(2, 3, 5\)"),
    (lambda: GroupNorm(2, 4), (4,), r"expected input \(N, 4, \.\.\.\)"),
    (lambda: InstanceNorm2d(4), (2, 4, 5),
     r"InstanceNorm2d: expected input \(N, 4, H, W\) or \(4, H, W\), got shape \(2, 4, 5\)"),
    (lambda: InstanceNorm1d(4), (2, 3, 5), r"InstanceNorm1d: expected input \(N, 4, L\) or \(4, L\)"),
    (lambda: InstanceNorm2d(4), (2, 4, 1, 1), "expected more than 1 spatial element per channel"),
])
def test_bad_input_is_named_clearly(build, shape, message):
    with pytest.raises(ValueError, match=message):
        build().forward(np.zeros(shape, np.float32))


@pytest.mark.parametrize("build,message", [
    (lambda: GroupNorm(3, 4), r"^GroupNorm: num_channels \(4\) must be divisible by num_groups \(3\)"),
    (lambda: GroupNorm(0, 4), "^GroupNorm: num_groups must be a positive int"),
    (lambda: GroupNorm(2, 4, 0.0), "^GroupNorm: eps must be a float > 0"),
    (lambda: GroupNorm(2, 4, device="cuda"), r"^GroupNorm: device='cuda' is not supported"),
    (lambda: InstanceNorm2d(4, momentum=2.0), r"^InstanceNorm2d: momentum must be a float in \[0, 1\] or None"),
    (lambda: InstanceNorm2d(4, track_running_stats=True),
     r"^InstanceNorm2d: track_running_stats=True is not supported: .*\(track_running_stats=False\); leave it out$"),
])
def test_bad_arguments_are_named_clearly(build, message):
    with pytest.raises(ValueError, match=message):
        build()
