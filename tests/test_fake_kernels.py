"""The fake CuPy's ``ElementwiseKernel`` and ``ReductionKernel`` (``tests/fake_cupy/cupy/_kernels.py``) and the
launch shape of its ``RawKernel``: what CuPy 14.2 refuses, the fake refuses, or a kernel call that would raise
on the GPU passes on the fake (``cupy/_core/_kernel.pyx``: ``_decide_params_type_core``,
``_get_out_args_with_params``; ``cupy/cuda/function.pyx``: ``Function.__call__``)."""

from __future__ import annotations

import shutil

import pytest

from test_cupy_rules import fails_on_fake_cupy, last_json, run_with_fake_cupy

_SGD = """
    import json, numpy as np, cupy
    sgd = cupy.ElementwiseKernel("T g, T lr", "T p", "p -= lr * g;", "sgd")
    relu_backward = cupy.ElementwiseKernel("T dy, bool mask", "T dx", "dx = dy * mask;", "relu_backward")
    count = cupy.ReductionKernel("L t, int64 ignore", "L y", "t != ignore", "a + b", "y = a", "0", "count")
    p = cupy.ones(3, dtype=cupy.float32)
    g = cupy.asarray(np.array([1.0, 2.0, 3.0], dtype=np.float32))
"""


@pytest.mark.parametrize("call, error", [
    # A device scalar of another dtype: CuPy never casts an array argument.
    ("sgd(g, cupy.asarray(np.float64(0.1)), p)", "TypeError: Type is mismatched. lr float64 float32 T"),
    ("sgd(g.astype(cupy.float64), 0.1, p)", "TypeError: Type is mismatched. g float64 float32 T"),
    ("relu_backward(g, g > 1, cupy.empty(3, dtype=cupy.float64))",
     "TypeError: Type is mismatched. dy float32 float64 T"),
    ("relu_backward(g, (g > 1).astype(cupy.int8), cupy.empty_like(g))",
     "TypeError: Type is mismatched. mask int8 bool"),
    ("sgd(g, 0.1, p.get())", "Unsupported type"),
    ("sgd(g, 0.1, cupy.ones(4, dtype=cupy.float32)[:1])", "ValueError: Out shape is mismatched"),
    ("sgd(g, 0.1)", None),  # the output made: (3,) float32
    ("sgd(g)", "Wrong number of arguments for 'sgd'"),
    ("count(cupy.asarray(np.array([1, -100, 2])), cupy.asarray(np.int32(-100)))",
     "TypeError: Type is mismatched. ignore int32 int64"),
])
def test_kernel_arguments_are_checked_as_cupy_checks_them(tmp_path, call, error):
    proc = run_with_fake_cupy(_SGD + f"""
    out = {call}
    print(json.dumps([str(out.dtype), list(out.shape)]))
    """, tmp_path)
    if error is None:
        assert last_json(proc) == ["float32", [3]]
    else:
        assert proc.returncode != 0 and error in proc.stderr, proc.stderr


def test_scalars_take_their_parameters_type_and_outputs_come_back(tmp_path):
    """A Python float given for ``T`` is rounded to float32 first (CuPy's ``CScalar.apply_dtype``); the call
    returns its output (the array given); a reduction sums in its output's type."""
    out = last_json(run_with_fake_cupy(_SGD + """
    returned = sgd(g, 0.1, p)
    labels = cupy.asarray(np.array([1, -100, 2, 3], dtype=np.int32))
    n = count(labels, -100)
    print(json.dumps({"p": p.get().tolist(), "same": returned is p, "n": int(n), "n_dtype": str(n.dtype),
                      "exact": p.get().tolist() == (np.float32(1) - np.float32(0.1) * g.get()).tolist()}))
    """, tmp_path, FAKE_CUPY_ROUNDING="0"))  # the fake's own arithmetic, not a GPU's rounding
    assert out["same"] and out["exact"] and out["n"] == 3 and out["n_dtype"] == "int32", out


@pytest.mark.skipif(shutil.which("g++") is None, reason="the fake RawKernel builds kernels with g++")
@pytest.mark.parametrize("grid, block, error", [
    ("4", "(256,)", "Argument 'grid' has incorrect type (expected tuple, got int)"),
    ("(4,)", "[256]", "Argument 'block' has incorrect type (expected tuple, got list)"),
    ("(1,)", "(2048,)", "1024 threads per block"),
    ("(1, 70000)", "(32,)", "65535 blocks along y"),
])
def test_a_raw_kernel_launch_shape_is_checked_as_cuda_checks_it(tmp_path, grid, block, error):
    fails_on_fake_cupy(f"""
    import cupy
    k = cupy.RawKernel(r'extern "C" __global__ void noop(float* y) {{}}', "noop")
    k({grid}, {block}, (cupy.zeros(1, dtype=cupy.float32),))
    """, tmp_path, error)
