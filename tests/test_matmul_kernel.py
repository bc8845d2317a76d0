"""xpnet's own matrix-product kernel (``xpnet/backend/matmul_kernel.py``), which a captured training step
multiplies with where CuPy refuses cuBLAS: equal to NumPy on the fake CuPy, whose RawKernel runs the
block's threads as fibers switched at each ``__syncthreads()`` (``tests/fake_cupy/cupy/_raw.py``), and
equal to cuBLAS on a GPU (``pytest -m gpu``). That it compiles with NVRTC is ``tests/test_cuda_sources.py``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import xpnet as xn
from xpnet.backend.matmul_kernel import MIN_CHUNK, TARGET_BLOCKS, THREADS, TILE_K, TILE_M, TILE_N, matmul_source, plan

from conftest import on_fake_cupy, require_cuda
from test_cupy_rules import last_json, run_with_fake_cupy

needs_compiler = pytest.mark.skipif(shutil.which("g++") is None,
                                    reason="the fake RawKernel builds kernels with g++, which this machine lacks")

# (m, k, n): tiles that divide and do not, one element, k = 0, k shorter and longer than a step, split-K
_SIZES = [(64, 32, 64), (130, 70, 65), (1, 1, 1), (33, 0, 4), (5, 17, 3), (3, 5000, 4), (100, 784, 10)]


def test_the_source_is_importable_without_cupy_and_refuses_other_dtypes():
    assert 'extern "C" __global__ void xpnet_matmul_float32(' in matmul_source("float32")
    assert "typedef double xpnet_t;" in matmul_source("float64")
    with pytest.raises(ValueError, match="float16"):
        matmul_source("float16")


@pytest.mark.parametrize("m, k, n, batch", [*((m, k, n, 1) for m, k, n in _SIZES), (784, 100, 100, 1),
                                            (27, 78400, 16, 1), (100_000, 9, 8, 1), (2, 10**6, 2, 1),
                                            (16, 9, 784, 100), (9, 784, 16, 100), (4, 5000, 4, 3), (1, 1, 1, 65535)])
def test_the_plan_covers_every_output_and_the_whole_shared_axis_once(m, k, n, batch):
    (gx, gy, gz), block, chunk, splits = plan(m, n, k, batch)
    assert block == THREADS and gx * TILE_M >= m > (gx - 1) * TILE_M and gy * TILE_N >= n > (gy - 1) * TILE_N
    assert chunk % TILE_K == 0 and splits * chunk >= k > (splits - 1) * chunk or k == 0 and splits == 1
    assert gz == batch * splits <= 65535
    assert splits == 1 or (chunk >= MIN_CHUNK and gx * gy * gz <= 2 * TARGET_BLOCKS)
    if (m, k, n) == (27, 78400, 16):  # Conv2d's weight gradient: one tile of output, split along the pixels
        assert splits > 64


def test_the_plan_refuses_more_blocks_than_cuda_has_along_z_or_y():
    with pytest.raises(ValueError, match="batch must be 1 to 65535"):
        plan(1, 1, 1, 65536)
    assert plan(1, 65535 * 64, 1)[0][1] == 65535
    with pytest.raises(ValueError, match="past CUDA's limit of 65535 on gridDim.y"):
        plan(1, 65535 * 64 + 1, 1)


_CHECK = """
    import json, numpy as np, cupy
    from xpnet.backend.fast_cupy_capture import kernel_matmul
    rng = np.random.default_rng(0)

    def views(a):
        '''a as a C-contiguous array, the transposed view of a transposed copy, a reversed view.'''
        yield "c", cupy.asarray(a)
        yield "t", cupy.asarray(a.T.copy()).T
        yield "r", cupy.asarray(a[::-1].copy())[::-1]

    errors = {}
    for dtype in ("float32", "float64"):
        for m, k, n in SIZES:
            a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
            ref = a.astype(np.float64) @ b.astype(np.float64)
            for (ka, ga), (kb, gb) in [(x, y) for x in views(a) for y in views(b)][:LIMIT]:
                for launch in range(2):  # the fake runs a block's threads forward first, then backward first
                    c = kernel_matmul(ga, gb)
                    errors[f"{dtype} {m}x{k}x{n} {ka}{kb} {launch}"] = [
                        float(np.max(np.abs(c.get() - ref), initial=0)), c.dtype.name, list(c.shape),
                        bool(c.flags.c_contiguous)]
    print(json.dumps(errors))
"""


@needs_compiler
def test_the_kernel_equals_numpy_for_any_size_and_strides(tmp_path):
    """Both dtypes; sizes that divide the 64 x 64 x 16 tiles and ones that do not, k = 0 (zeros), split-K;
    each operand C-contiguous, a transposed view (Linear's ``x.T @ dy``, ``dy @ W.T``: read through its
    strides, never copied) or a reversed view (negative strides); each case launched twice."""
    out = last_json(run_with_fake_cupy(_CHECK.replace("SIZES", repr(_SIZES)).replace("LIMIT", "None"), tmp_path))
    assert len(out) == 2 * len(_SIZES) * 9 * 2
    for case, (error, dtype, shape, contiguous) in out.items():
        m, k, n = map(int, case.split()[1].split("x"))
        assert dtype == case.split()[0] and shape == [m, n] and contiguous, case
        assert error <= (2e-5 if dtype == "float32" else 1e-13) * np.sqrt(max(k, 1)) * 4, (case, error)


@needs_compiler
def test_stacks_of_products_equal_numpy(tmp_path):
    """Conv2d's per-sample products: W (F, K) @ col (N, K, P), dy (N, F, P) @ col.T (N, P, K) and
    W.T (K, F) @ dy (N, F, P); a stack of one broadcast; split-K in a stack; each launched twice."""
    out = last_json(run_with_fake_cupy("""
        import json, numpy as np, cupy
        from xpnet.backend.fast_cupy_capture import kernel_matmul
        rng = np.random.default_rng(0)
        errors = {}
        for dtype in ("float32", "float64"):
            w, col, dy = (rng.standard_normal(s).astype(dtype) for s in [(8, 27), (5, 27, 70), (5, 8, 70)])
            long_a, long_b = (rng.standard_normal(s).astype(dtype) for s in [(3, 4, 3000), (3, 3000, 5)])
            cases = {"W @ col": (w, col), "dy @ col.T": (dy, col.transpose(0, 2, 1)), "W.T @ dy": (w.T, dy),
                     "one of a stack": (w[None], col), "split-K": (long_a, long_b)}
            for name, (a, b) in cases.items():
                ga = cupy.asarray(a.T.copy()).T if a.ndim == 2 else cupy.asarray(np.ascontiguousarray(a))
                gb = cupy.asarray(b.copy()) if name != "dy @ col.T" else cupy.asarray(col).transpose(0, 2, 1)
                for launch in range(2):
                    c = kernel_matmul(ga, gb)
                    ref = a.astype(np.float64) @ b.astype(np.float64)
                    errors[f"{dtype} {name} {launch}"] = [float(np.max(np.abs(c.get() - ref))), list(c.shape),
                                                          list(ref.shape), c.dtype.name]
        print(json.dumps(errors))
    """, tmp_path))
    assert len(out) == 20
    for case, (error, shape, expected, dtype) in out.items():
        assert shape == expected and dtype == case.split()[0], case
        assert error <= (1e-3 if dtype == "float32" else 1e-11), (case, error)


@needs_compiler
@pytest.mark.parametrize("which", [0, 1])
def test_the_check_catches_a_missing_barrier_in_the_kernel(tmp_path, which):
    """Each of the kernel's two ``__syncthreads()`` matters, and the fake shows it: without the first a
    thread multiplies a tile other threads have not staged yet; without the second it stages the next
    tile over one other threads still multiply."""
    source = repr(("float32", which))
    code = _CHECK.replace("SIZES", "[(130, 70, 65)]").replace("LIMIT", "1").replace(
        "from xpnet.backend.fast_cupy_capture import kernel_matmul", f"""
    from xpnet.backend import fast_cupy_capture, matmul_kernel
    dtype, which = {source}
    text = matmul_kernel.matmul_source(dtype)
    at = [i for i in range(len(text)) if text.startswith("__syncthreads();", i)][which]
    fast_cupy_capture._KERNELS[dtype] = cupy.RawKernel(text[:at] + text[at + 16:], matmul_kernel.matmul_name(dtype))
    kernel_matmul = fast_cupy_capture.kernel_matmul""").replace('("float32", "float64")', '("float32",)')
    out = last_json(run_with_fake_cupy(code, tmp_path))
    assert len(out) == 2 and max(error for error, *_ in out.values()) > 1e-2, out


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_capturable_matmul_equals_cublas(dtype):
    """The kernel against cuBLAS on the seeds' and the CNN's shapes, tiles that do not divide, split-K,
    stacks of products."""
    dev = require_cuda()
    from xpnet.backend.fast_cupy_capture import kernel_matmul  # noqa: PLC0415 - imports CuPy
    rng = np.random.default_rng(0)
    tol = 1e-4 if dtype == "float32" else 1e-12
    # The fake CuPy runs a kernel's threads one by one (33 s of the suite for the two largest products): there
    # the smaller shapes run, test_the_kernel_equals_numpy_for_any_size_and_strides covers split-K.
    large = [] if on_fake_cupy() else [(27, 78400, 16), (100, 1000, 1000)]
    for m, k, n in [(100, 784, 100), (784, 100, 100), (100, 100, 10), (37, 5, 3), (130, 70, 65), *large, (33, 0, 4)]:
        a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
        ga, gb = dev.asarray(a), dev.asarray(b)
        for x, y in [(ga, gb), (dev.asarray(a.T.copy()).T, gb), (ga, dev.asarray(b.T.copy()).T)]:
            ours, cublas = kernel_matmul(x, y), x @ y
            assert xn.backend.same_device(ours, cublas) and ours.dtype == cublas.dtype and ours.shape == (m, n)
            np.testing.assert_allclose(xn.to_numpy(ours), xn.to_numpy(cublas), rtol=tol, atol=tol * np.sqrt(max(k, 1)))
    w, col, dy = (dev.asarray(rng.standard_normal(s).astype(dtype)) for s in [(64, 288), (10, 288, 196),
                                                                                (10, 64, 196)])
    for a, b in [(w, col), (dy, col.transpose(0, 2, 1)), (w.T, dy)]:  # Conv2d's per-sample products
        ours, cublas = kernel_matmul(a, b), a @ b
        assert ours.shape == cublas.shape and ours.dtype == cublas.dtype
        np.testing.assert_allclose(xn.to_numpy(ours), xn.to_numpy(cublas), rtol=tol, atol=tol * np.sqrt(a.shape[-1]))
