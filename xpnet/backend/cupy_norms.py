"""CuPy kernels for the normalisation layers (sources in :mod:`xpnet.backend.cupy_kernels`), each with the signature and
the results of the portable function it stands for (``xpnet.layers.norm``, ``.layernorm``) and tested equal to it
(``tests/cupy_layer_checks.py``); other dtypes and layouts take the portable path (the ``accepts`` functions).

BatchNorm over (N, C, L): in training the statistics, with the running statistics moved on in place, in one kernel
of a block per channel (sums in double, added in a fixed tree), y in one; its backward the sums (dgamma, dbeta, the
factors of dx) in one kernel of a block per channel, dx in one: four launches a training step where the portable path
on CuPy launches seventeen; in evaluation one forward. LayerNorm (GroupNorm and InstanceNorm go through it) over the
rows of (M, D): one kernel forward, a thread per row; backward dx one kernel, dgamma and dbeta a reduction each.
"""

from __future__ import annotations

from typing import Any, Callable

import cupy

from .cupy_layers import _BLOCK, MAX_CLASSES, _floats, _launch, elementwise, reduction


# -- BatchNorm over (N, C, L) ------------------------------------------------------------------------


def _contiguous(a: Any) -> Any:
    """``a`` as the raw kernels read it: C-contiguous (a copy, one launch, only where it is not)."""
    return a if a.flags.c_contiguous else cupy.ascontiguousarray(a)


def _like(x3: Any, *vectors: Any) -> bool:
    """x3 (N, C, L) of float32/float64 and per-channel vectors (C,) of its dtype, contiguous (the kernels read them
    by index; x3 is copied contiguous where it is not)."""
    return (isinstance(x3, cupy.ndarray) and x3.dtype in (cupy.float32, cupy.float64) and x3.ndim == 3
            and all(isinstance(v, cupy.ndarray) and v.dtype == x3.dtype and v.flags.c_contiguous
                    and tuple(v.shape) == (x3.shape[1],) for v in vectors))


def _weights_ready(x3: Any, weights: Any) -> bool:
    """The running update's weights: Python floats, or 0-d arrays of x3's dtype (BatchNorm's momentum=None)."""
    return all(isinstance(w, float) for w in weights) or all(
        isinstance(w, cupy.ndarray) and w.dtype == x3.dtype and w.shape == () for w in weights)


def _bn_ready(x3: Any, gamma: Any, beta: Any, eps: float, stats: Any = None, running: Any = None) -> bool:
    return (_like(x3, gamma, beta, *(stats or ()), *(running or ())[:2])
            and (running is None or (stats is None and _weights_ready(x3, running[2:]))))


def batchnorm_forward_running(x3: Any, gamma: Any, beta: Any, eps: float, stats: Any = None,
                              running: Any = None) -> tuple[Any, ...]:
    """See ``xpnet.layers.norm.batchnorm_forward_running``: in training the statistics (and with ``running`` the
    running statistics moved on, in place) in one kernel, a block per channel, then y in one (two launches; the
    portable path on CuPy launched nine); in evaluation y alone, one launch. Keeps x itself and the mean for
    backward, as the Numba kernel."""
    x3 = _contiguous(x3)
    n, c, l = x3.shape
    if stats is None:
        mean, var = cupy.empty(c, x3.dtype), cupy.empty(c, x3.dtype)
        running_mean, running_var, *weights = running if running is not None else (mean, var, 0.0, 0.0, 0.0)
        on_device = not isinstance(weights[0], float)
        _launch("bn_stats", c * _BLOCK, (x3, mean, var, running_mean, running_var, int(running is not None),
                                         *(weights if on_device else (mean, mean, mean)), int(on_device),
                                         *((0.0, 0.0, 0.0) if on_device else weights), n, c, l), T=x3.dtype)
    else:
        mean, var = stats
    y, inv_std = cupy.empty_like(x3), cupy.empty(c, x3.dtype)
    _launch("bn_normalize", max(x3.size, c), (x3, mean, var, gamma, beta, y, inv_std, float(eps), c, l, x3.size),
            T=x3.dtype)
    moved = None if running is None else (running[0], running[1])
    return y, mean, var, inv_std, (x3, mean), moved


def batchnorm_forward(x3: Any, gamma: Any, beta: Any, eps: float, stats: Any = None) -> tuple[Any, ...]:
    """See ``xpnet.layers.norm.batchnorm_forward``: :func:`batchnorm_forward_running` without the running update."""
    return batchnorm_forward_running(x3, gamma, beta, eps, stats)[:5]


def _running_ready(running_mean: Any, running_var: Any, mean: Any, var: Any, old: Any, new: Any,
                   new_var: Any) -> bool:
    # The weights: Python floats, or 0-d arrays of the statistics' dtype (BatchNorm's momentum=None).
    return (all(isinstance(a, cupy.ndarray) and a.dtype in (cupy.float32, cupy.float64) and a.dtype == mean.dtype
                for a in (mean, var, running_mean, running_var))
            and all(isinstance(w, float) or (isinstance(w, cupy.ndarray) and w.dtype == mean.dtype)
                    for w in (old, new, new_var)))


def batchnorm_running(running_mean: Any, running_var: Any, mean: Any, var: Any, old: Any,
                      new: Any, new_var: Any) -> tuple[Any, Any]:
    """See ``xpnet.layers.norm.batchnorm_running``: both statistics in one kernel, in place (the
    portable update launches six); InstanceNorm's, and BatchNorm's where the fused forward does not take its input."""
    elementwise("bn_running")(mean, var, old, new, new_var, running_mean, running_var)
    return running_mean, running_var


def _bn_backward_ready(dy3: Any, x_shift: tuple[Any, Any], gamma: Any, inv_std: Any, train: bool,
                       grads: bool = True) -> bool:
    x, shift = x_shift
    return (_like(dy3, gamma, inv_std, *(() if shift is None else (shift,))) and _like(x)
            and x.dtype == dy3.dtype and tuple(x.shape) == tuple(dy3.shape))


def batchnorm_backward(dy3: Any, x_shift: tuple[Any, Any], gamma: Any, inv_std: Any,
                       train: bool, grads: bool = True) -> tuple[Any, Any, Any]:
    """See ``xpnet.layers.norm.batchnorm_backward``: dgamma, dbeta and the factors of dx in one kernel, a block per
    channel, then dx in one (two launches; the portable path on CuPy launched eight); in evaluation with
    ``grads=False`` dx only (one)."""
    dy3, (x, shift) = _contiguous(dy3), x_shift
    x = _contiguous(x)
    n, c, l = dy3.shape
    has_shift = int(shift is not None)
    shift = inv_std if shift is None else shift
    dgamma = dbeta = None
    factors = inv_std  # read only in training, after the sums write them
    if train or grads:
        dgamma, dbeta, factors = cupy.empty(c, dy3.dtype), cupy.empty(c, dy3.dtype), cupy.empty(2 * c, dy3.dtype)
        _launch("bn_backward_sums", c * _BLOCK, (dy3, x, shift, has_shift, gamma, inv_std, dgamma, dbeta, factors,
                                                 n, c, l), T=dy3.dtype)
    dx = cupy.empty_like(dy3)
    _launch("bn_input_grad", dx.size, (dy3, x, shift, has_shift, gamma, inv_std, factors, int(train), dx, c, l,
                                       dx.size), T=dy3.dtype)
    return dx, dgamma, dbeta


# -- LayerNorm over the rows of (M, D) (GroupNorm and InstanceNorm go through it) ---------------------


def _layernorm_ready(x2: Any, gamma: Any, beta: Any, eps: float) -> bool:
    return (_floats(x2, *(p for p in (gamma, beta) if p is not None)) and x2.ndim == 2
            and 1 <= x2.shape[1] <= MAX_CLASSES)


def layernorm_forward(x2: Any, gamma: Any, beta: Any, eps: float) -> tuple[Any, Any, Any]:
    """See ``xpnet.layers.layernorm.layernorm_forward``: one kernel, a thread per row of up to ``MAX_CLASSES``
    (the portable path launches ten)."""
    m, d = x2.shape
    y, x_hat, inv_std = cupy.empty_like(x2), cupy.empty_like(x2), cupy.empty((m, 1), x2.dtype)
    _launch("layernorm_forward", m, (x2, x2 if gamma is None else gamma, x2 if beta is None else beta, y, x_hat,
                                     inv_std, float(eps), int(gamma is not None), int(beta is not None), m, d),
            T=x2.dtype)
    return y, x_hat, inv_std


def _layernorm_backward_ready(dy2: Any, x_hat: Any, inv_std: Any, gamma: Any, bias: bool) -> bool:
    return (_floats(dy2, x_hat, inv_std, *(() if gamma is None else (gamma,))) and dy2.ndim == 2
            and tuple(dy2.shape) == tuple(x_hat.shape) and tuple(inv_std.shape) == (dy2.shape[0], 1)
            and 1 <= dy2.shape[1] <= MAX_CLASSES)


def layernorm_backward(dy2: Any, x_hat: Any, inv_std: Any, gamma: Any, bias: bool,
                       grads: bool = True) -> tuple[Any, Any, Any]:
    """See ``xpnet.layers.layernorm.layernorm_backward``: dx in one kernel, a thread per row; dgamma one reduction
    (sum(dy * x_hat) without the product's array), dbeta one sum (the portable path launches eleven)."""
    m, d = dy2.shape
    dgamma = dbeta = None
    if gamma is not None and grads:
        dgamma = reduction("channel_dot")(dy2, x_hat, axis=0)
        dbeta = cupy.sum(dy2, axis=0) if bias else None
    dx = cupy.empty_like(dy2)
    _launch("layernorm_backward", m, (dy2, x_hat, inv_std, dy2 if gamma is None else gamma, dx, int(gamma is not None),
                                      m, d), T=dy2.dtype)
    return dx, dgamma, dbeta


def register(add: Callable[..., Any]) -> None:
    for op, accepts in (("batchnorm_forward", _bn_ready), ("batchnorm_forward_running", _bn_ready),
                        ("batchnorm_running", _running_ready), ("batchnorm_backward", _bn_backward_ready),
                        ("layernorm_forward", _layernorm_ready), ("layernorm_backward", _layernorm_backward_ready)):
        add(op, globals()[op], accepts)
