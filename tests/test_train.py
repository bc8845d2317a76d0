"""xn.train / xn.evaluate: convergence, device independence, resume, the guard, bad input, progress."""

from __future__ import annotations

import importlib
import io
import math
import os
import re
import sys
import warnings

import numpy as np
import pytest

import xpnet as xn
from xpnet.datasets import BatchIterator, batch_bounds, epoch_permutation

train_module = importlib.import_module("xpnet.training.loop")


def mlp(dropout: float = 0.0, seed: int = 0, width: int = 64):
    xn.init.seed(seed)
    layers = [xn.layers.Linear(2, width), xn.layers.ReLU()]
    if dropout:
        layers.append(xn.layers.Dropout(dropout, seed=seed + 1))
    return xn.Sequential(*layers, xn.layers.Linear(width, 3))


@pytest.fixture
def spiral():
    return xn.datasets.spiral(100, 3, seed=0)


def params(model):
    return {k: xn.to_numpy(v).copy() for k, v in model.state().items()}


def strip_seconds(history):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs]


def assert_same_epochs(a, b):
    """Two lists of epoch records agree: same keys, numbers within float tolerance, None where None."""
    assert len(a) == len(b)
    for ea, eb in zip(a, b):
        assert ea.keys() == eb.keys()
        for k in ea:
            assert (ea[k] is None) == (eb[k] is None), k
            if ea[k] is not None:
                assert ea[k] == pytest.approx(eb[k]), k


class FakeComm:
    """A one-process stand-in for xn.distributed's communicator that records the calls."""

    rank, size = 0, 1

    def __init__(self):
        self.calls = []
        self.counts = []

    def broadcast_params(self, model, root=0):
        self.calls.append("broadcast_params")

    def allreduce_grads(self, model, count, empty_ok=False, *, stop=False):
        self.counts.append(count)
        return stop

    def allreduce_sum(self, array):
        self.calls.append("allreduce_sum")
        return array

    def barrier(self):
        self.calls.append("barrier")

    def bcast_object(self, obj, root=0):
        self.calls.append("bcast_object")
        return obj

    def device(self, spec="auto", fallback=True):
        return xn.device(spec, fallback=fallback)


# ----------------------------------------------------------------------------------------
# Training end to end
# ----------------------------------------------------------------------------------------


def test_spiral_reaches_95_percent(dev, spiral):
    if dev.name.startswith(("torch:", "jax:")):
        pytest.skip("thousands of tiny steps, slow on PyTorch/JAX dispatch; tests/test_cross_backend.py trains there")
    x, t = spiral
    model = mlp()
    history = xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.Adam(0.02), epochs=60,
                       batch_size=32, device=dev, progress=False, validation=(x[::3], t[::3]))
    assert history.device == dev.name
    assert history.epochs[-1]["train_accuracy"] >= 0.95
    assert [e["epoch"] for e in history.epochs] == list(range(1, 61))
    assert history.epochs[-1]["train_loss"] < history.epochs[0]["train_loss"]
    for v in model.state().values():
        xn.testing.assert_placed(v, dev, "float32")
    result = xn.evaluate(model, (x, t), loss="cross_entropy")
    probs = xn.to_numpy(model.predict(x))
    assert result["accuracy"] == pytest.approx(np.mean(np.argmax(probs, axis=1) == t))
    z = probs - probs.max(axis=1, keepdims=True)
    ref_loss = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(t)), t])
    assert result["loss"] == pytest.approx(ref_loss, rel=1e-4)


def test_same_seed_same_batches_and_weights_on_numpy_and_device1(spiral):
    strict = pytest.importorskip("array_api_strict")
    dev1 = xn.Device(strict, strict.Device("device1"))
    x, t = spiral
    host = BatchIterator(x, t, batch_size=64, seed=5)
    other = BatchIterator(xn.to_device(x, dev1), xn.to_device(t, dev1), batch_size=64, seed=5)
    for (xa, ta), (xb, tb) in zip(host.epoch(2), other.epoch(2), strict=True):
        np.testing.assert_array_equal(xa, xn.to_numpy(xb))
        np.testing.assert_array_equal(ta, xn.to_numpy(tb))
    results = []
    for dev in ("cpu", dev1):
        model = mlp(dropout=0.2)
        h = xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.Momentum(0.05), epochs=3,
                     batch_size=64, device=dev, seed=5, progress=False)
        results.append((params(model), strip_seconds(h)))
    for k, v in results[0][0].items():
        np.testing.assert_allclose(results[1][0][k], v, **xn.testing.tolerance("float32"))
    assert_same_epochs(results[0][1], results[1][1])


def test_batch_iterator_order_depends_on_seed_and_epoch_only(spiral):
    x, t = spiral
    it = BatchIterator(x, t, batch_size=128, seed=3)
    assert len(it) == 3
    first = [tb for _, tb in it.epoch(1)]
    assert [len(b) for b in first] == [128, 128, 44]  # last batch clamped at n
    order = epoch_permutation(300, 3, 1)
    np.testing.assert_array_equal(np.concatenate(first), t[order])
    np.testing.assert_array_equal(np.sort(order), np.arange(300))
    assert not np.array_equal(order, epoch_permutation(300, 3, 2))
    assert not np.array_equal(order, epoch_permutation(300, 4, 1))
    unshuffled = [xb for xb, _ in BatchIterator(x, t, batch_size=128, shuffle=False).epoch(1)]
    np.testing.assert_array_equal(np.concatenate(unshuffled), x)


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_batch_bounds_split_every_global_batch_among_ranks(size):
    n, batch = 23, 5
    parts = [batch_bounds(n, batch, rank, size) for rank in range(size)]
    for step, (lo, hi) in enumerate(batch_bounds(n, batch)):
        rows = [r for rank in range(size) for r in range(*parts[rank][step])]
        assert rows == list(range(lo, hi))
        counts = [parts[rank][step][1] - parts[rank][step][0] for rank in range(size)]
        assert max(counts) - min(counts) <= 1


def test_uint8_images_are_scaled_on_the_device(spiral):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 2), dtype=np.uint8)
    labels = rng.integers(0, 3, 60)
    a, b = mlp(), mlp()
    kw = dict(loss="cross_entropy", optimizer=None, epochs=2, batch_size=16, progress=False)
    xn.train(a, (images, labels), **{**kw, "optimizer": xn.optim.SGD(0.1)})
    xn.train(b, (images.astype(np.float32) / 255.0, labels), **{**kw, "optimizer": xn.optim.SGD(0.1)})
    for k, v in params(a).items():
        np.testing.assert_array_equal(v, params(b)[k])


def test_mse_regression_has_no_accuracy_and_one_hot_mse_has_one(spiral):
    x, t = spiral
    model = mlp()
    y = np.stack([x[:, 0] * 2, x[:, 1], x[:, 0] - x[:, 1]], axis=1)
    h = xn.train(model, (x, y), loss="mse", optimizer=xn.optim.SGD(0.05), epochs=3, batch_size=50,
                 progress=False, validation=(x, y))
    assert h.epochs[-1]["train_accuracy"] is None and h.epochs[-1]["val_accuracy"] is None
    assert h.epochs[-1]["train_loss"] < h.epochs[0]["train_loss"]
    result = xn.evaluate(model, (x, y), loss="mse", batch_size=7)
    assert result["accuracy"] is None
    assert result["loss"] == pytest.approx(np.mean((xn.to_numpy(model.predict(x)) - y) ** 2), rel=1e-5)
    one_hot = np.eye(3, dtype=np.float32)[t]
    result = xn.evaluate(model, (x, one_hot), loss="mse")
    assert result["accuracy"] == pytest.approx(np.mean(np.argmax(xn.to_numpy(model.predict(x)), axis=1) == t))


def test_one_hot_cross_entropy_matches_integer_labels(spiral):
    x, t = spiral
    a, b = mlp(), mlp()
    kw = dict(loss="cross_entropy", epochs=2, batch_size=40, progress=False)
    ha = xn.train(a, (x, t), optimizer=xn.optim.SGD(0.1), **kw)
    hb = xn.train(b, (x, np.eye(3)[t]), optimizer=xn.optim.SGD(0.1), **kw)
    assert_same_epochs(strip_seconds(ha), strip_seconds(hb))
    for k, v in params(a).items():
        np.testing.assert_allclose(params(b)[k], v, **xn.testing.tolerance("float32"))


def test_device_auto_uses_the_device_the_model_and_data_are_on(spiral):
    strict = pytest.importorskip("array_api_strict")
    dev1 = xn.Device(strict, strict.Device("device1"))
    x, t = spiral
    model = mlp().to(dev1)
    h = xn.train(model, (xn.to_device(x, dev1), t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1),
                 epochs=1, batch_size=100, progress=False)
    assert h.device == dev1.name
    assert model.device == dev1


def test_fake_comm_takes_the_data_parallel_path(spiral, tmp_path):
    x, t = spiral
    plain, spread = mlp(), mlp()
    kw = dict(loss="cross_entropy", epochs=2, batch_size=64, progress=False, validation=(x, t))
    h1 = xn.train(plain, (x, t), optimizer=xn.optim.Adam(0.01), **kw)
    comm = FakeComm()
    ckpt = xn.callbacks.ModelCheckpoint(tmp_path / "m.npz")
    h2 = xn.train(spread, (x, t), optimizer=xn.optim.Adam(0.01), comm=comm, callbacks=[ckpt], **kw)
    assert strip_seconds(h1) == strip_seconds(h2)
    for k, v in params(plain).items():
        np.testing.assert_array_equal(params(spread)[k], v)
    assert comm.calls[0] == "broadcast_params"
    assert comm.counts == [64, 64, 64, 64, 44] * 2
    assert comm.calls.count("barrier") == 2 and comm.calls.count("bcast_object") == 2
    # per epoch: train/validation loss, their target counts and correct counts, the SIGTERM flag; once at
    # the end, the first step's loss and target count (for the divergence warning)
    assert comm.calls.count("allreduce_sum") == 2 * 7 + 2
    result = xn.evaluate(spread, (x, t), loss="cross_entropy", comm=FakeComm())
    assert result == xn.evaluate(spread, (x, t), loss="cross_entropy")


def test_zero_epochs_returns_an_empty_history(spiral):
    x, t = spiral
    model = mlp()
    before = params(model)
    h = xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=0, batch_size=10,
                 progress=False)
    assert len(h) == 0
    for k, v in before.items():
        np.testing.assert_array_equal(params(model)[k], v)


# ----------------------------------------------------------------------------------------
# Devices: fallback and XPNET_DEVICE
# ----------------------------------------------------------------------------------------


def test_cuda_without_a_gpu_warns_and_trains_on_the_cpu(no_cuda, spiral, capsys):
    x, t = spiral
    with pytest.warns(xn.XpnetDeviceWarning, match="cupy is not installed \\(test\\)"):
        h = xn.train(mlp(), (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=1,
                     batch_size=50, device="cuda")
    assert h.device == "cpu"
    assert "training on cpu" in capsys.readouterr().out


def test_fallback_false_raises_before_training(no_cuda, spiral):
    x, t = spiral
    model = mlp()
    before = params(model)
    with pytest.raises(RuntimeError, match="cupy is not installed \\(test\\)"):
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=1, batch_size=50,
                 device="cuda", fallback=False, progress=False)
    for k, v in before.items():
        np.testing.assert_array_equal(params(model)[k], v)


def test_xpnet_device_cpu_overrides_cuda_without_a_warning(monkeypatch, spiral):
    monkeypatch.setenv("XPNET_DEVICE", "cpu")
    x, t = spiral
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = xn.train(mlp(), (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=1,
                     batch_size=50, device="cuda", fallback=False, progress=False)
    assert h.device == "cpu"


# ----------------------------------------------------------------------------------------
# History
# ----------------------------------------------------------------------------------------


def test_history_to_dict_and_plot(spiral, tmp_path):
    pytest.importorskip("matplotlib")
    x, t = spiral
    h = xn.train(mlp(), (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=3, batch_size=50,
                 validation=(x, t), progress=False, device="cpu")
    d = h.to_dict()
    assert d["device"] == "cpu" and len(d["epochs"]) == 3
    assert set(d["epochs"][0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                   "seconds", "lr"}
    assert d["epochs"][0]["lr"] == 0.1
    assert xn.History.from_dict(d).to_dict() == d
    path = tmp_path / "curves.png"
    h.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["curves.png"]


def test_curves_have_whole_epoch_ticks_and_the_title():
    pytest.importorskip("matplotlib")
    h = xn.History("cpu", [{"epoch": e, "train_loss": 1.0 / e, "test_loss": 1.1 / e, "train_accuracy": 0.5,
                            "test_accuracy": 0.4} for e in (1, 2, 3)])
    fig = h.figure(title="fashion-mnist, mlp")
    assert fig.get_suptitle() == "fashion-mnist, mlp"
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
        assert [line.get_label() for line in ax.get_lines()] == ["train", "test"]


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    h = xn.History("cpu", [{"epoch": 1, "train_loss": 1.0}])
    with pytest.raises(ImportError, match=r"needs matplotlib: pip install .*\[plot\]'"):
        h.plot(tmp_path / "x.png")
    assert not os.listdir(tmp_path)


# ----------------------------------------------------------------------------------------
# Resume
# ----------------------------------------------------------------------------------------


class Interrupt(xn.callbacks.Callback):
    def __init__(self, at):
        self.at = at

    def on_epoch_end(self, epoch, logs):
        if epoch == self.at:
            raise KeyboardInterrupt


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(dev, spiral, tmp_path):
    x, t = spiral
    # On CuPy the masks come from a device generator derived afresh each epoch from the saved host one.
    p = 0.3
    kw = dict(loss="cross_entropy", batch_size=32, device=dev, seed=7, progress=False, validation=(x, t))
    full = mlp(dropout=p)
    h_full = xn.train(full, (x, t), optimizer=xn.optim.Adam(0.01), epochs=4, **kw)

    path = tmp_path / "run.npz"
    first = mlp(dropout=p)
    with pytest.raises(KeyboardInterrupt):
        xn.train(first, (x, t), optimizer=xn.optim.Adam(0.01), epochs=4,
                 callbacks=[xn.callbacks.ModelCheckpoint(path, full=True), Interrupt(at=2)], **kw)
    resumed = mlp(dropout=p, seed=99)  # other initial weights and Dropout seed: all come from the file
    h_resumed = xn.train(resumed, (x, t), optimizer=xn.optim.Adam(0.01), epochs=4, resume_from=path, **kw)
    for k, v in params(full).items():
        np.testing.assert_array_equal(params(resumed)[k], v)
    assert strip_seconds(h_resumed) == strip_seconds(h_full)
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]


def _cumulative_batchnorm_mlp(seed=0):
    xn.init.seed(seed)
    return xn.Sequential(xn.layers.Linear(2, 16), xn.layers.BatchNorm(16, momentum=None), xn.layers.ReLU(),
                         xn.layers.Linear(16, 3))


def test_resumed_run_with_batchnorms_cumulative_average_equals_an_uninterrupted_one(dev, spiral, tmp_path):
    """BatchNorm(momentum=None) weights the n-th batch by 1/n: the count comes back from the checkpoint."""
    x, t = spiral
    kw = dict(loss="cross_entropy", batch_size=32, device=dev, seed=7, progress=False, validation=(x, t))
    full = _cumulative_batchnorm_mlp()
    h_full = xn.train(full, (x, t), optimizer=xn.optim.Adam(0.01), epochs=4, **kw)
    assert xn.to_numpy(full[1].buffers["num_batches_tracked"]) == 4 * 10  # 300 samples: 10 batches an epoch
    path = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt):
        xn.train(_cumulative_batchnorm_mlp(), (x, t), optimizer=xn.optim.Adam(0.01), epochs=4,
                 callbacks=[xn.callbacks.ModelCheckpoint(path, full=True), Interrupt(at=2)], **kw)
    resumed = _cumulative_batchnorm_mlp(seed=99)
    h_resumed = xn.train(resumed, (x, t), optimizer=xn.optim.Adam(0.01), epochs=4, resume_from=path, **kw)
    for k, v in params(full).items():
        np.testing.assert_array_equal(params(resumed)[k], v, err_msg=k)
    assert strip_seconds(h_resumed) == strip_seconds(h_full)


def test_resume_rejects_another_architecture_or_seed(spiral, tmp_path):
    x, t = spiral
    path = tmp_path / "run.npz"
    xn.train(mlp(), (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=1, batch_size=50,
             progress=False, callbacks=[xn.callbacks.ModelCheckpoint(path, full=True)])
    kw = dict(loss="cross_entropy", epochs=2, batch_size=50, progress=False, resume_from=path)
    with pytest.raises(ValueError, match="architecture"):
        xn.train(mlp(width=8), (x, t), optimizer=xn.optim.SGD(0.1), **kw)
    with pytest.raises(ValueError, match="seed=0"):
        xn.train(mlp(), (x, t), optimizer=xn.optim.SGD(0.1), seed=1, **kw)
    with pytest.raises(ValueError, match="SGD"):
        xn.train(mlp(), (x, t), optimizer=xn.optim.Adam(0.1), **kw)
    model = mlp()
    model.save(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="full=True"):
        xn.train(model, (x, t), optimizer=xn.optim.SGD(0.1), **{**kw, "resume_from": tmp_path / "plain.npz"})


@pytest.mark.parametrize("change", [dict(batch_size=25), dict(shuffle=False), dict(drop_last=True)])
def test_resume_with_other_batches_warns_naming_the_setting_and_both_values(spiral, tmp_path, change):
    """A resumed run with another batch_size, shuffle or drop_last is not the run checkpointed: it goes
    on with the new setting, warning with the saved value and the new one; the same settings give no
    warning."""
    x, t = spiral
    path = tmp_path / "run.npz"
    kw = dict(loss="cross_entropy", batch_size=50, progress=False, shuffle=True, drop_last=False)
    xn.train(mlp(), (x, t), optimizer=xn.optim.SGD(0.1), epochs=1, **kw,
             callbacks=[xn.callbacks.ModelCheckpoint(path, full=True)])
    for settings, warns in ((kw, False), ({**kw, **change}, True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            h = xn.train(mlp(), (x, t), optimizer=xn.optim.SGD(0.1), epochs=2, resume_from=path, **settings)
        found = [str(w.message) for w in caught if "batches are not those" in str(w.message)]
        assert [e["epoch"] for e in h.epochs] == [1, 2]
        if not warns:
            assert found == []
            continue
        (key, new), = change.items()
        assert len(found) == 1
        assert f"trained with {key}={kw[key]!r}, this run has {key}={new!r}" in found[0]


# ----------------------------------------------------------------------------------------
# The non-finite guard
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, where", [(3e38, r"the output of layer 0 \(Linear\)"), (np.nan, "the input batch")])
def test_non_finite_loss_names_epoch_step_and_layer(dev, spiral, bad, where):
    x, t = spiral
    x = x.copy()
    x[123] = bad
    batch = 32
    position = int(np.nonzero(epoch_permutation(len(x), 0, 1) == 123)[0][0])
    model = mlp()
    with pytest.raises(xn.XpnetTrainingError) as info:
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.01), epochs=3, batch_size=batch,
                 device=dev, progress=False)
    message = str(info.value)
    assert f"epoch 1, step {position // batch + 1} of 10" in message
    assert re.search(where, message)
    assert all(np.all(np.isfinite(v)) for v in params(model).values())


@pytest.mark.parametrize("epochs, batch", [(3, 100), (1, 300)], ids=["next-step", "last-step"])
def test_an_update_that_overflows_the_weights_is_named_and_undone(dev, spiral, epochs, batch):
    """Issue 15, Training: the NaN guard also covers the update. With a finite loss, an update that
    makes weights non-finite is found by the end-of-epoch check and named (it used to blame the next
    step, or with no next step leave inf weights behind silently); the model keeps the weights from
    before it."""
    x, t = spiral
    model, start = mlp(), params(mlp())
    with pytest.raises(xn.XpnetTrainingError, match=rf"the update of epoch 1, step 1 of {300 // batch} made "
                                                   r"parameter '\d.[Wb]' non-finite"):
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(1e300), epochs=epochs,
                 batch_size=batch, device=dev, progress=False)
    for k, v in start.items():
        np.testing.assert_array_equal(params(model)[k], v)


# ----------------------------------------------------------------------------------------
# Bad input: a clear error before any training
# ----------------------------------------------------------------------------------------


def _strict(name):
    strict = pytest.importorskip("array_api_strict")
    return xn.Device(strict, strict.Device(name))


def _bound_optimizer():
    opt = xn.optim.SGD(0.1)
    opt.bind(mlp())
    return opt


# (id, change to the train() arguments made from (x, t), error, message)
BAD_INPUT = [
    ("lengths", lambda x, t: {"data": (x, t[:-1])}, ValueError, "300 samples but y has 299"),
    ("float-labels", lambda x, t: {"data": (x, t.astype(np.float32))}, TypeError, "integer class indices"),
    ("label-range", lambda x, t: {"data": (x, t + 1)}, ValueError, r"\[0, 3\).*\[1, 3\]"),
    ("one-hot-width", lambda x, t: {"data": (x, np.eye(4)[t % 4])}, ValueError, r"\(N, 3\) one-hot"),
    ("validation-labels", lambda x, t: {"validation": (x, t - 1)}, ValueError, r"validation: labels must lie in"),
    ("batch-size-0", lambda x, t: {"batch_size": 0}, ValueError, r"batch_size must be an int in \[1, 300\]"),
    ("batch-size-above-n", lambda x, t: {"batch_size": 301}, ValueError, r"batch_size must be an int in \[1, 300\]"),
    ("epochs", lambda x, t: {"epochs": -1}, ValueError, "epochs must be an int >= 0"),
    ("bound-optimizer", lambda x, t: {"optimizer": _bound_optimizer()}, ValueError, "bound to another model"),
    ("model-and-data-devices", lambda x, t: {"data": (xn.to_device(x, _strict("device2")), t),
                                            "model_device": _strict("device1")}, ValueError, "two devices"),
    ("x-and-y-devices", lambda x, t: {"data": (xn.to_device(x, _strict("device1")),
                                               xn.to_device(t, _strict("device2")))}, ValueError, "two devices"),
    ("not-a-pair", lambda x, t: {"data": x}, TypeError, r"pair \(x, y\)"),
    ("loss-name", lambda x, t: {"loss": "hinge"}, ValueError, "loss"),
    ("optimizer-name", lambda x, t: {"optimizer": "adamm"}, ValueError,
     r"optimizer: .*'adam', 'adamax', 'adamw'.*'adamm'"),
    ("optimizer-type", lambda x, t: {"optimizer": None}, TypeError, r"optimizer: expected an xpnet optimizer"),
    ("callback", lambda x, t: {"callbacks": [object()]}, TypeError, "Callback"),
]


@pytest.mark.parametrize("make, error, match", [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUT])
def test_bad_input_raises_before_training(spiral, make, error, match):
    x, t = spiral
    change = make(x, t)
    model = mlp()
    if "model_device" in change:
        model.to(change.pop("model_device"))
    before = params(model)
    kw = dict(data=(x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=2, batch_size=50,
              progress=False)
    kw.update(change)
    data = kw.pop("data")
    with pytest.raises(error, match=match):
        xn.train(model, data, **kw)
    for k, v in before.items():
        np.testing.assert_array_equal(params(model)[k], v)


def _bn_model():
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Linear(2, 8), xn.layers.BatchNorm(8), xn.layers.ReLU(), xn.layers.Linear(8, 3))


def _int_model():
    model = mlp()
    for layer in model.layers:
        layer.params = {k: v.astype(np.int32) for k, v in layer.params.items()}
    return model


def _a_file(path):
    path.write_text("")
    return path


# Issue 15, Training, "Checked before any training": (id, change, error, message)
CHECKED_BEFORE_TRAINING = [
    ("string-x", lambda x, t, d: {"data": (x.astype(str), t)}, TypeError, r"train data: x holds strings"),
    ("object-x", lambda x, t, d: {"data": (x.astype(object), t)}, TypeError, r"x holds Python objects"),
    ("complex-x", lambda x, t, d: {"data": (x.astype(np.complex64), t)}, TypeError, r"x has dtype complex64"),
    ("bool-x", lambda x, t, d: {"data": (x > 0, t)}, TypeError, r"x has dtype bool"),
    ("string-y", lambda x, t, d: {"data": (x, t.astype(str))}, TypeError, r"train data: y holds strings"),
    ("batchnorm-single-last-sample", lambda x, t, d: {"model": _bn_model(), "batch_size": 299}, ValueError,
     r"last batch holds a single sample \(300 samples, batch_size=299\).*layer 1 \(BatchNorm\).*drop_last=True"),
    ("bare-layer", lambda x, t, d: {"model": xn.layers.Linear(2, 3)}, TypeError, r"bare Linear layer.*xn.Sequential"),
    ("list-of-layers", lambda x, t, d: {"model": [xn.layers.Linear(2, 3)]}, TypeError, r"list of layers"),
    ("int-params", lambda x, t, d: {"model": _int_model()}, TypeError, r"parameter '0.W' .*dtype int32"),
    ("single-callback", lambda x, t, d: {"callbacks": xn.callbacks.EarlyStopping()}, TypeError,
     r"a single EarlyStopping; pass callbacks=\[EarlyStopping\(...\)\]"),
    ("checkpoint-folder-is-a-file", lambda x, t, d: {"callbacks": [xn.callbacks.ModelCheckpoint(
        _a_file(d / "runs") / "m.npz")]}, ValueError, r"'.*/runs' of .* is a file, not a folder"),
    ("checkpoint-folder-under-a-file", lambda x, t, d: {"callbacks": [xn.callbacks.ModelCheckpoint(
        _a_file(d / "runs") / "exp" / "m.npz")]}, ValueError, r"'.*/runs' of .* is a file, not a folder"),
    ("checkpoint-path-is-a-folder", lambda x, t, d: {"callbacks": [xn.callbacks.ModelCheckpoint(d)]},
     xn.XpnetFileError, r"cannot save to .*: it is a folder, not a regular file"),
    ("checkpoint-placeholder", lambda x, t, d: {"callbacks": [xn.callbacks.ModelCheckpoint(d / "m-{step}.npz")]},
     ValueError, r"unknown placeholder \{step\}"),
    ("checkpoint-test-placeholder", lambda x, t, d: {"callbacks": [xn.callbacks.ModelCheckpoint(
        d / "m-{test_loss:.3f}.npz")], "validation": (x, t), "validation_name": "test"}, ValueError,
     r"unknown placeholder \{test_loss\}.*validation_name renames only the printed figures: \{val_loss\}"),
    ("checkpoint-val-placeholder", lambda x, t, d: {"callbacks": [xn.callbacks.ModelCheckpoint(
        d / "m-{val_loss:.3f}.npz")]}, ValueError, r"val_\* placeholders need validation data"),
    ("xpnet-device", lambda x, t, d: {"env": "gpu"}, ValueError, r"XPNET_DEVICE='gpu' in the environment"),
]


@pytest.mark.parametrize("make, error, match", [pytest.param(*c[1:], id=c[0]) for c in CHECKED_BEFORE_TRAINING])
def test_mistakes_are_checked_before_any_training(spiral, tmp_path, monkeypatch, make, error, match):
    """Issue 15, Training: checked before any training, each a clear error (these used to fail in the
    middle of an epoch, with an unclear error, or not at all)."""
    x, t = spiral
    change = make(x, t, tmp_path)
    if "env" in change:
        monkeypatch.setenv("XPNET_DEVICE", change.pop("env"))
    model = change.pop("model", None) or mlp()
    started = []

    class Started(xn.callbacks.Callback):
        def on_epoch_begin(self, epoch):
            started.append(epoch)

    kw = dict(data=(x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=2, batch_size=50,
              progress=False)
    kw.update(change)
    if isinstance(kw.get("callbacks"), list):
        kw["callbacks"] = [*kw["callbacks"], Started()]
    with pytest.raises(error, match=match):
        xn.train(model, kw.pop("data"), **kw)
    assert started == []


def test_drop_last_lets_batchnorm_train_where_the_last_batch_holds_one_sample(spiral):
    """Issue 15, Training: drop_last=True (as PyTorch's DataLoader) leaves out the single-sample batch."""
    x, t = spiral
    h = xn.train(_bn_model(), (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=2, batch_size=299,
                 progress=False, drop_last=True)
    assert len(h) == 2 and all(np.isfinite(e["train_loss"]) for e in h.epochs)


@pytest.mark.parametrize("n", [60, 3001])  # 3001: more rows than the check looks at (every third)
@pytest.mark.parametrize("scale, dtype, warns", [(255, np.float32, True), (255, np.int64, True),
                                                  (255, np.uint8, False), (1, np.float32, False)])
def test_inputs_that_look_like_unscaled_images_warn_once(scale, dtype, warns, n):
    """Issue 15, Training: integer or float images with values up to 255 warn once that they look
    unscaled (uint8 is scaled by xn.train by design; scaled floats give no warning)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 4, 4)).astype(dtype) if scale == 255 else rng.random((n, 4, 4), np.float32)
    t = rng.integers(0, 3, n)
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(16, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(1e-4), epochs=1, batch_size=20,
                 progress=False, validation=(x, t))
    unscaled = [w for w in caught if "unscaled images" in str(w.message)]
    assert len(unscaled) == (1 if warns else 0)
    assert all(w.filename == __file__ for w in unscaled)  # the xn.train line above, not xpnet's


@pytest.mark.parametrize("hi, warns", [(5, False), (16, False), (31, False), (32, True), (200, True)])
def test_small_whole_number_features_are_not_taken_for_unscaled_images(hi, warns):
    """Counts or ratings 0..5 (or 4-bit images, 0..16) as float32 are no 8-bit images: no advice to
    divide by 255; whole numbers reaching 32..255 still warn."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, hi + 1, (200, 4)).astype(np.float32)
    x[0, 0] = hi
    t = rng.integers(0, 2, 200)
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(4, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(1e-4), epochs=1, batch_size=50,
                 progress=False)
    assert len([w for w in caught if "unscaled images" in str(w.message)]) == (1 if warns else 0)


def test_bad_layer_arguments_and_numpy_scalars():
    """Issue 15, Training: Linear(init=nan) and integer/complex layer dtypes fail at construction (they
    gave NaN weights, or weights rounded to zero); NumPy scalar hyperparameters are accepted."""
    for init in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="standard deviation must be a finite number > 0"):
            xn.layers.Linear(2, 3, init=init)
    for dtype in ("int32", "complex64", "bool"):
        with pytest.raises(ValueError, match=f"dtype must be a real floating type.*{dtype}"):
            xn.layers.Linear(2, 3, dtype=dtype)
    assert xn.optim.SGD(np.float32(0.5)).lr == 0.5
    assert xn.optim.Momentum(np.float64(0.1), momentum=np.float32(0.5)).momentum == 0.5
    assert xn.callbacks.EarlyStopping(min_delta=np.float32(0.5)).patience == 5


def test_optimizer_by_name_is_that_optimizer_with_its_default_lr(spiral):
    x, t = spiral
    kw = dict(loss="cross_entropy", epochs=2, batch_size=50, progress=False)
    a, b = mlp(), mlp()
    ha = xn.train(a, (x, t), optimizer="adam", **kw)
    hb = xn.train(b, (x, t), optimizer=xn.optim.Adam(), **kw)
    assert ha.epochs[-1]["lr"] == 0.001 and strip_seconds(ha) == strip_seconds(hb)
    for k, v in params(a).items():
        np.testing.assert_array_equal(params(b)[k], v)
    assert xn.train(mlp(), (x, t), optimizer="SGD", **kw).epochs[-1]["lr"] == 0.01


def test_x_and_y_as_two_arguments_says_to_pass_a_pair(spiral):
    x, t = spiral
    with pytest.raises(TypeError, match=r"pass the data as one pair, xn.train\(model, \(x, y\), ...\)"):
        xn.train(mlp(), x, t, loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=50)


def test_a_batch_iterator_for_the_data_says_to_pass_its_arrays(spiral):
    """xn.train(model, xn.datasets.BatchIterator(x, y, batch_size=32)), a DataLoader habit, said only
    "expected a pair (x, y) ..., got BatchIterator"; it now says that xpnet cuts the batches itself."""
    x, t = spiral
    batches = xn.datasets.BatchIterator(x, t, batch_size=32, shuffle=False)
    with pytest.raises(TypeError, match=r"got a BatchIterator: xpnet cuts the batches itself; pass its arrays as "
                                        r"\(x, y\) \(and to xn.train batch_size=32, shuffle=False"):
        xn.train(mlp(), batches, loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=32)
    with pytest.raises(TypeError, match=r"validation: expected a pair.*got a BatchIterator"):
        xn.train(mlp(), (x, t), validation=batches, loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=32)


def test_a_width_mismatch_names_the_data_shape(spiral):
    x, t = spiral
    x5 = np.concatenate([x, x, x[:, :1]], axis=1)
    with pytest.raises(ValueError) as info:
        xn.train(mlp(), (x5, t), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=50)
    message = str(info.value)
    assert "x of shape (300, 5)" in message and "Linear: expected input of shape (N, 2)" in message
    assert "got (300, 5)" in message and "(1, 5)" not in message


def test_the_device_fallback_warning_points_at_the_callers_line(no_cuda, spiral):
    x, t = spiral
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xn.device("cuda")
        mlp().to("cuda")
        xn.train(mlp(), (x, t), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=50, device="cuda",
                 progress=False)
    assert [w.category for w in caught] == [xn.XpnetDeviceWarning] * 3
    assert [w.filename for w in caught] == [__file__] * 3


# ----------------------------------------------------------------------------------------
# Progress output
# ----------------------------------------------------------------------------------------


def test_progress_is_one_line_per_epoch_when_not_a_terminal(spiral, capsys):
    x, t = spiral
    xn.train(mlp(), (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=3, batch_size=50,
             validation=(x, t), device="cpu")
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("xpnet: training on cpu: 300 samples, 6 steps per epoch")
    assert [line.split()[1] for line in lines[1:]] == ["1/3", "2/3", "3/3"]
    assert all("train_loss" in line and "val_accuracy" in line for line in lines[1:])


def test_progress_false_prints_nothing(spiral, capsys):
    x, t = spiral
    xn.train(mlp(), (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=2, batch_size=50,
             progress=False)
    assert capsys.readouterr().out == ""


class FakeTerminal(io.StringIO):
    """A stdout that says it is a terminal; its width comes from the patched os.get_terminal_size."""

    def isatty(self):
        return True


@pytest.mark.parametrize("columns", [80, 0])
def test_progress_on_a_terminal_prints_each_epoch_summary_whole(spiral, monkeypatch, columns):
    # tqdm sizes its bar with os.get_terminal_size(stream.fileno()) at every refresh.
    monkeypatch.setattr(os, "get_terminal_size", lambda *a: os.terminal_size((columns, 24)))
    fake = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", fake)
    x, t = spiral
    xn.train(mlp(), (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=2, batch_size=50,
             validation=(x, t), device="cpu")
    out = fake.getvalue()
    assert "0/6 [" in out  # the step bar was drawn
    # Each epoch's summary is a line of its own, complete with the validation figures.
    summaries = [seg for seg in re.split(r"[\r\n]", out) if seg.startswith("epoch ") and "train_loss" in seg]
    assert [s.split()[1] for s in summaries] == ["1/2", "2/2"]
    assert all(re.fullmatch(r"epoch \d/2  train_loss [\d.]+  train_accuracy [\d.]+  val_loss [\d.]+  "
                            r"val_accuracy [\d.]+  \([\d.e-]+s\)", s) for s in summaries), summaries


# ----------------------------------------------------------------------------------------
# graph= (CUDA-graph capture of the step)
# ----------------------------------------------------------------------------------------


def test_graph_argument_is_checked_and_false_or_none_train_as_before(monkeypatch):
    """Issue 14: graph=None/False train eagerly on the CPU with the same weights; graph=True on a
    non-CuPy device and a bad XPNET_GRAPH value are refused with the argument's name."""
    x, t = xn.datasets.spiral(20, 3, seed=0)
    results = []
    for graph in (None, False):
        xn.init.seed(0)
        model = xn.Sequential(xn.layers.Linear(2, 8), xn.layers.ReLU(), xn.layers.Linear(8, 3))
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=2, batch_size=16,
                 device="cpu", progress=False, graph=graph)
        results.append(xn.to_numpy(model.named_params()["0.W"]))
    np.testing.assert_array_equal(results[0], results[1])
    with pytest.raises(ValueError, match="graph=True.*CuPy device.*cpu"):
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=1, batch_size=16,
                 device="cpu", progress=False, graph=True)
    with pytest.raises(TypeError, match="graph must be None, True or False"):
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=1, batch_size=16,
                 device="cpu", progress=False, graph="yes")
    monkeypatch.setenv("XPNET_GRAPH", "off")
    with pytest.raises(ValueError, match="XPNET_GRAPH"):
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=1, batch_size=16,
                 device="cpu", progress=False)


def test_a_checkpoint_written_on_one_device_resumes_on_the_cpu_and_back(dev, spiral, tmp_path):
    """Issue 14: a full checkpoint written while training on ``dev`` (the GPU, or array_api_strict's
    "device1") resumes on the CPU with the same weights and optimizer state, and a CPU checkpoint
    resumes on ``dev``: files hold host arrays and no device."""
    x, t = spiral
    kw = dict(loss="cross_entropy", batch_size=32, seed=3, progress=False)
    on_dev = tmp_path / "dev.npz"
    trained = mlp(dropout=0.2)
    xn.train(trained, (x, t), optimizer=xn.optim.Adam(0.01), epochs=2, device=dev,
             callbacks=[xn.callbacks.ModelCheckpoint(on_dev, full=True)], **kw)
    on_cpu = tmp_path / "cpu.npz"
    resumed = mlp(dropout=0.2, seed=5)
    history = xn.train(resumed, (x, t), optimizer=xn.optim.Adam(0.01), epochs=3, device="cpu", resume_from=on_dev,
                       callbacks=[xn.callbacks.ModelCheckpoint(on_cpu, full=True)], **kw)
    assert history.device == "cpu" and [e["epoch"] for e in history.epochs] == [1, 2, 3]
    back = mlp(dropout=0.2, seed=6)
    history = xn.train(back, (x, t), optimizer=xn.optim.Adam(0.01), epochs=3, device=dev, resume_from=on_cpu, **kw)
    assert history.device == dev.name
    for k, v in params(resumed).items():
        np.testing.assert_array_equal(params(back)[k], v)
        xn.testing.assert_placed(back.state()[k], dev, "float32")


# ----------------------------------------------------------------------------------------
# transform: augmentation of training batches
# ----------------------------------------------------------------------------------------


class Jitter:
    """A transform that depends on (epoch, step): host noise from them, moved to the batch's device."""

    def __init__(self):
        self.calls = []

    def __call__(self, xb, epoch, step):
        self.calls.append((epoch, step, int(xb.shape[0])))
        noise = np.random.default_rng([epoch, step]).normal(0, 0.05, size=tuple(xb.shape))
        return xb + xn.to_device(noise.astype(xn.to_numpy(xb).dtype), xn.backend.device_of(xb))


def test_transform_changes_training_batches_only(spiral):
    x, t = spiral
    seen = []

    def zero(xb, epoch, step):
        seen.append((epoch, step, int(xb.shape[0])))
        return xb * 0.0

    model, start = mlp(), params(mlp())
    history = xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.Adam(0.01), epochs=2,
                       batch_size=128, device="cpu", progress=False, validation=(x, t), transform=zero)
    # Every training batch went through it (steps from 0 in each epoch), the validation set never.
    assert seen == [(e, s, n) for e in (1, 2) for s, n in enumerate((128, 128, 44))]
    # Zero inputs (and zero biases) give zero hidden units: only the last layer's bias can learn.
    after = params(model)
    for k in ("0.W", "0.b", "2.W"):
        np.testing.assert_array_equal(after[k], start[k])
    assert not np.array_equal(after["2.b"], start["2.b"])
    plain = xn.train(mlp(), (x, t), loss="cross_entropy", optimizer=xn.optim.Adam(0.01), epochs=2,
                     batch_size=128, device="cpu", progress=False, validation=(x, t))
    assert history.epochs[-1]["val_loss"] != plain.epochs[-1]["val_loss"]


def test_resumed_run_with_a_transform_equals_an_uninterrupted_one(dev, spiral, tmp_path):
    x, t = spiral
    kw = dict(loss="cross_entropy", batch_size=32, device=dev, seed=7, progress=False, validation=(x, t))
    full = mlp(dropout=0.3)
    h_full = xn.train(full, (x, t), optimizer=xn.optim.Adam(0.01), epochs=4, transform=Jitter(), **kw)
    path = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt):
        xn.train(mlp(dropout=0.3), (x, t), optimizer=xn.optim.Adam(0.01), epochs=4, transform=Jitter(),
                 callbacks=[xn.callbacks.ModelCheckpoint(path, full=True), Interrupt(at=2)], **kw)
    resumed, jitter = mlp(dropout=0.3, seed=99), Jitter()
    h_resumed = xn.train(resumed, (x, t), optimizer=xn.optim.Adam(0.01), epochs=4, resume_from=path,
                         transform=jitter, **kw)
    assert 1 not in {e for e, _, _ in jitter.calls}  # epochs done before the interruption are not redone
    for k, v in params(full).items():
        np.testing.assert_array_equal(params(resumed)[k], v)
    assert strip_seconds(h_resumed) == strip_seconds(h_full)


def test_the_guard_replays_the_transformed_batches(spiral):
    """A transform that makes one batch NaN: the replay sees the same batch and names its step."""
    x, t = spiral

    def poison(xb, epoch, step):
        return xb * math.nan if (epoch, step) == (2, 3) else xb

    with pytest.raises(xn.XpnetTrainingError, match=r"epoch 2, step 4 of 10; first non-finite value: the input "
                                                    r"batch"):
        xn.train(mlp(), (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.01), epochs=3, batch_size=32,
                 device="cpu", progress=False, transform=poison)


def test_transform_must_be_callable(spiral):
    with pytest.raises(TypeError, match=r"transform must be None or a function \(x_batch, epoch, step\) -> "
                                        r"x_batch, .* got str"):
        xn.train(mlp(), spiral, loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=32, device="cpu",
                 progress=False, transform="flip")


def test_one_sample_trains_and_evaluates_on_every_device(dev):
    """The shape probes take the first two rows (a BatchNorm(track_running_stats=False) needs two); with one
    sample the slice 0:2 ran past the end, which array-api-strict refuses ("out-of-bounds stops are not
    specified"): xn.train and xn.evaluate of one sample failed there with an IndexError."""
    x, t = np.array([[0.5, -1.0]], np.float32), np.array([1])
    model = mlp(width=4).to(dev)
    xs, ts = xn.to_device(x, dev), xn.to_device(t, dev)
    h = xn.train(model, (xs, ts), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=1, device=dev,
                 progress=False)
    assert len(h.epochs) == 1
    assert xn.evaluate(model, (xs, ts), loss="cross_entropy")["accuracy"] in (0.0, 1.0)


def test_train_within_no_grad_is_refused_before_any_step_saying_so():
    """Training backpropagates: called within xn.no_grad() (PyTorch's backward refuses a loss computed under
    torch.no_grad()), xn.train says so, not the first backward's message about a loop of one's own."""
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(4, 3))
    before = {k: p.copy() for k, p in model.named_params().items()}
    x, y = np.zeros((8, 4), np.float32), np.zeros(8, np.int64)
    with xn.no_grad(), pytest.raises(RuntimeError, match=r"^train: gradients are off .*xn\.no_grad\(\)"):
        xn.train(model, (x, y), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=4, progress=False)
    for k, p in model.named_params().items():
        np.testing.assert_array_equal(p, before[k], err_msg=k)
