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
    the fused loss (its backward free, the accuracy from its row hits), ReLU's kernels, the epoch sums' one
    kernel (the loss and correct count added in one) and SGD's one kernel for the four parameters leave 18. The
    bound is tight: the trainer counting its accuracy by argmax again (+2), adding its sums one by one (+2), or SGD
    updating each parameter on its own (+3), fails it."""
    out = _on_fake_cupy("""
import json
import cupy_layer_checks as checks
print(json.dumps({"per_step": checks.launches_per_mlp_step()}))
""", tmp_path)
    assert out["per_step"] <= 19, out


@needs_gxx
def test_recurrent_steps_on_cupy_launch_a_few_kernels(tmp_path):
    """A time step on CuPy, forward and backward, launched 41 kernels (LSTM), 34 (GRU) and 8 (RNN, tanh or ReLU)
    through the portable cells (counted on the fake CuPy). The fused kernels leave the LSTM h @ Wh, its kernel; the
    gradients' kernel (which adds the carried state's gradient to dh), da @ Wh^T (4), the GRU one more, the add of
    dh * z to dah @ Wh^T (5), and the RNN the LSTM's four, with tanh or ReLU. The book's GRU (36 portable) leaves
    two products and two kernels each way and the add of dh_prev's two parts (9); the LSTM with proj_size (44) the
    LSTM's four, the products by Wr and Wr^T and, apart, the carried gradient's add and o * tanh(c) for Wr's
    gradient (8). The bounds are tight: a separate add of ax (+1), or of the carried gradient (+1), fails them."""
    out = _on_fake_cupy("""
import json
import cupy_layer_checks as checks
out = {f"{kind} {fast}": checks.launches_per_recurrent_step(kind, fast)
       for kind in ("RNN", "LSTM", "GRU") for fast in (True, False)}
out.update({f"relu {fast}": checks.launches_per_recurrent_step("RNN", fast, nonlinearity="relu")
            for fast in (True, False)})
out.update({f"book {fast}": checks.launches_per_recurrent_step("GRU", fast, convention="book")
            for fast in (True, False)})
out.update({f"proj {fast}": checks.launches_per_recurrent_step("LSTM", fast, proj_size=8) for fast in (True, False)})
print(json.dumps(out))
""", tmp_path)
    assert out["LSTM True"] <= 4 and out["GRU True"] <= 5 and out["RNN True"] <= 4 and out["relu True"] <= 4, out
    assert out["LSTM False"] >= 30 and out["GRU False"] >= 30 and out["RNN False"] >= 8 and out["relu False"] >= 8, out
    assert out["book True"] <= 9 and out["book False"] >= 30, out
    assert out["proj True"] <= 8 and out["proj False"] >= 30, out
