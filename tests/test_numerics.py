"""Data and numerics: memory-mapped and masked inputs, float16 metrics and optimizers, learning rates
that ascend or diverge, NaN validation losses in callbacks, probability targets, StaticBatches before
an epoch, and float64 on JAX without x64.

Covers issue 27, "Data and numerics". Each test failed before the change it guards.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import Linear, ReLU


def mlp(dtype="float32", width=16):
    xn.init.seed(0)
    return xn.Sequential(Linear(2, width, dtype=dtype), ReLU(), Linear(width, 3, dtype=dtype))


@pytest.fixture
def spiral():
    return xn.datasets.spiral(40, 3, seed=0)


def fit(model, data, **kw):
    args = {"loss": "cross_entropy", "optimizer": xn.optim.SGD(0.1), "epochs": 2, "batch_size": 20, "progress": False}
    return xn.train(model, data, **{**args, **kw})


# -- memory-mapped and masked arrays ------------------------------------------------------------

def _memmaps(tmp_path, x, t):
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    raw = np.memmap(tmp_path / "raw.bin", dtype=x.dtype, mode="w+", shape=x.shape)
    raw[...] = x
    raw.flush()
    return {"np.load mmap_mode=r": (np.load(tmp_path / "x.npy", mmap_mode="r"),
                                    np.load(tmp_path / "t.npy", mmap_mode="r")),
            "np.memmap": (np.memmap(tmp_path / "raw.bin", dtype=x.dtype, mode="r", shape=x.shape), t),
            "masked": (np.ma.masked_array(x), np.ma.masked_array(t))}


@pytest.mark.parametrize("kind", ["np.load mmap_mode=r", "np.memmap", "masked"])
def test_memory_mapped_and_masked_arrays_train_evaluate_and_predict_like_plain_ones(tmp_path, spiral, kind):
    """They were refused with "input is on cpu but the layer's parameters are on cpu" (same_device
    compared exact types); the results are those of the plain arrays."""
    x, t = _memmaps(tmp_path, *spiral)[kind]
    plain, mapped = mlp(), mlp()
    expected = fit(plain, spiral).epochs
    assert fit(mapped, (x, t)).epochs[-1]["train_loss"] == expected[-1]["train_loss"]
    assert xn.evaluate(mapped, (x, t), loss="cross_entropy") == xn.evaluate(plain, spiral, loss="cross_entropy")
    for batch_size in (None, 7):
        out = mapped.predict(x, batch_size=batch_size)
        assert type(out) is np.ndarray
        # the same batches on both (a BLAS may round a 1-row product as a matrix-vector one: OpenBLAS on AMD EPYC)
        np.testing.assert_array_equal(out, plain.predict(spiral[0], batch_size=batch_size))


def test_a_masked_array_with_masked_entries_is_refused(spiral):
    x = np.ma.masked_array(spiral[0], mask=np.zeros_like(spiral[0], dtype=bool))
    x.mask[3, 1] = True
    with pytest.raises(ValueError, match=r"train data: x is a masked array with 1 masked entries; fill them"):
        fit(mlp(), (x, spiral[1]))
    with pytest.raises(ValueError, match="predict: x is a masked array with 1 masked entries"):
        mlp().predict(x)


# -- float16 ------------------------------------------------------------------------------------

def test_float16_metrics_are_summed_in_float32():
    """xn.evaluate of a float16 model on 75,000 samples returned inf (the loss sum overflowed float16's
    65504), 30,000 gave 1.1829 for 1.1708; the sums are float32 now and agree with the float32 model's."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((75_000, 2)).astype(np.float32)
    t = rng.integers(0, 3, 75_000)
    half = mlp().to(dtype="float16")
    full = mlp().to(dtype="float16").to(dtype="float32")  # the same (rounded) weights, in float32
    for n in (75_000, 30_000):
        got = xn.evaluate(half, (x[:n], t[:n]), loss="cross_entropy", batch_size=5000)
        want = xn.evaluate(full, (x[:n], t[:n]), loss="cross_entropy", batch_size=5000)
        assert np.isfinite(got["loss"]) and got["loss"] == pytest.approx(want["loss"], rel=2e-3)
        assert got["accuracy"] == pytest.approx(want["accuracy"], abs=2e-3)
    history = xn.train(half, (x[:20_000], t[:20_000]), loss="cross_entropy", optimizer=xn.optim.SGD(0.01), epochs=1,
                       batch_size=2000, progress=False)
    assert np.isfinite(history.epochs[0]["train_loss"])


@pytest.mark.parametrize("make", [xn.optim.Adam, xn.optim.AdamW, xn.optim.RMSprop, xn.optim.AdaGrad])
def test_an_eps_that_rounds_away_in_float16_is_refused_before_any_update(spiral, make):
    """Adam and RMSprop on float16 failed at step 1 with "try a smaller learning rate": eps 1e-8 is 0 in
    float16. As in PyTorch the state stays in the parameters' dtype; xpnet says why and what to pass."""
    model = mlp("float16")
    before = {k: v.copy() for k, v in model.state().items()}
    with pytest.raises(ValueError, match=rf"{make.__name__}: eps=1e-0[78] is below the smallest normal float16 "
                                         r"number \(6.1e-05\).*pass eps=1e-4 or larger"):
        fit(model, spiral, optimizer=make())
    assert all(np.array_equal(v, before[k]) for k, v in model.state().items())
    history = fit(mlp("float16"), spiral, optimizer=make(eps=1e-4))
    assert np.isfinite(history.epochs[-1]["train_loss"])


# -- learning rates -----------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.1", None, True])
def test_a_learning_rate_is_checked_whenever_it_is_set(bad):
    """opt.lr = -0.1 did gradient ascent, opt.lr = "0.1" failed inside the update."""
    opt = xn.optim.Adam(0.01)
    with pytest.raises(ValueError, match=r"Adam: lr must be a finite number >= 0, got"):
        opt.lr = bad
    assert opt.lr == 0.01
    opt.lr = 0.0  # where a schedule ends
    assert opt.lr == 0.0


def test_a_callback_that_sets_a_negative_learning_rate_stops_the_run(spiral):
    class Ascend(xn.callbacks.Callback):
        def on_epoch_begin(self, epoch):
            self.state.optimizer.lr = -0.1

    with pytest.raises(ValueError, match=r"SGD: lr must be a finite number >= 0, got -0.1"):
        fit(mlp(), spiral, callbacks=[Ascend()])


@pytest.mark.parametrize("optimizer, callbacks", [
    (lambda: xn.optim.SGD(1e3), []),
    (lambda: xn.optim.SGD(0.1), [xn.callbacks.LearningRateSchedule(lambda i: 1e4 if i == 2 else 0.1)]),
], ids=["sgd-1e3", "schedule-spike"])
def test_a_run_that_ends_far_above_its_first_loss_warns_once(spiral, optimizer, callbacks):
    """SGD(1e3) ended at a loss of 307 and a schedule spiking to 1e4 at 8373, silently (the loss stayed
    finite, so the NaN guard never saw it)."""
    with pytest.warns(UserWarning, match=r"train: the training loss ended at .* far above where this run began "
                                         r"\(.* at its first step\): training diverged") as record:
        history = fit(mlp(width=64), spiral, optimizer=optimizer(), epochs=5, callbacks=callbacks)
    assert np.isfinite(history.epochs[-1]["train_loss"])
    assert sum("diverged" in str(w.message) for w in record) == 1
    assert record[0].filename == __file__


def test_a_run_that_learns_gives_no_divergence_warning(spiral):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(mlp(), spiral, optimizer=xn.optim.Adam(0.01), epochs=5)


# -- NaN validation losses ----------------------------------------------------------------------

def test_a_nan_validation_loss_is_reported_by_early_stopping_and_model_checkpoint(tmp_path, spiral):
    """EarlyStopping stopped silently and ModelCheckpoint(save_best_only=True) kept epoch 1 when the
    validation loss turned NaN; each now says so, once."""
    x, t = spiral
    bad = x.copy()
    bad[0, 0] = np.nan
    stop = xn.callbacks.EarlyStopping(patience=2)
    best = xn.callbacks.ModelCheckpoint(tmp_path / "best.npz", save_best_only=True)
    with pytest.warns(UserWarning) as record:
        history = fit(mlp(), spiral, validation=(bad, t), epochs=6, callbacks=[stop, best])
    messages = [str(w.message) for w in record]
    assert len(history.epochs) == 2 and stop.stopped_epoch == 2 and best.saved == []
    assert messages == [
        "EarlyStopping: val_loss is nan in epoch 1 (NaN or inf in the validation data or in the model's outputs "
        "on it); a non-finite value never counts as an improvement, so such epochs count towards patience",
        "ModelCheckpoint: val_loss is nan in epoch 1 (NaN or inf in the validation data or in the model's outputs "
        "on it); a non-finite value never counts as an improvement, so only epochs with a finite value are saved"]


# -- targets and batches ------------------------------------------------------------------------

def test_negative_probability_targets_are_refused(spiral):
    """Negative soft-label targets gave a negative cross-entropy."""
    x, t = spiral
    soft = np.full((len(t), 3), -0.5, np.float32)
    soft[:, 0] = 2.0
    with pytest.raises(ValueError, match=r"train data: SoftmaxCrossEntropy targets of shape \(N, 3\) are "
                                         r"probabilities and must be >= 0, got a minimum of -0.5"):
        fit(mlp(), (x, soft))
    with pytest.raises(ValueError, match="evaluate data: .* must be >= 0"):
        xn.evaluate(mlp(), (x, soft), loss="cross_entropy")
    loss = xn.losses.SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match=r"target probabilities must be >= 0, got a minimum of -0.5"):
        loss.forward(mlp().forward(x), soft)
    assert float(loss.forward(mlp().forward(x), np.abs(soft) / 3.0)) > 0


def test_static_batches_gather_only_after_an_epoch_is_loaded(spiral):
    """gather() before load_epoch() returned row 0 in every row."""
    batches = xn.datasets.StaticBatches(xn.datasets.BatchIterator(*spiral, batch_size=10, seed=0))
    with pytest.raises(RuntimeError, match=r"StaticBatches.gather: call load_epoch\(epoch\) first"):
        batches.gather()
    batches.load_epoch(1)
    x, _ = batches.gather()
    np.testing.assert_array_equal(x, next(iter(xn.datasets.BatchIterator(*spiral, batch_size=10, seed=0).epoch(1)))[0])


# -- JAX without x64 ----------------------------------------------------------------------------

@contextlib.contextmanager
def _jax_x64(enabled):
    jax = pytest.importorskip("jax", reason="jax is not installed (pip install -e .[backends])")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", enabled)
    try:
        yield jax
    finally:
        jax.config.update("jax_enable_x64", before)


def test_jax_without_x64_refuses_float64_and_casts_float64_data_like_numpy(spiral):
    """model.to("jax:cpu", dtype="float64") and xn.to_device(x, "jax:cpu", dtype="float64") silently gave
    float32 (the name check compared str(jnp.float64)), and float64 NumPy data on a float32 JAX model was
    refused where NumPy and torch cast it."""
    x, t = spiral
    with _jax_x64(False):
        with pytest.raises(ValueError, match=r"jax:cpu cannot hold float64 \(it gave float32\); for JAX call "
                                             r"jax.config.update\('jax_enable_x64', True\)"):
            mlp().to("jax:cpu", dtype="float64")
        with pytest.raises(ValueError, match=r"or cast to float32: .*xn.load\(path, device, dtype='float32'\)"):
            xn.to_device(x, "jax:cpu", dtype="float64")
        with pytest.raises(ValueError, match="jax:cpu cannot hold float64"):
            xn.to_device(x, "jax:cpu", dtype="float64")
        on_jax, on_numpy = mlp().to("jax:cpu"), mlp()
        x64, t = x[:40].astype(np.float64), t[:40]
        got = fit(on_jax, (x64, t), epochs=1, batch_size=40).epochs[-1]["train_loss"]
        assert got == pytest.approx(fit(on_numpy, (x64, t), epochs=1, batch_size=40).epochs[-1]["train_loss"], rel=1e-5)
        assert xn.evaluate(on_jax, (x64, t), loss="cross_entropy")["loss"] == pytest.approx(
            xn.evaluate(on_numpy, (x64, t), loss="cross_entropy")["loss"], rel=1e-5)
        np.testing.assert_allclose(xn.to_numpy(on_jax.predict(x64)), on_numpy.predict(x64), rtol=1e-5, atol=1e-6)


def test_jax_without_x64_refuses_64_bit_integers_that_would_wrap(tmp_path):
    """JAX without x64 holds int64 as int32: labels move so, but 2**40 (a step count, an id) silently became 0,
    also through xn.load of a checkpoint onto JAX. Now refused, naming the values and how to enable x64."""
    with _jax_x64(False):
        labels = xn.to_device(np.array([0, 9, -3], np.int64), "jax:cpu")
        np.testing.assert_array_equal(xn.to_numpy(labels), [0, 9, -3])
        for big in (np.array([1, 2**40], np.int64), np.array([2**32], np.uint64), np.array([-2**31 - 1])):
            with pytest.raises(ValueError, match=r"jax:cpu holds u?int64 as u?int32 and these values do not fit "
                                                 r"\(from .*\); for JAX call jax.config.update\('jax_enable_x64'"):
                xn.to_device(big, "jax:cpu")
        xn.save({"step": np.array(2**40)}, tmp_path / "ckpt.npz")
        with pytest.raises(ValueError, match="do not fit"):
            xn.load(tmp_path / "ckpt.npz", device="jax:cpu")


@pytest.mark.parametrize("dtype", [np.float64, "float64", np.dtype("float64")], ids=["np.float64", "str", "np.dtype"])
def test_dtypes_are_taken_in_any_librarys_form(dtype):
    """model.to("torch:cpu", dtype=np.float64) failed inside torch; model.to("cpu", dtype="foo") with an
    AttributeError from the namespace."""
    pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    assert str(mlp().to("torch:cpu", dtype=dtype).dtype) == "torch.float64"
    for bad in ("foo", "int32", None.__class__):
        with pytest.raises(ValueError, match=r"Sequential.to: dtype must be a real floating type "
                                             r"\('float16', 'float32' or 'float64'\)"):
            mlp().to("cpu", dtype=bad)
    with pytest.raises(ValueError, match="to_device: dtype 'foo' is not a name such as 'float32'"):
        xn.to_device(np.zeros(2), "cpu", dtype="foo")


def test_inputs_beyond_float16_are_refused_not_turned_into_inf(spiral):
    """A float16 model given float32 data with a value of 1e5 (past float16's 65504): the cast made it inf
    with NumPy's "overflow encountered in cast" from inside xpnet, then xn.train stopped saying the input
    batch held a non-finite value ("check the data for NaN/inf", which the data did not hold), and
    xn.evaluate and predict gave NaN. Each now names the value and the dtype before anything runs."""
    x, t = spiral
    x = x.copy()
    x[5, 0] = 1e5
    model = mlp("float16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy overflow warning on the way
        with pytest.raises(ValueError, match=r"train data: x holds values up to 1e\+05 in magnitude, "
                                             r"which float16 .*65504.* inf"):
            fit(model, (x, t), epochs=1)
        with pytest.raises(ValueError, match=r"evaluate data: x holds values up to 1e\+05 in magnitude, which float16"):
            xn.evaluate(model, (x, t), loss="cross_entropy")
        with pytest.raises(ValueError, match=r"predict: x holds values up to 1e\+05 in magnitude, which float16"):
            model.predict(x)
        with pytest.raises(ValueError, match=r"train data: y holds values up to 7e\+04 in magnitude, which float16"):
            xn.train(mlp("float16"), (x * 0, np.full((len(x), 3), 7e4, np.float32)), loss="mse",
                     optimizer=xn.optim.SGD(0.1), epochs=1, batch_size=20, progress=False)
    x[5, 0] = -65519.0  # rounds to -65504, finite in float16: taken (the model may overflow on it, its own doing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isfinite(xn.to_numpy(model.predict(x))[:5]).all()
    x[5, 0] = np.nan  # the data's own NaN is the data's: the guard names the input batch as before
    with pytest.raises(xn.XpnetTrainingError, match="the input batch"):
        fit(mlp("float16"), (x, t), epochs=1)


def test_the_guard_names_float16s_range_when_a_float16_model_overflows(spiral):
    """A float16 model whose layer outputs outgrow 65504 stopped with the message of any NaN ("try a smaller
    learning rate, check the data for NaN/inf"), without a word of float16, whose range is the likely cause;
    it now says so. A float32 model's message does not."""
    x, t = spiral
    with pytest.raises(xn.XpnetTrainingError, match=r"output of layer \d \(Linear\).*the model is float16, whose "
                                                    r"largest number is 65504"):
        fit(mlp("float16"), (x * 300, t), optimizer=xn.optim.SGD(10.0), epochs=2)
    with pytest.raises(xn.XpnetTrainingError) as raised:
        fit(mlp("float32"), (x * 1e18, t), optimizer=xn.optim.SGD(1e30), epochs=2)
    assert "float16" not in str(raised.value)


@pytest.mark.parametrize("spelling, name", [("half", "float16"), ("single", "float32"), ("double", "float64"),
                                            ("f4", "float32"), (np.dtype(">f8"), "float64")])
def test_layers_model_to_and_embedding_take_the_same_dtype_spellings(spelling, name):
    """Linear(dtype="half") built a float16 layer (NumPy's names), but model.to(dtype="half") and
    Embedding(dtype="half") refused it as not "a floating type ('float32' or 'float64')", a message that also
    left out float16, which all of them take."""
    assert str(Linear(2, 3, dtype=spelling).dtype) == name
    assert str(mlp().to(dtype=spelling).dtype) == name
    assert str(xn.layers.Embedding(5, 3, dtype=spelling).dtype) == name


def test_the_string_float_is_refused_as_ambiguous_everywhere_a_dtype_is_given():
    """dtype="float" built a float64 layer (NumPy's reading) where a PyTorch user, for whom torch.float is
    float32, meant float32: a model twice as large and slow with no word. It is refused, naming both readings;
    Python's float type (float64 in NumPy and PyTorch alike) and torch.float itself keep their meaning."""
    for make in (lambda d: Linear(2, 3, dtype=d), lambda d: mlp().to(dtype=d),
                 lambda d: xn.layers.Embedding(5, 3, dtype=d)):
        with pytest.raises(ValueError, match=r"dtype='float' is ambiguous: NumPy's 'float' is float64, PyTorch's "
                                             r"torch.float is float32; write 'float32' or 'float64'"):
            make("float")
        assert str(make(float).dtype) == "float64"
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    assert str(Linear(2, 3, dtype=torch.float).dtype) == "float32"


@pytest.mark.parametrize("spelling", ["float128", "longdouble"])
def test_a_float_dtype_xpnet_cannot_train_is_refused_when_the_layer_is_built(spiral, spelling):
    """Linear(dtype="float128") (NumPy's long double) was built, then xn.train failed inside with
    "to_device: dtype 'float128' is not a name such as 'float32'"; it is refused where it is given."""
    if not hasattr(np, "float128"):
        pytest.skip("no long double on this platform")
    for make in (lambda: Linear(2, 3, dtype=spelling), lambda: mlp().to(dtype=spelling),
                 lambda: xn.layers.Embedding(5, 3, dtype=spelling)):
        with pytest.raises(ValueError, match=r"dtype must be a (real )?floating type \('float16', 'float32' or "
                                             r"'float64'\)"):
            make()
