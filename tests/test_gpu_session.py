"""The xpnet side of ci/gpu-session.sh's measurements (issue 23), run before a GPU session ever runs them: the
cells of ``compare.py --device cuda`` (``compare_cuda.xpnet_cells``: eager, captured, peak memory), its LSTM row
(``lstm_lm.xpnet_runner``), ``profile_step.py --device cuda`` (``profile_step.xpnet_profile``) and the NCCL step
(``distributed.py --device cuda --require-nccl``). The ``gpu`` tests run on the fake CuPy of tests/fake_cupy in CI
and on the GPU in the session's pytest step, before its measurements; PyTorch's CUDA side needs a GPU."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import array_api_compat
import numpy as np
import pytest

import xpnet as xn

from conftest import on_fake_cupy, require_cuda

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def benchmarks(monkeypatch):
    """The benchmark scripts importable as modules, as they import each other."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import compare_cuda  # noqa: PLC0415
    import lstm_lm  # noqa: PLC0415
    import profile_step  # noqa: PLC0415
    return argparse.Namespace(compare_cuda=compare_cuda, lstm_lm=lstm_lm, profile_step=profile_step)


@pytest.mark.gpu
@pytest.mark.parametrize("workload, optimizer", [("mlp-small", "adam"), ("cnn", "sgd")])
def test_gpu_compare_times_xpnets_eager_and_captured_step_alike(benchmarks, workload, optimizer):
    """Both xpnet cells of a row of compare.py's CUDA table exist, and the captured one times the same training:
    its model, after its 2 warm-up steps and n launches, has eager training's weights after 2 + n steps (within
    test_graph's tolerance for the captured product's other order of summation)."""
    dev = require_cuda()
    from _steps import best_times, peak_memory
    from compare import WORKLOADS

    _, make, shape = WORKLOADS[workload]
    rng = np.random.default_rng(0)
    x, t = rng.random((4, *shape), dtype=np.float32), rng.integers(0, 10, 4)
    impls, sync = benchmarks.compare_cuda.xpnet_cells(make, optimizer, dev, x, t)
    assert set(impls) == set(sync) == {"xpnet", "xpnet-graph"}
    best = best_times(impls, 1, 1, sync)  # each cell: one untimed call, then one timed
    assert all(np.isfinite(v) and v > 0 for v in best.values()), best
    peak = peak_memory(*impls["xpnet"], dev)  # a third eager step
    assert on_fake_cupy() or peak > 0  # the fake's pool counts no bytes
    eager, launch = impls["xpnet"][0], impls["xpnet-graph"][0]
    for _ in range(2):
        eager(*impls["xpnet"][1:])
    launch(None, None)
    sync["xpnet-graph"]()  # the graph's own stream
    eager_weights, captured_weights = eager.model.named_params(), launch.model.named_params()
    for name, weight in captured_weights.items():  # 5 steps each: 2 warm-up steps and 3 launches of the graph
        np.testing.assert_allclose(xn.to_numpy(weight), xn.to_numpy(eager_weights[name]), rtol=1e-3, atol=1e-5,
                                   err_msg=name)


@pytest.mark.gpu
def test_gpu_the_lstm_row_trains_xpnet_on_cupy(benchmarks):
    """The LSTM language model row of compare.py --device cuda: xpnet's side trains on CuPy (tiny sizes)."""
    dev = require_cuda()
    lstm_lm = benchmarks.lstm_lm
    xn.init.seed(0)
    model = lstm_lm.xpnet_model(30, 8, 0.5)
    before = {k: xn.to_numpy(v).copy() for k, v in model.named_params().items()}
    run = lstm_lm.xpnet_runner(model, lstm_lm.batches(2, 30, 2, 3), dev)
    run()
    run()
    for name, weight in model.named_params().items():
        assert array_api_compat.is_cupy_array(weight), (name, type(weight))
        after = xn.to_numpy(weight)
        assert np.isfinite(after).all() and not np.array_equal(after, before[name]), name


@pytest.mark.gpu
def test_gpu_profile_step_profiles_xpnet_on_cupy(benchmarks, capsys):
    """profile_step.py --device cuda's xpnet part: every layer's phases, the enqueue time and the products alone."""
    dev = require_cuda()
    args = argparse.Namespace(workload="mlp-small", batch=20, optimizer="adam", steps=1, repeats=1)
    rng = np.random.default_rng(0)
    whole, model, products = benchmarks.profile_step.xpnet_profile(
        args, dev, rng.random((20, 784), dtype=np.float32), rng.integers(0, 10, 20))
    out = capsys.readouterr().out
    for phase in ("0 Linear forward", "1 ReLU forward", "2 Linear forward", "loss forward", "loss backward",
                  "2 Linear backward", "1 ReLU backward", "0 Linear backward (parameters only)", "optimizer"):
        assert f"| {phase} | " in out, (phase, out)
    assert f"xpnet on {dev.name}" in out and "host time to enqueue a step" in out, out
    assert whole > 0 and products > 0 and len(model) == 3


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="mpiexec and the fake CuPy's NCCL-less run: Linux and macOS")
def test_the_nccl_step_fails_where_the_gradients_went_through_the_host(tmp_path):
    """distributed.py --device cuda on the fake CuPy (no NCCL): every run is timed on cuda:0, and --require-nccl
    (ci/gpu-session.sh's nccl step) fails saying that the 1-rank run reduced through host memory, not NCCL."""
    if not (Path(sys.executable).parent / "mpiexec").is_file() and shutil.which("mpiexec") is None:
        pytest.skip("no mpiexec on this machine")  # where distributed.py looks for it
    env = {**os.environ, "FAKE_CUPY_DEVICES": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "fake_cupy"), str(ROOT),
                                          os.environ.get("PYTHONPATH", "")])}
    env.pop("XPNET_DEVICE", None)
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "distributed.py"), "--device", "cuda", "--steps", "1",
                           "--require-nccl"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "| 1 rank under mpiexec | host |" in proc.stdout and "cuda:0, median of 1 steps" in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("--require-nccl: allreduce_grads on 1 rank under mpiexec on cuda:0: through host, ")
    assert last.endswith(" ms per step, not NCCL"), proc.stderr


@pytest.mark.gpu
def test_gpu_the_cuda_table_prints_every_cell(benchmarks, monkeypatch, capsys):
    """compare.py --device cuda's table (``compare_cuda.cuda_table``) with PyTorch's CUDA side stood in for by
    PyTorch on the CPU, its capture by its eager step and its peak by 0: one row per workload, batch and
    optimizer, every cell filled, xpnet's captured one included (BatchNorm and Dropout in the modern CNN)."""
    require_cuda()
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    import compare
    from _steps import torch_impl

    class Batch:
        """``torch.from_numpy(x)``, whose ``.to("cuda")`` stays on the CPU."""

        def __init__(self, a):
            self.tensor = torch.from_numpy(a)

        def to(self, device):
            return self.tensor

    on_cpu = argparse.Namespace(from_numpy=Batch, cuda=argparse.Namespace(synchronize=lambda: None))
    compare_cuda = benchmarks.compare_cuda
    monkeypatch.setattr(compare_cuda, "torch_impl", lambda _, model, optimizer, device, **kwargs: torch_impl(
        torch, model, optimizer, "cpu"))
    monkeypatch.setattr(compare_cuda.torch_cuda, "graphed", lambda _, make_step, x, t: make_step(False))
    monkeypatch.setattr(compare_cuda.torch_cuda, "peak_bytes", lambda *_: 0)
    args = argparse.Namespace(only=["mlp-small", "cnn-modern"], batches=[4], steps=1, repeats=1, compile=False,
                              lstm_steps=0)
    dev = xn.device("cuda", fallback=False)
    compare_cuda.cuda_table(args, dev, on_cpu, compare.rows(args))
    lines = [line.strip().strip("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.split("|")))) for line in lines[1:]]
    assert [(r["workload"], r["optimizer"]) for r in rows] == [
        ("MLP 784-100-10", "sgd"), ("MLP 784-100-10", "adam"),
        ("CNN 2x(conv3x3-BN-ReLU-pool)-128-10", "sgd"), ("CNN 2x(conv3x3-BN-ReLU-pool)-128-10", "adam")], rows
    for row in rows:
        assert len(row) == len(header) == 9 and all(cell not in ("", "-") for cell in row.values()), row
        assert row["PyTorch eager s/epoch (x eager)"].endswith("(1.00x)"), row
