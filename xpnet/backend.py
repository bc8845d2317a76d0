"""Devices, array namespaces, moving arrays, the CUDA probe and the fast-path registry.

This is the one module that knows about NumPy, CuPy, PyTorch and JAX by name. Everything else asks
``namespace(x)`` for the array-API namespace of its input and allocates with
``dtype=x.dtype, device=x.device``.

How another array library joins (PyTorch tensors, JAX arrays):

1. A device string ``"torch:cpu"``, ``"torch:cuda[:N]"``, ``"torch:mps"``, ``"jax:cpu"`` or
   ``"jax:gpu[:N]"`` names the library and its device. The library is imported only then (importing
   xpnet never imports it); when it or the device is missing, the request falls back to the CPU
   (NumPy) with an :class:`XpnetDeviceWarning`, like ``"cuda"``.
2. Updating an array (a parameter, an optimizer slot, a window of a gradient) follows one rule,
   :func:`update_rule`: where the library's arrays are mutable the update writes in place, where they
   are immutable but offer JAX's ``x.at[i].set(v)`` it makes a new array, and in both cases the
   result is stored back where the old array was kept (``params[k] = p``). A namespace that allows
   neither is refused with :class:`XpnetBackendError` before anything runs on it.
3. PyTorch runs with autograd off (:func:`no_autograd`): xpnet writes its own backward passes.
   JAX runs eagerly (no ``jax.jit``); its float64 needs ``jax_enable_x64`` (checked, never assumed).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, Callable

import array_api_compat
import array_api_compat.numpy as _np_xp
import numpy as np

from ._user import install_hint, warn

__all__ = [
    "Device",
    "XpnetBackendError",
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
    "set_numba",
    "writes_out",
    "into",
    "update_rule",
    "set_at",
    "add_at",
    "no_autograd",
    "untracked",
]


class XpnetDeviceWarning(UserWarning):
    """A requested device could not be used and xpnet fell back to another (the CPU)."""


class XpnetBackendError(TypeError):
    """xpnet cannot compute correctly on this array namespace (its arrays can be updated neither in
    place nor through ``.at``), so it refuses to run rather than train silently wrong."""


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
# Updating arrays: one rule for mutable and immutable namespaces
# ----------------------------------------------------------------------------------------

_RULES: dict[int, tuple[Any, str]] = {}  # id(namespace) -> (namespace, rule): namespaces need not hash


def update_rule(xp: Any) -> str:
    """How arrays of namespace ``xp`` are updated: ``"in place"`` (NumPy, CuPy, PyTorch,
    array-api-strict) or ``"at"`` (immutable arrays with JAX's ``x.at[i].set(v)``).

    Found once per namespace by trying both on a small array. Either way an update is written as
    ``p -= u`` (in place, or a new array bound to ``p``) or ``p = set_at(p, i, v)``, and the result
    is stored back where ``p`` was kept. A namespace with neither raises :class:`XpnetBackendError`.
    """
    known = _RULES.get(id(xp))
    if known is None or known[0] is not xp:
        known = _RULES[id(xp)] = (xp, _probe_update_rule(xp))
    return known[1]


def _probe_update_rule(xp: Any) -> str:
    name = getattr(xp, "__name__", type(xp).__name__)
    try:
        probe = xp.zeros((3,), dtype=xp.float32)
        alias = probe
        alias += 1.0
    except Exception as exc:
        raise XpnetBackendError(
            f"xpnet cannot run on {name}: its arrays refuse `p += u` ({type(exc).__name__}: {exc}), so "
            "optimizer steps could not update the parameters") from None
    try:
        if alias is probe:
            probe[0:1] = xp.zeros((1,), dtype=xp.float32)
            if bool(xp.all(probe == xp.asarray([0.0, 1.0, 1.0], dtype=xp.float32))):
                return "in place"
        elif bool(xp.all(alias == 1.0)) and hasattr(alias, "at"):
            if bool(xp.all(alias.at[0:1].set(0.0) == xp.asarray([0.0, 1.0, 1.0], dtype=xp.float32))):
                return "at"
        why = "gave wrong values"
    except Exception as exc:
        why = f"raised {type(exc).__name__}: {exc}"
    raise XpnetBackendError(
        f"xpnet cannot run on {name}: its arrays can be updated neither in place (`p[i] = v`) nor through "
        f"JAX-style `p.at[i].set(v)` (trying it {why}); optimizer steps and gradients would be silently lost")


def set_at(a: Any, index: Any, value: Any) -> Any:
    """``a[index] = value``: in place where ``a`` is mutable (returns ``a``), else a new array
    (``a.at[index].set(value)``). Always use the result: ``a = set_at(a, i, v)``."""
    if update_rule(namespace(a)) == "in place":
        a[index] = value
        return a
    return a.at[index].set(value)


def add_at(a: Any, index: Any, value: Any) -> Any:
    """``a[index] += value``, under the same rule as :func:`set_at`. Always use the result."""
    if update_rule(namespace(a)) == "in place":
        a[index] += value
        return a
    return a.at[index].add(value)


def untracked(a: Any) -> Any:
    """``a`` without autograd tracking: a PyTorch tensor that requires grad is detached (xpnet computes
    its own gradients); anything else is returned as it is."""
    return a.detach() if array_api_compat.is_torch_array(a) and a.requires_grad else a


def no_autograd(xp: Any) -> Any:
    """A context in which PyTorch records no autograd graph (``torch.no_grad()``; xpnet writes its own
    backward passes); a no-op elsewhere. Not ``inference_mode``: its tensors refuse later in-place updates."""
    if array_api_compat.is_torch_namespace(xp):
        return _library("torch")[0].no_grad()
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------------------
# Device
# ----------------------------------------------------------------------------------------


def _compat(xp: Any) -> Any:
    """The array-API namespace for a module: NumPy, CuPy and PyTorch get array-api-compat's wrapper
    (``jax.numpy`` is itself an array-API namespace)."""
    name = getattr(xp, "__name__", "")
    if name == "numpy":
        return _np_xp
    if name == "cupy":
        import array_api_compat.cupy as cxp  # noqa: PLC0415 - only with cupy present
        return cxp
    if name == "torch":
        import array_api_compat.torch as txp  # noqa: PLC0415 - only with torch present
        return txp
    return xp


# ----------------------------------------------------------------------------------------
# PyTorch and JAX, imported only when a device string names them
# ----------------------------------------------------------------------------------------

_LIBRARIES: dict[str, tuple[Any, str | None]] = {}


def _library(name: str) -> tuple[Any, str | None]:
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


def _torch_device(kind: str, index: int | None) -> tuple[Any, Any, str | None]:
    """(torch namespace, torch.device, None) or (None, None, why the device is not usable)."""
    torch, why = _library("torch")
    if torch is None:
        return None, None, why
    if kind == "cpu":
        return torch, torch.device("cpu"), None
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (index or 0) >= count:
            return None, None, f"torch {torch.__version__} sees {count} CUDA device(s)"
        return torch, torch.device("cuda", index or 0), None
    if not torch.backends.mps.is_available() or (index or 0) > 0:
        return None, None, f"torch {torch.__version__} reports no MPS (Apple-silicon GPU) device {index or 0}"
    return torch, torch.device("mps", 0), None


def _jax_device(kind: str, index: int | None) -> tuple[Any, Any, str | None]:
    """(jax.numpy, jax device, None) or (None, None, why the device is not usable)."""
    jax, why = _library("jax")
    if jax is None:
        return None, None, why
    try:
        found = jax.devices(kind)
    except RuntimeError as exc:  # "Unknown backend: 'gpu' requested ..."
        return None, None, f"jax {jax.__version__}: {exc}"
    if (index or 0) >= len(found):
        return None, None, f"jax {jax.__version__} sees {len(found)} {kind} device(s)"
    import jax.numpy as jnp  # noqa: PLC0415 - optional dependency, imported on first use
    return jnp, found[index or 0], None


# "<library>:<device kinds>" -> the function that finds it.
_LIBRARY_DEVICES = {"torch": (("cpu", "cuda", "mps"), _torch_device), "jax": (("cpu", "gpu"), _jax_device)}


def _library_device(spec: str) -> tuple[Any, Any, str | None]:
    """Parse ``"torch:cuda:1"``, ``"jax:cpu"``...: (namespace, native device, None) or (None, None, why)."""
    library, _, rest = spec.partition(":")
    kinds, find = _LIBRARY_DEVICES[library]
    kind, _, index = rest.partition(":")
    if kind not in kinds or (index and (kind == "cpu" or not index.isdigit())):
        expected = ", ".join(f"'{library}:{k}'" + ("" if k == "cpu" else f", '{library}:{k}:N'")
                             for k in kinds)
        raise ValueError(f"device: expected {expected}, got {spec!r}")
    return find(kind, int(index) if index else None)


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
            elif array_api_compat.is_torch_namespace(self.xp):
                name = f"torch:{native}"
            elif array_api_compat.is_jax_namespace(self.xp):
                name = f"jax:{native.platform}" + (f":{native.id}" if native.platform != "cpu" else "")
            else:
                label = str(native)
                if "('" in label:  # array_api_strict.Device('device1') -> device1
                    label = label.split("('", 1)[1].rstrip("')")
                name = f"{self.xp.__name__}:{label}"
        self.name = name
        update_rule(self.xp)

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
        """False where the device rejects float64 (array-api-strict's "no_float64", MPS) or quietly
        makes float32 of it (JAX without ``jax_enable_x64``)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                z = self.xp.zeros((1,), dtype=self.xp.float64, device=self.native)
        except Exception:
            return False
        return z.dtype == self.xp.float64

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """``a`` (any backend, or a Python sequence) as an array on this device."""
        return to_device(a, self, dtype=dtype)

    def synchronize(self) -> None:
        """Wait for queued work on this device (a no-op on the CPU; JAX waits per array)."""
        if self.is_cupy:
            with _cupy.cuda.Device(int(self.native.id)):
                _cupy.cuda.get_current_stream().synchronize()
        elif array_api_compat.is_torch_namespace(self.xp) and self.native.type == "cuda":
            _library("torch")[0].cuda.synchronize(self.native)
        elif array_api_compat.is_torch_namespace(self.xp) and self.native.type == "mps":
            _library("torch")[0].mps.synchronize()

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
    """Resolve a device spec: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``, a PyTorch or JAX device
    (``"torch:cpu"``, ``"torch:cuda[:N]"``, ``"torch:mps"``, ``"jax:cpu"``, ``"jax:gpu[:N]"``) or a
    :class:`Device`.

    ``"auto"`` takes GPU 0 when :func:`cuda_available`, else the CPU. A device that is not usable
    (no GPU, or PyTorch/JAX not installed, or without that device) warns with
    :class:`XpnetDeviceWarning` and returns the CPU (NumPy), or raises ``RuntimeError`` when
    ``fallback=False``. ``XPNET_DEVICE=cpu`` in the environment turns ``"auto"`` and ``"cuda"``
    requests into the CPU (scripts written for a GPU server).
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
    elif spec.partition(":")[0] in _LIBRARY_DEVICES:
        xp, native, reason = _library_device(spec)
        if xp is not None:
            return Device(xp, native)
    else:
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N', 'auto', 'torch:cpu', 'torch:cuda[:N]', "
                         f"'torch:mps', 'jax:cpu', 'jax:gpu[:N]' or an xpnet.Device, got {spec!r}")
    if not fallback:
        raise RuntimeError(f"device {spec!r} is not usable: {reason}")
    warn(f"device {spec!r} is not usable: {reason}. Falling back to the CPU (NumPy).", XpnetDeviceWarning)
    return CPU


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
    if array_api_compat.is_torch_array(a):
        return a.detach().cpu().numpy()
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
    a = untracked(a)
    if array_api_compat.is_array_api_obj(a) and not isinstance(a, np.ndarray) \
            and namespace(a) is xp:
        out = a if array_api_compat.device(a) == dev.native else array_api_compat.to_device(a, dev.native)
    else:
        out = xp.asarray(to_numpy(a), device=dev.native)
    wanted = _dtype_name(a) if dtype is None and hasattr(a, "dtype") else str(dtype).rsplit(".", 1)[-1]
    if dtype is not None and out.dtype != dtype:
        out = xp.astype(out, dtype)
    if wanted == "float64" and _dtype_name(out) != "float64":
        # JAX without jax_enable_x64 turns float64 into float32 with only a warning.
        raise ValueError(f"to_device: {dev.name} cannot hold float64 (it gave {out.dtype}); for JAX call "
                         "jax.config.update('jax_enable_x64', True) before making arrays, or use float32")
    return out


# ----------------------------------------------------------------------------------------
# Random numbers on a device
# ----------------------------------------------------------------------------------------


def uniform(rng: np.random.Generator, shape: tuple[int, ...], like: Any) -> Any:
    """Uniform [0, 1) numbers of ``like``'s dtype on ``like``'s device.

    On CuPy and on PyTorch's GPUs they are drawn on the device from a generator seeded by ``rng``
    (no host-to-device copy of a mask each step); elsewhere on the host from ``rng`` and moved
    (PyTorch's CPU tensors share the host memory: the same numbers as NumPy).
    """
    if array_api_compat.is_cupy_array(like):
        state = _device_rngs.get(id(rng))
        if state is None or state[0] is not rng:
            gen = _cupy.random.default_rng(int(rng.integers(2**63)))
            _device_rngs[id(rng)] = state = (rng, gen)
        return state[1].random(shape, dtype=like.dtype)
    if array_api_compat.is_torch_array(like) and like.device.type != "cpu":
        torch = _library("torch")[0]
        state = _device_rngs.get(id(rng))
        if state is None or state[0] is not rng or state[1].device != like.device:
            gen = torch.Generator(device=like.device)
            gen.manual_seed(int(rng.integers(2**63)))
            _device_rngs[id(rng)] = state = (rng, gen)
        return torch.rand(shape, generator=state[1], dtype=like.dtype, device=like.device)
    host = rng.random(shape, dtype=np.float64 if _dtype_name(like) == "float64" else np.float32)
    if isinstance(like, np.ndarray):
        return host
    xp = namespace(like)
    return xp.asarray(host, device=array_api_compat.device(like))


_device_rngs: dict[int, tuple[np.random.Generator, Any]] = {}


def set_rng_state(rng: np.random.Generator, state: dict[str, Any] | None = None) -> None:
    """Rewind ``rng`` to ``state`` (a ``rng.bit_generator.state``) so that :func:`uniform` draws the
    same numbers again, also on a GPU, whose device generator is derived from ``rng`` on first use.
    ``state=None`` only drops that device generator (it is rebuilt from ``rng`` when next needed)."""
    if state is not None:
        rng.bit_generator.state = state
    _device_rngs.pop(id(rng), None)


def _dtype_name(a: Any) -> str:
    return str(a.dtype).rsplit(".", 1)[-1]


# ----------------------------------------------------------------------------------------
# Fast paths: per-backend implementations that live beside the portable code
# ----------------------------------------------------------------------------------------

_FAST_PATHS: dict[tuple[str, str], Callable[..., Any]] = {}
_fast_paths_enabled = os.environ.get("XPNET_DISABLE_FAST_PATHS", "") == ""
_numba_enabled = os.environ.get("XPNET_DISABLE_NUMBA", "") == ""


def register_fast_path(op: str, backend: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn`` as the fast implementation of ``op`` for ``backend``
    (``"numpy"``, ``"cupy"`` or ``"torch"``; ``"numba"``: for NumPy arrays, preferred over ``"numpy"``
    while :func:`set_numba` leaves it on). It must be tested equal to the portable path."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        _FAST_PATHS[(op, backend)] = fn
        return fn

    return decorate


def fast_path(op: str, xp: Any) -> Callable[..., Any] | None:
    """The fast implementation of ``op`` for namespace ``xp``, or None (use the portable path)."""
    if not _fast_paths_enabled:
        return None
    if array_api_compat.is_numpy_namespace(xp):
        return (_numba_enabled and _FAST_PATHS.get((op, "numba"))) or _FAST_PATHS.get((op, "numpy"))
    if array_api_compat.is_cupy_namespace(xp):
        return _FAST_PATHS.get((op, "cupy"))
    if array_api_compat.is_torch_namespace(xp):
        return _FAST_PATHS.get((op, "torch"))
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


def set_numba(enabled: bool) -> bool:
    """Turn the Numba kernels for NumPy arrays on or off (``XPNET_DISABLE_NUMBA=1``: off from the
    start), leaving the other fast paths as they are; returns the previous setting. They exist only
    where Numba is installed (``pip install 'xpnet[numba]'``)."""
    global _numba_enabled
    previous, _numba_enabled = _numba_enabled, bool(enabled)
    return previous


def set_fast_paths(enabled: bool) -> bool:
    """Turn the fast paths on or off (tests compare both); returns the previous setting."""
    global _fast_paths_enabled
    previous, _fast_paths_enabled = _fast_paths_enabled, bool(enabled)
    return previous
