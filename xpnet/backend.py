"""Devices, array namespaces, moving arrays, the CUDA probe and the fast-path registry.

This is the one module that knows about NumPy and CuPy by name. Everything else asks
``namespace(x)`` for the array-API namespace of its input and allocates with
``dtype=x.dtype, device=x.device``.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import array_api_compat
import array_api_compat.numpy as _np_xp
import numpy as np

from ._user import install_hint, warn

__all__ = [
    "Device",
    "XpnetDeviceWarning",
    "cuda_available",
    "cuda_unavailable_reason",
    "device",
    "device_of",
    "namespace",
    "isdtype",
    "to_device",
    "to_numpy",
    "same_device",
    "fast_path",
    "register_fast_path",
    "writes_out",
    "into",
]


class XpnetDeviceWarning(UserWarning):
    """A requested device could not be used and xpnet fell back to another (the CPU)."""


# ----------------------------------------------------------------------------------------
# CuPy, imported once behind a guard
# ----------------------------------------------------------------------------------------

_cupy: Any = None
_cupy_error: str | None = None
_cupy_probed = False


def _probe_cupy() -> None:
    global _cupy, _cupy_error, _cupy_probed
    if _cupy_probed:
        return
    _cupy_probed = True
    try:
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
    return int(_cupy.cuda.runtime.getDeviceCount()) if cuda_available() else 0


# ----------------------------------------------------------------------------------------
# Device
# ----------------------------------------------------------------------------------------


def _compat(xp: Any) -> Any:
    """The array-API namespace for a module: NumPy and CuPy get array-api-compat's wrapper."""
    name = getattr(xp, "__name__", "")
    if name == "numpy":
        return _np_xp
    if name == "cupy":
        import array_api_compat.cupy as cxp  # noqa: PLC0415 - only with cupy present
        return cxp
    return xp


class Device:
    """An array-API namespace and one of its devices.

    ``Device(numpy)`` is the CPU; ``Device(array_api_strict, array_api_strict.Device("device1"))``
    is the test stand-in for a second device. ``xp`` is the (array-api-compat wrapped) namespace,
    ``native`` the namespace's own device object, ``name`` a readable label.
    """

    def __init__(self, xp: Any, native: Any = None, name: str | None = None):
        self.xp = _compat(xp)
        if native is None:
            native = self.xp.__array_namespace_info__().default_device()
        self.native = native
        if name is None:
            if self.is_numpy:
                name = "cpu"
            elif self.is_cupy:
                name = f"cuda:{int(native.id)}"
            else:
                label = str(native)
                if "('" in label:  # array_api_strict.Device('device1') -> device1
                    label = label.split("('", 1)[1].rstrip("')")
                name = f"{self.xp.__name__}:{label}"
        self.name = name

    @property
    def is_numpy(self) -> bool:
        return array_api_compat.is_numpy_namespace(self.xp)

    @property
    def is_cupy(self) -> bool:
        return array_api_compat.is_cupy_namespace(self.xp)

    @property
    def is_cpu(self) -> bool:
        return self.is_numpy

    def supports_float64(self) -> bool:
        """False where the device rejects float64 (array-api-strict's "no_float64")."""
        try:
            self.xp.zeros((1,), dtype=self.xp.float64, device=self.native)
        except Exception:
            return False
        return True

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """``a`` (any backend, or a Python sequence) as an array on this device."""
        return to_device(a, self, dtype=dtype)

    def synchronize(self) -> None:
        """Wait for queued work on this device (a no-op on the CPU)."""
        if self.is_cupy:
            with _cupy.cuda.Device(int(self.native.id)):
                _cupy.cuda.get_current_stream().synchronize()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and self.xp is other.xp and self.native == other.native

    def __hash__(self) -> int:
        return hash((id(self.xp), str(self.native)))

    def __repr__(self) -> str:
        return f"Device({self.name!r})"

    def __str__(self) -> str:
        return self.name


CPU = Device(np)


def _parse_cuda_index(spec: str) -> int:
    if spec == "cuda":
        return 0
    try:
        index = int(spec.split(":", 1)[1])
    except ValueError:
        raise ValueError(f"device: expected 'cuda' or 'cuda:N' with N a whole number, got {spec!r}") from None
    if index < 0:
        raise ValueError(f"device: a CUDA index must be >= 0, got {spec!r}")
    return index


def device(spec: Any = "auto", *, fallback: bool = True) -> Device:
    """Resolve a device spec: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a :class:`Device`.

    ``"auto"`` takes GPU 0 when :func:`cuda_available`, else the CPU. ``"cuda"``/``"cuda:N"``
    without a usable GPU warns once with :class:`XpnetDeviceWarning` and returns the CPU, or raises
    ``RuntimeError`` when ``fallback=False``. ``XPNET_DEVICE=cpu`` in the environment turns
    ``"auto"`` and ``"cuda"`` requests into the CPU (scripts written for a GPU server).
    """
    if isinstance(spec, Device):
        return spec
    if spec is None:
        spec = "auto"
    if not isinstance(spec, str):
        raise TypeError(f"device: expected a str or xpnet.Device, got {type(spec).__name__}")
    spec = spec.strip().lower()
    forced = os.environ.get("XPNET_DEVICE", "").strip().lower()
    if forced and forced not in ("cpu", "cuda", "auto") and not (forced.startswith("cuda:")
                                                                 and forced[5:].isdigit()):
        raise ValueError(f"XPNET_DEVICE={os.environ['XPNET_DEVICE']!r} in the environment is not a device; "
                         "expected 'cpu', 'cuda', 'cuda:N' or 'auto' (or unset it)")
    if forced and spec in ("auto", "cuda") or (forced and spec.startswith("cuda:")):
        if forced == "cpu":
            return CPU
        spec = forced
    if spec == "cpu":
        return CPU
    if spec == "auto":
        return Device(_cupy, _cupy.cuda.Device(0)) if cuda_available() else CPU
    if spec == "cuda" or spec.startswith("cuda:"):
        index = _parse_cuda_index(spec)
        if cuda_available() and index < cuda_device_count():
            return Device(_cupy, _cupy.cuda.Device(index))
        reason = cuda_unavailable_reason() or (
            f"CUDA device {index} does not exist ({cuda_device_count()} device(s) found)")
        if not fallback:
            raise RuntimeError(f"device {spec!r} is not usable: {reason}")
        warn(f"device {spec!r} is not usable: {reason}. Falling back to the CPU.", XpnetDeviceWarning)
        return CPU
    raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N', 'auto' or an xpnet.Device, got {spec!r}")


# ----------------------------------------------------------------------------------------
# Namespaces and moving arrays
# ----------------------------------------------------------------------------------------

_NS_CACHE: dict[type, Any] = {}


def namespace(*arrays: Any) -> Any:
    """The array-API namespace of ``arrays`` (cached per array type: cheap in a hot loop).

    Raises TypeError naming both namespaces when arrays from two libraries are mixed.
    """
    xp = None
    for a in arrays:
        t = type(a)
        if a is None or t in (int, float, bool, complex):
            continue
        ns = _NS_CACHE.get(t)
        if ns is None:
            ns = array_api_compat.array_namespace(a)
            _NS_CACHE[t] = ns
        if xp is None:
            xp = ns
        elif ns is not xp:
            raise TypeError(f"arrays from two namespaces cannot be mixed: {xp.__name__} and {ns.__name__}")
    if xp is None:
        raise TypeError("namespace: expected at least one array")
    return xp


_DTYPE_KINDS: dict[tuple[int, str], bool] = {}
_DTYPES_SEEN: list[Any] = []  # keeps the memoised dtype objects alive, so their ids stay theirs


def isdtype(xp: Any, dtype: Any, kind: str) -> bool:
    """``xp.isdtype(dtype, kind)``, memoised by the dtype object's identity (dtypes of two libraries
    must not be compared): layers and losses check every input, and NumPy's isdtype costs ~3 us."""
    key = (id(dtype), kind)
    hit = _DTYPE_KINDS.get(key)
    if hit is None:
        hit = bool(xp.isdtype(dtype, kind))
        if len(_DTYPES_SEEN) < 256:  # byte-swapped NumPy dtypes are new objects: do not grow forever
            _DTYPES_SEEN.append(dtype)
            _DTYPE_KINDS[key] = hit
    return hit


def device_of(a: Any) -> Device:
    """The :class:`Device` that holds array ``a``."""
    xp = namespace(a)
    if array_api_compat.is_numpy_namespace(xp):
        return CPU
    return Device(xp, array_api_compat.device(a))


def same_device(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` live in the same namespace on the same device."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return True
    return array_api_compat.device(a) == array_api_compat.device(b)


def to_numpy(a: Any) -> np.ndarray:
    """Array ``a`` of any backend (or a Python scalar/sequence) as a ``numpy.ndarray`` on the host."""
    if isinstance(a, np.ndarray):
        return a
    if array_api_compat.is_cupy_array(a):
        return a.get()
    if array_api_compat.is_array_api_obj(a):
        xp = namespace(a)
        try:
            return np.asarray(a)
        except (RuntimeError, ValueError, TypeError):
            host = xp.__array_namespace_info__().default_device()
            return np.asarray(array_api_compat.to_device(a, host))
    return np.asarray(a)


def to_device(a: Any, dev: Any, dtype: Any = None) -> Any:
    """Array ``a`` on device ``dev`` (a spec or :class:`Device`); no copy when it is already there.

    ``dtype`` may be a dtype of the target namespace or a name such as ``"float32"``.
    """
    dev = device(dev)
    xp = dev.xp
    if isinstance(dtype, str):
        dtype = getattr(xp, dtype)
    if dev.is_numpy:
        out = to_numpy(a)
        return out if dtype is None or out.dtype == dtype else out.astype(dtype)
    if dev.is_cupy:
        with _cupy.cuda.Device(int(dev.native.id)):
            if array_api_compat.is_cupy_array(a) and a.device == dev.native:
                out = a
            elif array_api_compat.is_cupy_array(a):
                out = _cupy.array(a, copy=True)
            else:
                out = _cupy.asarray(to_numpy(a))
            return out if dtype is None or out.dtype == dtype else out.astype(dtype)
    if array_api_compat.is_array_api_obj(a) and not isinstance(a, np.ndarray) \
            and namespace(a) is xp:
        out = a if array_api_compat.device(a) == dev.native else array_api_compat.to_device(a, dev.native)
    else:
        out = xp.asarray(to_numpy(a), device=dev.native)
    return out if dtype is None or out.dtype == dtype else xp.astype(out, dtype)


# ----------------------------------------------------------------------------------------
# Random numbers on a device
# ----------------------------------------------------------------------------------------


def uniform(rng: np.random.Generator, shape: tuple[int, ...], like: Any) -> Any:
    """Uniform [0, 1) numbers of ``like``'s dtype on ``like``'s device.

    On CuPy they are drawn on the GPU from a generator seeded by ``rng`` (no host-to-device copy
    of a mask each step); elsewhere on the host from ``rng`` and moved.
    """
    if array_api_compat.is_cupy_array(like):
        state = _cupy_rngs.get(id(rng))
        if state is None or state[0] is not rng:
            gen = _cupy.random.default_rng(int(rng.integers(2**63)))
            _cupy_rngs[id(rng)] = state = (rng, gen)
        return state[1].random(shape, dtype=like.dtype)
    host = rng.random(shape, dtype=np.float64 if _dtype_name(like) == "float64" else np.float32)
    if isinstance(like, np.ndarray):
        return host
    xp = namespace(like)
    return xp.asarray(host, device=array_api_compat.device(like))


_cupy_rngs: dict[int, tuple[np.random.Generator, Any]] = {}


def set_rng_state(rng: np.random.Generator, state: dict[str, Any] | None = None) -> None:
    """Rewind ``rng`` to ``state`` (a ``rng.bit_generator.state``) so that :func:`uniform` draws the
    same numbers again, also on CuPy, whose device generator is derived from ``rng`` on first use.
    ``state=None`` only drops that device generator (it is rebuilt from ``rng`` when next needed)."""
    if state is not None:
        rng.bit_generator.state = state
    _cupy_rngs.pop(id(rng), None)


def _dtype_name(a: Any) -> str:
    return str(a.dtype).rsplit(".", 1)[-1]


# ----------------------------------------------------------------------------------------
# Fast paths: per-backend implementations that live beside the portable code
# ----------------------------------------------------------------------------------------

_FAST_PATHS: dict[tuple[str, str], Callable[..., Any]] = {}
_fast_paths_enabled = os.environ.get("XPNET_DISABLE_FAST_PATHS", "") == ""


def register_fast_path(op: str, backend: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn`` as the fast implementation of ``op`` for ``backend``
    (``"numpy"`` or ``"cupy"``). It must be tested equal to the portable path."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        _FAST_PATHS[(op, backend)] = fn
        return fn

    return decorate


def fast_path(op: str, xp: Any) -> Callable[..., Any] | None:
    """The fast implementation of ``op`` for namespace ``xp``, or None (use the portable path)."""
    if not _fast_paths_enabled:
        return None
    if array_api_compat.is_numpy_namespace(xp):
        return _FAST_PATHS.get((op, "numpy"))
    if array_api_compat.is_cupy_namespace(xp):
        return _FAST_PATHS.get((op, "cupy"))
    return None


def writes_out(xp: Any) -> bool:
    """Whether ``xp``'s elementwise functions can write into ``out=`` (NumPy's and CuPy's ufuncs do;
    the array API has no ``out=``). False while the fast paths are off, so tests compare both ways."""
    return _fast_paths_enabled and (array_api_compat.is_numpy_namespace(xp)
                                    or array_api_compat.is_cupy_namespace(xp))


def into(out: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` written into ``out``, or a new array when ``out`` is None (a namespace without
    ``out=``, see :func:`writes_out`). Always use the result: ``w = into(w, xp.sqrt, v)``."""
    return fn(*args) if out is None else fn(*args, out=out)


def set_fast_paths(enabled: bool) -> bool:
    """Turn the fast paths on or off (tests compare both); returns the previous setting."""
    global _fast_paths_enabled
    previous, _fast_paths_enabled = _fast_paths_enabled, bool(enabled)
    return previous
