"""xn.train's planned steps (xpnet.training.planned) leave what the ordinary steps leave: the same weights, optimizer
state and history to the bit, and the same records on every node, so that a loop of one's own after training meets
the same checks."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import stale
from xpnet.layers.zero_grad import BEFORE, LAST, STEPPED, TICKS
from xpnet.training import planned


def _data(n=40, d=6, classes=3):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, classes, n)


def _model(dropout=False):
    xn.init.seed(0)
    middle = [xn.layers.Dropout(0.25)] if dropout else []
    return xn.Sequential(xn.layers.Linear(6, 5), xn.layers.ReLU(), *middle, xn.layers.Linear(5, 3, bias=not dropout))


def _records(model, clock, ticks):
    """Every node's attributes that are no arrays, layers or arguments (the use records, clocks, counts, a random
    generator's state), by node; the parameter clock and backward ticks counted from the run's start."""
    def plain(k, v):
        if k in (BEFORE, LAST, STEPPED):
            return v - ticks
        if k == stale.SEEN:
            return v - clock
        if k == stale.STAMP:
            return v[0] - clock, v[1], v[2]
        return v.bit_generator.state if hasattr(v, "bit_generator") else v

    skip = ("params", "grads", "buffers", "layers", "_init_args")
    return [{k: plain(k, v) for k, v in vars(node).items() if not hasattr(v, "shape") and k not in skip}
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
    records = _records(model, clock, ticks) + [{k: v for k, v in vars(loss).items() if not hasattr(v, "shape")}]
    return model, opt, history, (stale.clock - clock, TICKS[0] - ticks, records), len(calls)


@pytest.mark.parametrize("optimizer, dropout", [(lambda: xn.optim.SGD(0.1), False),
                                                (lambda: xn.optim.SGD(0.1, momentum=0.9), True),
                                                (lambda: xn.optim.Adam(1e-2), False)],
                         ids=["sgd", "momentum-dropout", "adam"])
def test_planned_steps_leave_what_ordinary_steps_leave(monkeypatch, optimizer, dropout):
    model, opt, history, ticks, calls = _run(monkeypatch, True, optimizer, dropout)
    ref_model, ref_opt, ref_history, ref_ticks, ref_calls = _run(monkeypatch, False, optimizer, dropout)
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
    *_, calls = _run(monkeypatch, True, lambda: xn.optim.SGD(0.1), clip_grad_norm=1.0)
    assert calls == 0


def test_cross_entropy_planned_calls_give_the_ordinary_values_and_records():
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
    plain = lambda loss: {k: v for k, v in vars(loss).items() if not hasattr(v, "shape")}  # noqa: E731
    assert plain(planned_loss) == plain(ordinary)
    assert xn.losses.SoftmaxCrossEntropy(label_smoothing=0.1).planned_calls() is None  # no forward yet
