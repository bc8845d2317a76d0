"""CUDA-graph capture of the training step (issue 23), on the fake CuPy of ``tests/fake_cupy``, whose
capture records kernels without running them and replays them without Python, as CUDA does
(``tests/test_fake_capture.py``). The same checks on a real GPU are the ``gpu`` tests at the end."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from xpnet.backend.matmul_kernel import launch_shape, matmul_source

from test_cupy_rules import last_json, run_with_fake_cupy

needs_compiler = pytest.mark.skipif(shutil.which("g++") is None,
                                    reason="the fake RawKernel builds kernels with g++, which this machine lacks")


def test_the_matmul_source_is_importable_without_cupy_and_covers_every_output():
    assert 'extern "C" __global__ void xpnet_matmul_float32(' in matmul_source("float32")
    assert "typedef double xpnet_t;" in matmul_source("float64")
    with pytest.raises(ValueError, match="float16"):
        matmul_source("float16")
    for m, n in [(1, 1), (100, 10), (784, 100), (33, 65)]:
        (gx, gy), (bx, by) = launch_shape(m, n)
        assert gx * bx * 2 >= n and gy * by * 2 >= m


@needs_compiler
def test_the_capturable_matmul_equals_numpy_with_transposed_operands(tmp_path):
    """Linear's three products: x @ W, dy @ W.T and x.T @ dy, read through their strides (no copy)."""
    out = last_json(run_with_fake_cupy("""
        import json, numpy as np, cupy
        from xpnet.backend.fast_cupy_capture import kernel_matmul
        rng = np.random.default_rng(0)
        errors = {}
        for dtype in ("float32", "float64"):
            for m, k, n in [(7, 5, 3), (100, 78, 10), (1, 1, 1), (33, 0, 4)]:
                a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
                for ta in (False, True):
                    for tb in (False, True):
                        ga = cupy.asarray(a.T.copy()).T if ta else cupy.asarray(a)  # a view of a transposed array
                        gb = cupy.asarray(b.T.copy()).T if tb else cupy.asarray(b)
                        c = kernel_matmul(ga, gb)
                        ref = a.astype(np.float64) @ b.astype(np.float64)
                        errors[f"{dtype} {m}x{k}x{n} {ta} {tb}"] = [float(np.max(np.abs(c.get() - ref), initial=0)),
                                                                   c.dtype.name, list(c.shape)]
        print(json.dumps(errors))
    """, tmp_path))
    assert len(out) == 32
    for case, (error, dtype, shape) in out.items():
        assert dtype == case.split()[0]
        m, k, n = map(int, case.split()[1].split("x"))
        assert shape == [m, n]
        assert error <= (1e-4 if dtype == "float32" else 1e-12) * max(k, 1), case


@needs_compiler
def test_linear_multiplies_by_cublas_eagerly_and_by_its_kernel_while_captured(tmp_path):
    out = last_json(run_with_fake_cupy("""
        import json, numpy as np, cupy
        import xpnet as xn
        layer = xn.layers.Linear(6, 4).to(xn.device("cuda"))
        x = xn.to_device(np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32), xn.device("cuda"))
        eager = layer.forward(x)
        eager_dx = layer.backward(cupy.ones((5, 4), dtype=cupy.float32))
        eager_dW = layer.grads["W"].copy()
        stream, pool = cupy.cuda.Stream(non_blocking=True), cupy.cuda.MemoryPool()
        with cupy.cuda.using_allocator(pool.malloc), stream:
            stream.begin_capture()
            y = layer.forward(x)
            dx = layer.backward(cupy.ones((5, 4), dtype=cupy.float32))
            dW = layer.grads["W"]
            graph = stream.end_capture()
        graph.launch()
        print(json.dumps({"kernels": graph.kernels,
                          "close": [bool(cupy.allclose(a, b, rtol=1e-6, atol=1e-6)) for a, b in
                                    [(y, eager), (dx, eager_dx), (dW, eager_dW)]]}))
    """, tmp_path))
    assert out["kernels"].count("xpnet_matmul_float32") == 3 and "matmul" not in out["kernels"], out
    assert out["close"] == [True, True, True]
