"""Helpers for tests, also for users' own suites: tolerances by dtype and placement checks."""

from __future__ import annotations

from typing import Any

from .backend import Device, device_of


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
