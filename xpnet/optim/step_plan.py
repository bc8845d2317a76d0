"""What an optimizer's step found in a model at its last step, so that the next step of an unchanged model skips
the full walk: ``params_and_grads``' two dicts by dotted name and each pair's checks, ~10 us of a tiny model's
~35 us step.

The model may change between any two steps: a layer added or replaced (``model[-1] = Linear(8, 3)``, an attribute
of a model of one's own), a parameter replaced (``layer.params["W"] = new``, ``model.to(...)``,
``load_state_dict``), a layer frozen or unfrozen (``requires_grad_``). So at every step the plan is held against the
model itself: the nodes' dotted names in walk order, each node's frozen flag, and each trainable node's ``params``
dict, its size and each array in it by identity; then each gradient must be a NumPy array of its parameter's shape
and dtype, and a node must hold no gradient under a name without a parameter (the full walk refuses it). Anything
else, and the step takes the full walk (its checks and errors) and makes a new plan. A model one level deep (a
Sequential of leaf layers, each once) is held against its ``named_children()`` and each child's being a built
leaf, which is what ``named_modules``' walk would find, without the walk's dict and set. Only for models whose every
trainable parameter is a NumPy array and whose parameter walk is xpnet's own (``Tree.params_and_grads``); the
plan keeps the dicts and arrays, not the layers (the optimizer holds its model by a weak reference).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import namespace, update_rule
from ..layers.tree import Tree

_NO_CHILDREN = Tree.named_children  # a leaf's (layers.tree's _visit asks the same)

__all__ = ["StepPlan", "MISSED", "Seen"]

MISSED = object()  # what StepPlan.collect gives where the model no longer matches the plan


def _no_plan() -> None:
    return None


class Seen:
    """The parameters that a step without a plan (CuPy's, PyTorch's arrays; several param groups) found, by the
    names their state has: what the next step finds renamed parameters by (``Optimizer._follow_renamed``), as it
    reads a plan's. Only where the arrays are updated in place (not JAX's, a new array at each step, which this
    would keep alive for nothing); copied with its optimizer, it becomes None, as a plan."""

    __slots__ = ("arrays",)

    def __init__(self, arrays: dict[str, Any]):
        self.arrays = arrays

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _no_plan, ()

    @classmethod
    def of(cls, arrays: dict[str, Any]) -> "Seen | None":
        first = next(iter(arrays.values()), None)
        if first is None or update_rule(namespace(first)) != "in place":
            return None
        return cls(dict(arrays))


class StepPlan:
    """``names``: the nodes' dotted names in ``named_modules`` order; ``nodes``: per node, ``None`` where it is
    frozen, else ``(params, count, entries)``: its ``params`` dict, its size, and ``(dotted name, key, array)``
    for each parameter in it. ``xp``: the namespace of the arrays (NumPy's), as the work items carry it."""

    __slots__ = ("names", "nodes", "xp", "children")

    def __init__(self, names: list[str], nodes: list[Any], xp: Any, children: list[str] | None = None):
        self.names, self.nodes, self.xp = names, nodes, xp
        self.children = children  # names[1:] where the model is one level deep: every child a leaf, each once

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        """Copied (with its optimizer), a plan becomes None: it holds the model's arrays, which a copy
        of the optimizer must neither duplicate nor hold; the next step makes it again."""
        return _no_plan, ()

    @classmethod
    def of(cls, model: Any, trained: dict[str, Any]) -> "StepPlan | None":
        """The plan of ``model`` whose full walk just found ``trained`` (its parameters that train, by dotted
        name), or None where it takes none (a walk of its own, an array not NumPy's, no parameter)."""
        kind = type(model)
        if not trained or getattr(kind, "params_and_grads", None) is not Tree.params_and_grads \
                or getattr(kind, "_named", None) is not Tree._named:
            return None
        modules = model.named_modules()
        nodes: list[Any] = []
        flat: list[tuple[str, Any]] = []
        for prefix, node in modules.items():
            if node._frozen:
                nodes.append(None)
                continue
            dot = prefix + "." if prefix else ""
            params = node.params
            entries = [(dot + k, k, p) for k, p in params.items()]
            if any(type(p) is not np.ndarray for _, _, p in entries):
                return None
            nodes.append((params, len(params), entries))
            flat += [(name, p) for name, _, p in entries]
        # the same parameters, names and order as the full walk's (a key with a dot could make two names one)
        pairs = zip(flat, trained.items())
        if len(flat) != len(trained) or any(name != k or p is not v for (name, p), (k, v) in pairs):
            return None
        names = list(modules)
        leaves = len(model.named_children()) == len(names) - 1 and all(_leaf(node) for node in
                                                                        list(modules.values())[1:])
        return cls(names, nodes, namespace(flat[0][1]), names[1:] if leaves else None)

    def arrays(self) -> dict[str, Any]:
        """The trainable parameters the plan was made of, by their dotted names then."""
        return {name: p for node in self.nodes if node is not None for name, _, p in node[2]}

    def collect(self, model: Any, adding: bool, eps_check: Any) -> Any:
        """``Optimizer._collect``'s answer for ``model`` as the plan has it (work items; None where ``adding``
        and no backward reached any parameter), or MISSED where the model or a gradient does not match it."""
        leaves = self.children
        if leaves is not None:  # one level deep: named_modules' answer is the model and its children, as planned
            children = model.named_children()
            own = model.__dict__
            if list(children) != leaves or "params" not in own or "grads" not in own or "buffers" not in own:
                return MISSED  # (the full walk names a node built without super().__init__())
            nodes: Any = [model, *children.values()]
        else:
            modules = model.named_modules()
            if list(modules) != self.names:
                return MISSED
            nodes = modules.values()
        work = []
        xp = self.xp
        for node, planned in zip(nodes, self.nodes):
            if leaves is not None and node is not model:  # _leaf, inline: children of its own go to the walk
                own = node.__dict__
                if type(node).named_children is not _NO_CHILDREN or "named_children" in own or "params" not in own \
                        or "grads" not in own or "buffers" not in own:
                    return MISSED
            if planned is None:
                if not node._frozen:
                    return MISSED
                continue
            params, count, entries = planned
            if node._frozen or node.params is not params or len(params) != count:
                return MISSED
            grads = node.grads
            found = 0
            for name, key, p in entries:
                if params.get(key) is not p:
                    return MISSED
                try:  # dict's own get: Grads.get would ask whose read it is, at each parameter
                    g = dict.get(grads, key)
                except TypeError:  # a layer of one's own whose grads is no dict
                    return MISSED
                if g is None:
                    if adding and key not in grads:  # no backward reached it since zero_grad(): left out
                        continue
                    return MISSED
                if type(g) is not np.ndarray or g.shape != p.shape or g.dtype != p.dtype:
                    return MISSED
                found += 1
                if eps_check is not None:
                    eps_check(p)
                work.append((name, model, name, p, g, xp))
            if len(grads) != found:  # a gradient under a name that holds no parameter: the full walk refuses it
                return MISSED
        if not work:
            return None if adding else MISSED
        return work


def _leaf(node: Any) -> bool:
    """A layer without children, built: what ``named_modules``' walk takes as it is, without a call."""
    return type(node).named_children is _NO_CHILDREN and "named_children" not in node.__dict__ and _built(node)


def _built(node: Any) -> bool:
    """Its stores there (else the full walk names the ``__init__`` that did not call ``super().__init__()``)."""
    own = node.__dict__
    return "params" in own and "grads" in own and "buffers" in own
