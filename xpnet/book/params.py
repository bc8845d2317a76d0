"""The book's ``params.pkl`` files loaded into xpnet models, without running pickled code.

How loading goes:

1. ``read_book_params(path)`` reads the pickle with the restricted unpickler of
   :mod:`xpnet.io.unpickle` (arrays, dicts, lists, numbers and strings only), and checks that it is a
   dict of numeric arrays.
2. A builder of :mod:`xpnet.book.vol1` makes the book's network from the book constructor's arguments.
3. The arrays are copied in the book's order: ``W1, b1`` into the first layer with a weight
   (Linear = the book's Affine, (in, out); Conv2d = Convolution, (FN, C, FH, FW)), ``W2, b2`` into
   the next, and ``gamma1, beta1``, ... into the BatchNorm layers in order. Missing, unexpected or
   misshapen arrays are an error naming the key before anything is copied.

The book saves no BatchNorm running statistics: they start at 0, as in the book's own network
after ``load_params``; run train-mode forwards over training data to fill them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import init as _init_module
from ..backend import to_device
from ..io.unpickle import read_arrays_pickle
from ..layers import BatchNorm
from ..models import Sequential
from .vol1 import BOOK_MODELS

__all__ = ["read_book_params", "load_book_params"]


def read_book_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The ``{name: array}`` dict of a book ``params.pkl``, read with a restricted unpickler (never
    plain ``pickle.load``). Raises ValueError naming the file for anything else."""
    data = read_arrays_pickle(path, "read_book_params")
    path = os.fspath(path)
    if not isinstance(data, dict):
        raise ValueError(f"read_book_params: {path!r} holds a {type(data).__name__}, expected a dict of arrays "
                         "as the book's save_params writes")
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise ValueError(f"read_book_params: {path!r}: entry {key!r} is {kind}, expected a numeric NumPy array")
    return dict(data)


def _book_keys(model: Sequential) -> list[tuple[str, Any, str]]:
    """(book key, layer, param) in the book's numbering: W/b per weighted layer, gamma/beta per BatchNorm."""
    keys, weighted, norms = [], 0, 0
    for layer in model.layers:
        if "W" in layer.params:
            weighted += 1
            keys += [(f"{k}{weighted}", layer, k) for k in ("W", "b") if k in layer.params]
        elif isinstance(layer, BatchNorm):
            norms += 1
            keys += [(f"{k}{norms}", layer, k) for k in ("gamma", "beta")]
    return keys


def load_book_params(path: str | os.PathLike, model: str | Sequential = "SimpleConvNet", *, device: Any = "cpu",
                     dtype: str | None = None, **book_args: Any) -> Sequential:
    """Build the book's network and copy a book ``params.pkl`` (``save_params``'s format) into it.

    model: a book class name (``"TwoLayerNet"``, ``"MultiLayerNet"``, ``"MultiLayerNetExtend"``,
    ``"SimpleConvNet"``, ``"DeepConvNet"``) with that constructor's arguments as keywords (the book's
    defaults apply), or an ``xn.Sequential`` whose weighted layers and BatchNorms are in the book's
    order. dtype: the model's (default: the file's, float64 for the book's files). Returns the model
    on ``device``. Example: ``xn.load_book_params("ch07/params.pkl", "SimpleConvNet")``.
    """
    arrays = read_book_params(path)
    state = _init_module.generator().bit_generator.state  # building draws weights that are overwritten
    try:
        return _load(arrays, os.fspath(path), model, device, dtype, book_args)
    finally:
        _init_module.generator().bit_generator.state = state


def _load(arrays: dict[str, np.ndarray], path: str, model: str | Sequential, device: Any, dtype: str | None,
          book_args: dict[str, Any]) -> Sequential:
    if dtype is None:
        dtype = str(arrays["W1"].dtype) if "W1" in arrays and arrays["W1"].dtype.kind == "f" else "float32"
    if isinstance(model, str):
        if model not in BOOK_MODELS:
            raise ValueError(f"load_book_params: unknown book model {model!r}; known: {', '.join(BOOK_MODELS)} "
                             "(or pass an xn.Sequential)")
        try:
            model = BOOK_MODELS[model](**book_args, dtype=dtype)
        except TypeError as exc:  # an argument the book's constructor does not have
            raise TypeError(f"load_book_params: {model}: {exc}") from None
    elif not isinstance(model, Sequential):
        raise TypeError(f"load_book_params: model must be a book class name or an xn.Sequential, "
                        f"got {type(model).__name__}")
    elif book_args:
        raise TypeError(f"load_book_params: {sorted(book_args)} are book constructor arguments; they need a "
                        "model name, not a Sequential")
    keys = _book_keys(model)
    expected, found = {k for k, _, _ in keys}, set(arrays)
    if expected != found:
        raise ValueError(f"load_book_params: {path!r} does not match the model: missing "
                         f"{sorted(expected - found)}, unexpected {sorted(found - expected)}")
    for key, layer, name in keys:
        want = tuple(layer.params[name].shape)
        if arrays[key].shape != want:
            raise ValueError(f"load_book_params: {key} in {path!r} has shape {arrays[key].shape}, "
                             f"the model's {layer.name}.{name} has {want}; check the book constructor's arguments")
    model.to("cpu", dtype=dtype)
    for key, layer, name in keys:
        layer.params[name] = to_device(arrays[key], model.device, dtype=dtype)
    return model.to(device)
