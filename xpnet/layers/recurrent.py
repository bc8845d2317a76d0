"""Recurrent layers over whole sequences, batch first: RNN, LSTM, GRU (the book's TimeRNN, TimeLSTM, TimeGRU).

How a forward goes:

1. The input projection of the whole sequence, ``x @ Wx + b`` for all N * T rows, is one matrix
   product before the loop (only ``h @ Wh`` has to wait for the step before). The products go through
   the ``"matmul"`` fast path, as Linear's (MKL's on NumPy where it runs threaded, so that one BLAS
   thread pool serves the whole step), and Wh is made ready once for the steps (``"step_weights"``).
2. The state starts from what ``set_state`` gave, or from the state the last forward ended with
   when ``stateful=True``, else from zeros.
3. One step of :mod:`xpnet.layers.cells` per time step; the outputs are stacked once at the end
   (no writes into a preallocated array: the same code runs on JAX's immutable arrays).
4. ``stateful=True`` keeps the last state for the next forward (truncated backpropagation through
   time: two calls of T steps give the outputs of one call of 2T steps); ``reset_state()`` drops it.
   ``model.predict``, ``xn.evaluate`` and ``xn.train`` (its training batches and its validation) over
   arrays take each row for a sequence of its own: every batch starts the stateful layers from zeros,
   and the state they carried before the call is theirs again after it
   (:func:`~xpnet.layers.recurrent_state.independent_batches`). Over a ``xn.datasets.TokenStream`` the
   state runs on from batch to batch (``xpnet.training.streams``).

Batch first, as the book and ``batch_first=True``; ``batch_first=False`` takes and gives PyTorch's default
layout, time first (T, N, ...), as a transposed view of the same loop. Such a model runs by ``forward``
and by ``predict`` in one call; the loops that cut axis 0 into batches (``xn.train``, ``xn.evaluate`` over
more than one batch, ``predict(batch_size=...)`` smaller than the data) refuse it, naming the layer
(:func:`~xpnet.layers.recurrent_state.refuse_time_first`), where PyTorch's DataLoader would silently cut
time. PyTorch's other arguments keep their meaning where xpnet has it (``bias``, ``dtype``, LSTM's ``proj_size``,
RNN's ``nonlinearity``, ``"tanh"`` or ``"relu"``); any other value of them is refused with what to write
(:mod:`~xpnet.layers.recurrent_args`). ``num_layers`` above 1 and ``bidirectional=True`` build a
:class:`~xpnet.layers.recurrent_stack.RecurrentStack` of these layers (with ``dropout`` between them);
``num_layers=1`` and ``bidirectional=False`` build the single layer, as without them.

``return_state=True`` (by name) is PyTorch's calling convention, ``out, (h_n, c_n) = lstm(x, (h0, c0))`` (RNN,
GRU: ``out, h_n = gru(x, h0)``), the states in PyTorch's shapes whatever ``batch_first``; ``backward(dout, dh_n,
dc_n)`` takes theirs, and ``dh``, ``dc`` are then h0's and c0's (:mod:`~xpnet.layers.recurrent_args` has the
rules). Without it the output comes alone and forward's second argument is ``train``: a state there (or as
``hx``) is refused, never ignored; ``set_state(h0, c0)`` then ``forward(x)`` is PyTorch's ``forward(x, hx)``.

RNN and LSTM keep one bias by default, ``b = bias_ih_l0 + bias_hh_l0`` (the book's layout,
``convention="book"``): forward and every gradient equal PyTorch's, but training does not. PyTorch updates
its two bias tensors, each with the gradient of ``b``, so under SGD their sum moves twice as far per step,
Adam moves each by about lr (the sum by about 2 lr), and weight decay and ``clip_grad_norm_`` count it
twice. To train exactly as PyTorch, build the layer with ``convention="pytorch"`` (by name; the cells
``RNNCell``, ``LSTMCell`` take it too): it holds PyTorch's two, ``bx = bias_ih_l0`` and ``bh = bias_hh_l0``,
each given the gradient of their sum, so every optimizer and clipping treat them as PyTorch's do
(xpnet's weight decay spares biases unless ``weight_decay_on="all"``, PyTorch's). The steps still add
one bias, ``bx + bh``, summed once per forward. ``xn.load_torch_state_dict`` copies PyTorch's two in
as they are (into ``b`` their sum, said by a warning at the first step that trains the layer:
:mod:`~xpnet.layers.two_biases`). Keeping one bias, the PyTorch side can match it instead: fold
``bias_hh_l0`` into ``bias_ih_l0`` and freeze it (``bias_ih_l0 += bias_hh_l0; bias_hh_l0.zero_();
bias_hh_l0.requires_grad_(False)``). The GRU keeps PyTorch's two biases, ``bx`` and ``bh``, by default
(its ``convention="book"`` is the book's GRU, another function).

Backward runs the steps in reverse, then makes ``Wx``'s, ``Wh``'s and the biases' gradients and dx
as one product each over all steps. After it ``layer.dh`` (and ``layer.dc`` for LSTM) holds the
gradient of the state the forward started from, which the layer that set it (a seq2seq encoder)
adds to its own backward. ``backward(dhs, dh_n, dc_n)`` takes the gradient of the final state as well,
for a loss that uses it besides the outputs (added to the last step's state gradient).
"""

from __future__ import annotations

import operator
from typing import Any

from .. import init as _init
from .._user import flag
from ..backend import fast_path, namespace, untracked
from . import cells
from .base import Layer, positive_int
from .packed import PackedSequence, packed_grad
from .cells import step_weights, step_weights_transposed
from .recurrent_args import (NO_HX, SUMMED_BIAS_CONVENTIONS, builds_stack, call_arguments, convention_biases,
                             forward_train, hx_hint, input_bias, refuse_pytorch_only, relu_or_tanh,
                             return_state_refusal, stateful_flag)
from .recurrent_args import convention as checked_convention
from .recurrent_args import proj_size as checked_proj_size
from .recurrent_stack import RecurrentStack, StacksAreInstances
from .recurrent_state import CarriedState, independent_batches, probe_states, refuse_time_first
from .state_handoff import LINKS, StateGradient, handed, linked, owe, settle
from .uses import called

# The model-wide state helpers are imported from here too (they lived here).
__all__ = ["GRU", "LSTM", "RNN", "independent_batches", "probe_states", "refuse_time_first"]

class _Recurrent(CarriedState, Layer, metaclass=StacksAreInstances):
    """The time loop shared by :class:`RNN`, :class:`LSTM` and :class:`GRU`; subclasses give the step."""

    blocks = 1
    state_names: tuple[str, ...] = ("h",)
    _convention_meanings = SUMMED_BIAS_CONVENTIONS  # for the error refusing another convention
    dh = StateGradient("h")  # read: the gradient passed on (layers.state_handoff)

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        """PyTorch's ``num_layers`` other than 1 or ``bidirectional`` other than False: a :class:`RecurrentStack`
        of this layer (which checks them); else the single layer."""
        if builds_stack(kwargs):
            return RecurrentStack(cls, *args, **kwargs)
        return super().__new__(cls, *args, **kwargs)

    def __init__(self, input_size: int, hidden_size: int, stateful: bool = False, init: Any = "sigmoid",
                 dtype: str = "float32", *, bias: bool = True, batch_first: bool = True, return_state: bool = False,
                 convention: str = "book", **pytorch: Any):
        super().__init__()
        self.input_size = positive_int(self, "input_size", input_size)
        self.hidden_size = positive_int(self, "hidden_size", hidden_size)
        stateful = stateful_flag(self.name, stateful)
        refuse_pytorch_only(self.name, pytorch)
        self.stateful, self.init, self.dtype = stateful, init, _init.dtype_name(dtype, self.name)
        self.bias, self.batch_first = flag(bias, self.name, "bias"), flag(batch_first, self.name, "batch_first")
        self.return_state = flag(return_state, self.name, "return_state")
        self.convention = checked_convention(self.name, convention, self._convention_meanings)
        d, h, width = self.input_size, self.out_size, self.blocks * self.hidden_size
        self.params["Wx"] = _init.weights((d, width), d, width, init=init, dtype=self.dtype, who=self.name)
        self.params["Wh"] = _init.weights((h, width), h, width, init=init, dtype=self.dtype, who=self.name)
        for name in self.bias_names():
            self.params[name] = _init.zeros((width,), dtype=self.dtype)
        self._cache = None
        self._Wh = self._WhT = None  # what the steps multiply by: Wh during a forward, Wh.T during a backward
        self.dh = None

    def bias_names(self) -> tuple[str, ...]:
        """``("b",)`` (RNN's and LSTM's default, ``convention="book"``), or PyTorch's two, ``("bx", "bh")``
        (``convention="pytorch"``); none with ``bias=False``."""
        return convention_biases(self.bias, self.convention)

    def _input_biases(self) -> tuple[str, ...]:
        """The biases added to x @ Wx (their sum, once per forward), each given the gradient of that sum: RNN's and
        LSTM's all (PyTorch's bias_hh_l0 is added to the same sum), the GRU's first only (its bh is in the step)."""
        return self.bias_names()

    def config(self) -> dict[str, Any]:
        init = self.init if isinstance(self.init, (str, int, float)) else "sigmoid"
        return {"input_size": self.input_size, "hidden_size": self.hidden_size, "stateful": self.stateful,
                "init": init, "dtype": self.dtype, "bias": self.bias, "batch_first": self.batch_first,
                "return_state": self.return_state, "convention": self.convention}

    @property
    def train_hint(self) -> str:  # type: ignore[override]
        return hx_hint(self.name, self.state_names, "(N, hidden_size)")

    def sequential_refusal(self) -> str:
        return return_state_refusal(self.name, self.state_names) if self.return_state else ""

    # -- forward and backward -------------------------------------------------------------------

    def _layout(self, width: int) -> str:
        if self.batch_first:
            return f"(N, T, {width}) with T >= 1 (batch first)"
        return f"(T, N, {width}) with T >= 1 (time first: batch_first=False)"

    def __call__(self, x: Any, *args: Any, train: bool | None = None, hx: Any = NO_HX) -> Any:  # type: ignore[override]
        """``forward`` in the layer's mode, recorded as a use (:mod:`xpnet.layers.uses`: called again in one training
        forward, its backward calls take the calls back in reverse; refused when ``stateful``).
        ``layer(x, train)``; ``return_state=True``: ``layer(x, hx)``."""
        train, hx = call_arguments(self, args, train, hx, None)
        return self.forward(x, train=called(self, train), hx=hx)

    _train_of_forward = forward_train  # forward's train may come after x, where *args hides it

    def forward(self, x: Any, *args: Any, train: bool | None = None, hx: Any = NO_HX) -> Any:
        """x: (N, T, input_size) -> hs: (N, T, out_size), the hidden state after each step; (T, N, ...)
        both with ``batch_first=False``. ``forward(x, train=True)``, from the state ``set_state`` gave (or
        ``stateful`` carried); ``hx`` is refused. ``return_state=True``: ``forward(x, hx=None, *, train=True)``
        -> ``(hs, (h_n, c_n))`` (RNN, GRU: ``(hs, h_n)``), hx and the states (1, N, width) as PyTorch's."""
        train, hx = call_arguments(self, args, train, hx, True)
        packed = self._packed = x if isinstance(x, PackedSequence) else None
        batch_first = self.batch_first if packed is None else packed.batch_first  # a packed input's, as PyTorch's
        x = untracked(x if packed is None else packed.padded)
        self._check_train(train)
        xp = self._check_float(x)
        self._check_like_params(x)
        if x.ndim != 3 or x.shape[2] != self.input_size or x.shape[int(batch_first)] == 0:
            raise ValueError(f"{self.name}: expected input of shape {self._layout(self.input_size)}, "
                             f"got {tuple(x.shape)}")
        if x.shape[1 - int(batch_first)] == 0:  # the time loop's reshapes fail on it inside the array library
            raise ValueError(f"{self.name}: the input {tuple(x.shape)} holds no sequences (N = 0); xpnet's recurrent "
                             "layers need N >= 1 (PyTorch's return empty outputs)")
        if not batch_first:
            x = xp.permute_dims(x, (1, 0, 2))
        n, steps = x.shape[0], x.shape[1]
        start = state = self._start(x, hx)
        # hx as given where it was (JAX's rows of it are new arrays; NumPy's and PyTorch's views name their owner)
        given = start if hx is NO_HX or hx is None else (hx,) if len(self.state_names) == 1 else tuple(hx)
        self.__dict__[LINKS] = linked(given, self.state_names, self if self.stateful and hx is NO_HX else None)
        x2 = xp.reshape(x, (n * steps, self.input_size))
        ax = fast_path("matmul", xp, operator.matmul)(x2, self.params["Wx"])
        if self.bias:
            ax = ax + input_bias(self.params, self._input_biases())
        ax = xp.reshape(ax, (n, steps, -1))
        hs, caches = [], []
        # Wh, once for the steps' h @ Wh products (packed for MKL on NumPy's fast path).
        self._Wh = self.params["Wh"]
        if self._steps_multiply_Wh:
            self._Wh = fast_path("step_weights", xp, step_weights)(self._Wh, steps)
        valid = None if packed is None else packed.valid(xp, x)
        try:
            for t in range(steps):
                if valid is None:
                    state, cache = self._step(ax[:, t, :], state)
                    hs.append(state[0])
                else:  # past a sequence's length: its state kept, its output 0 (pad_packed_sequence's)
                    new, cache = self._step(ax[:, t, :], state)
                    inside = valid[:, t:t + 1]
                    hs.append(xp.where(inside, new[0], xp.zeros_like(new[0])))
                    state = tuple(xp.where(inside, a, b) for a, b in zip(new, state))
                caches.append(cache)
        finally:
            self._Wh = None
        self._cache = (x2, start, caches)
        self._valid = valid
        if self.stateful:
            self._state = state
        hs = xp.stack(hs, axis=int(batch_first))
        returned = self._returned(xp, state) if self.return_state else None
        # the rows returned too: JAX's expand_dims makes new arrays, where NumPy's and PyTorch's views name state
        handed(self, state if returned is None else (*state, *(returned if type(returned) is tuple else (returned,))),
               hs)
        if packed is not None:
            hs = PackedSequence(hs, packed.lengths, batch_first)
        return (hs, returned) if self.return_state else hs

    def backward(self, dhs: Any, dh_n: Any = None, dc_n: Any = None) -> Any:
        """dhs: (N, T, out_size) -> dx: (N, T, input_size) ((T, N, ...) both with ``batch_first=False``);
        fills grads (none while frozen by ``requires_grad_(False)``), ``dh`` (and ``dc``): the gradient of the
        start state, (N, out_size) (N, hidden_size); (1, N, ...) as PyTorch's h0 with ``return_state=True``.

        ``dh_n`` (N, out_size) and LSTM's ``dc_n`` (N, hidden_size): the gradients of the final state (PyTorch's
        h_n, c_n, one layer's row; (1, N, ...) as forward returned them with ``return_state=True``), for a loss
        that uses it besides the outputs (a seq2seq encoder handing its state to the decoder); added to the last
        step's state gradient. None: no such use. The step fast paths (Numba, CuPy) take them as they take the
        state gradient of any later step."""
        x2, start, caches = self._need(self._cache)
        settle(self, dh_n, dc_n)
        packed, valid = self.__dict__.get("_packed"), self.__dict__.get("_valid")
        n, steps = start[0].shape[0], len(caches)
        batch_first = self.batch_first if packed is None else packed.batch_first
        dhs = untracked(dhs if packed is None else packed_grad(self.name, dhs, packed, steps))
        xp = self._check_float(dhs)
        if self.return_state:
            dh_n, dc_n = self._final_rows(dh_n, dc_n)
        expected = (n, steps, self.out_size) if batch_first else (steps, n, self.out_size)
        if tuple(dhs.shape) != expected:
            raise ValueError(f"{self.name}: expected dhs of shape {expected}, got {tuple(dhs.shape)}")
        if not batch_first:
            dhs = xp.permute_dims(dhs, (1, 0, 2))
        daxs, dahs = [None] * steps, [None] * steps
        dstate = self._final_state_grad(xp, dhs, dh_n, dc_n)
        if valid is not None:  # every state's gradient, zeros where none came
            dstate = tuple(xp.zeros((n, w), dtype=dhs.dtype, device=dhs.device) if dstate is None or g is None
                           else g for g, w in zip(dstate or (None,) * len(self.state_widths), self.state_widths))
        # Wh transposed, once for the steps' dh_prev products (a contiguous copy, or packed for MKL, on NumPy).
        if self._steps_multiply_Wh:
            self._WhT = fast_path("step_weights_transposed", xp, step_weights_transposed)(self.params["Wh"], steps)
        try:
            for t in reversed(range(steps)):
                if valid is None:
                    daxs[t], dahs[t], dstate = self._step_back(dhs[:, t, :], dstate, caches[t])
                    continue
                # a padded step passes the state's gradient through; its own takes none (a step's backward is
                # linear in what comes in, so zeros give zero dax and dah)
                inside = valid[:, t:t + 1]
                zero = xp.zeros_like(dhs[:, t, :])
                ins = tuple(xp.where(inside, g, xp.zeros_like(g)) for g in dstate)
                daxs[t], dahs[t], before = self._step_back(xp.where(inside, dhs[:, t, :], zero), ins, caches[t])
                dstate = tuple(xp.where(inside, b, g) for b, g in zip(before, dstate))
        finally:
            self._WhT = None
        dax = xp.reshape(xp.stack(daxs, axis=1), (n * steps, -1))
        if not self._frozen:  # requires_grad_(False): no weight products, the saving fine-tuning is for
            h_prev = xp.reshape(xp.stack([c[0] for c in caches], axis=1), (n * steps, self.out_size))
            self._weight_grads(xp, x2, h_prev, dax, dahs, caches)
            if self.bias:
                db = xp.sum(dax, axis=0)
                for i, name in enumerate(self._input_biases()):  # PyTorch's two biases: one array each
                    self.grads[name] = xp.asarray(db, copy=True) if i else db
        for name, grad in zip(self.state_names, dstate):
            self.__dict__["d" + name] = xp.expand_dims(grad, axis=0) if self.return_state else grad
        owe(self)
        dx = fast_path("matmul", xp, operator.matmul)(dax, self.params["Wx"].T)
        dx = xp.reshape(dx, (n, steps, self.input_size))
        return dx if batch_first else xp.permute_dims(dx, (1, 0, 2))

    def _weight_grads(self, xp: Any, x2: Any, h_prev: Any, dax: Any, dahs: list[Any], caches: list[Any]) -> None:
        """Wx's and Wh's gradients (and the hidden bias's) from every step's dax and dah: x2 (N*T, D) is what
        Wx multiplied, h_prev (N*T, H) what Wh did. RNN and LSTM multiply both by dax (their dah is dax), so
        one product of the two side by side gives both gradients, as row blocks of one array (at the book's
        sizes, N*T=700, D=H=650, one thread: 31 ms against two products of 17.5 ms); h_prev is (N*T, out_size)."""
        both = fast_path("matmul", xp, operator.matmul)(xp.concat([x2, h_prev], axis=1).T, dax)
        self.grads["Wx"], self.grads["Wh"] = both[:self.input_size, :], both[self.input_size:, :]

    @property
    def _steps_multiply_Wh(self) -> bool:
        """Whether each step multiplies by the whole Wh (``self._Wh`` forward, ``self._WhT`` backward), not by
        column blocks of it (the book's GRU)."""
        return True

    def _step(self, ax: Any, state: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
        raise NotImplementedError

    def _step_back(self, dh: Any, dstate: tuple[Any, ...] | None, cache: Any) -> tuple[Any, Any, tuple[Any, ...]]:
        raise NotImplementedError


class RNN(_Recurrent):
    """Elman RNN with tanh, the book's TimeRNN: h_t = tanh(x_t @ Wx + h_{t-1} @ Wh + b); PyTorch's
    ``nonlinearity="relu"`` (by name) takes max(., 0) in place of tanh (CuPy's step kernels take both).

    x: (N, T, input_size) -> hs: (N, T, hidden_size) (``batch_first=False``: (T, N, ...)). params: Wx (D, H),
    Wh (H, H), b (H,) (none with ``bias=False``), so that PyTorch's ``nn.RNN`` copies in as
    ``Wx = weight_ih_l0.T``, ``Wh = weight_hh_l0.T``, ``b = bias_ih_l0 + bias_hh_l0``: one bias, so that
    training drifts from PyTorch's, which updates two. ``convention="pytorch"`` (by name) holds those two,
    bx = ``bias_ih_l0`` and bh = ``bias_hh_l0`` (H,), and trains as PyTorch (the module docstring has why).
    Weights start as the book's: N(0, 1/fan_in), biases zeros (``init`` takes any of ``xn.init.weights``'s).
    Caches the input and each step's h. See the module docstring for ``stateful``, ``set_state``,
    ``reset_state`` and ``dh``.
    """

    def __init__(self, input_size: int, hidden_size: int, *args: Any, nonlinearity: str = "tanh", **kwargs: Any):
        super().__init__(input_size, hidden_size, *args, **kwargs)
        self.nonlinearity = relu_or_tanh(self.name, nonlinearity)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "nonlinearity": self.nonlinearity}

    def _step(self, ax: Any, state: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
        h, cache = cells.rnn_step_of(self.nonlinearity, namespace(ax))(ax, state[0], self._Wh)
        return (h,), cache

    def _step_back(self, dh: Any, dstate: tuple[Any, ...] | None, cache: Any) -> tuple[Any, Any, tuple[Any, ...]]:
        # the carried gradient goes in as the step's carry: CuPy's kernel adds it to dh, one launch fewer a step
        step_back = cells.rnn_step_backward_of(self.nonlinearity, namespace(dh))
        dax, dah, dh_prev = step_back(dh, cache, self._WhT, None if dstate is None else dstate[0])
        return dax, dah, (dh_prev,)


class LSTM(_Recurrent):
    """LSTM, the book's TimeLSTM, with PyTorch's gate order.

    x: (N, T, input_size) -> hs: (N, T, hidden_size) (``batch_first=False``: (T, N, ...)). params: Wx (D, 4H),
    Wh (H, 4H), b (4H,) (none with ``bias=False``), the column blocks in PyTorch's order i, f, g, o (the
    book's own order is f, g, i, o; its weight files are reordered when loaded), so that ``nn.LSTM``
    copies in as ``Wx = weight_ih_l0.T``, ``Wh = weight_hh_l0.T``, ``b = bias_ih_l0 + bias_hh_l0``. The
    outputs and gradients are PyTorch's, but training with one bias drifts from PyTorch's two: its SGD
    moves their sum twice as far per step and its ``clip_grad_norm_`` counts their gradient twice; to
    train as PyTorch exactly, build ``LSTM(..., convention="pytorch")`` (by name), which holds the two,
    bx = ``bias_ih_l0`` and bh = ``bias_hh_l0`` (4H,) (the module docstring has why). Weights start as the
    book's: N(0, 1/fan_in), biases zeros. Caches the input and each step's h, c, gates and tanh(c).
    ``set_state(h, c=None)``; after backward ``dh`` and ``dc`` hold the gradients of the start state.

    ``proj_size=P`` (0 < P < hidden_size), PyTorch's: h_t = (o_t * tanh(c_t)) @ Wr with Wr (H, P) =
    ``weight_hr_l0.T``; h, the output and ``dh`` are P wide ((N, T, P), h0 (N, P)), c stays (N, H), and Wh
    is (P, 4H). Its steps run CuPy's step kernels (the carried gradient added apart: Wr^T multiplies the sum
    first), the portable code on NumPy.
    """

    blocks = 4
    state_names = ("h", "c")
    dc = StateGradient("c")

    def __init__(self, input_size: int, hidden_size: int, stateful: bool = False, init: Any = "sigmoid",
                 dtype: str = "float32", *, proj_size: int = 0, **kwargs: Any):
        self.proj_size = checked_proj_size(self.name, proj_size, hidden_size)
        super().__init__(input_size, hidden_size, stateful, init, dtype, **kwargs)
        if self.proj_size:
            self.params["Wr"] = _init.weights((self.hidden_size, self.proj_size), self.hidden_size, self.proj_size,
                                              init=init, dtype=self.dtype, who=self.name)
        self.dc = None

    def config(self) -> dict[str, Any]:
        return {**super().config(), "proj_size": self.proj_size}

    @property
    def c(self) -> Any:
        """The cell state the next forward starts from (None: zeros)."""
        return None if self._state is None else self._state[1]

    @property
    def _steps_multiply_Wh(self) -> bool:
        return not self.proj_size  # the step fast paths (and MKL's packed Wh) are for h of hidden_size

    def _step(self, ax: Any, state: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
        step = fast_path("lstm_step", namespace(ax), cells.lstm_step)
        h, c, cache = step(ax, state[0], state[1], self._Wh)
        return (h if not self.proj_size else h @ self.params["Wr"], c), cache

    def _step_back(self, dh: Any, dstate: tuple[Any, ...] | None, cache: Any) -> tuple[Any, Any, tuple[Any, ...]]:
        step_back = fast_path("lstm_step_backward", namespace(dh), cells.lstm_step_backward)
        if self.proj_size:  # dah carries the step's whole dh, for Wr's gradient
            # dh + the carried gradient cannot go into the step's kernel: Wr^T multiplies the sum first, and the sum
            # is Wr's gradient as well
            dh, dc = (dh, None) if dstate is None else (dh + dstate[0], dstate[1])
            dax, _, dh_prev, dc_prev = step_back(dh @ self.params["Wr"].T, dc, cache, self.params["Wh"].T)
            return dax, dh, (dh_prev, dc_prev)
        dh_next, dc_next = (None, None) if dstate is None else dstate  # dh + dh_next in the step's kernel on CuPy
        dax, dah, dh_prev, dc_prev = step_back(dh, dc_next, cache, self._WhT, dh_next)
        return dax, dah, (dh_prev, dc_prev)

    def _weight_grads(self, xp: Any, x2: Any, h_prev: Any, dax: Any, dahs: list[Any], caches: list[Any]) -> None:
        """Wx's and Wh's as RNN's; with ``proj_size``, Wr's from each step's o * tanh(c) (the cache's last two)
        and the whole dh of that step (its dah)."""
        super()._weight_grads(xp, x2, h_prev, dax, dahs, caches)
        if self.proj_size:
            rows = h_prev.shape[0]
            unprojected = xp.reshape(xp.stack([c[5] * c[6] for c in caches], axis=1), (rows, self.hidden_size))
            dh = xp.reshape(xp.stack(dahs, axis=1), (rows, self.proj_size))
            self.grads["Wr"] = fast_path("matmul", xp, operator.matmul)(unprojected.T, dh)


class GRU(_Recurrent):
    """GRU over a sequence: PyTorch's ``nn.GRU`` by default, the book's TimeGRU with ``convention="book"``.

    x: (N, T, input_size) -> hs: (N, T, hidden_size) (``batch_first=False``: (T, N, ...)). The two are
    different functions, not a relabelling (``bias=False``: no biases in either):

    - ``"pytorch"``: params Wx (D, 3H), Wh (H, 3H), bx (3H,), bh (3H,), blocks r, z, n:
      ``Wx = weight_ih_l0.T``, ``Wh = weight_hh_l0.T``, ``bx = bias_ih_l0``, ``bh = bias_hh_l0``;
      n = tanh(x Wx_n + bx_n + r * (h Wh_n + bh_n)), h' = (1 - z) * n + z * h.
    - ``"book"``: params Wx (D, 3H), Wh (H, 3H), b (3H,), blocks z, r, h~ as in the book's GRU:
      h~ = tanh(x Wx_h + (r * h) Wh_h + b_h), h' = (1 - z) * h + z * h~.

    Weights start as the book's: N(0, 1/fan_in), biases zeros. Caches the input and each step's state and gates.
    """

    blocks = 3
    _convention_meanings = "'pytorch' (the default) is nn.GRU, 'book' the book's TimeGRU, another function"

    def __init__(self, input_size: int, hidden_size: int, stateful: bool = False, convention: str = "pytorch",
                 init: Any = "sigmoid", dtype: str = "float32", **kwargs: Any):
        super().__init__(input_size, hidden_size, stateful, init, dtype, convention=convention, **kwargs)

    def _input_biases(self) -> tuple[str, ...]:
        return self.bias_names()[:1]

    def _step(self, ax: Any, state: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
        if self.convention == "pytorch":
            step = fast_path("gru_step", namespace(ax), cells.gru_step)
            h, cache = step(ax, state[0], self._Wh, self.params.get("bh"))
        else:
            h, cache = fast_path("gru_book_step", namespace(ax), cells.gru_book_step)(ax, state[0], self.params["Wh"])
        return (h,), cache

    def _step_back(self, dh: Any, dstate: tuple[Any, ...] | None, cache: Any) -> tuple[Any, Any, tuple[Any, ...]]:
        carry = None if dstate is None else dstate[0]  # dh + carry in the step's kernels on CuPy
        if self.convention == "pytorch":
            step_back = fast_path("gru_step_backward", namespace(dh), cells.gru_step_backward)
            dax, dah, dh_prev = step_back(dh, cache, self._WhT, carry)
        else:  # the book's GRU multiplies by column blocks of Wh
            step_back = fast_path("gru_book_step_backward", namespace(dh), cells.gru_book_step_backward)
            dax, dah, dh_prev = step_back(dh, cache, self.params["Wh"], carry)
        return dax, dah, (dh_prev,)

    @property
    def _steps_multiply_Wh(self) -> bool:
        return self.convention == "pytorch"

    def _weight_grads(self, xp: Any, x2: Any, h_prev: Any, dax: Any, dahs: list[Any], caches: list[Any]) -> None:
        """Wh's own products: the GRU's dah is not its dax (PyTorch's n block has r in it; the book's GRU
        multiplies r * h by the h~ block)."""
        matmul = fast_path("matmul", xp, operator.matmul)
        self.grads["Wx"] = matmul(x2.T, dax)
        rows = h_prev.shape[0]
        if self.convention == "pytorch":
            dah = xp.reshape(xp.stack(dahs, axis=1), (rows, -1))
            self.grads["Wh"] = matmul(h_prev.T, dah)
            if self.bias:
                self.grads["bh"] = xp.sum(dah, axis=0)
            return
        dzr = xp.reshape(xp.stack([d[0] for d in dahs], axis=1), (rows, -1))
        dt = xp.reshape(xp.stack([d[1] for d in dahs], axis=1), (rows, -1))
        rh = xp.reshape(xp.stack([c[3] for c in caches], axis=1), (rows, -1))
        self.grads["Wh"] = xp.concat([matmul(h_prev.T, dzr), matmul(rh.T, dt)], axis=1)
