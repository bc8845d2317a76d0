"""Helpers on numbers, models and flat buffers: what the collectives pack, send and unpack."""

from __future__ import annotations

import numbers
from typing import Any

import array_api_compat
import numpy as np

from ..backend import namespace


def _is_number(value: Any) -> bool:
    """A Python or NumPy real scalar (not a bool, not an array)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _python_number(value: Any) -> int | float:
    return value.item() if isinstance(value, np.generic) else value


def _layers(model: Any) -> dict[str, Any]:
    """Every layer of a model (or the one layer) by dotted name, each holding its own params and buffers."""
    if not hasattr(model, "named_modules"):
        raise TypeError(f"expected an xpnet model or layer, got {type(model).__name__}")
    return model.named_modules()


def _signature(model: Any) -> tuple:
    entries = []
    for name, layer in _layers(model).items():
        for kind, store in (("param", layer.params), ("buffer", layer.buffers)):
            for key, v in store.items():
                entries.append((f"{name}.{key}" if name else key, kind, tuple(int(d) for d in v.shape),
                                str(v.dtype), namespace(v).__name__))
    return tuple(entries)


def _first_difference(reference: tuple, sig: tuple) -> str:
    for ref, mine in zip(reference, sig):
        if ref != mine:
            name, kind, shape, dtype, lib = mine
            return (f"{kind} {ref[0]!r} is {ref[2]} {ref[3]} ({ref[4]}) on the reference rank but "
                    f"{kind} {name!r} is {shape} {dtype} ({lib}) here")
    return f"{len(sig)} parameters and buffers instead of {len(reference)}"


def _group_by_dtype(entries: list) -> list[list]:
    """``(store, key, array)`` entries split by dtype, in order (one flat buffer per dtype)."""
    groups: dict[str, list] = {}
    for entry in entries:
        groups.setdefault(str(entry[2].dtype), []).append(entry)
    return list(groups.values())


def _numel(a: Any) -> int:
    n = 1
    for d in a.shape:
        n *= int(d)
    return n


def _pack(arrays: list) -> Any:
    """One new 1-D array holding ``arrays`` (same dtype and device) one after another."""
    xp = namespace(*arrays)
    return xp.concat([xp.reshape(a, (-1,)) for a in arrays])


def _empty_like_group(group: list) -> Any:
    like = group[0][2]
    xp = namespace(like)
    return xp.empty((sum(_numel(a) for _, _, a in group),), dtype=like.dtype,
                    device=array_api_compat.device(like))


def _zeros_like_group(group: list) -> Any:
    like = group[0][2]
    xp = namespace(like)
    return xp.zeros((sum(_numel(a) for _, _, a in group),), dtype=like.dtype,
                    device=array_api_compat.device(like))


def _unpack(flat: Any, group: list) -> list:
    """Views of ``flat`` shaped like the group's arrays."""
    xp = namespace(flat)
    parts, start = [], 0
    for _, _, like in group:
        n = _numel(like)
        parts.append(xp.reshape(flat[start:start + n], tuple(like.shape)))
        start += n
    return parts
