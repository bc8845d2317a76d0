"""Which layer of a failing model is wrong: :func:`locate`, run by ``xn.gradcheck`` only when a check fails.

A wrong dx spoils the rows of every layer before it, not its own: a Sigmoid that forgets ``(1 - out)``
fails ``0.W``, ``0.b`` and ``input``, a block that forgets its skip's ``+ dy`` the same, and the faulty layer
has no row or an ``ok`` one. So the report's rows say where the damage shows, not where it comes from.

How the fault is located:

1. One forward pass of the float64 copy, in training mode with the generators rewound (the masks of the
   check), records the inputs each direct child of the model is called with: the layers of a Sequential,
   the attributes of a model of the user's (``Residual``, ``Concat`` alike).
2. Walking back from the output (the last child called first), each child is checked on its own, on the
   input it saw, by ``xn.gradcheck`` with the same settings through a random projection of its output. The
   first child whose own check fails is the fault: its dx is what spoils the rows before it.
3. A failing child that has children of its own is searched the same way; when all of its children pass,
   the fault is its own ``backward`` (a skip or a value used twice whose gradients are not added).
   When every child of the model passes, the fault is the model's own ``backward``.
4. A child called more than once in one forward (a shared layer, a cell inside a time loop) has no single
   input to check it on: it is skipped, and the report says so.

The cost is at most one check per child, each over the child's own entries only.
"""

from __future__ import annotations

from typing import Any, Callable

from .backend import namespace

__all__ = ["locate"]


def locate(model: Any, xs: list[Any], check: Callable[..., Any], rewind: Callable[[], None]) -> list[str]:
    """Lines for the gradcheck report naming the first layer of ``model`` (on inputs ``xs``) whose own check
    fails, walking back from the output, and the children that could not be checked. ``check(layer, x)``
    runs the gradient check of one layer; ``rewind()`` puts the model's generators back to the check's."""
    found, skipped, passes = _search(model, "", xs, check, rewind)
    lines = []
    if found is not None:
        lines.append(found)
    elif skipped:
        lines.append(f"every layer of {model.name} that could be checked passes its own check: the fault is in "
                     f"{model.name}.backward or in a layer that could not be checked")
    else:
        lines.append(f"every layer of {model.name} passes its own check: the fault is in how {model.name}.backward "
                     "combines them (a skip or a value used twice whose gradients are not added?)")
    if skipped:
        lines.append("could not localise: " + "; ".join(skipped))
    lines.append(f"(located in {passes} more forward passes, each of one layer or block)")
    return lines


def _search(model: Any, prefix: str, xs: list[Any], check: Callable[..., Any],
            rewind: Callable[[], None]) -> tuple[str | None, list[str], int]:
    """(the line naming the faulty layer inside ``model`` or None, the children skipped, forward passes)."""
    children = model.named_children()
    calls = _record(model, children, xs, rewind)
    skipped, passes = [], 0
    for name in reversed(list(calls)):
        child, seen = children[name], calls[name]
        path = prefix + name
        if len(seen) != 1:
            skipped.append(f"{path} ({child.name}) was called {len(seen)} times in one forward")
            continue
        try:
            report = check(child, seen[0] if len(seen[0]) > 1 else seen[0][0])
        except Exception as exc:  # noqa: BLE001 - a diagnosis: say what stood in the way and go on
            skipped.append(f"{path} ({child.name}) could not be checked on its own: {exc}")
            continue
        passes += report.forward_passes
        if report.ok:
            continue
        if child.named_children():
            inner, inner_skipped, inner_passes = _search(child, path + ".", list(seen[0]), check, rewind)
            skipped += inner_skipped
            passes += inner_passes
            if inner is not None:
                return inner, skipped, passes
            return _blame(path, child, report, unchecked=bool(inner_skipped)), skipped, passes
        return _blame(path, child, report), skipped, passes
    return None, skipped, passes


def _blame(path: str, layer: Any, report: Any, unchecked: bool = False) -> str:
    failed = report.failures
    inputs = [row for row in failed if row.name.startswith("input")]
    what = "; ".join(_describe(row, report) for row in failed)
    line = f"the first layer whose own check fails (walking back from the output): {path} ({layer.name}): {what}"
    if inputs:
        line += " - the rows before it fail because its dx is wrong"
    if unchecked:
        line += f"; its layers that could be checked pass, so the fault is in {layer.name}.backward itself or in " \
                "a layer that could not be checked"
    elif layer.named_children():
        line += f"; its own layers pass their checks, so the fault is in {layer.name}.backward itself"
    return line


def _describe(row: Any, report: Any) -> str:
    name = "input gradient" if row.name == "input" else row.name
    if row.status != "FAIL":
        return f"{name} {row.status[len('FAIL: '):]}"
    tol = report.atol + report.rtol * abs(row.numerical)
    where = "" if row.worst_index is None else f" at {row.worst_index}"
    return (f"{name} err/tol {abs(row.numerical - row.analytic) / tol:.3g}{where} (numerical {row.numerical:.4g}, "
            f"analytic {row.analytic:.4g})")


def _record(model: Any, children: dict[str, Any], xs: list[Any], rewind: Callable[[], None]) -> dict[str, list]:
    """The arrays each direct child's forward was given in one forward pass of ``model``, by child name,
    in the order of their first calls (a list of calls per child)."""
    calls: dict[str, list[tuple[Any, ...]]] = {}
    names: dict[int, str] = {}
    for name, child in children.items():
        names.setdefault(id(child), name)
    wrapped = []
    for child in children.values():
        if "forward" in vars(child):  # already recorded under another name (a shared layer)
            continue
        wrapped.append(child)
        child.forward = _recording(child, child.forward, names[id(child)], calls)
    rewind()
    try:
        model.forward(*xs, train=True)
    finally:
        for child in wrapped:
            vars(child).pop("forward", None)
    return calls


def _recording(child: Any, forward: Callable[..., Any], name: str, calls: dict[str, list]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        arrays = tuple(a for a in args if hasattr(a, "shape"))
        calls.setdefault(name, []).append(tuple(_copy(a) for a in arrays))
        return forward(*args, **kwargs)
    return call


def _copy(a: Any) -> Any:
    return namespace(a).asarray(a, copy=True)
