"""PyTorch's one-step cells RNNCell, LSTMCell, GRUCell (the book's RNN, LSTM, GRU step classes), for loops of one's own.

A cell runs one time step through the step functions of the sequence layers (:mod:`xpnet.layers.cells`), with
their parameters: Wx (D, blocks * H), Wh (H, blocks * H), b (GRUCell, and RNNCell and LSTMCell with
``convention="pytorch"``: bx, bh), so weights copy between an ``LSTM`` and an ``LSTMCell`` of one convention, and
``xn.load_torch_state_dict`` takes ``nn.LSTMCell``'s ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``
(``Wx = weight_ih.T``, ``b = bias_ih + bias_hh``; ``bx = bias_ih``, ``bh = bias_hh``). How a decoder loop goes:

1. ``h = cell(x, h)`` (LSTMCell: ``h, c = cell(x, (h, c))``), x (N, D) or PyTorch's unbatched (D,); ``hx`` None
   is zeros. Each training-mode call pushes what its backward needs onto the cell's stack, so one cell may be
   called at every step of a loop inside one forward of a model (:mod:`xpnet.layers.uses` lets cells through).
2. ``backward(dh)`` (LSTMCell: ``backward(dh, dc=None)``; None for zeros) takes the last call's cache off the
   stack: one backward per call, in reverse order. It returns ``(dx, dh_prev)`` (``(dx, (dh_prev, dc_prev))``);
   the caller adds the gradients of a state used twice (a step's output and the next step's input), as the book.
   A call whose h (LSTMCell: or c) went on as the next call's ``hx`` (the very array it returned) refuses
   ``dh=None`` (``dc=None``) once that next call's backward returned its dh_prev (dc_prev): the later steps'
   state gradient dropped, silently; zeros passed cut it on purpose. A dh given without the carried dh_prev
   added (``dy_t`` where ``dy_t + dh_prev`` was meant) cannot be told from one with it: xpnet sees an array, not
   how it was made.
3. The parameter gradients are summed over the backward calls; the first forward after a backward starts a new
   round (the stack emptied, the next backward's gradients replace the old). ``train=False`` calls keep nothing.
   A round left with calls on the stack that needed a backward (not run under ``xn.no_grad()``) is refused at the
   optimizer's step (:mod:`xpnet.layers.left_out`): the backward calls that ran took the last calls' caches.
"""

from __future__ import annotations

import operator
from typing import Any

from .. import init as _init
from .._user import flag, is_bool
from ..backend import fast_path, namespace, untracked
from . import cells, left_out
from .base import DEVICE_DEFAULT, Layer, positive_int, pytorch_defaults_only
from .cells import step_weights_transposed
from .no_grad_calls import UNDER_NO_GRAD
from .recurrent_args import SUMMED_BIAS_CONVENTIONS, convention_biases, input_bias, relu_or_tanh
from .state_handoff import handed, linked, owe, settle_step
from .recurrent_args import convention as checked_convention


class _Cell(Layer):
    """One step of a recurrent layer; subclasses give the step and its backward."""

    blocks = 1
    state_names: tuple[str, ...] = ("h",)
    records_uses = False  # a cell pushes a cache per call itself, for a loop of steps
    _dc_owed = False  # LSTMCell: the last backward returned a dc_prev that the call before it needs
    _dh_owed = False  # the last backward returned a dh_prev that the call before it needs (its h went on as hx)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, init: Any = "sigmoid",
                 dtype: Any = "float32", device: Any = None):
        super().__init__()
        pytorch_defaults_only(self.name, {"device": DEVICE_DEFAULT}, {"device": device})
        self.input_size = positive_int(self, "input_size", input_size)
        self.hidden_size = positive_int(self, "hidden_size", hidden_size)
        self.bias, self.init, self.dtype = flag(bias, self.name, "bias"), init, _init.dtype_name(dtype, self.name)
        d, h, width = self.input_size, self.hidden_size, self.blocks * self.hidden_size
        self.params["Wx"] = _init.weights((d, width), d, width, init=init, dtype=self.dtype, who=self.name)
        self.params["Wh"] = _init.weights((h, width), h, width, init=init, dtype=self.dtype, who=self.name)
        for name in self.bias_names():
            self.params[name] = _init.zeros((width,), dtype=self.dtype)
        self._caches: tuple[Any, ...] = ()  # one per training-mode forward not yet backpropagated, rebound (not
        self._backed = False  # appended to) so that xn.gradcheck's rewinding restores it; a backward ran since
        self._backs = 0  # the backward calls since the last forward (left_out)

    def bias_names(self) -> tuple[str, ...]:
        return ("b",) if self.bias else ()

    def _input_biases(self) -> tuple[str, ...]:
        """The biases added to x @ Wx (summed, once per call): b, or GRUCell's bx (its bh is in the step)."""
        return self.bias_names()[:1]

    def config(self) -> dict[str, Any]:
        init = self.init if isinstance(self.init, (str, int, float)) else "sigmoid"
        return {"input_size": self.input_size, "hidden_size": self.hidden_size, "bias": self.bias, "init": init,
                "dtype": self.dtype}

    def sequential_refusal(self) -> str:
        return (f"is one step of a loop (its backward gives dx and the state's gradient): a whole sequence in a "
                f"Sequential goes through xn.layers.{self.name[:-4]}; loop the cell in an xn.Model of your own")

    def __call__(self, x: Any, hx: Any = None, train: bool | None = None) -> Any:  # type: ignore[override]
        """``forward`` in the layer's mode; never recorded as a use (a cell is called once per step)."""
        return self.forward(x, hx, train=self.training if train is None else train)

    def forward(self, x: Any, hx: Any = None, train: bool = True) -> Any:
        """x: (N, input_size) or (input_size,), hx: None (zeros), h (N, hidden_size) (LSTMCell: a pair (h, c))
        -> h' (LSTMCell: (h', c')) of hx's shape. Training mode pushes the step's cache."""
        x = untracked(x)
        train = self._check_train(train, "x, hx")
        xp = self._check_float(x)
        self._check_like_params(x)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size or x.shape[0] == 0:
            raise ValueError(f"{self.name}: expected input of shape (N, {self.input_size}) or ({self.input_size},) "
                             f"(one step), got {tuple(x.shape)}; a whole sequence (N, T, {self.input_size}) goes "
                             f"through xn.layers.{self.name[:-4]}")
        x2 = xp.reshape(x, (-1, self.input_size))
        state = self._states(hx, x2.shape[0], x.ndim == 2)
        ax = fast_path("matmul", xp, operator.matmul)(x2, self.params["Wx"])
        if self.bias:
            ax = ax + input_bias(self.params, self._input_biases())
        new, cache = self._step(ax, state)
        new = new if x.ndim == 2 else tuple(xp.reshape(s, (self.hidden_size,)) for s in new)
        pair = "c" in self.state_names
        if train:
            if self._backed:
                self._caches, self._backed, self._dc_owed, self._dh_owed = (), False, False, False
            given = None if hx is None else (hx[0], hx[1]) if pair else (hx,)
            last = self._caches[-1][7] if self._caches and given is not None else None  # the call before's return
            # a state the call before returned (the loop's own: an 'is' a call), or another layer's (an encoder's
            # h_n, looked up: this call's backward owes it, layers.state_handoff); LSTMCell: the loop's own c needs
            # the dc_prev this call's backward returns (``_dc_owed``)
            own = last is not None and given[0] is last[0]
            links = None if given is None or own else linked(given, self.state_names)
            fed = pair and last is not None and given[1] is last[1]
            # under no_grad or not, as its wrapper noted it (no_grad_calls.marked): no backward needed (left_out)
            number = handed(self, new)  # an encoder's loop: its state goes on to a decoder (layers.state_handoff)
            self._caches = (*self._caches, (x2, state[0], cache, x.ndim == 2, self.__dict__[UNDER_NO_GRAD], links,
                                            fed, new, own, number))
        return new if pair else new[0]

    def _states(self, hx: Any, n: int, batched: bool) -> tuple[Any, ...]:
        """The start state as (N, H) arrays, checked."""
        pair = len(self.state_names) == 2
        held = "a pair (h, c) of arrays" if pair else "one array h"
        shape = (n, self.hidden_size) if batched else (self.hidden_size,)
        if hx is None:
            zeros = namespace(self.params["Wx"]).zeros((n, self.hidden_size), dtype=self.params["Wx"].dtype,
                                                       device=self.params["Wx"].device)
            return (zeros,) * len(self.state_names)
        if is_bool(hx) or pair != isinstance(hx, (tuple, list)) or \
                (pair and (len(hx) != 2 or any(s is None for s in hx))):
            parts = f" ({', '.join(type(s).__name__ for s in hx)})" if isinstance(hx, (tuple, list)) else ""
            raise TypeError(f"{self.name}.forward(x, hx, train): hx is {held} of shape {shape} (None: zeros), got "
                            f"{type(hx).__name__}{parts}; train is the third argument (train=False by name)")
        states = []
        for name, s in zip(self.state_names, hx if pair else (hx,)):
            s = untracked(s)
            self._check_float(s)
            if tuple(s.shape) != shape:
                raise ValueError(f"{self.name}: state {name} must have shape {shape} as the input, got "
                                 f"{tuple(s.shape)}")
            self._check_like_params(s, f"state {name}", "hx")
            states.append(namespace(s).reshape(s, (n, self.hidden_size)))
        return tuple(states)

    def _backward(self, dh: Any, dc: Any = None) -> tuple[Any, tuple[Any, ...]]:
        """(dx, the start state's gradients) of the last forward not yet backpropagated; fills grads."""
        if not self._caches:
            raise RuntimeError(f"{self.name}: backward called more times than forward (one backward per "
                               "training-mode forward, in the reverse order of the forwards)")
        x2, h, cache, batched, _, links, fed, _, own, number = self._caches[-1]
        if dh is None and self._dh_owed:
            raise RuntimeError(_left_out(self, "h"))
        if dc is None and self._dc_owed:
            raise RuntimeError(_left_out(self, "c"))
        try:
            settle_step(self, number, dh, dc)
        except RuntimeError:  # refused: the round is dropped, so that the next forward starts afresh
            self._caches, self._backed = (), False
            left_out.closed(self)
            raise
        shape = (x2.shape[0], self.hidden_size) if batched else (self.hidden_size,)
        grads = []
        for g in (dh, dc):
            g = None if g is None else untracked(g)
            xp = self._check_grad(g, shape) if g is not None else None
            grads.append(None if g is None else xp.reshape(g, (x2.shape[0], self.hidden_size)))
        self._caches = self._caches[:-1]
        xp = namespace(x2)
        if grads[0] is None:  # its h went nowhere (the loss does not use it): zeros, as dc None
            grads[0] = xp.zeros((x2.shape[0], self.hidden_size), dtype=x2.dtype, device=x2.device)
        WhT = fast_path("step_weights_transposed", xp, step_weights_transposed)(self.params["Wh"], 1)
        dax, dah, dstate = self._step_back(grads[0], grads[1], cache, WhT)
        if links:  # its start state came from another layer: that layer's backward needs dstate back
            owe(self, links)
        self._dh_owed, self._dc_owed = own, fed
        if not self._frozen:  # requires_grad_(False): no weight products
            matmul = fast_path("matmul", xp, operator.matmul)
            step = {"Wx": matmul(x2.T, dax), "Wh": matmul(h.T, dah)}
            # the biases added to x @ Wx take dax's sum; GRUCell's bh, inside the step, dah's
            sums = (dax,) * len(self._input_biases()) + (dah,)
            step.update({name: xp.sum(d, axis=0) for name, d in zip(self.bias_names(), sums)})
            earlier = dict(self.grads) if self._backed else {}  # (a plain dict: an internal read notes none,
            self.grads.update({k: earlier[k] + g if k in earlier else g for k, g in step.items()})  # Grads.reads)
        if self._backed:
            self._backs += 1
        else:  # the round's first backward: with calls left, an optimizer's step refuses them till the last (left_out)
            self._backs = 1
            if self._caches:
                left_out.opened(self, None)
        if not self._caches:
            left_out.closed(self)
        self._backed = True
        dx = fast_path("matmul", xp, operator.matmul)(dax, self.params["Wx"].T)
        if not batched:
            dx, dstate = xp.reshape(dx, (self.input_size,)), tuple(xp.reshape(s, shape) for s in dstate)
        return dx, dstate

    def left_out_round(self) -> tuple[int, int, list[int]] | None:
        """For :mod:`.left_out`: (calls, backward calls, the calls not taken back that were not under no_grad) of
        the round under way; None where a forward since started another."""
        if not self._backed:
            return None
        left = self._caches
        return len(left) + self._backs, self._backs, [i for i, c in enumerate(left, 1) if not c[4]]

    def backward(self, dh: Any) -> tuple[Any, Any]:
        """dh: the gradient of the last forward's h', (N, H) or (H,) (None: zeros) -> (dx, dh_prev); fills grads."""
        dx, (dh_prev,) = self._backward(dh)
        return dx, dh_prev

    def _step(self, ax: Any, state: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
        raise NotImplementedError

    def _step_back(self, dh: Any, dc: Any, cache: Any, WhT: Any) -> tuple[Any, Any, tuple[Any, ...]]:
        raise NotImplementedError


def _left_out(cell: Any, slot: str) -> str:
    """Why a backward with ``dh`` (``slot`` "h") or ``dc`` ("c") None is refused after the next call's backward
    returned that state's gradient (d{slot}_prev)."""
    name = cell.name.lower()
    pair = "c" in cell.state_names
    passed = f"dx, (dh, dc) = {name}.backward(dy_t + dh, dc)" if pair else f"dx, dh = {name}.backward(dy_t + dh)"
    return (f"{cell.name}.backward: the call this backward serves handed its {slot} on to the next call (as hx), "
            f"whose backward returned d{slot}_prev, but d{slot} is None here: the steps before would take no "
            f"gradient from the later steps through the {'cell state' if slot == 'c' else 'hidden state'}, "
            f"silently, where PyTorch's autograd carries it. Pass it: {passed}, with the "
            f"{'(dh, dc)' if pair else 'dh'} the later call's backward returned (dy_t: the gradient the loss gives "
            f"this call's h, zeros where none); to cut it on purpose (PyTorch's {slot}.detach()) pass "
            f"d{slot}=xp.zeros_like({slot}), or give the next call a copy of {slot}")


class _SummedBiasCell(_Cell):
    """RNNCell's and LSTMCell's biases, both added to x @ Wx: one ``b = bias_ih + bias_hh`` (the book's, the
    default), or with ``convention="pytorch"`` PyTorch's two, ``bx = bias_ih``, ``bh = bias_hh`` (H * blocks,)
    each, each given the gradient of their sum, so that optimizers and clipping treat them as PyTorch's do."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, convention: str = "book",
                 **kwargs: Any):
        self.convention = checked_convention(self.name, convention, SUMMED_BIAS_CONVENTIONS)
        super().__init__(input_size, hidden_size, bias, **kwargs)

    def bias_names(self) -> tuple[str, ...]:
        return convention_biases(self.bias, self.convention)

    def _input_biases(self) -> tuple[str, ...]:
        return self.bias_names()

    def config(self) -> dict[str, Any]:
        return {**super().config(), "convention": self.convention}


class RNNCell(_SummedBiasCell):
    """PyTorch's ``nn.RNNCell``: h' = tanh(x @ Wx + h @ Wh + b), or max(., 0) with ``nonlinearity='relu'``.
    params Wx (D, H), Wh (H, H), b (H,) (``b = bias_ih + bias_hh``), or with ``convention="pytorch"`` bx = bias_ih
    and bh = bias_hh (H,), as :class:`~xpnet.layers.RNN`'s; caches x, h and h' per call."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh", *,
                 init: Any = "sigmoid", dtype: Any = "float32", device: Any = None, convention: str = "book"):
        super().__init__(input_size, hidden_size, bias, init=init, dtype=dtype, device=device, convention=convention)
        self.nonlinearity = relu_or_tanh(self.name, nonlinearity)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "nonlinearity": self.nonlinearity}

    def _step(self, ax: Any, state: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
        h, cache = cells.rnn_step_of(self.nonlinearity, namespace(ax))(ax, state[0], self.params["Wh"])
        return (h,), cache

    def _step_back(self, dh: Any, dc: Any, cache: Any, WhT: Any) -> tuple[Any, Any, tuple[Any, ...]]:
        dax, dah, dh_prev = cells.rnn_step_backward_of(self.nonlinearity, namespace(dh))(dh, cache, WhT)
        return dax, dah, (dh_prev,)


class LSTMCell(_SummedBiasCell):
    """PyTorch's ``nn.LSTMCell``: gates i, f, g, o. params Wx (D, 4H), Wh (H, 4H), b (4H,) (``b = bias_ih +
    bias_hh``), or with ``convention="pytorch"`` bx = bias_ih and bh = bias_hh (4H,), as :class:`~xpnet.layers.LSTM`'s;
    ``hx`` and the output are pairs (h, c); caches the gates."""

    blocks = 4
    state_names = ("h", "c")

    def _step(self, ax: Any, state: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
        h, c, cache = fast_path("lstm_step", namespace(ax), cells.lstm_step)(ax, state[0], state[1],
                                                                            self.params["Wh"])
        return (h, c), cache

    def _step_back(self, dh: Any, dc: Any, cache: Any, WhT: Any) -> tuple[Any, Any, tuple[Any, ...]]:
        step_back = fast_path("lstm_step_backward", namespace(dh), cells.lstm_step_backward)
        dax, dah, dh_prev, dc_prev = step_back(dh, dc, cache, WhT)
        return dax, dah, (dh_prev, dc_prev)

    def backward(self, dh: Any, dc: Any = None) -> tuple[Any, tuple[Any, Any]]:  # type: ignore[override]
        """dh, dc: the gradients of the last forward's h', c' (None: zeros) -> (dx, (dh_prev, dc_prev))."""
        return self._backward(dh, dc)  # type: ignore[return-value]


class GRUCell(_Cell):
    """PyTorch's ``nn.GRUCell`` (blocks r, z, n; the reset gate after the product). params Wx (D, 3H), Wh (H, 3H),
    bx = bias_ih, bh = bias_hh (3H,), as :class:`~xpnet.layers.GRU`'s; caches the gates per call."""

    blocks = 3

    def bias_names(self) -> tuple[str, ...]:
        return ("bx", "bh") if self.bias else ()

    def _step(self, ax: Any, state: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
        step = fast_path("gru_step", namespace(ax), cells.gru_step)
        h, cache = step(ax, state[0], self.params["Wh"], self.params.get("bh"))
        return (h,), cache

    def _step_back(self, dh: Any, dc: Any, cache: Any, WhT: Any) -> tuple[Any, Any, tuple[Any, ...]]:
        dax, dah, dh_prev = fast_path("gru_step_backward", namespace(dh), cells.gru_step_backward)(dh, cache, WhT)
        return dax, dah, (dh_prev,)
