"""The book's weight files loaded into xpnet models, without running pickled code.

How loading goes:

1. The pickle is read with the restricted unpickler of :mod:`xpnet.io.unpickle` (arrays, dicts,
   lists, numbers and strings only).
2. A dict of arrays is the first volume's ``params.pkl`` (``read_book_params`` checks it): a builder of
   :mod:`xpnet.book.vol1` makes the book's network from the book constructor's arguments, and the
   arrays are copied in the book's order: ``W1, b1`` into the first layer with a weight
   (Linear = the book's Affine, (in, out); Conv2d = Convolution, (FN, C, FH, FW)), ``W2, b2`` into
   the next, and ``gamma1, beta1``, ... into the BatchNorm layers in order. Missing, unexpected or
   misshapen arrays are an error naming the key before anything is copied.
3. A list of arrays is what the second volume's ``BaseModel.save_params`` writes: it goes into the
   layers of the model passed in, in their order, as :mod:`xpnet.book.vol2_params` says (the LSTM gate
   blocks reordered from the book's f, g, i, o to i, f, g, o).

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
from ..models import Model, Sequential
from .vol1 import BOOK_MODELS
from .vol2 import BOOK2_MODELS
from .vol2_params import copy_book_param_list

__all__ = ["read_book_params", "load_book_params"]


def read_book_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The ``{name: array}`` dict of a book ``params.pkl``, read with a restricted unpickler (never
    plain ``pickle.load``). Raises ValueError naming the file for anything else."""
    return _checked_dict(read_arrays_pickle(path, "read_book_params"), os.fspath(path))


def _checked_dict(data: Any, path: str) -> dict[str, np.ndarray]:
    if not isinstance(data, dict):
        raise ValueError(f"read_book_params: {path!r} holds a {type(data).__name__}, expected a dict of arrays "
                         "as the book's save_params writes")
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise ValueError(f"read_book_params: {path!r}: entry {key!r} is {kind}, expected a numeric NumPy array")
    return dict(data)


def _book_keys(model: Sequential) -> list[tuple[str, Any, str]]:
    """(book key, layer, param) in the book's numbering: W/b per weighted layer, gamma/beta per BatchNorm
    (the book's always learns them: a ``BatchNorm(affine=False)`` has no counterpart and no number)."""
    keys, weighted, norms = [], 0, 0
    for layer in model.layers:
        if "W" in layer.params:
            weighted += 1
            keys += [(f"{k}{weighted}", layer, k) for k in ("W", "b") if k in layer.params]
        elif isinstance(layer, BatchNorm) and layer.affine:
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

    A second-volume file (a list of float16 arrays, e.g. ``ch06/Rnnlm.pkl``) needs the model built with
    the book's arguments, its layers in the book's order: ``xn.book.rnnlm()``, ``better_rnnlm()``,
    ``seq2seq(...)``, ``peeky_seq2seq(...)``, ``attention_seq2seq(...)`` (any xn.Model: its leaf layers in
    order), an ``xn.Sequential`` or a list of layers; e.g.
    ``xn.load_book_params("ch08/AttentionSeq2seq.pkl", xn.book.attention_seq2seq(59, 16, 256))``.
    dtype None keeps the model's (the book loads its files as float32).
    """
    data = read_arrays_pickle(path, "load_book_params")
    if isinstance(data, list):
        return _load_list(data, os.fspath(path), model, device, dtype, book_args)
    arrays = _checked_dict(data, os.fspath(path))
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


def _load_list(arrays: list[Any], path: str, model: Any, device: Any, dtype: str | None,
               book_args: dict[str, Any]) -> Any:
    if isinstance(model, str) and model in BOOK2_MODELS:
        raise ValueError(f"load_book_params: {path!r} holds a list of arrays (the book's second volume): build the "
                         f"model first with the book's arguments and pass it, e.g. xn.load_book_params(path, "
                         f"xn.book.{BOOK2_MODELS[model].__name__}(...))")
    if isinstance(model, (list, tuple)):
        layers = list(model)
    elif isinstance(model, Model):
        layers = [node for node in model.named_modules().values() if not node.named_children()]
    else:
        raise ValueError(f"load_book_params: {path!r} holds a list of arrays (the book's second volume, "
                         "BaseModel.save_params): pass the model (e.g. xn.book.rnnlm(), or an xn.Sequential) or a list "
                         f"of layers in the book's order, not {model!r}")
    if book_args:
        raise TypeError(f"load_book_params: {sorted(book_args)} are book constructor arguments; a second-volume "
                        "file goes into the model you pass")
    copy_book_param_list(arrays, layers, path, dtype)
    for layer in layers:
        layer.to(device)
    return model
