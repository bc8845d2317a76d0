"""CuPy fast paths: im2col as one strided copy, the optimizers' updates as one fused kernel per
parameter (AdamW's decay inside Adam's), BatchNorm's per-channel sums as one reduction, gradient clipping
(a reduction a gradient and one kernel for the norm; one kernel a gradient by value), the epoch's loss and
accuracy sums as one kernel a step (sources in :mod:`xpnet.backend.cupy_kernels`), and the layers' kernels
of :mod:`xpnet.backend.cupy_layers` (softmax cross-entropy, Softmax, ReLU, MaxPool2d, BatchNorm, the
recurrent steps). With them a 784-100-10 SGD step at batch 100 inside ``xn.train`` launches 21 kernels, against
49 with the portable loss and ReLU (counted on the fake CuPy; the breakdown is in ``cupy_layers``).

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

from . import cupy_layers
from .cupy_layers import elementwise, reduction
from .fast_numpy import Pair, im2col_strided


def im2col(x: Any, kernel: Pair, stride: Pair, padding: Pair, per_sample: bool = False,
           dilation: Pair = (1, 1)) -> Any:
    return im2col_strided(cupy, x, kernel, stride, padding, per_sample, dilation)


def channel_dot(a: Any, b: Any = None) -> Any:
    """Per-channel sum of ``a`` (or of ``a * b``) over axes 0 and 2 of (N, C, L) arrays -> (C,), one kernel."""
    if b is None:
        return cupy.sum(a, axis=(0, 2))
    return reduction("channel_dot")(a, b, axis=(0, 2))


def sgd_update(p: Any, g: Any, lr: float) -> None:
    """p -= lr * g."""
    elementwise("sgd")(g, lr, p)


def sgd_momentum_update(p: Any, g: Any, v: Any, lr: float, momentum: float, dampening: float, first: bool,
                        nesterov: bool) -> None:
    """PyTorch's momentum after the first step: v = momentum * v + (1 - dampening) * g; p -= lr * v, or
    with ``nesterov`` p -= lr * (momentum * v + g). The first step (v = g) is the portable update's."""
    elementwise("sgd_nesterov" if nesterov else "sgd_momentum")(g, lr, momentum, 1.0 - dampening, p, v)


def _after_first(p: Any, g: Any, v: Any, lr: Any, momentum: float, dampening: float, first: bool,
                 nesterov: bool) -> bool:
    return not first


def momentum_update(p: Any, g: Any, v: Any, lr: float, momentum: float) -> None:
    """v = momentum * v - lr * g; p += v."""
    elementwise("momentum")(g, lr, momentum, p, v)


def adam_update(p: Any, g: Any, m: Any, v: Any, b1: float, b2: float, step: float, eps: float) -> None:
    """m += (1 - b1)(g - m); v = b2 v + (1 - b2) g^2; p -= step * m / (sqrt(v) + eps)."""
    elementwise("adam")(g, 1.0 - b1, b2, 1.0 - b2, step, eps, p, m, v)


def adamw_update(p: Any, g: Any, m: Any, v: Any, keep: Any, b1: float, b2: float, step: float, eps: float) -> None:
    """AdamW's decoupled decay p *= keep, then :func:`adam_update`, in one kernel."""
    elementwise("adamw")(g, keep, 1.0 - b1, b2, 1.0 - b2, step, eps, p, m, v)


def rms_update(p: Any, g: Any, h: Any, lr: float, alpha: float | None, eps: float) -> None:
    """h = alpha * h + (1 - alpha) * g^2 (RMSprop), or h += g^2 with ``alpha`` None (AdaGrad);
    p -= lr * g / (sqrt(h) + eps)."""
    decay, scale = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    elementwise("rms")(g, lr, decay, scale, eps, p, h)


def _clip_ready(grads: list[Any], max_norm: float) -> bool:
    return bool(grads) and cupy_layers._floats(*grads)


def clip_norm_factor(grads: list[Any], max_norm: float) -> tuple[Any, Any]:
    """See ``xpnet.optim.clip.norm_factor``: one reduction per gradient (its sum of squares, into a slot of
    one (P,) vector), then one kernel adding them in order and writing the norm and the factor (0-d each); the
    portable path launches three per gradient and five more."""
    squares = cupy.empty(len(grads), grads[0].dtype)
    for k, g in enumerate(grads):
        reduction("squares")(g, out=squares[k])  # a 0-d view of slot k, CuPy's (and the fake's) basic index
    norm, factor = cupy.empty((), squares.dtype), cupy.empty((), squares.dtype)
    cupy_layers._launch("clip_norm_factor", 1, (squares, norm, factor, float(max_norm), len(grads)), T=squares.dtype)
    return norm, factor


def _clamp_ready(g: Any, clip_value: float) -> bool:
    return cupy_layers._floats(g)


def clamp(g: Any, clip_value: float) -> Any:
    """See ``xpnet.optim.clip.clamp``: one kernel (the portable path launches five)."""
    y = cupy.empty_like(g)
    cupy_layers._launch("clamp", g.size, (g, y, float(clip_value), g.size), T=g.dtype)
    return y


def _epoch_sums_ready(loss_sum: Any, value: Any, count: Any, correct: Any, hits: Any) -> bool:
    return (isinstance(count, int) and all(isinstance(a, cupy.ndarray) and a.shape == ()
                                           for a in (loss_sum, value, correct, hits))
            and loss_sum.dtype == value.dtype and loss_sum.dtype in (cupy.float32, cupy.float64)
            and correct.dtype == hits.dtype and correct.dtype in (cupy.int32, cupy.int64))


def epoch_sums(loss_sum: Any, value: Any, count: int, correct: Any, hits: Any) -> tuple[Any, Any]:
    """See ``xpnet.training.epoch_sums.add_batch``: one kernel (the portable additions launch three)."""
    return elementwise("epoch_sums")(loss_sum, value, count, correct, hits)


def erf(x: Any) -> Any:
    """GELU's erf, one kernel (the portable erf launches some sixty)."""
    return elementwise("erf")(x)


def register(add: Callable[..., Any]) -> None:
    add("im2col", im2col)
    add("erf", erf)
    add("sgd_update", sgd_update)
    add("momentum_update", momentum_update)
    add("sgd_momentum_update", sgd_momentum_update, accepts=_after_first)
    add("adam_update", adam_update)
    add("adamw_update", adamw_update)
    add("rms_update", rms_update)
    add("channel_dot", channel_dot)
    add("clip_norm_factor", clip_norm_factor, accepts=_clip_ready)
    add("clamp", clamp, accepts=_clamp_ready)
    add("epoch_sums", epoch_sums, accepts=_epoch_sums_ready)
    cupy_layers.register(add)
