"""CuPy kernels for the time steps of the recurrent layers (:mod:`xpnet.layers.cells`): the RNN (tanh and ReLU),
the LSTM (with ``proj_size`` too) and the GRUs (PyTorch's and the book's), forward and backward (sources in
:mod:`xpnet.backend.cupy_kernels`). Each function has the signature and the results of the portable step it stands
for and is tested equal to it (``tests/cupy_layer_checks.py``); other dtypes and layouts take the portable path (the
``accepts`` functions below). A backward step's ``carry``, the gradient the next step carried back, is added to dh
inside its kernel.

Launches of a time step, forward and backward (counted on the fake CuPy of ``tests/fake_cupy`` by
``tests/test_cupy_layers.py``): an LSTM 4 (h @ Wh, the gates' kernel; the gradients' kernel, da @ Wh^T) against 41
through the portable cells, a GRU 5 against 34 (one more: dh * z added to dah @ Wh^T), an RNN 4 against 8 (tanh or
ReLU, ``nonlinearity="relu"``: the same kernels with a flag), the book's GRU 9 against 36 (two products each way, its
reset gate between them, and dh_prev's two parts added), an LSTM with ``proj_size`` 8 against 44 (the products by Wr
and Wr^T, the carried gradient's add apart: Wr^T multiplies the sum first, and o * tanh(c) for Wr's gradient).
"""

from __future__ import annotations

from typing import Any, Callable

import cupy

from .cupy_layers import _floats, _launch


def _row_stride(a: Any, like: Any, shape: tuple[int, ...]) -> int | None:
    """The distance between rows, in numbers, of a 2-D CuPy array ``a`` of ``shape`` and ``like``'s dtype
    whose rows are contiguous and do not overlap (a time step's slice of a sequence), else None."""
    if not (isinstance(a, cupy.ndarray) and a.dtype == like.dtype and tuple(a.shape) == shape):
        return None
    row, col = a.strides
    size = a.itemsize
    if (col != size and shape[1] > 1) or row % size or (row < shape[1] * size and shape[0] > 1):
        return None
    return row // size


def _rnn_ready(ax: Any, h: Any, Wh: Any) -> bool:
    if not (_floats(h, Wh) and h.ndim == 2):
        return False
    n, hidden = h.shape
    return tuple(Wh.shape) == (hidden, hidden) and _row_stride(ax, h, (n, hidden)) is not None


def _rnn_forward(ax: Any, h: Any, Wh: Any, relu: bool) -> tuple[Any, tuple[Any, ...]]:
    n, hidden = h.shape
    ah = h @ Wh
    h_next = cupy.empty_like(h)
    _launch("rnn_forward", n * hidden, (ax, ah, h_next, _row_stride(ax, h, (n, hidden)), int(relu), hidden,
                                        n * hidden), T=h.dtype)
    return h_next, (h, h_next)


def rnn_step(ax: Any, h: Any, Wh: Any) -> tuple[Any, tuple[Any, ...]]:
    """See ``xpnet.layers.cells.rnn_step``: the product h @ Wh, then one kernel for tanh(ax + ah)."""
    return _rnn_forward(ax, h, Wh, False)


def rnn_relu_step(ax: Any, h: Any, Wh: Any) -> tuple[Any, tuple[Any, ...]]:
    """See ``xpnet.layers.cells.rnn_relu_step``: the product h @ Wh, then one kernel for max(ax + ah, 0) (0 for
    NaN, as the portable ``where(a > 0, a, 0)``)."""
    return _rnn_forward(ax, h, Wh, True)


def _carry_ready(carry: Any, like: Any) -> bool:
    """No carry, or one the backward kernels take: contiguous, of ``like``'s dtype and shape (N, H)."""
    return carry is None or (isinstance(carry, cupy.ndarray) and carry.dtype == like.dtype
                             and tuple(carry.shape) == tuple(like.shape) and carry.flags.c_contiguous)


def _rnn_backward_ready(dh_next: Any, cache: tuple[Any, ...], WhT: Any, carry: Any = None) -> bool:
    h = cache[1]
    if not (isinstance(h, cupy.ndarray) and h.ndim == 2 and h.dtype in (cupy.float32, cupy.float64)
            and isinstance(WhT, cupy.ndarray) and WhT.dtype == h.dtype and tuple(WhT.shape) == (h.shape[1],) * 2):
        return False
    return all(_row_stride(a, h, tuple(h.shape)) is not None for a in (dh_next, h)) and _carry_ready(carry, h)


def _rnn_backward(dh_next: Any, cache: tuple[Any, ...], WhT: Any, carry: Any, relu: bool) -> tuple[Any, Any, Any]:
    h_next = cache[1]
    n, hidden = h_next.shape
    da = cupy.empty((n, hidden), h_next.dtype)
    rows = [_row_stride(a, h_next, (n, hidden)) for a in (dh_next, h_next)]
    _launch("rnn_backward", n * hidden, (dh_next, h_next if carry is None else carry, h_next, da, *rows,
                                         int(carry is not None), int(relu), hidden, n * hidden), T=h_next.dtype)
    return da, da, da @ WhT


def rnn_step_backward(dh_next: Any, cache: tuple[Any, ...], WhT: Any, carry: Any = None) -> tuple[Any, Any, Any]:
    """See ``xpnet.layers.cells.rnn_step_backward``: one kernel for da = dh * (1 - h_next^2), then da @ Wh^T;
    ``carry`` (contiguous (N, H)) added to dh in the kernel."""
    return _rnn_backward(dh_next, cache, WhT, carry, False)


def rnn_relu_step_backward(dh_next: Any, cache: tuple[Any, ...], WhT: Any, carry: Any = None) -> tuple[Any, Any, Any]:
    """See ``xpnet.layers.cells.rnn_relu_step_backward``: :func:`rnn_step_backward`'s kernel with da = dh where
    h_next > 0, else 0."""
    return _rnn_backward(dh_next, cache, WhT, carry, True)


def _lstm_ready(ax: Any, h: Any, c: Any, Wh: Any) -> bool:
    """h (N, P) and c (N, H) of one float dtype, Wh (P, 4H): P is H but under LSTM's proj_size."""
    if not (_floats(h, c, Wh) and h.ndim == 2 and c.ndim == 2 and c.shape[0] == h.shape[0]):
        return False
    n, hidden = c.shape
    return tuple(Wh.shape) == (h.shape[1], 4 * hidden) and _row_stride(ax, c, (n, 4 * hidden)) is not None


def lstm_step(ax: Any, h: Any, c: Any, Wh: Any) -> tuple[Any, Any, tuple[Any, ...]]:
    """See ``xpnet.layers.cells.lstm_step``: the product h @ Wh, then one kernel for the gates, c_next,
    tanh(c_next) and h_next (the portable path launches about fifteen). The cache's gates are views of
    one (N, 4H) array."""
    n, hidden = c.shape
    ah = h @ Wh
    gates = cupy.empty((n, 4 * hidden), h.dtype)
    c_next, tanh_c, h_next = cupy.empty_like(c), cupy.empty_like(c), cupy.empty_like(c)
    _launch("lstm_forward", n * hidden, (ax, ah, c, gates, c_next, tanh_c, h_next,
                                         _row_stride(ax, h, (n, 4 * hidden)), hidden, n * hidden), T=h.dtype)
    i, f, g, o = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
    return h_next, c_next, (h, c, i, f, g, o, tanh_c)


def _lstm_backward_ready(dh_next: Any, dc_next: Any, cache: tuple[Any, ...], WhT: Any, carry: Any = None) -> bool:
    _, c, i, f, g, o, tanh_c = cache
    if not (_floats(tanh_c) and tanh_c.ndim == 2 and isinstance(WhT, cupy.ndarray) and WhT.dtype == tanh_c.dtype):
        return False
    shape = tuple(tanh_c.shape)
    if dc_next is not None and not (_floats(tanh_c, dc_next) and tuple(dc_next.shape) == shape):
        return False
    # WhT (4H, P) only multiplies (cuBLAS takes the transposed view of Wh the layer passes as it is)
    return (WhT.ndim == 2 and WhT.shape[0] == 4 * shape[1] and _carry_ready(carry, tanh_c)
            and all(_row_stride(a, tanh_c, shape) is not None for a in (dh_next, c, i, f, g, o)))


def lstm_step_backward(dh_next: Any, dc_next: Any, cache: tuple[Any, ...], WhT: Any,
                       carry: Any = None) -> tuple[Any, Any, Any, Any]:
    """See ``xpnet.layers.cells.lstm_step_backward``: one kernel for da and dc_prev (the portable path
    launches about twenty, and a concatenation), then the product da @ Wh^T; ``carry`` (contiguous (N, H))
    added to dh in the kernel."""
    _, c, i, f, g, o, tanh_c = cache
    n, hidden = tanh_c.shape
    da, dc_prev = cupy.empty((n, 4 * hidden), tanh_c.dtype), cupy.empty_like(tanh_c)
    rows = [_row_stride(a, tanh_c, (n, hidden)) for a in (dh_next, c, i, f, g, o)]
    _launch("lstm_backward", n * hidden, (dh_next, tanh_c if carry is None else carry,
                                          tanh_c if dc_next is None else dc_next, c, i, f, g, o, tanh_c,
                                          da, dc_prev, *rows, int(carry is not None), int(dc_next is not None),
                                          hidden, n * hidden), T=tanh_c.dtype)
    return da, da, da @ WhT, dc_prev


def _gru_ready(ax: Any, h: Any, Wh: Any, bh: Any) -> bool:
    if not (_floats(h, Wh) and h.ndim == 2):
        return False
    n, hidden = h.shape
    return (tuple(Wh.shape) == (hidden, 3 * hidden) and _row_stride(ax, h, (n, 3 * hidden)) is not None
            and (bh is None or (_floats(h, bh) and tuple(bh.shape) == (3 * hidden,))))


def gru_step(ax: Any, h: Any, Wh: Any, bh: Any) -> tuple[Any, tuple[Any, ...]]:
    """See ``xpnet.layers.cells.gru_step``: the product h @ Wh, then one kernel for the gates, the hidden
    n block and h_next (the portable path launches about a dozen). The cache's r, z and n are views of one
    (N, 3H) array."""
    n, hidden = h.shape
    ah = h @ Wh
    gates, hidden_n, h_next = cupy.empty((n, 3 * hidden), h.dtype), cupy.empty_like(h), cupy.empty_like(h)
    _launch("gru_forward", n * hidden, (ax, ah, ah if bh is None else bh, h, gates, hidden_n, h_next,
                                        _row_stride(ax, h, (n, 3 * hidden)), int(bh is not None), hidden,
                                        n * hidden), T=h.dtype)
    r, z, g = (gates[:, k * hidden:(k + 1) * hidden] for k in range(3))
    return h_next, (h, r, z, g, hidden_n)


def _gru_backward_ready(dh_next: Any, cache: tuple[Any, ...], WhT: Any, carry: Any = None) -> bool:
    h = cache[0]
    if not (isinstance(h, cupy.ndarray) and h.ndim == 2 and h.dtype in (cupy.float32, cupy.float64)
            and isinstance(WhT, cupy.ndarray) and WhT.dtype == h.dtype):
        return False
    shape = tuple(h.shape)
    return (tuple(WhT.shape) == (3 * shape[1], shape[1]) and _carry_ready(carry, h)
            and all(_row_stride(a, h, shape) is not None for a in (dh_next, *cache)))


def gru_step_backward(dh_next: Any, cache: tuple[Any, ...], WhT: Any, carry: Any = None) -> tuple[Any, Any, Any]:
    """See ``xpnet.layers.cells.gru_step_backward``: one kernel for dax, dah and dh * z, then
    dh * z + dah @ Wh^T (the portable path launches about twenty, and two concatenations); ``carry``
    (contiguous (N, H)) added to dh in the kernel."""
    h = cache[0]
    n, hidden = h.shape
    dax, dah, dh_z = cupy.empty((n, 3 * hidden), h.dtype), cupy.empty((n, 3 * hidden), h.dtype), cupy.empty_like(h)
    rows = [_row_stride(a, h, (n, hidden)) for a in (dh_next, *cache)]
    _launch("gru_backward", n * hidden, (dh_next, h if carry is None else carry, *cache, dax, dah, dh_z, *rows,
                                         int(carry is not None), hidden, n * hidden), T=h.dtype)
    return dax, dah, dh_z + dah @ WhT


def _gru_book_ready(ax: Any, h: Any, Wh: Any) -> bool:
    if not (_floats(h, Wh) and h.ndim == 2):
        return False
    n, hidden = h.shape
    return tuple(Wh.shape) == (hidden, 3 * hidden) and _row_stride(ax, h, (n, 3 * hidden)) is not None


def gru_book_step(ax: Any, h: Any, Wh: Any) -> tuple[Any, tuple[Any, ...]]:
    """See ``xpnet.layers.cells.gru_book_step``: the product h @ Wh_zr, one kernel for z, r and r * h, the product
    (r * h) @ Wh_h, one kernel for h~ and h_next (the portable path launches about fifteen). The cache's z and r are
    views of one (N, 2H) array."""
    n, hidden = h.shape
    row = _row_stride(ax, h, (n, 3 * hidden))
    a = h @ Wh[:, :2 * hidden]
    zr, rh, hh, h_next = cupy.empty((n, 2 * hidden), h.dtype), *(cupy.empty_like(h) for _ in range(3))
    _launch("gru_book_gates", n * hidden, (ax, a, h, zr, rh, row, hidden, n * hidden), T=h.dtype)
    a_h = rh @ Wh[:, 2 * hidden:]
    _launch("gru_book_forward", n * hidden, (ax, a_h, h, zr, hh, h_next, row, hidden, n * hidden), T=h.dtype)
    return h_next, (h, zr[:, :hidden], zr[:, hidden:], rh, hh)


def _gru_book_backward_ready(dh_next: Any, cache: tuple[Any, ...], Wh: Any, carry: Any = None) -> bool:
    h = cache[0]
    if not (isinstance(h, cupy.ndarray) and h.ndim == 2 and h.dtype in (cupy.float32, cupy.float64)
            and isinstance(Wh, cupy.ndarray) and Wh.dtype == h.dtype):
        return False
    shape = tuple(h.shape)
    return (tuple(Wh.shape) == (shape[1], 3 * shape[1]) and _carry_ready(carry, h)
            and all(_row_stride(a, h, shape) is not None for a in (dh_next, *cache)))


def gru_book_step_backward(dh_next: Any, cache: tuple[Any, ...], Wh: Any,
                           carry: Any = None) -> tuple[Any, tuple[Any, Any], Any]:
    """See ``xpnet.layers.cells.gru_book_step_backward``: one kernel for the z and h~ blocks of dax, the product
    dt @ Wh_h^T, one kernel for the r block and dh * (1 - z) + r * drh, then that plus dzr @ Wh_zr^T (the portable
    path launches about twenty, and two concatenations); ``carry`` (contiguous (N, H)) added to dh in the kernels.
    dah's pair are views of dax."""
    h, z, r, _, hh = cache
    n, hidden = h.shape
    dax, part = cupy.empty((n, 3 * hidden), h.dtype), cupy.empty_like(h)
    strides = [_row_stride(a, h, (n, hidden)) for a in (dh_next, h, z, hh)]
    with_carry = (h if carry is None else carry, int(carry is not None))
    _launch("gru_book_backward_t", n * hidden, (dh_next, with_carry[0], h, z, hh, dax, *strides, with_carry[1], hidden,
                                                n * hidden), T=h.dtype)
    dzr, dt = dax[:, :2 * hidden], dax[:, 2 * hidden:]
    drh = dt @ Wh[:, 2 * hidden:].T
    strides = [_row_stride(a, h, (n, hidden)) for a in (dh_next, h, z, r)]
    _launch("gru_book_backward_r", n * hidden, (dh_next, with_carry[0], h, z, r, drh, dax, part, *strides,
                                                with_carry[1], hidden, n * hidden), T=h.dtype)
    return dax, (dzr, dt), part + dzr @ Wh[:, :2 * hidden].T


def register(add: Callable[..., Any]) -> None:
    for op, accepts in (("rnn_step", _rnn_ready), ("rnn_step_backward", _rnn_backward_ready),
                        ("rnn_relu_step", _rnn_ready), ("rnn_relu_step_backward", _rnn_backward_ready),
                        ("lstm_step", _lstm_ready), ("lstm_step_backward", _lstm_backward_ready),
                        ("gru_step", _gru_ready), ("gru_step_backward", _gru_backward_ready),
                        ("gru_book_step", _gru_book_ready), ("gru_book_step_backward", _gru_book_backward_ready)):
        add(op, globals()[op], accepts)
