"""NumPy, CuPy and PyTorch fast paths: im2col without the portable loop over kernel offsets
(PyTorch: ``unfold``, and ``fold`` for col2im), the optimizers' updates as one fused CuPy
kernel per parameter instead of one kernel per operation, and, where Numba is installed,
BatchNorm, ReLU and MaxPool2d on NumPy arrays as compiled kernels (``xpnet._numba_kernels``).

Registered with :func:`xpnet.backend.register_fast_path` and picked by ``fast_path(op, xp)``;
``xpnet.backend.set_fast_paths(False)`` (or ``XPNET_DISABLE_FAST_PATHS=1``) falls back to the
portable code in ``xpnet.layers._im2col``, which tests compare these against. CuPy, PyTorch and Numba are
imported only when their arrays arrive, so importing this module never needs them.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

import numpy as np

from . import backend as _backend
from ._user import warn
from .backend import register_fast_path
from .layers._im2col import Pair, out_size, pad2d
from .layers.activations import relu_backward, relu_forward
from .layers.norm import batchnorm_backward, batchnorm_forward
from .layers.pool import maxpool2d_backward, maxpool2d_forward


def _im2col_strided(as_strided: Any, ascontiguousarray: Any, x: Any, kernel: Pair, stride: Pair,
                    padding: Pair, per_sample: bool) -> Any:
    """im2col as one copy of a strided view (C, kh, kw, N, oh, ow) (per sample: (N, C, kh, kw, oh, ow))
    of the padded input: that view's memory order is already the col layout, so there is no
    transpose and no Python loop."""
    (kh, kw), (sh, sw) = kernel, stride
    n, c, h, w = x.shape
    oh, ow = out_size(h, kh, sh, padding[0]), out_size(w, kw, sw, padding[1])
    xpad = ascontiguousarray(pad2d(x, padding))
    s_n, s_c, s_h, s_w = xpad.strides
    # Read-only use: the view aliases overlapping windows and is copied at once.
    if per_sample:
        windows = as_strided(xpad, shape=(n, c, kh, kw, oh, ow), strides=(s_n, s_c, s_h, s_w, s_h * sh, s_w * sw))
        return ascontiguousarray(windows).reshape(n, c * kh * kw, oh * ow)
    windows = as_strided(xpad, shape=(c, kh, kw, n, oh, ow), strides=(s_c, s_h, s_w, s_n, s_h * sh, s_w * sw))
    return ascontiguousarray(windows).reshape(c * kh * kw, n * oh * ow)


@register_fast_path("im2col", "numpy")
def im2col_numpy(x: Any, kernel: Pair, stride: Pair, padding: Pair, per_sample: bool = False) -> Any:
    return _im2col_strided(np.lib.stride_tricks.as_strided, np.ascontiguousarray, x, kernel, stride, padding,
                           per_sample)


@register_fast_path("im2col", "cupy")
def im2col_cupy(x: Any, kernel: Pair, stride: Pair, padding: Pair, per_sample: bool = False) -> Any:
    import cupy  # noqa: PLC0415 - only reached with a CuPy array, so CuPy is present

    return _im2col_strided(cupy.lib.stride_tricks.as_strided, cupy.ascontiguousarray, x, kernel, stride, padding,
                           per_sample)


# -- PyTorch: unfold/fold are im2col/col2im in the per-sample layout (N, C*kh*kw, oh*ow) -----------------


@register_fast_path("im2col", "torch")
def im2col_torch(x: Any, kernel: Pair, stride: Pair, padding: Pair, per_sample: bool = False) -> Any:
    import torch  # noqa: PLC0415 - only reached with a torch tensor

    col = torch.nn.functional.unfold(x, kernel, padding=padding, stride=stride)
    return col if per_sample else col.permute(1, 0, 2).reshape(col.shape[1], -1)


@register_fast_path("col2im", "torch")
def col2im_torch(col: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair,
                 per_sample: bool = False) -> Any:
    """Sums overlapping windows and drops the padding, as ``col2im_portable``."""
    import torch  # noqa: PLC0415 - only reached with a torch tensor

    if not per_sample:
        col = col.reshape(col.shape[0], x_shape[0], -1).permute(1, 0, 2)
    return torch.nn.functional.fold(col, tuple(x_shape[2:]), kernel, padding=padding, stride=stride)


# -- optimizers: one fused CuPy kernel per parameter ----------------------------------------------------
# The portable updates in xpnet.optim launch one kernel per operation (Adam: about ten per parameter),
# which at small batches is what a GPU step waits for. Each kernel below does the same arithmetic
# in one pass; ``p``, ``m`` and ``v`` are updated in place. Scalars are cast to the arrays' dtype.

_CUPY_KERNELS: dict[str, Any] = {}
_CUPY_KERNEL_SOURCES = {
    "sgd": ("T g, T lr", "T p", "p -= lr * g;"),
    "momentum": ("T g, T lr, T momentum", "T p, T v", "v = v * momentum - lr * g; p += v;"),
    "adam": ("T g, T one_minus_b1, T b2, T one_minus_b2, T step, T eps", "T p, T m, T v",
             "m += one_minus_b1 * (g - m); v = v * b2 + one_minus_b2 * (g * g); p -= step * (m / (sqrt(v) + eps));"),
}


def _cupy_kernel(name: str) -> Any:
    kernel = _CUPY_KERNELS.get(name)
    if kernel is None:
        import cupy  # noqa: PLC0415 - only reached with CuPy arrays

        in_params, out_params, body = _CUPY_KERNEL_SOURCES[name]
        kernel = _CUPY_KERNELS[name] = cupy.ElementwiseKernel(in_params, out_params, body, f"xpnet_{name}_update")
    return kernel


@register_fast_path("sgd_update", "cupy")
def sgd_update_cupy(p: Any, g: Any, lr: float) -> None:
    """p -= lr * g."""
    _cupy_kernel("sgd")(g, lr, p)


@register_fast_path("momentum_update", "cupy")
def momentum_update_cupy(p: Any, g: Any, v: Any, lr: float, momentum: float) -> None:
    """v = momentum * v - lr * g; p += v."""
    _cupy_kernel("momentum")(g, lr, momentum, p, v)


@register_fast_path("adam_update", "cupy")
def adam_update_cupy(p: Any, g: Any, m: Any, v: Any, b1: float, b2: float, step: float, eps: float) -> None:
    """m += (1 - b1)(g - m); v = b2 v + (1 - b2) g^2; p -= step * m / (sqrt(v) + eps)."""
    _cupy_kernel("adam")(g, 1.0 - b1, b2, 1.0 - b2, step, eps, p, m, v)


# -- NumPy through Numba: BatchNorm, ReLU and MaxPool2d as compiled kernels ----------------------------
# Registered only where Numba is installed; Numba is imported on a kernel's first use and each kernel
# compiled then (cached on disk). A call falls back to the portable function for the dtypes and
# layouts the kernels are not built for.


def _kernel_ready(*arrays: Any) -> bool:
    """float32/float64 C-contiguous NumPy arrays (other dtypes and layouts take the portable path)."""
    return all(isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64) and a.flags.c_contiguous
               for a in arrays)


def _numba_op(name: str, portable: Callable[..., Any], ready: Callable[..., bool]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if not ready(*args):
            return portable(*args, **kwargs)
        try:
            from . import _numba_kernels  # noqa: PLC0415 - imports Numba: only when a kernel is first used
        except Exception as exc:  # noqa: BLE001 - any failure to import Numba means: run without it
            _backend.set_numba(False)
            warn(f"Numba is installed but failed to import ({type(exc).__name__}: {exc}); BatchNorm, ReLU "
                 "and MaxPool2d run as portable NumPy code (slower). Set XPNET_DISABLE_NUMBA=1 to silence this.")
            return portable(*args, **kwargs)
        return getattr(_numba_kernels, name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = f"numba_{name}"
    return call


def _bn_ready(x3: Any, *rest: Any) -> bool:
    # (N, D) inputs (L = 1) stay with NumPy, whose sums over axis 0 are already vectorised.
    return x3.shape[2] >= 8 and _kernel_ready(x3)


def _bn_backward_ready(dy3: Any, centred: tuple[Any, Any], *rest: Any) -> bool:
    return dy3.shape[2] >= 8 and _kernel_ready(dy3, centred[0]) and dy3.dtype == centred[0].dtype


def _first_ready(x: Any, *rest: Any) -> bool:
    return _kernel_ready(x)


def _relu_backward_ready(dy: Any, mask: Any) -> bool:
    return _kernel_ready(dy) and isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.flags.c_contiguous


def _pool_backward_ready(dy: Any, first: Any, *rest: Any) -> bool:
    return _kernel_ready(dy) and isinstance(first, np.ndarray) and first.flags.c_contiguous


if importlib.util.find_spec("numba") is not None:
    for _op, _portable, _ready in (("batchnorm_forward", batchnorm_forward, _bn_ready),
                                   ("batchnorm_backward", batchnorm_backward, _bn_backward_ready),
                                   ("relu_forward", relu_forward, _first_ready),
                                   ("relu_backward", relu_backward, _relu_backward_ready),
                                   ("maxpool2d_forward", maxpool2d_forward, _first_ready),
                                   ("maxpool2d_backward", maxpool2d_backward, _pool_backward_ready)):
        register_fast_path(_op, "numba")(_numba_op(_op, _portable, _ready))
