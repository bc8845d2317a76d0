"""CuPy's layer kernels (``xpnet.backend.cupy_layers``: fused softmax cross-entropy, ReLU, MaxPool2d,
BatchNorm, Dropout and the Philox numbers) equal the portable code: on the fake CuPy of ``tests/fake_cupy``
in a fresh process, where the raw kernels' CUDA source is built by g++ and run thread by thread, and in the
``gpu`` tests on a real GPU. The checks themselves are in ``tests/cupy_layer_checks.py`` and
``tests/cupy_random_checks.py``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import require_cuda

import cupy_layer_checks as checks
import cupy_random_checks
from test_cupy_rules import last_json, run_with_fake_cupy

TESTS = Path(__file__).parent
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None,
                               reason="the fake CuPy builds raw kernels with g++, which this machine lacks")
CHECKS = checks.CHECKS + cupy_random_checks.CHECKS


def _on_fake_cupy(code: str, tmp_path: Path) -> dict:
    return last_json(run_with_fake_cupy(f"import sys; sys.path.insert(0, {str(TESTS)!r})\n" + code, tmp_path))


@needs_gxx
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_cupy_layer_kernels_equal_portable_on_the_fake_cupy(tmp_path, check):
    out = _on_fake_cupy(f"""
import json
import xpnet as xn
import {check.__module__}
{check.__module__}.{check.__name__}(xn.device("cuda"))
print(json.dumps({{"done": True}}))
""", tmp_path)
    assert out == {"done": True}


@pytest.mark.gpu
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_cupy_layer_kernels_equal_portable_on_the_gpu(check):
    check(require_cuda())


@needs_gxx
def test_an_mlp_step_on_cupy_makes_fewer_than_half_the_launches(tmp_path):
    """Issue 23: the 784-100-10 batch-100 SGD step launched 49 kernels on CuPy (counted on the fake);
    the fused loss (its backward free, the accuracy from its row hits) and ReLU's kernels leave 25. The
    bound is tight: the trainer counting its accuracy by argmax again (+2) fails it."""
    out = _on_fake_cupy("""
import json
import cupy_layer_checks as checks
print(json.dumps({"per_step": checks.launches_per_mlp_step()}))
""", tmp_path)
    assert out["per_step"] <= 26, out


@needs_gxx
def test_an_lstm_step_on_cupy_launches_five_kernels(tmp_path):
    """An LSTM time step on CuPy, forward and backward, launched about 40 kernels through the portable cells
    (counted on the fake CuPy); the two fused kernels leave the products h @ Wh and da @ Wh^T, the kernels
    and the add of the state's gradient. The bound is tight: a separate add of ax (+1) fails it."""
    out = _on_fake_cupy("""
import json
import cupy_layer_checks as checks
print(json.dumps({"fast": checks.launches_per_lstm_step(True), "portable": checks.launches_per_lstm_step(False)}))
""", tmp_path)
    assert out["fast"] <= 5 and out["portable"] >= 30, out
