"""The weight files of the book's second volume (``BaseModel.save_params``) loaded into xpnet layers.

What the book writes: ``pickle.dump([p.astype(np.float16) for p in model.params])``, a list of arrays
in the order of ``model.params``, which is each layer's ``params`` in the order the model made its
layers (a seq2seq model: the encoder's, then the decoder's). How loading goes:

1. The file is read with the restricted unpickler of :mod:`xpnet.io.unpickle` and must be a list of
   floating-point arrays.
2. The model's layers, in order, say what the book stored for each (:func:`book_layout`): Embedding
   ``W``; LSTM ``Wx, Wh, b`` with the gate blocks in the book's order f, g, i, o; RNN and
   ``GRU(convention="book")`` ``Wx, Wh, b``; Linear ``W, b`` (the book's TimeAffine); nothing for layers
   without parameters (Dropout, Attention). The book's weight tying (BetterRnnlm) stores the
   embedding a second time, transposed, as the output layer's ``W``: a :class:`~xpnet.layers.TiedLinear`
   takes that entry as a check (it must equal its embedding's matrix, transposed) and only its ``b``;
   an untied Linear loads it as its own ``W``.
3. The count and every shape are checked before anything is copied; then the LSTM blocks are put in
   PyTorch's order i, f, g, o (:func:`lstm_from_book`) and every array is cast from float16 to the
   model's dtype (the book casts to float32).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..backend import to_device
from ..layers import GRU, LSTM, RNN, Embedding, Layer, Linear, TiedLinear
from ..layers.recurrent_stack import RecurrentStack

__all__ = ["BOOK_GATES", "lstm_from_book", "lstm_to_book", "book_layout", "copy_book_param_list"]

# The book's LSTM blocks are f, g, i, o; xpnet's (PyTorch's) i, f, g, o: block k of xpnet's is the
# book's block BOOK_GATES[k].
BOOK_GATES = (2, 0, 1, 3)


def lstm_from_book(a: np.ndarray) -> np.ndarray:
    """An LSTM's Wx (D, 4H), Wh (H, 4H) or b (4H,) with its last axis in the book's gate order (f, g, i, o)
    as xpnet's (i, f, g, o)."""
    blocks = np.split(a, 4, axis=-1)
    return np.concatenate([blocks[k] for k in BOOK_GATES], axis=-1)


def lstm_to_book(a: np.ndarray) -> np.ndarray:
    """The inverse of :func:`lstm_from_book`: xpnet's gate order (i, f, g, o) as the book's (f, g, i, o)."""
    blocks = np.split(a, 4, axis=-1)
    return np.concatenate([blocks[BOOK_GATES.index(k)] for k in range(4)], axis=-1)


def book_layout(layers: Sequence[Layer]) -> list[tuple[Layer, str]]:
    """(layer, param name) for each array of a book file, in the book's order; a layer with parameters
    that has no counterpart in the book (Conv2d, BatchNorm, PyTorch's GRU, an RNN or LSTM with PyTorch's two
    biases) is a TypeError naming it."""
    layout = []
    for i, layer in enumerate(layers):
        if isinstance(layer, RecurrentStack):
            raise TypeError(f"load_book_params: layer {i} is {layer!r}, a stack of layers; the book's files hold "
                            "single layers: pass its layers in its place (*layer.layers())")
        if isinstance(layer, (RNN, LSTM, GRU)) and layer.convention != "book":
            kind, default = type(layer).__name__, "" if isinstance(layer, GRU) else " (the default: one bias b)"
            raise TypeError(f"load_book_params: layer {i} is {kind}(convention={layer.convention!r}); the book's "
                            f"{kind} is {kind}(convention=\"book\"){default}")
        if isinstance(layer, (RNN, LSTM, GRU)):
            names = ["Wx", "Wh", "b"]
        elif isinstance(layer, (Embedding, Linear)):
            names = [k for k in ("W", "b") if k in layer.params]
        elif isinstance(layer, TiedLinear):
            names = ["W", *layer.params]
        elif layer.params:
            raise TypeError(f"load_book_params: layer {i} ({layer!r}) has no counterpart in the book's second volume")
        else:
            names = []
        layout += [(layer, name) for name in names]
    return layout


def copy_book_param_list(arrays: list[Any], layers: Sequence[Layer], path: str, dtype: str | None) -> None:
    """Copy the arrays of a book file into ``layers`` (see the module docstring); ``dtype`` None keeps
    each layer's. Checks everything before it copies anything."""
    layout = book_layout(layers)
    for i, a in enumerate(arrays):
        if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
            kind = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise ValueError(f"load_book_params: {path!r}: entry {i} is {kind}, expected a floating-point NumPy array")
    if len(arrays) != len(layout):
        raise ValueError(f"load_book_params: {path!r} holds {len(arrays)} arrays, the model's layers take "
                         f"{len(layout)} in the book's order "
                         f"({', '.join(f'{type(la).__name__}.{n}' for la, n in layout)})")
    for i, (a, (layer, name)) in enumerate(zip(arrays, layout)):
        if _tied(layer, name):
            want, j = (layer.in_features, layer.out_features), _index_of(layout, layer.embedding)
            if j is None:
                raise ValueError(f"load_book_params: the TiedLinear of entry {i} shares an Embedding that is not "
                                 "among the model's layers")
            if a.shape == want and arrays[j].shape == want[::-1] and not np.array_equal(a.T, arrays[j]):
                raise ValueError(f"load_book_params: entry {i} of {path!r} is the output matrix of a TiedLinear, "
                                 f"but it differs from entry {j}, its embedding's matrix (transposed): the file's "
                                 "model was not tied")
        else:
            want = tuple(layer.params[name].shape)
        if a.shape != want:
            raise ValueError(f"load_book_params: entry {i} of {path!r} has shape {a.shape}, the model's "
                             f"{type(layer).__name__}.{name} has {want}; check the book constructor's arguments")
    for a, (layer, name) in zip(arrays, layout):
        if _tied(layer, name):
            continue
        current = layer.params[name]
        value = lstm_from_book(a) if isinstance(layer, LSTM) else a
        layer.params[name] = to_device(np.ascontiguousarray(value), layer.device,
                                       dtype=dtype or str(current.dtype).rsplit(".", 1)[-1])


def _tied(layer: Layer, name: str) -> bool:
    return isinstance(layer, TiedLinear) and name == "W"


def _index_of(layout: list[tuple[Layer, str]], embedding: Layer) -> int | None:
    """The entry of the file that holds ``embedding``'s W (None when the embedding is not in the model)."""
    return next((i for i, (layer, name) in enumerate(layout) if layer is embedding and name == "W"), None)
