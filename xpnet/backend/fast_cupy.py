"""CuPy fast paths: im2col as one strided copy, the optimizers' updates as one fused kernel per
parameter (AdamW's decay inside Adam's; SGD's, Nesterov's, Adam's and AdamW's one for up to ``MULTI`` = 32
parameters, L2 weight decay and AMSGrad inside, a captured step's numbers read on the device), AveragedModel's averages
and buffer copies one kernel for up to 32 arrays, BatchNorm's per-channel sums as one reduction, gradient clipping
(by norm: one kernel of partial sums of squares and one scaling kernel for up to 32 gradients, one kernel for the
norm; by value: one kernel a gradient), the epoch's loss and accuracy sums as one kernel a step, RandomShiftFlip's
flips and shifts as one kernel, the epoch's finite check of the weights one kernel for up to 32 (sources in
:mod:`xpnet.backend.cupy_kernels`), and the layers' kernels of :mod:`xpnet.backend.cupy_layers` (softmax
cross-entropy, Softmax, ReLU, MaxPool2d), :mod:`xpnet.backend.cupy_norms` (BatchNorm, LayerNorm) and
:mod:`xpnet.backend.cupy_cells` (the recurrent steps). With them a 784-100-10 SGD step at batch 100 inside
``xn.train`` launches 18 kernels, against 49 with the portable loss and ReLU (counted on the fake CuPy; the breakdown
is in ``cupy_layers``).

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

from . import cupy_cells, cupy_layers, cupy_norms
from .cupy_kernels import MULTI
from .cupy_layers import elementwise, reduction
from .fast_numpy import Pair, im2col_strided


def im2col(x: Any, kernel: Pair, stride: Pair, padding: Pair, per_sample: bool = False,
           dilation: Pair = (1, 1)) -> Any:
    """``fast_numpy.im2col_strided``'s col: one kernel for a C-contiguous float x (the strided copy launches three
    where there is padding: zeros, x copied in, the windows copied out), else that copy."""
    if not (cupy_layers._floats(x) and x.ndim == 4):
        return im2col_strided(cupy, x, kernel, stride, padding, per_sample, dilation)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    col = cupy.empty((n, c * kh * kw, oh * ow) if per_sample else (c * kh * kw, n * oh * ow), x.dtype)
    cupy_layers._launch("im2col", col.size, (x, col, n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow,
                                             int(per_sample), col.size), T=x.dtype)
    return col


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


def _groups(count: int) -> range:
    """The first index of each launch of a multi-tensor kernel over ``count`` arrays (MULTI a launch)."""
    return range(0, count, MULTI)


def _padded(values: list[Any], fill: Any) -> list[Any]:
    """``values`` (at most MULTI) and ``fill`` in the slots left, for a multi-tensor kernel's arguments."""
    return [*values, *[fill] * (MULTI - len(values))]


def clip_norm_factor(grads: list[Any], max_norm: float) -> tuple[Any, Any]:
    """See ``xpnet.optim.clip.norm_factor``: the sums of squares of every gradient as partial sums in one kernel
    per MULTI gradients (about one a 1,024 numbers, each summed in double), then one kernel adding them in order and
    writing the norm and the factor (0-d each); the portable path launches three per gradient and five more."""
    lanes = [max(1, -(-g.size // 1024)) for g in grads]
    partial = cupy.empty(sum(lanes), grads[0].dtype)
    offset = 0
    for lo in _groups(len(grads)):
        group, width = grads[lo:lo + MULTI], sum(lanes[lo:lo + MULTI])
        sizes = _padded([g.size for g in group], 0)
        cupy_layers._launch("multi_squares", width, (*_padded(group, group[0]), *sizes,
                                                     *_padded(lanes[lo:lo + MULTI], 0), partial[offset:], width),
                            T=partial.dtype)
        offset += width
    norm, factor = cupy.empty((), partial.dtype), cupy.empty((), partial.dtype)
    cupy_layers._launch("clip_norm_factor", 1, (partial, norm, factor, float(max_norm), partial.size), T=partial.dtype)
    return norm, factor


def _scaled_ready(grads: list[Any], factor: Any) -> bool:
    return bool(grads) and cupy_layers._floats(*grads, factor) and factor.shape == ()


def scaled(grads: list[Any], factor: Any) -> list[Any]:
    """See ``xpnet.optim.clip.scaled``: every gradient times the factor into new arrays, one kernel per MULTI
    gradients (the portable path launches one a gradient)."""
    return _elementwise("multi_scale", grads, (grads,), (factor,), factor.dtype)


def _elementwise(name: str, like: list[Any], ins: tuple[list[Any], ...], numbers: tuple[Any, ...],
                 dtype: Any) -> list[Any]:
    """New arrays shaped as ``like`` from the multi-tensor kernel ``name``, one launch per MULTI of them, a thread per
    element: its arguments the MULTI slots of each list of ``ins``, then of the outputs and of their sizes (each
    list padded with its first array, the sizes with 0), then ``numbers`` and the group's element count."""
    out = [cupy.empty_like(a) for a in like]
    for lo in _groups(len(like)):
        hi = lo + MULTI
        total = sum(a.size for a in like[lo:hi])
        cupy_layers._launch(name, total, (*(a for arrays in (*ins, out) for a in _padded(arrays[lo:hi], arrays[lo])),
                                          *_padded([a.size for a in like[lo:hi]], 0), *numbers, total), T=dtype)
    return out


def _on_device(number: Any) -> bool:
    """Whether a step's number is a 0-d CuPy array (a captured step's DeviceScalars) rather than a Python float."""
    return isinstance(number, cupy.ndarray)


def _lerp_ready(starts: list[Any], ends: list[Any], weight: float) -> bool:
    return (bool(starts) and len(ends) == len(starts) and cupy_layers._floats(*starts, *ends)
            and all(a.shape == c.shape for a, c in zip(starts, ends)))


def lerp_all(starts: list[Any], ends: list[Any], weight: float) -> list[Any]:
    """See ``xpnet.optim.swa_utils.lerp_all``: PyTorch's lerp of each pair into new arrays, one kernel per MULTI
    pairs (the portable path launches three a pair)."""
    from_end = abs(weight) >= 0.5
    factor = 1.0 - weight if from_end else float(weight)
    return _elementwise("multi_lerp", starts, (starts, ends), (factor, int(from_end)), starts[0].dtype)


def _copies_ready(arrays: list[Any]) -> bool:
    return bool(arrays) and cupy_layers._floats(*arrays)


def copies(arrays: list[Any]) -> list[Any]:
    """See ``xpnet.optim.swa_utils.copies``: a copy of each array, one kernel per MULTI arrays (one a copy else)."""
    return _elementwise("multi_copy", arrays, (arrays,), (), arrays[0].dtype)


def _contiguous(grads: list[Any]) -> list[Any]:
    """The gradients, each one that is a strided view (Conv2d's dW, a transposed product) copied C-contiguous: a
    multi-tensor kernel reads its arrays by index; one copy, against the launches of an update of its own."""
    return [g if g.flags.c_contiguous else cupy.ascontiguousarray(g) for g in grads]


def _sgd(params: list[Any], grads: list[Any], velocities: list[Any] | None, lr: Any, momentum: float = 0.0,
         dampening: float = 0.0, nesterov: bool = False, decays: list[float] | None = None) -> Any:
    """The multi-tensor SGD kernel over every parameter, MULTI a launch (``decays``: each parameter's L2 weight
    decay, 0 where none; ``lr`` a float or a 0-d array of the parameters' dtype, read on the device); NotImplemented,
    nothing updated, unless every array is a C-contiguous float CuPy array of the first parameter's dtype and its
    parameter's shape (a gradient may be a strided view: it is copied)."""
    on_device = _on_device(lr)
    if all(isinstance(g, cupy.ndarray) for g in grads):
        grads = _contiguous(grads)
    arrays = [*params, *grads, *(velocities or ()), *((lr,) if on_device else ())]
    if not (params and len(grads) == len(params) and cupy_layers._floats(*arrays)
            and all(g.shape == p.shape for p, g in zip(params, grads))
            and all(v.shape == p.shape for p, v in zip(params, velocities or params))
            and (not on_device or lr.shape == ()) and (decays is None or len(decays) == len(params))):
        return NotImplemented
    rate = lr if on_device else float(lr)
    for lo in _groups(len(params)):
        hi = lo + MULTI
        group = params[lo:hi]
        total = sum(p.size for p in group)
        vs = group if velocities is None else velocities[lo:hi]
        wds = [float(d) for d in _padded((decays or [0.0] * len(params))[lo:hi], 0.0)]
        cupy_layers._launch("multi_sgd_dev" if on_device else "multi_sgd", total,
                            (*_padded(group, group[0]), *_padded(grads[lo:hi], grads[lo]), *_padded(vs, vs[0]),
                             *_padded([p.size for p in group], 0), *wds, rate, float(momentum), 1.0 - dampening,
                             int(velocities is not None), int(nesterov), total), T=group[0].dtype)
    return None


def sgd_updates(params: list[Any], grads: list[Any], lr: float) -> Any:
    """See ``xpnet.backend.fast_numba.sgd_updates``: p -= lr * g for every parameter, one kernel per MULTI."""
    return _sgd(params, grads, None, lr)


def sgd_momentum_updates(params: list[Any], grads: list[Any], velocities: list[Any], lr: float, momentum: float,
                         dampening: float, nesterov: bool) -> Any:
    """See ``xpnet.backend.fast_numba.sgd_momentum_updates``: :func:`sgd_momentum_update` for every parameter, one
    kernel per MULTI."""
    return _sgd(params, grads, velocities, lr, momentum, dampening, nesterov)


def sgd_multi_tensor(params: list[Any], grads: list[Any], velocities: list[Any] | None, lr: Any, momentum: float,
                     dampening: float, nesterov: bool, decays: list[float]) -> Any:
    """SGD's step where :func:`sgd_updates` and :func:`sgd_momentum_updates` (Numba's too) take no part of it: each
    parameter's L2 weight decay (``decays``, 0 where none: g + decay * p first, the portable ``_decay``'s
    gradient) and ``lr`` a float or a 0-d array on the device (a captured step's); velocities None without
    momentum. One kernel per MULTI parameters; NotImplemented, nothing updated, as :func:`_sgd`."""
    return _sgd(params, grads, velocities, lr, momentum, dampening, nesterov, decays)


def _adam_ready(params: list[Any], grads: list[Any], ms: list[Any], vs: list[Any], keeps: list[Any], b1: float,
                b2: float, steps: list[Any], epss: list[Any], decays: Any = None, vmaxs: Any = None) -> bool:
    """Every array a C-contiguous float CuPy array of one dtype; a gradient may be a strided view (copied)."""
    return (bool(params) and cupy_layers._floats(*params, *ms, *vs, *(vmaxs or ()))
            and all(isinstance(g, cupy.ndarray) and g.dtype == params[0].dtype for g in grads))


def adam_updates(params: list[Any], grads: list[Any], ms: list[Any], vs: list[Any], keeps: list[Any], b1: float,
                 b2: float, steps: list[Any], epss: list[Any], decays: list[float] | None = None,
                 vmaxs: list[Any] | None = None) -> Any:
    """Every parameter's Adam update (``adamw_update``'s, ``keeps`` 1.0 where no decay applies; ``decays`` each
    parameter's L2 weight decay, 0 where none; ``vmaxs`` AMSGrad's buffers, None without), in place: one kernel per
    MULTI parameters, the arithmetic of the per-parameter kernels. ``keeps``, ``steps`` and ``epss`` are floats, or
    all 0-d arrays of the parameters' dtype (a captured step's, read on the device); NotImplemented, nothing updated,
    where they mix."""
    numbers = [*keeps, *steps, *epss]
    on_device = _on_device(numbers[0])
    if not all(_on_device(x) == on_device for x in numbers) or (
            on_device and not (cupy_layers._floats(params[0], *numbers) and all(x.shape == () for x in numbers))):
        return NotImplemented
    grads = _contiguous(grads)
    scalar = (lambda x: x) if on_device else float
    one, some = (keeps[0], steps[0]) if on_device else (1.0, 0.0)
    for lo in _groups(len(params)):
        hi = lo + MULTI
        group = params[lo:hi]
        total = sum(p.size for p in group)
        tops = vs[lo:hi] if vmaxs is None else vmaxs[lo:hi]
        args = (*_padded(group, group[0]), *_padded(grads[lo:hi], grads[lo]), *_padded(ms[lo:hi], ms[lo]),
                *_padded(vs[lo:hi], vs[lo]), *_padded(tops, tops[0]), *_padded([p.size for p in group], 0),
                *(scalar(x) for x in _padded(keeps[lo:hi], one)), *(scalar(x) for x in _padded(steps[lo:hi], some)),
                *(scalar(x) for x in _padded(epss[lo:hi], one)),
                *(float(d) for d in _padded((decays or [0.0] * len(params))[lo:hi], 0.0)), 1.0 - b1, float(b2),
                1.0 - b2, int(vmaxs is not None), total)
        cupy_layers._launch("multi_adam_dev" if on_device else "multi_adam", total, args, T=group[0].dtype)
    return None


def _clamp_ready(g: Any, clip_value: float) -> bool:
    return cupy_layers._floats(g)


def clamp(g: Any, clip_value: float) -> Any:
    """See ``xpnet.optim.clip.clamp``: one kernel (the portable path launches five)."""
    y = cupy.empty_like(g)
    cupy_layers._launch("clamp", g.size, (g, y, float(clip_value), g.size), T=g.dtype)
    return y


def _epoch_sums_ready(loss_sum: Any, value: Any, count: Any, correct: Any, hits: Any) -> bool:
    """0-d CuPy arrays: the sums of one float dtype, the counts of one index dtype; ``count`` an int below 2**53 (a
    kernel's double) or such an array, ``hits`` such an array or None."""
    counts = [a for a in (count, hits) if not isinstance(a, int) and a is not None]
    return ((isinstance(count, int) and abs(count) < 2 ** 53 or not isinstance(count, int))
            and all(isinstance(a, cupy.ndarray) and a.shape == () for a in (loss_sum, value, correct, *counts))
            and loss_sum.dtype == value.dtype and loss_sum.dtype in (cupy.float32, cupy.float64)
            and all(a.dtype == correct.dtype for a in counts) and correct.dtype in (cupy.int32, cupy.int64))


def epoch_sums(loss_sum: Any, value: Any, count: Any, correct: Any, hits: Any) -> tuple[Any, Any]:
    """See ``xpnet.training.epoch_sums.add_batch``: one kernel (the portable additions launch two or three): the
    elementwise one for an int count and hits, else a raw kernel (a count on the device, no hits)."""
    if isinstance(count, int) and hits is not None:
        return elementwise("epoch_sums")(loss_sum, value, count, correct, hits)
    new_sum, new_correct = cupy.empty_like(loss_sum), correct if hits is None else cupy.empty_like(correct)
    on_device = not isinstance(count, int)
    cupy_layers._launch("epoch_add", 1, (loss_sum, value, count if on_device else correct,
                                         0 if on_device else int(count), int(on_device), correct,
                                         correct if hits is None else hits, int(hits is not None), new_sum,
                                         new_correct), T=loss_sum.dtype, L=correct.dtype)
    return new_sum, new_correct


def erf(x: Any) -> Any:
    """GELU's erf, one kernel (the portable erf launches some sixty)."""
    return elementwise("erf")(x)


def _finite_ready(arrays: list[Any], ok: Any) -> bool:
    return (bool(arrays) and cupy_layers._floats(*arrays) and isinstance(ok, cupy.ndarray) and ok.dtype == cupy.bool_
            and ok.shape == ())


def all_finite(arrays: list[Any], ok: Any) -> Any:
    """See ``xpnet.training.guard.all_finite``: one kernel (one block) per MULTI arrays, each launch and-ing the last
    one's answer (the portable path launches three an array)."""
    for lo in _groups(len(arrays)):
        group, answer = arrays[lo:lo + MULTI], cupy.empty((), cupy.bool_)
        cupy_layers._launch("multi_finite", cupy_layers._BLOCK, (*_padded(group, group[0]),
                                                                 *_padded([a.size for a in group], 0), ok, answer),
                            one_block=True, T=group[0].dtype)
        ok = answer
    return ok


def _shift_flip_ready(x: Any, draws: Any, flipped: bool, used: Any) -> bool:
    return (cupy_layers._floats(x) and x.ndim >= 3 and x.size > 0 and isinstance(draws, cupy.ndarray)
            and draws.dtype == cupy.int64 and draws.flags.c_contiguous and draws.size == 3 * x.shape[0])


def shift_flip(x: Any, draws: Any, flipped: bool, used: Any) -> Any:
    """See ``xpnet.datasets.augment.shift_flip_portable``: the flip and both shifts of every sample in one kernel, a
    thread per element (the portable path launches three for the flip and four for each shift used: up to 4 * 2 *
    max_shift + 3)."""
    out = cupy.empty_like(x)
    h, w = x.shape[-2:]
    cupy_layers._launch("shift_flip", x.size, (x, draws, out, x.shape[0], h, w, x.size), T=x.dtype)
    return out


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
    add("scaled", scaled, accepts=_scaled_ready)
    add("lerp_all", lerp_all, accepts=_lerp_ready)
    add("copies", copies, accepts=_copies_ready)
    add("adam_updates", adam_updates, accepts=_adam_ready)
    add("sgd_updates", sgd_updates)
    add("sgd_momentum_updates", sgd_momentum_updates)
    add("sgd_multi_tensor", sgd_multi_tensor)
    add("clamp", clamp, accepts=_clamp_ready)
    add("epoch_sums", epoch_sums, accepts=_epoch_sums_ready)
    add("shift_flip", shift_flip, accepts=_shift_flip_ready)
    add("all_finite", all_finite, accepts=_finite_ready)
    cupy_layers.register(add)
    cupy_norms.register(add)
    cupy_cells.register(add)
