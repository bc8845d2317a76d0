"""Optimizers against reference formulas; state on the parameter's device; nothing half-updated."""

import math

import numpy as np
import pytest

import xpnet as xn
from xpnet import optim
from xpnet.testing import assert_placed, tolerance


class _Params:
    """A one-parameter 'model' with a fixed gradient sequence."""

    def __init__(self, p, dev):
        self.p = xn.to_device(p, dev)
        self.g = None

    def named_params(self):
        return {"w": self.p}

    def named_grads(self):
        return {"w": self.g}


def _reference(name, p, grads, lr):
    p = p.copy()
    v = np.zeros_like(p)
    h = np.zeros_like(p)
    m = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if name == "sgd":
            p -= lr * g
        elif name == "momentum":
            v = 0.9 * v - lr * g
            p += v
        elif name == "nesterov":
            v = 0.9 * v + g
            p -= lr * (g + 0.9 * v)
        elif name == "adagrad":
            h += g * g
            p -= lr * g / (np.sqrt(h) + 1e-7)
        elif name == "rmsprop":
            h = 0.99 * h + 0.01 * g * g
            p -= lr * g / (np.sqrt(h) + 1e-8)
        elif name in ("adam", "adamw"):
            if name == "adamw":
                p *= 1 - lr * 0.01
            m = 0.9 * m + 0.1 * g
            h = 0.999 * h + 0.001 * g * g
            mh, vh = m / (1 - 0.9 ** t), h / (1 - 0.999 ** t)
            p -= lr * mh / (np.sqrt(vh) + 1e-8)
    return p


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_updates_match_reference_and_stay_on_device(case, rng, name):
    dev, dtype = case
    p0 = rng.standard_normal((3, 2))
    grads = [rng.standard_normal((3, 2)) for _ in range(4)]
    opt = optim.OPTIMIZERS[name](lr=0.05)
    model = _Params(p0.astype(dtype), dev)
    p_before = model.p
    for g in grads:
        model.g = xn.to_device(g.astype(dtype), dev)
        opt.step(model)
    assert model.p is p_before  # updated in place
    assert_placed(model.p, dev, dtype)
    for slots in opt.state.values():
        for s in slots.values():
            assert_placed(s, dev, dtype)
    ref = _reference(name, p0.astype(dtype).astype(np.float64), grads, 0.05)
    t = tolerance(dtype)
    np.testing.assert_allclose(xn.to_numpy(model.p), ref, rtol=max(t["rtol"], 1e-9) * 10, atol=t["atol"] * 10)


def test_bad_gradient_leaves_every_parameter_untouched():
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(3, 2), xn.layers.Linear(2, 2))
    model.forward(np.ones((1, 3), np.float32))
    model.backward(np.ones((1, 2), np.float32))
    model[1].grads["W"] = np.ones((5, 5), np.float32)
    before = {k: v.copy() for k, v in model.named_params().items()}
    with pytest.raises(ValueError, match="gradient of '1.W' does not match"):
        optim.SGD(0.1).step(model)
    for k, v in model.named_params().items():
        np.testing.assert_array_equal(v, before[k])


def test_step_before_backward():
    model = xn.Sequential(xn.layers.Linear(3, 2))
    with pytest.raises(RuntimeError, match="no gradient for '0.W'"):
        optim.Adam().step(model)


def test_optimizer_bound_to_another_model():
    a, b = xn.Sequential(xn.layers.Linear(2, 2)), xn.Sequential(xn.layers.Linear(2, 2))
    for m in (a, b):
        m.forward(np.ones((1, 2), np.float32))
        m.backward(np.ones((1, 2), np.float32))
    opt = optim.SGD(0.1)
    opt.step(a)
    with pytest.raises(ValueError, match="bound to another model"):
        opt.step(b)


@pytest.mark.parametrize("make", [lambda: optim.SGD(0), lambda: optim.SGD(-1), lambda: optim.Adam(lr=math.nan),
                                  lambda: optim.Momentum(0.1, momentum=1.0), lambda: optim.Adam(betas=(0.9,)),
                                  lambda: optim.RMSprop(alpha=-0.1), lambda: optim.AdamW(weight_decay=-1)])
def test_hyperparameters_are_validated(make):
    with pytest.raises(ValueError, match="must be"):
        make()


def test_state_dict_round_trip(rng):
    model = _Params(rng.standard_normal(3), xn.device("cpu"))
    opt = optim.Adam(0.01)
    for _ in range(3):
        model.g = rng.standard_normal(3)
        opt.step(model)
    other = optim.Adam(0.5)
    other.load_state_dict(opt.state_dict())
    assert other.lr == 0.01 and other.t == 3
    np.testing.assert_array_equal(other.state["w"]["m"], opt.state["w"]["m"])
    with pytest.raises(ValueError, match="cannot load the state of a Adam"):
        optim.SGD(0.1).load_state_dict(opt.state_dict())
