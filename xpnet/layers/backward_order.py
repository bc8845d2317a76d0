"""A backward written out by hand that takes a layer's calls back first call first: refused where its names say so.

A layer called twice in one forward of a model keeps each call's cache, and its backward calls take them back last
call first (:mod:`.reuse`): the first serves the last call. Where the two calls do not feed each other (a siamese
network's ``o1 = self.net(x1)``, ``o2 = self.net(x2)``; the translation tutorial's ``self.positional_encoding``
for ``src`` and for ``tgt``), a backward written in the forward's order, ``dx1 = self.net.backward(do1)`` then
``dx2 = self.net.backward(do2)``, gives each call the other's cache (its input, its dropout mask): with equal
shapes, silently. PyTorch's autograd has no order to get wrong, so a porter writes this order.

The model's forward and backward are read (their source, once per class): in each, the calls of ``self.attr`` and
``self.attr.backward`` outside loops, in source order, with the names around them, the forward's outputs and
inputs, the backward's gradients (arguments) and results. A backward call whose names point to one forward call
alone (``do1`` is the gradient of ``o1``: the names compared with a leading ``d``, ``d_``, ``grad_``, ``g_`` or a
trailing ``_grad`` taken off; ``dx1`` is the gradient of its input ``x1``; where no name does, the number they end
in: ``x1``, ``x2`` in forward, ``d1``, ``d2`` in backward) and not to the one its place serves is
refused when the model's backward runs after a forward that called the layer that many times, naming the layer, both
calls and the order to write. Where the names tell nothing (``x = self.relu(x)`` twice), nothing is refused.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

from .recurrent_layout import forward_source

__all__ = ["refuse_first_call_first"]

_PREFIXES = ("grad_", "d_", "g_", "d")
_SUFFIXES = ("_grad", "_g")
_LOOPS = (ast.For, ast.While, ast.AsyncFor, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Lambda)

# a model class -> ((attr, how many calls, the backward call's place k, the forward call it names i, its source,
# that call's source, the source of the call backward call k serves), ...)
_FOUND: dict[type, tuple[tuple[Any, ...], ...]] = {}


def _tree(method: Any) -> tuple[str, ast.AST | None]:
    """A method's source and its parsed tree (``("", None)`` where its source cannot be read), as the other checks
    that read a model's methods read them (:func:`.recurrent_layout.forward_source`)."""
    code = getattr(inspect.unwrap(method), "__code__", None)
    return ("", None) if code is None else forward_source(code)


def _self_attr(node: ast.expr, me: str) -> str | None:
    """``attr`` of ``self.attr`` (``me``: the method's first parameter's name)."""
    return node.attr if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
        and node.value.id == me else None


def _names(node: ast.AST | None, me: str) -> set[str]:
    """The names ``node`` reads or binds, but ``self``."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id != me} if node is not None else set()


def _gradient_of(name: str) -> set[str]:
    """What ``name`` may be the gradient of: itself and it without a gradient's prefix or suffix."""
    found = {name}
    found.update(name[len(p):] for p in _PREFIXES if name.startswith(p) and len(name) > len(p))
    found.update(name[:-len(s)] for s in _SUFFIXES if name.endswith(s) and len(name) > len(s))
    return found


def _numbers(names: set[str]) -> frozenset[str]:
    """The numbers ``names`` end in (``x1``, ``out_2``), the way two calls' names tell them apart."""
    return frozenset(name[len(name.rstrip("0123456789")):] for name in names if name[-1:].isdigit())


_Call = tuple[set[str], set[str], str]


def _calls(source: str, tree: ast.AST, backward: bool) -> tuple[dict[str, list[_Call]], set[str]]:
    """{attr: [(outputs, inputs, source) per call in source order]} of ``self.attr(...)`` (``backward``: of
    ``self.attr.backward(...)``: (results, gradients, source)), and the attrs called within a loop (their count
    is no text's). ``source``: the method's, which ``tree`` parses."""
    function = tree.body[0] if isinstance(tree, ast.Module) and tree.body else None
    if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) or not function.args.args:
        return {}, set()
    me = function.args.args[0].arg
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    found: dict[str, list[tuple[tuple[int, int], _Call]]] = {}
    looped: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if backward:
            attr = _self_attr(func.value, me) if isinstance(func, ast.Attribute) and func.attr == "backward" else None
        else:
            attr = _self_attr(func, me)
        if attr is None:
            continue
        up, outputs = node, set()
        while up in parents and not isinstance(up, ast.stmt):
            if isinstance(up, _LOOPS):
                looped.add(attr)
            up = parents[up]
        statement = up
        if isinstance(up, ast.Assign) and (up.value is node or getattr(up.value, "value", None) is node):
            outputs = set().union(*(_names(t, me) for t in up.targets))
        while up in parents:
            if isinstance(up, _LOOPS):
                looped.add(attr)
            up = parents[up]
        inputs = set().union(*(_names(a, me) for a in node.args)) if node.args else set()
        text = ast.get_source_segment(source, statement if outputs else node) or attr  # dx1 = self.net.backward(do1)
        found.setdefault(attr, []).append(((node.lineno, node.col_offset), (outputs, inputs, text)))
    return {attr: [call for _, call in sorted(calls, key=lambda c: c[0])] for attr, calls in found.items()}, looped


def _misordered(model_type: type) -> tuple[tuple[Any, ...], ...]:
    """The backward calls of ``model_type``'s backward whose names point to another forward call than the one their
    place serves (see the module's docstring), read once per class."""
    if model_type in _FOUND:
        return _FOUND[model_type]
    found = []
    (forward_source, forward_tree), (backward_source, backward_tree) = _tree(model_type.forward), \
        _tree(model_type.backward)
    if forward_tree is not None and backward_tree is not None:
        forwards, looped = _calls(forward_source, forward_tree, backward=False)
        backwards, looped_back = _calls(backward_source, backward_tree, backward=True)
        for attr, calls in forwards.items():
            back = backwards.get(attr, [])
            n = len(calls)
            if n < 2 or len(back) != n or attr in looped or attr in looped_back:
                continue
            for k, (results, gradients, text) in enumerate(back, 1):
                of = set().union(*(_gradient_of(g) for g in gradients)) if gradients else set()
                wrt = set().union(*(_gradient_of(r) for r in results)) if results else set()
                named = [i for i, (outputs, inputs, _) in enumerate(calls, 1) if of & outputs or wrt & inputs]
                if not named and len(numbers := [_numbers(o | i) for o, i, _ in calls]) == len(set(numbers)) \
                        and all(len(own) == 1 for own in numbers):  # x1, x2 in forward; d1, d2 in backward
                    named = [i for i, own in enumerate(numbers, 1) if own == _numbers(gradients | results)]
                if len(named) == 1 and named[0] != n + 1 - k:
                    found.append((attr, n, k, named[0], text, calls[named[0] - 1][2], calls[n - k][2]))
    _FOUND[model_type] = tuple(found)
    return _FOUND[model_type]


def refuse_first_call_first(model: Any, repeats: dict[int, int]) -> None:
    """Raise where ``model``'s backward, written out, takes back the calls of a layer its last forward called more
    than once (``repeats``: {id(layer): calls}) in another order than last call first, as its names say."""
    problems = _misordered(type(model))
    if not problems:  # the common case, every backward of a model of one's own
        return
    for attr, n, k, i, text, named, served in problems:
        layer = model.__dict__.get(attr)
        if layer is None or repeats.get(id(layer)) != n:
            continue
        raise RuntimeError(
            f"{model.name}.backward: its backward call {k} of self.{attr} ({layer.name}), {text}, is by its names "
            f"the gradient of the forward's call {i}, {named}; but the calls of a layer called {n} times in one "
            f"forward are taken back last call first, so this one serves call {n + 1 - k}, {served}, and each "
            f"call would get the other's cache (its input, its dropout mask) silently. Take them back in reverse: "
            f"the backward of {', then '.join(f'call {j}' for j in range(n, 0, -1))} (PyTorch's autograd orders "
            f"them itself)")
