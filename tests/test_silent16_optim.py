"""torch.optim's keywords that xpnet keeps at PyTorch's default (``maximize``, ``foreach``, ``fused``,
``capturable``, ``differentiable``) given to an optimizer's constructor: taken at the default, as a param group's dict
takes them, and refused with the reason otherwise (they failed as Python's "unexpected keyword argument")."""

import numpy as np
import pytest
from torch_optim_checks import torch_steps

import xpnet as xn


def _model():
    return xn.Sequential(xn.layers.Linear(3, 2, dtype="float64"))


@pytest.mark.parametrize("name, defaults", [
    ("SGD", {"maximize": False, "foreach": None, "differentiable": False, "fused": None}),
    ("Adam", {"maximize": False, "foreach": None, "capturable": False, "differentiable": False, "fused": None,
              "decoupled_weight_decay": False}),
    ("RMSprop", {"maximize": False, "foreach": None, "capturable": False, "differentiable": False}),
])
def test_pytorchs_default_keywords_are_taken_and_step_as_pytorch(name, defaults):
    model = _model()
    opt = getattr(xn.optim, name)(model.parameters(), lr=0.1, **defaults)
    w0 = np.array(model.named_params()["0.b"], copy=True)
    grads = [np.array([0.5, -1.0]), np.array([0.25, 2.0])]
    for g in grads:
        opt.zero_grad()
        model.layers[0].grads.update({"W": np.zeros((3, 2)), "b": g})
        opt.step()
    expected = torch_steps(name, w0, grads, lr=0.1, **defaults)
    np.testing.assert_allclose(model.named_params()["0.b"], expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("key, value, why", [
    ("maximize", True, r"it minimizes the loss \(negate the loss to maximize\)"),
    ("foreach", True, "xpnet has one implementation of the step"),
    ("fused", True, r"xpnet has one implementation of the step \(fused where a kernel is registered\)"),
    ("differentiable", True, "xpnet has no autograd through the step"),
])
@pytest.mark.parametrize("form", ["learning rate", "model.parameters()", "param groups"])
def test_other_values_are_refused_saying_why(key, value, why, form):
    model = _model()
    args = {"learning rate": (), "model.parameters()": (model.parameters(),),
            "param groups": ([{"params": model.parameters()}],)}[form]
    with pytest.raises(ValueError, match=rf"^SGD: {key}=True: only PyTorch's default (False|None) is taken: {why}$"):
        xn.optim.SGD(*args, lr=0.1, **{key: value})


def test_adam_refuses_decoupled_weight_decay_naming_adamw():
    with pytest.raises(ValueError, match=r"^Adam: decoupled_weight_decay=True: .*xn\.optim\.AdamW decays decoupled"):
        xn.optim.Adam(_model().parameters(), lr=0.1, weight_decay=0.01, decoupled_weight_decay=True)
