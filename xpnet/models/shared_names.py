"""One layer object at several places of a model (PyTorch's ``l2.self_attn = l1.self_attn``): xpnet names it once,
at its first place (``named_modules``), where PyTorch's state dict names its arrays at every place. These turn
one into the other for :mod:`xpnet.models.torch_weights`."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["other_places", "named_at_every_place", "named_once"]


def other_places(model: Any) -> dict[str, str]:
    """{a later place of a shared node: the name xpnet gives it (its first place)}, by dotted names."""
    first = {id(node): name for name, node in model.named_modules().items()}
    found: dict[str, str] = {}

    def visit(prefix: str, node: Any) -> None:
        for name, child in node.named_children().items():
            place = prefix + name
            if first[id(child)] != place:
                found[place] = first[id(child)]  # the arrays under it are those under its first place
            else:
                visit(place + ".", child)

    visit("", model)
    return found


def _first_place(key: str, places: dict[str, str]) -> tuple[str, str] | None:
    """(``key`` under the first place of the shared node whose later place it starts with, that later place),
    else None."""
    for place, name in places.items():
        if key.startswith(place + "."):
            return (f"{name}.{key[len(place) + 1:]}" if name else key[len(place) + 1:]), place
    return None


def named_at_every_place(arrays: dict[str, Any], places: dict[str, str]) -> dict[str, Any]:
    """``arrays`` (PyTorch's names of xpnet's places) with each shared node's arrays under its later places too,
    the same array objects, as PyTorch's ``state_dict()`` gives them."""
    out = dict(arrays)
    for place, name in places.items():
        head = f"{name}." if name else ""
        out.update((f"{place}.{k[len(head):]}", v) for k, v in arrays.items() if k.startswith(head))
    return out


def named_once(arrays: dict[str, np.ndarray], places: dict[str, str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """``arrays`` without the keys of a shared node's later places (PyTorch's copies of the same tensors), and a
    problem for each such key whose array differs from the one at the node's first place."""
    kept: dict[str, np.ndarray] = {}
    problems: list[str] = []
    later: dict[str, tuple[str, str]] = {}
    for key, value in arrays.items():
        found = _first_place(key, places)
        if found is None:
            kept[key] = value
        else:
            later[key] = found
    for key, (first, place) in later.items():
        if first not in kept:
            kept[first] = arrays[key]
        elif arrays[key].shape != kept[first].shape or not np.array_equal(arrays[key], kept[first], equal_nan=True):
            problems.append(f"PyTorch's {key!r} differs from {first!r}, but the xpnet model holds one layer object "
                            f"at both places ({place!r} is {places[place]!r})")
    return kept, problems
