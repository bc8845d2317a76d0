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


def _reduction_entry(value: Any, caller: str) -> tuple:
    """What this rank passes to ``allreduce_sum``/``allreduce_mean``, as the ranks compare it before
    reducing: ``("scalar", "integer" or "real", python value)`` for a number or a 0-d array,
    ``("array", dtype, shape)``, or ``("bad", why)``."""
    mean = caller == "allreduce_mean"
    if _is_number(value):
        number = value.item() if isinstance(value, np.generic) else value
        return "scalar", "integer" if isinstance(number, numbers.Integral) else "real", number
    if not array_api_compat.is_array_api_obj(value):
        return "bad", f"expected a Python number or an array, got {type(value).__name__}"
    xp = namespace(value)
    if not xp.isdtype(value.dtype, ("integral", "real floating")):
        return "bad", f"expected a number or a real array, got dtype {value.dtype}"
    integral = xp.isdtype(value.dtype, "integral")
    if mean and integral:
        return "bad", f"expected a floating array, got dtype {value.dtype}; use allreduce_sum for integer counts"
    if value.ndim == 0:
        return ("scalar", "integer", int(value)) if integral else ("scalar", "real", float(value))
    return "array", str(value.dtype), tuple(int(d) for d in value.shape)


def _kind_text(kind: tuple) -> str:
    """``("scalar", "real")`` -> "a real number"; ``("array", "float32", (3,))`` -> "a float32 array (3,)"."""
    if kind[0] == "scalar":
        return f"{'an integer' if kind[1] == 'integer' else 'a real number'} (or 0-d array)"
    return f"a {kind[1]} array {kind[2]}"


def _grad_of(layer: Any, key: str, param: Any) -> Any:
    """``layer.grads[key]``, checked to have its parameter's shape and dtype."""
    g = layer.grads.get(key)
    if g is None:
        raise RuntimeError(f"allreduce_grads: no gradient for parameter {key!r} of {type(layer).__name__}; "
                           "call model.backward(...) first")
    if tuple(g.shape) != tuple(param.shape) or g.dtype != param.dtype:
        raise ValueError(f"allreduce_grads: the gradient of {key!r} in {type(layer).__name__} is "
                         f"{tuple(g.shape)} {g.dtype}, but the parameter is {tuple(param.shape)} {param.dtype}")
    return g


def _layers(model: Any) -> dict[str, Any]:
    """Every layer of a model (or the one layer) by dotted name, each holding its own params and buffers."""
    if not hasattr(model, "named_modules"):
        raise TypeError(f"expected an xpnet model or layer, got {type(model).__name__}")
    return model.named_modules()


def _frozen(model: Any) -> list[str]:
    """The dotted names of the layers of ``model`` whose parameters ``requires_grad_(False)`` froze (no
    gradient to reduce)."""
    return [name for name, layer in _layers(model).items() if layer._frozen and layer.params]


def _signature(model: Any, frozen: bool = False) -> tuple:
    """Each parameter and buffer's name, kind, shape, dtype and library (``frozen``: a frozen parameter's
    kind says so, for the all-reduce, which leaves it out)."""
    entries = []
    for name, layer in _layers(model).items():
        param = "frozen param" if frozen and layer._frozen else "param"
        for kind, store in ((param, layer.params), ("buffer", layer.buffers)):
            for key, v in store.items():
                entries.append((f"{name}.{key}" if name else key, kind, tuple(int(d) for d in v.shape),
                                str(v.dtype), namespace(v).__name__))
    return tuple(entries)


def _first_difference(reference: tuple, sig: tuple) -> str:
    for ref, mine in zip(reference, sig):
        if ref != mine:
            name, kind, shape, dtype, lib = mine
            return (f"{ref[1]} {ref[0]!r} is {ref[2]} {ref[3]} ({ref[4]}) on the reference rank but "
                    f"{kind} {name!r} is {shape} {dtype} ({lib}) here")
    return f"{len(sig)} parameters and buffers instead of {len(reference)}"


def _group_by_dtype(entries: list) -> list[list]:
    """``(store, key, array, ...)`` entries split by dtype, in order (one flat buffer per dtype)."""
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
    return xp.empty((sum(_numel(e[2]) for e in group),), dtype=like.dtype, device=array_api_compat.device(like))


def _zeros_like_group(group: list) -> Any:
    like = group[0][2]
    xp = namespace(like)
    return xp.zeros((sum(_numel(e[2]) for e in group),), dtype=like.dtype, device=array_api_compat.device(like))


def _unpack(flat: Any, group: list) -> list:
    """Views of ``flat`` shaped like the group's arrays (the third item of each entry)."""
    xp = namespace(flat)
    parts, start = [], 0
    for entry in group:
        like = entry[2]
        n = _numel(like)
        parts.append(xp.reshape(flat[start:start + n], tuple(like.shape)))
        start += n
    return parts
