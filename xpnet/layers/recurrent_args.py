"""PyTorch's arguments to RNN, LSTM and GRU: which the single layer (:mod:`xpnet.layers.recurrent`) takes, which
build a :class:`~xpnet.layers.recurrent_stack.RecurrentStack`, and what the layer says about the rest.

PyTorch's ``num_layers``, ``dropout``, ``bidirectional`` and ``device`` pass at their defaults (RNN's
``nonlinearity``, ``'tanh'`` or ``'relu'``, is the RNN's own); ``num_layers`` other than 1 or ``bidirectional``
other than False build a stack (:func:`builds_stack`); any other value is refused with what to write.
PyTorch's third positional argument is ``num_layers`` where xpnet's is ``stateful``: refused, never misread.
LSTM's ``proj_size`` is checked by PyTorch's rule.

PyTorch's calling convention, ``out, (h_n, c_n) = lstm(x, (h0, c0))``, is the switch ``return_state=True`` (by
name, off by default), on the single layer and on the stack alike:

1. The second argument of forward, or ``hx=``, is PyTorch's initial state (:func:`call_arguments`): LSTM's
   ``(h0, c0)``, RNN's and GRU's ``h0``, each (num_layers * num_directions, N, H_out) (one layer: (1, N, H);
   c0's last axis H_cell, hidden_size, where ``proj_size`` makes h narrower), whatever ``batch_first``
   (:func:`hx_rows`). None starts from zeros; left out, the forward starts as without the switch, from what
   ``set_state`` gave or ``stateful`` carried; a given hx overrides both for its call, and ``stateful`` carries
   the final state on. ``train`` goes by name.
2. Forward returns ``(out, (h_n, c_n))`` (RNN, GRU: ``(out, h_n)``), the final states in those shapes;
   ``backward(dout, dh_n, dc_n)`` takes their gradients in them, and ``dh``, ``dc`` then hold the gradients of
   h0 and c0 in theirs.
3. Two things come back, so a Sequential refuses the layer (:func:`return_state_refusal`): its use goes in an
   ``xn.Model``.

Without the switch the second argument is xpnet's ``train`` and a state there, or as ``hx``, is refused, never
ignored. A model's forward written PyTorch's way over such a layer, ``out, (h, c) = self.lstm(x)``, fails
unpacking the output: :class:`ForwardGuard`, around every container's forward, says why. Where the forward
unpacks the call of such a layer held as an attribute, ``out, h = self.gru(x)``, it is refused before the forward
runs, since a batch of exactly 2 sequences would unpack along the batch axis (silently, or failing later elsewhere).
The same guard refuses PyTorch's time-first batch of one, ``self.lstm(x.view(T, 1, -1))``, given to a batch-first
layer (:mod:`~xpnet.layers.recurrent_layout`), a forward reading a batch-first attention layer's output time first
(:mod:`~xpnet.layers.attention_layout`), and says to reshape where the forward's ``x.view(shape)`` fails
(:mod:`~xpnet.layers.view_hint`).
"""

from __future__ import annotations

import ast
import inspect
import operator
from typing import Any, Callable

from .._user import flag, is_bool
from ..backend import untracked
from .attention_layout import reads_axis_0, refuse_time_first_attention
from .base import DEVICE_DEFAULT, pytorch_defaults_only
from .recurrent_layout import forward_source, refuse_time_first_batch_of_one, time_first_calls
from .view_hint import view_hint

# PyTorch's dropout where there is no layer after which to drop: PyTorch warns and ignores it.
NO_LAYER_AFTER = ("PyTorch's dropout acts between stacked layers only, and with num_layers=1 there are none (PyTorch "
                  "warns and ignores it); leave it out, or put xn.layers.Dropout(p) after the layer")

# PyTorch's arguments that the single layer takes only at their default: (default, what to write instead).
_PYTORCH_ONLY = {
    "num_layers": (1, "num_layers must be an int >= 1"),
    "dropout": (0, NO_LAYER_AFTER),
    "bidirectional": (False, "bidirectional must be True or False"),
    "device": DEVICE_DEFAULT,
}


class _NoState:
    """The default of forward's ``hx``: not given (None is a value a PyTorch user passes)."""

    def __repr__(self) -> str:
        return "not given"


NO_HX = _NoState()


def builds_stack(kwargs: dict[str, Any]) -> bool:
    """Whether PyTorch's ``num_layers`` (other than 1) or ``bidirectional`` (other than False) ask for a
    stack, which checks them; the single layer is built otherwise."""
    layers, both = kwargs.get("num_layers", 1), kwargs.get("bidirectional", False)
    single = hasattr(layers, "__index__") and not is_bool(layers) and operator.index(layers) == 1
    return not single or not (is_bool(both) and not both)


def stateful_flag(who: str, stateful: Any) -> bool:
    """``stateful``, True or False; a number there is PyTorch's third argument, ``num_layers``: say so."""
    try:
        return flag(stateful, who, "stateful")
    except TypeError:
        raise TypeError(f"{who}: stateful (the third argument) must be True or False, got {stateful!r}; "
                        f"PyTorch's third is num_layers: write {who}(input_size, hidden_size, "
                        f"num_layers={stateful!r}) by name") from None


def relu_or_tanh(who: str, nonlinearity: Any) -> str:
    """RNN's and RNNCell's ``nonlinearity``, PyTorch's two: ``'tanh'`` or ``'relu'``."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{who}: nonlinearity must be 'tanh' or 'relu', as PyTorch's, got {nonlinearity!r}")
    return nonlinearity


def refuse_pytorch_only(who: str, pytorch: dict[str, Any]) -> None:
    """PyTorch's constructor arguments: their defaults pass, anything else says what to write; an argument
    PyTorch's layer does not take either is a TypeError."""
    for arg in pytorch:
        if arg not in _PYTORCH_ONLY:
            raise TypeError(f"{who}.__init__() got an unexpected keyword argument {arg!r}")
    pytorch_defaults_only(who, _PYTORCH_ONLY, pytorch)


def hx_hint(who: str, state_names: tuple[str, ...], shape: str) -> str:
    """Where PyTorch's ``forward(x, hx)`` goes for a layer built without ``return_state`` (its state of ``shape``):
    for the errors of a state passed as ``train`` or ``hx``."""
    c0 = ", c0" if "c" in state_names else ""
    return (f"PyTorch's forward(x, hx) is set_state(h0{c0}) then forward(x), with h0{c0} of shape {shape} (hx=None: "
            f"reset_state() then forward(x)); or build the layer with return_state=True for PyTorch's "
            f"{pytorch_call(who, state_names)}")


def pytorch_call(who: str, state_names: tuple[str, ...], attr: str = "") -> str:
    """PyTorch's call of the layer, ``out, (h_n, c_n) = lstm(x, (h0, c0))`` (RNN, GRU: ``out, h_n = gru(x, h0)``)."""
    attr = attr or who.lower()
    if "c" in state_names:
        return f"out, (h_n, c_n) = {attr}(x, (h0, c0))"
    return f"out, h_n = {attr}(x, h0)"


def forward_train(layer: Any, xs: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The ``train`` a recurrent layer's ``forward(x, *args, train=None, hx=...)`` was given, as
    :func:`call_arguments` reads it (by name, or after x without ``return_state``; True where not given),
    unchecked: for :func:`xpnet.layers.uses.recorded`."""
    train = kwargs.get("train")
    if train is None and len(xs) > 1 and not layer.return_state:
        train = xs[1]
    return True if train is None else train


def call_arguments(layer: Any, args: tuple[Any, ...], train: Any, hx: Any, default: Any) -> tuple[Any, Any]:
    """``(train, hx)`` from a recurrent layer's ``forward`` or ``__call__(x, *args, train=None, hx=...)``;
    train not given is ``default`` (forward's True, ``__call__``'s None: the layer's mode).

    Without ``return_state`` the one argument after x is xpnet's ``train`` (a state there fails ``train``'s
    check, with the layer's ``train_hint``) and ``hx`` is refused, whatever its value, with the same hint.
    With it, that argument is PyTorch's ``hx`` (None: zeros) and ``train`` goes by name; a bool there, which
    no state is, is refused rather than guessed at."""
    who = layer.name
    if len(args) > 1:
        second = "hx" if layer.return_state else "train"
        raise TypeError(f"{who}.forward(x, {second}) takes 2 positional arguments, got {1 + len(args)}")
    if not layer.return_state:
        if hx is not NO_HX:
            raise TypeError(f"{who}.forward(x, train): takes no hx; {layer.train_hint}")
        if args and train is not None:
            raise TypeError(f"{who}.forward() got multiple values for argument 'train'")
        return (args[0] if args else default if train is None else train), hx
    if args and is_bool(args[0]):
        raise TypeError(f"{who}.forward(x, hx): with return_state=True the second argument is PyTorch's hx, the "
                        f"start state, got {args[0]!r}; pass train by name ({who.lower()}(x, hx, train=False))")
    if args and hx is not NO_HX:
        raise TypeError(f"{who}.forward() got multiple values for argument 'hx'")
    return (default if train is None else train), (args[0] if args else hx)


def hx_rows(who: str, state_names: tuple[str, ...], widths: tuple[int, ...], rows: int, hx: Any) -> list[Any]:
    """PyTorch's ``hx``, (h0, c0) (LSTM) or h0 (RNN, GRU) of (rows, N, width) each (``rows``: num_layers *
    num_directions), checked, as the hx of each layer: row ``k * num_directions + direction``, (1, N, width)
    (None, zeros, for each where hx is None)."""
    if hx is None:
        return [None] * rows
    pair = "c" in state_names
    if pair != isinstance(hx, (tuple, list)) or (pair and len(hx) != 2):
        held = "a pair (h0, c0) of arrays" if pair else "one array h0"
        raise TypeError(f"{who}.forward(x, hx): hx is {held} of shape ({rows}, N, {widths[0]}) (num_layers * "
                        f"num_directions, as PyTorch's; None: zeros), got {type(hx).__name__}")
    states = [untracked(s) for s in (hx if pair else (hx,))]
    n = states[0].shape[1] if getattr(states[0], "ndim", None) == 3 else "N"
    for name, s, width in zip(state_names, states, widths):
        if getattr(s, "ndim", None) != 3 or tuple(s.shape) != (rows, n, width):
            raise ValueError(f"{who}.forward(x, hx): {name}0 must have shape ({rows}, {n}, {width}), PyTorch's "
                             f"(num_layers * num_directions, N, {'H_out' if name == 'h' else 'H_cell'}), got "
                             f"{tuple(getattr(s, 'shape', ()))}")
    layers = [tuple(s[i:i + 1, ...] for s in states) for i in range(rows)]
    return layers if pair else [row[0] for row in layers]


def return_state_refusal(who: str, state_names: tuple[str, ...]) -> str:
    """Why a layer built with ``return_state=True`` cannot sit in a Sequential, and what to write."""
    gives = "(out, (h_n, c_n))" if "c" in state_names else "(out, h_n)"
    return (f"returns {gives} (return_state=True), which the next layer cannot take: leave return_state out in a "
            f"Sequential (the output alone; h_n is out[:, -1] of one direction), or write an xn.Model whose forward "
            f"unpacks it, {pytorch_call(who, state_names, 'self.' + who.lower())}")


_UNPACKING = ("too many values to unpack", "not enough values to unpack")


class ForwardGuard:
    """What a container's forward is checked for, and its errors hinted at (``scoped`` in :mod:`xpnet.layers.uses`
    runs both around its own call of it, one wrapper fewer a step): its own unpacking of a recurrent layer's
    output, PyTorch's ``out, (h_n, c_n) = self.lstm(x)`` or ``out, _ = self.gru(x)``, raises a ValueError that
    says why (:meth:`hint`): the model holds an RNN, LSTM or GRU without ``return_state``, which returns the
    output alone. An unpacking error in a function that forward calls, or in a model without such a layer, is left
    as it is. Before it runs (:meth:`check`), PyTorch's time-first batch of one given to a batch-first layer is
    refused, and so is a time-first read of a batch-first attention layer's output; a failing ``x.view(shape)`` on
    forward's own line says to reshape.

    Whether forward's code holds anything to check is read from its source at its first call, once per code
    object; ``checks`` turns False once a call found nothing there, and the checks are no longer called."""

    __slots__ = ("code", "checks", "attention")

    def __init__(self, forward: Callable[..., Any]):
        self.code = inspect.unwrap(forward).__code__
        self.checks = True
        self.attention: bool | None = None  # whether forward reads an attention layer's output time first

    def check(self, model: Any) -> None:
        """Raise where ``model``'s call of forward is refused (see the class)."""
        code = self.code
        _refuse_unpacked_call(model, code)
        refuse_time_first_batch_of_one(model, code)
        if self.attention is None:
            self.attention = reads_axis_0(code)
        if self.attention:
            refuse_time_first_attention(model, code)
        elif not _unpacked_calls(code) and not time_first_calls(code):
            self.checks = False

    def hint(self, model: Any, error: Exception) -> Exception | None:
        """The error to raise instead of ``error`` (a TypeError, ValueError or AttributeError forward raised), of
        the same type, or None."""
        hint = view_hint(model, self.code, error)
        if hint is None and isinstance(error, ValueError):
            hint = _unpacking_hint(model, self.code, error)
        kind = next(k for k in (TypeError, AttributeError, ValueError) if isinstance(error, k))
        return None if hint is None else kind(hint)


_UNPACKED: dict[Any, tuple[str, ...]] = {}  # forward's code -> the attributes whose call it unpacks
_PACKED: dict[Any, frozenset[str]] = {}  # forward's code -> those of them given a packed sequence
_PACKERS = ("pack_padded_sequence", "pack_sequence")


def _unpacked_calls(code: Any) -> tuple[str, ...]:
    """The names ``attr`` of forward's assignments ``a, b = self.attr(...)`` (read from its source, once per
    code object; none where the source cannot be read). Those whose first argument is packed there
    (``pack_padded_sequence(...)`` itself, or a name assigned from it) are noted in ``_PACKED``."""
    if code not in _UNPACKED:
        tree = forward_source(code)[1]
        nodes = list(ast.walk(tree)) if tree is not None else []
        packed_names = {t.id for node in nodes if isinstance(node, ast.Assign) and _packs(node.value)
                        for t in node.targets if isinstance(t, ast.Name)}
        found, packed = [], set()
        for node in nodes:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                    any(isinstance(t, (ast.Tuple, ast.List)) and len(t.elts) > 1 for t in node.targets):
                func = node.value.func
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
                    found.append(func.attr)
                    first = node.value.args[0] if node.value.args else None
                    if _packs(first) or (isinstance(first, ast.Name) and first.id in packed_names):
                        packed.add(func.attr)
        _PACKED[code] = frozenset(packed)
        _UNPACKED[code] = tuple(dict.fromkeys(found))
    return _UNPACKED[code]


def _packs(node: Any) -> bool:
    """Whether ``node`` is a call of ``pack_padded_sequence`` or ``pack_sequence`` (by any module path)."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)) in _PACKERS


_TIME_FIRST = ("; and it is batch first, (N, T, D), where PyTorch's is time first: for PyTorch's (T, N, D) build it "
               "with batch_first=False too")


def _refuse_unpacked_call(model: Any, code: Any) -> None:
    """Raise where ``model``'s forward (``code``) unpacks the call of a recurrent layer it holds built without
    ``return_state`` (``out, (h, c) = self.lstm(x)``): its one output array would be unpacked along the batch
    axis, silently with a batch of 2 (mnist_rnn's model)."""
    attrs = _unpacked_calls(code)
    if not attrs:  # the common case, every call of a model's forward: nothing to import or look up
        return
    from .recurrent_stack import RecurrentStack  # imported here: both import this module
    from .recurrent_state import CarriedState
    for attr in attrs:
        layer = model.__dict__.get(attr)
        if isinstance(layer, (CarriedState, RecurrentStack)) and not layer.return_state:
            call = pytorch_call(layer.name, layer.state_names, 'self.' + attr)
            if attr in _PACKED[code]:
                raise ValueError(f"{model.name}.forward unpacks the output of self.{attr}(packed, ...), PyTorch's "
                                 f"{call}, but xpnet's RNN, LSTM and GRU return the output alone (here a "
                                 f"PackedSequence): build it as xn.layers.{layer.name}(..., return_state=True). Its "
                                 f"batch_first does not matter here: a packed input keeps the layout "
                                 f"pack_padded_sequence was given, the output is packed alike, and the states are "
                                 f"PyTorch's (num_layers * num_directions, N, H)")
            raise ValueError(f"{model.name}.forward unpacks the output of self.{attr}(...), PyTorch's "
                             f"{call}, but xpnet's RNN, LSTM "
                             f"and GRU return the output alone, one array (a batch of 2 would be unpacked along its "
                             f"batch axis): write out = self.{attr}(x), or build it as xn.layers.{layer.name}(..., "
                             f"return_state=True){_TIME_FIRST if layer.batch_first else ''}")


def _unpacking_hint(model: Any, code: Any, error: ValueError) -> str | None:
    """The message for ``error`` raised by forward's own frame (``code``) unpacking, naming the recurrent
    layers of ``model`` built without ``return_state`` (a stack's, not its levels'), or None."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None or tb.tb_frame.f_code is not code or not str(error).startswith(_UNPACKING):
        return None
    from .recurrent_stack import RecurrentStack  # imported here: both import this module
    from .recurrent_state import CarriedState
    found: dict[str, Any] = {}
    for name, node in model.named_modules().items():
        recurrent = isinstance(node, (CarriedState, RecurrentStack))
        if name and recurrent and not any(name.startswith(outer + ".") for outer in found):
            found[name] = node
    found = {name: node for name, node in found.items() if not node.return_state}
    if not found:
        return None
    name, layer = next(iter(found.items()))
    attr = "self" + "".join(f".{p}" if p.isidentifier() else f"[{p}]" if p.isdigit() else f"[{p!r}]"
                            for p in name.split("."))
    held = ", ".join(f"'{n}' ({node.name})" for n, node in found.items())
    return (f"{model.name}.forward: {error}; {model.name} holds {held}, and xpnet's RNN, LSTM and GRU return the "
            f"output alone, one array: write out = {attr}(x), or build it as xn.layers.{layer.name}(..., "
            f"return_state=True) for PyTorch's {pytorch_call(layer.name, layer.state_names, attr)}")


def proj_size(who: str, proj_size: Any, hidden_size: Any) -> int:
    """PyTorch's ``proj_size``: an int from 0 (no projection) to below ``hidden_size``, else a ValueError."""
    if isinstance(proj_size, bool) or not hasattr(proj_size, "__index__") or operator.index(proj_size) < 0 or \
            (proj_size and proj_size >= hidden_size):
        raise ValueError(f"{who}: proj_size must be an int from 0 (no projection) to below hidden_size={hidden_size!r} "
                         f"(PyTorch's rule), got {proj_size!r}")
    return operator.index(proj_size)


# What RNN's, LSTM's and their cells' two conventions hold, for the error that refuses a third.
SUMMED_BIAS_CONVENTIONS = ("'book' (the default) keeps one bias b = bias_ih + bias_hh, 'pytorch' PyTorch's two, "
                           "bx = bias_ih and bh = bias_hh")


def convention_biases(bias: bool, convention: str) -> tuple[str, ...]:
    """A recurrent layer's or cell's bias parameters: ``("b",)`` (the book's, ``convention="book"``), PyTorch's two,
    ``("bx", "bh")`` (``convention="pytorch"``); none without ``bias``."""
    if not bias:
        return ()
    return ("bx", "bh") if convention == "pytorch" else ("b",)


def input_bias(params: dict[str, Any], names: tuple[str, ...]) -> Any:
    """The bias added to x @ Wx: the one named in ``names``, or the sum of PyTorch's two (made once per forward)."""
    return params[names[0]] if len(names) == 1 else params[names[0]] + params[names[1]]


def convention(who: str, convention: Any, meanings: str = "") -> str:
    """A recurrent layer's or cell's ``convention``, ``'pytorch'`` or ``'book'``, else a ValueError naming ``who``,
    the accepted values (``meanings`` says what each holds) and what came."""
    if not isinstance(convention, str) or convention not in ("pytorch", "book"):
        raise ValueError(f"{who}: convention must be 'pytorch' or 'book', got {convention!r}"
                         + (f"; {meanings}" if meanings else ""))
    return convention
