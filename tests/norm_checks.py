"""Checks shared by the normalisation layers' tests (LayerNorm, GroupNorm and InstanceNorm, RMSNorm): equality with
PyTorch's module in float64 on a device, and a model saved on the CPU loaded onto array-api-strict's device1."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.testing import assert_placed

CLOSE = {"rtol": 1e-12, "atol": 1e-12}
NAMES = {"gamma": "weight", "beta": "bias"}


def compare_with_pytorch(dev, rng, ours, theirs, shape):
    """y, dx and every parameter gradient of ``ours`` (an xpnet layer in float64, moved to ``dev``) and
    ``theirs`` (the PyTorch module in float64), with the same random parameters, in training and evaluation."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
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


def check_loads_on_device1(tmp_path, rng, model, param_names, shape):
    """``model`` (float32, its first normalising layer's gamma at index 1 or 0 randomised by the caller) saved,
    loaded onto device1: the same repr and configs, ``param_names``, arrays there, and its output to float32
    rounding (NumPy's side takes the Numba kernels where they are installed, sums in float64)."""
    strict = pytest.importorskip("array_api_strict",
                                 reason="array-api-strict is not installed (pip install -e '.[test]')")
    dev1 = xn.Device(strict, strict.Device("device1"))
    model.save(tmp_path / "norm.npz")
    loaded = xn.load(tmp_path / "norm.npz", device=dev1)
    assert repr(loaded) == repr(model) and [m.config() for m in loaded] == [m.config() for m in model]
    assert sorted(loaded.named_params()) == param_names
    for name, p in loaded.named_params().items():
        assert_placed(p, dev1, "float32")
    x = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(xn.to_numpy(loaded.forward(xn.to_device(x, dev1))), model.forward(x),
                               rtol=1e-5, atol=1e-5)
