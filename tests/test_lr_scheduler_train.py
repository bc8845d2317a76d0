"""xn.train with the schedulers of xn.optim.lr_scheduler: stepped per epoch (scheduler=) or per batch
(xn.callbacks.LRScheduler(..., interval="step")), the lrs of a PyTorch loop, and an exact resume."""

from __future__ import annotations

import importlib
import math
import types

import numpy as np
import pytest

import xpnet as xn
from xpnet.callbacks import AveragedWeights, Callback, LRScheduler, ModelCheckpoint
from xpnet.optim import lr_scheduler as ls, swa_utils

pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`:UserWarning")

STEPS = 6  # 180 rows in batches of 30


class LrPerStep(Callback):
    """The lr each update ran with (listed before the scheduler's callback, which steps after it)."""

    def __init__(self):
        self.lrs = []

    def on_train_batch_end(self, batch):
        self.lrs.append(self.state.optimizer.lr)


def _fit(opt, epochs=4, callbacks=(), model=None, **kw):
    x, t = xn.datasets.spiral(60, 3, seed=0)
    xn.init.seed(0)
    model = model or xn.Sequential(xn.layers.Linear(2, 16), xn.layers.ReLU(), xn.layers.Linear(16, 3))
    rec = LrPerStep()
    h = xn.train(model, (x, t), loss="cross_entropy", optimizer=opt, epochs=epochs, batch_size=30,
                 validation=(x, t), progress=False, callbacks=[rec, *callbacks], blas_threads=1, **kw)
    return rec.lrs, h, model


def _torch_loop(make, per_step, epochs=4, metrics=None):
    """The lr of each step in PyTorch's loop: optimizer.step(), then scheduler.step() per batch or per epoch."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    sched, lrs = make(torch.optim.lr_scheduler, opt), []
    for epoch in range(epochs):
        for _ in range(STEPS):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if per_step:
                sched.step()
        if not per_step:
            sched.step(*([] if metrics is None else [metrics[epoch]]))
    return lrs


def test_scheduler_steps_after_each_epoch_as_a_pytorch_loop():
    make = lambda lib, o: lib.MultiStepLR(o, milestones=[1, 3], gamma=0.5)  # noqa: E731
    opt = xn.optim.SGD(0.1, momentum=0.9)
    lrs, h, _ = _fit(opt, scheduler=make(ls, opt))
    assert lrs == _torch_loop(make, per_step=False)
    assert [e["lr"] for e in h.epochs] == lrs[::STEPS]


def test_interval_step_steps_after_each_batch_as_a_pytorch_loop():
    make = lambda lib, o: lib.OneCycleLR(o, max_lr=0.5, epochs=4, steps_per_epoch=STEPS)  # noqa: E731
    opt = xn.optim.SGD(0.1, momentum=0.9)
    lrs, _, _ = _fit(opt, scheduler=LRScheduler(make(ls, opt), interval="step"))
    np.testing.assert_allclose(lrs, _torch_loop(make, per_step=True), rtol=1e-12, atol=0)


def test_reduce_on_plateau_reads_the_monitored_log():
    opt = xn.optim.SGD(0.1, momentum=0.9)
    lrs, h, _ = _fit(opt, epochs=6, scheduler=LRScheduler(ls.ReduceLROnPlateau(opt, mode="max", patience=0),
                                                          monitor="val_acc"))
    accuracy = [e["val_accuracy"] for e in h.epochs]
    make = lambda lib, o: lib.ReduceLROnPlateau(o, mode="max", patience=0)  # noqa: E731
    assert lrs == _torch_loop(make, per_step=False, epochs=6, metrics=accuracy)
    assert len(set(lrs)) > 1


def _one_cycle(opt):
    return ls.OneCycleLR(opt, max_lr=0.5, epochs=4, steps_per_epoch=STEPS)


def _cyclic(opt):
    return ls.CyclicLR(opt, base_lr=0.01, max_lr=0.5, step_size_up=4, step_size_down=5, mode="triangular2")


@pytest.mark.parametrize("make, schedule", [(lambda: xn.optim.SGD(0.1, momentum=0.9), _one_cycle),
                                            (lambda: xn.optim.NAdam(0.01), _one_cycle),
                                            (lambda: xn.optim.SGD(0.1, momentum=0.9), _cyclic)],
                         ids=["SGD-OneCycleLR", "NAdam-OneCycleLR", "SGD-CyclicLR"])
def test_resume_from_a_full_checkpoint_gives_the_uninterrupted_lrs_and_weights(make, schedule, tmp_path):
    """cycle_momentum moves SGD's momentum and NAdam's beta1 at each step: NAdam's running product of mu (each
    with its step's beta1) is kept by the checkpoint, where a resumed NAdam rebuilt it with the current beta1."""
    def run(epochs, **kw):
        opt = make()
        sched = LRScheduler(schedule(opt), interval="step")
        return _fit(opt, epochs, [sched, ModelCheckpoint(tmp_path / "ckpt-{epoch}.npz", full=True)], **kw)

    lrs, _, model = run(4)
    resumed_lrs, _, resumed = run(4, resume_from=tmp_path / "ckpt-2.npz")
    assert resumed_lrs == lrs[2 * STEPS:]
    for k, v in model.state().items():
        np.testing.assert_array_equal(xn.to_numpy(resumed.state()[k]), xn.to_numpy(v), err_msg=k)


def test_swa_recipe_anneals_as_torch_and_resumes_exactly(tmp_path):
    """PyTorch's SWA in xn.train: SequentialLR from a cosine to SWALR (torch's: the lr held at the milestone,
    annealed after it), AveragedWeights(start=swa_start + 2) averaging the epochs of torch's ``if epoch >
    swa_start`` (0-based), update_bn after; a run resumed in the annealing gets the same lrs and average."""
    swa_start = 1

    def make(lib, o):
        swa = importlib.import_module(lib.__name__.replace("lr_scheduler", "swa_utils"))
        return lib.SequentialLR(o, [lib.CosineAnnealingLR(o, T_max=5), swa.SWALR(o, swa_lr=0.02, anneal_epochs=3)],
                                milestones=[swa_start + 1])

    def run(**kw):
        xn.init.seed(1)
        model = xn.Sequential(xn.layers.Linear(2, 16), xn.layers.BatchNorm(16), xn.layers.ReLU(),
                              xn.layers.Linear(16, 3))
        averaged, opt = swa_utils.AveragedModel(model), xn.optim.SGD(0.1, momentum=0.9)
        callbacks = [AveragedWeights(averaged, start=swa_start + 2),
                     ModelCheckpoint(tmp_path / "ckpt-{epoch}.npz", full=True)]
        return _fit(opt, 6, callbacks, model=model, scheduler=make(ls, opt), **kw)[0], averaged

    lrs, averaged = run()
    assert lrs == _torch_loop(make, per_step=False, epochs=6)
    resumed_lrs, resumed = run(resume_from=tmp_path / "ckpt-3.npz")
    assert resumed_lrs == lrs[3 * STEPS:] and lrs[-1] == 0.02
    assert resumed.n_averaged == averaged.n_averaged == sum(epoch > swa_start for epoch in range(6))
    for k, v in averaged.state().items():
        np.testing.assert_array_equal(xn.to_numpy(resumed.state()[k]), xn.to_numpy(v), err_msg=k)
    x, _ = xn.datasets.spiral(60, 3, seed=0)
    swa_utils.update_bn([x[:90], x[90:]], averaged)
    linear = averaged.module[0]
    np.testing.assert_allclose(xn.to_numpy(averaged.module[1].buffers["running_mean"]),
                               (x @ xn.to_numpy(linear.params["W"]) + xn.to_numpy(linear.params["b"])).mean(0),
                               rtol=1e-5, atol=1e-6)


class StateBefore(Callback):
    """The model's state after update ``step`` (from 0) of ``epoch``."""

    def __init__(self, epoch, step):
        self.epoch, self.step, self.kept = epoch, step, None

    def on_train_batch_end(self, batch):
        if (self.state.epoch + 1, batch) == (self.epoch, self.step):
            self.kept = {k: xn.to_numpy(v).copy() for k, v in self.state.model.state().items()}


def test_the_nan_guard_replays_an_epoch_at_the_lrs_of_its_steps():
    """A NaN batch at epoch 2, step 4 under a per-step schedule: the guard's replay of epoch 2 runs each step
    at the lr the schedule gave it (not all at the epoch's first), so the model is left as the error says,
    with the weights, the lr and the schedule of the uninterrupted run before that step."""
    def run(*callbacks, transform=None):
        opt = xn.optim.SGD(0.1, momentum=0.9)
        sched = LRScheduler(ls.OneCycleLR(opt, max_lr=0.5, epochs=4, steps_per_epoch=STEPS), interval="step")
        used, update = [], opt.step
        opt.step = lambda model: (used.append(opt.lr), update(model))
        runs.append((used, sched.scheduler))
        _fit(opt, callbacks=[*callbacks, sched], transform=transform)

    def poison(xb, epoch, step):
        return xb * math.nan if (epoch, step) == (2, 3) else xb

    runs, before, guarded = [], StateBefore(2, 2), Callback()  # guarded.state: the failed run's
    run(before)
    with pytest.raises(xn.XpnetTrainingError, match=r"epoch 2, step 4 of 6; first non-finite value: the input batch"):
        run(guarded, transform=poison)
    (clean, _), (used, sched) = runs
    assert used[:2 * STEPS] == clean[:2 * STEPS]  # epochs 1 and 2 as they ran
    assert used[2 * STEPS:] == clean[STEPS:STEPS + 3]  # the replay of epoch 2's steps 1-3
    assert sched.optimizer.lr == clean[STEPS + 3] and sched.last_epoch == STEPS + 3
    for k, v in before.kept.items():
        np.testing.assert_array_equal(xn.to_numpy(guarded.state.model.state()[k]), v, err_msg=k)


def test_scheduler_mistakes_fail_before_training():
    opt = xn.optim.SGD(0.1)
    with pytest.raises(ValueError, match=r"LRScheduler: the scheduler sets the lr of another optimizer"):
        _fit(xn.optim.SGD(0.1), scheduler=ls.StepLR(opt, 2))
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau reads an epoch's log, interval must be 'epoch'"):
        LRScheduler(ls.ReduceLROnPlateau(opt), interval="step")
    with pytest.raises(ValueError, match=r"interval must be 'epoch' or 'step', got 'batch' \(Keras' 'batch'"):
        LRScheduler(ls.StepLR(opt, 2), interval="batch")
    with pytest.raises(TypeError, match=r"LRScheduler: scheduler must be one of xn.optim.lr_scheduler's"):
        _fit(opt, scheduler=lambda epoch: 0.1)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'lr_scheduler': scheduler="):
        _fit(opt, lr_scheduler=ls.StepLR(opt, 2))
    captured = types.SimpleNamespace(optimizer=opt, captured=True)  # xn.train(graph=True)'s state on a GPU
    with pytest.raises(ValueError, match=r"LRScheduler: CyclicLR's cycle_momentum changes the momentum, which a "
                                         r"captured CUDA-graph step keeps"):
        LRScheduler(ls.CyclicLR(opt, 0.01, 0.1), interval="step").on_train_begin(captured)
