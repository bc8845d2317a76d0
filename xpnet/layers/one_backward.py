"""A model called twice, then given one backward, PyTorch's ``loss(model(x1), model(x2)).backward()``: refused.

PyTorch's autograd keeps each call's graph, so one ``loss.backward()`` after ``out1 = model(x1)`` and
``out2 = model(x2)`` goes back through both calls. An xpnet model keeps its last call's caches: its one backward
serves ``x2``'s call, whatever gradient it is given (``out1``'s, their sum), with ``x2``'s input and dropout mask,
silently where the shapes agree. A second backward is refused already (:func:`.uses.rounded`); this refuses the
first, where the line calling it says the calls were PyTorch's pair: the backward's caller is read (its file, parsed
once), and two or more calls of the same model, ``model(...)`` or ``model.forward(...)``, each a statement of the
block that holds the backward, with no backward of it between, are refused when the backward finds that many
training forwards since the last. A call inside a loop or a ``with xn.no_grad():`` block is no such statement (a
sampling loop's, a target's under no_grad), nor is ``model.predict`` (a look, which leaves the caches alone).
"""

from __future__ import annotations

import ast
import linecache
import os
import sys
from typing import Any

__all__ = ["refuse_one_backward_for_two_calls"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # xpnet/
_TREES: dict[str, Any] = {}  # file -> (its source, its tree, each statement's place)
_FOUND: dict[tuple[str, int], tuple[str, ...] | None] = {}  # (file, line) -> the calls' source, or None


def _tree(filename: str) -> tuple[str, ast.AST | None, dict[ast.AST, tuple[ast.AST, list[ast.stmt], int]]]:
    """A file's source, tree, and each statement's place: (the node holding it, its block, its index there)."""
    if filename not in _TREES:
        source = "".join(linecache.getlines(filename))
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            tree = None
        places = {}
        for node in ast.walk(tree) if tree is not None else ():
            for field in ("body", "orelse", "finalbody", "handlers"):
                block = getattr(node, field, None)
                if isinstance(block, list):
                    for i, stmt in enumerate(block):
                        places[stmt] = (node, block, i)
        _TREES[filename] = source, tree, places
    return _TREES[filename]


def _receivers(node: ast.AST, source: str) -> set[str]:
    """The source of each ``R`` in the calls ``R.backward(...)`` within ``node``."""
    return {ast.get_source_segment(source, n.func.value) or "" for n in ast.walk(node) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and n.func.attr == "backward"}


def _calls_of(stmt: ast.stmt, receiver: str, source: str) -> list[str]:
    """The calls ``receiver(...)`` and ``receiver.forward(...)`` within the simple statement ``stmt``."""
    found = []
    for node in ast.walk(stmt):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "forward":
            func = func.value
        if ast.get_source_segment(source, func) == receiver:
            found.append(ast.get_source_segment(source, node) or receiver)
    return found


# Statements holding others: the calls inside one are no statement of the backward's block. A loop or a function
# ends the search; an if, a with or a try around the backward does not (the calls before it count).
_COMPOUND = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.AsyncFor, ast.While, ast.If, ast.With,
             ast.AsyncWith, ast.Try, ast.ExceptHandler)
_OPEN = (ast.If, ast.With, ast.AsyncWith, ast.Try, ast.ExceptHandler)


def _block_calls(filename: str, line: int) -> tuple[str, ...] | None:
    """The calls of the model whose backward is called on ``line``, in the statements before it since its last
    backward (in its block, and in the blocks around it up to a loop or a function); None where fewer than two."""
    source, tree, places = _tree(filename)
    here = [stmt for stmt in places if not isinstance(stmt, _COMPOUND) and isinstance(stmt, ast.stmt)
            and stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno)]
    receivers = _receivers(here[0], source) if len(here) == 1 else set()
    if len(receivers) != 1:
        return None
    receiver = receivers.pop()
    calls: list[str] = []
    current = here[0]
    while current in places:
        holder, block, index = places[current]
        for stmt in reversed(block[:index]):
            if receiver in _receivers(stmt, source):
                return tuple(calls) if len(calls) > 1 else None
            if not isinstance(stmt, _COMPOUND):
                calls = _calls_of(stmt, receiver, source) + calls
        if not isinstance(holder, _OPEN):
            break
        current = holder
    return tuple(calls) if len(calls) > 1 else None


def refuse_one_backward_for_two_calls(model: Any, forwards: int) -> None:
    """Raise where ``model``'s backward, after ``forwards`` (> 1) training forwards, is called on a line whose block
    calls the model that many times before it (see the module's docstring)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    if frame is None:
        return
    key = (frame.f_code.co_filename, frame.f_lineno)
    if key not in _FOUND:
        _FOUND[key] = _block_calls(*key)
    calls = _FOUND[key]
    if calls is None or len(calls) < forwards:
        return
    kind = "model" if model.uses_inside else "layer"
    raise RuntimeError(
        f"{model.name}.backward after {', '.join(calls)}: PyTorch's one backward goes back through every call, "
        f"but an xpnet {kind} keeps its last call's caches only, so this backward serves {calls[-1]} alone, whatever "
        f"gradient it is given (with that call's input and dropout mask). Call it within one forward of a model of "
        f"your own (each call is kept there, and its backward calls take them back last call first), join the inputs "
        f"into one batch, or take each call's backward before the next call; a call for a target alone goes under "
        f"`with xn.no_grad():` before the training call, or is model.predict(...)")
