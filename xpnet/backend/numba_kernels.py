"""Numba kernels for the NumPy backend's memory-bound layers (BatchNorm over channels, ReLU, MaxPool2d and
Embedding's backward) and for the optimizers' updates (SGD with and without momentum, Momentum, Adam and AdamW (its
decay in the same pass), AdaGrad, RMSprop).

NumPy makes one pass over memory per operation: a BatchNorm forward is five of them over the
activations, a MaxPool2d(2) forward eleven over a quarter of them. Each kernel here does its layer's
work in one or two passes. They run on one core, beside OpenBLAS's threads: in a whole training step
of the modern CNN (batch 100) spreading them over both cores (``prange``) measured no faster
(46.6 against 47.3 ms) and makes them compete with OpenBLAS's spinning threads for the cores.

Imported only by :mod:`xpnet.backend.fast_numba` on a NumPy array's first use of a kernel, and only
where Numba is installed (``pip install 'xpnet[numba]'``); compiled once and cached on disk. Outputs are
allocated by NumPy (so tracemalloc counts them) and filled here. Each public function has the
signature of the portable one it stands for (``xpnet.layers.norm``, ``.activations``, ``.pool``)
and is tested equal to it. Sums accumulate in float64 with reassociation allowed (so they
vectorise), at least as accurate as NumPy's float32 sums; no other fast-math flag is on, so NaN and
inf propagate as in NumPy.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

_sums = numba.njit(fastmath={"reassoc", "contract"}, cache=True, nogil=True)
_exact = numba.njit(cache=True, nogil=True)
# NumPy's rules for a division by zero (inf or NaN, no exception): the check Python's rules need in each
# iteration keeps LLVM from vectorising a loop that divides (Adam's: 5x slower).
_elementwise = numba.njit(cache=True, nogil=True, error_model="numpy")


# -- BatchNorm over (N, C, L) ------------------------------------------------------------------------


@_sums
def _channel_stats(x):
    """Per channel: mean and (biased) variance, two passes, in float64."""
    n, c, length = x.shape
    mean = np.empty(c, np.float64)
    var = np.empty(c, np.float64)
    for ch in range(c):
        s = 0.0
        for i in range(n):
            for j in range(length):
                s += x[i, ch, j]
        m = s / (n * length)
        v = 0.0
        for i in range(n):
            for j in range(length):
                d = x[i, ch, j] - m
                v += d * d
        mean[ch] = m
        var[ch] = v / (n * length)
    return mean, var


@_sums
def _channel_grad_sums(dy, x, shift):
    """Per channel: sum(dy) and sum(dy * (x - shift)), in float64."""
    n, c, length = x.shape
    sum_dy = np.empty(c, np.float64)
    sum_dyx = np.empty(c, np.float64)
    for ch in range(c):
        s = 0.0
        t = 0.0
        m = shift[ch]
        for i in range(n):
            for j in range(length):
                g = dy[i, ch, j]
                s += g
                t += g * (x[i, ch, j] - m)
        sum_dy[ch] = s
        sum_dyx[ch] = t
    return sum_dy, sum_dyx


@_sums
def _channel_affine(x, shift, scale, offset, y):
    """y = (x - shift) * scale + offset, each a vector per channel."""
    n, c, length = x.shape
    for i in range(n):
        for ch in range(c):
            s, a, b = shift[ch], scale[ch], offset[ch]
            for j in range(length):
                y[i, ch, j] = (x[i, ch, j] - s) * a + b


@_sums
def _bn_input_grad(dy, x, shift, a, s, c0, dx):
    """dx = (x - shift) * a + dy * s - c0, each a vector per channel."""
    n, c, length = x.shape
    for i in range(n):
        for ch in range(c):
            m, aa, ss, cc = shift[ch], a[ch], s[ch], c0[ch]
            for j in range(length):
                dx[i, ch, j] = (x[i, ch, j] - m) * aa + dy[i, ch, j] * ss - cc


def batchnorm_forward(x3: Any, gamma: Any, beta: Any, eps: float, stats: Any = None) -> tuple[Any, ...]:
    """See ``xpnet.layers.norm.batchnorm_forward``. Keeps x itself and the mean for backward (no
    x - mean array: y is made from x in one pass)."""
    dtype = x3.dtype
    if stats is None:
        mean64, var64 = _channel_stats(x3)
        mean, var = mean64.astype(dtype), var64.astype(dtype)
    else:
        mean, var = stats
    inv_std = (1.0 / np.sqrt(var + eps)).astype(dtype)
    y = np.empty_like(x3)
    _channel_affine(x3, mean.astype(dtype), (gamma * inv_std).astype(dtype), beta.astype(dtype), y)
    return y, mean, var, inv_std, (x3, mean)


def batchnorm_backward(dy3: Any, x_shift: tuple[Any, Any], gamma: Any, inv_std: Any,
                       train: bool, grads: bool = True) -> tuple[Any, Any, Any]:
    """See ``xpnet.layers.norm.batchnorm_backward``."""
    x, shift = x_shift
    dtype = dy3.dtype
    scale = (gamma * inv_std).astype(dtype)
    if not train and not grads:
        return _scaled(dy3, scale), None, None
    shift = np.zeros(x.shape[1], dtype) if shift is None else shift.astype(dtype)
    sum_dy, sum_dyx = _channel_grad_sums(dy3, x, shift)
    dbeta = sum_dy.astype(dtype)
    dgamma = (sum_dyx.astype(dtype) * inv_std).astype(dtype)
    if not train:
        return _scaled(dy3, scale), dgamma, dbeta
    dx = np.empty_like(dy3)
    count = x.shape[0] * x.shape[2]
    a = (-scale * inv_std * dgamma / count).astype(dtype)
    c0 = (scale * dbeta / count).astype(dtype)
    _bn_input_grad(dy3, x, shift, a, scale, c0, dx)
    return dx, dgamma, dbeta


def _scaled(dy3: Any, scale: Any) -> Any:
    """dy3 (N, C, L) times a factor (C,) per channel: evaluation's dx."""
    dx = np.empty_like(dy3)
    zeros = np.zeros_like(scale)
    _channel_affine(dy3, zeros, scale, zeros, dx)
    return dx


# -- Embedding's backward ------------------------------------------------------------------------------


@_exact
def _embedding_scatter(ids, dy, dW):
    # Row by row in the order of the positions, as np.add.at adds them (the same sums, the same bits);
    # an id outside [-V, V) raises as NumPy's indexing does, a negative one counts from the end.
    vocab = dW.shape[0]
    for r in range(ids.shape[0]):
        row = ids[r]
        if row < -vocab or row >= vocab:
            raise IndexError("Embedding: an id lies outside the embedding matrix")
        if row < 0:
            row += vocab
        for j in range(dy.shape[1]):
            dW[row, j] += dy[r, j]


def embedding_backward(ids: Any, dy: Any, num_embeddings: int) -> Any:
    """See ``xpnet.layers.embedding.embedding_backward``: dW zeroed by NumPy, then each position's row of dy
    added to its id's row (NumPy's ``np.add.at`` took 3.4 ms for 700 rows of 650, this 0.2 ms)."""
    dW = np.zeros((num_embeddings, dy.shape[1]), dtype=dy.dtype)
    _embedding_scatter(ids, dy, dW)
    return dW


# -- ReLU --------------------------------------------------------------------------------------------


@_exact
def _relu_forward(x, y, mask):
    for i in range(x.size):
        v = x[i]
        positive = v > 0
        mask[i] = positive
        # np.maximum(v, 0): NaN stays NaN.
        y[i] = v if positive | (v != v) else 0


@_exact
def _relu_backward(dy, mask, dx):
    for i in range(dy.size):
        # dy * mask as the portable path: an inf or NaN dy where x <= 0 gives NaN (inf * 0).
        dx[i] = dy[i] * mask[i]


def relu_forward(x: Any) -> tuple[Any, Any]:
    """See ``xpnet.layers.activations.relu_forward``."""
    # empty_like's result for a C-contiguous ndarray, without its Python dispatcher (a subclass keeps empty_like)
    y = np.empty(x.shape, x.dtype) if type(x) is np.ndarray else np.empty_like(x)
    mask = np.empty(x.shape, np.bool_)
    _relu_forward(x.ravel(), y.ravel(), mask.ravel())
    return y, mask


def relu_backward(dy: Any, mask: Any) -> Any:
    """See ``xpnet.layers.activations.relu_backward``."""
    dx = np.empty(dy.shape, dy.dtype) if type(dy) is np.ndarray else np.empty_like(dy)  # as relu_forward's y
    _relu_backward(dy.ravel(), mask.ravel(), dx.ravel())
    return dx


# -- MaxPool2d over (N, C, H, W) ---------------------------------------------------------------------
# As the portable path: a running maximum over the kernel offsets in row-major order, raised by PyTorch's
# `v > best || isnan(v)` (ties keep the first maximum, the last NaN wins), the index starting at the window's
# first pixel inside the input (what a window of -inf only keeps). Backward sends each
# output's gradient g to every pixel of its window times the mask (g at the first maximum, g * 0
# elsewhere), so an inf or NaN g makes the window's other pixels NaN on every path. Written with selects,
# not branches: on real activations a branch per comparison is mispredicted about half the time.
# x comes padded (with -inf) where the layer pads, and past that where a ceil_mode window runs on.


@_exact
def _window_max(plane, r, s, kh, kw, ph, pw):
    """(maximum, kernel offset PyTorch picks) of the window at (r, s) of the padded plane."""
    best = plane[r, s]
    arg = max(0, ph - r) * kw + max(0, pw - s)
    off = 0
    for di in range(kh):
        for dj in range(kw):
            v = plane[r + di, s + dj]
            raised = (v > best) | (v != v)
            arg = off if raised else arg
            best = v if raised else best
            off += 1
    return best, arg


@_exact
def _maxpool_forward(x, kh, kw, sh, sw, ph, pw, y, first):
    n, c = x.shape[0], x.shape[1]
    oh, ow = y.shape[2], y.shape[3]
    for i in range(n):
        for ch in range(c):
            plane = x[i, ch]
            for p in range(oh):
                for q in range(ow):
                    y[i, ch, p, q], first[i, ch, p, q] = _window_max(plane, p * sh, q * sw, kh, kw, ph, pw)


@_exact
def _maxpool2x2_forward(x, sh, sw, ph, pw, y, first):
    """_maxpool_forward for 2x2 windows, unrolled (MaxPool2d(2)): 1.35 against 5.47 ms for the loop on
    (100, 32, 28, 28) float32. The loop takes a window's first maximum, and NaN where it holds one; PyTorch's
    pick for a NaN or -inf output (its last NaN, its first pixel inside the input) is made again afterwards by
    _maxpool_repick, where NumPy's min of y (NaN where one is) shows one: on (64, 64, 56, 56) float32, best of 40,
    10.4-10.5 ms against 10.5-11.1 for the kernel before the NaN rule (two interleaved runs), where a scan of
    each plane's y in the kernel took 11.6-12.5 and the pick inside the loop 13.2."""
    n, c = x.shape[0], x.shape[1]
    oh, ow = y.shape[2], y.shape[3]
    for i in range(n):
        for ch in range(c):
            plane = x[i, ch]
            for p in range(oh):
                r = p * sh
                for q in range(ow):
                    s = q * sw
                    best = plane[r, s]
                    arg = 0
                    v = plane[r, s + 1]
                    raised = v > best
                    arg = 1 if raised else arg
                    best = v if raised | (v != v) else best
                    v = plane[r + 1, s]
                    raised = v > best
                    arg = 2 if raised else arg
                    best = v if raised | (v != v) else best
                    v = plane[r + 1, s + 1]
                    raised = v > best
                    arg = 3 if raised else arg
                    best = v if raised | (v != v) else best
                    y[i, ch, p, q] = best
                    first[i, ch, p, q] = arg


@_exact
def _maxpool_repick(x, kh, kw, sh, sw, ph, pw, y, first):
    """PyTorch's pick (its last NaN, its first pixel inside the input) for each output that is NaN or -inf."""
    n, c = x.shape[0], x.shape[1]
    oh, ow = y.shape[2], y.shape[3]
    for i in range(n):
        for ch in range(c):
            for p in range(oh):
                for q in range(ow):
                    if not y[i, ch, p, q] > -np.inf:
                        first[i, ch, p, q] = _window_max(x[i, ch], p * sh, q * sw, kh, kw, ph, pw)[1]


@_exact
def _maxpool_backward(dy, first, kh, kw, sh, sw, ph, pw, dx):
    """Each output's gradient added at its window's first maximum (windows may overlap); what
    lands in the padding is dropped. Where a plane's gradient holds an inf or NaN, that plane is
    done again as the portable path's dy * mask: g * 0, NaN, on the window's other pixels too."""
    n, c, oh, ow = dy.shape
    h, w = dx.shape[2], dx.shape[3]
    for i in range(n):
        for ch in range(c):
            plane = dx[i, ch]
            for r in range(h):
                for s in range(w):
                    plane[r, s] = 0
            zero = 0.0  # stays 0 unless a gradient is inf or NaN (then g * 0 is NaN)
            for p in range(oh):
                for q in range(ow):
                    arg = first[i, ch, p, q]
                    g = dy[i, ch, p, q]
                    zero += g * 0
                    r = p * sh - ph + arg // kw
                    s = q * sw - pw + arg % kw
                    if 0 <= r < h and 0 <= s < w:
                        plane[r, s] += g
            if zero == 0:
                continue
            plane[:, :] = 0
            for p in range(oh):
                for q in range(ow):
                    arg = first[i, ch, p, q]
                    g = dy[i, ch, p, q]
                    for di in range(kh):
                        for dj in range(kw):
                            r = p * sh - ph + di
                            s = q * sw - pw + dj
                            if 0 <= r < h and 0 <= s < w:
                                plane[r, s] += g * (di * kw + dj == arg)


@_exact
def _maxpool2x2_tiled_backward(dy, first, dx):
    """_maxpool_backward for 2x2 windows that tile dx (MaxPool2d(2), even sizes): each pixel
    written once, no zero fill first."""
    n, c, oh, ow = dy.shape
    for i in range(n):
        for ch in range(c):
            for p in range(oh):
                for q in range(ow):
                    arg = first[i, ch, p, q]
                    g = dy[i, ch, p, q]
                    dx[i, ch, 2 * p, 2 * q] = g * (arg == 0)
                    dx[i, ch, 2 * p, 2 * q + 1] = g * (arg == 1)
                    dx[i, ch, 2 * p + 1, 2 * q] = g * (arg == 2)
                    dx[i, ch, 2 * p + 1, 2 * q + 1] = g * (arg == 3)


def maxpool2d_forward(x: Any, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
                      out_hw: tuple[int, int], index_dtype: Any, dilation: tuple[int, int] = (1, 1)) -> tuple[Any, Any]:
    """See ``xpnet.layers.pool.maxpool2d_forward``; ``dilation`` (1, 1) only (fast_numba's accepts sends
    the others to the portable path)."""
    shape = (x.shape[0], x.shape[1]) + tuple(out_hw)
    y, first = np.empty(shape, x.dtype), np.empty(shape, index_dtype)
    (ph, pw), (oh, ow) = padding, out_hw
    # ceil_mode's last window may run past the padding: -inf there too (the kernels read without bounds checks).
    bottom = max(ph, (oh - 1) * stride[0] + kernel[0] - x.shape[2] - ph)
    right = max(pw, (ow - 1) * stride[1] + kernel[1] - x.shape[3] - pw)
    padded = ph or pw or bottom or right
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, bottom), (pw, right)), constant_values=-np.inf) if padded else x
    if tuple(kernel) == (2, 2):
        _maxpool2x2_forward(xpad, stride[0], stride[1], ph, pw, y, first)
        if y.size and not y.min() > -np.inf:  # a NaN or -inf output: rare, so found by NumPy's SIMD min
            _maxpool_repick(xpad, 2, 2, stride[0], stride[1], ph, pw, y, first)
    else:
        _maxpool_forward(xpad, kernel[0], kernel[1], stride[0], stride[1], ph, pw, y, first)
    return y, first


def maxpool2d_backward(dy: Any, first: Any, x_shape: tuple[int, ...], kernel: tuple[int, int],
                       stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> Any:
    """See ``xpnet.layers.pool.maxpool2d_backward``; ``dilation`` (1, 1) only, as the forward."""
    dx = np.empty(x_shape, dy.dtype)
    tiled = (tuple(kernel) == tuple(stride) == (2, 2) and tuple(padding) == (0, 0)
             and tuple(x_shape[2:]) == (2 * dy.shape[2], 2 * dy.shape[3]))
    if tiled:
        _maxpool2x2_tiled_backward(dy, first, dx)
    else:
        _maxpool_backward(dy, first, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], dx)
    return dx


# -- the optimizers' updates, in place, one pass (xpnet.optim; the CuPy kernels of fast_cupy alike) ----------
# Each is the portable update's arithmetic in its order, with its scalars in the parameter's dtype (as NumPy
# rounds a Python float meeting a float32 array), so the result is the same to the bit; the portable path
# makes three (SGD) to eleven (Adam) passes over memory, through a work buffer.


@_elementwise
def _sgd(p, g, lr):
    for i in range(p.size):
        p[i] -= lr * g[i]


@_elementwise
def _sgd_momentum(p, g, v, lr, momentum, one_minus_dampening, first, nesterov):
    for i in range(p.size):
        gi = g[i]
        vi = v[i] + gi if first else v[i] * momentum + one_minus_dampening * gi
        v[i] = vi
        p[i] -= lr * (momentum * vi + gi if nesterov else vi)


@_elementwise
def _momentum(p, g, v, lr, momentum):
    for i in range(p.size):
        vi = v[i] * momentum - lr * g[i]
        v[i] = vi
        p[i] += vi


@_elementwise
def _adam(p, g, m, v, one_minus_b1, b2, one_minus_b2, step, eps):
    for i in range(p.size):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * one_minus_b1
        vi = v[i] * b2 + gi * gi * one_minus_b2
        m[i] = mi
        v[i] = vi
        p[i] -= mi / (np.sqrt(vi) + eps) * step


@_elementwise
def _adamw(p, g, m, v, keep, one_minus_b1, b2, one_minus_b2, step, eps):
    for i in range(p.size):
        gi = g[i]
        pi = p[i] * keep
        mi = m[i] + (gi - m[i]) * one_minus_b1
        vi = v[i] * b2 + gi * gi * one_minus_b2
        m[i] = mi
        v[i] = vi
        p[i] = pi - mi / (np.sqrt(vi) + eps) * step


@_elementwise
def _scaled_by_rms(p, g, h, lr, decay, scale, eps):
    for i in range(p.size):
        gi = g[i]
        hi = h[i] * decay + gi * gi * scale
        h[i] = hi
        p[i] -= gi / (np.sqrt(hi) + eps) * lr


def sgd_update(p: Any, g: Any, lr: float) -> None:
    """p -= lr * g (``xpnet.optim.SGD``)."""
    _sgd(p.ravel(), g.ravel(), p.dtype.type(lr))


def sgd_updates(params: Any, grads: Any, lr: float) -> None:
    """:func:`sgd_update` of each parameter of ``params`` and its gradient in ``grads``, C-contiguous arrays of
    one shape a pair (the same arithmetic, the same bits): ``xpnet.optim.SGD``'s whole step in one call."""
    dtype = step = None
    for p, g in zip(params, grads):
        if p.dtype is not dtype:
            dtype = p.dtype
            step = dtype.type(lr)
        if p.ndim == 1:  # a bias: its own flat view (ravel would make another)
            _sgd(p, g, step)
        else:
            _sgd(p.ravel(), g.ravel(), step)


def sgd_momentum_update(p: Any, g: Any, v: Any, lr: float, momentum: float, dampening: float, first: bool,
                        nesterov: bool) -> None:
    """PyTorch's momentum (``xpnet.optim.SGD(momentum=...)``): v = g at the first step (added to the zeros
    v starts as), then v = momentum * v + (1 - dampening) * g; p -= lr * v, or with ``nesterov``
    p -= lr * (momentum * v + g)."""
    t = p.dtype.type
    _sgd_momentum(p.ravel(), g.ravel(), v.ravel(), t(lr), t(momentum), t(1.0 - dampening), bool(first),
                  bool(nesterov))


def sgd_momentum_updates(params: Any, grads: Any, velocities: Any, lr: float, momentum: float, dampening: float,
                         nesterov: bool) -> None:
    """:func:`sgd_momentum_update` after the first step (``first`` False) of each parameter of ``params``, its
    gradient in ``grads`` and its buffer in ``velocities``, C-contiguous arrays of one shape a triple (the same
    arithmetic, the same bits)."""
    dtype = None
    for p, g, v in zip(params, grads, velocities):
        if p.dtype is not dtype:
            dtype = p.dtype
            t = dtype.type
            scalars = (t(lr), t(momentum), t(1.0 - dampening))
        if p.ndim == 1:  # a bias: its own flat views (ravel would make others)
            _sgd_momentum(p, g, v, *scalars, False, bool(nesterov))
        else:
            _sgd_momentum(p.ravel(), g.ravel(), v.ravel(), *scalars, False, bool(nesterov))


def momentum_update(p: Any, g: Any, v: Any, lr: float, momentum: float) -> None:
    """v = momentum * v - lr * g; p += v (``xpnet.optim.Momentum``)."""
    t = p.dtype.type
    _momentum(p.ravel(), g.ravel(), v.ravel(), t(lr), t(momentum))


def adam_update(p: Any, g: Any, m: Any, v: Any, b1: float, b2: float, step: float, eps: float) -> None:
    """m += (1 - b1)(g - m); v = b2 v + (1 - b2) g^2; p -= step * m / (sqrt(v) + eps) (``xpnet.optim.Adam``)."""
    t = p.dtype.type
    _adam(p.ravel(), g.ravel(), m.ravel(), v.ravel(), t(1.0 - b1), t(b2), t(1.0 - b2), t(step),
          t(eps))


def adamw_update(p: Any, g: Any, m: Any, v: Any, keep: float, b1: float, b2: float, step: float, eps: float) -> None:
    """AdamW's decoupled decay p *= keep, then :func:`adam_update`, in one pass (the same bits as the two)."""
    t = p.dtype.type
    _adamw(p.ravel(), g.ravel(), m.ravel(), v.ravel(), t(keep), t(1.0 - b1), t(b2), t(1.0 - b2), t(step), t(eps))


def rms_update(p: Any, g: Any, h: Any, lr: float, alpha: float | None, eps: float) -> None:
    """h = alpha * h + (1 - alpha) * g^2 (``xpnet.optim.RMSprop``), or h += g^2 with ``alpha`` None
    (``xpnet.optim.AdaGrad``: a decay and a scale of 1, which change no bit); p -= lr * g / (sqrt(h) + eps)."""
    t = p.dtype.type
    decay, scale = (t(1.0), t(1.0)) if alpha is None else (t(alpha), t(1.0 - alpha))
    _scaled_by_rms(p.ravel(), g.ravel(), h.ravel(), t(lr), decay, scale, t(eps))
