"""The GPU checks cannot pass having run nothing (issue 23, 4).

Each check runs pytest (or ``ci/test-gpu.sh``) in a fresh process where CUDA is unusable on any machine,
a ``cupy`` that fails to import being first on the path, or usable through the fake CuPy of
``tests/fake_cupy``: strict mode (``XPNET_REQUIRE_GPU=1``) turns every GPU test that would skip into a
failure carrying the reason, ``XPNET_DEVICE=cpu`` cannot turn a CuPy case into a NumPy one, and the GPU
job's script fails, saying why, where it could test nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fake_cupy"
# A CuPy case from the shared fixture, one calling require_cuda() itself, one from a parametrised pair.
GPU_TESTS = ["tests/test_layers.py::test_linear[cupy-float32]",
             "tests/test_fast_paths.py::test_cupy_channel_dot_equals_portable_and_cpu[float32-1e-05]",
             "tests/test_cross_backend.py::test_one_training_step_agrees[numpy-vs-cupy]"]
NO_CUDA = "no CUDA driver here (test)"


def _env(tmp_path: Path, cupy: str, **env: str) -> dict[str, str]:
    """The environment of a fresh process whose ``import cupy`` fails (``cupy="broken"``) or gives the
    fake CuPy (``cupy="fake"``)."""
    if cupy == "broken":
        (tmp_path / "cupy").mkdir(exist_ok=True)
        (tmp_path / "cupy" / "__init__.py").write_text(f"raise ImportError({NO_CUDA!r})\n")
        first = str(tmp_path)
    else:
        first = str(FAKE)
    environment = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([first, os.environ.get("PYTHONPATH", "")])}
    for name in ("XPNET_REQUIRE_GPU", "XPNET_DEVICE"):
        if name not in env:
            environment.pop(name, None)
    return environment


def run_pytest(tmp_path: Path, ids: list[str], cupy: str = "broken", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rfEs", *ids],
                          capture_output=True, text=True, cwd=ROOT, env=_env(tmp_path, cupy, **env), timeout=600)


def test_without_a_gpu_the_gpu_tests_skip_and_say_why(tmp_path):
    proc = run_pytest(tmp_path, GPU_TESTS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 skipped" in proc.stdout and proc.stdout.count(NO_CUDA) >= 2  # the header and the skips' reason
    assert f"xpnet: CUDA not usable: cupy is not installed or failed to import (ImportError: {NO_CUDA})" in proc.stdout


def test_strict_mode_fails_each_gpu_test_that_would_skip_and_says_why(tmp_path):
    proc = run_pytest(tmp_path, GPU_TESTS, XPNET_REQUIRE_GPU="1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "passed" not in proc.stdout.splitlines()[-1] and "skipped" not in proc.stdout.splitlines()[-1]
    for test_id in GPU_TESTS:
        assert any(line.startswith(("FAILED", "ERROR")) and test_id in line
                   for line in proc.stdout.splitlines()), (test_id, proc.stdout)
    # Each test's own report says why, once (the short summary repeats it, cut or not by the terminal's width).
    reason = f"XPNET_REQUIRE_GPU=1: no GPU: cupy is not installed or failed to import (ImportError: {NO_CUDA})"
    assert sum(line.startswith(reason) for line in proc.stdout.splitlines()) == len(GPU_TESTS), proc.stdout
    assert "xpnet: XPNET_REQUIRE_GPU=1: a gpu test that would skip fails instead" in proc.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="mpiexec and the fake CuPy's NCCL-less run: Linux and macOS")
def test_strict_mode_fails_a_gpu_test_skipped_for_any_other_reason(tmp_path):
    """The fake CuPy has no NCCL: the NCCL test skips (says so), and in strict mode fails saying so."""
    test_id = "tests/test_distributed.py::test_one_rank_nccl_equals_plain_run"
    lenient = run_pytest(tmp_path, [test_id], cupy="fake")
    assert "1 skipped" in lenient.stdout and "CuPy has no NCCL here" in lenient.stdout, lenient.stdout
    strict = run_pytest(tmp_path, [test_id], cupy="fake", XPNET_REQUIRE_GPU="1")
    assert strict.returncode == 1 and "1 failed" in strict.stdout, strict.stdout
    assert "XPNET_REQUIRE_GPU=1: this gpu test would have been skipped" in strict.stdout
    assert "CuPy has no NCCL here" in strict.stdout


def test_xpnet_device_cpu_cannot_turn_a_cupy_case_into_numpy(tmp_path):
    """On the fake CuPy the CuPy case runs (and passes); with XPNET_DEVICE=cpu, where xn.device("cuda")
    is the CPU, it skips saying so, or fails in strict mode, instead of passing on NumPy."""
    test_id = GPU_TESTS[0]
    on_cupy = run_pytest(tmp_path, [test_id], cupy="fake")
    assert "1 passed" in on_cupy.stdout, on_cupy.stdout
    lenient = run_pytest(tmp_path, [test_id], cupy="fake", XPNET_DEVICE="cpu")
    assert "1 skipped" in lenient.stdout and "XPNET_DEVICE=cpu in the environment" in lenient.stdout
    strict = run_pytest(tmp_path, [test_id], cupy="fake", XPNET_DEVICE="cpu", XPNET_REQUIRE_GPU="1")
    assert strict.returncode == 1 and "1 error" in strict.stdout, strict.stdout
    assert "XPNET_REQUIRE_GPU=1: XPNET_DEVICE=cpu in the environment" in strict.stdout


# The test files in two shards, so that pytest -n spreads the two runs of the GPU suite below over two workers,
# where one run of all of it was the suite's longest test by far: the nine files that take most of a run on the
# fake CuPy (its kernels run on the CPU, thread by thread), each to the shard with less so far (their seconds in a
# run with --durations=0: 489, 463, 428, 336, 330, 176, 165, 126, 88 of 3125, the shards 983 and 2142 with the
# four files of before), the others every other file.
HEAVY = [["test_vision_models.py", "test_gpu_session.py", "test_train.py", "test_norm.py"],
         ["test_graph.py", "test_graph_layers.py", "test_gradcheck.py", "test_transformer.py", "test_cupy_layers.py"]]
TEST_FILES = sorted(path.name for path in (ROOT / "tests").glob("test_*.py"))
_REST = [name for name in TEST_FILES if not any(name in heavy for heavy in HEAVY)]
SHARDS = [HEAVY[0] + _REST[0::2], HEAVY[1] + _REST[1::2]]


def test_the_shards_hold_every_test_file_once():
    assert sorted(name for shard in SHARDS for name in shard) == TEST_FILES
    assert "test_layers.py" in TEST_FILES and "test_gpu_checks.py" in TEST_FILES


@pytest.mark.slow
@pytest.mark.parametrize("shard", range(len(SHARDS)))
def test_the_whole_gpu_suite_runs_on_the_fake_cupy(tmp_path, shard):
    """Every CuPy path of xpnet under CuPy's device rules, on every CI run (the fake of tests/fake_cupy):
    a host copy, a kernel given arrays of two GPUs, an unhashable cupy Device or a NumPy array reaching
    a CuPy kernel fails here before a GPU ever runs it. What needs CUDA itself skips, saying so. With the fake's
    FAKE_CUPY_ROUNDING=1, a tolerance tighter than a GPU's rounding (sums in another order, CUDA's exp) fails too."""
    proc = run_pytest(tmp_path, ["-m", "gpu", "-q", *(f"tests/{name}" for name in SHARDS[shard])], cupy="fake",
                      FAKE_CUPY_ROUNDING="1")
    last = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 0 and "failed" not in last and "error" not in last, proc.stdout[-6000:]
    assert int(last.split(" passed")[0].split()[-1]) >= 250, last  # 543 and 426 gpu tests (969, 965 passed)
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("no cupyx" in line or "no NCCL" in line for line in skipped), skipped


def test_strict_mode_takes_only_0_or_1(tmp_path):
    proc = run_pytest(tmp_path, [GPU_TESTS[0]], XPNET_REQUIRE_GPU="yes")
    assert proc.returncode != 0 and "XPNET_REQUIRE_GPU='yes': expected 1" in proc.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
@pytest.mark.parametrize("cupy", ["broken", "fake"])
def test_the_gpu_job_fails_where_cuda_is_unusable_and_says_why(tmp_path, cupy):
    """ci/test-gpu.sh exited 0 with "no GPU" also where a GPU was there but CuPy or xpnet failed to import; on the
    fake CuPy (a dry run's PYTHONPATH left in place) it would have run the GPU tests and benchmarks on NumPy."""
    proc = subprocess.run(["bash", str(ROOT / "ci" / "test-gpu.sh")], capture_output=True, text=True,
                          env=_env(tmp_path, cupy), timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    why = NO_CUDA if cupy == "broken" else "the cupy imported is the fake of tests/fake_cupy"
    assert "ci/test-gpu.sh: CUDA is not usable here (nvidia-smi sees" in proc.stdout and why in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
@pytest.mark.parametrize("cupy", ["broken", "fake"])
def test_the_gpu_session_runs_nothing_past_its_probe_without_a_gpu(tmp_path, cupy):
    """ci/gpu-session.sh where CUDA is unusable, or on the fake CuPy (a dry run's PYTHONPATH left in place): the
    probe says why, no later step runs (pytest's 950 GPU tests failed one by one for 88 s before), no figure of the
    fake passes for a GPU's, and the script exits 1. (XPNET_SESSION_S=60: a script that ran its steps anyway would
    end within a minute.)"""
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "ci" / "gpu-session.sh")], capture_output=True, text=True,
                          env={**_env(tmp_path, cupy), "OUT": str(out), "XPNET_SESSION_S": "60"}, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    why = f"cupy is not installed or failed to import (ImportError: {NO_CUDA})" if cupy == "broken" else \
        "the cupy imported is the fake of tests/fake_cupy"
    summary = (out / "summary.txt").read_text()
    assert f"CUDA probe: CUDA NOT usable: {why}" in summary and "GPU tests passed: 0;" in summary, summary
    rows = {line.split("|")[1].strip(): line for line in summary.splitlines() if line.startswith("| ")}
    assert why in rows["setup"], summary
    for step in ("pytest", "charlm", "nccl", "compare", "profile"):
        assert "not run: no usable GPU" in rows[step], summary
        assert not (out / f"{step}.log").exists()
    assert summary in proc.stdout  # printed last, as written
