"""PyTorch's time-first batch of one, ``self.lstm(embeds.view(len(sentence), 1, -1))`` (the sequence models
tutorial's LSTMTagger), given to a batch-first recurrent layer: refused before the model's forward runs.

PyTorch's ``nn.LSTM(D, H)`` is time first, so the tutorial reshapes its (T, D) sentence to (T, 1, D): T steps of
one sequence. xpnet's RNN, LSTM and GRU are batch first unless built with ``batch_first=False``, and would read
that array as T sequences of one step each, every word from a zero state: the same shapes come out, the model
trains, and no word sees the words before it. Nothing in the array tells the two apart, so the model's forward is
read (its source, once per code object): a call ``self.attr(x.view(a, 1, b))`` or ``.reshape(...)`` (method or
function, the shape as arguments or a tuple; inline, or assigned to a name on a line of its own) whose middle
size is the literal 1, where ``self.attr`` is a batch-first recurrent layer that carries no state (not
``stateful``, no state given in the call: a step of a decoder's loop), is refused, saying what to write.
Sequences of one step each, written on purpose, pass as ``x[:, None, :]``. Given a state of one sequence,
``self.lstm(x.view(T, 1, -1), self.hidden)`` (the tutorial's first version), the layer refuses the input itself
(its N is not the state's).
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections import Counter
from typing import Any

_FOUND: dict[Any, tuple[tuple[str, str], ...]] = {}  # forward's code -> (attr, the reshape's source) it calls with


@functools.lru_cache(maxsize=32)
def forward_source(code: Any) -> tuple[str, ast.AST | None]:
    """A model's forward (``code``) as its source text and parsed tree, ``("", None)`` where its source cannot be
    read; what this check and the unpacking check (:mod:`.recurrent_args`) read, parsed once for both."""
    try:
        source = textwrap.dedent(inspect.getsource(code))
        return source, ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return "", None


def _shape_of(call: ast.Call) -> list[ast.expr] | None:
    """The shape a ``view``/``reshape`` call gives, as its element expressions, or None where it is none."""
    func = call.func
    if not isinstance(func, ast.Attribute) or func.attr not in ("view", "reshape"):
        return None
    args = list(call.args)
    if isinstance(func.value, ast.Name) and func.value.id in ("np", "numpy", "xp", "torch", "jnp", "cp"):
        args = args[1:]  # np.reshape(x, shape)
    if len(args) == 1 and isinstance(args[0], (ast.Tuple, ast.List)):
        return list(args[0].elts)
    return args


def _time_first(node: ast.expr) -> bool:
    """Whether ``node`` is a ``view``/``reshape`` call to three sizes, the middle one the literal 1."""
    shape = _shape_of(node) if isinstance(node, ast.Call) else None
    return shape is not None and len(shape) == 3 and isinstance(shape[1], ast.Constant) and shape[1].value == 1


def time_first_calls(code: Any) -> tuple[tuple[str, str], ...]:
    """forward's calls ``self.attr(<reshape to (a, 1, b)>, ...)``: (attr, the reshape's source text)."""
    if code not in _FOUND:
        source, tree = forward_source(code)
        found, named, stores = [], {}, Counter()
        for node in ast.walk(tree) if tree is not None else ():  # embeds = x.view(T, 1, -1) on a line of its own
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                stores[node.id] += 1
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                    and _time_first(node.value):
                named[node.targets[0].id] = ast.get_source_segment(source, node.value)
        named = {name: text for name, text in named.items() if stores[name] == 1}  # not changed before the call
        for node in ast.walk(tree) if tree is not None else ():
            func = getattr(node, "func", None)
            if not (isinstance(node, ast.Call) and node.args and isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Name) and func.value.id == "self"):
                continue
            if len(node.args) > 1 or any(k.arg == "hx" for k in node.keywords):
                continue  # a state given: a step of a loop, or (its N the input's T) refused by the layer itself
            first = node.args[0]
            if _time_first(first):
                found.append((func.attr, ast.get_source_segment(source, first) or "x.view(T, 1, -1)"))
            elif isinstance(first, ast.Name) and first.id in named:
                found.append((func.attr, f"{first.id} = {named[first.id]}"))
        _FOUND[code] = tuple(found)
    return _FOUND[code]


def refuse_time_first_batch_of_one(model: Any, code: Any) -> None:
    """Raise where ``model``'s forward (``code``) gives a batch-first recurrent layer it holds an input reshaped
    to (T, 1, D), PyTorch's time-first batch of one, which the layer would read as T one-step sequences."""
    calls = time_first_calls(code)
    if not calls:  # the common case, every call of a model's forward: nothing to import or look up
        return
    from .recurrent_stack import RecurrentStack  # imported here: both import the module that calls this
    from .recurrent_state import CarriedState
    for attr, reshaped in calls:
        layer = model.__dict__.get(attr)
        if isinstance(layer, (CarriedState, RecurrentStack)) and getattr(layer, "batch_first", False) is True \
                and not layer.stateful:
            raise ValueError(
                f"{model.name}.forward gives self.{attr} {reshaped}, PyTorch's time-first (T, 1, D): T steps of "
                f"one sequence; but xpnet's {layer.name} is batch first and would read it as T sequences of one "
                f"step each, every step from a zero state (no word would see the ones before it). Build it as "
                f"xn.layers.{layer.name}(..., batch_first=False) for PyTorch's layout (T, N, D), or give it one "
                f"sequence batch first, (1, T, D); for T sequences of one step each, write x[:, None, :]")
