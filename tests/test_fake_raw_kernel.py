"""The fake CuPy's ``RawKernel`` (``tests/fake_cupy/cupy/_raw.py``), which the CuPy fast paths' kernels are
checked with on machines without a GPU: it must run a kernel as CUDA would and refuse what CuPy would pass
wrongly, or those checks prove nothing."""

from __future__ import annotations

import pytest

from test_cupy_rules import last_json, run_with_fake_cupy

pytestmark = pytest.mark.skipif(__import__("shutil").which("g++") is None,
                                reason="the fake RawKernel builds kernels with g++, which this machine lacks")

_AXPY = r'''
    extern "C" __global__ void axpy(const float* x, float* y, float a, long long n) {
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) y[i] = a * x[i] + y[i];
    }
'''


def test_a_kernel_runs_every_thread_of_its_grid_once(tmp_path):
    out = last_json(run_with_fake_cupy(f"""
        import json, numpy as np, cupy
        k = cupy.RawKernel({_AXPY!r}, "axpy")
        x = cupy.arange(1000, dtype=cupy.float32)
        y = cupy.ones(1000, dtype=cupy.float32)
        k((4,), (256,), (x, y, np.float32(2), 1000))  # 1024 threads: the last 24 stay out of range
        print(json.dumps(y.get().tolist()))
    """, tmp_path))
    assert out == [2.0 * i + 1.0 for i in range(1000)]


@pytest.mark.parametrize("args, message", [
    ("(x, y, 2.0, 1000)", "a is declared float but gets 2.0 (float), which CuPy passes as float64"),
    ("(x, y, np.float32(2), np.int32(1000))", "n is declared long long but gets"),
    ("(x.astype(cupy.float64), y, np.float32(2), 1000)", "x is declared const float* but the array is float64"),
    ("(x.get(), y, np.float32(2), 1000)", "needs a cupy array, got ndarray"),
    ("(x, y, np.float32(2))", "4 parameters, 3 arguments"),
])
def test_what_cupy_would_pass_wrongly_is_refused(tmp_path, args, message):
    proc = run_with_fake_cupy(f"""
        import numpy as np, cupy
        k = cupy.RawKernel({_AXPY!r}, "axpy")
        x = cupy.arange(1000, dtype=cupy.float32)
        y = cupy.ones(1000, dtype=cupy.float32)
        k((4,), (256,), {args})
    """, tmp_path)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_a_view_is_read_from_its_first_element_without_strides(tmp_path):
    """As on the GPU: a kernel gets an address, so a strided view must be made contiguous first."""
    out = last_json(run_with_fake_cupy(f"""
        import json, numpy as np, cupy
        k = cupy.RawKernel({_AXPY!r}, "axpy")
        x = cupy.arange(8, dtype=cupy.float32)[1::2]  # 1, 3, 5, 7 as a view
        y = cupy.zeros(4, dtype=cupy.float32)
        k((1,), (4,), (x, y, np.float32(1), 4))
        print(json.dumps(y.get().tolist()))
    """, tmp_path))
    assert out == [1.0, 2.0, 3.0, 4.0]


def test_shared_memory_and_barriers_are_refused_not_run_wrongly(tmp_path):
    proc = run_with_fake_cupy("""
        import cupy
        k = cupy.RawKernel(r'''
            extern "C" __global__ void f(float* y) { __shared__ float s[32]; s[threadIdx.x] = 1; __syncthreads();
                                                     y[threadIdx.x] = s[31 - threadIdx.x]; }''', "f")
        k((1,), (32,), (cupy.zeros(32, dtype=cupy.float32),))
    """, tmp_path)
    assert proc.returncode != 0 and "cannot be emulated" in proc.stderr, proc.stderr


def test_a_source_that_does_not_compile_says_so(tmp_path):
    proc = run_with_fake_cupy("""
        import cupy
        k = cupy.RawKernel('extern "C" __global__ void f(float* y) { y[0] = undefined_name; }', "f")
        k((1,), (1,), (cupy.zeros(1, dtype=cupy.float32),))
    """, tmp_path)
    assert proc.returncode != 0 and "does not compile" in proc.stderr and "undefined_name" in proc.stderr
