"""The restricted unpickler (xpnet/io/unpickle.py): the book's params.pkl in every pickle protocol loads,
and nothing but arrays does; no callable outside the allow-list is ever called.

Covers issue 27, "Files" (protocols 0, 1, 2 and 5) and "Tests that let planted bugs through" (the
allow-list), and issue 28's "the restricted unpickler lets numpy.ndarray be called through REDUCE".
"""

from __future__ import annotations

import io
import os
import pickle
import types
import warnings
from collections import OrderedDict

import numpy as np
import pytest

import xpnet as xn
from xpnet.io import unpickle


class _Numpy1Pickler(pickle._Pickler):
    """pickle's own Python pickler, naming NumPy's functions as NumPy 1 did (``numpy.core``, not
    ``numpy._core``): the book's files were written by NumPy 1."""

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        if self.proto >= 4:
            self.save(module)
            self.save(obj.__qualname__)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, types.FunctionType: save_global}  # functions too, not only types


def _dumps(obj, protocol, numpy1):
    if not numpy1:
        return pickle.dumps(obj, protocol=protocol)
    f = io.BytesIO()
    _Numpy1Pickler(f, protocol=protocol).dump(obj)
    return f.getvalue()


def _params():
    rng = np.random.default_rng(0)
    return {"W1": rng.standard_normal((4, 3)), "b1": np.zeros(3), "W2": np.asfortranarray(rng.standard_normal((3, 2))),
            "b2": rng.standard_normal(2).astype(np.float32), "W3": np.float16([[1.5, -2.0]]), "n": np.array(7)}


VERSIONS = [pytest.param(p, n, id=f"protocol{p}-{'numpy1' if n else 'numpy2'}")
            for p in range(6) for n in (False, True)]


@pytest.mark.parametrize("protocol, numpy1", VERSIONS)
@pytest.mark.parametrize("container", [dict, OrderedDict])
def test_params_written_with_any_protocol_load(tmp_path, protocol, numpy1, container):
    """Issue 27, Files: protocols 0, 1 and 2 store bytes through _codecs.encode, protocol 5 arrays
    through numpy's _frombuffer; both were refused although the file holds only arrays."""
    params = _params()
    path = tmp_path / "params.pkl"
    path.write_bytes(_dumps(container(params), protocol, numpy1))
    loaded = xn.book.read_book_params(path)
    assert list(loaded) == list(params)
    for key, value in params.items():
        assert type(loaded[key]) is np.ndarray  # never the guard's subclass
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape
        np.testing.assert_array_equal(loaded[key], value)


@pytest.mark.parametrize("protocol", [0, 2, 4])  # arrays through _reconstruct, the guard's _Checked
def test_a_tuple_referenced_twice_comes_back_plain_at_both_places(tmp_path, protocol):
    """The pickle's memo gives one tuple at both places; the first was rebuilt with plain arrays, the second
    passed over as seen and kept the guard's _Checked subclass. Both are now the one finished tuple, a shared
    array one plain array, and a tuple within itself holds its finished self."""
    w, b = np.arange(6.0).reshape(2, 3), np.ones(3)
    pair = (w, b)
    path = tmp_path / "shared.pkl"
    path.write_bytes(pickle.dumps({"first": pair, "again": [pair], "w": w}, protocol=protocol))
    loaded = unpickle.read_arrays_pickle(path, "test")
    assert loaded["again"][0] is loaded["first"] and loaded["first"][0] is loaded["w"]
    for arrays in (loaded["first"], loaded["again"][0], [loaded["w"]]):
        assert all(type(a) is np.ndarray for a in arrays)
    np.testing.assert_array_equal(loaded["again"][0][0], w)

    holder = []
    cycle = (holder, b)  # a tuple within itself, through a list
    holder.append(cycle)
    path.write_bytes(pickle.dumps({"cycle": cycle}, protocol=protocol))
    loaded = unpickle.read_arrays_pickle(path, "test")["cycle"]
    assert loaded[0][0] is loaded and type(loaded[1]) is np.ndarray



def _arrays_and_tuples(value):
    """Every array and tuple reachable from ``value`` through its dicts, lists and tuples, each once."""
    seen, stack, found = set(), [value], []
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if isinstance(v, (np.ndarray, tuple)):
            found.append(v)
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
    return found


@pytest.mark.parametrize("protocol", [0, 2, 4])  # arrays through _reconstruct, the guard's _Checked
def test_a_tuple_within_itself_through_another_tuple_comes_back_finished(tmp_path, protocol):
    """A tuple holding a list (or dict) holding another tuple that holds the first: the inner tuple was passed
    over as it was and kept the first tuple as the pickle made it, its array the guard's _Checked subclass."""
    w = np.arange(6.0).reshape(2, 3)
    holder, table = [], {}
    via_list, via_dict = (w, holder), (table, w)
    holder.append((via_list, 1))
    table["back"] = ((via_dict,), w)
    path = tmp_path / "cycles.pkl"
    path.write_bytes(pickle.dumps({"list": via_list, "dict": via_dict}, protocol=protocol))
    loaded = unpickle.read_arrays_pickle(path, "test")
    assert loaded["list"][1][0][0] is loaded["list"] and loaded["dict"][0]["back"][0][0] is loaded["dict"]
    arrays = [a for a in _arrays_and_tuples(loaded) if isinstance(a, np.ndarray)]
    assert len(arrays) == 1 and type(arrays[0]) is np.ndarray  # one w, plain, wherever it is reached from
    np.testing.assert_array_equal(arrays[0], w)


def test_a_deeply_nested_pickle_loads_without_recursion(tmp_path):
    """Lists and tuples nested 100,000 deep (a hand-made pickle: EMPTY_LIST n times, then APPEND; a 1-tuple
    around a 1-tuple): the unpickler builds them without recursion, and so does the pass that makes its arrays
    plain (a RecursionError escaped it, not the ValueError naming the file a bad params file gets)."""
    n = 100_000
    path = tmp_path / "deep.pkl"
    path.write_bytes(b"\x80\x02" + pickle.EMPTY_LIST * n + pickle.APPEND * (n - 1) + pickle.STOP)
    deep = unpickle.read_arrays_pickle(path, "test")
    for _ in range(n - 1):
        (deep,) = deep
    assert deep == []
    path.write_bytes(b"\x80\x02" + pickle.EMPTY_TUPLE + pickle.TUPLE1 * n + pickle.STOP)
    deep = unpickle.read_arrays_pickle(path, "test")
    for _ in range(n):
        (deep,) = deep
    assert deep == ()


@pytest.mark.parametrize("state", [(3, "<", (), None, None, None, -1, -1, 0), (3, "<", 20046, -1, -1, 0)],
                         ids=["system-error", "crash"])
def test_a_dtype_state_numpy_does_not_write_is_refused_naming_the_file(tmp_path, state):
    """A dtype's pickled state NumPy never writes (a file's bytes changed): with an empty tuple for its subarray,
    NumPy's __setstate__ returned NULL without an exception (SystemError); with an int for it, on a dtype made with
    copy=True as pickles make them, NumPy 2.4 crashed the process (a segmentation fault; robust6's mutated pickle).
    Refused before NumPy sees it, naming the file; the states NumPy writes load (the byte orders)."""
    path = tmp_path / "dtype.pkl"
    path.write_bytes(pickle.dumps({"W": _ArrayOf(_StatedDtype(state), b"\0" * 16)}, protocol=2))
    with pytest.raises(ValueError, match=r"test: .*dtype\.pkl'?: refused the state .* for dtype float64: not one "
                                         r"NumPy writes for it"):
        unpickle.read_arrays_pickle(path, "test")
    for dtype in (">f8", "<f4", "u1", "?", ">i2"):
        path.write_bytes(pickle.dumps({"W": np.arange(3).astype(dtype), "t": np.dtype(dtype)}, protocol=2))
        loaded, plain = unpickle.read_arrays_pickle(path, "test"), pickle.loads(path.read_bytes())
        assert loaded["t"] == plain["t"] == np.dtype(dtype) and loaded["t"].str == plain["t"].str
        assert loaded["W"].dtype.str == plain["W"].dtype.str and loaded["W"].tolist() == plain["W"].tolist()


def test_a_dtype_numpy_cannot_parse_or_warns_of_is_refused_naming_the_file(tmp_path):
    """A typestring changed in the file ('f8' to '01', found by mutating pickles): NumPy parses part of it as Python,
    and its SyntaxError escaped the loader."""
    path = tmp_path / "dtype.pkl"
    path.write_bytes(pickle.dumps({"t": np.dtype("f8")}, protocol=2).replace(b"f8", b"01"))
    with pytest.raises(ValueError, match=r"test: .*dtype\.pkl'?: refused dtype\('01', False, True\): NumPy says "
                                         r"SyntaxError"):
        unpickle.read_arrays_pickle(path, "test")
    path.write_bytes(pickle.dumps({"t": np.dtype("f8")}, protocol=0).replace(b"I00\nI01\n", b"I02\nI01\n"))  # align=2
    with pytest.raises(ValueError, match=r"refused dtype\('f8', 2, True\): NumPy says VisibleDeprecationWarning"):
        unpickle.read_arrays_pickle(path, "test")


def test_an_array_the_file_gives_no_data_is_refused_naming_the_file(tmp_path):
    """numpy's _reconstruct with no state after it (no BUILD) makes an array of what its memory held: a file of
    64 + 100 bytes gave 64 bytes of this process's memory back as an array. Refused, naming the file."""
    data = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x40\x85C\x01b\x87R."
    path = tmp_path / "unset.pkl"
    path.write_bytes(data + bytes(100))  # the file is larger than the array: its size guard lets it through
    with pytest.raises(ValueError, match=r"unset\.pkl'.*shape \(64,\) and dtype int8 whose data the file does not"):
        unpickle.read_arrays_pickle(path, "test")

def _names_in(data):
    """Every (module, name) the pickle ``data`` looks up, read with a recording, unrestricted unpickler."""
    names = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            names.add((module, name))
            return super().find_class(module, name)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core is NumPy 2's alias of numpy._core
        Recording(io.BytesIO(data)).load()
    return names


def test_the_allow_list_is_exactly_what_arrays_need():
    """Issue 27, planted bugs: adding ("builtins", "eval") to the allow-list passed every test. The list
    must equal the names that dicts and OrderedDicts of arrays need, in every protocol, as NumPy 1 and
    NumPy 2 write them: nothing missing, nothing more."""
    needed = set()
    for protocol in range(6):
        for numpy1 in (False, True):
            for container in (dict, OrderedDict):
                needed |= _names_in(_dumps(container(_params()), protocol, numpy1))
    assert set(unpickle.ALLOWED) == needed
    assert needed == {(m, "_reconstruct") for m in ("numpy.core.multiarray", "numpy._core.multiarray")} \
        | {(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")} \
        | {("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"), ("_codecs", "encode")}


def _arg(value):
    """Protocol-0 opcodes that push ``value`` (a str, an int, or a list or tuple of them)."""
    if isinstance(value, str):
        return b"V" + value.encode("raw_unicode_escape") + b"\n"
    if isinstance(value, int):
        return b"I" + str(value).encode() + b"\n"
    return b"(" + b"".join(_arg(v) for v in value) + (b"l" if isinstance(value, list) else b"t")


def _call(module, name, *args):
    """A pickle that calls ``module.name(*args)`` when loaded and holds the result under "W1"."""
    return b"(VW1\nc" + f"{module}\n{name}\n".encode() + _arg(args) + b"Rd."


def _dangerous(tmp_path):
    """(module, name, args) whose call leaves a trace: a file created, a folder or a file removed."""
    made, folder, victim = tmp_path / "made", tmp_path / "folder", tmp_path / "victim"
    code = f"open({str(made)!r}, 'w').close()"
    return [
        ("builtins", "eval", (code,)),
        ("builtins", "exec", (code,)),
        ("builtins", "open", (str(made), "w")),
        ("builtins", "getattr", ("text", "upper")),
        ("builtins", "__import__", ("os",)),
        ("builtins", "compile", (code, "f", "exec")),
        ("os", "system", (f"touch {made}",)),
        ("posix", "system", (f"touch {made}",)),
        ("nt", "system", (f"type nul > {made}",)),
        ("os", "remove", (str(victim),)),
        ("shutil", "rmtree", (str(folder),)),
        ("subprocess", "Popen", (["touch", str(made)],)),
        ("subprocess", "check_call", (["touch", str(made)],)),
        ("importlib", "import_module", ("os",)),
        ("pickle", "loads", ("",)),
        ("functools", "partial", ("",)),
        ("operator", "attrgetter", ("system",)),
        ("copyreg", "_reconstructor", ("",)),
        ("numpy", "load", (str(victim),)),
        ("numpy.ma.core", "MaskedArray", ([1],)),
    ], made, folder, victim


def test_each_dangerous_callable_is_refused_before_it_is_called(tmp_path):
    """Issue 27, planted bugs: each callable outside the allow-list is refused when the file names it,
    before the REDUCE that would call it: nothing is created or removed."""
    cases, made, folder, victim = _dangerous(tmp_path)
    folder.mkdir()
    victim.write_bytes(b"keep")
    for module, name, args in cases:
        path = tmp_path / "evil.pkl"
        path.write_bytes(_call(module, name, *args))
        with pytest.raises(ValueError, match=rf"evil.pkl'?: refused to load {module}\.{name}:"):
            xn.book.read_book_params(path)
        assert not made.exists() and folder.is_dir() and victim.read_bytes() == b"keep", f"{module}.{name} ran"


def test_the_payloads_would_run_under_plain_pickle(tmp_path):
    """The payloads above are live: plain pickle.loads runs them (so the test above means something)."""
    cases, made, folder, victim = _dangerous(tmp_path)
    folder.mkdir()
    victim.write_bytes(b"keep")
    payloads = {f"{m}.{n}": _call(m, n, *a) for m, n, a in cases}
    pickle.loads(payloads["builtins.eval"])
    assert made.exists()
    pickle.loads(payloads["shutil.rmtree"])
    assert not folder.exists()


def test_ndarray_cannot_be_called_through_reduce(tmp_path):
    """Issue 28: a 36-byte file {"W1": numpy.ndarray((2**30,))} came back as an uninitialised 8 GiB
    array, and (2**33,) escaped as MemoryError; ndarray is only rebuilt inside _reconstruct now."""
    path = tmp_path / "huge.pkl"
    for shape in ((2**30,), (2**33,)):
        path.write_bytes(_call("numpy", "ndarray", shape))
        assert len(path.read_bytes()) < 64
        with pytest.raises(ValueError, match="refused to call numpy.ndarray directly"):
            xn.book.read_book_params(path)


@pytest.mark.parametrize("module", ["numpy._core.multiarray", "numpy.core.multiarray"])
def test_an_array_larger_than_the_file_is_refused_before_it_is_made(tmp_path, module):
    """Issue 28: numpy's _reconstruct itself allocates the shape it is given; a shape whose bytes the
    file cannot hold is refused first (here 8 GiB from a file of a hundred bytes)."""
    path = tmp_path / "huge.pkl"
    path.write_bytes(b"(VW1\nc" + f"{module}\n_reconstruct\n".encode() + b"(cnumpy\nndarray\n(I8589934592\ntVb\ntRd.")
    with pytest.raises(ValueError, match=r"refused an array of shape \(8589934592,\).*more than the whole file holds"):
        xn.book.read_book_params(path)


@pytest.mark.parametrize("payload, match", [
    (b"(VW1\nc_codecs\nencode\n(Vabc\nVrot13\ntRd.", r"refused _codecs.encode\(str, 'rot13'\)"),
    (b"(VW1\ncnumpy\ndtype\n(VO\ntRd.", "refused dtype object"),
    (b"(VW1\ncnumpy._core.multiarray\n_reconstruct\n(cnumpy\ndtype\n(I0\ntVb\ntRd.", "only plain numpy.ndarray"),
])
def test_the_guards_refuse_what_arrays_never_need(tmp_path, payload, match):
    path = tmp_path / "odd.pkl"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=match):
        xn.book.read_book_params(path)


class _FlaggedDtype:
    """A plain void dtype whose pickled state (BUILD, after the dtype guard has seen it) sets ``flags``."""

    def __init__(self, flags):
        self.flags = flags

    def __reduce__(self):
        return np.dtype, ("V8", False, True), (3, "|", None, None, None, 8, 1, self.flags)


class _StatedDtype:
    """float64 as pickles make it (copy=True), with the pickled state ``state``."""

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return np.dtype, ("f8", False, True), self.state


class _ArrayOf:
    def __init__(self, dtype, data):
        self.dtype, self.data = dtype, data

    def __reduce__(self):
        rebuild, args = np.empty(0).__reduce__()[:2]
        return rebuild, args, (1, (2,), self.dtype, False, self.data)


@pytest.mark.parametrize("flags, data", [(1, b"A" * 16), (63, [1, 2])], ids=["refcount", "list-pickle"])
def test_a_dtype_given_object_flags_after_its_guard_is_refused_naming_the_file(tmp_path, flags, data):
    """dtype's guard saw "V8"; the BUILD that followed set its flags to those of an object dtype (NumPy takes
    them): the array came back with dtype.hasobject (refcount), or NumPy's SystemError escaped (list-pickle)."""
    path = tmp_path / "flagged.pkl"
    path.write_bytes(pickle.dumps({"W1": _ArrayOf(_FlaggedDtype(flags), data)}, protocol=2))
    with pytest.raises(ValueError, match=r"flagged.pkl'?: refused the state .* for dtype \|V8: not one NumPy writes"):
        unpickle.read_arrays_pickle(path, "read_book_params")
