"""CuPy fast paths: im2col as one strided copy, the optimizers' updates as one fused kernel per
parameter, and BatchNorm's per-channel sums as one reduction (sources in :mod:`xpnet.backend.cupy_kernels`).

The portable updates in ``xpnet.optim`` launch one kernel per operation (Adam: about ten per
parameter), which at small batches is what a GPU step waits for. Each kernel below does the same
arithmetic in one pass; ``p``, ``m`` and ``v`` are updated in place. Scalars are cast to the arrays'
dtype. Imported only when a CuPy array asks for them.

CuPy has no ``vecdot``: array-api-compat's stand-in for it moves the axis and runs a batched matrix
product of N * C products of two vectors, on a copy, in every BatchNorm forward and backward;
:func:`channel_dot` is one reduction kernel over the arrays as they are.
"""

from __future__ import annotations

from typing import Any, Callable

import cupy

from .cupy_kernels import ELEMENTWISE, REDUCTION
from .fast_numpy import Pair, im2col_strided


def im2col(x: Any, kernel: Pair, stride: Pair, padding: Pair, per_sample: bool = False) -> Any:
    return im2col_strided(cupy, x, kernel, stride, padding, per_sample)


_KERNELS: dict[str, Any] = {}


def _kernel(name: str) -> Any:
    kernel = _KERNELS.get(name)
    if kernel is None:
        in_params, out_params, body = ELEMENTWISE[name]
        kernel = _KERNELS[name] = cupy.ElementwiseKernel(in_params, out_params, body, f"xpnet_{name}_update")
    return kernel


def _reduction(name: str) -> Any:
    kernel = _KERNELS.get(name)
    if kernel is None:
        kernel = _KERNELS[name] = cupy.ReductionKernel(*REDUCTION[name], name=f"xpnet_{name}")
    return kernel


def channel_dot(a: Any, b: Any = None) -> Any:
    """Per-channel sum of ``a`` (or of ``a * b``) over axes 0 and 2 of (N, C, L) arrays -> (C,), one kernel."""
    if b is None:
        return cupy.sum(a, axis=(0, 2))
    return _reduction("channel_dot")(a, b, axis=(0, 2))


def sgd_update(p: Any, g: Any, lr: float) -> None:
    """p -= lr * g."""
    _kernel("sgd")(g, lr, p)


def momentum_update(p: Any, g: Any, v: Any, lr: float, momentum: float) -> None:
    """v = momentum * v - lr * g; p += v."""
    _kernel("momentum")(g, lr, momentum, p, v)


def adam_update(p: Any, g: Any, m: Any, v: Any, b1: float, b2: float, step: float, eps: float) -> None:
    """m += (1 - b1)(g - m); v = b2 v + (1 - b2) g^2; p -= step * m / (sqrt(v) + eps)."""
    _kernel("adam")(g, 1.0 - b1, b2, 1.0 - b2, step, eps, p, m, v)


def register(add: Callable[..., Any]) -> None:
    add("im2col", im2col)
    add("sgd_update", sgd_update)
    add("momentum_update", momentum_update)
    add("adam_update", adam_update)
    add("channel_dot", channel_dot)
