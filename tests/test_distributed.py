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
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import approx_or_none, require_cuda

import xpnet as xn
from test_cupy_rules import run_with_fake_cupy

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
             pytest.mark.skipif(not HAVE_MPI4PY, reason="mpi4py is not installed (pip install -e '.[mpi]')"),
             pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec beside the Python interpreter or on PATH "
                                                         "(pip install mpich)"))
    for mark in marks:
        test = mark(test)
    return test


def launch(n: int, script: str, *args: str, timeout: float = TIMEOUT_S, **env: str) -> subprocess.CompletedProcess:
    """``mpiexec -n n python script args`` with one BLAS/OpenMP thread per rank (``script`` may be
    ``-m``, then ``args`` start with a module name); never hangs the suite: a job still running after
    ``timeout`` seconds fails the test with subprocess.TimeoutExpired."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONUNBUFFERED="1", **env)
    target = [script] if script == "-m" else [str(SCRIPTS / script)]
    cmd = [MPIEXEC, "-n", str(n), sys.executable, *target, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def launch_each(*commands: list[str], timeout: float = TIMEOUT_S, **env: str) -> subprocess.CompletedProcess:
    """One rank per command (``mpiexec -n 1 python *c0 : -n 1 python *c1 ...``), as ``launch``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONUNBUFFERED="1", **env)
    cmd = [MPIEXEC]
    for i, command in enumerate(commands):
        cmd += ([":"] if i else []) + ["-n", "1", sys.executable, *command]
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


@pytest.mark.parametrize("comm", [object(), "world", 1])
def test_train_and_evaluate_refuse_a_comm_that_is_no_communicator(comm):
    """Issue 27: ``xn.train(comm=object())`` failed deep inside with an AttributeError."""
    x, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    model = xn.Sequential(xn.layers.Linear(2, 2))
    message = rf"comm must be None or the Communicator that xn.distributed.init\(\) returns, got {type(comm).__name__}"
    with pytest.raises(TypeError, match="xn.train: " + message):
        xn.train(model, (x, y), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=2, device="cpu",
                 progress=False, comm=comm)
    with pytest.raises(TypeError, match="xn.evaluate: " + message):
        xn.evaluate(model, (x, y), loss="cross_entropy", comm=comm)


@pytest.mark.parametrize(("kwargs", "env", "message"), [
    ({"timeout": 0}, "", r"timeout must be a number of seconds > 0 \(inf for no limit\), got 0"),
    ({"timeout": "soon"}, "", r"timeout must be a number of seconds > 0"),
    ({}, "-3", r"XPNET_COLLECTIVE_TIMEOUT_S must be a number of seconds > 0 \(inf for no limit\), got '-3'"),
])
def test_init_refuses_a_time_limit_that_is_no_duration(monkeypatch, kwargs, env, message):
    monkeypatch.setenv("XPNET_COLLECTIVE_TIMEOUT_S", env)
    with pytest.raises(ValueError, match=message):
        xn.distributed.init(**kwargs)


def test_init_without_mpi4py_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `from mpi4py import MPI` raise ImportError
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    with pytest.raises(ImportError, match=r"pip install .*\[mpi\]'") as info:
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


# -- a job never hangs, and ranks never silently disagree (issue 15) ---------------------------

ENDS_S = 60  # each job below ends in a few seconds; a hang fails the test at this timeout


@needs_mpi
def test_cli_check_failing_on_rank_0_ends_every_rank():
    """Issue 15, "a rank that leaves without an uncaught exception still ends the job": rank 0's
    --out check is agreed by every rank (it used to exit 2 alone while rank 1 waited forever);
    "output once": the error is printed once."""
    proc = launch(2, "-m", "xpnet", "train", "--dataset", "spiral", "--distributed", "--out", "/proc/nope",
                  "--epochs", "1", timeout=ENDS_S)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("xpnet: error: --out '/proc/nope' is not a writable folder") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "BAD TERMINATION" not in proc.stdout + proc.stderr


@needs_mpi
def test_sys_exit_on_one_rank_ends_the_job():
    """Issue 15, "a rank that leaves without an uncaught exception still ends the job": rank 1 catches
    an error and calls sys.exit(1) while rank 0 waits in a collective."""
    proc = launch(2, "leave.py", "exit", timeout=ENDS_S)
    assert proc.returncode != 0
    assert "error: planted: rank 1 cannot read its input" in proc.stderr
    assert "[rank 1] xpnet: this rank exits with status 1 (sys.exit(1) at leave.py:" in proc.stderr, proc.stderr
    assert "got past" not in proc.stdout


@needs_mpi
def test_exit_inside_train_on_one_rank_ends_the_job():
    """Issue 15, "a rank that leaves without an uncaught exception still ends the job": a callback
    calls sys.exit(0) on rank 1 only, before train finished."""
    proc = launch(2, "leave.py", "exit-in-train", timeout=ENDS_S)
    assert proc.returncode != 0
    assert "[rank 1] xpnet: SystemExit left xn.train on this rank" in proc.stderr, proc.stderr
    assert "got past" not in proc.stdout


@pytest.fixture(scope="module")
def agree_runs():
    """agree.py on 2 and 3 ranks, with no usable GPU (the device falls back to the CPU): {n: process}."""
    runs = {n: launch(n, "agree.py", timeout=ENDS_S, CUDA_VISIBLE_DEVICES="") for n in (2, 3)}
    for proc in runs.values():
        assert_ok(proc)
    return runs


@needs_mpi
def test_ranks_given_different_data_are_told_before_training(agree_runs):
    """Issue 15, "ranks given different data are detected before training": sample counts (995 and
    850 of 1000, which used to train silently or die in MPICH's "Message truncated"), dtypes, content,
    validation data, evaluate's data and train's arguments differing on the last rank raise on every
    rank an error naming each rank's value (the messages are checked in tests/mpi_scripts/agree.py)."""
    for n, proc in agree_runs.items():
        done = sorted(int(r) for r in re.findall(r"inputs ok: rank (\d+)", proc.stdout))
        assert done == list(range(n)), proc.stdout


@needs_mpi
def test_ranks_given_different_settings_are_told_before_training(agree_runs):
    """Issue 27, "silent disagreement": another learning rate (of any param group), momentum, optimizer, activation
    or loss setting on the last rank trained to other weights and exited 0; the same x with one label flipped,
    or x changed in a row the old 8-row hash never read, passed the data check. Each now raises on every
    rank naming what differs (messages checked in tests/mpi_scripts/agree.py)."""
    for n, proc in agree_runs.items():
        done = sorted(int(r) for r in re.findall(r"settings ok: rank (\d+)", proc.stdout))
        assert done == list(range(n)), proc.stdout


def _agree_kinds(mode: str, n: int = 2) -> None:
    """tests/mpi_scripts/agree_kinds.py MODE on ``n`` ranks: every rank checks each error's message."""
    proc = launch(n, "agree_kinds.py", mode, timeout=ENDS_S, XPNET_COLLECTIVE_TIMEOUT_S="30")
    assert_ok(proc)
    done = sorted(int(r) for r in re.findall(rf"{mode} ok: rank (\d+)", proc.stdout))
    assert done == list(range(n)), proc.stdout


@needs_mpi
def test_ranks_given_other_token_streams_are_told_before_training():
    """Audit D2: a TokenStream was described by its type only, so ranks each passing their own shard
    of the corpus trained silently on other data, and shards of other lengths ran other step counts
    and hung in mismatched collectives until the time limit. Its ids (count, dtype, every byte),
    batch_size and time_size are compared now, for train, validation and evaluate's data."""
    _agree_kinds("stream")


@needs_mpi
def test_ranks_given_other_composite_models_are_told_before_training():
    """Audit D3: an ``xn.Model`` was described by its type only (only a ``.layers`` list was compared),
    so Tanh on rank 0 and ReLU on rank 1 trained silently. Every node of the tree is compared."""
    _agree_kinds("composite", n=3)


@needs_mpi
def test_evaluate_on_ranks_holding_other_weights_is_told():
    """Audit D4: xn.evaluate(comm=...) on ranks whose weights differ (a file loaded on rank 0 only)
    averaged them into a figure that matched no rank's model. A digest of every parameter and buffer
    is compared: every rank raises naming the first that differs and what to do; after
    comm.broadcast_params, and after xn.train (which now ends with rank 0's BatchNorm statistics on
    every rank), evaluate runs."""
    _agree_kinds("weights")


def test_a_stream_is_described_by_its_ids_and_batches():
    """Audit D2, without MPI: what the ranks compare of a TokenStream."""
    from xpnet.distributed._checks import describe_data, differences

    ids = np.arange(601) % 13
    mine = describe_data(xn.datasets.TokenStream(ids, 4, 6))
    assert mine["ids"] == 601 and mine["steps per epoch"] == 25 and mine["batch_size"] == 4
    other = ids.copy()
    other[600] = 0  # the last id only: every byte counts
    assert differences("train data differs", [mine, describe_data(xn.datasets.TokenStream(other, 4, 6))]) == \
        [f"train data differs across ranks: ids content rank 0: {mine['ids content']}, rank 1: "
         f"{describe_data(xn.datasets.TokenStream(other, 4, 6))['ids content']}"]
    assert differences("d", [mine, describe_data(xn.datasets.TokenStream(ids[:500], 4, 6))]) == \
        ["d across ranks: ids rank 0: 601, rank 1: 500; steps per epoch rank 0: 25, rank 1: 20"]


def test_every_node_of_a_model_tree_is_described():
    """Audit D3, without MPI: a composite model's nodes by dotted name, a missing one as (none)."""
    from xpnet.distributed._checks import describe_settings, differences

    class Net(xn.Model):
        def __init__(self, act, scale=1.0):
            super().__init__()
            self.body = xn.Sequential(xn.layers.Linear(2, 3), act)
            self.scale = scale

    described = describe_settings(Net(xn.layers.Tanh()))
    assert described == {"type": "Net", "settings": "Net(scale=1.0)", "layer body": "Sequential()",
                         "layer body.0": "Linear(in_features=2, out_features=3, bias=True)", "layer body.1": "Tanh()"}
    assert differences("m", [described, describe_settings(Net(xn.layers.ReLU(), scale=2.0))]) == \
        ["m across ranks: settings rank 0: Net(scale=1.0), rank 1: Net(scale=2.0); layer body.1 rank 0: Tanh(), "
         "rank 1: ReLU()"]
    shorter = xn.Sequential(xn.layers.Linear(2, 3), xn.layers.Tanh())
    longer = xn.Sequential(xn.layers.Linear(2, 3), xn.layers.Tanh(), xn.layers.Linear(3, 3))
    assert differences("m", [describe_settings(shorter), describe_settings(longer)]) == \
        ["m across ranks: layer 2 rank 0: (none), rank 1: Linear(in_features=3, out_features=3, bias=True)"]


@needs_mpi
def test_nan_diagnosis_names_the_rank(agree_runs):
    """Issue 15, "output once": the NaN diagnosis names the rank and the step where the non-finite
    value first appeared (it used to say "another rank's batch")."""
    for n, proc in agree_runs.items():
        done = sorted(int(r) for r in re.findall(r"nan diagnosis ok: rank (\d+)", proc.stdout))
        assert done == list(range(n)), proc.stdout


@needs_mpi
def test_cpu_fallback_warning_from_rank_0_only(agree_runs):
    """Issue 15, "output once": comm.device("cuda") and xn.device("cuda") without a GPU warn once
    each, from rank 0, not once per rank."""
    for proc in agree_runs.values():
        assert proc.stderr.count("XpnetDeviceWarning") == 2, proc.stderr


@needs_mpi
@pytest.mark.parametrize(("n", "mode", "message"), [
    (3, "mismatch", "[rank 0] ValueError: xn.train: train data differs across ranks: samples ranks 0-1: 1000, "
                    "rank 2: 995"),
    (2, "bad-labels", "[rank 0] ValueError: train data: labels must lie in [0, 2)"),
])
def test_error_raised_on_every_rank_prints_one_traceback(n, mode, message):
    """Issue 15, "output once": an error every rank raises (different data; labels out of range) is
    printed once, by rank 0, and the job ends with status 1 without an abort."""
    proc = launch(n, "leave.py", mode, timeout=ENDS_S)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("Traceback") == 1 and message in proc.stderr, proc.stderr
    assert "aborting" not in proc.stderr and "got past" not in proc.stdout


@needs_mpi
def test_error_raised_on_every_rank_after_they_met_prints_one_traceback():
    """Issue 15, "output once": a callback that raises on every rank in epoch 2 (after the ranks
    first met, so nothing marks the error as shared) ends the job with one traceback, rank 0's."""
    proc = launch(3, "leave.py", "callback-everywhere", timeout=ENDS_S)
    assert proc.returncode != 0
    assert proc.stderr.count("Traceback") == 1, proc.stderr
    assert "[rank 0] RuntimeError: planted: the callback fails on every rank" in proc.stderr, proc.stderr


@needs_mpi
def test_failure_on_one_rank_before_training_prints_its_traceback():
    """Issue 15, "output once": rank 1 fails before the ranks meet (an unknown loss name); rank 1
    prints its traceback, rank 0 nothing, and the job ends with status 1 without an abort."""
    proc = launch(2, "leave.py", "fails-alone", timeout=ENDS_S)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("Traceback") == 1 and "[rank 1] ValueError: loss: expected a Loss" in proc.stderr
    assert "[rank 0]" not in proc.stderr and "aborting" not in proc.stderr, proc.stderr


@needs_mpi
def test_error_raised_on_every_rank_but_caught_on_one_still_ends_the_job():
    """Issue 15, "a job never hangs": when one rank catches an error raised on every rank and goes
    on (outside any collective), the ranks that left wait for it at most XPNET_EXIT_WAIT_S seconds,
    then abort the job."""
    proc = launch(2, "leave.py", "caught-on-one", timeout=ENDS_S, XPNET_EXIT_WAIT_S="2")
    assert proc.returncode != 0
    assert "[rank 0] xpnet: this rank left on an error raised on every rank, but not every rank left within 2 s" \
        in proc.stderr, proc.stderr


# -- every job ends, and ranks never disagree silently (issue 27) -----------------------------


@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_ranks_without_samples_train_and_evaluate_as_one_process(n):
    """Issue 27, "crash, Message truncated, exit 142": 4 samples in batches of 2, 5 samples in batches
    of 1, a one-sample validation set (which deadlocked on 2 ranks) and ``xn.evaluate`` of one sample
    leave some ranks without any sample; each gives what one process gives (tests/mpi_scripts/empty_ranks.py)."""
    proc = launch(n, "empty_ranks.py", timeout=ENDS_S)
    assert_ok(proc)
    done = sorted(int(r) for r in re.findall(rf"empty ranks ok: rank (\d+) of {n}(?!\d)", proc.stdout))
    assert done == list(range(n)), proc.stdout


def _assert_ranks_like_one(n: int, case: str) -> None:
    proc = launch(n, "ranks_like_one.py", case, timeout=ENDS_S)
    assert_ok(proc)
    done = sorted(int(r) for r in re.findall(rf"ranks like one: {case} rank (\d+) of {n}(?!\d)", proc.stdout))
    assert done == list(range(n)), proc.stdout


@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_padded_labels_on_ranks_equal_one_process(n):
    """Sequence labels padded with ignore_index, unevenly over the ranks' shares: each rank's gradient weighs
    by its count of real targets (it weighed by rows: weights 3e-2 off the one-process run)."""
    _assert_ranks_like_one(n, "padded")


@needs_mpi
def test_accumulated_batches_on_ranks_equal_one_process():
    """accumulate_grad_batches=2 over the padded labels: batches of 5, 5, 5 and 1 rows (the last leaves rank 0 without
    one), each rank's gradient the mean over its real targets of a group, all-reduced once per update weighing by
    their count."""
    _assert_ranks_like_one(2, "accumulate")


@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_a_stream_of_fewer_rows_than_ranks_evaluates_as_one_process(n):
    """A one-row validation TokenStream (and xn.evaluate of one): a rank without a row sums nothing (it
    crashed in evaluate_stream)."""
    _assert_ranks_like_one(n, "stream")


@needs_mpi
def test_no_divergence_warning_from_rank_0s_share_of_the_first_step():
    """The first step's loss the warning compares the last epoch's with is over every rank's share, as the
    epoch's is: rank 0's share alone fitting well gave "training diverged" on a flat run."""
    _assert_ranks_like_one(2, "diverge")


@needs_mpi
def test_cli_with_batches_of_one_sample_on_two_ranks(tmp_path):
    """Issue 27, "crash": ``--batch-size 1`` on 2 ranks leaves rank 1 without a sample in every step."""
    proc = launch(2, "-m", "xpnet", "train", "--dataset", "spiral", "--distributed", "--batch-size", "1",
                  "--epochs", "1", "--quiet", "--out", str(tmp_path), timeout=ENDS_S)
    assert_ok(proc)
    assert "test accuracy" in proc.stdout and (tmp_path / "history.json").is_file()


@needs_mpi
@pytest.mark.parametrize(("mode", "message"), [
    ("raise-before-init", "[rank 1] xpnet: this rank failed before calling xn.distributed.init() "
                          "(RuntimeError: planted: rank 1 fails before init); aborting all 2 ranks"),
    ("exit-before-init", "[rank 0] xpnet: rank 1 left (sys.exit(0) at leave.py:"),
    ("exit-instead", "[rank 0] xpnet: rank 1 left (sys.exit(0) at leave.py:"),
    ("os-exit-instead", "[rank 0] xpnet: rank 1 left (os._exit(0) at leave.py:"),
])
def test_a_rank_that_leaves_ends_the_job_naming_it(mode, message):
    """Issue 27, "deadlock": rank 1 raises or calls ``sys.exit(0)`` before ``xn.distributed.init()``
    (rank 0 waited in MPI_Init forever), or calls ``sys.exit(0)`` / ``os._exit(0)`` after it instead of
    training (rank 0 waited in ``xn.train`` forever; ``os._exit(0)`` made mpiexec kill rank 0 and exit 0).
    The job ends within seconds with a non-zero status and the cause named."""
    proc = launch(2, "leave.py", mode, timeout=ENDS_S)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    if mode.endswith("before-init"):
        assert "before calling xn.distributed.init()" in proc.stderr
    else:
        assert "while this rank waits for it in comm.broadcast_params inside xn.train" in proc.stderr


@needs_mpi
def test_a_process_that_a_rank_starts_is_no_rank():
    """A Python that a rank starts (a subprocess, a multiprocessing worker) inherits the launcher's
    variables; importing xpnet there must not make it start MPI at its exit as a rank would."""
    proc = launch(2, "leave.py", "child", timeout=ENDS_S)
    assert_ok(proc)
    assert sorted(re.findall(r"child ok: rank (\d)", proc.stdout)) == ["0", "1"], proc.stdout


@needs_mpi
def test_a_rank_that_sleeps_in_a_callback_ends_the_job_at_the_time_limit():
    """Issue 27, "deadlock": rank 0 sleeps in a callback while rank 1 waits in a collective; past the
    time limit (XPNET_COLLECTIVE_TIMEOUT_S) the job ends, and rank 1 says where rank 0 is."""
    proc = launch(2, "leave.py", "sleep-in-callback", timeout=ENDS_S, XPNET_COLLECTIVE_TIMEOUT_S="3")
    assert proc.returncode != 0
    assert re.search(r"\[rank 1\] rank 0 is not in a collective: it runs at \S*leave\.py:\d+ in on_epoch_end",
                     proc.stderr), proc.stderr
    assert "[rank 1] xpnet: this rank waited 3 s in comm." in proc.stderr
    assert "longer than the time limit of 3 s (XPNET_COLLECTIVE_TIMEOUT_S" in proc.stderr


@needs_mpi
def test_sigterm_to_one_rank_mid_epoch_stops_every_rank_after_the_same_step_and_saves(tmp_path):
    """SIGTERM to one rank in the middle of an epoch: the ranks agree on it at every step (in the
    collective that sums the gradients' counts), so all stop after the same step, put back the last
    complete epoch, write it to the full ModelCheckpoint and end by SIGTERM, as one process does. They
    agreed only at the end of an epoch before: an epoch longer than XPNET_SIGTERM_WAIT_S (1 s here; about
    2 s an epoch) ended the job without saving."""
    path = tmp_path / "run.npz"
    sent = time.monotonic()
    proc = launch(2, "leave.py", "sigterm-one-rank", str(path), timeout=ENDS_S, XPNET_SIGTERM_WAIT_S="1")
    assert proc.returncode != 0
    assert "safe point" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert time.monotonic() - sent < 30, proc.stderr
    with np.load(path) as saved:  # read as arrays: the script's own layer class is not defined here
        meta = json.loads(str(saved["__xpnet_checkpoint__"]))
        weights = {key.removeprefix("model/"): saved[key] for key in saved.files if key.startswith("model/")}
    assert meta["epoch"] == 2 and len(meta["history"]["epochs"]) == 2
    x = np.random.default_rng(0).normal(size=(1000, 4)).astype("float32")  # leave.py's data()
    y = (x[:, 0] > 0).astype("int64")
    xn.init.seed(0)
    same = xn.Sequential(xn.layers.Linear(4, 8), xn.layers.ReLU(), xn.layers.Flatten(),  # Flatten: no-op
                         xn.layers.Linear(8, 2))
    xn.train(same, (x, y), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=2, batch_size=10,
             device="cpu", progress=False)
    assert sorted(weights) == sorted(same.named_params())
    for key, value in same.named_params().items():
        np.testing.assert_allclose(weights[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


@needs_mpi
def test_sigterm_ends_a_job_whose_rank_is_stuck_inside_train_within_the_grace_period():
    """Audit D6: SIGTERM inside xn.train only set a flag read at the end of an epoch, so with rank 1
    stuck in a callback (and rank 0 waiting for it in a collective, where Python runs no handler) the
    job ended only at the collective time limit (60 s here). Each rank now ends by SIGTERM once
    XPNET_SIGTERM_WAIT_S (2 s here) has passed without reaching a safe point."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", XPNET_SIGTERM_WAIT_S="2",
               XPNET_COLLECTIVE_TIMEOUT_S="60")
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, str(SCRIPTS / "leave.py"), "sigterm-stuck"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline() == "stuck\n"
        time.sleep(0.5)  # rank 0 is in the collective by now
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=ENDS_S)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert took < 20, f"took {took:.0f} s\n{err}"
    assert "within 2 s (XPNET_SIGTERM_WAIT_S); ending now without saving" in err, err
    assert "time limit" not in err, err


@needs_mpi
@pytest.mark.parametrize("mode", ["gpu-queued-hang", "gpu-queued-left", "gpu-queued-ran"])
def test_a_collective_queued_on_the_gpu_is_watched_until_it_ran(mode):
    """NCCL's collectives return once queued; the wait for the other ranks happens on the GPU, and the
    host blocks later, outside any collective (reading the loss), where no time limit used to apply. The
    watch follows a queued collective until its CUDA event says it ran (a stand-in ``done()`` here): past
    the time limit, or when a rank of it left, the job ends naming it; one that ran ends nothing."""
    proc = launch(2, "leave.py", mode, timeout=ENDS_S, XPNET_COLLECTIVE_TIMEOUT_S="3")
    if mode == "gpu-queued-ran":
        assert proc.returncode == 0, proc.stderr
        assert "xpnet: " not in proc.stderr, proc.stderr
        return
    assert proc.returncode != 0
    where = "comm.allreduce_grads (queued on the GPU) (at "
    if mode == "gpu-queued-hang":
        assert f"[rank 0] xpnet: this rank waited 3 s in {where}" in proc.stderr, proc.stderr
        assert re.search(r"\[rank 0\] rank 1 is not in a collective: it runs at \S*leave\.py:\d+ in <module>",
                         proc.stderr), proc.stderr
    else:
        assert f"[rank 0] xpnet: rank 1 left (" in proc.stderr and f"while this rank waits for it in {where}" \
            in proc.stderr, proc.stderr


def test_the_done_of_a_queued_nccl_collective_queries_its_event_on_its_gpu(tmp_path):
    """What NcclLink hands the watch, on the fake CuPy (no NCCL there): an event recorded on the stream,
    queried with the collective's GPU current whichever GPU the asking thread has."""
    proc = run_with_fake_cupy("""
        import threading
        import cupy
        from xpnet.distributed._nccl import _ran

        queried_on = []
        Event = cupy.cuda.Event
        class Watched(Event):
            @property
            def done(self):
                queried_on.append(cupy.cuda.get_device_id())
                return True
        cupy.cuda.Event = Watched
        with cupy.cuda.Device(1):
            done = _ran(cupy.cuda.get_current_stream())
        answers = []
        thread = threading.Thread(target=lambda: answers.append(done()))
        thread.start()
        thread.join()
        print(answers, queried_on)
    """, tmp_path, devices=2)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[True]", "[1]"], proc.stdout


SPIRAL_RUN = ["-m", "xpnet", "train", "--dataset", "spiral", "--distributed", "--epochs", "1", "--quiet"]


@needs_mpi
@pytest.mark.parametrize(("extra", "message"), [
    (["--epochs", "-5"], "xpnet: error: rank 1: argument --epochs: expected a finite number >= 1, got '-5'"),
    (["--bogus"], "xpnet: error: rank 1: unrecognized arguments: --bogus"),
    (["--model", "cnn"], "xpnet: error: arguments differ across ranks: --model rank 0: mlp, rank 1: cnn; "),
    (["--lr", "0.5", "--optimizer", "sgd"],
     "xpnet: error: arguments differ across ranks: --optimizer rank 0: adam, rank 1: sgd; --lr rank 0: (default), "
     "rank 1: 0.5; give every rank the same command line"),
])
def test_cli_given_other_arguments_on_one_rank_exits_2_on_every_rank(tmp_path, extra, message):
    """Issue 27: a command line that does not parse on rank 1 only (it exited 2 before MPI started, and
    rank 0 waited forever), ``--model cnn`` on one rank (a usage error after init whose status was
    never seen) and ``--lr``/``--optimizer`` on one rank (trained to other weights, exit 0) print one
    line, once, and every rank exits 2."""
    run = [*SPIRAL_RUN, "--out", str(tmp_path / "out")]
    proc = launch_each(run, [*run, *extra], timeout=ENDS_S)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("xpnet: error:") == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "BAD TERMINATION" not in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists()


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
            assert mine[k] == approx_or_none(v, rel=tol, abs=tol), f"history {k}: {mine[k]} vs {v}"
    for k, v in ref_eval.items():
        assert first_record["evaluate"][k] == approx_or_none(v, rel=tol, abs=tol)


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
    require_cuda()


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
    through host memory; which one each rank should choose is read from what the ``mpiexec`` ranks
    themselves see (NCCL importable, GPU count), not from this process (issue 23, 9)."""
    _needs_gpu()
    proc = launch(n, "collectives.py", "cuda")
    assert_ok(proc)
    seen = re.findall(r"collectives ok: rank \d+ of \d+, CuPy arrays through (\w+); NCCL importable (\w+), (\d+) GPU",
                      proc.stdout)
    assert len(seen) == n, proc.stdout
    for transport, importable, gpus in seen:
        assert transport == ("nccl" if importable == "True" and int(gpus) >= n else "host"), proc.stdout


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
