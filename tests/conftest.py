"""The (backend, device, dtype) cases every test runs over, from one generator.

Inputs are made in NumPy on the host and sent to the case's device; results come back with
``xn.to_numpy``. CuPy cases are marked ``gpu`` and skip with a reason without a GPU; PyTorch and
JAX cases (CPU) skip with a reason where those packages are absent (``pip install -e '.[backends]'``).

Strict GPU mode, ``XPNET_REQUIRE_GPU=1`` (what ``ci/gpu-session.sh`` and ``ci/test-gpu.sh`` run): a
``gpu`` test that would skip, for whatever reason, fails instead, with that reason; each CuPy device a
test gets is checked to make CuPy arrays (``XPNET_DEVICE=cpu`` cannot turn a CuPy case into NumPy,
in either mode). The header of every run says whether CUDA is usable, or why not.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import array_api_compat
import numpy as np
import pytest

import xpnet as xn
from xpnet import backend
from xpnet.backend import libraries

_LEFT = pytest.StashKey()

# JAX compiles every operation afresh per shape and dtype on first use, and the JAX cases were 37 % of the
# suite's CPU time, most of it XLA compiling for arrays of a few elements: compile cheaply, not for speed
# (their results are the same: the whole suite passes with these). The flags were checked on jaxlib 0.10; XLA
# stops the process at a flag it does not know, so other versions run without them. Set before JAX starts its
# backend, for this process and the processes the tests start; an XLA_FLAGS of one's own is left alone.
FAST_XLA_COMPILE = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0"


def _jaxlib_checked() -> bool:
    try:
        from importlib.metadata import version
        return version("jaxlib").split(".")[:2] == ["0", "10"]
    except Exception:  # not installed, or an odd version string
        return False


if "XLA_FLAGS" not in os.environ and _jaxlib_checked():
    os.environ["XLA_FLAGS"] = FAST_XLA_COMPILE


def _strict_device(name: str):
    strict = pytest.importorskip("array_api_strict",
                                 reason="array-api-strict is not installed (pip install -e '.[test]')")
    return xn.Device(strict, strict.Device(name))


def library_device(spec: str):
    """``xn.device(spec)`` for "torch:cpu" / "jax:cpu", skipping when the package is absent. JAX gets
    ``jax_enable_x64`` so that its float64 cases are float64 (xpnet refuses float64 without it)."""
    library = spec.partition(":")[0]
    module = pytest.importorskip(library, reason=f"{library} is not installed (pip install -e '.[backends]')")
    if library == "jax":
        module.config.update("jax_enable_x64", True)
    return xn.device(spec, fallback=False)


def approx_or_none(value, **tolerance):
    """``pytest.approx(value, **tolerance)``, or None as it is: a history's figure that an epoch has not (no accuracy
    for a language model). pytest 9.2's approx refuses None with a relative tolerance, which 9.0 compared as equal."""
    return value if value is None else pytest.approx(value, **tolerance)


STRICT_GPU = os.environ.get("XPNET_REQUIRE_GPU", "").strip() == "1"


def require_cuda():
    """The CuPy device (GPU 0) for a ``gpu`` test. Without a usable GPU the test skips with the probe's
    reason, or under ``XPNET_REQUIRE_GPU=1`` fails with it."""
    why = None
    if not xn.cuda_available():
        why = f"no GPU: {backend.cuda_unavailable_reason()}"
    elif os.environ.get("XPNET_DEVICE", "").strip().lower() == "cpu":
        why = "XPNET_DEVICE=cpu in the environment turns 'cuda' into the CPU; unset it for the GPU tests"
    if why is not None:
        if STRICT_GPU:
            pytest.fail(f"XPNET_REQUIRE_GPU=1: {why}", pytrace=False)
        pytest.skip(why)
    dev = xn.device("cuda", fallback=False)
    made = xn.to_device(np.zeros(1, dtype=np.float32), dev)
    assert dev.is_cupy and array_api_compat.is_cupy_array(made), f"xn.device('cuda') gave {dev}, arrays {type(made)}"
    return dev


def on_fake_cupy() -> bool:
    """Whether the CuPy of the ``gpu`` tests is the fake of tests/fake_cupy (NumPy underneath, raw kernels run by g++
    thread by thread): a test may then leave out sizes that take it minutes, never cases of another kind."""
    cupy = libraries.cupy() if xn.cuda_available() else None
    return cupy is not None and Path(cupy.__file__).resolve().parent.parent.name == "fake_cupy"


def pytest_configure(config):
    """Child processes (``mpiexec``, ``python -m xpnet``) import the xpnet under test, installed or not."""
    root = str(Path(xn.__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    if os.environ.get("XPNET_REQUIRE_GPU", "").strip() not in ("", "0", "1"):
        raise pytest.UsageError(f"XPNET_REQUIRE_GPU={os.environ['XPNET_REQUIRE_GPU']!r}: expected 1 (GPU tests must "
                                "run) or 0")
    if hasattr(config, "workerinput"):
        _share_the_cores_with_the_other_workers()


def _share_the_cores_with_the_other_workers() -> None:
    """Under ``pytest -n N`` each worker's PyTorch gets cores/N intra-op threads, not one per core: N workers each
    splitting every small op over all the cores spin waiting for threads another worker holds. Measured on 2 cores
    under load: the Transformer's gradcheck on torch took 36-40 CPU s with torch's default 2 threads, 7-8 with 1
    (NumPy's BLAS and JAX's are not helped: xpnet's tuner handles the one, the other runs small ops on one thread).
    Only the test workers' own PyTorch; scripts and ``mpiexec`` children keep the library's defaults."""
    try:
        import torch  # noqa: PLC0415 - nearly every worker imports it for its torch cases anyway
    except ImportError:
        return
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_report_header(config):
    """Whether CUDA is usable, or the probe's reason why not; and the strict mode when it is on."""
    if xn.cuda_available():
        cupy = libraries.cupy()
        lines = [f"xpnet: CUDA usable: {backend.cuda_device_count()} GPU(s), CuPy {cupy.__version__}"]
    else:
        lines = [f"xpnet: CUDA not usable: {backend.cuda_unavailable_reason()}"]
    if STRICT_GPU:
        lines.append("xpnet: XPNET_REQUIRE_GPU=1: a gpu test that would skip fails instead")
    return lines


# The longest tests (a minute or more each), started first: under pytest -n one of them handed out last kept its
# worker busy for that long while the others had nothing left to run.
FIRST = ("test_gpu_checks.py::test_the_whole_gpu_suite_runs_on_the_fake_cupy",)


# Cases JAX leaves out, by test and the ids of those it runs (each a part of the case's id): JAX compiles every
# operation afresh for each shape and dtype (20-50 ms each, nearly all of a JAX case's time, some 40 % of the suite's
# CPU), and these repeat on JAX what NumPy and array-api-strict run in full through the same layer code, or what
# another JAX case checks (named). An empty tuple: no case on JAX.
JAX_RUNS_PART = {
    # the loop with int labels on JAX; bool and (N, 1) float labels are the loss's, on NumPy and strict
    "test_losses_pytorch.py::test_train_with_bce_lowers_the_loss_and_logs_accuracy": ("jax-int64",),
    # the losses' gradients on JAX: test_losses_pytorch's equal-to-PyTorch cases; gradcheck of two of them here
    "test_losses_pytorch.py::test_gradcheck_with_each_loss": ("jax-l1", "jax-huber"),
    # its blocks on JAX: test_residual_block_equals_pytorch[jax-*] and test_concat_equals_pytorch[jax]
    "test_residual.py::test_example_network_equals_pytorch": (),
    # resuming on JAX: test_interrupted_and_resumed_run_equals_an_uninterrupted_one[jax]
    "test_train.py::test_resumed_run_with_batchnorms_cumulative_average_equals_an_uninterrupted_one": (),
    # RNN, LSTM and GRU's gradients on JAX equal PyTorch's (test_equals_pytorch_in_float64[jax-*]); the book's GRU
    "test_recurrent.py::test_gradcheck": ("jax-GRU-book",),
    "test_upsample.py::test_equal_to_pytorchs_interpolate": ("jax-bicubic-size-corners",),
    "test_pool.py::test_gradients_match_central_differences": ("jax-k3-s2-p1-",),
    "test_pool.py::test_pytorch_options_pass_gradcheck": ("jax-k3-s2-p1-max-ceil", "jax-k3-s2-p1-avg-ceil-divisor"),
    "test_pool.py::test_pytorch_options_match_pytorch": ("jax-max-ceil", "jax-avg-ceil-divisor"),
    # attention's gradients on JAX: test_sequence_layers::test_attention_equals_pytorch[jax]
    "test_book_models.py::test_seq2seq_gradcheck": (),
    # gradcheck on the model's device (JAX): a layer with a random mask, a loss with int and one-hot labels
    "test_gradcheck.py::test_correct_layers_pass": ("jax-dropout", "jax-mlp-relu-ce-int", "jax-mlp-sigmoid-ce-onehot"),
    "test_gradcheck.py::test_later_layers_pass": ("jax-MaxPool2d",),
    "test_layernorm.py::test_gradcheck_passes": ("jax-TD",),
    "test_composite.py::test_to_predict_and_summary_on_every_device": ("jax-float32",),
    "test_torch_weights.py::test_loads_into_a_model_on_any_device_and_dtype_and_comes_back_to_the_host":
        ("jax-float32-CNN", "jax-float64-LSTM-language-model"),
    # dx, dW and db on JAX equal PyTorch's: test_conv_transpose::test_equal_to_pytorch_in_float64[jax-*]
    "test_conv_transpose.py::test_gradcheck_of_an_encoder_decoder": (),
    # dquery, dkey, dvalue and the weights' gradients on JAX equal PyTorch's: test_equals_pytorch[jax-*]
    "test_multihead_attention.py::test_gradcheck_passes": (),
    "test_transformer.py::test_decoder_layer_equals_pytorch": ("jax-post-norm", "jax-causal-padding"),
    # the decoding loop is the model's, on NumPy and strict; sampling on JAX: test_sampling_is_seeded_...[jax]
    "test_book_models.py::test_generate_is_greedy_decoding_step_by_step_for_the_whole_batch": (),
    "test_activations.py::test_gradcheck_passes": ("jax-LeakyReLU-0.2", "jax-ELU-alpha", "jax-GELU-tanh",
                                                   "jax-Softplus-negative-beta", "jax-LogSoftmax-1"),
}


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not item.nodeid.split("[")[0].endswith(FIRST))  # stable: the rest keeps its order
    for item in items:
        keep = JAX_RUNS_PART.get(item.nodeid.split("[")[0].rpartition("/")[2])
        case = getattr(getattr(item, "callspec", None), "id", "")
        if keep is not None and "jax" in case and not any(k in case for k in keep):
            item.add_marker(pytest.mark.skip(reason="JAX runs part of this test's cases (it compiles every operation "
                                                    "per shape); NumPy and strict run all (tests/conftest.py)"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``XPNET_REQUIRE_GPU=1`` a skipped ``gpu`` test is a failure, with the skip's reason. Other
    skips are counted by reason alone: the summary (``-ra``) lists each reason once with its count, not
    once per test function (without the backends extra, some 200 tests skip for three reasons)."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if STRICT_GPU and item.get_closest_marker("gpu"):
        report.outcome = "failed"
        report.longrepr = f"XPNET_REQUIRE_GPU=1: this gpu test would have been skipped: {reason}"
    elif isinstance(report.longrepr, tuple):
        report.longrepr = (str(Path(__file__).parent), None, reason)


# Files a test run leaves in the checkout (git neither tracks nor ignores them): a test that writes into the
# working directory instead of ``tmp_path`` (four such .pt files once got committed). Checked by the process that
# runs the session (the controller under ``pytest -n``), before and after; outside a git checkout, not at all.
def _untracked(root: Path) -> set[str] | None:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", "."], cwd=root,
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return {line[3:] for line in out.stdout.splitlines() if line.startswith("?? ")} if out.returncode == 0 else None


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):
        session.config.stash[_LEFT] = _untracked(session.config.rootpath)


def pytest_sessionfinish(session, exitstatus):
    before = session.config.stash.get(_LEFT, None)
    if before is None or hasattr(session.config, "workerinput"):
        return
    left = sorted((_untracked(session.config.rootpath) or set()) - before)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"the tests left {len(left)} file(s) in the checkout (write under tmp_path): "
                                + ", ".join(left[:10]), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


DEVICE_MAKERS = {
    "numpy": lambda: xn.device("cpu"),
    "strict": lambda: _strict_device("CPU_DEVICE"),
    "strict-device1": lambda: _strict_device("device1"),
    "cupy": require_cuda,
    "torch": lambda: library_device("torch:cpu"),
    "jax": lambda: library_device("jax:cpu"),
}

# (device id, dtype) pairs: the default set every layer and loss is tested on.
CASES = [
    pytest.param(("numpy", "float64"), id="numpy-float64"),
    pytest.param(("numpy", "float32"), id="numpy-float32"),
    pytest.param(("strict", "float64"), id="strict-float64"),
    pytest.param(("strict-device1", "float32"), id="strict-device1-float32"),
    pytest.param(("cupy", "float32"), id="cupy-float32", marks=pytest.mark.gpu),
    pytest.param(("cupy", "float64"), id="cupy-float64", marks=pytest.mark.gpu),
    pytest.param(("torch", "float32"), id="torch-float32"),
    pytest.param(("torch", "float64"), id="torch-float64"),
    pytest.param(("jax", "float32"), id="jax-float32"),
    pytest.param(("jax", "float64"), id="jax-float64"),
]

DEVICES = [
    pytest.param("numpy", id="numpy"),
    pytest.param("strict-device1", id="strict-device1"),
    pytest.param("cupy", id="cupy", marks=pytest.mark.gpu),
    pytest.param("torch", id="torch"),
    pytest.param("jax", id="jax"),
]


@pytest.fixture(params=CASES)
def case(request):
    """(Device, dtype name) for one backend/device/dtype combination."""
    dev_id, dtype = request.param
    return DEVICE_MAKERS[dev_id](), dtype


@pytest.fixture(params=DEVICES)
def dev(request):
    """A Device: numpy, array_api_strict "device1" (the second-device stand-in), cupy, torch:cpu, jax:cpu."""
    return DEVICE_MAKERS[request.param]()


def part_of_the_grid_on_jax(dev, request, keep: tuple[str, ...]) -> None:
    """Skip this case of a parametrized grid on JAX unless its id holds one of ``keep``: JAX compiles every
    operation afresh for each shape (about a second a case), and its fast paths are tested equal to the portable
    code over the geometries in tests/test_fast_paths.py; NumPy and array-api-strict run the whole grid through
    the same layer code."""
    if dev.name.startswith("jax") and not any(k in request.node.callspec.id for k in keep):
        pytest.skip("JAX runs part of this grid (it compiles every operation per shape); NumPy and strict run all")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _cpu_tests_stay_on_the_cpu(request, monkeypatch):
    """A test not marked ``gpu`` is a CPU test wherever it runs. On a machine where CUDA is usable, ``xn.train``'s
    ``device="auto"`` (and ``xn.device("auto")``) would take the GPU, and such a test, reading the model back as
    NumPy or giving it host arrays, failed there (43 of them under the fake CuPy): ``XPNET_DEVICE=cpu`` for it,
    unless the environment sets a device already. ``no_cuda`` still clears it, for the fallback's own tests."""
    if "XPNET_DEVICE" not in os.environ and request.node.get_closest_marker("gpu") is None and xn.cuda_available():
        monkeypatch.setenv("XPNET_DEVICE", "cpu")



@pytest.fixture
def no_cuda(monkeypatch):
    """Make CUDA look unavailable, with a known reason ("cupy is not installed (test)")."""
    monkeypatch.setattr(libraries, "_cupy_probed", True)
    monkeypatch.setattr(libraries, "_cupy", None)
    monkeypatch.setattr(libraries, "_cupy_error", "cupy is not installed (test)")
    monkeypatch.delenv("XPNET_DEVICE", raising=False)


@pytest.fixture
def fashion_mnist():
    """Skips the test where the Fashion-MNIST files are not on the machine."""
    try:
        xn.datasets.find_files("fashion-mnist", download=False)
    except xn.datasets.DatasetNotFoundError:
        pytest.skip("Fashion-MNIST files not found (apt-get install dataset-fashion-mnist, or set XPNET_DATA)")


@pytest.fixture(params=["products", "taps"])
def resize_path(request, monkeypatch):
    """Upsample and AdaptiveAvgPool2d made to resize by their two products or by their taps, whatever the size
    (``xpnet.layers._interp.banded``): the tests against PyTorch hold on both."""
    taps = request.param == "taps"
    monkeypatch.setattr(xn.layers._interp, "banded", lambda x: taps)
    return request.param
