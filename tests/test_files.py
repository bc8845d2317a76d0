"""Model files and checkpoints: what loads is what was saved, and a bad file gives one clear error.

Covers issue 15, "Files: what loads is what was saved".
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import Dropout, Linear, ReLU


def small_model(seed=0):
    xn.init.seed(seed)
    return xn.Sequential(Linear(4, 8), ReLU(), Dropout(0.1), Linear(8, 3))


def rewrite(path, change):
    """Rewrite the .npz at ``path`` after ``change(arrays, meta)`` edits its arrays and record in place."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    key = next(k for k in arrays if k.startswith("__xpnet"))
    meta = json.loads(str(arrays[key]))
    change(arrays, meta)
    arrays[key] = np.asarray(json.dumps(meta))
    np.savez(path, **arrays)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.npz"
    small_model().save(path)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda a, m: a.update({"0.W": np.zeros((8, 4), np.float32)}), r"'0.W' has shape \(8, 4\).*needs shape \(4, 8\)"),
    (lambda a, m: a.update({"3.b": a["3.b"].astype(np.float64)}), r"arrays mix dtypes \['float32', 'float64'\]"),
    (lambda a, m: a.update({k: v.astype(np.int32) for k, v in a.items() if k[0].isdigit()}),
     r"hold int32, expected float"),
    (lambda a, m: a.pop("3.b"), r"missing \['3.b'\]"),
    (lambda a, m: a.update({"9.W": np.zeros(2)}), r"unexpected \['9.W'\]"),
    (lambda a, m: m.update({"format": 3}), r"'format' is 3; this xpnet reads formats 1, 2"),
    (lambda a, m: m["layers"][0].update({"config": {"in_features": 4}}), r"layers\[0\] \(Linear\) cannot be built"),
    (lambda a, m: m.update({"layers": "Linear"}), r"field 'layers' is str"),
    (lambda a, m: m["layers"].__setitem__(0, {"same_as": 0}),
     r"layers\[0\] is \{'same_as': 0\}, expected .* one of the 0 layers"),
    (lambda a, m: m["layers"].__setitem__(3, {"same_as": True}), r"layers\[3\] is \{'same_as': True\}"),
])
def test_load_checks_every_array_and_the_format_before_use(saved, change, message):
    """Issue 15, Files: xn.load checks shape, dtype, missing and extra names, and the format version
    (a wrong shape or dtype, or format 2, loaded silently before)."""
    rewrite(saved, change)
    with pytest.raises(xn.XpnetFileError, match=message) as info:
        xn.load(saved)
    assert str(saved) in str(info.value)


@contextlib.contextmanager
def _peak_bytes():
    """Yields a one-item list that holds, once the block has ended, the peak bytes Python allocated in it."""
    peak = [0]
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def test_a_file_declaring_a_huge_layer_fails_without_allocating_it(tmp_path):
    """Issue 15, Files: a tiny file declaring Linear(4000, 4000) fails before anything that size is made
    (the layer used to draw its random weights first: 190 MB here, 2.7 GB for Linear(15000, 15000))."""
    path = tmp_path / "huge.npz"
    meta = {"format": 1, "layers": [{"type": "Linear", "config": {"in_features": 4000, "out_features": 4000}}]}
    np.savez(path, **{"0.W": np.zeros((2, 2), np.float32), "0.b": np.zeros(4000, np.float32),
                      "__xpnet_model__": np.asarray(json.dumps(meta))})
    with _peak_bytes() as peak, pytest.raises(xn.XpnetFileError,
                                              match=r"'0.W' has shape \(2, 2\).*needs shape \(4000, 4000\)"):
        xn.load(path)
    assert peak[0] < 8 << 20


def test_a_header_declaring_more_data_than_the_file_holds_fails_before_reading(tmp_path, saved):
    """Issue 15, Files: an array whose .npy header claims more bytes than its archive member holds is
    refused from the header, without allocating the declared size."""
    with zipfile.ZipFile(saved) as z:
        members = {n: z.read(n) for n in z.namelist()}
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "<f4", "fortran_order": False, "shape": (4, 800_000_000)})
    members["0.W.npy"] = npy.getvalue() + bytes(128)
    with zipfile.ZipFile(saved, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with _peak_bytes() as peak, pytest.raises(xn.XpnetFileError,
                                              match=r"'0.W' declares shape \(4, 800000000\).*holds 128 bytes"):
        xn.load(saved)
    assert peak[0] < 8 << 20


def test_load_leaves_the_global_init_generator_untouched(saved):
    """Issue 15, Files: building the layers of a file draws no random weights, so xn.init's generator
    (which seeds every later model) is where it was."""
    xn.init.seed(5)
    before = xn.init.generator().bit_generator.state
    xn.load(saved)
    assert xn.init.generator().bit_generator.state == before


def test_a_model_cast_to_float64_loads_also_from_a_file_with_the_old_dtype_record(tmp_path):
    """Issue 15, Files: model.to(dtype="float64") then save records float64; a file of an earlier
    version (record float32, arrays float64) still loads, in float64."""
    path = tmp_path / "m.npz"
    model = small_model().to(dtype="float64")
    model.save(path)
    assert xn.load(path).dtype == np.float64
    rewrite(path, lambda a, m: [layer["config"].update(dtype="float32") for layer in m["layers"]
                                if "dtype" in layer["config"]])
    loaded = xn.load(path)
    for k, v in model.state().items():
        np.testing.assert_array_equal(loaded.state()[k], v)


def test_a_float64_file_loads_as_float32_onto_a_device_without_float64(tmp_path):
    strict = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    no_float64 = xn.Device(strict, strict.Device("no_float64"))
    path = tmp_path / "m.npz"
    model = small_model().to(dtype="float64")
    model.save(path)
    with pytest.raises(ValueError, match=r"no_float64 cannot hold float64 .*xn.load\(path, device, "
                                         r"dtype='float32'\)"):
        xn.load(path, device=no_float64)
    loaded = xn.load(path, device=no_float64, dtype="float32")
    assert loaded.device == no_float64 and loaded.dtype == strict.float32
    for k, v in model.state().items():
        np.testing.assert_array_equal(xn.to_numpy(loaded.state()[k]), v.astype(np.float32))


def test_loaded_weights_are_the_saved_ones_and_writable(saved):
    model = xn.load(saved)
    original = small_model()
    for k, v in original.state().items():
        np.testing.assert_array_equal(model.state()[k], v)
    model.state()["0.W"][0, 0] += 1.0  # no read-only placeholder survives the load


def _zero_bytes(path, good):
    path.write_bytes(b"")


def _truncated(path, good):
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])


def _not_zip(path, good):
    path.write_text("epoch,loss\n1,0.5\n")


def _npy(path, good):
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))


def _pickled(path, good):
    with open(path, "wb") as f:
        np.savez(f, **{"__xpnet_model__": np.asarray(["x"], dtype=object),
                       "__xpnet_checkpoint__": np.asarray(["x"], dtype=object)})


def _flipped(path, good):
    data = bytearray(good.read_bytes())
    i = data.index(b"\x93NUMPY") + 130  # the npy header is 128 bytes
    data[i] ^= 0xFF  # inside an array's data: the CRC no longer matches
    path.write_bytes(bytes(data))


BROKEN = [_zero_bytes, _truncated, _not_zip, _npy, _pickled, _flipped]


@pytest.mark.parametrize("breaker", BROKEN, ids=lambda f: f.__name__.strip("_"))
def test_a_broken_model_file_gives_one_error_naming_it(tmp_path, saved, breaker):
    """Issue 15, Files: corrupt, zero-byte, truncated, non-zip, .npy and pickled files given to xn.load
    give one XpnetFileError naming the path and what was expected, never numpy's allow_pickle hint."""
    path = tmp_path / "broken.npz"
    breaker(path, saved)
    with pytest.raises(xn.XpnetFileError) as info:
        xn.load(path)
    message = str(info.value)
    assert str(path) in message and "xpnet model file" in message
    assert "allow_pickle" not in message


# -- checkpoints --------------------------------------------------------------------------------


@pytest.fixture
def spiral():
    return xn.datasets.spiral(30, 3, seed=0)


def spiral_model():
    xn.init.seed(0)
    return xn.Sequential(Linear(2, 8), ReLU(), Dropout(0.1), Linear(8, 3))


def fit(data, optimizer, epochs=1, **kw):
    return xn.train(spiral_model(), data, loss="cross_entropy", optimizer=optimizer, epochs=epochs,
                    batch_size=30, progress=False, **kw)


@pytest.fixture
def checkpoint(tmp_path, spiral):
    path = tmp_path / "run.npz"
    fit(spiral, xn.optim.Adam(0.01), callbacks=[xn.callbacks.ModelCheckpoint(path, full=True)])
    return path


@pytest.mark.parametrize("breaker", BROKEN, ids=lambda f: f.__name__.strip("_"))
def test_a_broken_checkpoint_gives_one_error_naming_it(tmp_path, spiral, checkpoint, breaker):
    """Issue 15, Files: the same broken files given to resume_from give one XpnetFileError naming the
    path and what was expected, never numpy's allow_pickle hint."""
    path = tmp_path / "broken.npz"
    breaker(path, checkpoint)
    with pytest.raises(xn.XpnetFileError) as info:
        fit(spiral, xn.optim.Adam(0.01), epochs=2, resume_from=path)
    message = str(info.value)
    assert str(path) in message and "training checkpoint" in message and "allow_pickle" not in message


def test_xn_load_opens_a_full_checkpoint_as_the_model_at_its_epoch(tmp_path, spiral):
    """A full checkpoint holds the architecture too: xn.load gives the model with the weights of the
    checkpoint's epoch (it used to say the file was no model file, having no architecture record)."""
    path, every = tmp_path / "run.npz", tmp_path / "epoch{epoch}.npz"
    model = spiral_model()
    xn.train(model, spiral, loss="cross_entropy", optimizer=xn.optim.Adam(0.01), epochs=3, batch_size=30,
             progress=False, callbacks=[xn.callbacks.ModelCheckpoint(path, full=True, monitor="train_loss"),
                                        xn.callbacks.ModelCheckpoint(str(every), monitor="train_loss")])
    loaded = xn.load(path)
    assert type(loaded) is xn.Sequential and repr(loaded) == repr(model)
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value)
        np.testing.assert_array_equal(loaded.state_dict()[name], xn.load(tmp_path / "epoch3.npz").state_dict()[name])
    x, _ = spiral
    np.testing.assert_array_equal(xn.to_numpy(loaded.predict(x)), xn.to_numpy(model.predict(x)))


def test_a_broken_full_checkpoint_given_to_xn_load_is_named_as_a_checkpoint(checkpoint):
    rewrite(checkpoint, lambda a, m: a.pop("model/3.b"))
    with pytest.raises(xn.XpnetFileError, match=r"is not an xpnet training checkpoint .*missing \['model/3.b'\]"):
        xn.load(checkpoint)


@pytest.mark.parametrize("change, message", [
    (lambda a, m: m["optimizer"]["hyperparams"].update(lr=-1.0), r"'optimizer.hyperparams' is invalid: Adam: lr"),
    (lambda a, m: m["optimizer"]["hyperparams"].update(betas=[0.9]),
     r"'optimizer.hyperparams' is invalid: Adam: betas"),
    (lambda a, m: m["optimizer"]["hyperparams"].update(momentum=0.9),
     r"'optimizer.hyperparams' is invalid: .*momentum"),
    (lambda a, m: m["optimizer"].pop("t"), r"field 'optimizer.t' is missing"),
    (lambda a, m: m.pop("optimizer"), r"field 'optimizer.type' is missing"),
    (lambda a, m: m["optimizer"].update(scalars={"0.W": {"mu_product": "1"}}), r"field 'optimizer.scalars' is "),
    (lambda a, m: m.update(epoch="1"), r"field 'epoch' is '1', expected an int"),
    (lambda a, m: m.update(epoch=-1), r"field 'epoch' is -1, expected an int >= 0"),
    (lambda a, m: m["history"].update(epochs=[1]), r"field 'history.epochs\[0\]' is 1"),
    (lambda a, m: m["rng"].update({"0": {}}), r"field 'rng.0' names no layer with a generator"),
    (lambda a, m: m["rng"].update({"2": {"state": 3}}), r"field 'rng.2' is not a generator state"),
    (lambda a, m: m.update(format=7), r"field 'format' is 7"),
    (lambda a, m: a.update({"optimizer/0.W/m": np.zeros((8, 2), np.float32)}), r"'optimizer/0.W/m' has shape \(8, 2\)"),
    (lambda a, m: a.update({"optimizer/5.W/m": np.zeros(2, np.float32)}), r"'optimizer/5.W/m' belongs to no parameter"),
    (lambda a, m: a.pop("model/3.b"), r"\['model/3.b'\] of its architecture are missing"),
    (lambda a, m: m["callbacks"].append({"type": "EarlyStopping"}), r"field 'callbacks\[1\]'"),
    (lambda a, m: m["optimizer"]["param_groups"][0].update(eps=-1.0),
     r"field 'optimizer.param_groups\[0\]' is invalid: Adam: eps"),
    (lambda a, m: m.update(epoch_offset=1.5), r"field 'epoch_offset' is 1.5, expected an int"),
    (lambda a, m: m["history"]["epochs"][0].update(train_loss="x"),
     r"field 'history.epochs\[0\].train_loss' is 'x', expected a number or null"),
    (lambda a, m: m["optimizer"]["param_groups"][0].update(lr=0.5),
     r"field 'optimizer.param_groups\[0\]' differs from 'optimizer.hyperparams' in \['lr'\]"),
])
def test_a_checkpoint_is_validated_field_by_field(spiral, checkpoint, change, message):
    """Issue 15, Files: hyperparameters from a checkpoint are validated by the optimizer's constructor,
    and a missing or malformed field gives an error naming the file and the field, never a bare
    KeyError/IndexError (a negative lr used to be taken as is)."""
    rewrite(checkpoint, change)
    with pytest.raises(xn.XpnetFileError, match=message) as info:
        fit(spiral, xn.optim.Adam(0.01), epochs=2, resume_from=checkpoint)
    assert str(checkpoint) in str(info.value)


def test_a_checkpoint_refused_at_resume_leaves_the_model_as_it_was(spiral, checkpoint):
    """A param group the optimizer refused (a plain ValueError naming neither file nor field) came after the
    checkpoint's weights had been put into the model passed: validate fully, then act."""
    rewrite(checkpoint, lambda a, m: m["optimizer"]["param_groups"][0].update(eps=-1.0))
    model = spiral_model()
    before = {k: np.array(v) for k, v in model.state().items()}
    with pytest.raises(xn.XpnetFileError):
        xn.train(model, spiral, loss="cross_entropy", optimizer=xn.optim.Adam(0.01), epochs=2, batch_size=30,
                 progress=False, resume_from=checkpoint)
    for k, v in model.state().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_a_checkpoint_written_before_optimizer_scalars_still_resumes(spiral, checkpoint):
    """Checkpoints older than NAdam's kept mu_product have no 'optimizer.scalars': they resume as before."""
    rewrite(checkpoint, lambda a, m: m["optimizer"].pop("scalars"))
    assert len(fit(spiral, xn.optim.Adam(0.01), epochs=2, resume_from=checkpoint).epochs) == 2


def test_resuming_warns_that_the_saved_hyperparameters_replace_the_optimizers(spiral, checkpoint):
    """Issue 15, Files: resuming with an optimizer of other hyperparameters says which saved values
    replace them (as PyTorch's load_state_dict does), and the run goes on with the saved ones."""
    opt = xn.optim.Adam(0.5, betas=(0.8, 0.9))
    with pytest.warns(UserWarning, match=r"replace those of the Adam .*lr 0.5 -> 0.01, betas \(0.8, 0.9\) -> "
                                         r"\(0.9, 0.999\)") as rec:
        fit(spiral, opt, epochs=2, resume_from=checkpoint)
    assert [w.filename for w in rec if "replace those" in str(w.message)] == [__file__]
    assert (opt.lr, opt.betas) == (0.01, (0.9, 0.999))


def test_a_learning_rate_schedule_takes_over_lr_without_a_warning(spiral, checkpoint):
    """Issue 15, Files: with a LearningRateSchedule, which sets lr every epoch anyway, a differing lr
    in the checkpoint gives no warning."""
    schedule = xn.callbacks.LearningRateSchedule(lambda i: 0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(spiral, xn.optim.Adam(0.5), epochs=2, resume_from=checkpoint, callbacks=[schedule])


def test_a_malformed_callback_state_names_the_file_and_field(tmp_path, spiral):
    """Issue 15, Files: a callback's saved state that does not fit it is an error naming the field."""
    path = tmp_path / "run.npz"
    stop = xn.callbacks.EarlyStopping(monitor="train_loss", patience=5)
    fit(spiral, xn.optim.Adam(0.01), callbacks=[stop, xn.callbacks.ModelCheckpoint(path, full=True)])
    rewrite(path, lambda a, m: m["callbacks"][0]["state"].update(wait="3"))
    with pytest.raises(xn.XpnetFileError, match=r"field 'callbacks\[0\].state' does not fit EarlyStopping: "
                                                r"EarlyStopping: wait must be an int, got '3'") as info:
        fit(spiral, xn.optim.Adam(0.01), epochs=2, resume_from=path,
            callbacks=[xn.callbacks.EarlyStopping(monitor="train_loss", patience=5)])
    assert str(path) in str(info.value)


def test_a_callback_state_refused_at_resume_leaves_the_model_and_optimizer_as_they_were(tmp_path, spiral):
    """A malformed callback state was refused only after the checkpoint's weights, optimizer (lr 0.5 -> 0.01),
    Dropout generator and a scheduler's state had been put into the objects passed, yet the run never started."""
    path = tmp_path / "run.npz"
    opt = xn.optim.Adam(0.01)
    fit(spiral, opt, epochs=2, scheduler=xn.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5),
        callbacks=[xn.callbacks.EarlyStopping(monitor="train_loss", patience=5),
                   xn.callbacks.ModelCheckpoint(path, full=True)])
    rewrite(path, lambda a, m: m["callbacks"][0]["state"].update(wait="3"))
    model, opt = spiral_model(), xn.optim.Adam(0.5)
    scheduler = xn.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    before, rng = {k: np.array(v) for k, v in model.state().items()}, model[2].rng.bit_generator.state
    with pytest.raises(xn.XpnetFileError, match="wait"):
        xn.train(model, spiral, loss="cross_entropy", optimizer=opt, epochs=3, batch_size=30, progress=False,
                 resume_from=path, callbacks=[xn.callbacks.LRScheduler(scheduler),
                                              xn.callbacks.EarlyStopping(monitor="train_loss", patience=5)])
    for k, v in model.state().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert (opt.lr, opt.t, opt.state, scheduler.last_epoch) == (0.5, 0, {}, 0)
    assert model[2].rng.bit_generator.state == rng


def test_a_refused_resume_leaves_no_initial_lr_a_schedule_set_in_the_param_groups(tmp_path, spiral):
    """LearningRateSchedule's on_train_begin gives each of several param groups an initial_lr (the checkpoint's
    lr, put in just before); a resume refused after it put back the optimizer's state but left those keys, and a
    scheduler built on the optimizer afterwards took the checkpoint's lrs as its base_lrs instead of the user's."""
    def two_groups(model, lr):
        return xn.optim.SGD([{"params": model[0].parameters()}, {"params": model[3].parameters(), "lr": lr / 10}],
                            lr=lr)

    path = tmp_path / "run.npz"
    model = spiral_model()
    xn.train(model, spiral, loss="cross_entropy", optimizer=two_groups(model, 0.1), epochs=1, batch_size=30,
             progress=False, callbacks=[xn.callbacks.EarlyStopping(monitor="train_loss"),
                                        xn.callbacks.ModelCheckpoint(path, full=True)])
    rewrite(path, lambda a, m: m["callbacks"][0]["state"].update(wait="3"))
    model = spiral_model()
    opt = two_groups(model, 0.2)
    with pytest.raises(xn.XpnetFileError, match="wait"):
        xn.train(model, spiral, loss="cross_entropy", optimizer=opt, epochs=2, batch_size=30, progress=False,
                 resume_from=path, callbacks=[xn.callbacks.LearningRateSchedule(lambda i: 0.1),
                                              xn.callbacks.EarlyStopping(monitor="train_loss")])
    settings = lambda o: [{k: v for k, v in g.items() if k != "params"} for g in o.param_groups]  # noqa: E731
    assert settings(opt) == settings(two_groups(spiral_model(), 0.2))
    assert all("initial_lr" not in group for group in opt.param_groups)
    assert xn.optim.lr_scheduler.StepLR(opt, 1).base_lrs == [0.2, 0.02]


class EpochCount(xn.callbacks.Callback):
    """A callback of one's own whose state before any epoch (None) its own load_state_dict refuses."""

    def __init__(self):
        super().__init__()
        self.epochs = None

    def on_epoch_end(self, epoch, logs):
        self.epochs = (self.epochs or 0) + 1

    def state_dict(self):
        return {"epochs": self.epochs}

    def load_state_dict(self, state):
        if not isinstance(state["epochs"], int):
            raise TypeError(f"EpochCount: epochs must be an int, got {state['epochs']!r}")
        self.epochs = state["epochs"]


def test_a_callback_whose_state_does_not_load_back_leaves_the_file_error_in_sight(tmp_path, spiral):
    """A refused resume puts back the callbacks it had loaded; one of the user's whose own state_dict() its
    load_state_dict refuses raised there, hiding the file error: now the file error names both, chained from the
    callback's, and the model is put back all the same."""
    path = tmp_path / "run.npz"
    fit(spiral, xn.optim.Adam(0.01), callbacks=[EpochCount(), xn.callbacks.EarlyStopping(monitor="train_loss"),
                                                 xn.callbacks.ModelCheckpoint(path, full=True)])
    rewrite(path, lambda a, m: m["callbacks"][1]["state"].update(wait="3"))
    model, count = spiral_model(), EpochCount()
    before = {k: np.array(v) for k, v in model.state().items()}
    with pytest.raises(xn.XpnetFileError, match=r"field 'callbacks\[1\].state' does not fit EarlyStopping: .*wait "
                                                r"must be an int, got '3'; the EpochCount callback could not be "
                                                r"given back the state it had before: its load_state_dict refused "
                                                r"what its state_dict\(\) gave \(TypeError: EpochCount: epochs "
                                                r"must be an int, got None\)") as info:
        xn.train(model, spiral, loss="cross_entropy", optimizer=xn.optim.Adam(0.01), epochs=3, batch_size=30,
                 progress=False, resume_from=path,
                 callbacks=[count, xn.callbacks.EarlyStopping(monitor="train_loss")])
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, TypeError) and "got None" in str(info.value.__cause__)
    assert count.epochs == 1  # the checkpoint's, which it keeps
    for k, v in model.state().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_a_resumed_run_refused_before_its_first_epoch_leaves_the_model_as_it_was(spiral, checkpoint):
    """Data refused after the checkpoint was put in (labels beyond the outputs) left its weights and lr."""
    model, opt = spiral_model(), xn.optim.Adam(0.5)
    before = {k: np.array(v) for k, v in model.state().items()}
    with pytest.warns(UserWarning, match="replace those"), pytest.raises(ValueError, match=r"labels must lie in"):
        xn.train(model, (spiral[0], spiral[1] + 5), loss="cross_entropy", optimizer=opt, epochs=2, batch_size=30,
                 progress=False, resume_from=checkpoint)
    for k, v in model.state().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert (opt.lr, opt.t, opt.state) == (0.5, 0, {})


# -- binary file objects (torch.save(obj, buffer), torch.load(buffer)) ----------------------------


def test_a_state_dict_and_a_checkpoint_dict_round_trip_through_a_bytes_buffer():
    """PyTorch's buffer = io.BytesIO(); torch.save(obj, buffer); buffer.seek(0); torch.load(buffer): refused
    before ("path must be a str, bytes or os.PathLike"), for weights sent over a socket or kept in memory."""
    model = small_model()
    optimizer = xn.optim.Adam(model.parameters(), lr=1e-2)
    criterion, rng = xn.losses.SoftmaxCrossEntropy(), np.random.default_rng(0)
    loss = criterion(model(rng.standard_normal((6, 4)).astype(np.float32)), rng.integers(0, 3, 6))
    model.backward(criterion.backward())
    optimizer.step()
    buffer = io.BytesIO()
    xn.save(model.state_dict(), buffer)
    assert not buffer.closed and buffer.tell() == len(buffer.getvalue()) > 0  # written at its position, left there
    buffer.seek(0)
    restored = small_model(seed=1)
    restored.load_state_dict(xn.load(buffer, map_location="cpu"))
    assert not buffer.closed and buffer.tell() == len(buffer.getvalue())
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(restored.state_dict()[name], value)
    ckpt = {"epoch": 5, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
            "loss": loss, "betas": (0.9, 0.999), "step": np.int64(7)}
    buffer = io.BytesIO()
    xn.save(ckpt, buffer)
    buffer.seek(0)
    loaded = xn.load(buffer, device="cpu")
    assert list(loaded) == list(ckpt) and type(loaded["epoch"]) is int and type(loaded["loss"]) is float
    assert loaded["betas"] == (0.9, 0.999) and type(loaded["step"]) is np.int64 and loaded["step"] == 7
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded["model_state_dict"][name], value)
    resumed = xn.optim.Adam(restored.parameters(), lr=1e-3)
    resumed.load_state_dict(loaded["optimizer_state_dict"])
    assert resumed.t == optimizer.t == 1 and resumed.lr == 1e-2


def test_a_model_round_trips_through_a_buffer_whose_bytes_are_a_model_file(tmp_path):
    model, x = small_model(), np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    for save in (lambda f: xn.save(model, f), model.save):
        buffer = io.BytesIO()
        save(buffer)
        buffer.seek(0)
        loaded = xn.load(buffer)
        assert type(loaded) is xn.Sequential and repr(loaded) == repr(model)
        np.testing.assert_array_equal(xn.to_numpy(loaded.predict(x)), xn.to_numpy(model.predict(x)))
        (tmp_path / "copy.npz").write_bytes(buffer.getvalue())  # the bytes a save to a path writes
        np.testing.assert_array_equal(xn.to_numpy(xn.load(tmp_path / "copy.npz").predict(x)),
                                      xn.to_numpy(model.predict(x)))


def test_objects_saved_one_after_another_into_one_open_file_load_back_in_order(tmp_path):
    """Each save writes at the file's position, each load reads from it and stops at the end of what one save
    wrote (torch.load stops elsewhere): a file of several objects reads back as it was written."""
    path, model = tmp_path / "several.npz", small_model()
    with open(path, "wb") as f:
        f.write(b"header")
        xn.save(model.state_dict(), f)
        model.save(f)
        xn.save({"epoch": 3}, f)
        assert not f.closed
    with open(path, "rb") as f:
        assert f.read(6) == b"header"
        first, second, third = xn.load(f), xn.load(f), xn.load(f)
        assert f.tell() == path.stat().st_size and not f.closed
        with pytest.raises(xn.XpnetFileError, match=r"<BufferedReader name='.*several.npz'> is not .*no bytes at"):
            xn.load(f)
    assert list(first) == list(model.state_dict()) and type(second) is xn.Sequential and third == {"epoch": 3}
    np.testing.assert_array_equal(second.state_dict()["0.W"], model.state_dict()["0.W"])


def test_a_stream_of_the_wrong_kind_is_refused_before_anything_is_written(tmp_path):
    path, sd = tmp_path / "m.npz", small_model().state_dict()
    for save in (lambda f: xn.save(sd, f), small_model().save):
        with pytest.raises(TypeError, match=r"^(xn|model).save: the file object <StringIO> is a text stream;.*binary"):
            save(io.StringIO())
        with open(path, "w") as f, pytest.raises(TypeError, match=r"<TextIOWrapper name='.*m.npz'> is a text stream"):
            save(f)
        assert path.stat().st_size == 0
        with open(path, "rb") as f, pytest.raises(TypeError, match=r"<BufferedReader .*> does not write"):
            save(f)
    with pytest.raises(TypeError, match=r"^xn.load: the file object <StringIO> is a text stream; .* binary"):
        xn.load(io.StringIO())
    with open(path, "wb") as f, pytest.raises(TypeError, match=r"^xn.load: .*<BufferedWriter .*> does not read"):
        xn.load(f)
    read, write = os.pipe()
    os.close(write)
    with open(read, "rb") as f, pytest.raises(TypeError, match=r"^xn.load: .* cannot seek.*io.BytesIO\(stream.read"):
        xn.load(f)
    for bad in (3, None):
        with pytest.raises(TypeError, match=r"^xn.load: path must be a str, bytes or os.PathLike .*or a binary file"):
            xn.load(bad)


def test_a_truncated_or_foreign_buffer_is_refused_naming_it():
    buffer = io.BytesIO()
    xn.save(small_model().state_dict(), buffer)
    end = buffer.tell()
    xn.save({"next": 1}, buffer)
    whole = buffer.getvalue()
    damaged = whole[:end - 22] + b"XX" + whole[end - 20:]  # the first archive's end record, the second intact
    for data in (whole[:end // 2], whole[:end - 1], b"not a zip archive", damaged):
        with pytest.raises(xn.XpnetFileError, match=r"^<BytesIO> is not .*: it is not a complete zip archive"):
            xn.load(io.BytesIO(data))  # never the object saved after it
    assert list(xn.load(io.BytesIO(whole[:end + 7]))) == list(small_model().state_dict())  # the next one cut short


def test_training_checkpoints_stay_paths(spiral):
    with pytest.raises(TypeError, match=r"^ModelCheckpoint: path must be a str, bytes or os.PathLike .*got BytesIO"):
        xn.callbacks.ModelCheckpoint(io.BytesIO())
    with pytest.raises(TypeError, match=r"^resume_from: path must be a str, bytes or os.PathLike .*got BytesIO"):
        fit(spiral, xn.optim.SGD(0.1), resume_from=io.BytesIO())


def test_weights_sent_over_a_socket_load_once_read_into_memory():
    """A socket's stream writes but cannot seek: xn.save writes to it as numpy.savez writes; xn.load refuses to read
    it (a zip archive's directory is at its end), naming io.BytesIO(stream.read()), which then loads."""
    model, (sender, receiver) = small_model(), socket.socketpair()
    with sender, receiver, sender.makefile("wb") as out, receiver.makefile("rb") as stream:
        xn.save(model.state_dict(), out)
        out.close()
        sender.close()
        with pytest.raises(TypeError, match=r"cannot seek.*io.BytesIO\(stream.read\(\)\)"):
            xn.load(stream)
        received = xn.load(io.BytesIO(stream.read()))
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(received[name], value)
