"""The fake CuPy's ``RawKernel`` (``tests/fake_cupy/cupy/_raw.py``), which the CuPy fast paths' kernels are
checked with on machines without a GPU: it must run a kernel as CUDA would and refuse what CuPy would pass
wrongly, or those checks prove nothing."""

from __future__ import annotations

import pytest

from test_cupy_rules import fails_on_fake_cupy, last_json, run_with_fake_cupy

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
    ("(x, y, np.float32(2), 1000), shared_mem=64", "dynamic shared memory cannot be emulated"),
])
def test_what_cupy_would_pass_wrongly_is_refused(tmp_path, args, message):
    fails_on_fake_cupy(f"""
        import numpy as np, cupy
        k = cupy.RawKernel({_AXPY!r}, "axpy")
        x = cupy.arange(1000, dtype=cupy.float32)
        y = cupy.ones(1000, dtype=cupy.float32)
        k((4,), (256,), {args})
    """, tmp_path, message)


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


_BLOCK_SUM = r'''
    extern "C" __global__ void block_sum(const double* x, double* out, long long n) {
        __shared__ double s[256];
        const unsigned t = threadIdx.x + blockDim.x * threadIdx.y;
        const unsigned size = blockDim.x * blockDim.y;
        const long long i = (long long)(blockIdx.x + gridDim.x * blockIdx.y) * size + t;
        s[t] = i < n ? x[i] : 0.0;
        __syncthreads();  // FIRST
        for (unsigned h = size / 2; h > 0; h >>= 1) {
            if (t < h) s[t] += s[t + h];
            __syncthreads();  // LOOP
        }
        if (t == 0) out[blockIdx.x + gridDim.x * blockIdx.y] = s[0];
    }
'''


def _block_sums(tmp_path, source, launches):
    """``launches``: (grid, block, n) each; the sums of each block, twice per launch (the fake alternates
    the order it runs a block's threads in from one launch to the next)."""
    return last_json(run_with_fake_cupy(f"""
        import json, numpy as np, cupy
        k = cupy.RawKernel({source!r}, "block_sum")
        result = []
        for grid, block, n in {launches!r}:
            x = cupy.asarray(np.random.default_rng(n).integers(0, 1000, n).astype(np.float64))
            runs = []
            for _ in range(2):
                out = cupy.zeros(int(np.prod(grid)), dtype=cupy.float64)
                k(grid, block, (x, out, n))
                runs.append(out.get().tolist())
            size = int(np.prod(block))
            expected = np.bincount(np.arange(n) // size, weights=x.get(), minlength=int(np.prod(grid))).tolist()
            result.append([expected, runs])
        print(json.dumps(result))
    """, tmp_path))


def test_a_block_wide_reduction_through_shared_memory_gives_the_right_sums(tmp_path):
    """Threads of a block share ``__shared__`` memory and wait for each other at ``__syncthreads()``; the
    blocks of a grid (2-D block and grid included) each get their own sum."""
    out = _block_sums(tmp_path, _BLOCK_SUM, [((4,), (256,), 1000), ((3, 2), (16, 8), 700), ((1,), (2,), 2)])
    for expected, runs in out:
        assert runs == [expected, expected]


@pytest.mark.parametrize("missing", ["FIRST", "LOOP"])
def test_a_missing_syncthreads_gives_a_wrong_sum_in_one_of_two_launches(tmp_path, missing):
    """Without the first barrier, a phase run forward lets thread 0 add s[128] before thread 128 wrote it;
    without the loop's, one run forward lets thread 0 add s[64] before thread 64 added s[192]. Either
    is caught in one of the two launches (the other order hides it), every time."""
    source = _BLOCK_SUM.replace(f"__syncthreads();  // {missing}", "")
    (expected, runs), = _block_sums(tmp_path, source, [((4,), (256,), 1000)])
    assert sum(run != expected for run in runs) == 1, runs


def test_a_thread_that_returns_while_others_wait_at_a_barrier_fails_the_launch(tmp_path):
    source = _BLOCK_SUM.replace("const unsigned size", "if (blockIdx.x == 2 && t == 7) return;\n const unsigned size")
    fails_on_fake_cupy(f"""
        import cupy
        k = cupy.RawKernel({source!r}, "block_sum")
        k((4,), (256,), (cupy.ones(1000, dtype=cupy.float64), cupy.zeros(4, dtype=cupy.float64), 1000))
    """, tmp_path, "block_sum: block (2, 0, 0): thread (7, 0, 0) returned while 255 other threads waited at "
                   "__syncthreads() number 1")


def test_a_launch_after_one_that_failed_midway_starts_every_thread_afresh(tmp_path):
    """The fake's fibers run a kernel block after block; those a failed launch left waiting at a barrier are not
    resumed by the next launch, which starts each thread at the top of the kernel."""
    source = _BLOCK_SUM.replace("const unsigned size", "if (n == 999 && blockIdx.x == 2 && t == 7) return;\n"
                                                       " const unsigned size")
    failed, sums = last_json(run_with_fake_cupy(f"""
        import json, cupy
        k = cupy.RawKernel({source!r}, "block_sum")
        x, out = cupy.ones(1000, dtype=cupy.float64), cupy.zeros(4, dtype=cupy.float64)
        try:
            k((4,), (256,), (x, out, 999))
            failed = None
        except RuntimeError as e:
            failed = str(e)
        out[...] = 0
        k((4,), (256,), (x, out, 1000))
        print(json.dumps([failed, out.get().tolist()]))
    """, tmp_path))
    assert "block (2, 0, 0): thread (7, 0, 0) returned while 255 other threads waited" in failed
    assert sums == [256.0, 256.0, 256.0, 232.0]


@pytest.mark.parametrize("body, message", [
    ("extern __shared__ float s[]; s[0] = 1; y[0] = s[0];", "dynamic shared memory is not emulated"),
    ("atomicAdd(y, 1.0f);", "atomics are not emulated"),
    ("y[0] = __shfl_down_sync(0xffffffff, y[0], 1);", "warp shuffles are not emulated"),
    ("y[0] = __syncthreads_count(y[0] > 0);", "__syncthreads_count, _and and _or are not emulated"),
])
def test_what_it_cannot_emulate_is_refused_not_run_wrongly(tmp_path, body, message):
    fails_on_fake_cupy(f"""
        import cupy
        k = cupy.RawKernel('extern "C" __global__ void f(float* y) {{ {body} }}', "f")
        k((1,), (32,), (cupy.zeros(32, dtype=cupy.float32),))
    """, tmp_path, message)


def test_a_source_that_does_not_compile_says_so(tmp_path):
    fails_on_fake_cupy("""
        import cupy
        k = cupy.RawKernel('extern "C" __global__ void f(float* y) { y[0] = undefined_name; }', "f")
        k((1,), (1,), (cupy.zeros(1, dtype=cupy.float32),))
    """, tmp_path, "does not compile", "undefined_name")
