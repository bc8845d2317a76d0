"""PyTorch's arguments to RNN, LSTM and GRU: which the single layer (:mod:`xpnet.layers.recurrent`) takes, which
build a :class:`~xpnet.layers.recurrent_stack.RecurrentStack`, and what the layer says about the rest.

PyTorch's ``num_layers``, ``dropout``, ``bidirectional``, RNN's ``nonlinearity`` and ``device`` pass at their
defaults; ``num_layers`` other than 1 or ``bidirectional`` other than False build a stack (:func:`builds_stack`);
any other value is refused with what to write. PyTorch's third positional argument is ``num_layers`` where
xpnet's is ``stateful``, its ``forward(x, hx)`` takes a state where xpnet's takes ``train``: both are refused,
never misread. LSTM's ``proj_size`` is checked by PyTorch's rule.
"""

from __future__ import annotations

import operator
from typing import Any

from .._user import flag, is_bool
from .base import DEVICE_DEFAULT, pytorch_defaults_only
from .recurrent_stack import NO_LAYER_AFTER

# PyTorch's arguments that the single layer takes only at their default: (default, what to write instead).
_PYTORCH_ONLY = {
    "num_layers": (1, "num_layers must be an int >= 1"),
    "dropout": (0, NO_LAYER_AFTER),
    "bidirectional": (False, "bidirectional must be True or False"),
    "nonlinearity": ("tanh", ("xpnet's RNN is the book's TimeRNN, tanh only; for ReLU write a layer of your own "
                              "(see the README's Writing your own model)")),
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


def refuse_pytorch_only(who: str, pytorch: dict[str, Any], nonlinearity: bool) -> None:
    """PyTorch's constructor arguments (``nonlinearity`` taken where the layer is an RNN): their defaults pass,
    anything else says what to write; an argument PyTorch's layer does not take either is a TypeError."""
    for arg in pytorch:
        if arg not in _PYTORCH_ONLY or (arg == "nonlinearity" and not nonlinearity):
            raise TypeError(f"{who}.__init__() got an unexpected keyword argument {arg!r}")
    pytorch_defaults_only(who, _PYTORCH_ONLY, pytorch)


def refuse_hx(who: str, state_names: tuple[str, ...], hx: Any) -> None:
    """Forward's ``hx`` (PyTorch's initial state), refused whatever its value, saying to ``set_state`` it."""
    if hx is not NO_HX:
        c0 = ", c0" if "c" in state_names else ""
        raise TypeError(f"{who}.forward(x, train): takes no hx; PyTorch's forward(x, hx) is set_state(h0{c0}) then "
                        f"forward(x), with h0{c0} of shape (N, hidden_size) (hx=None: reset_state() then forward(x))")


def proj_size(who: str, proj_size: Any, hidden_size: Any) -> int:
    """PyTorch's ``proj_size``: an int from 0 (no projection) to below ``hidden_size``, else a ValueError."""
    if isinstance(proj_size, bool) or not hasattr(proj_size, "__index__") or operator.index(proj_size) < 0 or \
            (proj_size and proj_size >= hidden_size):
        raise ValueError(f"{who}: proj_size must be an int from 0 (no projection) to below hidden_size={hidden_size!r} "
                         f"(PyTorch's rule), got {proj_size!r}")
    return operator.index(proj_size)
