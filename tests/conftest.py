"""The (backend, device, dtype) cases every test runs over, from one generator.

Inputs are made in NumPy on the host and sent to the case's device; results come back with
``xn.to_numpy``. CuPy cases are marked ``gpu`` and skip with a reason without a GPU; PyTorch and
JAX cases (CPU) skip with a reason where those packages are absent (``pip install -e '.[backends]'``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import xpnet as xn
from xpnet import backend
from xpnet.backend import libraries


def _strict_device(name: str):
    strict = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed (pip install -e '.[test]')")
    return xn.Device(strict, strict.Device(name))


def library_device(spec: str):
    """``xn.device(spec)`` for "torch:cpu" / "jax:cpu", skipping when the package is absent. JAX gets
    ``jax_enable_x64`` so that its float64 cases are float64 (xpnet refuses float64 without it)."""
    library = spec.partition(":")[0]
    module = pytest.importorskip(library, reason=f"{library} is not installed (pip install -e '.[backends]')")
    if library == "jax":
        module.config.update("jax_enable_x64", True)
    return xn.device(spec, fallback=False)


def _cuda_device():
    if not xn.cuda_available():
        pytest.skip(f"no GPU: {backend.cuda_unavailable_reason()}")
    return xn.device("cuda", fallback=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Skips are counted by reason alone: the summary (``-ra``) lists each reason once with its count,
    not once per test function (without the backends extra, some 200 tests skip for three reasons)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and isinstance(report.longrepr, tuple):
        report.longrepr = (str(Path(__file__).parent), None, report.longrepr[2])


def pytest_configure(config):
    """Child processes (``mpiexec``, ``python -m xpnet``) import the xpnet under test, installed or not."""
    root = str(Path(xn.__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)


DEVICE_MAKERS = {
    "numpy": lambda: xn.device("cpu"),
    "strict": lambda: _strict_device("CPU_DEVICE"),
    "strict-device1": lambda: _strict_device("device1"),
    "cupy": _cuda_device,
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


@pytest.fixture
def rng():
    return np.random.default_rng(1234)



@pytest.fixture
def no_cuda(monkeypatch):
    """Make CUDA look unavailable, with a known reason ("cupy is not installed (test)")."""
    monkeypatch.setattr(libraries, "_cupy_probed", True)
    monkeypatch.setattr(libraries, "_cupy", None)
    monkeypatch.setattr(libraries, "_cupy_error", "cupy is not installed (test)")
    monkeypatch.delenv("XPNET_DEVICE", raising=False)
