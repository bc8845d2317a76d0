"""Data parallel over MPI: each test starts ``mpiexec -n N python tests/mpi_scripts/<script>``.

Skipped with a reason where mpi4py or ``mpiexec`` is missing. Several checks share one launch
(each start costs about a second).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import xpnet as xn

SCRIPTS = Path(__file__).parent / "mpi_scripts"
TIMEOUT_S = 120


def _find_mpiexec() -> str | None:
    """The ``mpiexec`` beside this Python (where the ``mpich`` wheel puts it) first, then on PATH."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / "mpiexec"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("mpiexec")


MPIEXEC = _find_mpiexec()
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None


def needs_mpi(test):
    """Mark ``test`` as starting mpiexec; skip it with a reason where mpi4py or mpiexec is missing."""
    marks = (pytest.mark.mpi,
             pytest.mark.skipif(not HAVE_MPI4PY, reason="mpi4py is not installed (pip install -e .[mpi])"),
             pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec beside the Python interpreter or on PATH "
                                                         "(pip install mpich)"))
    for mark in marks:
        test = mark(test)
    return test


def launch(n: int, script: str, *args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """``mpiexec -n n python script args`` with one BLAS/OpenMP thread per rank; never hangs the suite."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")
    cmd = [MPIEXEC, "-n", str(n), sys.executable, str(SCRIPTS / script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"mpi_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_equal = _load_script("train_equal")


# -- without MPI ------------------------------------------------------------------------------


def test_import_does_not_load_mpi4py():
    code = "import sys, xpnet; assert 'mpi4py' not in sys.modules, 'import xpnet loaded mpi4py'; " \
           "print(xpnet.distributed.init.__name__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "init"


def test_init_without_mpi4py_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `from mpi4py import MPI` raise ImportError
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    with pytest.raises(ImportError, match=r"pip install xpnet\[mpi\]") as info:
        xn.distributed.init()
    assert isinstance(info.value, xn.distributed.MPIUnavailableError)


# -- collectives ------------------------------------------------------------------------------


@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_collectives(n):
    """broadcast_params, allreduce_grads (unequal and zero counts), allreduce_sum/mean, bcast_object,
    one message per step, and the errors: see tests/mpi_scripts/collectives.py."""
    proc = launch(n, "collectives.py")
    assert_ok(proc)
    # mpiexec merges the ranks' stdout without keeping lines whole: search, do not split
    done = sorted(int(r) for r in re.findall(rf"collectives ok: rank (\d+) of {n}\b", proc.stdout))
    assert done == list(range(n)), proc.stdout


@needs_mpi
def test_failure_on_one_rank_ends_the_job():
    proc = launch(2, "abort.py", timeout=60)
    assert proc.returncode != 0
    assert "[rank 1] RuntimeError: planted failure on rank 1" in proc.stderr
    assert "[rank 1] Traceback" in proc.stderr


# -- end to end with xn.train -----------------------------------------------------------------


def _reference(config: str, device: str = "cpu"):
    with contextlib.redirect_stdout(io.StringIO()):
        return train_equal.run(config, device=device)


def _rank_results(out: Path, name: str, n: int):
    results = []
    for r in range(n):
        with np.load(out / f"{name}-rank{r}.npz") as z:
            weights = {k: z[k] for k in z.files}
        results.append((weights, json.loads((out / f"{name}-rank{r}.json").read_text())))
    return results


def _assert_matches_reference(results, reference, dtype: str) -> None:
    """Every rank's weights equal the one-process weights up to rounding, and equal each other
    exactly; histories and evaluations are identical on every rank and match the reference."""
    ref_weights, ref_epochs, ref_eval = reference
    tol = 1e-5 if dtype == "float32" else 1e-12
    first_weights, first_record = results[0]
    for r, (weights, record) in enumerate(results):
        assert weights.keys() == ref_weights.keys()
        for k, w in ref_weights.items():
            np.testing.assert_allclose(weights[k], w, rtol=tol, atol=tol * np.abs(w).max(), err_msg=f"rank {r} {k}")
            np.testing.assert_array_equal(weights[k], first_weights[k], err_msg=f"rank {r} {k} vs rank 0")
        assert record["epochs"] == first_record["epochs"], f"rank {r} has another history than rank 0"
        assert record["evaluate"] == first_record["evaluate"]
    assert len(first_record["epochs"]) == len(ref_epochs)
    for mine, ref in zip(first_record["epochs"], ref_epochs):
        assert mine.keys() == ref.keys()
        for k, v in ref.items():
            assert mine[k] == pytest.approx(v, rel=tol, abs=tol), f"history {k}: {mine[k]} vs {v}"
    for k, v in ref_eval.items():
        assert first_record["evaluate"][k] == pytest.approx(v, rel=tol, abs=tol)


@pytest.fixture(scope="module")
def parallel_runs(tmp_path_factory):
    """Two launches: 2 ranks (also writing a checkpoint after CHECKPOINT_EPOCH epochs), then 3 ranks
    (also resuming that checkpoint). Returns {n: output folder}."""
    outs = {n: tmp_path_factory.mktemp(f"ranks{n}") for n in (2, 3)}
    checkpoint = outs[2] / "ckpt.npz"
    assert_ok(launch(2, "train_equal.py", str(outs[2]), "--checkpoint", str(checkpoint)))
    assert checkpoint.is_file()
    assert_ok(launch(3, "train_equal.py", str(outs[3]), "--resume", str(checkpoint)))
    return outs


@needs_mpi
@pytest.mark.parametrize("config", list(train_equal.CONFIGS))
def test_train_on_ranks_equals_one_process(parallel_runs, config):
    """102 samples in batches of 10 split unevenly over 2 and 3 ranks (the last batch of 2 leaves one
    of 3 ranks empty); each rank starts from other weights, so this also checks that train
    broadcasts rank 0's."""
    reference = _reference(config)
    for n, out in parallel_runs.items():
        _assert_matches_reference(_rank_results(out, config, n), reference, train_equal.CONFIGS[config][1])


@needs_mpi
def test_only_rank_0_prints(parallel_runs):
    for n, out in parallel_runs.items():
        root = (out / "stdout-rank0.txt").read_text()
        assert f"{n} ranks" in root and "epoch 3/3" in root
        for r in range(1, n):
            assert (out / f"stdout-rank{r}.txt").read_text() == "", f"rank {r} of {n} printed"


@needs_mpi
def test_resume_with_another_rank_count(parallel_runs):
    """A checkpoint written by 2 ranks after 2 epochs, resumed by 3 ranks to 3 epochs, equals 3
    uninterrupted epochs in one process."""
    config = train_equal.RESUME_CONFIG
    _assert_matches_reference(_rank_results(parallel_runs[3], "resumed", 3), _reference(config),
                              train_equal.CONFIGS[config][1])


# -- GPU: NCCL, and ranks sharing one GPU through host memory ----------------------------------


def _needs_gpu():
    if not xn.cuda_available():
        pytest.skip(f"no GPU: {xn.backend.cuda_unavailable_reason()}")


def _nccl_available() -> bool:
    try:
        from cupy.cuda import nccl
    except Exception:
        return False
    return bool(getattr(nccl, "available", False))


@needs_mpi
@pytest.mark.gpu
@pytest.mark.parametrize("n", [1, 2])
def test_collectives_on_cupy(n):
    """The collective checks on CuPy arrays too: NCCL with one rank per GPU, otherwise staged
    through host memory."""
    _needs_gpu()
    proc = launch(n, "collectives.py", "cuda")
    assert_ok(proc)
    assert proc.stdout.count("collectives ok") == n, proc.stdout
    expected = "nccl" if _nccl_available() and xn.backend.cuda_device_count() >= n else "host"
    assert proc.stdout.count(f"CuPy arrays through {expected}") == n, proc.stdout


@needs_mpi
@pytest.mark.gpu
def test_one_rank_nccl_equals_plain_run(tmp_path):
    _needs_gpu()
    if not _nccl_available():
        pytest.skip("CuPy has no NCCL here (install nvidia-nccl-cu12/cu13)")
    assert_ok(launch(1, "train_equal.py", str(tmp_path), "--device", "cuda"))
    for config, (_, dtype) in train_equal.CONFIGS.items():
        results = _rank_results(tmp_path, config, 1)
        assert results[0][1]["cupy_transport"] == "nccl"
        _assert_matches_reference(results, _reference(config, device="cuda:0"), dtype)


@needs_mpi
@pytest.mark.gpu
def test_two_ranks_sharing_one_gpu_equal_one_process(tmp_path):
    _needs_gpu()
    proc = launch(2, "train_equal.py", str(tmp_path), "--device", "cuda:0")
    assert_ok(proc)
    assert proc.stderr.count("NCCL cannot serve this job") == 1, proc.stderr  # one warning, from rank 0
    for config, (_, dtype) in train_equal.CONFIGS.items():
        results = _rank_results(tmp_path, config, 2)
        assert [rec["cupy_transport"] for _, rec in results] == ["host", "host"]
        _assert_matches_reference(results, _reference(config, device="cuda:0"), dtype)
