"""xn.save of a state dict or PyTorch's checkpoint dict, and xn.load giving it back (xpnet/io/tree_file.py).

PyTorch's "Saving and loading models" tutorial: ``torch.save(model.state_dict(), path)`` then
``model.load_state_dict(torch.load(path))``, and ``torch.save({"epoch": ..., "model_state_dict": ...,
"optimizer_state_dict": ..., "loss": ...}, path)``. xn.save refused any dict, saying to write numpy.savez.
"""

from __future__ import annotations

import json
import math
import os
from collections import namedtuple

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L
from xpnet.backend import device_of
from xpnet.io.atomic import TEMP_SUFFIX
from xpnet.io.npz import MAX_RECORD_DEPTH
from xpnet.optim import lr_scheduler


def same(a, b, where="obj"):
    """``b`` is ``a`` as saved: the same types all the way down (tuple or list, int or float, a NumPy scalar's
    dtype), dict keys in the same order, arrays of the same dtype and shape (in native byte order) and values."""
    if isinstance(a, float) and not isinstance(a, np.generic):  # xpnet's LossValue comes back as the float it is
        a = float(a)
    if not isinstance(a, np.generic) and hasattr(a, "__array_namespace__"):
        a = xn.to_numpy(a)
        assert type(b) is np.ndarray, f"{where}: {type(b).__name__}, expected a NumPy array"
        assert (b.dtype, b.shape) == (a.dtype.newbyteorder("="), a.shape), f"{where}: {b.dtype} {b.shape}"
        np.testing.assert_array_equal(b, a, err_msg=where)
        return
    assert type(b) is type(a), f"{where}: {type(b).__name__}, expected {type(a).__name__}"
    if isinstance(a, dict):
        assert list(b) == list(a), where
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(b) == len(a), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.generic):
        assert b.dtype == a.dtype and (b == a or (np.isnan(a) and np.isnan(b))), where
    elif isinstance(a, float):
        assert (b == a and math.copysign(1, b) == math.copysign(1, a)) or (math.isnan(a) and math.isnan(b)), where
    else:
        assert b == a, where


def net(seed=0, dtype="float32"):
    xn.manual_seed(seed)
    return xn.Sequential(L.Linear(4, 8), L.BatchNorm(8), L.ReLU(), L.Linear(8, 3)).to(dtype=dtype)


def data(dev=None):
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 3, 16)
    return (x, t) if dev is None else (xn.to_device(x, dev), xn.to_device(t, dev))


def steps(model, optimizer, x, t, n):
    """PyTorch's loop: zero_grad, loss, backward, step; returns the last loss (a LossValue, a float)."""
    criterion = xn.losses.SoftmaxCrossEntropy()
    for _ in range(n):
        optimizer.zero_grad()
        loss = criterion(model(x), t)
        model.backward(criterion.backward())
        optimizer.step()
    return loss


def weights(model):
    return {k: xn.to_numpy(v) for k, v in model.state().items()}


def test_the_tutorials_checkpoint_dict_round_trips_and_training_goes_on_as_uninterrupted(tmp_path):
    """The tutorial's checkpoint of a model and an Adam that has stepped, loaded into a new model and optimizer:
    two more steps give the weights of the run that never stopped, exactly."""
    x, t = data()
    model = net()
    optimizer = xn.optim.Adam(model.parameters(), lr=1e-2)
    loss = steps(model, optimizer, x, t, 3)
    checkpoint = {"epoch": 3, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                  "loss": loss}
    xn.save(checkpoint, tmp_path / "model.pt")
    ckpt = xn.load(tmp_path / "model.pt")
    same(checkpoint, ckpt)
    steps(model, optimizer, x, t, 2)  # the optimizer's state_dict() holds its live arrays, as PyTorch's
    assert type(ckpt["epoch"]) is int and type(ckpt["loss"]) is float and ckpt["loss"] == float(loss)
    resumed = net(seed=1)
    resumed_optimizer = xn.optim.Adam(resumed.parameters(), lr=1e-3)
    resumed.load_state_dict(ckpt["model_state_dict"])
    resumed_optimizer.load_state_dict(ckpt["optimizer_state_dict"])
    steps(resumed, resumed_optimizer, x, t, 2)
    for k, v in weights(model).items():
        np.testing.assert_array_equal(weights(resumed)[k], v, err_msg=k)
    assert resumed_optimizer.t == optimizer.t == 5 and resumed_optimizer.lr == 1e-2


def test_a_state_dict_alone_loads_into_a_model_also_cast_to_another_dtype(tmp_path):
    """torch.save(model.state_dict(), path); model.load_state_dict(torch.load(path)), BatchNorm's buffers too;
    xn.load(path, dtype="float32") casts a float64 state dict's arrays, a float32 model takes it."""
    model = net(dtype="float64")
    x, t = data()
    steps(model, xn.optim.SGD(model.parameters(), lr=0.1), x.astype(np.float64), t, 1)
    xn.save(model.state_dict(), tmp_path / "model.pth")
    loaded = xn.load(tmp_path / "model.pth")
    same(model.state_dict(), loaded)
    fresh = net(seed=1, dtype="float64")
    fresh.load_state_dict(loaded)
    same(weights(model), weights(fresh))

    as32 = xn.load(tmp_path / "model.pth", dtype="float32")
    assert list(as32) == list(loaded) and all(v.dtype == np.float32 for v in as32.values())
    small = net(seed=1)
    small.load_state_dict(as32)
    for k, v in weights(model).items():
        np.testing.assert_array_equal(weights(small)[k], v.astype(np.float32), err_msg=k)


def test_nested_values_come_back_with_their_types(tmp_path):
    rng = np.random.default_rng(0)
    shared = rng.standard_normal((2, 3))
    Point = namedtuple("Point", "x y")
    tree = {
        "z": [1, 2.0, -0.0, float("inf"), float("nan"), True, None, "é ☃", 2 ** 70, 1 + 2j, (), [], {}],
        "a": (1, (2, [3.5, (None,)]), {"in": (True, False)}),
        "numpy": [np.float32(0.1), np.float16(-2.5), np.int64(-7), np.uint64(2 ** 64 - 1), np.bool_(True),
                  np.complex64(1 - 1j), np.int8(-128), np.float64("nan")],
        "arrays": {"f32": shared.astype(np.float32), "i64": np.arange(5), "0d": np.asarray(3.0),
                   "empty": np.zeros((0, 4)), "bool": np.array([True, False]), "str": np.array(["cat", "dog"]),
                   "c128": shared + 1j,
                   "big_endian": np.arange(3, dtype=">i4"), "fortran": np.asfortranarray(shared)},
        "shared": [shared, shared],
        "loss": xn.losses.SoftmaxCrossEntropy()(np.zeros((2, 3)), np.array([0, 1])),
    }
    xn.save(tree, tmp_path / "tree.npz")
    back = xn.load(tmp_path / "tree.npz")
    same(tree, back)
    assert back["shared"][0] is back["shared"][1]  # one array saved once, as torch.save keeps shared tensors
    back["arrays"]["f32"][0, 0] = 1.0  # writable
    xn.save([Point(1, 2)], tmp_path / "list.npz")
    assert xn.load(tmp_path / "list.npz") == [(1, 2)]  # a namedtuple as the tuple it is
    xn.save(shared, tmp_path / "array.npz")
    same(shared, xn.load(tmp_path / "array.npz"))


OPTIMIZERS = [pytest.param(name, id=name) for name in (*xn.optim.OPTIMIZERS, "lbfgs")]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizers_state_dict_round_trips_and_loads(tmp_path, name):
    """Each optimizer's state_dict() after two steps, with two param groups where it takes them, comes back equal
    (tuples of betas, LBFGS's lists of arrays, NAdam's scalars) and loads into a new one."""
    x, t = data()
    model = net()
    if name == "lbfgs":
        optimizer = xn.optim.LBFGS(model.parameters(), history_size=3)
        criterion = xn.losses.SoftmaxCrossEntropy()

        def closure():
            optimizer.zero_grad()
            loss = criterion(model(x), t)
            model.backward(criterion.backward())
            return loss

        optimizer.step(closure)
        optimizer.step(closure)
    else:
        groups = [{"params": model[0].parameters()}, {"params": model[1:].parameters(), "lr": 1e-3}]
        optimizer = xn.optim.OPTIMIZERS[name](groups)
        steps(model, optimizer, x, t, 2)
    sd = optimizer.state_dict()
    xn.save({"optimizer_state_dict": sd}, tmp_path / "opt.pt")
    back = xn.load(tmp_path / "opt.pt")["optimizer_state_dict"]
    same(sd, back)
    fresh = type(optimizer)(model.parameters()) if name == "lbfgs" else xn.optim.OPTIMIZERS[name](
        [{"params": model[0].parameters()}, {"params": model[1:].parameters()}])
    fresh.load_state_dict(back)
    same(sd, fresh.state_dict())


SCHEDULERS = [
    (lr_scheduler.StepLR, {"step_size": 2}), (lr_scheduler.OneCycleLR, {"max_lr": 1.0, "total_steps": 10}),
    (lr_scheduler.CyclicLR, {"base_lr": 0.01, "max_lr": 0.1}), (lr_scheduler.ReduceLROnPlateau, {}),
    (lr_scheduler.LambdaLR, {"lr_lambda": lambda epoch: 0.9 ** epoch}),
    (lr_scheduler.CosineAnnealingWarmRestarts, {"T_0": 3}), (lr_scheduler.MultiStepLR, {"milestones": [1, 2]}),
]


@pytest.mark.parametrize("cls, kwargs", SCHEDULERS, ids=[cls.__name__ for cls, _ in SCHEDULERS])
def test_lr_schedulers_state_dicts_round_trip(tmp_path, cls, kwargs):
    model = net()
    scheduler = cls(xn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), **kwargs)
    for _ in range(3):
        scheduler.step(1.0) if cls is lr_scheduler.ReduceLROnPlateau else scheduler.step()
    xn.save({"scheduler": scheduler.state_dict()}, tmp_path / "s.pt")
    back = xn.load(tmp_path / "s.pt")["scheduler"]
    same(scheduler.state_dict(), back)
    fresh = cls(xn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), **kwargs)
    fresh.load_state_dict(back)
    assert fresh.get_last_lr() == scheduler.get_last_lr()


def test_resuming_on_a_device_goes_on_as_uninterrupted(tmp_path, dev):
    """A model and Adam on a device (the optimizer's state stays there): the checkpoint holds host copies; loaded
    on the host or onto the device (device= or map_location=), training there goes on as the run that never
    stopped."""
    x, t = data(dev)
    model = net().to(dev)
    optimizer = xn.optim.Adam(model.parameters(), lr=1e-2)
    steps(model, optimizer, x, t, 2)
    xn.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict()},
            tmp_path / "ckpt.pt")
    steps(model, optimizer, x, t, 2)
    for where in ({}, {"device": dev}, {"map_location": dev}):
        ckpt = xn.load(tmp_path / "ckpt.pt", **where)
        m = ckpt["optimizer_state_dict"]["state"]["0.W"]["m"]
        assert device_of(m) == (dev if where else xn.device("cpu")), where
        resumed = net(seed=1).to(dev)
        resumed_optimizer = xn.optim.Adam(resumed.parameters())
        resumed.load_state_dict(ckpt["model_state_dict"])
        resumed_optimizer.load_state_dict(ckpt["optimizer_state_dict"])
        steps(resumed, resumed_optimizer, x, t, 2)
        for k, v in weights(model).items():
            np.testing.assert_array_equal(weights(resumed)[k], v, err_msg=f"{k} {where}")


def test_torch_tensors_and_another_devices_arrays_come_back_as_numpy_on_the_host(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    strict = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    dev1 = xn.Device(strict, strict.Device("device1"))
    tree = {"w": torch.arange(6.0, dtype=torch.float64).reshape(2, 3), "p": torch.nn.Parameter(torch.ones(2)),
            "bf16": torch.tensor([1.5, -2.0], dtype=torch.bfloat16), "i": torch.tensor([1, 2]),
            "d1": xn.to_device(np.arange(4.0), dev1)}
    xn.save(tree, tmp_path / "t.pt")
    back = xn.load(tmp_path / "t.pt")
    assert all(type(v) is np.ndarray for v in back.values())
    assert {k: v.dtype.name for k, v in back.items()} == {"w": "float64", "p": "float32", "bf16": "float32",
                                                          "i": "int64", "d1": "float64"}
    np.testing.assert_array_equal(back["bf16"], [1.5, -2.0])
    np.testing.assert_array_equal(back["d1"], np.arange(4.0))
    on_dev1 = xn.load(tmp_path / "t.pt", map_location=dev1)
    assert all(device_of(v) == dev1 for v in on_dev1.values())
    on_host = xn.load(tmp_path / "t.pt", map_location=torch.device("cpu"), weights_only=True)
    assert all(type(v) is np.ndarray for v in on_host.values())


def files(folder):
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("bad, place, kind", [
    (lambda x: x, r"obj\['optimizer_state_dict'\]\['state'\]\[0\]", r"a function"),
    (object(), r"obj\['optimizer_state_dict'\]\['state'\]\[0\]", r"an object"),
    ({0: np.zeros(2)}, r"obj\['optimizer_state_dict'\]\['state'\]\[0\] has the key 0, an int", ""),
    (xn.Sequential(L.Linear(2, 2)), r"obj\['optimizer_state_dict'\]\['state'\]\[0\]", r"a Sequential.*state_dict\(\)"),
    (np.array([None]), r"obj\['optimizer_state_dict'\]\['state'\]\[0\]", "an array of dtype object"),
    ({1, 2}, r"obj\['optimizer_state_dict'\]\['state'\]\[0\]", "a set"),
    (np.datetime64("2024-01-01"), r"obj\['optimizer_state_dict'\]\['state'\]\[0\]", "dtype datetime64"),
], ids=["function", "object", "int-key", "model", "object-array", "set", "datetime"])
def test_a_value_a_file_cannot_hold_is_refused_naming_its_place_before_anything_is_written(tmp_path, bad, place,
                                                                                              kind):
    path = tmp_path / "ckpt.pt"
    xn.save({"epoch": 1}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match=f"^xn.save: {place}.*{kind}"):
        xn.save({"epoch": 2, "optimizer_state_dict": {"state": [bad]}}, path)
    assert path.read_bytes() == before and files(tmp_path) == ["ckpt.pt"]


def test_numpy_str_scalars_come_back_as_str_and_an_int_json_cannot_read_back_is_refused_at_save(tmp_path):
    """np.unique of str labels gives NumPy str scalars, which are str: they were refused as "a NumPy scalar of dtype
    str32". An int past the 4300 digits that Python's json reads failed with json's bare ValueError at save."""
    classes = list(np.unique(np.array(["dog", "cat"])))
    xn.save({"classes": classes, "n": 10 ** 4300 - 1, "labels": np.array(["cat"])}, tmp_path / "ok.npz")
    back = xn.load(tmp_path / "ok.npz")
    assert back["classes"] == ["cat", "dog"] and type(back["classes"][0]) is str and back["n"] == 10 ** 4300 - 1
    with pytest.raises(ValueError, match=r"^xn.save: obj\['seed'\]\[1\] is an int of more than 4300 digits, which a "
                                         r"file cannot hold .*: save it as a str$"):
        xn.save({"seed": [1, -10 ** 4300]}, tmp_path / "big.npz")
    assert files(tmp_path) == ["ok.npz"]


def test_nesting_deeper_than_a_file_reads_is_refused_at_save(tmp_path):
    """A dict that holds itself, or lists nested past the reader's depth, fail at save, not at load."""
    deepest = []
    for _ in range(MAX_RECORD_DEPTH - 2):
        deepest = [deepest]
    xn.save(deepest, tmp_path / "deep.npz")
    assert xn.load(tmp_path / "deep.npz") == deepest
    with pytest.raises(ValueError, match=r"^xn.save: obj(\[0\])+ nests dicts, lists and tuples deeper than a file"):
        xn.save([deepest], tmp_path / "deeper.npz")
    loop = {"a": 1}
    loop["self"] = loop
    with pytest.raises(ValueError, match=r"obj(\['self'\])+ nests .*a dict or list that holds itself\?"):
        xn.save(loop, tmp_path / "loop.npz")
    assert files(tmp_path) == ["deep.npz"]


def test_an_exception_while_writing_leaves_the_earlier_file(tmp_path, monkeypatch):
    """Ctrl-C midway through writing the archive: the checkpoint saved before stays whole, no temporary file."""
    path = tmp_path / "ckpt.pt"
    xn.save({"epoch": 1, "w": np.ones(3)}, path)
    before = path.read_bytes()
    write = np.savez

    def interrupted(file, **arrays):
        write(file, **arrays)
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        xn.save({"epoch": 2, "w": np.zeros(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and files(tmp_path) == ["ckpt.pt"]
    assert not any(f.endswith(TEMP_SUFFIX) for f in files(tmp_path))
    same({"epoch": 1, "w": np.ones(3)}, xn.load(path))


def rewrite(path, change):
    """Rewrite the tree file at ``path`` after ``change(arrays, record)`` edits its arrays and record in place."""
    with np.load(path, allow_pickle=False) as stored:
        arrays = {k: stored[k] for k in stored.files}
    record = json.loads(str(arrays["__xpnet_tree__"]))
    change(arrays, record)
    arrays["__xpnet_tree__"] = np.asarray(json.dumps(record))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _tree(record):
    return record["tree"]["items"]


@pytest.mark.parametrize("change, message", [
    (lambda a, r: a.update({"arrays/0": np.zeros((3, 3), np.float32)}),
     r"array 'arrays/0' has shape \(3, 3\) and dtype float32, obj\['w'\] in its record needs shape \(2, 3\)"),
    (lambda a, r: a.pop("arrays/0"), r"it has no array 'arrays/0'"),
    (lambda a, r: a.update({"arrays/9": np.zeros(1)}), r"it holds arrays its record does not name: \['arrays/9'\]"),
    (lambda a, r: r.update({"format": 2}), r"field 'format' is 2; this xpnet reads format 1 only"),
    (lambda a, r: r.pop("tree"), r"its record has no field 'tree'"),
    (lambda a, r: _tree(r).update({"n": {"type": "numpy", "dtype": "int8", "value": 300}}),
     r"obj\['n'\] in its record is .*, expected a int8 value"),
    (lambda a, r: _tree(r).update({"o": {"type": "object", "module": "os", "name": "system"}}),
     r"obj\['o'\] in its record is .*, expected a value xn.save writes"),
    (lambda a, r: _tree(r)["w"].update({"dtype": "O"}), r"obj\['w'\] in its record has dtype 'O', expected"),
    (lambda a, r: _tree(r).update({"h": {"type": "numpy", "dtype": "float16", "value": 1e10}}),
     r"obj\['h'\] in its record is .*, expected a float16 value"),
])
def test_a_damaged_tree_file_is_refused_naming_what_is_wrong(tmp_path, change, message):
    path = tmp_path / "ckpt.pt"
    xn.save({"w": np.ones((2, 3), np.float32), "n": np.int8(3)}, path)
    rewrite(path, change)
    with pytest.raises(xn.XpnetFileError, match=f"^'{path}' is not a file of saved values .*: {message}"):
        xn.load(path)


def test_every_bit_flip_loads_what_was_saved_or_names_the_file(tmp_path):
    """Single and multiple bit flips anywhere in a checkpoint dict's file (its record's JSON included): the very
    tree saved, or one XpnetFileError naming the file."""
    good, path = tmp_path / "good.pt", tmp_path / "flipped.pt"
    tree = {"epoch": 3, "w": np.arange(6.0).reshape(2, 3), "n": (np.float16(1.5), np.int8(-3), 1 + 2j), "s": "adam"}
    xn.save(tree, good)
    data, rng, refused = bytearray(good.read_bytes()), np.random.default_rng(27), 0
    for i in range(300):
        flipped = bytearray(data)
        for bit in rng.integers(0, len(data) * 8, 1 if i < 200 else 4):
            flipped[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(flipped))
        try:
            same(tree, xn.load(path))
        except xn.XpnetFileError as exc:
            assert str(path) in str(exc)
            refused += 1
    assert refused > 200


def test_a_truncated_or_foreign_file_is_refused_clearly(tmp_path):
    path = tmp_path / "ckpt.pt"
    xn.save({"epoch": 1, "model_state_dict": net().state_dict()}, path)
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    with pytest.raises(xn.XpnetFileError, match=r"is not an xpnet model file or a file of saved values .*: it is not "
                                                r"a complete zip archive"):
        xn.load(path)
    with open(path, "wb") as f:
        np.savez(f, **net().state_dict())
    with pytest.raises(xn.XpnetFileError, match=r"it has no xpnet record .* numpy.savez reads with numpy.load"):
        xn.load(path)
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(xn.XpnetFileError, match=r"it has no xpnet record; it is a file of PyTorch's torch.save, which "
                                                r"xn.read_torch_file\(path\) reads"):
        xn.load(path)


def test_load_takes_pytorchs_map_location_and_weights_only_and_refuses_what_it_cannot_do(tmp_path):
    path = tmp_path / "m.pt"
    xn.save({"w": np.ones(2)}, path)
    for kwargs in ({"map_location": "cpu"}, {"weights_only": True}, {"weights_only": False}, {"device": "cpu"}):
        same({"w": np.ones(2)}, xn.load(path, **kwargs))
    with pytest.raises(TypeError, match=r"^xn.load: give device= or map_location= \(PyTorch's name for it\), not both"):
        xn.load(path, device="cpu", map_location="cpu")
    with pytest.raises(TypeError, match=r"^xn.load: map_location takes a device .*got a dict; torch.load's dict"):
        xn.load(path, map_location={"cuda:0": "cpu"})
    with pytest.raises(TypeError, match=r"^xn.load: weights_only must be True or False .*got 'yes'"):
        xn.load(path, weights_only="yes")
    model_path = tmp_path / "model.npz"
    xn.save(net(), model_path)
    assert isinstance(xn.load(model_path, map_location="cpu"), xn.Sequential)


def test_a_checkpoint_dict_given_whole_to_load_state_dict_says_which_entry_to_pass(tmp_path):
    model = net()
    optimizer = xn.optim.Adam(model.parameters())
    xn.save({"epoch": 1, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict()},
            tmp_path / "ckpt.pt")
    ckpt = xn.load(tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match=r"its entry 'model_state_dict' holds this model's arrays \(a checkpoint "
                                         r"dict\?\): model.load_state_dict\(d\['model_state_dict'\]\)"):
        model.load_state_dict(ckpt)
    with pytest.raises(ValueError, match=r"^Adam.load_state_dict: expected the dict of optimizer.state_dict\(\) .*"
                                         r"its entry 'optimizer_state_dict' is one"):
        optimizer.load_state_dict(ckpt)
    with pytest.raises(TypeError, match=r"^Adam.load_state_dict: expected the dict of optimizer.state_dict\(\), got "
                                        r"Sequential"):
        optimizer.load_state_dict(model)
    with pytest.raises(TypeError, match=r"got dict; a state dict .* model.load_state_dict\(d\)"):
        xn.train(ckpt["model_state_dict"], data(), loss="cross_entropy", optimizer="sgd", epochs=1)
