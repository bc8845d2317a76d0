"""Files of torch.save read without torch (xn.read_torch_file, xpnet/io/torch_file.py), and loaded into a model by
path (xn.load_torch_state_dict(model, path, key=...)): torch writes each file, torch.load is the reference, and the
reading process never imports torch; files naming anything beyond a state dict's needs are refused before it runs."""

import io
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
from vision_checks import randomise_batch_norm

import xpnet as xn

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _checkpoint():
    """A checkpoint dict as torch.save writes one: a state dict of every dtype with views of one storage
    (a row at an offset, a strided column, a transposed matrix), Parameters, and plain Python values."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(3, 4, generator=gen)
    labelled = torch.nn.Parameter(torch.randn(2, generator=gen))
    labelled.note = "with state"  # _rebuild_parameter_with_state
    tagged = torch.randn(2, generator=gen)
    tagged.note = "a tensor with an attribute"  # _rebuild_from_type_v2
    state = OrderedDict([
        ("weight", base), ("row", base[1]), ("column", base[:, 2]), ("transposed", base.t()),
        ("float64", torch.randn(2, 2, dtype=torch.float64, generator=gen)),
        ("float16", torch.randn(3, generator=gen).half()), ("bfloat16", torch.randn(3, generator=gen).bfloat16()),
        ("num_batches_tracked", torch.tensor(7)), ("int8", torch.tensor([-3, 4], dtype=torch.int8)),
        ("int16", torch.tensor([-300], dtype=torch.int16)), ("int32", torch.tensor([[1 << 20]], dtype=torch.int32)),
        ("uint8", torch.tensor([255, 0], dtype=torch.uint8)), ("uint16", torch.tensor([65535], dtype=torch.uint16)),
        ("bool", torch.tensor([True, False])), ("conj", torch.tensor([1 + 2j], dtype=torch.complex64).conj()),
        ("empty", torch.zeros(0, 3)), ("parameter", torch.nn.Parameter(torch.randn(2, 3, generator=gen))),
        ("labelled", labelled), ("tagged", tagged)])
    return {"model": state, "epoch": 3, "optimizer": {"lr": 0.1, "betas": (0.9, 0.999)}, "names": ["a", "b"],
            "tag": b"\x00\xff", "seen": {1, 2}, "size": torch.Size([2, 3]), "none": None}


def _numpy(t):
    t = t.detach().resolve_conj()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(folder, reference model, its input): a checkpoint, and the state dict of a small CNN as torchvision's
    (convolution, BatchNorm with running statistics and its int64 count, Linear) in float64."""
    folder = tmp_path_factory.mktemp("torch_files")
    torch.save(_checkpoint(), folder / "checkpoint.pt")
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4),
                              torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 5))
    ref = randomise_batch_norm(torch, ref.double()).eval()
    torch.save(ref.state_dict(), folder / "cnn.pth")
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    np.save(folder / "x.npy", x)
    return folder, ref, x


def test_every_dtype_and_view_reads_as_torch_load_gives_it(files):
    folder, _, _ = files
    got = xn.read_torch_file(folder / "checkpoint.pt")
    expected = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert {k: v for k, v in got.items() if k not in ("model", "size")} == \
        {k: v for k, v in expected.items() if k not in ("model", "size")}
    assert got["size"] == (2, 3) and type(got["size"]) is tuple
    state = got["model"]
    assert list(state) == list(expected["model"])
    for name, tensor in expected["model"].items():
        want = _numpy(tensor)
        assert isinstance(state[name], np.ndarray) and state[name].dtype == want.dtype, name
        np.testing.assert_array_equal(state[name], want, err_msg=name)
    assert state["bfloat16"].dtype == np.float32
    assert np.shares_memory(state["row"], state["weight"])  # a contiguous view shares the storage, as in torch
    assert not np.shares_memory(state["transposed"], state["weight"]) and state["transposed"].flags.c_contiguous


def test_a_big_endian_file_reads_as_torch_load_gives_it(tmp_path):
    """torch.save on a big-endian machine (byteorder "big"): written here by swapping each storage's bytes."""
    tensors = {"w": torch.randn(2, 3, dtype=torch.float64), "n": torch.tensor(7), "h": torch.randn(2).bfloat16()}
    torch.save(tensors, tmp_path / "little.pt")
    element = {"0": 8, "1": 8, "2": 2}  # the storages' keys, in the order torch.save meets them
    with zipfile.ZipFile(tmp_path / "little.pt") as src, zipfile.ZipFile(tmp_path / "big.pt", "w") as dst:
        for info in src.infolist():
            data, name = src.read(info), info.filename.partition("/")[2]
            if name == "byteorder":
                data = b"big"
            elif name.startswith("data/"):
                data = np.frombuffer(data, f"<u{element[name[5:]]}").astype(f">u{element[name[5:]]}").tobytes()
            dst.writestr(info.filename, data)
    expected = torch.load(tmp_path / "big.pt", weights_only=True)
    got = xn.read_torch_file(tmp_path / "big.pt")
    for name, tensor in tensors.items():
        np.testing.assert_array_equal(_numpy(expected[name]), _numpy(tensor))  # torch swaps them back too
        np.testing.assert_array_equal(got[name], _numpy(tensor))
        assert got[name].dtype.isnative


def test_a_model_file_loads_without_torch_and_gives_torchs_outputs(files):
    folder, ref, x = files
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import xpnet as xn
        from xpnet.layers import BatchNorm, Conv2d, Flatten, Linear, MaxPool2d, ReLU
        model = xn.Sequential(Conv2d(3, 4, 3, padding=1, bias=False), BatchNorm(4), ReLU(), MaxPool2d(2), Flatten(),
                              Linear(16, 5)).to(dtype="float64")
        xn.load_torch_state_dict(model, {str(folder / "cnn.pth")!r})
        np.save({str(folder / "y.npy")!r}, model.forward(np.load({str(folder / "x.npy")!r}), train=False))
        xn.read_torch_file({str(folder / "checkpoint.pt")!r})
        assert "torch" not in sys.modules, "reading a torch file imported torch"
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.path.dirname(os.path.dirname(xn.__file__)),
                                                                    os.environ.get("PYTHONPATH")) if p)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(np.load(folder / "y.npy"), ref(torch.from_numpy(x)).detach().numpy(), rtol=1e-10,
                               atol=1e-12)


def test_a_checkpoint_loads_by_key_and_without_it_the_error_lists_its_entries(tmp_path):
    ref = torch.nn.Sequential(torch.nn.Linear(3, 2))
    torch.save({"model": ref.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pt")
    model = xn.Sequential(xn.layers.Linear(3, 2))
    with pytest.raises(ValueError, match=r"checkpoint.pt' is a checkpoint dict, not a state dict .* its entries are "
                                         r"'model' \(a dict of 2 entries, 2 of them tensors\), 'epoch' \(int\); pass "
                                         r"key= naming the state dict, key='model'$"):
        xn.load_torch_state_dict(model, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"key='state_dict', but .* has no entry 'state_dict' \(its entries: 'model', "
                                         r"'epoch'\)$"):
        xn.load_torch_state_dict(model, tmp_path / "checkpoint.pt", key="state_dict")
    assert xn.load_torch_state_dict(model, str(tmp_path / "checkpoint.pt"), key="model") == ([], [])
    np.testing.assert_array_equal(model[0].params["W"], ref[0].weight.detach().numpy().T)


def _string(s):
    return b"X" + struct.pack("<I", len(s)) + s.encode()


def _global(module, name):
    return f"c{module}\n{name}\n".encode()


def _tensor_pickle(size):
    """torch.save's pickle of one float32 tensor of 4 elements (storage '0'), its size ``size`` (a 1-tuple)."""
    storage = b"(" + _string("storage") + _global("torch", "FloatStorage") + _string("0") + _string("cpu") + \
        b"K\x04tQ"
    return (b"\x80\x02" + _global("torch._utils", "_rebuild_tensor_v2") + b"(" + storage + b"K\x00" +
            b"K" + bytes(size) + b"\x85K\x01\x85\x89" + _global("collections", "OrderedDict") + b")Rt" + b"R.")


def _archive(path, pickled):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickled)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", np.arange(4, dtype="<f4").tobytes())


def test_a_hand_written_archive_reads_and_a_view_past_its_storage_is_refused(tmp_path):
    _archive(tmp_path / "ok.pt", _tensor_pickle((4,)))
    np.testing.assert_array_equal(xn.read_torch_file(tmp_path / "ok.pt"), np.arange(4, dtype=np.float32))
    _archive(tmp_path / "past.pt", _tensor_pickle((10,)))
    with pytest.raises(xn.XpnetFileError, match=r"past.pt': refused a tensor of offset 0, size \(10,\) and stride "
                                                r"\(1,\): it reaches element 9 of storage '0', which holds 4$"):
        xn.read_torch_file(tmp_path / "past.pt")


def _write_system_call(path, marker):
    _archive(path, b"\x80\x02" + _global("os", "system") + _string(f"touch {marker}") + b"\x85R.")


def _write_whole_model(path, marker):
    torch.save(torch.nn.Linear(2, 2), path)


def _write_legacy(path, marker):
    torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)


def _write_npz(path, marker):
    with open(path, "wb") as f:
        np.savez(f, w=np.zeros(2))


def _write_pickle(path, marker):
    path.write_bytes(pickle.dumps({"w": [0.0, 1.0]}))


def _write_expanded(path, marker):
    """A 256 MB tensor from a file of 1.5 kB: one element, strides 0 (torch's expand)."""
    torch.save({"w": torch.zeros(1).expand(8000, 8000)}, path)


def _write_deflated(path, marker):
    """torch.save's records deflated again: a storage of 50 MB from 50 kB."""
    torch.save({"w": torch.zeros(50_000_000, dtype=torch.uint8)}, path.with_suffix(".stored"))
    with zipfile.ZipFile(path.with_suffix(".stored")) as src, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))


@pytest.mark.parametrize("write, message", [
    (_write_system_call, r"refused to load os.system: a state dict \(or a checkpoint dict of them\) holds only"),
    (_write_whole_model, r"refused to load torch.nn.modules.linear.Linear: a whole pickled model \(torch.save\(model\)"
                         r"\) holds its classes: in torch, save its state dict"),
    (_write_legacy, r"is not a file of torch.save .*: it is in torch's older format \(torch < 1.6, .*: re-save it "
                    r"with a recent torch, torch.save\(torch.load\(path\), 'new.pt'\)"),
    (_write_npz, r"is not a file of torch.save .*: a zip archive without one <name>/data.pkl, as torch.save writes "
                 r"\(it holds 'w.npy'\)$"),
    (_write_pickle, r"is not a file of torch.save .*: it starts with b'\\x80\\x04\\x95"),
    (_write_expanded, r"refused a tensor of size \(8000, 8000\) and stride \(0, 0\) .* more memory than 4 times the "
                      r"file and 64 MiB"),
    (_write_deflated, r"its record '.*/data/0' is compressed, where torch.save stores each storage as it is"),
], ids=["os.system", "whole-model", "legacy", "npz", "pickle", "expanded", "deflated"])
def test_what_is_not_a_state_dict_file_is_refused_naming_the_file_and_calling_nothing(tmp_path, write, message):
    marker = tmp_path / "called"
    write(tmp_path / "file.pt", marker)
    with pytest.raises(xn.XpnetFileError, match=r"^xn.read_torch_file: '.*file.pt'.*" + message):
        xn.read_torch_file(tmp_path / "file.pt")
    with pytest.raises(xn.XpnetFileError, match=r"^xn.load_torch_state_dict: '.*file.pt'"):
        xn.load_torch_state_dict(xn.Sequential(xn.layers.Linear(2, 2)), tmp_path / "file.pt")
    assert not marker.exists()


def test_xn_load_of_torchs_older_format_says_so_not_that_it_is_a_book_pickle(tmp_path):
    """A torch < 1.6 file is a pickle after torch's magic number: xn.load and resume_from pointed to the book's
    load_book_params, which refuses it too; they say what it is now, as read_torch_file does."""
    _write_legacy(tmp_path / "old.pt", None)
    with pytest.raises(xn.XpnetFileError, match=r"'.*old.pt' is not .*: it is in torch's older format .*re-save it "
                                                r"with a recent torch") as info:
        xn.load(tmp_path / "old.pt")
    assert "load_book_params" not in str(info.value)


def test_a_files_bytes_given_for_its_path_are_refused_saying_so(tmp_path):
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2, 2), "bias": torch.zeros(2)}, buffer)
    with pytest.raises(TypeError, match=r"^xn.load_torch_state_dict: got \d+ bytes of a file's contents, where it "
                                        r"reads a file by its path"):
        xn.load_torch_state_dict(xn.layers.Linear(2, 2), buffer.getvalue())


def test_a_missing_file_names_its_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        xn.read_torch_file(tmp_path / "missing.pth")
    with pytest.raises(TypeError, match=r"^xn.read_torch_file: path must be a str, bytes or os.PathLike.*got int"):
        xn.read_torch_file(3)
    with pytest.raises(xn.XpnetFileError, match=r"^xn.read_torch_file: <BytesIO> is not a file of torch.save.*no byte"):
        xn.read_torch_file(io.BytesIO(b""))  # a buffer reads as torch.load(buffer) reads it


def test_a_buffer_of_torch_save_reads_as_torch_load_reads_it_one_object_after_another():
    """torch.save(obj, buffer) twice into one buffer: xn.read_torch_file(buffer) and xn.load_torch_state_dict read
    each from the buffer's position, as torch.load(buffer) reads the last one (torch 2.13 fails on the first: it
    reads the directory at the buffer's end), and stop at its end, where the next object starts."""
    torch.manual_seed(0)
    first, second = {"weight": torch.randn(3, 2), "epoch": 2}, torch.nn.Linear(2, 3).state_dict()
    buffer = io.BytesIO()
    torch.save(first, buffer)
    end = buffer.tell()
    torch.save(second, buffer)
    buffer.seek(0)
    got = xn.read_torch_file(buffer)
    assert buffer.tell() == end and got["epoch"] == 2 and not buffer.closed
    layer = xn.layers.Linear(2, 3)
    xn.load_torch_state_dict(layer, buffer)
    assert buffer.tell() == len(buffer.getvalue())
    np.testing.assert_array_equal(got["weight"], torch.load(io.BytesIO(buffer.getvalue()[:end]))["weight"].numpy())
    buffer.seek(end)
    np.testing.assert_array_equal(layer.params["W"], torch.load(buffer)["weight"].numpy().T)
