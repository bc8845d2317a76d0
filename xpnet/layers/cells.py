"""One time step of the recurrent layers (the book's ``RNN``, ``LSTM`` and ``GRU`` classes), forward and backward.

The time loops of :mod:`xpnet.layers.recurrent` call these once per step. A step gets ``ax``, its row of
the input projection ``x @ Wx + b`` (made for the whole sequence in one product before the loop: x is
known for every step, only ``h @ Wh`` has to wait for the step before), and the previous state; it
returns the new state and what its backward needs. A backward step gets the gradient of the new state
(and Wh transposed, made once per backward: a contiguous copy on NumPy, where OpenBLAS multiplies by it
in 0.88 ms against 1.47 ms through the transposed view at N=20, H=650) and returns three things: the
gradient of ``ax`` (``dax``), the gradient of what multiplied ``Wh`` (``dah``: the time loop makes ``Wh``'s
gradient as one product over all steps), and the gradient of the previous state.

Column blocks, in order: RNN one block; LSTM PyTorch's i, f, g, o (input, forget, cell candidate,
output); GRU PyTorch's r, z, n; the book's GRU z, r, h~. Shapes: ax (N, blocks * H), h and c (N, H),
Wh (H, blocks * H). ``step_weights`` and ``step_weights_transposed`` make Wh ready once for a loop's steps
(the portable code leaves it as it is, fast paths pack or copy it).
"""

from __future__ import annotations

from typing import Any

from ..backend import fast_path, namespace


def sigmoid(x: Any) -> Any:
    """1 / (1 + exp(-x)) as 0.5 * tanh(x / 2) + 0.5: never overflows, and the fastest of the stable
    forms in NumPy (about 2x a plain tanh; the exp(-|x|) form is 15x). Its error is absolute (an ulp
    of 1), so a gate near 0 has a relative error of eps / gate; the gate multiplies a value of order
    1 where it is used, so that error stays at rounding size there."""
    return 0.5 * namespace(x).tanh(0.5 * x) + 0.5


def rnn_step(ax: Any, h: Any, Wh: Any) -> tuple[Any, tuple[Any, ...]]:
    """h_next = tanh(ax + h @ Wh). Caches h and h_next."""
    h_next = namespace(ax).tanh(ax + h @ Wh)
    return h_next, (h, h_next)


def rnn_step_backward(dh_next: Any, cache: tuple[Any, ...], WhT: Any, carry: Any = None) -> tuple[Any, Any, Any]:
    """``WhT``: Wh transposed, (blocks * H, H). ``carry`` (N, H), the gradient the next step carried back, is added
    to ``dh_next`` (the gradient from the outputs) first; None adds nothing. The fast paths of the backward steps
    take it too (CuPy's adds it inside the step's kernel, one launch fewer a step)."""
    _, h_next = cache
    dh_next = dh_next if carry is None else dh_next + carry
    da = dh_next * (1.0 - h_next * h_next)
    return da, da, da @ WhT


def rnn_relu_step(ax: Any, h: Any, Wh: Any) -> tuple[Any, tuple[Any, ...]]:
    """PyTorch's ``nonlinearity='relu'``: h_next = max(ax + h @ Wh, 0). Caches h and h_next."""
    a = ax + h @ Wh
    h_next = namespace(a).where(a > 0, a, namespace(a).zeros_like(a))
    return h_next, (h, h_next)


def rnn_relu_step_backward(dh_next: Any, cache: tuple[Any, ...], WhT: Any, carry: Any = None) -> tuple[Any, Any, Any]:
    """The gradient through max(a, 0): 0 where a <= 0 (PyTorch's ReLU, which passes none at 0); ``carry`` as
    :func:`rnn_step_backward`'s."""
    _, h_next = cache
    dh_next = dh_next if carry is None else dh_next + carry
    da = namespace(dh_next).where(h_next > 0, dh_next, namespace(dh_next).zeros_like(dh_next))
    return da, da, da @ WhT


def rnn_step_of(nonlinearity: str, xp: Any) -> Any:
    """The step of an Elman RNN with ``nonlinearity`` ('tanh' or 'relu') on namespace ``xp``, through its fast paths
    where there are some."""
    if nonlinearity == "relu":
        return fast_path("rnn_relu_step", xp, rnn_relu_step)
    return fast_path("rnn_step", xp, rnn_step)


def rnn_step_backward_of(nonlinearity: str, xp: Any) -> Any:
    """The backward step matching :func:`rnn_step_of`."""
    if nonlinearity == "relu":
        return fast_path("rnn_relu_step_backward", xp, rnn_relu_step_backward)
    return fast_path("rnn_step_backward", xp, rnn_step_backward)


def lstm_step(ax: Any, h: Any, c: Any, Wh: Any) -> tuple[Any, Any, tuple[Any, ...]]:
    """Gates i, f, o = sigmoid, g = tanh of ``ax + h @ Wh``; c_next = f * c + i * g,
    h_next = o * tanh(c_next) (N, H). Caches h, c, the four gates and tanh(c_next)."""
    xp = namespace(ax)
    H = c.shape[1]  # h is narrower under LSTM's proj_size
    a = ax + h @ Wh
    gates_if = sigmoid(a[:, :2 * H])
    i, f = gates_if[:, :H], gates_if[:, H:]
    g = xp.tanh(a[:, 2 * H:3 * H])
    o = sigmoid(a[:, 3 * H:])
    c_next = f * c + i * g
    tanh_c = xp.tanh(c_next)
    return o * tanh_c, c_next, (h, c, i, f, g, o, tanh_c)


def lstm_step_backward(dh_next: Any, dc_next: Any, cache: tuple[Any, ...], WhT: Any,
                       carry: Any = None) -> tuple[Any, Any, Any, Any]:
    """``dc_next`` None stands for zeros (the last step); ``WhT``: Wh transposed, (4H, H); ``carry`` added to
    ``dh_next`` first, as :func:`rnn_step_backward`'s. Returns dax (= dah), dah, dh_prev, dc_prev."""
    xp = namespace(dh_next)
    _, c, i, f, g, o, tanh_c = cache
    dh_next = dh_next if carry is None else dh_next + carry
    ds = dh_next * o * (1.0 - tanh_c * tanh_c)
    if dc_next is not None:
        ds = ds + dc_next
    da = xp.concat([ds * g * i * (1.0 - i), ds * c * f * (1.0 - f), ds * i * (1.0 - g * g),
                    dh_next * tanh_c * o * (1.0 - o)], axis=1)
    return da, da, da @ WhT, ds * f


def gru_step(ax: Any, h: Any, Wh: Any, bh: Any) -> tuple[Any, tuple[Any, ...]]:
    """PyTorch's GRU: r, z = sigmoid(ax + h @ Wh + bh) (their blocks), n = tanh(ax_n + r * (h @ Wh_n + bh_n))
    (the reset gate after the product), h_next = (1 - z) * n + z * h; ``bh`` None: no hidden bias. Caches h,
    r, z, n and h @ Wh_n + bh_n."""
    H = h.shape[1]
    ah = h @ Wh if bh is None else h @ Wh + bh
    rz = sigmoid(ax[:, :2 * H] + ah[:, :2 * H])
    r, z = rz[:, :H], rz[:, H:]
    ah_n = ah[:, 2 * H:]
    n = namespace(ax).tanh(ax[:, 2 * H:] + r * ah_n)
    return n + z * (h - n), (h, r, z, n, ah_n)


def gru_step_backward(dh_next: Any, cache: tuple[Any, ...], WhT: Any, carry: Any = None) -> tuple[Any, Any, Any]:
    """``WhT``: Wh transposed, (3H, H); ``carry`` as :func:`rnn_step_backward`'s."""
    xp = namespace(dh_next)
    h, r, z, n, ah_n = cache
    dh_next = dh_next if carry is None else dh_next + carry
    dn = dh_next * (1.0 - z) * (1.0 - n * n)
    dz = dh_next * (h - n) * z * (1.0 - z)
    dr = dn * ah_n * r * (1.0 - r)
    dax = xp.concat([dr, dz, dn], axis=1)
    dah = xp.concat([dr, dz, dn * r], axis=1)
    return dax, dah, dh_next * z + dah @ WhT


def gru_book_step(ax: Any, h: Any, Wh: Any) -> tuple[Any, tuple[Any, ...]]:
    """The book's GRU: z, r = sigmoid(ax + h @ Wh) (their blocks), h~ = tanh(ax_h + (r * h) @ Wh_h)
    (the reset gate before the product), h_next = (1 - z) * h + z * h~. Caches h, z, r, r * h and h~."""
    H = h.shape[1]
    zr = sigmoid(ax[:, :2 * H] + h @ Wh[:, :2 * H])
    z, r = zr[:, :H], zr[:, H:]
    rh = r * h
    hh = namespace(ax).tanh(ax[:, 2 * H:] + rh @ Wh[:, 2 * H:])
    return h + z * (hh - h), (h, z, r, rh, hh)


def gru_book_step_backward(dh_next: Any, cache: tuple[Any, ...], Wh: Any,
                           carry: Any = None) -> tuple[Any, tuple[Any, Any], Any]:
    """dah is a pair: the gradient for the z, r blocks (multiplying h) and for the h~ block (multiplying r * h);
    ``carry`` as :func:`rnn_step_backward`'s."""
    xp = namespace(dh_next)
    h, z, r, _, hh = cache
    dh_next = dh_next if carry is None else dh_next + carry
    H = h.shape[1]
    dt = dh_next * z * (1.0 - hh * hh)
    drh = dt @ Wh[:, 2 * H:].T
    dzr = xp.concat([dh_next * (hh - h) * z * (1.0 - z), drh * h * r * (1.0 - r)], axis=1)
    dh_prev = dh_next * (1.0 - z) + r * drh + dzr @ Wh[:, :2 * H].T
    return xp.concat([dzr, dt], axis=1), (dzr, dt), dh_prev


def step_weights(W: Any, steps: int) -> Any:
    """W (H, blocks * H) for ``steps`` products ``h @ W``, as it is (MKL's fast path packs it once)."""
    return W


def step_weights_transposed(W: Any, steps: int) -> Any:
    """W (H, blocks * H) transposed for ``steps`` products ``da @ W.T``, as a view (NumPy's fast path makes a
    contiguous copy, MKL's packs it once)."""
    return W.T
