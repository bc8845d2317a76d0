"""The fake CuPy offers CuPy 14.2's API, not NumPy's (``tests/fake_cupy/cupy/_names.py``, generated from CuPy's
source by ``tests/fake_cupy/make_names.py``): a name, ``ndarray`` method or keyword CuPy lacks fails on the fake as
it would on the GPU, so the GPU session is not spent on an AttributeError."""

from __future__ import annotations

from test_cupy_rules import last_json, run_with_fake_cupy

_CALLS = {
    # cupy/_math/sumprod.py: sum(a, axis=None, dtype=None, out=None, keepdims=False), no where=
    "cupy.sum(x, where=x > 0)": "TypeError",
    "x.sum(where=x > 0)": "TypeError",
    "numpy.sum(x, where=x > 0)": "TypeError",  # __array_function__ runs cupy.sum
    "x.argsort(stable=True)": "TypeError",  # core.pyx: argsort(self, axis=-1, kind=None)
    "cupy.sort(x, kind='quicksort')": "ValueError",  # core.pyx: _check_kind_sort
    "cupy.asarray(x, like=x)": "TypeError",
    "cupy.add(x, x, where=x > 0)": "TypeError",  # _kernel.pyx: ufunc.__call__, 'Wrong arguments'
    "cupy.maximum.reduce(x)": "NotImplementedError",  # _kernel.pyx: ufunc.reduce, add and multiply only
    "cupy.einsum('ij->i', x, casting='no')": "TypeError",  # linalg/_einsum.py
    "cupy.lib.stride_tricks.as_strided(x, shape=(2,), writeable=False)": "TypeError",
    "x.setflags(write=False)": "AttributeError",  # no such cupy.ndarray method
    "cupy.vecdot(x, x)": "AttributeError",  # not in CuPy 14
    "cupy.linalg.vector_norm(x)": "AttributeError",
    # What CuPy has passes.
    "cupy.sum(x, axis=1, keepdims=True)": None,
    "cupy.add.at(x, cupy.asarray(numpy.array([0])), 1.0)": None,
    "x.argsort(axis=-1, kind='stable')": None,
}


def test_the_fake_refuses_what_cupy_14_lacks(tmp_path):
    code = f"""
        import json, numpy, cupy
        x = cupy.asarray(numpy.arange(6.0).reshape(2, 3))
        raised = {{}}
        for call in {list(_CALLS)!r}:
            try:
                eval(call)
                raised[call] = None
            except Exception as e:
                raised[call] = type(e).__name__
        print(json.dumps(raised))
    """
    assert last_json(run_with_fake_cupy(code, tmp_path)) == _CALLS


def test_the_fake_sorts_stably_as_cupy(tmp_path):
    """CuPy's sort and argsort are stable by default (``cupy/_sorting/sort.py``: None is 'stable'); NumPy's
    default quicksort is not, so ties came out in another order on the fake."""
    code = """
        import json, numpy, cupy
        x = cupy.asarray(numpy.array([1.0, 0.0] * 50))
        print(json.dumps([cupy.argsort(x).get().tolist(), x.argsort().get().tolist()]))
    """
    assert last_json(run_with_fake_cupy(code, tmp_path)) == [[*range(1, 100, 2), *range(0, 100, 2)]] * 2


def test_the_fake_wraps_out_of_range_indices_as_cupy(tmp_path):
    """CuPy's take, take_along_axis, fancy indexing (get and set) and ufunc.at read or write row i % n where NumPy
    raises IndexError (``cupy/_core/_routines_indexing.pyx``); a check xpnet leaves to NumPy's raise would pass
    unseen on the GPU, so the fake wraps too. An integer scalar index is checked, as by CuPy."""
    code = """
        import json, numpy, cupy
        a = cupy.asarray(numpy.arange(6).reshape(3, 2))
        i = cupy.asarray(numpy.array([4, -1]))
        got = {"getitem": a[i, 0].get().tolist(), "take": cupy.take(a, i, axis=0)[:, 1].get().tolist(),
               "method": a.take(cupy.asarray(numpy.array([5])), axis=1).get().tolist(),
               "along": cupy.take_along_axis(a, cupy.asarray(numpy.array([[2], [3], [-3]])), axis=1).get().tolist()}
        b = cupy.zeros(3)
        b[cupy.asarray(numpy.array([3]))] = 5.0
        cupy.add.at(b, cupy.asarray(numpy.array([4, 4])), 1.0)
        got["set"] = b.get().tolist()
        try:
            a[3]
        except IndexError:
            got["scalar"] = "IndexError"
        print(json.dumps(got))
    """
    assert last_json(run_with_fake_cupy(code, tmp_path)) == {
        "getitem": [2, 4], "take": [3, 5], "method": [[1], [3], [5]], "along": [[0], [3], [5]],
        "set": [5.0, 2.0, 0.0], "scalar": "IndexError"}


def test_the_fake_rounds_as_a_gpu_where_asked(tmp_path):
    """FAKE_CUPY_ROUNDING=1 (tests/fake_cupy/cupy/_rounding.py): CuPy's sums, products and exp, and kernels of one's
    own that a GPU rounds otherwise (fused multiply-adds, transcendental calls), come out an ulp or two off NumPy's,
    the same each time; what IEEE rounds exactly, whole numbers and max stay exact."""
    code = """
        import json, numpy, cupy
        x = numpy.random.default_rng(0).standard_normal((4, 4)).astype(numpy.float32)
        d = cupy.asarray(x)
        update = cupy.ElementwiseKernel("T g, T lr", "T p", "p -= lr * g;", "fused_update")
        mask = cupy.ElementwiseKernel("T dy, bool m", "T dx", "dx = dy * m;", "mask")
        p = cupy.asarray(x)
        update(d, cupy.asarray(numpy.float32(0.1)), p)
        print(json.dumps({
            "sum": bool(cupy.sum(d).get() != x.sum()), "matmul": bool((d @ d).get().tolist() != (x @ x).tolist()),
            "exp": bool(cupy.exp(d).get().tolist() != numpy.exp(x).tolist()),
            "again": bool((d @ d).get().tolist() == (d @ d).get().tolist()),
            "fused": bool(p.get().tolist() != (x - numpy.float32(0.1) * x).tolist()),
            "exact": [bool((d * d).get().tolist() == (x * x).tolist()), bool(cupy.max(d).get() == x.max()),
                      bool(cupy.sum(cupy.ones(7)).get() == 7.0),
                      bool(mask(d, d > 0).get().tolist() == (x * (x > 0)).tolist())]}))
    """
    out = last_json(run_with_fake_cupy(code, tmp_path, FAKE_CUPY_ROUNDING="1"))
    assert out == {"sum": True, "matmul": True, "exp": True, "again": True, "fused": True, "exact": [True] * 4}
    # off (also where the run's environment has it on): NumPy's numbers
    assert not last_json(run_with_fake_cupy(code, tmp_path, FAKE_CUPY_ROUNDING=""))["sum"]
