"""Architecture records: a tree of layers as JSON, and the tree built back from it.

A record is ``{"type": "Linear", "config": {...}}``: the class and the constructor arguments
``layer.config()`` gives, which ``cls.from_config(config)`` takes back. A layer among the arguments
(``Residual(body)``, a model built from blocks) is kept as ``{"__layer__": record}``, an ``argparse.Namespace`` or a
``types.SimpleNamespace`` of such values (pytorch/examples' ``SNLIClassifier(config)``, ``config = args``) as
``{"__namespace__": {...}, "kind": "argparse"}`` and built back as the same kind. A class of the
user's also records its module (``"module": "mynets"``), and is found again by module and name
among the classes this program has defined; nothing is ever imported or unpickled.

One layer object met twice while one file is written (an Embedding and the ``TiedLinear`` that reads
its matrix, the same block placed twice) is recorded in full the first time and as ``{"same_as": k}``
after: k counts the layers recorded so far in the order each record is completed (a layer's arguments
before it), which is the order reading builds them in, so the file rebuilds one object, not two.
"""

from __future__ import annotations

import argparse
import numbers
import types
from typing import Any

from .base import (Layer, build_from_arguments, builds_from_arguments, init_arguments, is_xpnet_class, layer_class,
                   records_init_arguments)

__all__ = ["to_record", "from_record"]

_LAYER_KEY = "__layer__"
_SAME_KEY = "same_as"
_NAMESPACE_KEY = "__namespace__"
_NAMESPACES = {"argparse": argparse.Namespace, "types": types.SimpleNamespace}


def to_record(layer: Layer, seen: dict[int, int] | None = None) -> dict[str, Any]:
    """``layer`` as a JSON-able record; a TypeError names a constructor argument JSON cannot hold.
    ``seen`` (id of a layer -> its number) is shared by the records of one file."""
    seen = {} if seen is None else seen
    if id(layer) in seen:
        return {_SAME_KEY: seen[id(layer)]}
    cls = type(layer)
    config = init_arguments(layer) if records_init_arguments(cls) else dict(layer.config())
    arrays = [*layer.params.values(), *layer.buffers.values()]
    if "dtype" in config and arrays:  # model.to(dtype=...) casts the arrays, not the arguments
        config["dtype"] = str(arrays[0].dtype).rsplit(".", 1)[-1]
    # a RecurrentStack is saved as the LSTM(..., num_layers=2) that builds it
    record = {"type": getattr(layer, "saved_as", cls.__name__) if is_xpnet_class(cls) else cls.__qualname__,
              "config": {k: _encode(v, f"{cls.__qualname__}: constructor argument {k!r}", seen)
                         for k, v in config.items()}}
    if not is_xpnet_class(cls):
        record["module"] = cls.__module__
    seen[id(layer)] = len(seen)
    return record


def _encode(value: Any, where: str, seen: dict[int, int]) -> Any:
    if isinstance(value, Layer):
        return {_LAYER_KEY: to_record(value, seen)}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{where}[{i}]", seen) for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value) and _LAYER_KEY not in value \
            and _NAMESPACE_KEY not in value:
        return {k: _encode(v, f"{where}[{k!r}]", seen) for k, v in value.items()}
    if type(value) in _NAMESPACES.values():
        kind = "argparse" if type(value) is argparse.Namespace else "types"
        return {_NAMESPACE_KEY: {k: _encode(v, f"{where}.{k}", seen) for k, v in vars(value).items()}, "kind": kind}
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        raise TypeError(f"{where} is an array; a model file keeps the arrays of params and buffers, and constructor "
                        "arguments as JSON: build the layer from sizes (numbers) and set its params in __init__, "
                        "or give the class a config() and from_config(config)")
    raise TypeError(f"{where} is a {type(value).__name__}; a model file keeps constructor arguments as JSON "
                    "(numbers, strings, lists, dicts, layers, namespaces of them): pass such values, or give the "
                    "class a config() returning them (and a from_config(config) classmethod building it from them)")


class BuildError(ValueError):
    """A well-formed record whose class refuses the saved arguments (the file is a model file; the class
    as this program defines it does not take what it was built with)."""


def from_record(record: Any, field: str, built: list[Layer] | None = None) -> Layer:
    """The layer ``record`` describes (built as its class's ``from_config`` does). Raises ValueError
    naming ``field`` (its place in the file) when the record is malformed or cannot be built.
    ``built`` (the layers built so far, in order) is shared by the records of one file."""
    built = [] if built is None else built
    if isinstance(record, dict) and set(record) == {_SAME_KEY}:
        k = record[_SAME_KEY]
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(built):
            raise ValueError(f"field {field} is {record!r}, expected {{'same_as': k}} with k one of the "
                             f"{len(built)} layers recorded before it")
        return built[k]
    if not (isinstance(record, dict) and isinstance(record.get("type"), str)
            and isinstance(record.get("config"), dict) and isinstance(record.get("module", ""), str)):
        raise ValueError(f"field {field} is {record!r}, expected {{'type': str, 'config': {{...}}}}")
    config = {k: _decode(v, f"{field}.config.{k}", built) for k, v in record["config"].items()}
    try:
        cls = layer_class(record["type"], record.get("module"))
    except ValueError as exc:
        raise ValueError(f"field {field} ({record['type']}) cannot be built: {exc}") from None
    try:
        if records_init_arguments(cls) and builds_from_arguments(cls):
            layer = build_from_arguments(cls, config)
        else:
            layer = cls.from_config(config)
    except (TypeError, ValueError) as exc:
        raise BuildError(f"field {field} ({record['type']}) cannot be built from its saved "
                         f"arguments {sorted(config)}: {exc}") from None
    if not isinstance(layer, Layer):
        raise ValueError(f"field {field}: {record['type']}.from_config gave a {type(layer).__name__}, not a layer")
    built.append(layer)
    return layer


def _decode(value: Any, field: str, built: list[Layer]) -> Any:
    if isinstance(value, dict):
        if set(value) == {_LAYER_KEY}:
            return from_record(value[_LAYER_KEY], field, built)
        if set(value) == {_NAMESPACE_KEY, "kind"} and value["kind"] in _NAMESPACES \
                and isinstance(value[_NAMESPACE_KEY], dict):
            return _NAMESPACES[value["kind"]](**_decode(value[_NAMESPACE_KEY], field, built))
        return {k: _decode(v, f"{field}.{k}", built) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, f"{field}[{i}]", built) for i, v in enumerate(value)]
    return value
