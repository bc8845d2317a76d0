"""xn.optim.swa_utils (PyTorch's AveragedModel, the EMA and SWA formulas, update_bn) against torch in float64,
and xn.callbacks.AveragedWeights in xn.train: per step and per epoch, on another device, resumed exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet as xn
from xpnet.callbacks import AveragedWeights, Callback, EarlyStopping, ModelCheckpoint
from xpnet.optim import swa_utils

TORCH_REASON = "torch is not installed (pip install -e '.[backends]')"


def _model(momentum=0.1):
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Linear(3, 4), xn.layers.BatchNorm(4, momentum=momentum), xn.layers.ReLU(),
                         xn.layers.Linear(4, 2)).to(dtype="float64")


def _torch_model(torch, model):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4, momentum=model[1].momentum),
                              torch.nn.ReLU(), torch.nn.Linear(4, 2)).double()
    _into_torch(torch, net, model)
    return net


def _into_torch(torch, net, model):
    net.load_state_dict({k: torch.from_numpy(v) for k, v in xn.torch_state_dict(model).items()})


def _compare(torch_model, model):
    ours = xn.torch_state_dict(model)
    for k, v in torch_model.state_dict().items():
        if k != "num_batches_tracked" and not k.endswith(".num_batches_tracked"):
            np.testing.assert_allclose(ours[k], v.numpy(), rtol=1e-13, atol=1e-15, err_msg=k)


AVERAGES = {"swa": ({}, {}),
            "ema-multi": ({"multi_avg_fn": ("get_ema_multi_avg_fn", 0.9)},) * 2,
            "ema": ({"avg_fn": ("get_ema_avg_fn", 0.75)},) * 2,
            "ema-decay-small": ({"multi_avg_fn": ("get_ema_multi_avg_fn", 0.3)},) * 2}


@pytest.mark.parametrize("use_buffers", [False, True], ids=["params", "buffers"])
@pytest.mark.parametrize("average", sorted(AVERAGES))
def test_averaged_parameters_equal_torch_for_the_same_sequence_of_weights(average, use_buffers):
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    from torch.optim import swa_utils as torch_swa

    def fns(lib, spec):
        return {arg: getattr(lib, name)(decay) for arg, (name, decay) in spec.items()}

    model = _model()
    net = _torch_model(torch, model)
    ours = swa_utils.AveragedModel(model, use_buffers=use_buffers, **fns(swa_utils, AVERAGES[average][0]))
    theirs = torch_swa.AveragedModel(net, use_buffers=use_buffers, **fns(torch_swa, AVERAGES[average][1]))
    rng = np.random.default_rng(0)
    for _ in range(4):
        state = {k: rng.standard_normal(v.shape) + (2.0 if k.endswith("running_var") else 0.0)
                 for k, v in model.state_dict().items()}
        model.load_state_dict(state)
        _into_torch(torch, net, model)
        ours.update_parameters(model)
        theirs.update_parameters(net)
    assert ours.n_averaged == int(theirs.n_averaged) == 4
    _compare(theirs.module, ours.module)
    x = rng.standard_normal((5, 3))
    np.testing.assert_allclose(ours.eval()(x), theirs.eval()(torch.from_numpy(x)).detach().numpy(), rtol=1e-12)
    assert set(ours.state_dict()) == {"module." + k for k in model.state_dict()} | {"n_averaged"}


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
def test_update_bn_equals_torch_and_puts_momenta_and_modes_back(momentum):
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    model = _model(momentum).eval()
    net = _torch_model(torch, model)
    rng = np.random.default_rng(1)
    batches = [(rng.standard_normal((n, 3)) * 3 + 1, None) for n in (4, 7, 5)]
    swa_utils.update_bn(batches, model)
    torch.optim.swa_utils.update_bn([torch.from_numpy(x) for x, _ in batches], net)
    _compare(net, model)
    assert model[1].momentum == momentum and not model.training and not model[1].training
    if momentum is None:
        assert float(model[1].buffers["num_batches_tracked"]) == 3 == int(net[1].num_batches_tracked)


class _States(Callback):
    """The model's params after each update (listed before AveragedWeights, which updates after it)."""

    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, batch):
        self.seen.append({k: xn.to_numpy(v).copy() for k, v in self.state.model.named_params().items()})


def _fit(averaged, epochs=3, callbacks=(), model=None, **kw):
    x, t = xn.datasets.spiral(30, 3, seed=0)
    xn.init.seed(0)
    model = model or xn.Sequential(xn.layers.Linear(2, 8), xn.layers.ReLU(), xn.layers.Linear(8, 3))
    averaged = averaged(model)
    xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1, momentum=0.9), epochs=epochs,
             batch_size=30, progress=False, callbacks=list(callbacks(averaged)), blas_threads=1, **kw)
    return averaged, model


def test_interval_step_averages_after_each_update_on_the_models_device():
    strict = pytest.importorskip("array_api_strict",
                                 reason="array-api-strict is not installed (pip install -e '.[test]')")
    dev1 = xn.Device(strict, strict.Device("device1"))
    states = _States()
    make = lambda m: swa_utils.AveragedModel(m, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.8))  # noqa: E731
    averaged, model = _fit(make, callbacks=lambda a: [states, AveragedWeights(a, interval="step")], device=dev1)
    assert averaged.n_averaged == len(states.seen) == 9
    for k, v in averaged.state().items():
        xn.testing.assert_placed(v, dev1, "float32")
    expected = states.seen[0]
    for seen in states.seen[1:]:
        expected = {k: 0.8 * v + 0.2 * seen[k] for k, v in expected.items()}
    for k, v in averaged.module.named_params().items():
        np.testing.assert_allclose(xn.to_numpy(v), expected[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_the_average_never_holds_the_models_arrays():
    """update_parameters no longer copies the model's arrays before averaging them (one launch each a step on a
    GPU): an avg_fn that hands back the model's own array gets a copy, and the buffers are copies, so the
    model's next step (in place) leaves the average as it was."""
    model = _model()
    averaged = swa_utils.AveragedModel(model, avg_fn=lambda own, current, n: current)
    for _ in range(2):
        averaged.update_parameters(model)
    kept = {k: xn.to_numpy(v).copy() for k, v in averaged.state().items()}
    for v in model.state().values():
        v += 1.0
    for k, v in averaged.state().items():
        np.testing.assert_array_equal(xn.to_numpy(v), kept[k], err_msg=k)


def test_interval_epoch_from_start_averages_the_ends_of_those_epochs():
    ends = []

    class _Ends(Callback):
        def on_epoch_end(self, epoch, logs):
            ends.append({k: xn.to_numpy(v).copy() for k, v in self.state.model.named_params().items()})

    averaged, _ = _fit(swa_utils.AveragedModel, epochs=4,
                       callbacks=lambda a: [_Ends(), AveragedWeights(a, start=2)])
    assert averaged.n_averaged == 3
    for k, v in averaged.module.named_params().items():
        np.testing.assert_allclose(xn.to_numpy(v), np.mean([e[k] for e in ends[1:]], axis=0), rtol=1e-5, err_msg=k)


def test_resume_from_a_full_checkpoint_averages_as_the_uninterrupted_run(tmp_path):
    def run(**kw):
        make = lambda m: swa_utils.AveragedModel(m, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.9))  # noqa: E731
        return _fit(make, epochs=4, callbacks=lambda a: [AveragedWeights(a, interval="step"),
                                                         ModelCheckpoint(tmp_path / "ckpt-{epoch}.npz", full=True)],
                    **kw)[0]

    whole = run()
    resumed = run(resume_from=tmp_path / "ckpt-2.npz")
    assert resumed.n_averaged == whole.n_averaged == 12
    for k, v in whole.state().items():
        np.testing.assert_array_equal(xn.to_numpy(resumed.state()[k]), xn.to_numpy(v), err_msg=k)


def test_a_refused_resume_leaves_the_average_where_it_was(tmp_path):
    """A resume refused after on_train_begin (another callback's saved state does not fit) put back the model and
    the optimizer, but left the user's average on the training device (array_api_strict's device1, whose arrays
    mix with no other): averaged.predict(x) then gave device1 arrays. The average, its count and the callback's
    saved state are now as before the call."""
    from test_files import rewrite

    strict = pytest.importorskip("array_api_strict",
                                 reason="array-api-strict is not installed (pip install -e '.[test]')")
    path = tmp_path / "run.npz"
    keep = []
    averaged, model = _fit(swa_utils.AveragedModel, epochs=1, callbacks=lambda a: keep.append(AveragedWeights(a))
                           or [keep[0], EarlyStopping(monitor="train_loss"), ModelCheckpoint(path, full=True)])
    rewrite(path, lambda arrays, meta: meta["callbacks"][1]["state"].update(wait="3"))
    before = {k: xn.to_numpy(v).copy() for k, v in averaged.state().items()}
    x, t = xn.datasets.spiral(30, 3, seed=0)
    with pytest.raises(xn.XpnetFileError, match="wait"):
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1, momentum=0.9), epochs=2,
                 batch_size=30, progress=False, device=xn.Device(strict, strict.Device("device1")),
                 resume_from=path, callbacks=[keep[0], EarlyStopping(monitor="train_loss")])
    assert averaged.n_averaged == keep[0].state_dict()["n_averaged"] == 1
    for k, v in averaged.state().items():
        xn.testing.assert_placed(v, xn.device("cpu"), "float32")
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    for k, v in keep[0].state_dict()["average"].items():
        xn.testing.assert_placed(v, xn.device("cpu"), "float32")
    assert type(averaged.predict(x)) is np.ndarray


def test_the_nan_guard_leaves_the_average_of_the_steps_before_the_bad_one():
    """A NaN batch at epoch 2, step 3: the error leaves the model with the weights from before that step, and
    the per-step average with the average of those same steps (it used to hold epoch 2's NaN weights)."""
    class _AverageAt(Callback):
        def on_train_batch_end(self, batch):
            if (self.state.epoch + 1, batch) == (2, 1):
                self.kept = {k: xn.to_numpy(v).copy() for k, v in averaged[-1].state().items()}

    def make(model):
        averaged.append(swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.8)))
        return averaged[-1]

    def poison(xb, epoch, step):
        return xb * math.nan if (epoch, step) == (2, 2) else xb

    averaged, at = [], _AverageAt()
    _fit(make, callbacks=lambda a: [AveragedWeights(a, interval="step"), at])
    with pytest.raises(xn.XpnetTrainingError, match=r"epoch 2, step 3 of 3; first non-finite value: the input batch"):
        _fit(make, callbacks=lambda a: [AveragedWeights(a, interval="step")], transform=poison)
    assert averaged[-1].n_averaged == 5
    for k, v in at.kept.items():
        np.testing.assert_array_equal(xn.to_numpy(averaged[-1].state()[k]), v, err_msg=k)


def test_mistakes_fail_at_once_with_one_line():
    model = _model()
    with pytest.raises(ValueError, match=r"AveragedModel: avg_fn and multi_avg_fn both given; pass one"):
        swa_utils.AveragedModel(model, avg_fn=swa_utils.get_swa_avg_fn(),
                                multi_avg_fn=swa_utils.get_swa_multi_avg_fn())
    with pytest.raises(ValueError, match=r"get_ema_multi_avg_fn: decay must be a number in \[0, 1\], got 1.5"):
        swa_utils.get_ema_multi_avg_fn(1.5)
    with pytest.raises(TypeError, match=r"AveragedWeights: averaged must be an xn.optim.swa_utils.AveragedModel.*"
                                        r"got Sequential"):
        AveragedWeights(model)
    averaged = swa_utils.AveragedModel(model)
    with pytest.raises(ValueError, match=r"interval must be 'epoch' or 'step', got 'batch' \(Keras' 'batch'"):
        AveragedWeights(averaged, interval="batch")
    other = xn.Sequential(xn.layers.Linear(3, 5)).to(dtype="float64")
    with pytest.raises(ValueError, match=r"update_parameters: the average holds '0.W' \(3, 4\) float64, the model "
                                         r"\(3, 5\) float64; pass the model AveragedModel\(model\) was made from"):
        averaged.update_parameters(other)
    with pytest.raises(NotImplementedError, match=r"AveragedModel.backward: the average is not trained"):
        averaged.backward(np.zeros((1, 2)))
    with pytest.raises(TypeError, match=r"update_bn: loader is one array; pass batches"):
        swa_utils.update_bn(np.zeros((4, 3)), model)
    with pytest.raises(ValueError, match=r"AveragedWeights: the average holds '0.W' \(2, 8\) float32, the model "
                                         r"\(2, 4\) float32"):
        _fit(lambda m: swa_utils.AveragedModel(xn.Sequential(xn.layers.Linear(2, 8))), epochs=1,
             model=xn.Sequential(xn.layers.Linear(2, 4), xn.layers.ReLU(), xn.layers.Linear(4, 3)),
             callbacks=lambda a: [AveragedWeights(a)])
