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

The same read catches the batch size taken from axis 1 of the array given to such a layer, legacy SNLI's
``batch_size = inputs.size()[1]`` then ``self.rnn(inputs, (h0, c0))`` (a name holding "batch", or ``bsz``, from
``x.shape[1]``, ``x.size(1)`` or ``x.size()[1]``, ``x`` not reassigned between the read and the call): axis 1 is
the batch of time-first input only, and where T equals N the state's shape cannot tell, so it is refused too.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections import Counter
from typing import Any

# forward's code -> (attr, what it reads as time first: the reshape's source, or the batch size's read, kind)
_FOUND: dict[Any, tuple[tuple[str, str, str], ...]] = {}


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


def _axis1_size(node: ast.expr) -> str | None:
    """The name whose axis 1 ``node`` reads (``x.shape[1]``, ``x.size(1)``, ``x.size()[1]``), else None."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == 1:
        inner = node.value
        if isinstance(inner, ast.Attribute) and inner.attr == "shape" and isinstance(inner.value, ast.Name):
            return inner.value.id
        if isinstance(inner, ast.Call) and not inner.args and isinstance(inner.func, ast.Attribute) \
                and inner.func.attr == "size" and isinstance(inner.func.value, ast.Name):
            return inner.func.value.id
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "size" \
            and isinstance(node.func.value, ast.Name) and len(node.args) == 1 \
            and isinstance(node.args[0], ast.Constant) and node.args[0].value == 1:
        return node.func.value.id
    return None


def _batch_reads(tree: ast.AST, source: str) -> dict[str, tuple[int, str]]:
    """``batch_size = x.shape[1]`` assignments in forward: x -> (the line, the assignment's source)."""
    reads = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
            read = _axis1_size(node.value)
            if read is not None and ("batch" in target.lower() or target == "bsz"):
                reads[read] = (node.lineno, ast.get_source_segment(source, node) or f"{target} = {read}.shape[1]")
    return reads


def time_first_calls(code: Any) -> tuple[tuple[str, str, str], ...]:
    """forward's calls ``self.attr(<reshape to (a, 1, b)>, ...)``: (attr, the reshape's source text, "one"); and
    ``self.attr(x, ...)`` after ``batch_size = x.shape[1]``: (attr, that line, "axis1")."""
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
        batch_reads = _batch_reads(tree, source) if tree is not None else {}
        store_lines = [(node.id, node.lineno) for node in ast.walk(tree) if isinstance(node, ast.Name)
                       and isinstance(node.ctx, ast.Store)] if batch_reads else []
        for node in ast.walk(tree) if tree is not None else ():
            func = getattr(node, "func", None)
            if not (isinstance(node, ast.Call) and node.args and isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Name) and func.value.id == "self"):
                continue
            first = node.args[0]
            if isinstance(first, ast.Name) and first.id in batch_reads:
                line, text = batch_reads[first.id]
                if not any(name == first.id and line < at <= node.lineno for name, at in store_lines):
                    found.append((func.attr, text, "axis1"))
            if len(node.args) > 1 or any(k.arg == "hx" for k in node.keywords):
                continue  # a state given: a step of a loop, or (its N the input's T) refused by the layer itself
            if _time_first(first):
                found.append((func.attr, ast.get_source_segment(source, first) or "x.view(T, 1, -1)", "one"))
            elif isinstance(first, ast.Name) and first.id in named:
                found.append((func.attr, f"{first.id} = {named[first.id]}", "one"))
        _FOUND[code] = tuple(found)
    return _FOUND[code]


def refuse_time_first_batch_of_one(model: Any, code: Any) -> None:
    """Raise where ``model``'s forward (``code``) gives a batch-first recurrent layer it holds an input reshaped
    to (T, 1, D), PyTorch's time-first batch of one, which the layer would read as T one-step sequences, or an
    input whose batch size it reads from axis 1 (time first)."""
    calls = time_first_calls(code)
    if not calls:  # the common case, every call of a model's forward: nothing to import or look up
        return
    from .recurrent_stack import RecurrentStack  # imported here: both import the module that calls this
    from .recurrent_state import CarriedState
    for attr, reshaped, kind in calls:
        layer = model.__dict__.get(attr)
        if not isinstance(layer, (CarriedState, RecurrentStack)) or getattr(layer, "batch_first", False) is not True:
            continue
        if kind == "axis1":
            raise ValueError(
                f"{model.name}.forward reads the batch size from axis 1 of what it gives self.{attr} ({reshaped}), "
                f"PyTorch's time-first layout (T, N, D); but xpnet's {layer.name} is batch first and would read "
                f"that array as T sequences of N steps (silently where T equals N, the state's shape then fitting "
                f"too). Build it as xn.layers.{layer.name}(..., batch_first=False) for PyTorch's layout, or give it "
                f"(N, T, D) and read the batch size from axis 0")
        if not layer.stateful:
            raise ValueError(
                f"{model.name}.forward gives self.{attr} {reshaped}, PyTorch's time-first (T, 1, D): T steps of "
                f"one sequence; but xpnet's {layer.name} is batch first and would read it as T sequences of one "
                f"step each, every step from a zero state (no word would see the ones before it). Build it as "
                f"xn.layers.{layer.name}(..., batch_first=False) for PyTorch's layout (T, N, D), or give it one "
                f"sequence batch first, (1, T, D); for T sequences of one step each, write x[:, None, :]")
