"""The state a forward leaves on a layer and on the layers inside it, which another call would replace.

A layer keeps what its backward needs from its forward, and a second call would replace the first's. What the modules
that keep and put back that state share: the layer's nodes (``_nodes``: the layer, the layers inside it and those it
runs as attributes of its own), their state (``_state``: every attribute of each node, by reference: a forward
rebinds its caches, it does not write into them), what a node holds across forwards and is not a forward's state
(``_HELD``), putting a state back (``_restore``), and the names of the records kept on a node beside it (``_USES``,
``_LOST``, ``_PENDING``). :mod:`.uses` keeps the state each call of a layer used twice in a forward left, and puts it
back after an evaluation-mode look; :mod:`.reuse` puts it back for each backward call; :mod:`.evaluation_look`
keeps what an evaluation forward replaced; :mod:`.backward_calls` reads the records.
"""

from __future__ import annotations

from typing import Any

from . import left_out, stale
from .one_backward import HELPED
from .uncalled import FORWARDS
from .zero_grad import ARMED, BEFORE, LAST, READ, STEPPED


_USES = left_out.USES
# How many of a model's (or a lone layer's) own training forwards since its last backward (FORWARDS) a backward
# found replaced by a later one before it (``rounded``).
_LOST = "_forwards_replaced"
# Not a forward's state: what the layer holds across forwards, or what wraps its methods (xn.gradcheck's watchers).
# A model's record of calls (CALLS) is a forward's state: each call of a model called twice has its own.
_PENDING = "_training_forward_pending"  # on every node: what evaluation-mode forwards replaced (_Pending)
_HELD = frozenset({"params", "grads", "buffers", "forward", "backward", "backward_params", "training", "_frozen",
                   "_init_args", ARMED, _USES, FORWARDS, _LOST, _PENDING, HELPED, stale.STAMP, BEFORE, LAST, STEPPED,
                   READ})
_ABSENT = object()


def _state(layer: Any) -> list[tuple[Any, dict[str, Any]]]:
    """Every attribute a forward may rebind, of ``layer`` and of each layer inside it, by reference."""
    return [(node, {k: v for k, v in vars(node).items() if k not in _HELD and k not in node.kept_between_uses})
            for node in _nodes(layer)]


def _nodes(layer: Any) -> list[Any]:
    """``layer``, the layers inside it, and the layers each of them runs as an attribute of its own without
    holding it as a sub-layer (Conv1d's Conv2d on (N, C, 1, L)), each once."""
    found: dict[int, Any] = {}
    for node in layer.named_modules().values():
        todo = [node]
        while todo:
            one = todo.pop()
            if id(one) not in found:
                found[id(one)] = one
                todo += [v for v in vars(one).values() if hasattr(v, "named_modules") and hasattr(v, "backward")]
    return list(found.values())


def _restore(state: list[tuple[Any, dict[str, Any]]], unless_rebound_since: Any = None) -> None:
    """Put the attributes of ``state`` back; with ``unless_rebound_since`` (an earlier state), only those still
    as they were there (an attribute rebound since, by a backward, keeps its new value: the book's ``lstm.dh``)."""
    for i, (node, attributes) in enumerate(state):
        now = vars(node)
        before = unless_rebound_since[i][1] if unless_rebound_since is not None else None
        for k, v in attributes.items():
            current = now.get(k, _ABSENT)
            if current is v or (before is not None and current is not before.get(k, _ABSENT)):
                continue
            now[k] = v
