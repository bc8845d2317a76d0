"""xn.optim.lr_scheduler: PyTorch's schedulers on an xpnet optimizer, lr for lr against torch's."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

import xpnet as xn
from xpnet.optim import lr_scheduler as ls

STEPS = 50
# torch's warning when its scheduler steps before any optimizer.step: these tests step schedulers alone.
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`:UserWarning")

# (name, arguments as PyTorch takes them after the optimizer); OneCycleLR's also move SGD's momentum.
CASES = [
    ("StepLR", {"step_size": 7, "gamma": 0.5}),
    ("StepLR", {"step_size": 1.0, "gamma": 0.95}),  # the word-language tutorial's StepLR(optimizer, 1.0, gamma=0.95)
    ("MultiStepLR", {"milestones": [5, 12, 12, 30], "gamma": 0.3}),
    ("ExponentialLR", {"gamma": 0.93}),
    ("CosineAnnealingLR", {"T_max": 13, "eta_min": 0.001}),
    ("LambdaLR", {"lr_lambda": lambda e: 1.0 / (1 + e) ** 0.5}),
    ("MultiplicativeLR", {"lr_lambda": lambda e: 0.97}),
    ("LinearLR", {"start_factor": 0.1, "end_factor": 0.9, "total_iters": 17}),
    ("ConstantLR", {"factor": 0.25, "total_iters": 9}),
    ("PolynomialLR", {"total_iters": 40, "power": 2.0}),
    ("OneCycleLR", {"max_lr": 0.7, "total_steps": STEPS}),
    ("OneCycleLR", {"max_lr": 0.7, "epochs": 5, "steps_per_epoch": 10, "anneal_strategy": "linear",
                    "three_phase": True}),
    ("CosineAnnealingWarmRestarts", {"T_0": 6, "T_mult": 2, "eta_min": 0.01}),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.2, "step_size_up": 7}),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.2, "step_size_up": 4, "step_size_down": 9, "mode": "triangular2",
                  "base_momentum": 0.7, "max_momentum": 0.95}),
    ("CyclicLR", {"base_lr": 0.05, "max_lr": 0.3, "step_size_up": 5, "mode": "exp_range", "gamma": 0.97}),
    ("CyclicLR", {"base_lr": 0.05, "max_lr": 0.3, "step_size_up": 6, "step_size_down": 3,
                  "scale_fn": lambda x: 1 / (1 + 0.1 * x), "scale_mode": "iterations", "cycle_momentum": False}),
    ("CyclicLR", {"base_lr": 0.05, "max_lr": 0.3, "step_size_up": 3, "scale_fn": lambda x: 0.8 ** x}),
    ("SequentialLR", {}),
    ("ChainedScheduler", {}),
    ("SWALR", {"swa_lr": 0.05}),
    ("SWALR", {"swa_lr": 0.02, "anneal_epochs": 30, "anneal_strategy": "linear"}),
    ("SWALR", {"swa_lr": 0.3, "anneal_epochs": 0}),
]


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _build(lib, optimizer, name, kwargs):
    """The scheduler ``name`` of ``lib`` (torch's module or xpnet's) on ``optimizer``."""
    if name == "SequentialLR":
        warmup = lib.LinearLR(optimizer, start_factor=0.05, total_iters=8)
        return lib.SequentialLR(optimizer, [warmup, lib.CosineAnnealingLR(optimizer, T_max=42)], milestones=[8])
    if name == "ChainedScheduler":
        return lib.ChainedScheduler([lib.ConstantLR(optimizer, factor=0.5, total_iters=4),
                                     lib.ExponentialLR(optimizer, gamma=0.9)])
    if name == "SWALR":  # in swa_utils, beside lr_scheduler, in both libraries
        return importlib.import_module(lib.__name__.replace("lr_scheduler", "swa_utils")).SWALR(optimizer, **kwargs)
    return getattr(lib, name)(optimizer, **kwargs)


def _pair(torch, name, kwargs):
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    theirs = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    ours = xn.optim.SGD(0.1, momentum=0.9)
    return theirs, _build(torch.optim.lr_scheduler, theirs, name, kwargs), ours, _build(ls, ours, name, kwargs)


def _lrs(opt, sched, steps, momentum=lambda: None):
    out = []
    for _ in range(steps):
        sched.step()
        out.append((sched.get_last_lr()[0], getattr(sched, "last_epoch", None), momentum()))
    return out


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_lrs_equal_torchs_step_by_step(name, kwargs):
    torch = _torch()
    topt, tsched, opt, sched = _pair(torch, name, kwargs)
    assert opt.lr == tsched.get_last_lr()[0] == topt.param_groups[0]["lr"]
    theirs = _lrs(topt, tsched, STEPS - 1, lambda: topt.param_groups[0]["momentum"])
    ours = _lrs(opt, sched, STEPS - 1, lambda: opt.momentum)
    np.testing.assert_allclose([o[0] for o in ours], [t[0] for t in theirs], rtol=1e-12, atol=0)
    np.testing.assert_allclose([o[2] for o in ours], [t[2] for t in theirs], rtol=1e-12, atol=0)
    assert [o[1] for o in ours] == [t[1] for t in theirs] or name == "ChainedScheduler"  # torch's has none
    assert opt.lr == sched.get_last_lr()[0]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_state_dict_resumes_the_same_lrs(name, kwargs):
    """A fresh optimizer and scheduler that load the state after 20 steps (through JSON, as a full
    checkpoint keeps it) go on with the lrs of the uninterrupted run."""
    opt = xn.optim.SGD(0.1, momentum=0.9)
    sched = _build(ls, opt, name, kwargs)
    _lrs(opt, sched, 20)
    saved = json.loads(json.dumps(sched.state_dict()))
    again = xn.optim.SGD(0.1, momentum=0.9)
    resumed = _build(ls, again, name, kwargs)
    resumed.load_state_dict(saved)
    assert again.lr == opt.lr
    assert _lrs(again, resumed, STEPS - 21) == _lrs(opt, sched, STEPS - 21)


def test_warm_restarts_take_fractional_epochs_as_torch():
    """CosineAnnealingWarmRestarts' documented per-batch use: scheduler.step(epoch + i / iters)."""
    torch = _torch()
    topt, tsched, opt, sched = _pair(torch, "CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 2})
    for epoch in range(6):
        for i in range(4):
            tsched.step(epoch + i / 4)
            sched.step(epoch + i / 4)
            assert sched.get_last_lr()[0] == pytest.approx(tsched.get_last_lr()[0], rel=1e-12)


@pytest.mark.parametrize("kwargs", [{}, {"mode": "max", "threshold_mode": "abs", "patience": 2, "cooldown": 3,
                                         "factor": 0.5, "min_lr": 0.004}])
def test_reduce_on_plateau_equals_torch(kwargs):
    torch = _torch()
    metrics = np.round(np.random.default_rng(0).uniform(0.5, 1.0, STEPS), 2)
    param = torch.nn.Parameter(torch.zeros(1))
    topt = torch.optim.SGD([param], lr=0.1)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **{"patience": 1, **kwargs})
    opt = xn.optim.SGD(0.1)
    sched = ls.ReduceLROnPlateau(opt, **{"patience": 1, **kwargs})
    theirs, ours = [], []
    for m in metrics:
        tsched.step(float(m))
        sched.step(m)
        theirs.append(tsched.get_last_lr()[0])
        ours.append(sched.get_last_lr()[0])
    assert ours == theirs and len(set(ours)) > 2


@pytest.mark.parametrize("make,match", [
    (lambda o: ls.StepLR(o, 0), r"StepLR: step_size must be an int >= 1, got 0"),
    (lambda o: ls.StepLR(o, 2.5), r"StepLR: step_size must be an int >= 1, got 2.5"),  # 1.0 counts as 1
    (lambda o: ls.LambdaLR(o, [lambda e: 1.0, lambda e: 0.5]),
     r"LambdaLR: lr_lambda has 2 values, one per param group, and the optimizer has 1 param group\(s\); pass 1 "
     r"value\(s\) or one for all"),
    (lambda o: ls.OneCycleLR(o, max_lr=[0.1, 0.2], total_steps=10), r"OneCycleLR: max_lr has 2 values, one per param"),
    (lambda o: ls.ReduceLROnPlateau(o, min_lr=[0.0, 0.1]), r"ReduceLROnPlateau: min_lr has 2 values"),
    (lambda o: ls.StepLR(o, 3, gamma=[0.1, 0.2]),
     r"StepLR: gamma must be one value for every param group \(as PyTorch's\), got \[0.1, 0.2\]"),
    (lambda o: ls.ReduceLROnPlateau(o, factor=1.0), r"ReduceLROnPlateau: factor must be a finite number in \(0, 1\)"),
    (lambda o: ls.LinearLR(o, start_factor=0.0), r"LinearLR: start_factor must be a finite number in \(0, 1\]"),
    (lambda o: ls.OneCycleLR(o, max_lr=0.1), r"OneCycleLR: give total_steps, or epochs and steps_per_epoch"),
    (lambda o: ls.OneCycleLR(xn.optim.AdaGrad(0.1), max_lr=0.1, total_steps=9),
     r"OneCycleLR: cycle_momentum=True .* AdaGrad has not; pass cycle_momentum=False"),
    (lambda o: ls.LambdaLR(o, lambda e: -1.0), r"LambdaLR: the lr at last_epoch 0 is -0.1"),
    (lambda o: ls.StepLR(o, 3).step(5), r"StepLR.step: step\(epoch\) is deprecated in PyTorch"),
    (lambda o: ls.CyclicLR(o, 0.01, 0.1, mode="triangle"),
     r"CyclicLR: mode must be one of 'triangular', 'triangular2', 'exp_range' \(or give scale_fn\), got 'triangle'"),
    (lambda o: ls.CyclicLR(o, 0.01, 0.1, step_size_up=0), r"CyclicLR: step_size_up must be an int >= 1, got 0"),
    (lambda o: ls.CyclicLR(o, 0.01, 0.1, scale_fn=lambda x: 1.0, scale_mode="epoch"),
     r"CyclicLR: scale_mode must be 'cycle' or 'iterations', got 'epoch'"),
    (lambda o: ls.CyclicLR(o, [0.01, 0.02], 0.1), r"CyclicLR: base_lr has 2 values, one per param group"),
    (lambda o: ls.CyclicLR(o, 0.01, 0.1, max_momentum=1.0),
     r"CyclicLR: max_momentum must be a finite number in \[0, 1\), got 1.0"),
    (lambda o: ls.CyclicLR(xn.optim.Adadelta(1.0), 0.01, 0.1),
     r"CyclicLR: cycle_momentum=True .* Adadelta has not; pass cycle_momentum=False"),
])
def test_bad_arguments_fail_at_once_saying_what_to_write(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(xn.optim.SGD(0.1))


def test_a_torch_optimizer_is_refused_naming_it():
    torch = _torch()
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(TypeError, match=r"StepLR: optimizer must be an xpnet optimizer.*got torch.optim.sgd.SGD "
                                        r"\(a PyTorch optimizer"):
        ls.StepLR(opt, step_size=3)


@pytest.mark.parametrize("name,kwargs", [("OneCycleLR", {"max_lr": 0.2, "total_steps": 20}),
                                         ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.2, "step_size_up": 3})])
def test_cycle_momentum_moves_adams_beta1_as_torch(name, kwargs):
    torch = _torch()
    topt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1, betas=(0.9, 0.99))
    opt = xn.optim.Adam(0.1, betas=(0.9, 0.99))
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    sched = getattr(ls, name)(opt, **kwargs)
    assert opt.betas == topt.param_groups[0]["betas"]
    for _ in range(19):
        tsched.step()
        sched.step()
        assert opt.betas == pytest.approx(topt.param_groups[0]["betas"], rel=1e-12)
        assert opt.lr == pytest.approx(tsched.get_last_lr()[0], rel=1e-12)


# Per-group lists where PyTorch takes them (two groups).
GROUP_CASES = CASES + [
    ("LambdaLR", {"lr_lambda": [lambda e: 0.9 ** e, lambda e: 1.0 / (1 + e)]}),
    ("MultiplicativeLR", {"lr_lambda": [lambda e: 0.97, lambda e: 0.9]}),
    ("OneCycleLR", {"max_lr": [0.7, 0.2], "total_steps": STEPS, "base_momentum": [0.8, 0.85],
                    "max_momentum": [0.9, 0.95]}),
    ("SWALR", {"swa_lr": [0.05, 0.001], "anneal_epochs": 7}),
    ("CyclicLR", {"base_lr": [0.01, 0.002], "max_lr": [0.2, 0.05], "step_size_up": 4, "step_size_down": 6,
                  "mode": "triangular2", "base_momentum": [0.8, 0.85], "max_momentum": [0.9, 0.95]}),
    ("CyclicLR", {"base_lr": [0.01, 0.002], "max_lr": 0.2, "step_size_up": 5, "mode": "exp_range", "gamma": 0.95}),
]
# The schedules that set every group's lr from values given once: one value, the same lr in both groups (as torch's).
SAME_LR = {"OneCycleLR": "max_lr", "CyclicLR": "base_lr", "SWALR": "swa_lr"}


@pytest.mark.parametrize("name,kwargs", GROUP_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(GROUP_CASES)])
def test_two_param_groups_get_torchs_lrs_step_by_step(name, kwargs):
    """Each group's lr (and OneCycleLR's momentum) equals torch's [g['lr'] for g in opt.param_groups]."""
    torch = _torch()
    params = [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64)) for _ in range(2)]
    topt = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.03}], lr=0.1, momentum=0.9)
    model = xn.Sequential(xn.layers.Linear(1, 1), xn.layers.Linear(1, 1))
    opt = xn.optim.SGD([{"params": model[0]}, {"params": model[1], "lr": 0.03}], lr=0.1, momentum=0.9)
    tsched, sched = _build(torch.optim.lr_scheduler, topt, name, kwargs), _build(ls, opt, name, kwargs)
    apart = 0  # the steps where the two groups' lrs differ
    for _ in range(STEPS):
        ours = [(g["lr"], g["momentum"]) for g in opt.param_groups]
        apart += ours[0][0] != ours[1][0]
        theirs = [(g["lr"], g["momentum"]) for g in topt.param_groups]
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
        np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-12, atol=0)
        if _ == STEPS - 1:
            break
        tsched.step()
        sched.step()
    # one max_lr, base_lr, or anneal_epochs=0 to one swa_lr: the same lr for both groups from the first step
    assert apart > 0 or name in SAME_LR and not isinstance(kwargs[SAME_LR[name]], list) and \
        (name != "SWALR" or kwargs.get("anneal_epochs") == 0)


@pytest.mark.parametrize("kwargs", [{"min_lr": [0.004, 0.02]}, {"min_lr": 0.01, "factor": 0.5}])
def test_reduce_on_plateau_reduces_each_group_as_torch(kwargs):
    torch = _torch()
    metrics = np.round(np.random.default_rng(0).uniform(0.5, 1.0, STEPS), 2)
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    topt = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.05}], lr=0.1)
    model = xn.Sequential(xn.layers.Linear(1, 1), xn.layers.Linear(1, 1))
    opt = xn.optim.SGD([{"params": model[0]}, {"params": model[1], "lr": 0.05}], lr=0.1)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, patience=1, **kwargs)
    sched = ls.ReduceLROnPlateau(opt, patience=1, **kwargs)
    lrs = []
    for m in metrics:
        tsched.step(float(m))
        sched.step(m)
        assert sched.get_last_lr() == tsched.get_last_lr() == [g["lr"] for g in opt.param_groups]
        lrs.append(tuple(sched.get_last_lr()))
    assert len(set(lrs)) > 2 and any(a != b for a, b in lrs)


def test_two_groups_state_dict_resumes_the_same_lrs():
    def build():
        model = xn.Sequential(xn.layers.Linear(1, 1), xn.layers.Linear(1, 1))
        opt = xn.optim.Adam([{"params": model[0]}, {"params": model[1], "lr": 0.03}], lr=0.1)
        return opt, ls.OneCycleLR(opt, max_lr=[0.5, 0.2], total_steps=STEPS)

    opt, sched = build()
    for _ in range(20):
        sched.step()
    again, resumed = build()
    resumed.load_state_dict(json.loads(json.dumps(sched.state_dict())))
    assert [(g["lr"], g["betas"]) for g in again.param_groups] == [(g["lr"], g["betas"]) for g in opt.param_groups]
    for _ in range(STEPS - 21):
        sched.step()
        resumed.step()
    assert resumed.get_last_lr() == sched.get_last_lr()
