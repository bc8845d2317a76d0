"""NumPy fast paths through Numba: BatchNorm, LayerNorm, softmax, ReLU, MaxPool2d, Embedding's backward, the
optimizers' updates, the passes around a stride-1 Conv2d's input-gradient product and Upsample's banded resizing as
compiled kernels (:mod:`xpnet.backend.numba_kernels`, :mod:`xpnet.backend.numba_rows`,
:mod:`xpnet.backend.numba_conv`, :mod:`xpnet.backend.numba_resize`).

Loaded, and Numba imported, the first time one of these layers runs on a NumPy array, and only where
Numba is installed (``pip install 'xpnet[numba]'``); each kernel is compiled on its first call and
cached on disk. The kernels are built for float32/float64 C-contiguous arrays; other dtypes and
layouts, and (N, D) BatchNorm (whose sums over axis 0 NumPy already vectorises), take the portable
path. ``xn.backend.set_numba(False)`` or ``XPNET_DISABLE_NUMBA=1`` switches the family off.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import fast_numpy, numba_conv, numba_kernels, numba_resize, numba_rows


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_LABELS = (np.dtype(np.int32), np.dtype(np.int64))  # dtypes, not types: a type is made a dtype at each comparison
_BOOL = np.dtype(np.bool_)


def _kernel_ready(*arrays: Any) -> bool:
    """float32/float64 C-contiguous NumPy arrays (other dtypes and layouts take the portable path). Asked at
    every call of a kernel (the optimizers' several a step): a plain loop."""
    for a in arrays:
        if not isinstance(a, np.ndarray) or a.dtype not in _FLOATS or not a.flags.c_contiguous:
            return False
    return True


def _bn_ready(x3: Any, *rest: Any) -> bool:
    return x3.shape[2] >= 8 and _kernel_ready(x3)


def _bn_backward_ready(dy3: Any, saved: tuple[Any, Any], *rest: Any) -> bool:
    return dy3.shape[2] >= 8 and _kernel_ready(dy3, saved[0]) and dy3.dtype == saved[0].dtype


def _same_float(*arrays: Any) -> bool:
    """Kernel-ready arrays (None skipped) of one dtype."""
    given = [a for a in arrays if a is not None]
    return _kernel_ready(*given) and all(a.dtype == given[0].dtype for a in given)


def _layernorm_ready(x2: Any, gamma: Any, beta: Any, eps: float) -> bool:
    return _same_float(x2, gamma, beta)


def _layernorm_backward_ready(dy2: Any, x_hat: Any, inv_std: Any, gamma: Any, bias: bool) -> bool:
    return _same_float(dy2, x_hat, inv_std, gamma)


def _softmax_ready(x: Any, axis: int) -> bool:
    """Along the last axis of a non-empty array."""
    return _kernel_ready(x) and x.ndim >= 1 and axis == x.ndim - 1 and x.size > 0


def _softmax_backward_ready(y: Any, dy: Any, axis: int) -> bool:
    return _softmax_ready(y, axis) and _same_float(y, dy) and dy.shape == y.shape


def _loss_ready(y2: Any, labels: Any, ignore_index: int, label_smoothing: float) -> bool:
    """A classifier's scores (M, C) below the size at which NumPy's path splits its rows over two threads, integer
    labels (M,), no label smoothing."""
    return (_kernel_ready(y2) and y2.ndim == 2 and y2.shape[0] >= 1 and y2.shape[1] >= 1
            and y2.size < fast_numpy.SPLIT_ELEMENTS and not label_smoothing and isinstance(labels, np.ndarray)
            and labels.ndim == 1 and labels.dtype in _LABELS and -2 ** 63 <= ignore_index < 2 ** 63)


def _pool_ready(x: Any, kernel: Any, stride: Any, padding: Any, out_hw: Any, index_dtype: Any,
                dilation: Any = (1, 1)) -> bool:
    """Contiguous windows (a dilated MaxPool2d runs as portable code) over a kernel-ready x."""
    return tuple(dilation) == (1, 1) and _kernel_ready(x)


def _relu_backward_ready(dy: Any, mask: Any) -> bool:
    return _kernel_ready(dy) and isinstance(mask, np.ndarray) and mask.dtype == _BOOL and mask.flags.c_contiguous


def _pool_backward_ready(dy: Any, first: Any, x_shape: Any, kernel: Any, stride: Any, padding: Any,
                         dilation: Any = (1, 1)) -> bool:
    return (tuple(dilation) == (1, 1) and _kernel_ready(dy) and isinstance(first, np.ndarray)
            and first.flags.c_contiguous)


def _embedding_ready(ids: Any, dy: Any, num_embeddings: int) -> bool:
    return (_kernel_ready(dy) and dy.ndim == 2 and isinstance(ids, np.ndarray) and ids.ndim == 1
            and ids.dtype.kind == "i")


def _update_ready(p: Any, g: Any, *rest: Any) -> bool:
    """An optimizer's update: the parameter, its gradient and its state arrays (all but g written in
    place) of one float dtype and shape, C-contiguous."""
    if not _kernel_ready(p, g) or g.dtype != p.dtype or g.shape != p.shape or not p.flags.writeable:
        return False
    for a in rest:
        if isinstance(a, np.ndarray) and not (a.dtype == p.dtype and a.shape == p.shape and a.flags.c_contiguous
                                              and a.flags.writeable):
            return False
    return True


def sgd_updates(params: Any, grads: Any, lr: float) -> Any:
    """p -= lr * g for each parameter of ``params`` and its gradient in ``grads`` (``xpnet.optim.SGD``'s step):
    every pair checked first (inline: every pair of every step), then
    ``numba_kernels.sgd_updates``; NotImplemented, nothing updated, where any pair is unfit (as
    ``xpnet.optim.base.unfused`` answers). Registered without a guard: the checks are this loop."""
    if len(params) != len(grads):
        return NotImplemented
    for p, g in zip(params, grads):
        if not (isinstance(p, np.ndarray) and isinstance(g, np.ndarray) and p.dtype in _FLOATS
                and g.dtype == p.dtype and g.shape == p.shape):
            return NotImplemented
        flags = p.flags
        if not (flags.c_contiguous and flags.writeable and g.flags.c_contiguous):
            return NotImplemented
    numba_kernels.sgd_updates(params, grads, lr)
    return None


def sgd_momentum_updates(params: Any, grads: Any, velocities: Any, lr: float, momentum: float, dampening: float,
                         nesterov: bool) -> Any:
    """PyTorch's momentum after the first step (``xpnet.optim.SGD(momentum=...)``, each buffer made) for every
    parameter, its gradient and its buffer: each triple checked first (the pair as :func:`sgd_updates` checks it,
    the buffer a C-contiguous writeable array of p's dtype and shape), then ``numba_kernels.sgd_momentum_updates``;
    NotImplemented, nothing updated, where any is unfit."""
    if not len(params) == len(grads) == len(velocities):
        return NotImplemented
    for p, g, v in zip(params, grads, velocities):
        if not (isinstance(p, np.ndarray) and isinstance(g, np.ndarray) and p.dtype in _FLOATS
                and g.dtype == p.dtype and g.shape == p.shape and isinstance(v, np.ndarray) and v.dtype == p.dtype
                and v.shape == p.shape):
            return NotImplemented
        flags, v_flags = p.flags, v.flags
        if not (flags.c_contiguous and flags.writeable and g.flags.c_contiguous and v_flags.c_contiguous
                and v_flags.writeable):
            return NotImplemented
    numba_kernels.sgd_momentum_updates(params, grads, velocities, lr, momentum, dampening, nesterov)
    return None


def _flat_dy_ready(dy: Any, rows: int, wp: int) -> bool:
    """Any strides (a group's channels are a view of dy)."""
    return isinstance(dy, np.ndarray) and dy.dtype in (np.float32, np.float64)


def _shifted_sums_ready(dcol: Any, *rest: Any) -> bool:
    return _kernel_ready(dcol)


def _taps_ready(v: Any, index: Any, weight: Any, axis: int) -> bool:
    """Any strides (made contiguous first); the weights in v's float dtype."""
    return (isinstance(v, np.ndarray) and v.dtype in (np.float32, np.float64) and isinstance(weight, np.ndarray)
            and weight.dtype == v.dtype and isinstance(index, np.ndarray))


def register(add: Callable[..., Any]) -> None:
    for op, accepts in (("batchnorm_forward", _bn_ready), ("batchnorm_backward", _bn_backward_ready),
                        ("relu_forward", _kernel_ready), ("relu_backward", _relu_backward_ready),
                        ("maxpool2d_forward", _pool_ready), ("maxpool2d_backward", _pool_backward_ready)):
        add(op, getattr(numba_kernels, op), accepts)
    # relu_forward(x) is asked of _kernel_ready(x) itself, which _first_ready would call (every step's ReLU)
    add("embedding_backward", numba_kernels.embedding_backward, _embedding_ready)
    add("layernorm_forward", numba_rows.layernorm_forward, _layernorm_ready)
    add("layernorm_backward", numba_rows.layernorm_backward, _layernorm_backward_ready)
    add("softmax", numba_rows.softmax, _softmax_ready)
    add("softmax_cross_entropy", numba_rows.softmax_cross_entropy, _loss_ready)
    add("softmax_backward", numba_rows.softmax_backward, _softmax_backward_ready)
    add("conv_flat_dy", numba_conv.flat_dy, _flat_dy_ready)
    add("conv_shifted_sums", numba_conv.shifted_sums, _shifted_sums_ready)
    add("resize_taps", numba_resize.taps, _taps_ready)
    for op in ("sgd_update", "sgd_momentum_update", "momentum_update", "adam_update", "adamw_update", "rms_update"):
        add(op, getattr(numba_kernels, op), _update_ready)
    add("sgd_updates", sgd_updates)
    add("sgd_momentum_updates", sgd_momentum_updates)
