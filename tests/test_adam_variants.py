"""NAdam, RAdam, Adamax and Adadelta against torch.optim's own, run in float64: PyTorch's positional arguments,
frozen steps, exact resume, the captured step's numbers, and the hyperparameters PyTorch refuses."""

import numpy as np
import pytest

import array_api_compat.numpy as anp
import xpnet as xn
from xpnet import optim
from xpnet.optim.device_scalars import DeviceScalars

from conftest import require_cuda
from torch_optim_checks import torch_steps


class _Params:
    """Two parameters, "a.weight" and "a.bias", with their gradients; those named in ``frozen`` do not train."""

    def __init__(self, p0):
        self.p = {"a.weight": p0[0].copy(), "a.bias": p0[1].copy()}
        self.g, self.frozen = {}, set()

    def named_params(self):
        return self.p

    def params_and_grads(self, trainable=True):
        keep = [k for k in self.p if k not in self.frozen]
        return {k: self.p[k] for k in keep}, {k: self.g[k] for k in keep}

    def set_param(self, name, value):
        self.p[name] = value


def _data(rng, steps=10):
    p0 = [rng.standard_normal((3, 2)), rng.standard_normal(2)]
    return p0, [[rng.standard_normal((3, 2)), rng.standard_normal(2)] for _ in range(steps)]


def _run(opt, p0, grads, lr_at=None, frozen_at=(), model=None):
    model = model or _Params(p0)
    for i, g in enumerate(grads):
        if lr_at and i in lr_at:
            opt.lr = lr_at[i]
        model.g = dict(zip(model.p, g))
        model.frozen = {"a.bias"} if i in frozen_at else set()
        opt.step(model)
    return model


# PyTorch's positional arguments after params, given alike to torch.optim and xn.optim.
SETTINGS = [
    ("NAdam", ()), ("NAdam", (0.01, (0.8, 0.95), 1e-6, 0.1)), ("NAdam", (0.01, (0.9, 0.999), 1e-8, 0.1, 0.02, True)),
    ("RAdam", ()), ("RAdam", (0.01, (0.8, 0.9), 1e-6, 0.1)), ("RAdam", (0.01, (0.9, 0.99), 1e-8, 0.1, True)),
    ("Adamax", ()), ("Adamax", (0.01, (0.8, 0.9), 1e-6, 0.1, None)),
    ("Adadelta", ()), ("Adadelta", (0.5, 0.5, 1e-5, 0.1, None)), ("Adadelta", (1.0, 1.0)),
]


@pytest.mark.parametrize("name,args", SETTINGS, ids=[f"{n}{a}" for n, a in SETTINGS])
def test_steps_equal_pytorchs_with_its_positional_arguments(name, args, rng):
    """Ten steps (RAdam's rectification starts at the sixth), the learning rate changed at the seventh."""
    p0, grads = _data(rng)
    model = _run(getattr(optim, name)(*args, weight_decay_on="all"), p0, grads, lr_at={6: 0.003})
    for i, key in enumerate(model.p):
        ref = torch_steps(name, p0[i], [g[i] for g in grads], *args, lr_at={6: 0.003})
        np.testing.assert_allclose(model.p[key], ref, rtol=1e-12, atol=1e-14)
        assert not np.allclose(ref, p0[i], rtol=1e-3)


@pytest.mark.parametrize("name", ["NAdam", "RAdam", "Adamax", "Adadelta"])
def test_a_frozen_parameter_is_left_as_it_is_and_counts_its_own_steps(name, rng):
    """The bias frozen at steps 0-2 and 6 (trainable from the fourth, as PyTorch's with grad None then): it stays
    untouched while frozen, and its step count starts when it first trains (bias corrections, NAdam's mu)."""
    p0, grads = _data(rng)
    frozen = (0, 1, 2, 6)
    opt = getattr(optim, name)(weight_decay=0.1, weight_decay_on="all")
    model = _run(opt, p0, grads[:3], frozen_at=frozen)
    np.testing.assert_array_equal(model.p["a.bias"], p0[1])
    model = _run(opt, None, grads[3:], frozen_at=[i - 3 for i in frozen], model=model)
    for i, key in enumerate(model.p):
        ref = torch_steps(name, p0[i], [g[i] for g in grads], weight_decay=0.1, frozen_at=frozen if i else ())
        np.testing.assert_allclose(model.p[key], ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["NAdam", "RAdam", "Adamax", "Adadelta"])
def test_state_dict_resumes_exactly(name, rng):
    """Four steps, state_dict into a new optimizer (another lr, overwritten), six more: bit for bit the
    uninterrupted run's parameters."""
    p0, grads = _data(rng)
    make = getattr(optim, name)
    whole = _run(make(0.01, weight_decay=0.1), p0, grads)
    first = make(0.01, weight_decay=0.1)
    half = _run(first, p0, grads[:4])
    resumed = make(0.5)
    resumed.load_state_dict(first.state_dict())
    assert resumed.hyperparams() == first.hyperparams() and resumed.t == 4
    half = _run(resumed, None, grads[4:], model=half)
    for key in whole.p:
        np.testing.assert_array_equal(half.p[key], whole.p[key])


def _one_cycle(opt, lr_scheduler):
    return lr_scheduler.OneCycleLR(opt, 0.05, total_steps=12, pct_start=0.4, base_momentum=0.5)


def _cycle(opt, sched, model, grads):
    for g in grads:
        _run(opt, None, [g], model=model)
        sched.step()


def test_nadam_resumed_under_one_cycle_momentum_goes_on_as_pytorchs_uninterrupted_run(rng):
    """OneCycleLR's cycle_momentum moves beta1 at each step; PyTorch multiplies each step's mu, with that step's
    beta1, into its state's mu_product. After a state_dict round trip NAdam rebuilt its product with the
    current beta1 alone: off PyTorch's and its own uninterrupted run."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    p0, grads = _data(rng, 12)
    first, model = optim.NAdam(), _Params(p0)
    sched = _one_cycle(first, optim.lr_scheduler)
    _cycle(first, sched, model, grads[:6])
    resumed = optim.NAdam(0.5, (0.1, 0.9))
    resumed_sched = _one_cycle(resumed, optim.lr_scheduler)
    resumed.load_state_dict(first.state_dict())
    resumed_sched.load_state_dict(sched.state_dict())
    _cycle(resumed, resumed_sched, model, grads[6:])
    for i, key in enumerate(model.p):
        ref = torch_steps("NAdam", p0[i], [g[i] for g in grads],
                          schedule=lambda opt: _one_cycle(opt, torch.optim.lr_scheduler))
        np.testing.assert_allclose(model.p[key], ref, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name,kwargs", [("NAdam", {}), ("NAdam", {"momentum_decay": 0.0}),
                                         ("RAdam", {"decoupled_weight_decay": True, "weight_decay": 0.1}),
                                         ("Adamax", {}), ("Adadelta", {})])
def test_numbers_computed_on_the_device_equal_the_eager_ones(name, kwargs, rng):
    """A captured CUDA-graph step reads t and lr from device arrays (DeviceScalars): the same updates, here on
    NumPy (NAdam's product of mu in closed form, RAdam's branch on rho_t > 5 as a where)."""
    p0, grads = _data(rng)
    eager = _run(getattr(optim, name)(0.01, **kwargs), p0, grads)
    opt = getattr(optim, name)(0.01, **kwargs)
    opt.device_scalars = DeviceScalars(anp, "cpu")
    opt.device_scalars.set(opt.lr, opt.t)
    on_device = _run(opt, p0, grads)
    for key in eager.p:
        np.testing.assert_allclose(on_device.p[key], eager.p[key], rtol=1e-13, atol=1e-15)


@pytest.mark.gpu
@pytest.mark.parametrize("scalars", [False, True], ids=["eager", "device-scalars"])
@pytest.mark.parametrize("name", ["NAdam", "RAdam", "Adamax", "Adadelta"])
def test_steps_on_cupy_equal_numpys(name, scalars, rng):
    """Ten steps on CuPy in float64, the bias frozen for two (its own step count): NumPy's eager steps, with the
    step's numbers as Python floats or read from device arrays (DeviceScalars) as a captured step reads them."""
    dev = require_cuda()
    p0, grads = _data(rng)
    expected = _run(getattr(optim, name)(0.01), p0, grads, frozen_at=(2, 3))
    opt = getattr(optim, name)(0.01)
    if scalars:
        opt.device_scalars = DeviceScalars(dev.xp, dev.native)
        opt.device_scalars.set(opt.lr, opt.t)
    got = _run(opt, [xn.to_device(p, dev) for p in p0], [[xn.to_device(g, dev) for g in step] for step in grads],
               frozen_at=(2, 3))
    for key in expected.p:
        xn.testing.assert_placed(got.p[key], dev, "float64")
        np.testing.assert_allclose(xn.to_numpy(got.p[key]), expected.p[key], rtol=1e-12, atol=1e-14, err_msg=key)


@pytest.mark.parametrize("make,message", [
    (lambda: optim.NAdam(lr=-0.1), "NAdam: lr must be a finite number >= 0, got -0.1"),
    (lambda: optim.NAdam(momentum_decay=-1e-3), "NAdam: momentum_decay must be a finite number >= 0, got -0.001"),
    (lambda: optim.NAdam(betas=(0.9, 1.0)), r"NAdam: betas\[1\] must be in \[0, 1\), got 1.0"),
    (lambda: optim.RAdam(betas=0.9), r"RAdam: betas must be a pair \(beta1, beta2\), got 0.9"),
    (lambda: optim.RAdam(decoupled_weight_decay="yes"), "RAdam: decoupled_weight_decay must be True or False"),
    (lambda: optim.Adamax(eps=0.0), "Adamax: eps must be a finite number > 0, got 0.0"),
    (lambda: optim.Adamax(weight_decay=-1), "Adamax: weight_decay must be a finite number >= 0, got -1"),
    (lambda: optim.Adadelta(rho=1.5), r"Adadelta: rho must be in \[0, 1\], got 1.5"),
    (lambda: optim.Adadelta(1.0, 0.9, 1e-6, 0.0, "no"), "Adadelta: foreach must be True or False, got 'no'"),
])
def test_bad_hyperparameters_are_refused_naming_them(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_names_for_train_and_what_xpnet_says_of_asgd():
    for name, cls in [("nadam", optim.NAdam), ("RAdam", optim.RAdam), ("adamax", optim.Adamax),
                      ("adadelta", optim.Adadelta)]:
        assert type(optim.get(name)) is cls
    assert optim.get("adadelta").lr == 1.0 and repr(optim.NAdam()).startswith("NAdam(lr=0.002, betas=(0.9, 0.999)")
    with pytest.raises(AttributeError, match="AveragedModel"):
        xn.optim.ASGD
