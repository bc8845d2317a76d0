"""The one place that knows NumPy, CuPy, PyTorch and JAX by name.

Everything else asks ``namespace(x)`` for the array-API namespace of its input and allocates with
``dtype=x.dtype, device=x.device``. What lives here, one module each:

- ``libraries``: CuPy behind a probe, PyTorch and JAX imported only when a device string names them;
- ``namespaces``: the namespace of an array, dtype checks, and the one rule for updating arrays
  (in place, or JAX's ``.at``);
- ``devices``: :class:`Device`, device strings (``"cuda:1"``, ``"torch:mps"``...), moving arrays;
- ``random``: uniform numbers on a device from the host generators;
- ``registry``: fast paths beside the portable code, and the table of their families, one module
  each: ``fast_numpy``, ``fast_cupy`` (with ``cupy_layers`` and ``cupy_kernels``), ``fast_torch``,
  ``fast_numba`` (with ``numba_kernels``), ``fast_mkl``, ``fast_scipy`` and ``fast_jax`` (erf).

It may import only ``xpnet._user`` and third-party libraries: layers, losses and everything above
stand on it, never the other way round.
"""

from typing import Any

from .._user import not_here
from .devices import (CPU, Device, XpnetDeviceError, XpnetDeviceWarning, copy_into, device, device_of, dtype_name,
                      float_dtype_name, host_copy, plain_array, read_only, same_device, to_device, to_numpy,
                      writable)
from .kept import kept
from .libraries import cuda_available, cuda_device_count, cuda_unavailable_reason
from .namespaces import (XpnetBackendError, add_at, index_dtype, isdtype, namespace, no_autograd, set_at,
                         untracked, update_rule)
from .random import keep_scale, release_device_rngs, set_rng_state, uniform
from .registry import (fast_path, into, register_fast_path, set_fast_paths, set_mkl, set_numba,
                       writes_out)

__all__ = [
    "CPU",
    "Device",
    "XpnetBackendError",
    "XpnetDeviceError",
    "XpnetDeviceWarning",
    "add_at",
    "copy_into",
    "cuda_available",
    "cuda_device_count",
    "cuda_unavailable_reason",
    "device",
    "device_of",
    "dtype_name",
    "fast_path",
    "float_dtype_name",
    "host_copy",
    "into",
    "index_dtype",
    "isdtype",
    "kept",
    "keep_scale",
    "namespace",
    "no_autograd",
    "plain_array",
    "register_fast_path",
    "same_device",
    "set_at",
    "set_fast_paths",
    "set_mkl",
    "set_numba",
    "read_only",
    "release_device_rngs",
    "set_rng_state",
    "to_device",
    "to_numpy",
    "uniform",
    "untracked",
    "update_rule",
    "writable",
    "writes_out",
]

# What a Chainer or CuPy user reaches for, and what xpnet has instead.
_OTHER_NAMES = {
    "get_array_module": "xn.backend.namespace(x) is the array-API namespace of x (cupy.get_array_module's and "
                        "chainer.backend.get_array_module's, array_api_compat-wrapped; PyTorch and JAX arrays too)",
}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, _OTHER_NAMES)
