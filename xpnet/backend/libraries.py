"""The optional array libraries: CuPy behind a probe, PyTorch and JAX imported only when named.

Nothing here is imported when xpnet is: CuPy is probed on the first question about CUDA (or the first
CuPy array), PyTorch and JAX on the first device string or array that names them. Each answer is
kept, so a missing or broken library is asked about once and its reason is given with every refusal.
"""

from __future__ import annotations

import warnings
from typing import Any

from .._user import install_hint

__all__ = ["cupy", "cuda_available", "cuda_unavailable_reason", "cuda_device_count", "library"]

_cupy: Any = None
_cupy_error: str | None = None
_cupy_probed = False


def _probe_cupy() -> None:
    global _cupy, _cupy_error, _cupy_probed
    if _cupy_probed:
        return
    _cupy_probed = True
    try:
        # A warning while CuPy imports (its CUDA path, a NumPy version...) is shown, never raised: under a
        # filter such as pytest's ``error::RuntimeWarning`` it would make every GPU look absent.
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            import cupy  # noqa: PLC0415 - optional dependency, imported on first use
    except Exception as exc:  # ImportError, or a broken CUDA install raising anything
        _cupy_error = f"cupy is not installed or failed to import ({type(exc).__name__}: {exc}); " \
                      f"install it with `{install_hint('cuda12')}` (or cuda13 for CUDA 13)"
        return
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        _cupy_error = f"cupy is installed but no CUDA driver answered ({type(exc).__name__}: {exc})"
        return
    if n < 1:
        _cupy_error = "cupy is installed but CUDA reports no GPU"
        return
    _cupy = cupy


def cupy() -> Any:
    """The ``cupy`` module, probed on first use; None where CUDA is not usable (see
    :func:`cuda_unavailable_reason`). Code that holds a CuPy array may rely on it being a module."""
    _probe_cupy()
    return _cupy


def cuda_available() -> bool:
    """True when CuPy imports and at least one CUDA device answers. Never raises."""
    try:
        _probe_cupy()
    except Exception:  # pragma: no cover - the probe already catches; belt and braces
        return False
    return _cupy is not None


def cuda_unavailable_reason() -> str | None:
    """Why :func:`cuda_available` is False (``None`` when a GPU is usable)."""
    return None if cuda_available() else _cupy_error


def cuda_device_count() -> int:
    """The number of CUDA devices CuPy sees; 0 where :func:`cuda_available` is False."""
    return int(_cupy.cuda.runtime.getDeviceCount()) if cuda_available() else 0


_LIBRARIES: dict[str, tuple[Any, str | None]] = {}


def library(name: str) -> tuple[Any, str | None]:
    """(module, None) for ``"torch"`` or ``"jax"``, or (None, why it cannot be imported); cached."""
    if name not in _LIBRARIES:
        try:
            module = __import__(name)
        except Exception as exc:  # ImportError, or a broken install raising anything
            _LIBRARIES[name] = (None, f"{name} is not installed or failed to import "
                                      f"({type(exc).__name__}: {exc}); install it with `{install_hint('backends')}`")
        else:
            _LIBRARIES[name] = (module, None)
    return _LIBRARIES[name]
