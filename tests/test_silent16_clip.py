"""clip_grad_norm's norm_type and error_if_nonfinite, PyTorch's clip_grad_norm_ arguments (they failed as Python's
"unexpected keyword argument"): the norm and the clipped gradients equal torch's in float64."""

import copy
import math

import numpy as np
import pytest

import xpnet as xn

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _twins(rng):
    tmodel = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    model = xn.Sequential(xn.layers.Linear(3, 4, dtype="float64"), xn.layers.Tanh(),
                          xn.layers.Linear(4, 2, dtype="float64"))
    xn.load_torch_state_dict(model, tmodel.state_dict())
    x, t = rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
    torch.nn.functional.cross_entropy(tmodel(torch.tensor(x)), torch.tensor(t)).backward()
    loss = xn.losses.SoftmaxCrossEntropy()
    loss.forward(model.forward(x), t)
    model.backward(loss.backward())
    return model, tmodel


def _grads_as_torchs(model):
    grads = copy.deepcopy(model)
    for name, g in model.named_grads().items():
        grads.named_params()[name][...] = g
    return xn.torch_state_dict(grads)


@pytest.mark.parametrize("norm_type", [1.0, 3.0, math.inf, 2.0])
@pytest.mark.parametrize("max_norm", [0.05, 100.0])
def test_norm_type_clips_as_pytorch(norm_type, max_norm):
    model, tmodel = _twins(np.random.default_rng(16))
    expected = torch.nn.utils.clip_grad_norm_(tmodel.parameters(), max_norm, norm_type=norm_type).item()
    norm = xn.optim.clip_grad_norm(model, max_norm, norm_type=norm_type)
    np.testing.assert_allclose(float(norm), expected, rtol=1e-12)
    got = _grads_as_torchs(model)
    for name, p in tmodel.named_parameters():
        np.testing.assert_allclose(got[name], p.grad.numpy(), rtol=1e-12, atol=1e-15, err_msg=name)


def test_error_if_nonfinite_raises_as_pytorch_and_scales_nothing():
    model, tmodel = _twins(np.random.default_rng(16))
    model.layers[0].grads["b"][0] = np.nan
    next(iter(tmodel.parameters())).grad[0, 0] = math.nan
    with pytest.raises(RuntimeError):
        torch.nn.utils.clip_grad_norm_(tmodel.parameters(), 1.0, error_if_nonfinite=True)
    before = {k: np.array(v, copy=True) for k, v in model.named_grads().items()}
    with pytest.raises(RuntimeError, match=r"^clip_grad_norm: the total norm of order 2\.0 of the gradients is "
                                           r"nan, so they cannot be clipped \(error_if_nonfinite=True\); nothing was "
                                           r"scaled"):
        xn.optim.clip_grad_norm(model, 1.0, error_if_nonfinite=True)
    for name, g in model.named_grads().items():
        np.testing.assert_array_equal(g, before[name])
    assert math.isnan(float(xn.optim.clip_grad_norm(model, 1.0)))  # PyTorch's default: no check


@pytest.mark.parametrize("kwargs, error, message", [
    ({"norm_type": 0}, ValueError, r"norm_type must be a number > 0 or math\.inf \('inf'\), got 0"),
    ({"norm_type": "max"}, ValueError, r"norm_type must be a number > 0 or math\.inf \('inf'\), got 'max'"),
    ({"foreach": "yes"}, TypeError, r"foreach must be None, True or False, got 'yes'"),
    ({"error_if_nonfinite": 1}, TypeError, r"error_if_nonfinite must be True or False, got 1"),
])
def test_bad_arguments_are_refused(kwargs, error, message):
    model, _ = _twins(np.random.default_rng(16))
    with pytest.raises(error, match="^clip_grad_norm: " + message):
        xn.optim.clip_grad_norm(model, 1.0, **kwargs)


@pytest.mark.parametrize("spelling", ["inf", "Infinity", "3"])
def test_norm_type_and_foreach_as_pytorchs_calls_spell_them(spelling):
    """PyTorch's docs: norm_type "Can be 'inf' for infinity norm" (clip_grad_norm_ reads float(norm_type));
    foreach= (None, True or False) chooses torch's implementation, and the result is the same: both taken."""
    model, tmodel = _twins(np.random.default_rng(16))
    expected = torch.nn.utils.clip_grad_norm_(tmodel.parameters(), 0.05, norm_type=spelling, foreach=False).item()
    norm = xn.optim.clip_grad_norm(model.parameters(), 0.05, norm_type=spelling, foreach=False)
    np.testing.assert_allclose(float(norm), expected, rtol=1e-12)
    got = _grads_as_torchs(model)
    for name, p in tmodel.named_parameters():
        np.testing.assert_allclose(got[name], p.grad.numpy(), rtol=1e-12, atol=1e-15, err_msg=name)
    torch.nn.utils.clip_grad_value_(tmodel.parameters(), 0.01, foreach=True)
    xn.optim.clip_grad_value(model.parameters(), 0.01, foreach=True)
    got = _grads_as_torchs(model)
    for name, p in tmodel.named_parameters():
        np.testing.assert_allclose(got[name], p.grad.numpy(), rtol=1e-12, atol=1e-15, err_msg=name)
