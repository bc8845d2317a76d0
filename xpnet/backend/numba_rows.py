"""Numba kernels over the rows of a matrix for the NumPy backend: LayerNorm (GroupNorm and InstanceNorm go
through it) and softmax along the last axis, forward and backward. Compiled as :mod:`xpnet.backend.numba_kernels`'
kernels (its flags: sums in float64 with reassociation, NaN and inf as NumPy's); each public function has the
signature of the portable one it stands for (``xpnet.layers.layernorm``, ``xpnet.layers.softmax``) and is tested
equal to it (``tests/test_numba.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .numba_kernels import _exact, _sums


# -- LayerNorm over the rows of (M, D) ----------------------------------------------------------------
# A row's mean and variance in float64 (two passes over a row that sits in cache), then x_hat and y in one
# pass: NumPy makes some ten passes over the activations, these two or three.


@_sums
def _layernorm_rows(x, gamma, beta, eps, x_hat, inv_std, y):
    m, d = x.shape
    for i in range(m):
        total = 0.0
        for j in range(d):
            total += x[i, j]
        mean = total / d
        squares = 0.0
        for j in range(d):
            t = x[i, j] - mean
            squares += t * t
        r = 1.0 / np.sqrt(squares / d + eps)
        inv_std[i, 0] = r
        for j in range(d):
            h = (x[i, j] - mean) * r
            x_hat[i, j] = h
            y[i, j] = h * gamma[j] + beta[j]


@_sums
def _layernorm_input_grad(dy, x_hat, inv_std, gamma, dx, dgamma, dbeta, grads):
    m, d = dy.shape
    for i in range(m):
        sum_g = 0.0
        sum_gx = 0.0
        for j in range(d):
            g = dy[i, j] * gamma[j]
            sum_g += g
            sum_gx += g * x_hat[i, j]
        if grads:  # a row of dgamma and dbeta after the row's sums, not among them: that loop stays vectorised
            for j in range(d):
                dgamma[j] += dy[i, j] * x_hat[i, j]
                dbeta[j] += dy[i, j]
        mean_g, mean_gx, r = sum_g / d, sum_gx / d, inv_std[i, 0]
        for j in range(d):
            dx[i, j] = (dy[i, j] * gamma[j] - mean_g - x_hat[i, j] * mean_gx) * r


def layernorm_forward(x2: Any, gamma: Any, beta: Any, eps: float) -> tuple[Any, Any, Any]:
    """See ``xpnet.layers.layernorm.layernorm_forward`` (no gamma: ones, no beta: zeros)."""
    d = x2.shape[1]
    gamma = np.ones(d, x2.dtype) if gamma is None else gamma
    beta = np.zeros(d, x2.dtype) if beta is None else beta
    x_hat, y = np.empty_like(x2), np.empty_like(x2)
    inv_std = np.empty((x2.shape[0], 1), x2.dtype)
    _layernorm_rows(x2, gamma, beta, eps, x_hat, inv_std, y)
    return y, x_hat, inv_std


def layernorm_backward(dy2: Any, x_hat: Any, inv_std: Any, gamma: Any, bias: bool,
                       grads: bool = True) -> tuple[Any, Any, Any]:
    """See ``xpnet.layers.layernorm.layernorm_backward``: dgamma and dbeta summed in float64."""
    d = dy2.shape[1]
    dx = np.empty_like(dy2)
    dgamma, dbeta = np.zeros(d), np.zeros(d)
    grads = grads and gamma is not None
    _layernorm_input_grad(dy2, x_hat, inv_std, np.ones(d, dy2.dtype) if gamma is None else gamma, dx, dgamma, dbeta,
                          grads)
    if not grads:
        return dx, None, None
    return dx, dgamma.astype(dy2.dtype), dbeta.astype(dy2.dtype) if bias else None


# -- Softmax along the last axis of (M, D) -------------------------------------------------------------
# As the portable path: x minus the row's maximum (a NaN wins) in x's dtype, NumPy's exp of that (its SIMD exp
# is far faster than a compiled loop's), the sum in float64; a row of -inf only (every key masked) and a row with
# a NaN or +inf give NaN, as PyTorch. NumPy's maximum over short rows alone took longer than the whole of this.
# The backward is one pass where NumPy makes five.


@_exact
def _shift_rows(x, y):
    m, d = x.shape
    for i in range(m):
        top = x[i, 0]
        for j in range(1, d):
            v = x[i, j]
            if v > top or v != v:
                top = v
        if top == -np.inf:
            y[i, :] = np.nan
            continue
        for j in range(d):
            y[i, j] = x[i, j] - top


@_sums
def _normalise_rows(e):
    m, d = e.shape
    for i in range(m):
        total = 0.0
        for j in range(d):
            total += e[i, j]
        scale = 1.0 / total
        for j in range(d):
            e[i, j] *= scale


@_sums
def _softmax_input_grad(y, dy, dx):
    m, d = y.shape
    for i in range(m):
        total = 0.0
        for j in range(d):
            total += dy[i, j] * y[i, j]
        for j in range(d):
            dx[i, j] = y[i, j] * (dy[i, j] - total)


def softmax(x: Any, axis: int) -> Any:
    """See ``xpnet.layers.softmax.softmax`` (along the last axis only)."""
    y = np.empty_like(x)
    y2 = y.reshape(-1, x.shape[-1])
    _shift_rows(x.reshape(-1, x.shape[-1]), y2)
    np.exp(y2, out=y2)
    _normalise_rows(y2)
    return y


def softmax_backward(y: Any, dy: Any, axis: int) -> Any:
    """See ``xpnet.layers.softmax.softmax_backward`` (along the last axis only)."""
    dx = np.empty_like(dy)
    _softmax_input_grad(y.reshape(-1, y.shape[-1]), dy.reshape(-1, y.shape[-1]), dx.reshape(-1, y.shape[-1]))
    return dx


# -- Softmax cross-entropy of integer labels over the rows of (M, C) -------------------------------------------
# xpnet.losses.cross_entropy_labels and its backward for dout = 1, as CuPy's fused kernel computes them (the loss,
# dy, and whether each row's first maximum is at its label), for the small score matrices of a classifier's step
# where NumPy's dozen calls cost more than their work: the shift and the label's score in one pass, NumPy's exp,
# then the row sums (in float64), the loss and dy in one more.


@_exact
def _ce_shift(y, labels, ignore, z, picked, hit):
    """z = y - (each row's maximum), picked = the label's z, hit = whether the first maximum (a NaN first, as
    NumPy's argmax) is at the label; returns the rows whose label is not ``ignore``, or -1 where one of those lies
    outside [0, C)."""
    m, c = y.shape
    counted = 0
    for i in range(m):
        label = labels[i]
        best = y[i, 0]
        arg = 0
        for j in range(1, c):
            v = y[i, j]
            if v > best or (v != v and best == best):
                best = v
                arg = j
        hit[i] = label == arg
        for j in range(c):
            z[i, j] = y[i, j] - best
        picked[i] = 0.0
        if label != ignore:
            if label < 0 or label >= c:
                return -1
            picked[i] = z[i, label]
            counted += 1
    return counted


@_sums
def _ce_finish(e, labels, ignore, picked, scale, per_row):
    """From e = exp(z): each row's loss times its weight in the mean (``scale``; 0 where ignored) into per_row,
    and e made dy = (softmax - one_hot(label)) times that weight, in place."""
    m, c = e.shape
    for i in range(m):
        total = 0.0
        for j in range(c):
            total += e[i, j]
        counted = labels[i] != ignore
        w = scale if counted else 0.0
        per_row[i] = (np.log(total) - picked[i]) * w
        inv = w / total
        for j in range(c):
            e[i, j] = e[i, j] * inv
        if counted:
            e[i, labels[i]] -= w


def softmax_cross_entropy(y2: Any, labels: Any, ignore_index: int, label_smoothing: float,
                          count: int | None = None) -> Any:
    """(the mean loss, dy for dout = 1 (M, C), each row's hit (M,) bool) for logits (M, C) and integer labels
    (M,), rows of ``ignore_index`` weighing 0; None where a counted label lies outside [0, C) (the portable path
    then says so). ``label_smoothing`` is not taken (the accept check leaves it to the portable path); ``count``
    (the labels not ignored, where the caller knows it) neither: the rows are counted here in the same pass."""
    m, c = y2.shape
    # empty_like's result for a C-contiguous ndarray, without its Python dispatcher (a subclass keeps empty_like)
    dy = np.empty(y2.shape, y2.dtype) if type(y2) is np.ndarray else np.empty_like(y2)
    picked, hit = np.empty(m, np.float64), np.empty(m, np.bool_)
    counted = _ce_shift(y2, labels, ignore_index, dy, picked, hit)
    if counted < 0:
        return None
    np.exp(dy, out=dy)
    per_row = np.empty(m, np.float64)
    _ce_finish(dy, labels, ignore_index, picked, 1.0 / max(counted, 1), per_row)
    return y2.dtype.type(np.add.reduce(per_row)), dy, hit  # per_row.sum()'s reduction, without its Python call
