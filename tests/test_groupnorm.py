"""GroupNorm, InstanceNorm1d and InstanceNorm2d against PyTorch's own in float64 on every device (JAX: one case,
it compiles per shape): several group counts, (N, C) to (N, C, H, W) inputs, unbatched instances, affine=False
and bias=False; a planted gradient bug that must be caught; xn.gradcheck; saving and loading; clear errors."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import GroupNorm, InstanceNorm1d, InstanceNorm2d
from norm_checks import check_loads_on_device1, compare_with_pytorch

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

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


def test_equal_to_pytorch(dev, rng):
    for cls, torch_name, args, kwargs, shape in CASES[:1] if dev.name.startswith("jax") else CASES:
        compare_with_pytorch(dev, rng, cls(*args, dtype="float64", **kwargs),
                             getattr(torch.nn, torch_name)(*args, dtype=torch.float64, **kwargs), shape)


@pytest.mark.parametrize("dev", ["numpy", "strict-device1", pytest.param("cupy", marks=pytest.mark.gpu)],
                         indirect=True)
@pytest.mark.parametrize("cls,momentum,shape", [(InstanceNorm2d, 0.3, (3, 4, 3, 5)), (InstanceNorm1d, 0.1, (4, 6)),
                                                (InstanceNorm1d, None, (2, 4, 6))])
def test_running_statistics_equal_to_pytorch(dev, rng, cls, momentum, shape):
    """Three training steps move running_mean and running_var as PyTorch's (the samples' unbiased variances
    averaged; momentum=None leaves them); evaluation normalises with them: y, dx, dgamma, dbeta."""
    ours = cls(4, momentum=momentum, affine=True, track_running_stats=True, dtype="float64").to(dev)
    theirs = getattr(torch.nn, cls.__name__)(4, momentum=momentum, affine=True, track_running_stats=True,
                                             dtype=torch.float64)
    for _ in range(3):
        x = rng.standard_normal(shape) * 3 + 1
        ours.forward(xn.to_device(x, dev))
        theirs(torch.from_numpy(x))
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(xn.to_numpy(ours.buffers[name]), getattr(theirs, name).numpy(), rtol=1e-12,
                                   err_msg=name)
    theirs.eval()
    x, dy = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    theirs(xt).backward(torch.from_numpy(dy))
    y = ours.forward(xn.to_device(x, dev), train=False)
    for ours_value, torch_value in ((y, theirs(xt)), (ours.backward(xn.to_device(dy, dev)), xt.grad),
                                    (ours.grads["gamma"], theirs.weight.grad), (ours.grads["beta"], theirs.bias.grad)):
        np.testing.assert_allclose(xn.to_numpy(ours_value), torch_value.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_running_statistics_load_from_pytorch_and_files(tmp_path, rng):
    """PyTorch's running_mean and running_var load (its num_batches_tracked, never counted, is dropped and given
    back as 0); a saved model rebuilds track_running_stats and its buffers."""
    theirs = torch.nn.Sequential(torch.nn.InstanceNorm2d(3, track_running_stats=True, dtype=torch.float64))
    theirs(torch.from_numpy(rng.standard_normal((2, 3, 4, 4)) * 2 + 1))
    model = xn.Sequential(InstanceNorm2d(3, track_running_stats=True, dtype="float64"))
    xn.load_torch_state_dict(model, theirs.state_dict())
    np.testing.assert_array_equal(model[0].buffers["running_var"], theirs[0].running_var.numpy())
    assert int(xn.torch_state_dict(model)["0.num_batches_tracked"]) == 0
    model.save(tmp_path / "norm.npz")
    loaded = xn.load(tmp_path / "norm.npz")
    assert loaded[0].track_running_stats and repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded[0].buffers["running_mean"], theirs[0].running_mean.numpy())


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
    model = xn.Sequential(GroupNorm(2, 4, 1e-3, bias=False), InstanceNorm1d(4, momentum=None),
                          InstanceNorm1d(4, affine=True, dtype="float32"))
    model[0].params["gamma"] = rng.uniform(0.5, 2, 4).astype(np.float32)
    check_loads_on_device1(tmp_path, rng, model, ["0.gamma", "2.beta", "2.gamma"], (2, 4, 5))


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
])
def test_bad_arguments_are_named_clearly(build, message):
    with pytest.raises(ValueError, match=message):
        build()
