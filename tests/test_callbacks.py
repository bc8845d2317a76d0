"""Callbacks: the hook protocol, EarlyStopping, ModelCheckpoint, LearningRateSchedule."""

from __future__ import annotations

import importlib
import inspect
import math
import os
import warnings

import numpy as np
import pytest

import xpnet as xn
from xpnet.callbacks import Callback, EarlyStopping, LearningRateSchedule, ModelCheckpoint, cosine, step


def mlp():
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Linear(2, 32), xn.layers.ReLU(), xn.layers.Linear(32, 3))


@pytest.fixture
def data():
    return xn.datasets.spiral(60, 3, seed=0)


def fit(model, data, callbacks, epochs=6, validation=True, optimizer=None, **kw):
    x, t = data
    return xn.train(model, (x, t), loss="cross_entropy", optimizer=optimizer or xn.optim.SGD(0.2), epochs=epochs,
                    batch_size=30, validation=(x, t) if validation else None, callbacks=callbacks,
                    progress=False, **kw)


class Recorder(Callback):
    """Records every hook call and a copy of the weights after each epoch."""

    def __init__(self):
        self.events = []
        self.weights = {}

    def on_train_begin(self, state):
        super().on_train_begin(state)
        self.events.append(("begin", state.epoch, state.has_validation, state.is_root))

    def on_epoch_begin(self, epoch):
        self.events.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs):
        self.events.append(("epoch_end", epoch, logs["epoch"]))
        self.weights[epoch] = {k: xn.to_numpy(v).copy() for k, v in self.state.model.state().items()}

    def on_train_end(self):
        self.events.append(("end",))


def test_hooks_are_called_in_order_and_stop_training_ends_after_the_epoch(data):
    class StopAt3(Recorder):
        def on_epoch_end(self, epoch, logs):
            super().on_epoch_end(epoch, logs)
            self.stop_training = epoch == 3

    rec = StopAt3()
    h = fit(mlp(), data, [rec], epochs=10)
    assert len(h) == 3
    assert rec.events == [("begin", 0, True, True),
                          ("epoch_begin", 1), ("epoch_end", 1, 1),
                          ("epoch_begin", 2), ("epoch_end", 2, 2),
                          ("epoch_begin", 3), ("epoch_end", 3, 3), ("end",)]


def test_early_stopping_stops_and_restores_the_best_weights(data):
    rec = Recorder()
    # min_delta so large that nothing after the first epoch counts as an improvement.
    stop = EarlyStopping(monitor="train_loss", patience=2, min_delta=100.0)
    model = mlp()
    h = fit(model, data, [rec, stop], epochs=10)
    assert len(h) == 3 and stop.stopped_epoch == 3 and stop.best_epoch == 1
    assert stop.best == h.epochs[0]["train_loss"]
    for k, v in rec.weights[1].items():
        np.testing.assert_array_equal(xn.to_numpy(model.state()[k]), v)
    assert not np.array_equal(rec.weights[3]["0.W"], rec.weights[1]["0.W"])


def test_early_stopping_tracks_the_best_epoch_by_mode(data):
    stop = EarlyStopping(monitor="val_accuracy", patience=100, restore_best=False)
    h = fit(mlp(), data, [stop], epochs=8)
    accs = [e["val_accuracy"] for e in h.epochs]
    assert stop.best == max(accs)
    assert stop.best_epoch == accs.index(max(accs)) + 1
    assert len(h) == 8


def test_early_stopping_takes_keras_restore_best_weights_as_restore_best(data):
    """Keras' EarlyStopping(restore_best_weights=...) is xpnet's restore_best; it was refused as an
    unexpected keyword. False keeps the last epoch's weights, as Keras' default does."""
    stop = EarlyStopping(monitor="train_loss", patience=2, min_delta=100.0, restore_best_weights=False)
    rec, model = Recorder(), mlp()
    h = fit(model, data, [rec, stop], epochs=10)
    assert stop.restore_best is False and len(h) == 3 and stop.best_epoch == 1
    np.testing.assert_array_equal(xn.to_numpy(model.state()["0.W"]), rec.weights[3]["0.W"])
    assert EarlyStopping(restore_best_weights=True).restore_best is True
    with pytest.raises(ValueError, match="restore_best=False and restore_best_weights=True disagree"):
        EarlyStopping(restore_best=False, restore_best_weights=True)
    with pytest.raises(ValueError, match="restore_best=True and restore_best_weights=False disagree"):
        EarlyStopping(restore_best=True, restore_best_weights=False)  # an explicit True, not the default
    assert EarlyStopping().restore_best is True  # help() shows the default as True
    assert repr(inspect.signature(EarlyStopping).parameters["restore_best"].default) == "True"


def test_model_checkpoint_best_only_writes_on_improvement(data, tmp_path):
    rec = Recorder()
    ckpt = ModelCheckpoint(tmp_path / "best-{epoch:02d}.npz", monitor="val_loss", save_best_only=True)
    h = fit(mlp(), data, [rec, ckpt], epochs=6, optimizer=xn.optim.SGD(2.0))  # a rate that makes val_loss jump
    losses = [e["val_loss"] for e in h.epochs]
    improved = [i + 1 for i, v in enumerate(losses) if v < min(losses[:i], default=math.inf)]
    assert len(improved) < len(losses)
    assert [os.path.basename(p) for p in ckpt.saved] == [f"best-{e:02d}.npz" for e in improved]
    assert sorted(os.listdir(tmp_path)) == [f"best-{e:02d}.npz" for e in improved]
    last = improved[-1]
    loaded = xn.load(tmp_path / f"best-{last:02d}.npz")
    for k, v in rec.weights[last].items():
        np.testing.assert_array_equal(xn.to_numpy(loaded.state()[k]), v)


def test_model_checkpoint_makes_the_folders_of_its_path(data, tmp_path):
    """ModelCheckpoint("runs/exp1/m-{epoch}.npz") was refused before training because runs/exp1 did not
    exist; Keras' and Lightning's checkpoints make their folders, and so does this one: placeholders in a
    folder's name too, each made at its save."""
    ckpt = ModelCheckpoint(tmp_path / "runs" / "exp1" / "epoch-{epoch}" / "m.npz")
    fit(mlp(), data, [ckpt], epochs=2)
    assert ckpt.saved == [str(tmp_path / "runs" / "exp1" / f"epoch-{e}" / "m.npz") for e in (1, 2)]
    assert all(xn.load(p).state().keys() == mlp().state().keys() for p in ckpt.saved)


def test_model_checkpoint_full_writes_a_resumable_checkpoint(data, tmp_path):
    path = tmp_path / "run.npz"
    fit(mlp(), data, [ModelCheckpoint(path, full=True)], epochs=2, optimizer=xn.optim.Momentum(0.1))
    ckpt = importlib.import_module("xpnet.training.checkpoint").load_checkpoint(path)
    assert ckpt["meta"]["epoch"] == 2
    assert len(ckpt["meta"]["history"]["epochs"]) == 2
    assert ckpt["optimizer"]["type"] == "Momentum" and ckpt["optimizer"]["t"] == 12
    assert set(ckpt["optimizer"]["state"]) == {"0.W", "0.b", "2.W", "2.b"}


def test_learning_rate_schedule_sets_lr_each_epoch(data):
    sched = step(0.4, step_size=2, gamma=0.5)
    h = fit(mlp(), data, [LearningRateSchedule(sched)], epochs=5)
    assert [e["lr"] for e in h.epochs] == [0.4, 0.4, 0.2, 0.2, 0.1]
    h = fit(mlp(), data, [LearningRateSchedule(cosine(0.4, 4, min_lr=0.01))], epochs=4)
    expected = [0.01 + 0.39 * 0.5 * (1 + math.cos(math.pi * i / 4)) for i in range(4)]
    assert [e["lr"] for e in h.epochs] == pytest.approx(expected)


@pytest.mark.parametrize("make, error, match", [
    (lambda: EarlyStopping(patience=-1), ValueError, "patience"),
    (lambda: EarlyStopping(monitor="loss"), ValueError, "monitor must be one of.*Keras' 'loss' is 'train_loss' here"),
    (lambda: EarlyStopping(monitor="val_acc"), ValueError, "Keras' 'val_acc' is 'val_accuracy' here"),
    (lambda: ModelCheckpoint("x.npz", monitor="accuracy"), ValueError, "Keras' 'accuracy' is 'train_accuracy'"),
    (lambda: EarlyStopping(monitor="test_loss"), ValueError,
     "validation_name='test' renames only the printed figures: monitor 'val_loss'"),
    (lambda: EarlyStopping(mode="up"), ValueError, "mode"),
    (lambda: ModelCheckpoint("x.npz", monitor="val_acc"), ValueError, "monitor"),
    (lambda: LearningRateSchedule(0.1), TypeError, "callable"),
    (lambda: step(0.1, 0), ValueError, "step_size"),
    (lambda: cosine(0.1, 0), ValueError, "epochs"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_monitoring_validation_without_validation_data_fails_before_training(data):
    model = mlp()
    before = xn.to_numpy(model[0].params["W"]).copy()
    with pytest.raises(ValueError, match="needs validation data"):
        fit(model, data, [EarlyStopping()], validation=False)
    np.testing.assert_array_equal(xn.to_numpy(model[0].params["W"]), before)


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_schedule_returning_a_bad_lr_is_reported(data, bad):
    with pytest.raises(ValueError, match=r"schedule\(0\) returned .*; expected a finite number >= 0"):
        fit(mlp(), data, [LearningRateSchedule(lambda i: bad)])


def test_a_warm_up_from_lr_0_runs_as_torchs_lambda_lr(data):
    """torch.optim.lr_scheduler.LambdaLR(opt, lambda e: e / 2) starts at lr 0; so may a schedule here, and
    step and cosine take lr=0 (every entry point allows lr >= 0, as PyTorch)."""
    model = mlp()
    before = {k: xn.to_numpy(v).copy() for k, v in model.named_params().items()}
    h = fit(model, data, [LearningRateSchedule(lambda i: 0.1 * i / 2)], epochs=1)
    assert h.epochs[0]["lr"] == 0.0
    for k, v in model.named_params().items():  # lr 0: the parameters stay
        np.testing.assert_array_equal(xn.to_numpy(v), before[k], err_msg=k)
    h = fit(mlp(), data, [LearningRateSchedule(lambda i: 0.1 * i / 2)], epochs=3)
    assert [e["lr"] for e in h.epochs] == [0.0, 0.05, 0.1]
    assert step(0.0, 2)(3) == 0.0 and cosine(0.0, 4)(1) == 0.0


# -- resumed runs take up where the checkpoint left off ------------------------------------------------


def test_resumed_model_checkpoint_best_only_keeps_the_better_file(data, tmp_path):
    """save_best_only after resume_from compares with the best epoch before the checkpoint: the worse
    epochs after it must not replace best.npz."""
    rec = Recorder()
    h_whole = fit(mlp(), data, [rec], epochs=8, optimizer=xn.optim.SGD(5.0))  # a rate that makes val_loss jump
    losses = [e["val_loss"] for e in h_whole.epochs]
    best_epoch = losses.index(min(losses)) + 1
    assert best_epoch < 8, "the scenario needs worse epochs after the best one"
    run, best = tmp_path / "run.npz", tmp_path / "best.npz"

    def callbacks():
        return [ModelCheckpoint(run, full=True), ModelCheckpoint(best, monitor="val_loss", save_best_only=True)]

    fit(mlp(), data, callbacks(), epochs=best_epoch, optimizer=xn.optim.SGD(5.0))  # interrupted at the best epoch
    fit(mlp(), data, callbacks(), epochs=8, optimizer=xn.optim.SGD(5.0), resume_from=run)
    loaded = xn.load(best)
    for k, v in rec.weights[best_epoch].items():
        np.testing.assert_array_equal(xn.to_numpy(loaded.state()[k]), v)


def test_resumed_early_stopping_keeps_its_patience_counter_and_best_weights(data, tmp_path):
    """Issue 15, Training: the checkpoint carries EarlyStopping's counter and the best weights from
    before it (they used to be missing: a warning, and the last epoch's weights instead)."""
    run = tmp_path / "run.npz"
    uninterrupted, whole = EarlyStopping(monitor="train_loss", patience=2, min_delta=100.0), mlp()
    h_full = fit(whole, data, [uninterrupted], epochs=10)
    assert len(h_full) == 3
    fit(mlp(), data, [EarlyStopping(monitor="train_loss", patience=2, min_delta=100.0),
                      ModelCheckpoint(run, full=True)], epochs=2)
    resumed, model = EarlyStopping(monitor="train_loss", patience=2, min_delta=100.0), mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = fit(model, data, [resumed], epochs=10, resume_from=run)
    assert len(h) == 3 and resumed.stopped_epoch == 3 and resumed.best_epoch == 1
    assert resumed.best == uninterrupted.best
    for k, v in whole.state().items():
        np.testing.assert_array_equal(xn.to_numpy(model.state()[k]), xn.to_numpy(v))


def test_a_resumed_run_that_early_stopping_ended_returns_at_once_with_the_same_weights(data, tmp_path):
    """Issue 15, Training: EarlyStopping survives resume. The checkpoint of the epoch where it stopped
    records that; resuming it trains no further epoch (it used to train one more every time) and
    ends with the best weights it had restored, also when the checkpoint comes first in callbacks."""
    run = tmp_path / "run.npz"

    def stop():
        return EarlyStopping(monitor="val_loss", patience=1)

    first, model_first = stop(), mlp()
    h_first = fit(model_first, data, [ModelCheckpoint(run, full=True), first], epochs=20,
                  optimizer=xn.optim.SGD(2.0))
    assert first.stopped_epoch == len(h_first) < 20 and first.best_epoch < first.stopped_epoch
    assert importlib.import_module("xpnet.training.checkpoint").load_checkpoint(run)["meta"]["stopped"] is True
    resumed, model = stop(), mlp()
    h = fit(model, data, [resumed], epochs=20, optimizer=xn.optim.SGD(2.0), resume_from=run)
    assert h.epochs == h_first.epochs
    assert (resumed.best_epoch, resumed.stopped_epoch) == (first.best_epoch, first.stopped_epoch)
    for k, v in model_first.state().items():
        np.testing.assert_array_equal(xn.to_numpy(model.state()[k]), xn.to_numpy(v))


def test_resumed_early_stopping_restores_the_same_weights_as_an_uninterrupted_run(data, tmp_path):
    """Checkpointed at the best epoch so far, a resumed run holds those weights and restores them
    at the end exactly as the uninterrupted run does, without a warning."""
    def stop():
        return EarlyStopping(monitor="val_loss", patience=1)

    whole, model_whole = stop(), mlp()
    h_whole = fit(model_whole, data, [whole], epochs=10, optimizer=xn.optim.SGD(2.0))  # val_loss jumps
    assert whole.stopped_epoch is not None and whole.best_epoch < len(h_whole)
    run = tmp_path / "run.npz"
    fit(mlp(), data, [ModelCheckpoint(run, full=True)], epochs=whole.best_epoch, optimizer=xn.optim.SGD(2.0))
    resumed, model = stop(), mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = fit(model, data, [resumed], epochs=10, optimizer=xn.optim.SGD(2.0), resume_from=run)
    assert (len(h), resumed.best_epoch, resumed.stopped_epoch) == (len(h_whole), whole.best_epoch,
                                                                    whole.stopped_epoch)
    for k, v in model_whole.state().items():
        np.testing.assert_array_equal(xn.to_numpy(model.state()[k]), xn.to_numpy(v))


# -- what a callback of the user's can count on ---------------------------------------------------------


def test_self_state_is_set_when_on_train_begin_is_overridden_without_super(data):
    """A callback that overrides on_train_begin for its own set-up (and never calls super, as a Keras
    user would not: Keras sets self.model apart from on_train_begin) still has self.state in the other
    hooks; it used to be an AttributeError at the first epoch's end."""
    class Setup(Callback):
        def on_train_begin(self, state):
            self.lrs = []

        def on_epoch_end(self, epoch, logs):
            self.lrs.append(self.state.optimizer.lr)

    cb = Setup()
    fit(mlp(), data, [cb], epochs=2)
    assert cb.lrs == [0.2, 0.2]


def test_a_callback_that_stopped_one_run_does_not_stop_the_next(data):
    """stop_training is the run's, as Keras resets model.stop_training at each fit: a callback object
    used again used to end the second xn.train at once, silently, with no epoch."""
    class StopAt2(Callback):
        def on_epoch_end(self, epoch, logs):
            self.stop_training = epoch == 2

    cb = StopAt2()
    assert len(fit(mlp(), data, [cb], epochs=5)) == 2
    assert len(fit(mlp(), data, [cb], epochs=5)) == 2


@pytest.mark.parametrize("schedule", [lambda epoch, lr: lr * 0.9, lambda: 0.1])
def test_a_schedule_that_does_not_take_the_epoch_alone_is_refused_when_built(schedule):
    """Keras' LearningRateScheduler calls schedule(epoch, lr); xpnet's calls schedule(i) alone. A Keras
    schedule used to fail at the first epoch with Python's "missing 1 required positional argument"
    from inside the training loop; it is now refused when built, saying what to write."""
    with pytest.raises(TypeError, match=r"schedule\(i\) of the 0-based epoch index alone.*lambda i:"):
        LearningRateSchedule(schedule)


def test_schedules_give_the_lr_of_epoch_1_at_index_0_as_torchs_schedulers():
    """step and cosine follow PyTorch's StepLR and CosineAnnealingLR (epoch 1 runs at schedule(0), the
    lr given), checked against torch where it is installed; cosine stays at min_lr after its epochs."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    for make, ours in ((lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5), step(0.1, 3, 0.5)),
                       (lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5, eta_min=0.01),
                        cosine(0.1, 5, min_lr=0.01))):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched, theirs = make(opt), []
        for _ in range(6):
            theirs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert [ours(i) for i in range(6)] == pytest.approx(theirs)
    assert cosine(0.1, 5, min_lr=0.01)(7) == pytest.approx(0.01)


def test_numpy_numbers_a_callback_adds_to_the_logs_go_into_a_full_checkpoint(data, tmp_path):
    """A Keras habit: logs["val_f1"] = f1, a NumPy scalar. A full checkpoint keeps the history as JSON and
    its save used to fail after the first epoch with json's "Object of type float32 is not JSON
    serializable"; NumPy scalars are now stored as the numbers they are."""
    class F1(Callback):
        def on_epoch_end(self, epoch, logs):
            logs["val_f1"], logs["n"] = np.float32(0.5), np.int64(epoch)

        def state_dict(self):
            return {"seen": np.int64(2)}

    run = tmp_path / "run.npz"
    fit(mlp(), data, [F1(), ModelCheckpoint(run, full=True)], epochs=2)
    meta = importlib.import_module("xpnet.training.checkpoint").load_checkpoint(run)["meta"]
    assert [(e["val_f1"], e["n"]) for e in meta["history"]["epochs"]] == [(0.5, 1), (0.5, 2)]
    assert meta["callbacks"][0]["state"] == {"seen": 2}


def test_a_log_value_a_checkpoint_cannot_hold_is_named(data, tmp_path):
    class Arr(Callback):
        def on_epoch_end(self, epoch, logs):
            logs["confusion"] = np.zeros((3, 3))

    with pytest.raises(TypeError, match=r"history\.epochs\[0\]\.confusion is a ndarray of shape \(3, 3\).*JSON"):
        fit(mlp(), data, [Arr(), ModelCheckpoint(tmp_path / "run.npz", full=True)], epochs=2)


def test_a_hook_that_xn_train_never_calls_is_named_before_training(data):
    """A Keras user's on_batch_end was silently never called. It now warns once, naming the method and the
    hooks there are."""
    class PerBatch(Callback):
        def on_batch_end(self, batch, logs=None):
            raise AssertionError("never called")

        def on_epoch_end(self, epoch, logs):
            pass

    with pytest.warns(UserWarning, match=r"PerBatch defines on_batch_end, which xn.train never calls.*"
                                         r"on_train_begin\(state\), on_epoch_begin\(epoch\), "
                                         r"on_train_batch_end\(batch\)"):
        fit(mlp(), data, [PerBatch()], epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(mlp(), data, [Recorder(), EarlyStopping(), LearningRateSchedule(step(0.1, 2))], epochs=1)


def test_on_train_batch_end_runs_after_every_update_with_the_step(data):
    """Keras' per-batch hook was never called (a warning said so); it now runs after each update, the step
    counted from 0 in each epoch, and sees the weights that update made."""
    class PerBatch(Callback):
        def __init__(self):
            self.calls = []

        def on_train_batch_end(self, batch, logs=None):
            self.calls.append((batch, float(xn.to_numpy(self.state.model.named_params()["0.b"]).sum())))

    cb = PerBatch()
    fit(mlp(), data, [cb], epochs=2)  # 180 rows in batches of 30: 6 steps per epoch
    assert [b for b, _ in cb.calls] == [0, 1, 2, 3, 4, 5] * 2
    assert len({w for _, w in cb.calls}) == 12


def test_keras_history_dot_history_says_where_the_figures_are(data):
    """Keras' history.history["val_loss"] was Python's bare "'History' object has no attribute 'history'"."""
    h = fit(mlp(), data, [], epochs=2)
    with pytest.raises(AttributeError, match=r"'History' object has no attribute 'history': .*"
                                             r"\[e\['val_loss'\] for e in history.epochs\]"):
        h.history
    assert not hasattr(h, "params") and [e["epoch"] for e in h.epochs] == [1, 2]
    import copy
    import pickle
    assert pickle.loads(pickle.dumps(h)).epochs == copy.deepcopy(h).epochs == h.epochs


class Logged(Callback):
    def on_train_begin(self, state):
        self.logged = state.logged


@pytest.mark.parametrize("kind", ["classifier", "classifier-no-val", "regression", "language-model"])
def test_the_figures_a_run_says_it_logs_are_those_each_epoch_holds(kind, tmp_path):
    """Monitors and placeholders are checked before training against what the run will log
    (``state.logged``): perplexity for a sequence model (it was refused as a monitor and a placeholder),
    no accuracy for a regression (EarlyStopping(monitor='train_accuracy') failed only after epoch 1)."""
    rng = np.random.default_rng(0)
    rec = Logged()
    if kind == "language-model":
        xn.init.seed(0)
        model = xn.book.rnnlm(13, 5, 6, dtype="float64")
        ids, val_ids = rng.integers(0, 13, 400), rng.integers(0, 13, 120)
        stop = EarlyStopping(monitor="val_perplexity", patience=1)
        ckpt = ModelCheckpoint(str(tmp_path / "lm-{epoch}-{val_perplexity:.3f}.npz"))
        h = xn.train(model, xn.datasets.TokenStream(ids, 4, 5), validation=xn.datasets.TokenStream(val_ids, 2, 5),
                     loss="cross_entropy", optimizer=xn.optim.SGD(1.0), epochs=2, progress=False,
                     callbacks=[rec, stop, ckpt])
        assert stop.best == min(e["val_perplexity"] for e in h.epochs)
        assert os.path.basename(ckpt.saved[-1]) == f"lm-2-{h.epochs[-1]['val_perplexity']:.3f}.npz"
    elif kind == "regression":
        x = rng.standard_normal((40, 2)).astype(np.float32)
        xn.train(mlp(), (x, x[:, :1] @ np.ones((1, 3), np.float32)), loss="mse", optimizer=xn.optim.SGD(0.01),
                 epochs=1, batch_size=20, validation=(x, np.zeros((40, 3), np.float32)), progress=False,
                 callbacks=[rec])
        h = None
        for make in (lambda: EarlyStopping(monitor="train_accuracy"), lambda: ModelCheckpoint(
                str(tmp_path / "m-{val_accuracy:.2f}.npz"))):
            with pytest.raises(ValueError, match="train_accuracy|val_accuracy") as info:
                xn.train(mlp(), (x, x[:, :1] @ np.ones((1, 3), np.float32)), loss="mse",
                         optimizer=xn.optim.SGD(0.01), epochs=1, batch_size=20,
                         validation=(x, np.zeros((40, 3), np.float32)), progress=False, callbacks=[make()])
            assert "logs ['train_loss', 'val_loss']" in str(info.value) or "this run logs" in str(info.value)
        assert not os.listdir(tmp_path)
    else:
        h = fit(mlp(), xn.datasets.spiral(60, 3, seed=0), [rec], epochs=1, validation=kind == "classifier")
    if h is not None:
        figures = {k for k, v in h.epochs[0].items() if k.startswith(("train_", "val_")) and v is not None}
        assert rec.logged == figures
    expected = {"classifier": {"train_loss", "train_accuracy", "val_loss", "val_accuracy"},
                "classifier-no-val": {"train_loss", "train_accuracy"},
                "regression": {"train_loss", "val_loss"},
                "language-model": {"train_loss", "train_perplexity", "val_loss", "val_perplexity"}}[kind]
    assert rec.logged == expected
