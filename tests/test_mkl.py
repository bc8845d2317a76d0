"""MKL's products on NumPy (``xpnet.backend.fast_mkl``): the recurrent layers' packed step products and the
layers' largest products give NumPy's numbers to rounding, the same bits whatever the memory alignment,
run on NumPy's BLAS thread count, are used where they pay and nowhere else, and are switched off by
``set_mkl(False)`` / ``XPNET_DISABLE_MKL=1``."""

import importlib.metadata
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import xpnet as xn
from xpnet import backend
from xpnet.backend import fast_numpy, registry

try:
    importlib.metadata.distribution("mkl")
except importlib.metadata.PackageNotFoundError:
    pytest.skip("MKL is not installed: pip install -e '.[mkl]' (CI installs it with '.[test]')",
                allow_module_level=True)

from xpnet.backend import fast_mkl  # noqa: E402 - only where MKL is installed

TOL = {np.float32: 2e-5, np.float64: 1e-13}


def close(a, b, dtype):
    """Equal to rounding: the two BLAS sum in different orders, each error a few ulps of the row's size."""
    scale = np.abs(b).max() + 1.0
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("rows", [1, 3, 20])
def test_a_packed_product_is_numpys_to_rounding(dtype, transpose, rows, rng):
    W = rng.standard_normal((13, 52)).astype(dtype)
    packed = fast_mkl.PackedWeights(W, transpose=transpose)
    k = 52 if transpose else 13
    for _ in range(2):  # packed on the first product, reused by the second
        a = rng.standard_normal((rows, k)).astype(dtype)
        got = a @ packed
        assert isinstance(got, np.ndarray) and got.dtype == dtype and got.shape == (rows, 13 if transpose else 52)
        close(got, a @ (W.T if transpose else W), dtype)


def test_a_planted_wrong_transposition_is_caught(rng):
    """A square W packed without its transposition multiplies by W, not W.T: the comparison above sees it."""
    W = rng.standard_normal((16, 16)).astype(np.float32)
    a = rng.standard_normal((4, 16)).astype(np.float32)
    wrong = fast_mkl.PackedWeights(W, transpose=True)
    wrong._trans = fast_mkl._NO_TRANS
    with pytest.raises(AssertionError):
        close(a @ wrong, a @ W.T, np.float32)


def test_what_mkl_is_not_given_numpy_multiplies(rng):
    """Another row count than the packed one, a strided or another dtype's operand: NumPy's own product."""
    W = rng.standard_normal((8, 12)).astype(np.float32)
    packed = fast_mkl.PackedWeights(W)
    a = rng.standard_normal((5, 8)).astype(np.float32)
    a @ packed  # packs for 5 rows
    for other in (rng.standard_normal((3, 8)).astype(np.float32),  # 3 rows
                  rng.standard_normal((8, 5)).astype(np.float32).T,  # not C-contiguous
                  rng.standard_normal((5, 8))):  # float64
        np.testing.assert_array_equal(other @ packed, other @ W)
    with pytest.raises(ValueError):  # a wrong width fails as NumPy's product does
        rng.standard_normal((5, 7)).astype(np.float32) @ packed


def test_the_same_inputs_give_the_same_bits_at_any_alignment(rng):
    """Resume and reruns stay exact: MKL's result does not depend on where NumPy put the operand."""
    W = rng.standard_normal((650, 2600)).astype(np.float32)
    packed = fast_mkl.PackedWeights(W)
    h = rng.standard_normal((20, 650)).astype(np.float32)
    memory = np.empty(h.size + 32, np.float32)
    results = []
    for offset in range(16):  # 4-byte steps through a 64-byte line
        view = memory[offset:offset + h.size].reshape(h.shape)
        view[...] = h
        results.append(view @ packed)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def _openblas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(internal_api="openblas")


@pytest.mark.skipif(not fast_mkl.THREADED, reason="MKL runs sequentially here (no libgomp)")
def test_mkl_runs_on_numpys_blas_thread_count(rng):
    """One knob: OMP_NUM_THREADS, threadpoolctl and xpnet's tuner set NumPy's BLAS, and MKL follows it."""
    from threadpoolctl import threadpool_info

    a, b = rng.standard_normal((80, 70)).astype(np.float32), rng.standard_normal((70, 90)).astype(np.float32)
    assert {p["threading_layer"] for p in threadpool_info() if p["internal_api"] == "mkl"} == {"gnu"}
    for count in (1, 2):
        with _openblas().limit(limits=count):
            fast_mkl.matmul(a, b)
            assert fast_mkl._lib.MKL_Get_Max_Threads() == count
            a @ fast_mkl.PackedWeights(b)
            assert fast_mkl._lib.MKL_Get_Max_Threads() == count


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mkls_matmul_is_numpys_to_rounding_in_every_layout(dtype, rng, monkeypatch):
    """C-ordered, transposed views and row-sliced views (a leading dimension wider than the matrix) are
    read as they lie, no copy."""
    monkeypatch.setattr(fast_mkl, "MIN_PRODUCT", 0)
    monkeypatch.setattr(fast_mkl, "MIN_SIDE", 0)
    a = rng.standard_normal((90, 120)).astype(dtype)
    b = rng.standard_normal((120, 70)).astype(dtype)
    wide = rng.standard_normal((120, 100)).astype(dtype)[:, 10:80]
    for x, y in ((a, b), (np.asfortranarray(a), b), (a, np.asfortranarray(b)), (b.T, a.T), (a, wide),
                 (wide.T, a.T)):
        assert fast_mkl._multiplies(x, y)
        close(fast_mkl.matmul(x, y), x @ y, dtype)


def test_small_stacked_or_mixed_products_stay_with_numpy(rng, monkeypatch):
    """At most MIN_PRODUCT multiply-adds (NumPy's OpenBLAS is the faster there), 3-d stacks, mixed or
    integer dtypes, layouts that are no strided matrix."""
    monkeypatch.setattr(fast_mkl, "MIN_PRODUCT", 64 ** 3)
    monkeypatch.setattr(fast_mkl, "MIN_SIDE", 0)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    for a, b in ((f32(64, 64), f32(64, 64)), (f32(4, 90, 80), f32(80, 70)),
                 (f32(90, 80), f32(80, 70).astype(np.float64)),
                 (np.ones((90, 80), np.int64), np.ones((80, 70), np.int64)), (f32(90, 80)[:, ::2], f32(40, 70))):
        assert not fast_mkl._multiplies(a, b)
    assert fast_mkl._multiplies(f32(65, 64), f32(64, 64))


def test_the_threshold_keeps_an_mlps_products_with_numpy_and_gives_a_language_models_to_mkl():
    """Where each BLAS was the faster here: an MLP's (100, 1000) by (1000, 1000) to NumPy's OpenBLAS, the
    book's LSTM language model's products (its output layer's, its LSTMs' whole-sequence ones) to MKL."""
    f32 = lambda *shape: np.ones(shape, np.float32)
    assert not fast_mkl._multiplies(f32(100, 1000), f32(1000, 1000))
    assert not fast_mkl._multiplies(f32(1000, 784), f32(784, 1000))
    assert fast_mkl._multiplies(f32(700, 650), f32(650, 10000))
    assert fast_mkl._multiplies(f32(700, 650), f32(650, 2600))
    assert fast_mkl._multiplies(f32(700, 2600), f32(650, 2600).T)


@pytest.mark.skipif(not fast_mkl.THREADED, reason="MKL runs sequentially here (no libgomp)")
def test_a_layers_product_goes_to_mkl_where_it_multiplies_and_to_numpy_elsewhere(rng, monkeypatch):
    """The registered "matmul" (Linear's, Conv2d's) makes _multiplies' choice itself: MKL's bits for a pair it
    takes, NumPy's own product for a 3-d stack, a pair below the threshold or a non-array operand."""
    import operator

    monkeypatch.setattr(fast_mkl, "MIN_PRODUCT", 0)
    monkeypatch.setattr(fast_mkl, "MIN_SIDE", 0)
    mm = backend.fast_path("matmul", np, operator.matmul)
    a, b = rng.standard_normal((30, 40)).astype(np.float32), rng.standard_normal((40, 20)).astype(np.float32)
    np.testing.assert_array_equal(mm(a, b), fast_mkl.matmul(a, b))
    stack = rng.standard_normal((3, 30, 40)).astype(np.float32)
    np.testing.assert_array_equal(mm(stack, b), stack @ b)
    np.testing.assert_array_equal(mm(a, b.tolist()), a @ b.tolist())
    monkeypatch.setattr(fast_mkl, "MIN_PRODUCT", 30 * 40 * 20)
    np.testing.assert_array_equal(mm(a, b), a @ b)


def test_a_cnns_convolution_products_stay_with_numpy_however_large():
    """The modern CNN of benchmarks/compare.py at batch 1000: its second convolution's three products are
    billions of multiply-adds but as narrow as its 64 channels, and its linear layer's stay with OpenBLAS; a
    step with products on both pools ran slower (fast_mkl.MIN_SIDE says by how much)."""
    f32 = lambda *shape: np.ones(shape, np.float32)
    col, dy = f32(288, 1000 * 14 * 14), f32(64, 1000 * 14 * 14)
    for a, b in ((f32(64, 288), col), (col, dy.T), (f32(288, 64), f32(64, 1000 * 15 * 16))):
        assert a.shape[0] * a.shape[1] * b.shape[1] > fast_mkl.MIN_PRODUCT
        assert not fast_mkl._multiplies(a, b)


@pytest.mark.skipif(not fast_mkl.THREADED, reason="MKL runs sequentially here (no libgomp)")
def test_threaded_products_give_the_same_bits_at_any_alignment(rng, monkeypatch):
    monkeypatch.setattr(fast_mkl, "MIN_PRODUCT", 0)
    monkeypatch.setattr(fast_mkl, "MIN_SIDE", 0)
    b = rng.standard_normal((784, 100)).astype(np.float32)
    a0 = rng.standard_normal((100, 784)).astype(np.float32)
    memory = np.empty(a0.size + 32, np.float32)
    results = []
    for offset in range(0, 16, 3):
        a = memory[offset:offset + a0.size].reshape(a0.shape)
        a[...] = a0
        results.append(fast_mkl.matmul(a, b))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


@pytest.mark.skipif(not fast_mkl.THREADED, reason="MKL runs sequentially here (no libgomp)")
def test_the_layers_large_products_all_go_through_mkl(rng, monkeypatch):
    """Linear, the recurrent layers and TiedLinear: no large product of a language model's step is left to
    NumPy's BLAS, whose idle threads would spin against MKL's."""
    calls = []
    monkeypatch.setattr(fast_mkl, "_use_threads", lambda: calls.append(1))
    monkeypatch.setattr(fast_mkl, "MIN_PRODUCT", 0)
    monkeypatch.setattr(fast_mkl, "MIN_SIDE", 0)
    monkeypatch.setattr(registry, "_resolved", {})
    monkeypatch.setattr(registry, "_guards", {})
    monkeypatch.setattr(registry, "_answers", {})
    x = rng.integers(0, 11, (4, 6))
    emb = xn.layers.Embedding(11, 8)
    model = xn.Sequential(emb, xn.layers.LSTM(8, 8), xn.layers.GRU(8, 8), xn.layers.Linear(8, 8),
                          xn.layers.TiedLinear(emb))
    loss = xn.losses.SoftmaxCrossEntropy()
    loss.forward(model.forward(x), x)
    model.backward(loss.backward())
    # forward: LSTM 1 + 6 steps, GRU 1 + 6, Linear 1, Tied 1; backward: LSTM 6 + 2, GRU 6 + 3, Linear 2, Tied 2
    assert len(calls) == 16 + 21


def _layers():
    return {"rnn": lambda d: xn.layers.RNN(6, 9, dtype=d), "lstm": lambda d: xn.layers.LSTM(6, 9, dtype=d),
            "gru": lambda d: xn.layers.GRU(6, 9, dtype=d)}


def _run(make, dtype, x, dhs, mkl):
    previous = backend.set_mkl(mkl)
    try:
        xn.init.seed(0)
        layer = make(dtype)
        hs = layer.forward(x)
        dx = layer.backward(dhs)
        return [hs, dx, layer.dh, *(layer.grads[k] for k in sorted(layer.grads))]
    finally:
        backend.set_mkl(previous)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_recurrent_layers_with_mkl_equal_them_without(name, dtype, rng, monkeypatch):
    x = rng.standard_normal((4, 7, 6)).astype(dtype)
    dhs = rng.standard_normal((4, 7, 9)).astype(dtype)
    products = []
    original = fast_mkl.PackedWeights.__rmatmul__
    monkeypatch.setattr(fast_mkl.PackedWeights, "__rmatmul__",
                        lambda self, a: products.append(a.shape) or original(self, a))
    with_mkl = _run(_layers()[name], dtype, x, dhs, True)
    blocks = {"rnn": 1, "lstm": 4, "gru": 3}[name]
    assert products == [(4, 9)] * 7 + [(4, blocks * 9)] * 7  # every step's product, forward then backward
    without = _run(_layers()[name], dtype, x, dhs, False)
    assert len(products) == 14
    for a, b in zip(with_mkl, without):
        close(a, b, np.dtype(dtype).type)


def test_packing_is_left_out_where_it_cannot_pay(rng, monkeypatch):
    """A single step (generation feeds one token at a time) and the book's GRU (its steps multiply by
    column blocks of Wh) multiply as NumPy does."""
    packs = []
    monkeypatch.setattr(fast_mkl.PackedWeights, "_pack", lambda self, rows: packs.append(rows))
    lstm = xn.layers.LSTM(4, 5)
    lstm.forward(rng.standard_normal((2, 1, 4)).astype(np.float32))
    lstm.backward(np.ones((2, 1, 5), np.float32))
    book = xn.layers.GRU(4, 5, convention="book")
    book.forward(rng.standard_normal((2, 6, 4)).astype(np.float32))
    book.backward(np.ones((2, 6, 5), np.float32))
    assert packs == []
    assert backend.fast_path("step_weights", np) is fast_mkl.step_weights  # yet MKL is on


def test_set_mkl_and_the_environment_switch_it_off():
    previous = backend.set_mkl(False)
    try:
        assert backend.fast_path("step_weights", np) is None
        assert backend.fast_path("step_weights_transposed", np) is fast_numpy.step_weights_transposed
    finally:
        assert backend.set_mkl(previous) is False
    code = ("import numpy as np; from xpnet import backend; "
            "print(backend.fast_path('step_weights', np), backend.fast_path('step_weights_transposed', np).__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "XPNET_DISABLE_MKL": "1"}).stdout.split()
    assert out == ["None", "xpnet.backend.fast_numpy"]


def test_an_mkl_without_its_library_warns_once_and_falls_back(monkeypatch, rng):
    monkeypatch.setattr(registry, "_loaded", {k: v for k, v in registry._loaded.items() if k != "fast_mkl"})
    monkeypatch.setattr(registry, "_FAST_PATHS", {k: [e for e in v if e[0] != "fast_mkl"]
                                                  for k, v in registry._FAST_PATHS.items()})
    monkeypatch.setattr(registry, "_resolved", {})
    monkeypatch.setattr(registry, "_guards", {})
    monkeypatch.setattr(registry, "_answers", {})
    monkeypatch.delitem(sys.modules, "xpnet.backend.fast_mkl", raising=False)
    monkeypatch.setattr(importlib.metadata, "files", lambda name: [])
    lstm = xn.layers.LSTM(3, 4)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    with pytest.warns(UserWarning, match="mkl is installed but failed to import.*XPNET_DISABLE_MKL"):
        hs = lstm.forward(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once
        assert backend.fast_path("step_weights", np) is None
        np.testing.assert_array_equal(lstm.forward(x), hs)


def test_mkl_comes_before_numpys_copy_whichever_family_loaded_first(monkeypatch):
    """FAMILIES' order decides, not the order a process happened to load the families in."""
    monkeypatch.setattr(registry, "_loaded", {})
    monkeypatch.setattr(registry, "_FAST_PATHS", {})
    monkeypatch.setattr(registry, "_resolved", {})
    monkeypatch.setattr(registry, "_guards", {})
    monkeypatch.setattr(registry, "_answers", {})
    assert backend.fast_path("im2col", np) is fast_numpy.im2col  # loads fast_numpy alone
    W = np.ones((3, 4), np.float32)
    made = backend.fast_path("step_weights_transposed", np, lambda W, steps: W.T)(W, 5)
    assert isinstance(made, fast_mkl.PackedWeights)
    assert backend.fast_path("step_weights_transposed", np, lambda W, steps: W.T)(W, 1).flags.c_contiguous


def test_mkl_switched_off_from_the_start_is_never_loaded():
    """XPNET_DISABLE_MKL=1 keeps MKL's library out of the process (a broken MKL cannot get in the way)."""
    code = ("import numpy as np, xpnet as xn; from threadpoolctl import threadpool_info; "
            "l = xn.layers.LSTM(3, 4); l.forward(np.ones((2, 5, 3), np.float32)); "
            "l.backward(np.ones((2, 5, 4), np.float32)); "
            "print(sorted({p['internal_api'] for p in threadpool_info()}))")
    run = lambda env: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                     env={**os.environ, **env}).stdout.strip()
    assert "mkl" not in run({"XPNET_DISABLE_MKL": "1"})
    assert "mkl" in run({})
