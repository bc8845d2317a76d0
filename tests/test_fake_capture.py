"""Stream capture in the fake CuPy (``tests/fake_cupy/cupy/cuda/stream.py``), which the captured
training step is checked with on machines without a GPU: it must record without running, replay
without Python, and refuse what CuPy and CUDA refuse during a capture, or those checks prove nothing.
Read from CuPy 14's ``cupy/cuda/stream.pyx``, ``graph.pyx``, ``cupy_backends/cuda/libs/cublas.pyx`` and
``curand.pyx`` (``setStream``), ``cupy/_core/_routines_linalg.pyx`` (which products reach cuBLAS)."""

from __future__ import annotations

import shutil

import pytest

from test_cupy_rules import last_json, run_with_fake_cupy

_STEP = r'''
    import json, numpy as np, cupy
    from cupy.cuda import memory
    SOURCE = r"""
    extern "C" __global__ void twice_plus(const double* x, double* y, long long n) {
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) y[i] = 2.0 * x[i] + y[i];
    }
    """
    raw = cupy.RawKernel(SOURCE, "twice_plus")
    scale = cupy.ElementwiseKernel("T x, T a", "T y", "y = y * a + x;", "scale")
    total = cupy.ReductionKernel("T x", "T y", "x * x", "a + b", "y = a", "0", "total")

    def state():
        rng = np.random.default_rng(0)
        return {"x": cupy.asarray(rng.standard_normal(8)), "y": cupy.asarray(rng.standard_normal(8)),
                "i": cupy.zeros((), dtype=cupy.int64), "log": cupy.zeros(4),
                "idx": cupy.asarray(np.arange(8)[::-1].copy())}

    def step(s, baked):
        s["x"] += 0.5 * s["y"]                               # operator, in place
        z = cupy.where(s["x"] > 0, s["x"], -s["x"])         # function, new output
        cupy.multiply(z, 0.25, out=s["y"])                  # ufunc with out=
        s["y"][0:2] = cupy.take(s["x"], s["idx"][0:2])      # setitem from a gather
        scale(s["x"], 0.9, s["y"])                          # ElementwiseKernel, output in place
        s["log"][s["i"] % 4] = total(s["y"])                # ReductionKernel into a slot chosen on the device
        raw((1,), (8,), (s["x"], s["y"], 8))                 # RawKernel
        s["i"] += 1
        s["x"] += baked                                      # a Python number: baked into the graph
    '''


def _skip_without_compiler():
    if shutil.which("g++") is None:
        pytest.skip("the fake RawKernel builds kernels with g++, which this machine lacks")


def test_a_launch_replays_the_capture_on_the_same_arrays_and_a_python_number_stays_baked(tmp_path):
    _skip_without_compiler()
    out = last_json(run_with_fake_cupy(_STEP + """
    eager = state()
    for k in range(4):
        step(eager, 1.0)                       # what four launches of a step captured with baked = 1.0 give
    captured = state()
    pool = cupy.cuda.MemoryPool()
    stream = cupy.cuda.Stream(non_blocking=True)
    before = {k: v.get() for k, v in captured.items()}
    with cupy.cuda.using_allocator(pool.malloc), stream:
        stream.begin_capture()
        step(captured, 1.0)
        graph = stream.end_capture()
    unchanged = all(np.array_equal(before[k], v.get()) for k, v in captured.items())
    for k in range(4):
        graph.launch()
    print(json.dumps({"unchanged": unchanged, "kernels": len(graph),
                      "equal": {k: np.allclose(v.get(), eager[k].get(), rtol=1e-13, atol=1e-13)
                                for k, v in captured.items()},
                      "moved_on": int(captured["i"].get())}))
    """, tmp_path))
    assert out["unchanged"], "a capture records the kernels; CUDA runs none of them until the graph is launched"
    assert out["kernels"] >= 12
    assert all(out["equal"].values()), out["equal"]
    assert out["moved_on"] == 4


def test_a_python_number_read_at_capture_is_what_every_launch_uses(tmp_path):
    """The bug a captured step must not have: a counter kept in Python is read once, at the capture."""
    out = last_json(run_with_fake_cupy("""
    import json, cupy
    x, counter = cupy.zeros(3), 5
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        x += counter
        counter += 1
        graph = stream.end_capture()
    for _ in range(3):
        graph.launch()
    print(json.dumps(x.get().tolist()))
    """, tmp_path))
    assert out == [15.0, 15.0, 15.0]


def test_new_arrays_of_a_capture_hold_garbage_until_the_launch(tmp_path):
    out = last_json(run_with_fake_cupy("""
    import json, math, cupy
    x = cupy.ones(3)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        y = x * 2.0
        graph = stream.end_capture()
    before = y.get().tolist()
    graph.launch()
    print(json.dumps({"before": [math.isnan(v) for v in before], "after": y.get().tolist()}))
    """, tmp_path))
    assert out == {"before": [True, True, True], "after": [2.0, 2.0, 2.0]}



def test_a_reshape_that_copies_is_a_kernel_of_the_capture(tmp_path):
    """Reshaping a transposed view copies (CuPy: a kernel, captured and replayed); reshaping a contiguous
    array stays a view, no kernel. The fake had run the copy at the capture only, on garbage."""
    out = last_json(run_with_fake_cupy("""
    import json, cupy
    x = cupy.arange(6, dtype=cupy.float64).reshape(2, 3)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        y = x * 2.0
        flat, view = cupy.reshape(y.T, (-1,)), y.reshape(-1)
        graph = stream.end_capture()
    graph.launch()
    print(json.dumps({"flat": flat.get().tolist(), "view": view.get().tolist(), "kernels": graph.kernels}))
    """, tmp_path))
    assert out == {"flat": [0.0, 6.0, 2.0, 8.0, 4.0, 10.0], "view": [0.0, 2.0, 4.0, 6.0, 8.0, 10.0],
                   "kernels": ["multiply", "reshape"]}


_REFUSED = [
    ("a @ b", NotImplementedError, "calling cuBLAS API during stream capture is currently unsupported"),
    ("cupy.matmul(a, b)", NotImplementedError, "calling cuBLAS API during stream capture"),
    ("cupy.dot(a, b)", NotImplementedError, "calling cuBLAS API during stream capture"),
    ("cupy.tensordot(a, b, axes=1)", NotImplementedError, "calling cuBLAS API during stream capture"),
    ("cupy.einsum('ij,jk->ik', a, b)", NotImplementedError, "calling cuBLAS API during stream capture"),
    ("cupy.inner(a, a)", NotImplementedError, "calling cuBLAS API during stream capture"),
    ("cupy.vdot(a, a)", NotImplementedError, "calling cuBLAS API during stream capture"),
    ("cupy.linalg.solve(a, a)", NotImplementedError, "calling cuSOLVER API during stream capture"),
    ("cupy.random.rand(3)", NotImplementedError, "calling cuRAND API during stream capture"),
    ("a.get()", RuntimeError, "the current stream is capturing, so D2H transfers are disallowed"),
    ("cupy.asnumpy(a)", RuntimeError, "the current stream is capturing, so D2H transfers are disallowed"),
    ("float(a[0, 0])", RuntimeError, "the current stream is capturing, so D2H transfers are disallowed"),
    ("int(a[0, 0])", RuntimeError, "the current stream is capturing, so D2H transfers are disallowed"),
    ("bool(a[0, 0] > 0)", RuntimeError, "the current stream is capturing, so D2H transfers are disallowed"),
    ("a[0, 0].item()", RuntimeError, "the current stream is capturing, so D2H transfers are disallowed"),
    ("stream.synchronize()", "CUDARuntimeError", "cudaErrorStreamCaptureUnsupported"),
    ("cupy.cuda.Device(0).synchronize()", "CUDARuntimeError", "cudaErrorStreamCaptureUnsupported"),
    ("cupy.asarray(np.ones(3))", RuntimeError, "so H2D transfers are disallowed"),
    # sized by the data: CuPy reads the count of True back first (int(mask_scanned[-1]), "# synchronize!")
    ("a[a > 10]", RuntimeError, "the current stream is capturing, so D2H transfers are disallowed"),
    ("a[a > 10] = 0.0", RuntimeError, "the current stream is capturing, so D2H transfers are disallowed"),
    ("a[:, a[0] > 10]", RuntimeError, "the current stream is capturing, so D2H transfers are disallowed"),
    ("cupy.nonzero(a)", RuntimeError, "the current stream is capturing, so D2H transfers are disallowed"),
    ("cupy.where(a > 10)", RuntimeError, "the current stream is capturing, so D2H transfers are disallowed"),
    ("cupy.unique(a)", RuntimeError, "the current stream is capturing, so D2H transfers are disallowed"),
]


@pytest.mark.parametrize("call, error, message", _REFUSED, ids=[c for c, _, _ in _REFUSED])
def test_what_cupy_refuses_during_a_capture_is_refused(tmp_path, call, error, message):
    out = last_json(run_with_fake_cupy(f"""
    import json, numpy as np, cupy
    a = b = cupy.asarray(np.arange(9.0).reshape(3, 3) + 10 * np.eye(3))
    stream = cupy.cuda.Stream(non_blocking=True)
    outside = None
    try:
        {call}                                   # outside a capture: fine
    except Exception as e:
        outside = repr(e)
    with stream:
        stream.begin_capture()
        try:
            {call}
            raised = None
        except Exception as e:
            raised = (type(e).__name__, str(e))
        try:
            stream.end_capture()
            ended = "ok"
        except Exception as e:
            ended = str(e)
    print(json.dumps({{"outside": outside, "raised": raised, "ended": ended}}))
    """, tmp_path))
    assert out["outside"] is None, out
    name = error if isinstance(error, str) else error.__name__
    assert out["raised"] is not None and out["raised"][0] == name and message in out["raised"][1], out
    if name == "CUDARuntimeError":  # as in CUDA, a synchronous call invalidates the capture
        assert out["ended"].startswith("cudaErrorStreamCaptureInvalidated"), out
    elif name == "RuntimeError":  # CuPy refuses a copy before calling CUDA: the capture goes on
        assert out["ended"] == "ok", out


def test_what_a_capture_allows(tmp_path):
    """Integer products run CuPy's own kernel (no cuBLAS); a Generator draws with a kernel on its device
    state, so each launch draws new numbers; the legacy stream cannot capture; work on another stream
    runs at once."""
    out = last_json(run_with_fake_cupy("""
    import json, numpy as np, cupy
    i = cupy.asarray(np.arange(4).reshape(2, 2))
    gen = cupy.random.default_rng(cupy.random.Philox4x3210(1, size=256))
    stream, other = cupy.cuda.Stream(non_blocking=True), cupy.cuda.Stream(non_blocking=True)
    x = cupy.zeros(2)
    with stream:
        stream.begin_capture()
        p = i @ i
        u = gen.random((4,), dtype=cupy.float32)
        with other:
            x += 1.0
        graph = stream.end_capture()
    draws = []
    for _ in range(2):
        graph.launch()
        draws.append(u.get().tolist())
    try:
        cupy.cuda.Stream.null.begin_capture()
        legacy = None
    except RuntimeError as e:
        legacy = str(e)
    print(json.dumps({"p": p.get().tolist(), "draws_differ": draws[0] != draws[1], "legacy": legacy,
                      "x": x.get().tolist()}))
    """, tmp_path))
    assert out == {"p": [[2, 3], [6, 11]], "draws_differ": True,
                   "legacy": "cannot capture on the default (legacy) stream", "x": [1.0, 1.0]}


@pytest.mark.parametrize("pool", ["shared", "own"])
def test_a_launch_after_a_written_array_went_back_to_the_shared_pool_is_refused(tmp_path, pool):
    """On a GPU the shared pool gives freed memory to the next array, and a launch overwrites it; a
    capture under a pool of its own keeps that memory for the graph."""
    proc = run_with_fake_cupy(f"""
    import cupy
    x = cupy.ones(3)
    own = cupy.cuda.MemoryPool()
    stream = cupy.cuda.Stream(non_blocking=True)
    with cupy.cuda.using_allocator(own.malloc if {pool == "own"} else None), stream:
        stream.begin_capture()
        y = x * 2.0
        x += y
        graph = stream.end_capture()
    del y
    graph.launch()
    print(x.get().tolist())
    """, tmp_path)
    if pool == "own":
        assert proc.returncode == 0 and "[3.0, 3.0, 3.0]" in proc.stdout, proc.stderr
    else:
        assert proc.returncode != 0 and "made during the capture from the shared memory pool and freed" in proc.stderr


def test_the_allocator_of_using_allocator_is_this_threads_and_none_is_raw_cuda_malloc(tmp_path):
    """CuPy 14.2: ``using_allocator`` sets a thread-local allocator (``cupy/cuda/__init__.py``), ``None`` there
    means raw cudaMalloc without a pool, and ``set_allocator`` inside it raises (``cupy/cuda/memory.pyx``)."""
    out = last_json(run_with_fake_cupy("""
    import json, threading, cupy
    from cupy.cuda import memory
    pool = cupy.cuda.MemoryPool()
    seen = {}
    with cupy.cuda.using_allocator(pool.malloc):
        worker = threading.Thread(target=lambda: seen.update(other=memory.get_allocator() == pool.malloc))
        worker.start()
        worker.join()
        seen["here"] = memory.get_allocator() == pool.malloc
        try:
            memory.set_allocator(None)
        except ValueError as e:
            seen["set"] = str(e)
    with cupy.cuda.using_allocator(None):
        seen["none_is_default_pool"] = memory.get_allocator() == cupy.get_default_memory_pool().malloc
    print(json.dumps(seen))
    """, tmp_path))
    assert out == {"other": False, "here": True, "none_is_default_pool": False,
                   "set": "Can't change the global allocator inside `using_allocator` context manager"}
