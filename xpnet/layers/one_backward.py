"""A model called twice, then given one backward, PyTorch's ``loss(model(x1), model(x2)).backward()``: refused.

PyTorch's autograd keeps each call's graph, so one ``loss.backward()`` after ``out1 = model(x1)`` and
``out2 = model(x2)`` goes back through both calls. An xpnet model keeps its last call's caches: its one backward
serves ``x2``'s call, whatever gradient it is given (``out1``'s, their sum), with ``x2``'s input and dropout mask,
silently where the shapes agree. A second backward is refused already (:func:`.backward_calls.rounded`);
this refuses the first, where the line calling it says the calls were PyTorch's pair. When a model's backward finds
more than one
training forward since its last, the backward's caller is read (its file, parsed once, the answer kept per line):
two or more calls of the model, ``model(...)`` or ``model.forward(...)`` (on other inputs, or on one where the
model drops at random: R-Drop's two passes), in statements of the block that holds the backward (or of the ``if``,
``with``, ``try`` blocks around it), with no backward of it between, are refused. Statements joined by ``;`` count
as the lines they would take (the backward's own is the one on its line that calls a backward). No such statement: a
call inside a loop or a ``with xn.no_grad():`` block (a sampling loop's, a target's under no_grad),
``model.predict`` (a look, which leaves the caches alone), a call whose output goes nowhere a loss could take it
from (a statement of its own, ``.shape``). A call in a comprehension whose outputs the statement joins
(``sum(model(x) for x in xs)``, ``np.stack([model(x) for x in xs])``) is a call per element, more than one where the
backward found more than one forward; a comprehension kept as a list (``outs = [model(x) for x in xs]``) is a loop
(REINFORCE's per-step calls). Calls through a function of one's own (``a = run(x1); b = run(x2)``, ``run`` calling
the model) count as calls of the model: a training forward made while another's backward is pending (never a
step's path) notes the function and the line calling it (``note_helper``), and the backward's block is read for
calls of that function too. A first forward is not noted (that would cost every step): a function called once,
before a direct call of the model (``a = run(x1); b = model(x2)``), is not followed. Left alone: a stateful model's
calls (truncated backpropagation through time: the last chunk's backward alone, as PyTorch's after
``h.detach()``), and a layer called by itself (a test of its own calls).

A loop before the backward (in the same blocks) whose calls feed each other is refused too: the char-RNN
classification tutorial's ``for i in range(n): output, hidden = rnn(line_tensor[i], hidden)``, then one backward
from the last output, where PyTorch's goes back through every letter and xpnet's served the last letter alone,
silently. A recurrence is a call assigned to a name it also takes (``hidden`` above); a loop that calls the model
on inputs made otherwise (sampling, an environment's states), or under ``with xn.no_grad():``, is left alone.

The backward's own line names the model: the outermost ``R.backward(...)`` (``model.backward(criterion.backward())``
is the model's, where two receivers used to leave the check out).
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
_FOUND: dict[tuple[str, int], tuple[tuple[str, ...], bool] | None] = {}  # (file, line) -> _block_calls
_LOOPS: dict[tuple[str, int], str | None] = {}  # (file, line) -> _recurrent_loop


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
    """The source of each ``R`` in the calls ``R.backward(...)`` (``backward_self``...) within ``node``."""
    return {ast.get_source_segment(source, n.func.value) or "" for n in ast.walk(node) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and n.func.attr.startswith("backward")}


def _receiver(stmt: ast.stmt, source: str) -> str | None:
    """The ``R`` of the backward the statement ``stmt`` calls: the outermost call ``R.backward(...)``
    (``model.backward(criterion.backward())`` is the model's, ``dx = model.backward(dy)`` too), else the one
    receiver of the backward calls within it; None where that is ambiguous."""
    value = getattr(stmt, "value", None)
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr.startswith("backward"):
        return ast.get_source_segment(source, value.func.value) or None
    receivers = _receivers(stmt, source)
    return receivers.pop() if len(receivers) == 1 else None


def _calls_of(stmt: ast.stmt, receiver: str, source: str, helpers: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The calls ``receiver(...)`` and ``receiver.forward(...)`` within the simple statement ``stmt``, and those of
    a function named in ``helpers`` (``run(x)``, ``self.run(x)``): (the call's source, its positional
    arguments')."""
    found = []
    parents = {child: node for node in ast.walk(stmt) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(stmt):
        if not isinstance(node, ast.Call) or _unused(node, parents.get(node)):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "forward":
            func = func.value
        helper = isinstance(node.func, (ast.Name, ast.Attribute)) and \
            getattr(node.func, "id", getattr(node.func, "attr", None)) in helpers
        if helper or ast.get_source_segment(source, func) == receiver:
            text = ast.get_source_segment(source, node) or receiver
            if helper:
                text += f" (calling {receiver})"
            inputs = "; ".join(ast.dump(a) for a in node.args)
            found.append((text, inputs))
            comprehension = _comprehension_of(node, parents)
            if comprehension is not None:  # one call a element: PyTorch's one backward goes through each
                found[-1] = (f"`{ast.get_source_segment(source, comprehension)}` (a call per element)", inputs)
                found.append((f"{_LAST}{text}", inputs + " (another element)"))
    return found


_LAST = "the last element's "  # a comprehension's last call, as the message names it
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


_JOINS = frozenset({"sum", "mean", "stack", "concatenate", "concat", "cat", "vstack", "hstack"})


def _comprehension_of(call: ast.Call, parents: dict) -> ast.AST | None:
    """The comprehension whose element (or condition) holds ``call`` where its outputs are joined in that
    statement (``sum(model(x) for x in xs)``, ``np.stack([model(x) for x in xs])``: a call per element, all of
    them going on into one value), or None; a call in its first iterable runs once. A comprehension kept as a
    list (``probs = [policy(s) for s in states]``) is left alone, as a loop: REINFORCE's per-step calls, each
    given its own backward (the last first, the next refused by ``rounded``) or a stack of them (refused by shape,
    saying what to write)."""
    child, node = call, parents.get(call)
    while node is not None:
        if isinstance(node, _COMPREHENSIONS) and child is not node.generators[0].iter:
            join = parents.get(node)
            func = getattr(join, "func", None)
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            return node if isinstance(join, ast.Call) and name in _JOINS else None
        child, node = node, parents.get(node)
    return None


def _unused(call: ast.Call, parent: ast.AST | None) -> bool:
    """Whether the output of ``call`` goes nowhere a loss could take it from: dropped (a statement of its own: its
    caches alone count, as in PyTorch its graph would not reach the loss), or read for its ``.shape``, ``.dtype``,
    ``.ndim``, ``.size``, ``len``."""
    if isinstance(parent, ast.Expr):
        return True
    if isinstance(parent, ast.Attribute) and parent.attr in ("shape", "dtype", "ndim", "size", "device"):
        return True
    return isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id == "len"


# Statements holding others: the calls inside one are no statement of the backward's block. A loop or a function
# ends the search; an if, a with or a try around the backward does not (the calls before it count).
_COMPOUND = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.AsyncFor, ast.While, ast.If, ast.With,
             ast.AsyncWith, ast.Try, ast.ExceptHandler)
_OPEN = (ast.If, ast.With, ast.AsyncWith, ast.Try, ast.ExceptHandler)


def _backward_at(filename: str, line: int) -> tuple[str, dict, ast.stmt, str] | None:
    """(the file's source, its statements' places, the statement on ``line`` calling a backward, that backward's
    receiver), or None where the line holds no single such statement (of several joined by ``;``, the one that
    calls a backward: ``a = model(x1); b = model(x2); model.backward(dy)``)."""
    source, tree, places = _tree(filename)
    here = [stmt for stmt in places if not isinstance(stmt, _COMPOUND) and isinstance(stmt, ast.stmt)
            and stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno)]
    if len(here) > 1:
        here = [stmt for stmt in here if _receivers(stmt, source)]
    receiver = _receiver(here[0], source) if len(here) == 1 else None
    return None if receiver is None else (source, places, here[0], receiver)


def _before(current: ast.stmt, receiver: str, source: str, places: dict) -> Any:
    """The statements before ``current``, last first, in its block and the blocks around it up to a loop or a
    function, back to ``receiver``'s last backward (not included)."""
    while current in places:
        holder, block, index = places[current]
        for stmt in reversed(block[:index]):
            if receiver in _receivers(stmt, source):
                return
            yield stmt
        if not isinstance(holder, _OPEN):
            return
        current = holder


def _block_calls(filename: str, line: int, helpers: tuple[str, ...] = ()) -> tuple[tuple[str, ...], bool] | None:
    """The calls of the model whose backward is called on ``line``, in the statements before it since its last
    backward (in its block, and in the blocks around it up to a loop or a function), and whether all take the same
    inputs; None where there are fewer than two."""
    found = _backward_at(filename, line)
    if found is None:
        return None
    source, places, here, receiver = found
    calls: list[tuple[str, str]] = []
    for stmt in _before(here, receiver, source, places):
        if not isinstance(stmt, _COMPOUND):
            calls = _calls_of(stmt, receiver, source, helpers) + calls
    if len(calls) < 2:
        return None
    return tuple(text for text, _ in calls), len({inputs for _, inputs in calls}) == 1


def _recurrent_loop(filename: str, line: int) -> str | None:
    """The call ``out, h = receiver(..., h)`` of a loop before the backward on ``line`` (in its block and the blocks
    around it up to a loop or a function, since the receiver's last backward) that takes a name it assigns: the
    loop's calls feed each other. None where there is none."""
    found = _backward_at(filename, line)
    if found is None:
        return None
    source, places, here, receiver = found
    for stmt in _before(here, receiver, source, places):
        if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            call = _feeding_call(stmt, receiver, source)
            if call is not None:
                return call
    return None


def _feeding_call(loop: ast.AST, receiver: str, source: str) -> str | None:
    """The source of an assignment in ``loop`` of a call of ``receiver`` taking a name the assignment sets, outside
    a ``with xn.no_grad():`` (or ``set_grad_enabled``, ``inference_mode``) block."""
    untracked = {id(node) for block in ast.walk(loop) if isinstance(block, (ast.With, ast.AsyncWith))
                 and any(word in (ast.get_source_segment(source, item.context_expr) or "")
                         for item in block.items for word in ("no_grad", "set_grad_enabled", "inference_mode"))
                 for stmt in block.body for node in ast.walk(stmt)}
    for node in ast.walk(loop):
        if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Call) or id(node) in untracked:
            continue
        func = node.value.func
        if isinstance(func, ast.Attribute) and func.attr == "forward":
            func = func.value
        if ast.get_source_segment(source, func) != receiver:
            continue
        assigned = {n.id for target in node.targets for n in ast.walk(target) if isinstance(n, ast.Name)}
        taken = {n.id for arg in [*node.value.args, *(k.value for k in node.value.keywords)] for n in ast.walk(arg)
                 if isinstance(n, ast.Name)}
        if assigned & taken:
            return ast.get_source_segment(source, node)
    return None


def _drops(model: Any) -> bool:
    """Whether ``model`` drops at random in training (a Dropout's ``p``, an attention's ``dropout``): two calls on
    one input then differ (R-Drop's and SimCSE's two passes)."""
    return any(isinstance(v, float) and v > 0 for node in model.named_modules().values()
               for v in (getattr(node, "p", None), getattr(node, "dropout", None)))


def _stateful(model: Any) -> bool:
    """Whether ``model`` carries a state from one call into the next (a stateful recurrent layer): truncated
    backpropagation through time, whose backward serves the last chunk alone, as PyTorch's after ``h.detach()``."""
    return any(getattr(node, "stateful", False) is True for node in model.named_modules().values())


HELPED = "_forwards_through_a_function"  # on a model: (id of the frame, function, line) of its last such calls


def note_helper(model: Any) -> None:
    """A training forward of ``model`` while another's backward is pending (never a training step's path: a step's
    forward follows a backward): where the first frame outside xpnet is a function of one's own, called by another
    frame (``a = run(x1); b = run(x2)``), that frame's id, the function's name and the calling line, for the
    backward's check of its block (``refuse_one_backward_for_two_calls``); the last two kept."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    if frame is None or frame.f_back is None or not frame.f_code.co_name.isidentifier():  # <module>, <listcomp>
        return
    records = model.__dict__.setdefault(HELPED, [])
    records.append((id(frame.f_back), frame.f_code.co_name, frame.f_back.f_lineno))
    del records[:-2]


def refuse_one_backward_for_two_calls(model: Any) -> None:
    """Raise where the backward of ``model`` (a container), after more than one training forward, is called on a
    line whose block calls the model twice before it (see the module's docstring)."""
    if not model.uses_inside:  # a layer by itself: a test of its own calls (lin(x1); lin(x2); lin.backward(dy2))
        return
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    if frame is None:
        return
    key = (frame.f_code.co_filename, frame.f_lineno)
    if key not in _FOUND:
        _FOUND[key] = _block_calls(*key)
        _LOOPS[key] = _recurrent_loop(*key)
    found, loop = _FOUND[key], _LOOPS[key]
    helpers = tuple(sorted({name for outer, name, line in model.__dict__.pop(HELPED, ())
                            if outer == id(frame) and line <= frame.f_lineno}))
    if helpers and (found is None or (found[1] and not _drops(model))):  # calls through a function of one's own
        if key + helpers not in _FOUND:
            _FOUND[key + helpers] = _block_calls(*key, helpers)
        found = _FOUND[key + helpers]
    if _stateful(model):
        return
    if loop is not None:
        raise RuntimeError(
            f"{model.name}.backward after a loop of `{loop}`: each call takes what the one before returned, and "
            f"PyTorch's one backward goes back through every step, but an xpnet model keeps its last call's caches "
            f"only, so this backward serves the last step alone (a gradient through one step, silently short). Put "
            f"the loop in the forward of a model of your own holding {model.name} (each call is kept there), whose "
            f"backward takes the steps back from the last to the first, passing each step's gradient of the state "
            f"to the step before (docs/from-pytorch.md, the char-RNN tutorials)")
    if found is None or (found[1] and not _drops(model)):
        return  # the same inputs each time, deterministic (a look at the weights, then need_weights=False): no matter
    calls = found[0]
    shown = ", ".join(c for c in calls if not c.startswith(_LAST))  # a comprehension once
    raise RuntimeError(
        f"{model.name}.backward after {shown}: PyTorch's one backward goes back through every call, "
        f"but an xpnet model keeps its last call's caches only, so this backward serves {calls[-1]} alone, whatever "
        f"gradient it is given (with that call's input and dropout mask). Call it within one forward of a model of "
        f"your own (each call is kept there, and its backward calls take them back last call first), join the inputs "
        f"into one batch, or take each call's backward before the next call; a call for a target alone goes under "
        f"`with xn.no_grad():` before the training call, or is model.predict(...)")
