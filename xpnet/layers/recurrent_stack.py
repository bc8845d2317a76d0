"""PyTorch's ``num_layers``, ``dropout`` and ``bidirectional`` for RNN, LSTM and GRU: single layers, composed.

``xn.layers.LSTM(D, H, num_layers=2, dropout=p, bidirectional=True)`` (likewise RNN, GRU) builds a
:class:`RecurrentStack`, whose ``name`` is ``LSTM``; with ``num_layers=1`` and ``bidirectional=False`` the
single layer is built, as before; ``isinstance(stack, LSTM)`` is True (:class:`StacksAreInstances`). How a
forward goes:

1. Level k runs on level k-1's output (level 0 on x), each level one single-layer ``LSTM`` named ``l{k}``
   (its own time loop, fast paths and state). ``Dropout(dropout)`` acts between levels in training only,
   PyTorch's placement: never after the last level.
2. ``bidirectional=True``: a second layer per level, ``l{k}_reverse``, runs on the sequence reversed in
   time (``xp.flip``), its output flipped back and put after the forward one on the feature axis:
   (N, T, 2H). Backward splits dy, reverses the second half and adds the two input gradients.

The parameters are the single layers' (``l0.Wx``, ``l1_reverse.b``...; ``l0.bx``, ``l0.bh`` with
``convention="pytorch"``, which, as every argument but the stack's own, goes to each layer):
``xn.load_torch_state_dict`` maps PyTorch's ``weight_ih_l{k}{_reverse}`` to them. The state is PyTorch's h0 of shape
(num_layers * num_directions, N, H), row ``k * num_directions + direction``: ``set_state(h, c)`` sets each
layer's row, ``h``, ``c`` and, after backward, ``dh``, ``dc`` are read in that shape, and ``backward(dy, dh_n,
dc_n)`` takes the final state's gradient in it. With ``return_state=True`` (PyTorch's convention) every layer
has it too: each takes its row of ``hx`` and gives its row of h_n (and c_n), (1, N, H), joined in that layout.
``stateful=True``
makes every layer carry its own state (refused with ``bidirectional=True``: the reverse direction starts
from the end of the sequence, so there is nothing to carry, and PyTorch has no such thing either).
"""

from __future__ import annotations

import numbers
from typing import Any

from .._user import flag
from ..backend import dtype_name, namespace, untracked
from .base import Layer, init_parameters, positive_int
from .container import Container
from .dropout import Dropout
from .packed import PackedSequence, packed_grad
from .recurrent_args import NO_HX, NO_LAYER_AFTER, call_arguments, forward_train, hx_hint, hx_rows, return_state_refusal
from .recurrent_state import check_state_arrays
from .state_handoff import handed, settle

_SHOWN_UNLESS = {"stateful": False, "init": "sigmoid", "bias": True, "batch_first": True, "dropout": 0.0,
                 "bidirectional": False, "proj_size": 0, "return_state": False, "nonlinearity": "tanh"}


class RecurrentStack(Container):
    """``kind`` (RNN, LSTM or GRU) ``num_layers`` deep, in one direction or two.

    x: (N, T, input_size) -> y: (N, T, num_directions * out_size) (``batch_first=False``: (T, N, ...)); out_size is
    hidden_size, or an LSTM's ``proj_size``, which is also the width of h and of what the next level takes.
    Each layer caches what its own backward needs; the Dropout layers their masks.
    """

    def __init__(self, kind: type, input_size: int, hidden_size: int, *args: Any, num_layers: int = 1,
                 dropout: float = 0.0, bidirectional: bool = False, return_state: bool = False, **kwargs: Any):
        super().__init__()
        self.kind = kind
        self.return_state = flag(return_state, self.name, "return_state")
        self.num_layers = positive_int(self, "num_layers", num_layers)
        self.bidirectional = flag(bidirectional, self.name, "bidirectional")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{self.name}: dropout must be a float in [0, 1), got {dropout!r} (PyTorch's p of "
                             "the Dropout between stacked layers)")
        if dropout and self.num_layers == 1:
            raise ValueError(f"{self.name}: dropout={dropout!r} is not supported: {NO_LAYER_AFTER}")
        self.dropout = float(dropout)
        self.input_size, self.hidden_size = input_size, hidden_size
        directions = ("", "_reverse") if self.bidirectional else ("",)
        width = input_size
        for k in range(self.num_layers):
            for suffix in directions:
                setattr(self, f"l{k}{suffix}", kind(width, hidden_size, *args, return_state=return_state, **kwargs))
            width = self.l0.out_size * len(directions)
        first = self.l0
        self.stateful, self.batch_first, self.state_names = first.stateful, first.batch_first, first.state_names
        if self.stateful and self.bidirectional:
            raise ValueError(f"{self.name}: stateful=True with bidirectional=True is not supported: the reverse "
                             "direction starts from the end of each sequence, so there is no state to carry into "
                             "the next call (PyTorch has none either); leave stateful out and set the start state "
                             f"with set_state(h0{', c0' if 'c' in self.state_names else ''})")
        self.dropouts = [Dropout(self.dropout) for _ in range(self.num_layers - 1)] if self.dropout else []

    @property
    def name(self) -> str:
        return self.kind.__name__

    @property
    def saved_as(self) -> str:
        """The type files record it by: ``LSTM(..., num_layers=2)`` builds it again."""
        return self.kind.__name__

    def config(self) -> dict[str, Any]:
        config = {**self.l0.config(), "input_size": self.input_size, "dtype": dtype_name(self.l0.params["Wx"])}
        return {**config, "num_layers": self.num_layers, "dropout": self.dropout,
                "bidirectional": self.bidirectional}

    def sequential_refusal(self) -> str:
        return return_state_refusal(self.name, self.state_names) if self.return_state else ""

    def __repr__(self) -> str:
        unless = {**_SHOWN_UNLESS, "convention": init_parameters(self.kind)["convention"].default}  # GRU's is PyTorch's
        shown = [f"{k}={v!r}" for k, v in self.config().items() if unless.get(k, ...) != v]
        return f"{self.name}({', '.join(shown)})"

    def layers(self) -> list[Layer]:
        """The single layers in PyTorch's order: l0, l0_reverse, l1, ..., one per row of the state."""
        return [layer for name, layer in self.named_children().items() if name.startswith("l")]

    def _level(self, k: int) -> tuple[Layer, Layer | None]:
        return vars(self)[f"l{k}"], vars(self).get(f"l{k}_reverse")

    # -- state: PyTorch's (num_layers * num_directions, N, H) -------------------------------------

    def reset_state(self) -> None:
        """The next forward starts every layer from zeros."""
        for layer in self.layers():
            layer.reset_state()

    def set_state(self, h: Any, c: Any = None) -> None:
        """Start from ``h`` (and ``c`` for LSTM; None: zeros), PyTorch's h0 (num_layers * num_directions, N, H)."""
        if c is not None and "c" not in self.state_names:
            raise TypeError(f"{self.name}: has no cell state c; call set_state(h)")
        check_state_arrays(self.name, self.state_names, h, c)
        layers = self.layers()
        for what, s in (("h", h), ("c", c)):
            if s is not None and (getattr(s, "ndim", None) != 3 or s.shape[0] != len(layers)):
                width = self.l0.state_widths[0 if what == "h" else -1]
                raise ValueError(f"{self.name}: state {what} must have shape ({len(layers)}, N, {width}) "
                                 f"(num_layers * num_directions, as PyTorch's h0), got "
                                 f"{tuple(getattr(s, 'shape', ()))}")
        h, c = untracked(h), None if c is None else untracked(c)
        for i, layer in enumerate(layers):
            layer.set_state(h[i, ...], None if c is None else c[i, ...])

    def _rows(self, states: list[Any], joined: bool = False) -> Any:
        """The layers' states, (N, H) each, as PyTorch's (num_layers * num_directions, N, H); ``joined``: (1, N, H)
        each, a ``return_state`` layer's gradients."""
        if any(s is None for s in states):
            return None
        xp = namespace(states[0])
        return xp.concat(states, axis=0) if joined else xp.stack(states, axis=0)

    @property
    def h(self) -> Any:
        """The hidden state the next forward starts from, (num_layers * num_directions, N, H) (None: zeros)."""
        return self._rows([layer.h for layer in self.layers()])

    @property
    def c(self) -> Any:
        """LSTM's cell state the next forward starts from, as ``h``."""
        return self._rows([layer.c for layer in self.layers()])

    @property
    def dh(self) -> Any:
        """After backward: the gradient of the start state h, as ``h``."""
        return self._rows([layer.dh for layer in self.layers()], self.return_state)

    @property
    def dc(self) -> Any:
        """After backward: the gradient of LSTM's start state c, as ``h``."""
        return self._rows([layer.dc for layer in self.layers()], self.return_state)

    # -- forward and backward -----------------------------------------------------------------------

    def _state_rows(self, what: str, grad: Any) -> list[Any] | None:
        """``grad`` (num_layers * num_directions, N, width) as one row per layer (None stays None)."""
        if grad is None:
            return None
        if what == "dc_n" and "c" not in self.state_names:
            raise TypeError(f"{self.name}.backward: dc_n is an LSTM's (the gradient of c_n); {self.name} has no "
                            "cell state: pass backward(dy, dh_n) only")
        layers = self.layers()
        if getattr(grad, "ndim", None) != 3 or grad.shape[0] != len(layers):
            width = self.l0.state_widths[0 if what == "dh_n" else -1]
            raise ValueError(f"{self.name}.backward: {what} must have shape ({len(layers)}, N, {width}) "
                             f"(num_layers * num_directions, as PyTorch's {what[1:]}), got "
                             f"{tuple(getattr(grad, 'shape', ()))}")
        grad = untracked(grad)
        return [grad[i:i + 1, ...] if self.return_state else grad[i, ...] for i in range(len(layers))]

    @property
    def train_hint(self) -> str:  # type: ignore[override]
        return hx_hint(self.name, self.state_names, "(num_layers * num_directions, N, hidden_size)")

    def __call__(self, x: Any, *args: Any, train: bool | None = None, hx: Any = NO_HX) -> Any:  # type: ignore[override]
        """``forward`` in the layer's mode: ``stack(x, train)``, or with ``return_state=True`` ``stack(x, hx)``;
        a state in train's place (PyTorch's ``lstm(x, (h0, c0))`` without the switch) is refused."""
        train, hx = call_arguments(self, args, train, hx, None)
        train = None if train is None else self._check_train(train)
        return super().__call__(x, train=train, **({} if hx is NO_HX else {"hx": hx}))

    _train_of_forward = forward_train  # forward's train may come after x, where *args hides it

    def forward(self, x: Any, *args: Any, train: bool | None = None, hx: Any = NO_HX) -> Any:
        """x: (N, T, input_size) -> (N, T, num_directions * out_size); ``hx`` is refused, as by the single layer.
        ``return_state=True``: ``forward(x, hx=None, *, train=True)`` -> ``(y, (h_n, c_n))`` (RNN, GRU: ``(y,
        h_n)``), hx and the states in PyTorch's layout, (num_layers * num_directions, N, H)."""
        packed = self._packed = x if isinstance(x, PackedSequence) else None
        x = untracked(x if packed is None else packed.padded)
        train, hx = call_arguments(self, args, train, hx, True)
        train = self._check_train(train)
        starts = [{}] * len(self.layers()) if hx is NO_HX else \
            [{"hx": row} for row in hx_rows(self.name, self.state_names, self.l0.state_widths, len(self.layers()), hx)]
        ends = 1 + self.bidirectional
        finals: list[Any] = []  # with return_state, each layer's (h_n, c_n) or h_n, (1, N, H)

        def run(layer: Layer, y: Any, row: int) -> Any:
            out = layer.forward(y if packed is None else PackedSequence(y, packed.lengths, packed.batch_first),
                                train=train, **starts[row])
            if self.return_state:
                out, final = out
                finals.append(final if isinstance(final, tuple) else (final,))
            return out if packed is None else out.padded

        y = x
        for k in range(self.num_layers):
            if k and self.dropouts:
                y = self.dropouts[k - 1].forward(y, train)
            forward, reverse = self._level(k)
            out = run(forward, y, k * ends)
            if reverse is not None:
                xp = namespace(y)
                out = xp.concat([out, self._reversed(xp, run(reverse, self._reversed(xp, y), k * ends + 1))], axis=-1)
            y = out
        xp = namespace(x)
        kept = len(self.state_names) if finals else 0  # (no states without return_state)
        states = tuple(xp.concat([final[i] for final in finals], axis=0) for i in range(kept))
        handed(self, states, y)
        if packed is not None:
            y = PackedSequence(y, packed.lengths, packed.batch_first)
        if not self.return_state:
            return y
        return y, (states if len(states) == 2 else states[0])

    def _reversed(self, xp: Any, y: Any) -> Any:
        """``y`` with time reversed, as the reverse direction reads it: each packed sequence over its own length."""
        packed = self.__dict__.get("_packed")
        if packed is None:
            return xp.flip(y, axis=int(self.batch_first))
        if packed.batch_first:
            return packed.reversed_rows(xp, y)
        return xp.permute_dims(packed.reversed_rows(xp, xp.permute_dims(y, (1, 0, 2))), (1, 0, 2))

    def backward(self, dy: Any, dh_n: Any = None, dc_n: Any = None) -> Any:
        """dy: (N, T, num_directions * out_size) -> dx: (N, T, input_size); fills every layer's grads, dh (dc).

        ``dh_n`` (and LSTM's ``dc_n``): the gradient of the final state in PyTorch's h_n layout, (num_layers *
        num_directions, N, H); row ``k * num_directions + direction`` goes to that layer's backward (the lower
        levels' h_n are no outputs, so only this reaches them: d2l's Seq2Seq encoder handing its state to the
        decoder). None: no such use."""
        packed = self.__dict__.get("_packed")
        if packed is not None:
            steps = packed.padded.shape[int(packed.batch_first)]
            dy = packed_grad(self.name, dy, packed, steps)
        dy = untracked(dy)
        settle(self, dh_n, dc_n)
        xp = self._check_float(dy)
        rows = {"dh_n": self._state_rows("dh_n", dh_n), "dc_n": self._state_rows("dc_n", dc_n)}
        h = self.l0.out_size
        width = h * (1 + self.bidirectional)
        if dy.ndim != 3 or dy.shape[-1] != width:
            raise ValueError(f"{self.name}: expected dy of shape (..., {width}) as the last forward's output, got "
                             f"{tuple(dy.shape)}")
        ends = 1 + self.bidirectional
        for k in reversed(range(self.num_layers)):
            forward, reverse = self._level(k)
            final = [{what: r[k * ends + i] for what, r in rows.items() if r is not None} for i in range(ends)]
            if reverse is None:
                dx = forward.backward(dy, **final[0])
            else:
                back = reverse.backward(self._reversed(xp, dy[..., h:]), **final[1])
                dx = forward.backward(dy[..., :h], **final[0]) + self._reversed(xp, back)
            dy = self.dropouts[k - 1].backward(dx) if k and self.dropouts else dx
        return dy


class StacksAreInstances(type):
    """The metaclass of RNN, LSTM and GRU: ``LSTM(D, H, num_layers=2)`` builds a :class:`RecurrentStack` of
    single LSTMs, and ``isinstance`` of it is True for ``LSTM`` (and its bases but the root that took this
    metaclass, their private base), as PyTorch's users check layer types (to initialise weights by type).
    ``issubclass(RecurrentStack, LSTM)`` stays False."""

    def __instancecheck__(cls, obj: Any) -> bool:
        if type.__instancecheck__(cls, obj):
            return True
        below_root = any(isinstance(base, StacksAreInstances) for base in cls.__bases__)
        return isinstance(obj, RecurrentStack) and below_root and issubclass(obj.kind, cls)
