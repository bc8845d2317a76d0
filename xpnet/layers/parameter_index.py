"""``next(model.parameters())[:, ix]``, PyTorch's index into a weight whose xpnet layout is its transpose: refused.

PyTorch's ``nn.Linear`` keeps ``weight`` as (out_features, in_features); xpnet's Linear keeps ``W`` as
(in_features, out_features), the book's, and ``next(model.parameters())`` gives ``W``. The bag-of-words tutorial's
``next(model.parameters())[:, word_to_ix["creo"]]`` (the word's column of the weight) then reads a label's row over
the vocabulary where the word's index is below the number of labels: another slice, silently (an IndexError
elsewhere). Nothing in the array tells which layout the index was written for, so the line is read (once per
line): ``next(...parameters())`` subscripted on the spot, where the parameter is one that PyTorch keeps
transposed (Linear's ``W``; MultiheadAttention's ``W_in``, ``W_q``, ``W_k``, ``W_v``, ``W_out``; the recurrent
layers' ``Wx``, ``Wh``, ``Wr``), is refused, saying what to write for either layout (``layer.weight[...]`` is
PyTorch's; ``layer.params['W'][...]`` xpnet's).
"""

from __future__ import annotations

import linecache
import re
import sys
from typing import Any

__all__ = ["refuse_pytorch_index"]

_SUBSCRIPTED = re.compile(r"next\(\s*(?:(.*?)\.)?parameters\(\s*\)\s*\)\s*\[")
_TRANSPOSED = frozenset({"W_in", "W_q", "W_k", "W_v", "W_out", "Wx", "Wh", "Wr"})  # PyTorch's weights, transposed
# (file, line) -> (what parameters() is called on, the subscript that follows next(...) there), or None
_LINES: dict[tuple[str, int], tuple[str, str] | None] = {}


def _subscript(frame: Any) -> tuple[str, str] | None:
    """(``model``, ``[:, ix]``) of ``next(model.parameters())[:, ix]`` written on ``frame``'s line, else None."""
    key = (frame.f_code.co_filename, frame.f_lineno)
    if key not in _LINES:
        line = linecache.getline(*key)
        found = _SUBSCRIPTED.search(line)
        _LINES[key] = (found.group(1) or "model", _bracketed(line, found.end() - 1)) if found else None
    return _LINES[key]


def _bracketed(line: str, start: int) -> str:
    """The subscript opening at ``line[start]``, up to its matching bracket (the line's end where none)."""
    depth = 0
    for i in range(start, len(line)):
        depth += {"[": 1, "]": -1}.get(line[i], 0)
        if depth == 0:
            return line[start:i + 1]
    return line[start:].rstrip()


def _transposed(model: Any, name: str) -> tuple[Any, str] | None:
    """(the layer, its key) of the parameter ``name`` where PyTorch keeps it transposed, else None."""
    prefix, _, key = name.rpartition(".")
    layer = model.named_modules().get(prefix)
    if layer is None:
        return None
    weight = type(layer).__dict__.get("weight")
    if getattr(weight, "key", None) == key and getattr(weight, "transposed", False):
        return layer, key
    return (layer, key) if key in _TRANSPOSED and getattr(layer.params.get(key), "ndim", 0) == 2 else None


def refuse_pytorch_index(model: Any, index: int) -> None:
    """Raise where the line calling ``next(model.parameters())`` (the ``index``-th parameter) indexes it on the spot
    and PyTorch's layout of that parameter is the transpose of xpnet's."""
    written = _subscript(sys._getframe(2))  # the caller of Parameters.__next__'s caller, next()
    if written is None:
        return
    owner, subscript = written
    name = list(model.named_params())[index]
    found = _transposed(model, name)
    if found is None:
        return
    layer, key = found
    path = name.rpartition(".")[0]
    here = owner + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in path.split(".") if part)
    shape = tuple(layer.params[key].shape)
    pytorch = (f"{here}.weight{subscript} (PyTorch's layout, {shape[::-1]}: the numbers PyTorch's line reads)"
               if getattr(type(layer).__dict__.get("weight"), "key", None) == key else
               f"{here}.params[{key!r}].T{subscript} (PyTorch's layout)")
    raise IndexError(
        f"next({owner}.parameters()){subscript}: this parameter is {name!r} of {layer.name}, {shape} in xpnet's "
        f"layout (in, out), the transpose of PyTorch's weight {shape[::-1]}, so an index written for PyTorch's "
        f"layout reads the other axis (another slice, silently where it fits). Write {pytorch}, or "
        f"{here}.params[{key!r}]{subscript} for xpnet's")
