"""The benchmark commands of README.md and docs/benchmarks.md still run: each script with tiny sizes, as
``python benchmarks/script.py args`` runs it, in a process forked from one that imported xpnet and PyTorch once
(tests/forked_scripts.py: a fresh interpreter for each script spent 2 to 4 CPU seconds starting).

Nothing here is timed; the figures themselves come from running the scripts as the docs say.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from forked_scripts import ScriptRunner

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
_RUNNER = ScriptRunner()


@pytest.fixture(scope="session", autouse=True)
def _script_server():
    """Ends the runner's server with the session: under pytest -n a worker may run other files' tests between
    these, and a server ended with the module would start again (importing torch) for the next one."""
    yield
    _RUNNER.close()


def run(script: str, *args: str) -> str:
    done = _RUNNER.run(BENCHMARKS / script, *args)
    assert done.returncode == 0, f"{script} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def table(out: str) -> list[dict[str, str]]:
    """compare.py's Markdown table: one dict per row, keyed by the header's column names."""
    lines = [line.strip().strip("|") for line in out.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].split("|")]
    rows = [[cell.strip() for cell in line.split("|")] for line in lines[1:]]
    assert all(len(row) == len(header) for row in rows), f"rows unlike the header:\n{out}"
    return [dict(zip(header, row)) for row in rows]


def mkl_runs_products(out: str) -> bool:
    """Whether the threads line says MKL runs xpnet's products (the ``xpnet[mkl]`` extra, threaded)."""
    return "layers' products and packed step products" in out


@pytest.mark.slow
def test_compare_prints_one_table_row_per_workload_batch_and_optimizer():
    out = run("compare.py", "--only", "mlp-small", "cnn", "--batches", "8", "16", "--steps", "1", "--repeats", "1",
              "--lstm-steps", "1", "--lstm-size", "50", "8")
    rows = table(out)
    assert [(row["workload"][:3], row["batch"], row["optimizer"]) for row in rows] == [
        (net, batch, opt) for net in ("MLP", "CNN") for batch in ("8", "16") for opt in ("sgd", "adam")]
    assert all(float(row["xpnet peak host MiB/step"]) > 0 for row in rows)
    assert "threads: BLAS" in out
    if importlib.util.find_spec("torch"):  # the LSTM language model's row, below the table
        assert "LSTM language model: vocabulary 50, 2 x LSTM 8" in out and "ratio xpnet/PyTorch:" in out


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["mlp-small", "cnn", "cnn-modern"])
def test_profile_step_prints_every_phase(workload):
    out = run("profile_step.py", "--workload", workload, "--batch", "20", "--steps", "1", "--repeats", "1")
    for phase in ("| 0 ", "| loss forward |", "| loss backward |", "(parameters only)", "| optimizer |",
                  "whole step, synchronised once", "same step at batch 2"):
        assert phase in out, f"{phase!r} missing from:\n{out}"


@pytest.mark.slow
def test_profile_step_prints_pytorchs_most_expensive_operators():
    pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    out = run("profile_step.py", "--workload", "cnn-modern", "--batch", "8", "--steps", "1", "--repeats", "1",
              "--torch-ops", "4")
    after = out.split("PyTorch's step by operator", 1)[1].splitlines()
    rows = [line.strip("|").split("|") for line in after if line.startswith("| ") and "operator" not in line]
    assert len(rows) == 4 and all(float(ms) >= 0 for _, ms, _ in rows)
    assert any("convolution" in name for name, _, _ in rows), out


@pytest.mark.slow
def test_compare_has_the_modern_cnn_against_pytorch():
    pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    out = run("compare.py", "--only", "cnn-modern", "--batches", "8", "--steps", "1", "--repeats", "1",
              "--lstm-steps", "0")
    rows = table(out)
    assert [row["workload"] for row in rows] == ["CNN 2x(conv3x3-BN-ReLU-pool)-128-10"] * 2
    # No hand-written NumPy version of this net: its columns say so; PyTorch's ratio is a number.
    assert all(row["NumPy s/epoch (x fastest)"] == "-" and float(row["xpnet/PyTorch"]) > 0 for row in rows)
    # Beside xpnet, the same net without the Numba kernels (where Numba is installed), and without MKL's
    # products (where MKL runs them).
    no_numba = [row["xpnet without Numba s/epoch (x fastest)"] for row in rows]
    assert all(cell != "-" for cell in no_numba) if importlib.util.find_spec("numba") else no_numba == ["-", "-"]
    no_mkl = [row.get("xpnet without MKL s/epoch (x fastest)") for row in rows]
    assert all(cell not in (None, "-") for cell in no_mkl) if mkl_runs_products(out) else no_mkl == [None, None]
    assert "threads: " in out


@pytest.mark.slow
def test_mlp_step_prints_the_ratio():
    out = run("mlp_step.py", "--n", "200", "--repeats", "1")
    assert "ratio xpnet/NumPy" in out
    assert "threads: BLAS" in out  # the thread count the figures were taken with


@pytest.mark.slow
def test_tiny_step_prints_both_steps_their_python_calls_and_the_ratio():
    out = run("tiny_step.py", "--steps", "20", "--rounds", "1", "--momentum", "0.9")
    for line in ("hand-written NumPy :", "xpnet              :", "ratio xpnet/NumPy", "threads: BLAS"):
        assert line in out, f"{line!r} missing from:\n{out}"
    assert out.count("Python calls") == 2


@pytest.mark.slow
def test_tiny_train_prints_both_epochs_their_python_calls_and_the_ratio():
    out = run("tiny_train.py", "--samples", "40", "--rounds", "1")
    for line in ("hand-written NumPy loop:", "xn.train               :", "ratio xn.train/NumPy", "threads: BLAS"):
        assert line in out, f"{line!r} missing from:\n{out}"
    assert out.count("Python calls a step") == 2


@pytest.mark.slow
def test_compare_backends_prints_a_row_per_device():
    pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    out = run("compare.py", "--backends", "torch:cpu", "--samples", "200", "--repeats", "1")
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ") and "s/epoch" not in line]
    assert rows == ["cpu", "torch:cpu"] and "threads: BLAS" in out


@pytest.mark.slow
def test_conv_backward_checks_both_paths_equal_and_prints_the_ratio():
    out = run("conv_backward.py", "--batch", "4", "--size", "6", "--steps", "1", "--repeats", "1")
    assert "xpnet/previous" in out and "threads: BLAS" in out


@pytest.mark.slow
def test_lstm_lm_prints_both_times_the_ratio_and_the_threads():
    pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    out = run("lstm_lm.py", "--vocab", "50", "--hidden", "8", "--batch", "2", "--time", "3", "--steps", "1",
              "--repeats", "1")
    assert "xpnet (NumPy)" in out and "PyTorch" in out and float(out.split("ratio xpnet/PyTorch:")[1].split()[0]) > 0
    assert "threads: BLAS" in out and "torch" in out.splitlines()[-1]


@pytest.mark.slow
def test_train_mlp_prints_the_ratios_at_equal_threads_and_the_peak():
    pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    out = run("train_mlp.py", "--samples", "1000", "--repeat", "1")
    for line in ("ratio xpnet default / faster numpy loop:", "ratio xpnet / numpy, both 1 thread     :",
                 "ratio xpnet default / pytorch          :"):
        assert float(out.split(line)[1].split("x")[0]) > 0, out
    losses = {line.split("loss ")[1].split(",")[0] for line in out.splitlines() if "s/epoch (runs" in line}
    assert len(losses) == 1, out  # xpnet, NumPy and PyTorch trained alike
    assert "threads: BLAS" in out and "times the peak's epoch:" in out


@pytest.mark.slow
def test_train_mlp_by_cpu_time_runs_every_loop_at_one_thread():
    pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    out = run("train_mlp.py", "--samples", "500", "--repeat", "1", "--clock", "cpu")
    for line in ("ratio xpnet / numpy, both 1 thread, CPU time  :", "ratio xpnet / pytorch, both 1 thread, CPU time:"):
        assert float(out.split(line)[1].split("x")[0]) > 0, out
    threads = next(line for line in out.splitlines() if line.startswith("threads:"))
    assert "; torch " in threads and threads.endswith(" 1 thread"), out  # PyTorch's count, last on the line


@pytest.mark.slow
def test_thread_load_prints_both_ratios_and_ends_its_load():
    out = run("thread_load.py", "--samples", "500", "--repeat", "1")
    assert "loaded: default / best fixed count = " in out and "idle:   default / " in out, out
    rows = [line for line in out.splitlines() if line.startswith(("| loaded", "| idle"))]
    assert len(rows) == 5 and "threads: BLAS" in out


@pytest.mark.slow
def test_frozen_step_prints_the_ratios_of_frozen_to_unfrozen():
    out = run("frozen_step.py", "--only", "cnn", "resnet", "--repeat", "1", "--steps", "1")
    assert "threads: BLAS" in out and "cnn: xpnet unfrozen" in out and "xpnet frozen/unfrozen" in out
    assert "resnet: xpnet unfrozen" in out
    if importlib.util.find_spec("torch"):
        assert "xpnet frozen/PyTorch frozen" in out


def test_a_script_that_fails_or_hangs_is_reported_as_a_fresh_interpreter_would(tmp_path):
    """The runner gives a script's exit status, its traceback, an empty stdin and an end at the timeout (one that
    preloads nothing: it starts twice)."""
    runner = ScriptRunner(preload=())
    script = tmp_path / "script.py"
    script.write_text("import sys\nprint('args', sys.argv[1:], __name__)\nif sys.argv[1] == 'exit':\n"
                      "    sys.exit(3)\nif sys.argv[1] == 'hang':\n    import time; time.sleep(60)\ninput()\n")
    done = runner.run(script, "read")
    assert done.returncode == 1 and done.stdout == "args ['read'] __main__\n" and "EOFError" in done.stderr
    assert runner.run(script, "exit").returncode == 3
    with pytest.raises(subprocess.TimeoutExpired):
        runner.run(script, "hang", timeout=1)
    assert runner.run(script, "exit").returncode == 3  # a new server after the timeout's
    runner.close()
