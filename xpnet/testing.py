"""Helpers for tests, also for users' own suites: tolerances by dtype and placement checks."""

from __future__ import annotations

import copy
import inspect
import os
from typing import Any

import numpy as np

from ._user import warn
from .backend import Device, XpnetDeviceWarning, device, device_of, to_device, to_numpy
from .gradcheck import GradcheckError, GradcheckReport, gradcheck
from .layers.base import Layer

__all__ = ["GradcheckError", "assert_backends_agree", "assert_gradients_ok", "assert_placed", "tolerance"]


def tolerance(dtype: Any) -> dict[str, float]:
    """``rtol``/``atol`` for comparing a result of ``dtype`` with a float64 reference."""
    name = str(dtype).rsplit(".", 1)[-1]
    if name == "float32":
        return {"rtol": 1e-5, "atol": 1e-6}
    if name == "float16":
        return {"rtol": 1e-2, "atol": 1e-3}
    return {"rtol": 1e-10, "atol": 1e-12}


def assert_placed(a: Any, dev: Device, dtype: Any = None) -> None:
    """Assert ``a`` is on ``dev`` (same namespace and device) and, when given, of ``dtype``."""
    where = device_of(a)
    if where != dev:
        raise AssertionError(f"array is on {where}, expected {dev}")
    if dtype is not None and str(a.dtype).rsplit(".", 1)[-1] != str(dtype).rsplit(".", 1)[-1]:
        raise AssertionError(f"array has dtype {a.dtype}, expected {dtype}")


def assert_gradients_ok(*args: Any, **kwargs: Any) -> GradcheckReport:
    """Run :func:`xpnet.gradcheck` with these arguments; raise :class:`GradcheckError` when any
    row fails, else return the report."""
    report = gradcheck(*args, **kwargs)
    if not report.ok:
        raise GradcheckError(report)
    return report


def assert_backends_agree(fn: Any, *args: Any, devices: Any = ("cpu", "cuda"), rtol: float | None = None,
                          atol: float | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run ``fn`` on each device and assert the results agree; returns them by device name (host arrays).

    Array arguments (also inside tuples, lists and dicts) are moved to each device, and a model or layer
    argument is copied to each device (``copy.deepcopy(model).to(device)``); when ``fn`` takes a
    ``device`` keyword it receives the :class:`~xpnet.Device`. Results (arrays, numbers, or nested
    tuples/lists/dicts of them) are brought back to NumPy and compared with the first device's at
    ``rtol``/``atol`` (default: from the result's dtype, :func:`tolerance`). A Python float carries no
    dtype: it gets the tolerance of the least precise floating dtype among the arrays and the models'
    parameters that ``fn`` was given (``xn.evaluate``'s loss of a float32 model: float32's), or float32's,
    xpnet's default dtype, where ``fn`` was given none; ints and bools must be equal. A device that is not
    available is skipped with its reason as an ``XpnetDeviceWarning``; fewer than two available devices skip the
    test (in a test that pytest runs) or raise ``RuntimeError`` naming the reasons (anywhere else, also where pytest
    is installed).
    """
    usable, skipped = [], []
    for spec in devices:
        try:
            usable.append(device(spec, fallback=False))
        except RuntimeError as exc:
            skipped.append(f"{spec}: {exc}")
            warn(f"assert_backends_agree: skipping {exc}", XpnetDeviceWarning)
    if len(usable) < 2:
        reason = "assert_backends_agree needs two usable devices; skipped " + "; ".join(skipped)
        if not os.environ.get("PYTEST_CURRENT_TEST"):  # pytest sets it while a test runs
            raise RuntimeError(reason)
        import pytest  # noqa: PLC0415 - only inside a test that pytest runs

        pytest.skip(reason)

    takes_device = "device" in inspect.signature(fn).parameters

    def move(obj: Any, dev: Device) -> Any:
        if isinstance(obj, Layer):  # a model or layer: a copy of it on each device, the original untouched
            return copy.deepcopy(obj).to(dev)
        if isinstance(obj, (tuple, list)):
            return type(obj)(move(o, dev) for o in obj)
        if isinstance(obj, dict):
            return {k: move(v, dev) for k, v in obj.items()}
        if hasattr(obj, "shape") and hasattr(obj, "dtype"):
            return to_device(obj, dev)
        return obj

    def back(obj: Any) -> Any:
        if isinstance(obj, (tuple, list)):
            return [back(o) for o in obj]
        if isinstance(obj, dict):
            return {k: back(v) for k, v in obj.items()}
        if hasattr(obj, "shape") and hasattr(obj, "dtype"):
            return to_numpy(obj)
        return obj

    number_tolerance = tolerance(_least_precise_float(args, kwargs))

    def compare(a: Any, b: Any, where: str) -> None:
        if isinstance(a, list):
            assert isinstance(b, list) and len(a) == len(b), f"{where}: structure differs"
            for i, (x, y) in enumerate(zip(a, b)):
                compare(x, y, f"{where}[{i}]")
        elif isinstance(a, dict):
            assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
            for k in a:
                compare(a[k], b[k], f"{where}[{k!r}]")
        else:
            number = isinstance(a, float)
            a, b = np.asarray(a), np.asarray(b)
            t = number_tolerance if number else tolerance(a.dtype) if a.dtype.kind == "f" else {"rtol": 0.0,
                                                                                                "atol": 0.0}
            np.testing.assert_allclose(b, a, rtol=t["rtol"] if rtol is None else rtol,
                                       atol=t["atol"] if atol is None else atol, err_msg=where)

    results: dict[str, Any] = {}
    for dev in usable:
        extra = {"device": dev} if takes_device else {}
        results[dev.name] = back(fn(*move(args, dev), **move(kwargs, dev), **extra))
    first = usable[0].name
    for name, value in results.items():
        if name != first:
            compare(results[first], value, f"{name} vs {first}")
    return results


_PRECISION = {"float16": 0, "float32": 1, "float64": 2}


def _least_precise_float(*objects: Any) -> str:
    """The least precise floating dtype name among the arrays in ``objects`` (inside tuples, lists and
    dicts) and the parameters of the models and layers there; ``"float32"`` where there is none."""
    found: list[str] = []

    def visit(obj: Any) -> None:
        if isinstance(obj, Layer):
            for v in obj.named_params().values():
                visit(v)
        elif isinstance(obj, (tuple, list)):
            for o in obj:
                visit(o)
        elif isinstance(obj, dict):
            for o in obj.values():
                visit(o)
        elif hasattr(obj, "shape") and hasattr(obj, "dtype"):
            name = str(obj.dtype).rsplit(".", 1)[-1]
            if name in _PRECISION:
                found.append(name)

    visit(objects)
    return min(found, key=_PRECISION.__getitem__) if found else "float32"
