"""xn.train's planned steps (xpnet.training.planned) leave what the ordinary steps leave: the same weights, optimizer
state and history to the bit, and the same records on every node, so that a loop of one's own after training meets
the same checks."""

import numpy as np
import pytest

import xpnet as xn
from conftest import require_cuda
from xpnet.backend import registry
from xpnet.layers import stale
from xpnet.layers.zero_grad import BEFORE, LAST, STEPPED, TICKS
from xpnet.training import planned
from xpnet.training.trainer import Trainer


def _data(n=40, d=6, classes=3):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, classes, n)


def _model(dropout=False):
    xn.init.seed(0)
    if dropout == "frozen":  # a layer below the first that trains, a frozen one above it
        model = xn.Sequential(xn.layers.ReLU(), xn.layers.Linear(6, 5), xn.layers.ReLU(), xn.layers.Linear(5, 4),
                              xn.layers.Linear(4, 3))
        model[3].requires_grad_(False)
        return model
    middle = [xn.layers.Dropout(0.25)] if dropout else []
    return xn.Sequential(xn.layers.Linear(6, 5), xn.layers.ReLU(), *middle, xn.layers.Linear(5, 3, bias=not dropout))


def _array(v):
    """An array, or a tuple holding one (a cache's key and its array): compared as arrays, not as records."""
    return hasattr(v, "shape") or (type(v) is tuple and any(hasattr(a, "shape") for a in v))


def _records(model, clock, ticks):
    """Every node's attributes that are no arrays, layers or arguments (the use records, clocks, counts, a random
    generator's state), by node; the parameter clock and backward ticks counted from the run's start."""
    def plain(k, v):
        if k in (BEFORE, LAST, STEPPED):
            return v and v - ticks  # (0: none yet)
        if k == stale.SEEN:
            return v - clock
        if k == stale.STAMP:
            return v[0] - clock, v[1], v[2]
        return v.bit_generator.state if hasattr(v, "bit_generator") else v

    skip = ("params", "grads", "buffers", "layers", "_init_args")
    return [{**{k: plain(k, v) for k, v in vars(node).items() if not _array(v) and k not in skip},
             "reads": tuple(t and t - ticks for t in getattr(node.grads, "reads", ()))}  # layer.grads[key]'s
            for node in model.named_modules().values()]


def _run(monkeypatch, enabled, optimizer, dropout=False, **kwargs):
    monkeypatch.setattr(planned, "ENABLED", enabled)
    calls = []
    original = planned.PlannedStep.forward_backward
    monkeypatch.setattr(planned.PlannedStep, "forward_backward", lambda self, *a: calls.append(1) or original(self, *a))
    model, clock, ticks = _model(dropout), stale.clock, TICKS[0]
    opt, loss = optimizer(), xn.losses.SoftmaxCrossEntropy()
    history = xn.train(model, _data(), loss=loss, optimizer=opt, epochs=2, batch_size=8, progress=False,
                       device="cpu", **kwargs)
    records = _records(model, clock, ticks) + [{k: v for k, v in vars(loss).items() if not _array(v)}]
    return model, opt, history, (stale.clock - clock, TICKS[0] - ticks, records), len(calls)


@pytest.mark.parametrize("optimizer, dropout, clip", [
    (lambda: xn.optim.SGD(0.1), False, {}),
    (lambda: xn.optim.SGD(0.1, momentum=0.9), True, {"clip_grad_norm": 0.5}),
    (lambda: xn.optim.SGD(0.1, momentum=0.9), "frozen", {"clip_grad_value": 0.05}),
    (lambda: xn.optim.Adam(1e-2), False, {})], ids=["sgd", "momentum-dropout-clip-norm", "frozen-clip-value", "adam"])
def test_planned_steps_leave_what_ordinary_steps_leave(monkeypatch, optimizer, dropout, clip):
    model, opt, history, ticks, calls = _run(monkeypatch, True, optimizer, dropout, **clip)
    ref_model, ref_opt, ref_history, ref_ticks, ref_calls = _run(monkeypatch, False, optimizer, dropout, **clip)
    assert (calls, ref_calls) == (2 * (5 - 2), 0)  # 5 batches an epoch: the first and last ordinary
    for k, p in ref_model.named_params().items():
        np.testing.assert_array_equal(model.named_params()[k], p, err_msg=k)
    for k, g in ref_model.named_grads().items():
        np.testing.assert_array_equal(model.named_grads()[k], g, err_msg=k)
    sd, ref_sd = opt.state_dict(), ref_opt.state_dict()
    assert (sd["t"], sd["skipped"], sd["hyperparams"]) == (ref_sd["t"], ref_sd["skipped"], ref_sd["hyperparams"])
    for name, slots in ref_sd["state"].items():
        for key, v in slots.items():
            np.testing.assert_array_equal(sd["state"][name][key], v, err_msg=f"{name} {key}")
    drop = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h.epochs]  # noqa: E731
    assert drop(history) == drop(ref_history)
    assert ticks[:2] == ref_ticks[:2]  # one parameter change and one backward tick a step
    assert ticks[2] == ref_ticks[2]


def test_a_loop_of_ones_own_after_training_meets_the_same_refusal(monkeypatch):
    """A backward after training with no forward of its own reads the last training step's caches, from before the
    last step changed the weights: refused by the same check either way."""
    errors = []
    for enabled in (True, False):
        model, opt, *_ = _run(monkeypatch, enabled, lambda: xn.optim.SGD(0.1))
        with pytest.raises(RuntimeError) as e:
            model.backward(np.ones((8, 3), np.float32), input_grad=False)
        errors.append(str(e.value))
    assert errors[0] == errors[1]


def test_no_plan_where_a_step_runs_code_of_the_users(monkeypatch):
    class Seen(xn.callbacks.Callback):
        def on_train_batch_end(self, step):
            pass

    *_, calls = _run(monkeypatch, True, lambda: xn.optim.SGD(0.1), callbacks=[Seen()])
    assert calls == 0
    *_, calls = _run(monkeypatch, True, lambda: xn.optim.SGD(0.1), accumulate_grad_batches=2)
    assert calls == 0


@pytest.mark.parametrize("callback", ["scheduler", "averaged"])
def test_a_callback_acting_once_an_epoch_keeps_the_plan(monkeypatch, callback):
    """xn.train(scheduler=StepLR(...)) and AveragedWeights(interval="epoch") have an on_train_batch_end that does
    nothing per step: the steps between are planned, and the run is the ordinary one's; interval="step" runs
    their hook each step, and so no plan."""
    def run(enabled, interval):
        monkeypatch.setattr(planned, "ENABLED", enabled)
        calls = []
        original = planned.PlannedStep.forward_backward
        monkeypatch.setattr(planned.PlannedStep, "forward_backward",
                            lambda self, *a: calls.append(1) or original(self, *a))
        model, opt = _model(), xn.optim.SGD(0.1, momentum=0.9)
        if callback == "scheduler":
            cb = xn.callbacks.LRScheduler(xn.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5), interval)
        else:
            cb = xn.callbacks.AveragedWeights(xn.optim.swa_utils.AveragedModel(model), interval)
        history = xn.train(model, _data(), loss="cross_entropy", optimizer=opt, epochs=2, batch_size=8,
                           progress=False, device="cpu", callbacks=[cb])
        kept = cb.averaged.module if callback == "averaged" else model
        return kept.named_params(), [{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs], \
            len(calls)

    params, history, calls = run(True, "epoch")
    ref_params, ref_history, _ = run(False, "epoch")
    assert calls == 2 * (5 - 2)
    for k, p in ref_params.items():
        np.testing.assert_array_equal(params[k], p, err_msg=k)
    assert history == ref_history
    assert run(True, "step")[2] == 0


def test_cross_entropy_planned_calls_give_the_ordinary_values_and_records():
    if registry.fast_path("softmax_cross_entropy", np) is None:  # the planned calls are its kernel's
        pytest.skip("no fused cross-entropy kernel for NumPy arrays here (Numba's: pip install numba)")
    rng = np.random.default_rng(1)
    y, t = rng.standard_normal((6, 4)).astype(np.float32), rng.integers(0, 4, 6).astype(np.int32)
    planned_loss, ordinary = xn.losses.SoftmaxCrossEntropy(), xn.losses.SoftmaxCrossEntropy()
    for loss in (planned_loss, ordinary):  # the first call the ordinary way: what the planned calls rely on
        loss.forward(y, t, check=False)
        loss.backward()
    forward, backward = planned_loss.planned_calls()
    bad = t.copy()
    bad[2] = 7
    before = dict(vars(planned_loss))
    assert forward(y, bad) is None and vars(planned_loss) == before  # declined, nothing changed
    value, dy = forward(y, t), backward()
    ref_value, ref_dy = ordinary.forward(y, t, check=False), ordinary.backward()
    assert value == ref_value and value.dtype == ref_value.dtype
    np.testing.assert_array_equal(dy, ref_dy)
    np.testing.assert_array_equal(planned_loss.correct_count(), ordinary.correct_count())
    assert planned_loss.mean_count() == ordinary.mean_count()
    plain = lambda loss: {k: v for k, v in vars(loss).items() if not _array(v)}  # noqa: E731
    assert plain(planned_loss) == plain(ordinary)
    assert xn.losses.SoftmaxCrossEntropy(label_smoothing=0.1).planned_calls() is None  # no forward yet


def test_a_planned_cross_entropy_forward_after_a_class_axis_forward_serves_the_ordinary_backward():
    """SoftmaxCrossEntropy(dim=1): a planned (N, C) forward after an ordinary (N, C, T) one left the axes that move
    the 3-d forward's dy back (review5's find), so the ordinary backward() after it permuted a 2-d dy by them."""
    if registry.fast_path("softmax_cross_entropy", np) is None:  # the planned calls are its kernel's
        pytest.skip("no fused cross-entropy kernel for NumPy arrays here (Numba's: pip install numba)")
    rng = np.random.default_rng(2)
    y, t = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    loss, ordinary = xn.losses.SoftmaxCrossEntropy(dim=1), xn.losses.SoftmaxCrossEntropy(dim=1)
    loss.forward(y, t, check=False)
    forward, _ = loss.planned_calls()
    loss.forward(rng.standard_normal((6, 4, 3)), rng.integers(0, 4, (6, 3)))  # classes on axis 1 of (N, C, T)
    loss.backward()
    forward(y, t)
    ordinary.forward(y, t)
    np.testing.assert_array_equal(loss.backward(), ordinary.backward())


class _Interrupt(BaseException):
    """As a KeyboardInterrupt: no ``except Exception`` of xpnet's takes it."""


def _raise_at(monkeypatch, op, at):
    """Every kernel ``fast_path(op, ...)`` gives (the fast one or the portable one) raises at its ``at``-th call
    within the epochs (xn.train's check of the model before them left out), counted over both paths' calls
    alike: the ordinary step asks fast_path per call, the plan once."""
    seen = [0, False]
    original, run_epoch = registry._fast_path, Trainer.run_epoch

    def found(name, xp, portable):
        fn = original(name, xp, portable)
        if name != op or fn is None:
            return fn

        def counted(*args, **kwargs):
            seen[0] += seen[1]
            if seen[0] == at:
                raise _Interrupt(op)
            return fn(*args, **kwargs)
        return counted

    def epoch(self, *args):
        seen[1] = True
        return run_epoch(self, *args)

    monkeypatch.setattr(registry, "_fast_path", found)
    monkeypatch.setattr(registry, "_answers", {})
    monkeypatch.setattr(Trainer, "run_epoch", epoch)


def _interrupted(monkeypatch, enabled, op, at):
    """A run interrupted within epoch 0's third step (a planned one), then driven on: a backward by hand with
    no forward (refused or not), a step by hand, and xn.train again. What each part leaves, to compare."""
    monkeypatch.setattr(planned, "ENABLED", enabled)
    x, t = _data()
    model, clock, ticks = _model(), stale.clock, TICKS[0]
    opt, loss = xn.optim.SGD(0.1), xn.losses.SoftmaxCrossEntropy()
    with monkeypatch.context() as patch:
        _raise_at(patch, op, at)
        with pytest.raises(_Interrupt):
            xn.train(model, (x, t), loss=loss, optimizer=opt, epochs=2, batch_size=8, progress=False, device="cpu")
    seen = [_records(model, clock, ticks), opt.t, {k: p.copy() for k, p in model.named_params().items()}]
    # a backward reading the caches the interrupted step left (the ordinary records refuse it or let it through),
    # then a step by hand (refused where that backward ran: two backward calls before it)
    for call in (lambda: model.backward(np.ones((8, 3), np.float32), input_grad=False),
                 lambda: loss.forward(model(x[:8]), t[:8]), lambda: model.backward(loss.backward()),
                 lambda: opt.step(model)):
        try:
            call()
            seen.append("passed")
        except RuntimeError as e:
            seen.append(str(e))
    seen += [_records(model, clock, ticks), {k: p.copy() for k, p in model.named_params().items()}]
    history = xn.train(model, (x, t), loss=loss, optimizer=opt, epochs=1, batch_size=8, progress=False,
                       device="cpu")
    drop = [{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs]
    return seen + [drop, _records(model, clock, ticks), opt.t, model.named_params()]


@pytest.mark.parametrize("op, at", [("relu_forward", 3), ("softmax_cross_entropy", 3), ("matmul", 2 * 5 + 4),
                                    ("sgd_updates", 3)], ids=["forward", "loss", "backward", "update"])
def test_an_exception_within_a_planned_step_leaves_the_ordinary_records(monkeypatch, op, at):
    """An exception within a planned step (here in epoch 0's third step: in the ReLU's forward, the loss's
    kernel, the last Linear's input gradient, the update) leaves what the ordinary step leaves where it stops at
    the same call; a backward by hand, a step by hand and xn.train again then go as after the ordinary step."""
    if op == "sgd_updates" and registry.fast_path(op, np) is None:  # each path calls the portable update its way
        pytest.skip("no fused SGD update for NumPy arrays here (Numba's: pip install numba)")
    calls = []
    original = planned.PlannedStep.forward_backward
    monkeypatch.setattr(planned.PlannedStep, "forward_backward", lambda self, *a: calls.append(1) or original(self, *a))
    got = _interrupted(monkeypatch, True, op, at)
    assert len(calls) == 2 + 3  # steps 1 and 2 planned, step 2 interrupted; then 3 of xn.train's again
    want = _interrupted(monkeypatch, False, op, at)
    assert len(calls) == 2 + 3
    for i, (a, b) in enumerate(zip(got, want)):
        if isinstance(b, dict) and all(hasattr(v, "shape") for v in b.values()):
            for k in b:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"part {i}, {k}")
        else:
            assert a == b, f"part {i}"


@pytest.mark.gpu
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "captured"])
def test_planned_steps_on_cupy_leave_what_ordinary_steps_leave(monkeypatch, graph):
    """On CuPy the planned steps call the layers' ordinary methods and the fused update ("sgd_momentum_updates"):
    the same weights and history to the bit, and (on the fake CuPy, which counts them) no more kernel launches. A
    captured step (graph=True, xpnet.training.graph) runs no plan: the same training either way."""
    require_cuda()
    import cupy  # noqa: PLC0415
    counted = getattr(cupy.cuda.stream, "launches", None)  # the fake's counter; None on a GPU

    def run(enabled):
        monkeypatch.setattr(planned, "ENABLED", enabled)
        calls = []
        original = planned.PlannedStep.forward_backward
        monkeypatch.setattr(planned.PlannedStep, "forward_backward",
                            lambda self, *a: calls.append(1) or original(self, *a))
        model, opt = _model(dropout=True), xn.optim.SGD(0.1, momentum=0.9)
        before = sum(counted.values()) if counted is not None else 0
        history = xn.train(model, _data(), loss="cross_entropy", optimizer=opt, epochs=2, batch_size=8,
                           progress=False, device="cuda", graph=graph, clip_grad_norm=0.5)
        launches = sum(counted.values()) - before if counted is not None else 0
        params = {k: xn.to_numpy(p) for k, p in model.named_params().items()}
        return params, [{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs], len(calls), launches

    if not graph:
        run(False)  # what the first training in a process makes once (constants on the device) left out below
    params, history, calls, launches = run(True)
    ref_params, ref_history, ref_calls, ref_launches = run(False)
    assert (calls, ref_calls) == (0 if graph else 2 * (5 - 2), 0)
    for k, p in ref_params.items():
        np.testing.assert_array_equal(params[k], p, err_msg=k)
    assert history == ref_history
    if not graph:  # (the captured runs launch the same step; the first in a process makes its constants once)
        assert launches <= ref_launches
