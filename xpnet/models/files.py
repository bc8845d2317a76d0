"""Models saved and loaded as device-independent ``.npz`` files: the architecture as a JSON record,
then every parameter and buffer, written atomically and read after checking every header."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .. import init as _init
from ..backend import to_numpy
from ..io.atomic import atomic_savez
from ..io.npz import NpzReader, XpnetFileError
from ..layers.base import layer_from_config
from .sequential import Sequential

__all__ = ["save_model", "load", "XpnetFileError", "FORMAT_VERSION", "check_format", "model_from_config",
           "stored_dtype", "read_state"]

_CONFIG_KEY = "__xpnet_model__"
FORMAT_VERSION = 1


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model``'s architecture, params and buffers to ``path`` (.npz) atomically."""
    arrays = {k: to_numpy(v) for k, v in model.state().items()}
    meta = {"format": FORMAT_VERSION, "layers": model.config()}
    arrays[_CONFIG_KEY] = np.asarray(json.dumps(meta))
    atomic_savez(path, arrays)


def load(path: str | os.PathLike, device: Any = "cpu") -> Sequential:
    """Rebuild a model saved with ``Sequential.save`` onto ``device``.

    Validates fully before use: the format version, the architecture record, and every array's
    shape and dtype (read from its header, before its data) against the layers the record builds;
    no name may be missing or extra. Layers are built without drawing weights (``xn.init`` is left
    untouched), so a file that declares huge layers but does not hold them fails at once.
    Raises :class:`XpnetFileError` (a ValueError) naming the path and what is wrong.
    """
    with NpzReader(path, "an xpnet model file (written by model.save)") as reader:
        meta = reader.record(_CONFIG_KEY)
        if meta is None:
            raise reader.error("it has no architecture record")
        check_format(reader, meta, "format", FORMAT_VERSION)
        model = model_from_config(reader, meta.get("layers"), "layers")
        read_state(reader, model, {name: name for name in model.state()}, set(reader.names) - {_CONFIG_KEY})
    return model.to(device)


def check_format(reader: NpzReader, meta: Any, field: str, known: int) -> None:
    """Raise unless ``meta[field]`` is the format version ``known`` this xpnet reads."""
    if not isinstance(meta, dict):
        raise reader.error(f"its record is a {type(meta).__name__}, expected a JSON object")
    version = meta.get(field)
    if version != known:
        raise reader.error(f"field {field!r} is {version!r}; this xpnet reads format {known} only (a file "
                           "from another xpnet version?)")


def model_from_config(reader: NpzReader, layers: Any, field: str) -> Sequential:
    """The model the architecture record ``layers`` describes, built without drawing any weights."""
    if not isinstance(layers, list):
        raise reader.error(f"field {field!r} is {type(layers).__name__}, expected a list of layers")
    built = []
    with _init.skip_init():
        for i, d in enumerate(layers):
            if not (isinstance(d, dict) and isinstance(d.get("type"), str) and isinstance(d.get("config"), dict)):
                raise reader.error(f"field {field}[{i}] is {d!r}, expected {{'type': str, 'config': {{...}}}}")
            try:
                built.append(layer_from_config(d["type"], d["config"]))
            except (TypeError, ValueError) as exc:
                raise reader.error(f"field {field}[{i}] ({d['type']}) cannot be built: {exc}") from None
    return Sequential(*built)


def stored_dtype(reader: NpzReader, names: list[str]) -> Any:
    """The one real floating dtype the arrays ``names`` hold (from their headers).

    It may differ from the layers' ``dtype`` record: a model cast with ``model.to(dtype=...)`` was
    saved with its old record by earlier versions; one dtype for all arrays is what a model can use.
    """
    found = {reader.header(n)[1].newbyteorder("=") for n in names}
    if len(found) > 1:
        raise reader.error(f"its arrays mix dtypes {sorted(d.name for d in found)}; a model holds one float dtype")
    for dtype in found:
        if dtype.kind != "f":
            raise reader.error(f"its arrays hold {dtype.name}, expected float32 or float64")
        return dtype
    return None


def read_state(reader: NpzReader, model: Any, names: dict[str, str], found: set[str]) -> None:
    """Put the file's arrays ``names[param]`` into ``model``'s params and buffers, after checking
    that ``found`` (the file's array names) holds exactly those names, then each shape and dtype."""
    expected = set(names.values())
    if expected != found:
        raise reader.error(f"its arrays do not match its architecture: missing {sorted(expected - found)}, "
                           f"unexpected {sorted(found - expected)}")
    state = model.state()
    dtype = stored_dtype(reader, list(names.values()))
    for param, stored in names.items():  # every header before any data
        reader.expect(stored, tuple(state[param].shape), dtype)
    arrays = {param: reader.array(stored, tuple(state[param].shape), dtype) for param, stored in names.items()}
    for param, value in arrays.items():
        model.set_param(param, value)
