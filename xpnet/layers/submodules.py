"""The one walk of the places where a node holds a layer.

How a layer is held. A node holds a child in an attribute (``self.conv``, named ``"conv"``), as an entry of a list,
tuple or dict in an attribute (``self.blocks[0]``, ``"blocks.0"``; ``self.heads["age"]``, ``"heads.age"``), or, in
a Sequential, as an entry of its ``layers`` list named by position (``"2"``). A :class:`Place` is one such spot and
:func:`places` lists a node's. Replacing a layer is putting another at a place: at the one a name leads to
(``model[i] = layer``: a layer held at two places stays at the other, as PyTorch's), or at every
place holding it (:func:`replace_everywhere`, by identity: ``xn.freeze_batch_norm``'s "a layer held twice stays one
layer"). Nothing of the old layer passes to the new one.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, NamedTuple

__all__ = ["Place", "places", "replace_everywhere"]

_STORES = ("params", "grads", "buffers")  # a node's own arrays by name (never layers)


class Place(NamedTuple):
    """Where ``holder`` keeps an object: its attribute ``attr`` (``key`` None), or the entry ``key`` of the list,
    tuple or dict that attribute is."""

    holder: Any
    attr: str
    key: Any = None

    def put(self, new: Any) -> None:
        """Put ``new`` there; a tuple, which cannot change, is replaced by one holding ``new``."""
        own = vars(self.holder)
        if self.key is None:
            own[self.attr] = new
        elif isinstance(own[self.attr], tuple):
            old = own[self.attr]
            own[self.attr] = old[:self.key] + (new,) + old[self.key + 1:]
        else:
            own[self.attr][self.key] = new


def places(node: Any) -> Iterator[tuple[Place, Any]]:
    """Every place of ``node``'s attributes, and of the lists, tuples and dicts in them, with what it holds."""
    for attr, value in list(vars(node).items()):
        if attr in _STORES:
            continue
        if isinstance(value, (list, tuple)):
            yield from ((Place(node, attr, i), v) for i, v in enumerate(value))
        elif isinstance(value, dict):
            yield from ((Place(node, attr, k), v) for k, v in list(value.items()))
        else:
            yield Place(node, attr), value


def replace_everywhere(nodes: Iterable[Any], new: dict[int, Any]) -> None:
    """Put ``new[id(layer)]`` at every place of ``nodes`` holding a layer whose ``id`` is a key of ``new``."""
    for node in nodes:
        for place, value in list(places(node)):
            if id(value) in new:
                place.put(new[id(value)])
