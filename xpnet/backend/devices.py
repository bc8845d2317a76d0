"""Devices: the :class:`Device` object, device strings, and moving arrays between devices.

How another array library joins (PyTorch tensors, JAX arrays): a device string ``"torch:cpu"``,
``"torch:cuda[:N]"``, ``"torch:mps"``, ``"jax:cpu"`` or ``"jax:gpu[:N]"`` names the library and its
device. The library is imported only then (importing xpnet never imports it); when it or the device is
missing, the request falls back to the CPU (NumPy) with an :class:`XpnetDeviceWarning`, like
``"cuda"``. JAX runs eagerly (no ``jax.jit``); its float64 needs ``jax_enable_x64`` (checked, never
assumed).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, ContextManager

import array_api_compat
import numpy as np

from .._user import is_int, not_here, warn
from .libraries import cuda_available, cuda_device_count, cuda_unavailable_reason, cupy, library
from .namespaces import compat, namespace, no_autograd, untracked, update_rule

__all__ = ["XpnetDeviceWarning", "XpnetDeviceError", "Device", "CPU", "device", "device_of", "same_device", "to_numpy",
           "to_device", "dtype_name", "float_dtype_name", "plain_array", "writable"]


class XpnetDeviceWarning(UserWarning):
    """A requested device could not be used and xpnet fell back to another (the CPU)."""


class XpnetDeviceError(ValueError):
    """Arrays that must share a device do not (a layer's input and its parameters): never a matter of
    the data's shape, so ``xn.train`` reports it as it is."""


def _torch_device(kind: str, index: int | None) -> tuple[Any, Any, str | None]:
    """(torch namespace, torch.device, None) or (None, None, why the device is not usable)."""
    torch, why = library("torch")
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
    jax, why = library("jax")
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
    if not is_device_string(spec):
        expected = ", ".join(f"'{library}:{k}'" + ("" if k == "cpu" else f", '{library}:{k}:N'")
                             for k in kinds)
        raise ValueError(f"device: expected {expected}, got {spec!r}{_did_you_mean(spec)}")
    kind, _, index = rest.partition(":")
    return find(kind, int(index) if index else None)


DEVICE_STRINGS = ("'cpu', 'cuda', 'cuda:N', 'auto', 'torch:cpu', 'torch:cuda[:N]', 'torch:mps', 'jax:cpu', "
                  "'jax:gpu[:N]'")

# Device names other libraries use, and xpnet's for the same device.
_OTHER_NAMES = {"gpu": "cuda", "cuda0": "cuda:0", "mps": "torch:mps", "torch": "torch:cpu", "jax": "jax:cpu",
                "torch:gpu": "torch:cuda", "jax:cuda": "jax:gpu", "numpy": "cpu", "host": "cpu",
                "@numpy": "cpu", "@cupy": "cuda", "@intel64": "cpu"}  # Chainer's device specifiers


def _did_you_mean(spec: str) -> str:
    """" (did you mean 'cuda'?)" for a device name another library uses, else ""."""
    head, sep, index = spec.rpartition(":") if spec.rpartition(":")[2].isdigit() else (spec, "", "")
    known = _OTHER_NAMES.get(head)
    return f" (did you mean {known + sep + index!r}?)" if known else ""


def is_device_string(spec: str) -> bool:
    """Whether :func:`device` understands the string ``spec`` (checked without importing any library)."""
    spec = spec.strip().lower()
    if spec in ("cpu", "cuda", "auto"):
        return True
    if spec.startswith("cuda:"):
        return spec[5:].isdigit()
    library, _, rest = spec.partition(":")
    if library not in _LIBRARY_DEVICES:
        return False
    kind, _, index = rest.partition(":")
    return kind in _LIBRARY_DEVICES[library][0] and (not index or (kind != "cpu" and index.isdigit()))


def unknown_device(spec: str, python: bool = True) -> str:
    """The message for a device string :func:`device` does not understand; ``python=False`` leaves out
    the ``xpnet.Device`` objects that the command line cannot take."""
    objects = " or an xpnet.Device" if python else ""
    return f"device: expected {DEVICE_STRINGS}{objects}, got {spec!r}{_did_you_mean(spec.strip().lower())}"


class Device:
    """An array-API namespace and one of its devices.

    ``Device(numpy)`` is the CPU; ``Device(array_api_strict, array_api_strict.Device("device1"))``
    is the test stand-in for a second device. ``xp`` is the (array-api-compat wrapped) namespace,
    ``native`` the namespace's own device object, ``name`` a readable label.
    """

    def __init__(self, xp: Any, native: Any = None, name: str | None = None):
        self.xp = compat(xp)
        if not hasattr(self.xp, "zeros"):  # every array namespace makes arrays
            raise TypeError(f"Device: expected an array-API namespace (numpy, array_api_strict, torch, ...), got "
                            f"{getattr(xp, '__name__', type(xp).__name__)!r}; for a device string use xn.device(...)")
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

    def activate(self) -> ContextManager[Any]:
        """A context in which this device is the current one: for CuPy, its GPU (``with
        cupy.cuda.Device(n)``), a no-op elsewhere. CuPy makes new arrays and runs kernels on the current
        GPU, whatever device their inputs are on: array-api-compat's ``zeros``/``empty``/``full``/``arange``
        drop ``device=`` for CuPy, and ``copy()``, ``astype`` and every kernel's output land on the current
        GPU. ``xn.train``, ``xn.evaluate``, ``model.predict`` and ``xn.gradcheck`` run inside it, so that a
        model on ``"cuda:1"`` stays there."""
        if self.is_cupy:
            return cupy().cuda.Device(int(self.native.id))
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        """Wait for queued work on this device (a no-op on the CPU; JAX waits per array)."""
        if self.is_cupy:
            with cupy().cuda.Device(int(self.native.id)):
                cupy().cuda.get_current_stream().synchronize()
        elif array_api_compat.is_torch_namespace(self.xp) and self.native.type == "cuda":
            library("torch")[0].cuda.synchronize(self.native)
        elif array_api_compat.is_torch_namespace(self.xp) and self.native.type == "mps":
            library("torch")[0].mps.synchronize()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and self.xp is other.xp and self.native == other.native

    def __hash__(self) -> int:
        return hash((id(self.xp), str(self.native)))

    def __repr__(self) -> str:
        return f"Device({self.name!r})"

    def __getattr__(self, name: str) -> Any:
        raise not_here(type(self).__name__, name, _PYTORCH_NAMES, kind="object")

    def __enter__(self) -> None:
        raise TypeError(f"with xn.device({self.name!r}): a device is no context manager (PyTorch's with "
                        "torch.device('cuda'): makes its factories build there): xpnet builds layers on the host; "
                        "build the model, then move it, model.to(dev), and its inputs, xn.to_device(x, dev)")

    def __exit__(self, *exc: Any) -> None:
        return None

    def __str__(self) -> str:
        return self.name


# What a PyTorch user reads off torch.device, and what xpnet has instead.
_PYTORCH_NAMES = {
    "type": "xn.device('auto') is the device itself: model.to(dev), xn.to_device(x, dev) (the quickstart's "
            "current_accelerator().type, 'cuda' or 'cpu', is not needed); str(dev) is its name, 'cpu' or 'cuda:0'",
    "index": "str(dev) is the device's name, 'cuda:0'",
}

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
    :class:`Device`. A ``torch.device`` is taken as its string (``torch.device("cuda", 0)`` is ``"cuda:0"``).

    ``"auto"`` takes GPU 0 when :func:`cuda_available`, else the CPU. A device that is not usable
    (no GPU, or PyTorch/JAX not installed, or without that device) warns with
    :class:`XpnetDeviceWarning` and returns the CPU (NumPy), or raises ``RuntimeError`` when
    ``fallback=False``. ``XPNET_DEVICE=cpu`` in the environment turns ``"auto"`` and ``"cuda"``
    requests into the CPU (scripts written for a GPU server); any other device string there
    (``XPNET_DEVICE=torch:cpu``) turns them into that device.
    """
    if isinstance(spec, Device):
        return spec
    if spec is None:
        spec = "auto"
    if type(spec).__name__ == "device" and type(spec).__module__ == "torch":
        spec = str(spec)  # a PyTorch script's torch.device("cuda", 0) -> "cuda:0", as xn.load's map_location
    if not isinstance(spec, str):
        number = f" ({spec!r}: Chainer's GPU id; 'cuda:N' is GPU N, 'cpu' Chainer's -1)" if is_int(spec) else ""
        raise TypeError(f"device: expected a str or xpnet.Device, got {type(spec).__name__}{number}")
    spec = spec.strip().lower()
    forced = os.environ.get("XPNET_DEVICE", "").strip().lower()
    if forced and not is_device_string(forced):
        raise ValueError(f"XPNET_DEVICE={os.environ['XPNET_DEVICE']!r} in the environment is not a device; "
                         f"expected {DEVICE_STRINGS} (or unset it){_did_you_mean(forced)}")
    if forced and (spec in ("auto", "cuda") or spec.startswith("cuda:")):
        if spec.startswith("cuda:"):
            _parse_cuda_index(spec)  # a malformed index ("cuda:x", "cuda:-1"): refused whatever the environment says
        if forced == "cpu":
            return CPU
        spec = forced
    if spec == "cpu":
        return CPU
    if spec == "auto":
        return Device(cupy(), cupy().cuda.Device(0)) if cuda_available() else CPU
    if spec == "cuda" or spec.startswith("cuda:"):
        index = _parse_cuda_index(spec)
        if cuda_available() and index < cuda_device_count():
            return Device(cupy(), cupy().cuda.Device(index))
        reason = cuda_unavailable_reason() or (
            f"CUDA device {index} does not exist ({cuda_device_count()} device(s) found)")
    elif spec.partition(":")[0] in _LIBRARY_DEVICES:
        xp, native, reason = _library_device(spec)
        if xp is not None:
            return Device(xp, native)
    else:
        raise ValueError(unknown_device(spec))
    if not fallback:
        raise RuntimeError(f"device {spec!r} is not usable: {reason}")
    warn(f"device {spec!r} is not usable: {reason}. Falling back to the CPU (NumPy).", XpnetDeviceWarning)
    return CPU


def device_of(a: Any) -> Device:
    """The :class:`Device` that holds array ``a``."""
    xp = namespace(a)
    if array_api_compat.is_numpy_namespace(xp):
        return CPU
    return Device(xp, array_api_compat.device(a))


def same_device(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` live in the same namespace on the same device (NumPy arrays of any
    subclass, ``np.memmap`` or masked, are all on the host)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return True
    return array_api_compat.device(a) == array_api_compat.device(b)


def to_numpy(a: Any) -> np.ndarray:
    """Array ``a`` of any backend (or a Python scalar/sequence) as a ``numpy.ndarray`` on the host.
    PyTorch's bfloat16, which NumPy lacks, comes as float32 (exact: every bfloat16 is a float32)."""
    if isinstance(a, np.ndarray):
        return a
    if array_api_compat.is_cupy_array(a):
        return a.get()
    if array_api_compat.is_torch_array(a):
        a = a.detach().cpu()
        return (a.float() if str(a.dtype) == "torch.bfloat16" else a).numpy()
    if array_api_compat.is_array_api_obj(a):
        xp = namespace(a)
        try:
            return np.asarray(a)
        except (RuntimeError, ValueError, TypeError):
            host = xp.__array_namespace_info__().default_device()
            return np.asarray(array_api_compat.to_device(a, host))
    return np.asarray(a)


def host_copy(a: Any) -> np.ndarray:
    """A writable, C-ordered NumPy copy of array ``a`` of any backend, owned by the caller (never a view of
    ``a``). A CuPy array is copied once: its download is already a new array."""
    return np.array(to_numpy(a), order="C", copy=not array_api_compat.is_cupy_array(a))


def plain_array(a: Any, arg: str) -> Any:
    """``a`` with NumPy's subclasses as plain ``ndarray`` views, sharing their memory: an ``np.memmap``
    (or ``np.load(..., mmap_mode="r")``) is still read from its file, row by row as batches need it.
    A masked array gives its data, and is refused while any entry is masked (``arg`` names it)."""
    if not isinstance(a, np.ndarray) or type(a) is np.ndarray:
        return a
    if isinstance(a, np.ma.MaskedArray):
        masked = int(np.ma.count_masked(a))
        if masked:
            raise ValueError(f"{arg} is a masked array with {masked} masked entries; fill them "
                             "(x.filled(value)) or drop those rows first")
        return np.asarray(np.ma.getdata(a))
    return np.asarray(a)


def writable(a: Any) -> Any:
    """``a``, or a copy where it is a read-only NumPy array (in-place updates would fail on it)."""
    return a.copy() if isinstance(a, np.ndarray) and not a.flags.writeable else a


def read_only(a: Any) -> Any:
    """``a`` as a read-only view where it is a NumPy array, so that a write into it raises; other arrays as they
    are (CuPy and PyTorch arrays have no such flag, JAX's cannot be written)."""
    if type(a) is not np.ndarray:
        return a
    view = a.view()
    view.flags.writeable = False
    return view


def copy_into(a: Any, host: np.ndarray) -> Any:
    """Write the host array ``host`` (``a``'s shape) into ``a`` in place, in ``a``'s dtype on its device (a view
    writes through into its base); returns ``a``. Only for arrays that ``update_rule`` says are written in place
    (not JAX's); a PyTorch tensor that requires grad is written outside autograd, as ``torch.nn.init`` writes."""
    with no_autograd(namespace(a)):
        a[...] = to_device(host, device_of(a), dtype=dtype_name(a))
    return a


def to_device(a: Any, dev: Any, dtype: Any = None, *, copy: bool | None = None) -> Any:
    """Array ``a`` on device ``dev`` (a spec or :class:`Device`); no copy when it is already there.

    ``dtype`` may be a dtype of the target namespace or a name such as ``"float32"``.

    Memory: a move between the host's mutable libraries (NumPy and PyTorch on the CPU, as
    ``torch.from_numpy`` and ``tensor.numpy()`` do) shares memory with ``a``, so that moving batches costs
    nothing; a move onto another device copies. A move from an immutable or read-only source (a JAX
    array, a read-only NumPy array such as a memmap opened with ``"r"``) into another library always
    copies: the result is writable, and writing into it never changes the source. ``copy=True``: the
    result never shares memory with ``a`` (``model.to`` moves parameters so).
    """
    dev = device(dev)
    xp = dev.xp
    name = _dtype_label(dtype)
    if name is not None:
        dtype = getattr(xp, name, None) if name in _DTYPE_NAMES else None
        if dtype is None:
            known = "a name such as 'float32'" if name not in _DTYPE_NAMES else f"a dtype {dev.name} has"
            raise ValueError(f"to_device: dtype {name!r} is not {known}")
    if dev.is_numpy:
        out = to_numpy(a)
        if dtype is not None and out.dtype != dtype:
            return out.astype(dtype)
        return _owned(out) if copy or (out is not a and not out.flags.writeable) else out
    if dev.is_cupy:
        with cupy().cuda.Device(int(dev.native.id)):
            if array_api_compat.is_cupy_array(a) and a.device == dev.native:
                out = cupy().array(a, copy=True) if copy else a
            elif array_api_compat.is_cupy_array(a):
                out = cupy().array(a, copy=True)
            else:
                out = cupy().asarray(to_numpy(a))
            return out if dtype is None or out.dtype == dtype else out.astype(dtype)
    a = untracked(a)
    mutable = update_rule(xp) == "in place"
    if array_api_compat.is_array_api_obj(a) and not isinstance(a, np.ndarray) \
            and namespace(a) is xp:
        out = a if array_api_compat.device(a) == dev.native else array_api_compat.to_device(a, dev.native)
        if copy and mutable:
            out = xp.asarray(out, copy=True)
    else:
        host = given = to_numpy(a)
        if name is not None and host.dtype.name != name:
            host = host.astype(name)  # on the host: float64 data for a float32 model never reaches JAX as float64
        elif mutable and (copy or not host.flags.writeable):
            # PyTorch would wrap a read-only buffer (a JAX array's) and write into it in place.
            host = _owned(host)
        try:
            out = from_host(xp, host, dev.native, owned=host is not given)
        except ValueError:  # array_api_strict's "no_float64" device refuses float64 outright
            if host.dtype == np.float64 and not dev.supports_float64():
                raise ValueError(_no_float64(dev, "it refuses float64")) from None
            raise
        _check_narrowed(host, out, dev)
    wanted = dtype_name(a) if name is None and hasattr(a, "dtype") else name
    if wanted == "float64" and dtype_name(out) != "float64" and not dev.supports_float64():
        # JAX without jax_enable_x64 turns float64 into float32 with at most a warning.
        raise ValueError(_no_float64(dev, "it gave float32"))
    if dtype is not None and out.dtype != dtype:
        out = xp.astype(out, dtype)
    return out


def from_host(xp: Any, host: np.ndarray, native: Any, *, owned: bool = False) -> Any:
    """A new array of namespace ``xp`` on its device ``native`` with the values of the NumPy array ``host``
    (PyTorch's CPU tensors share its memory, as ``torch.from_numpy``). ``owned``: no one writes ``host`` after
    this (a mask just drawn), so JAX may take it without a copy.

    JAX: ``jax.device_put`` of a copy of ``host`` that only JAX holds. Its ``asarray(..., device=)`` took 3-4x
    as long (206 against 58 us for a small array, 1.6 against 0.47 ms for (1000, 784) float32), and a dropout
    mask moves each step. ``device_put(host, may_alias=False)`` is not enough: its copy may be made after it
    returns, and a write to ``host`` in between shows in the JAX array (82 of 2000 tries here)."""
    if array_api_compat.is_jax_namespace(xp):
        return library("jax")[0].device_put(host if owned else np.array(host, copy=True), native)
    return xp.asarray(host, device=native)


def _check_narrowed(host: np.ndarray, out: Any, dev: Device) -> None:
    """JAX without ``jax_enable_x64`` makes 64-bit integers 32-bit silently, wrapping what does not fit
    (2**40 became 0): labels and token ids fit and move so; a value that does not fit is refused."""
    if host.dtype.kind not in "iu" or host.dtype.itemsize != 8 or host.size == 0:
        return
    narrow = np.dtype(dtype_name(out))
    if narrow.itemsize >= 8:
        return
    info = np.iinfo(narrow)
    low, high = host.min(), host.max()
    if low < info.min or high > info.max:
        raise ValueError(f"to_device: {dev.name} holds {host.dtype} as {narrow} and these values do not fit "
                         f"(from {low} to {high}); for JAX call jax.config.update('jax_enable_x64', True) before "
                         "making arrays")


def _no_float64(dev: Device, why: str) -> str:
    """The error for float64 sent to a device without it: how to enable it (JAX) or to cast."""
    enable = ("for JAX call jax.config.update('jax_enable_x64', True) before making arrays, or cast to float32"
              if array_api_compat.is_jax_namespace(dev.xp) else "cast to float32")
    return (f"to_device: {dev.name} cannot hold float64 ({why}); {enable}: xn.to_device(x, device, "
            "dtype='float32'), model.to(device, dtype='float32'), xn.load(path, device, dtype='float32')")


def _owned(host: np.ndarray) -> np.ndarray:
    """A writable copy of ``host`` that shares no memory with it (the memory layout kept)."""
    return np.array(host, copy=True)


_DTYPE_NAMES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                "float32", "float64", "complex64", "complex128")


def _dtype_label(dtype: Any) -> str | None:
    """The name of a dtype given in any library's form: ``"float32"``, ``np.float64``, a NumPy dtype,
    ``torch.float32``, ``jnp.float64`` (None stays None)."""
    if dtype is None or isinstance(dtype, str):
        return dtype
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1]


def float_dtype_name(dtype: Any, who: str) -> str:
    """``dtype`` (any form, see :func:`_dtype_label`, and NumPy's other names: ``"half"``, ``"single"``,
    ``"double"``, ``"f4"``) as ``"float16"``, ``"float32"`` or ``"float64"``; anything else (an integer type,
    NumPy's ``float128``) raises a ValueError naming ``who``. The string ``"float"`` is refused as ambiguous:
    NumPy reads it as float64, PyTorch's ``torch.float`` is float32 (Python's ``float`` type is float64 in both)."""
    if isinstance(dtype, str) and dtype.strip().lower() == "float":
        raise ValueError(f"{who}: dtype={dtype!r} is ambiguous: NumPy's 'float' is float64, PyTorch's torch.float "
                         f"is float32; write 'float32' or 'float64'")
    name = _dtype_label(dtype)
    if isinstance(name, str) and name not in _DTYPE_NAMES:
        try:
            name = np.dtype(name).name
        except TypeError:
            pass
    if name not in ("float16", "float32", "float64"):
        why = (" (NumPy reads None as float64, PyTorch as its default float32: write the one you mean, or leave "
               "dtype out for the layer's default)") if dtype is None else ""
        raise ValueError(f"{who}: dtype must be a real floating type ('float16', 'float32' or 'float64'), "
                         f"got {dtype!r}{why}")
    return name


def dtype_name(a: Any) -> str:
    """``"float32"``, ``"int64"``...: the name of ``a``'s dtype in any library."""
    return str(a.dtype).rsplit(".", 1)[-1]
