"""PyTorch's ``weight`` and ``bias`` attributes over a layer's params, and ``running_mean`` and ``running_var`` over its
buffers, on the layers PyTorch has them on."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from ..backend import device_of, dtype_name, to_device, writable


class PyTorchParam:
    """``layer.weight`` / ``layer.bias``: the array ``params[key]`` in PyTorch's layout, or None where the layer
    was built without it (``bias=False``, ``affine=False``), as PyTorch's. With ``store="buffers"``, the array
    ``buffers[key]`` (``bn.running_mean``; None with ``track_running_stats=False``, as PyTorch's).

    ``transposed``: PyTorch's layout is the transpose of xpnet's (Linear: ``weight`` (out, in) is the view
    ``params["W"].T`` of W (in, out)). Reading gives the array itself or that view, so a write into it
    (``xn.init.kaiming_normal_(layer.weight)``) lands in params on NumPy, CuPy and PyTorch. Assigning an
    array of PyTorch's shape replaces ``params[key]`` (transposed back), moved to the parameter's device and
    dtype; a shape that is not PyTorch's, None, or a parameter the layer lacks is refused, and so is another
    layer's parameter as it was just read (PyTorch's tying ``decoder.weight = encoder.weight``, which here would
    give two parameters over one memory on NumPy and two copies elsewhere)."""

    def __init__(self, key: str, transposed: bool = False, store: str = "params"):
        self.key, self.transposed, self.store = key, transposed, store
        self.attr = key

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    def __get__(self, layer: Any, owner: type | None = None) -> Any:
        if layer is None:
            return self
        value = getattr(layer, self.store).get(self.key)
        value = value.T if value is not None and self.transposed else value
        if value is not None:
            try:
                _last_read.source = (weakref.ref(layer), weakref.ref(value), self.attr)
            except TypeError:  # an array type without weak references: no tying check for it
                _last_read.source = None
        return value

    def __set__(self, layer: Any, value: Any) -> None:
        who = f"{layer.name}.{self.attr}"
        _refuse_tying(who, layer, value)  # before reading our own weight, which becomes the last read
        old = self.__get__(layer)
        if old is None or value is None:
            built = f"{layer!r} has none" if old is None else f"it is {self.store}[{self.key!r}]"
            raise ValueError(f"{who} = {'None' if value is None else '...'}: a built layer's {self.store} cannot be "
                             f"added or removed ({built}); build the layer with or without it (bias=..., affine=..., "
                             "track_running_stats=...)")
        if not (hasattr(value, "shape") and hasattr(value, "dtype")):
            raise TypeError(f"{who}: expected an array of shape {tuple(old.shape)} (PyTorch's layout), got a "
                            f"{type(value).__name__}")
        if tuple(value.shape) != tuple(old.shape):
            xpnet = f", the transpose of {self.store}[{self.key!r}] {tuple(old.shape[::-1])}" if self.transposed else ""
            raise ValueError(f"{who}: expected shape {tuple(old.shape)} (PyTorch's layout{xpnet}), got "
                             f"{tuple(value.shape)}")
        new = to_device(value, device_of(old), dtype=dtype_name(old))
        getattr(layer, self.store)[self.key] = writable(new.T if self.transposed else new)


_last_read = threading.local()  # source: (layer, array, attribute) of the last ``layer.weight`` read, weakly


def _refuse_tying(who: str, layer: Any, value: Any) -> None:
    """Raise where ``value`` is the array another layer's ``weight``/``bias`` read gave last (the right side of
    ``a.weight = b.weight``): an assignment copies or aliases, it cannot make the two layers one parameter."""
    other, array, attr = getattr(_last_read, "source", None) or (lambda: None, lambda: None, "")
    other = other()
    if other is None or other is layer or array() is not value:
        return
    instead = (f"for an output layer sharing the embedding's matrix, build it as xn.layers.TiedLinear(embedding) in "
               f"place of the {layer.name}" if type(other).__name__ == "Embedding" else
               "xpnet ties only an Embedding and its output layer, xn.layers.TiedLinear(embedding)")
    raise ValueError(f"{who} = {other.name}.{attr}: PyTorch ties the two layers to one parameter here; xpnet cannot "
                     f"tie by assignment (two parameters, updated twice, untied by model files): {instead}; to copy "
                     f"the values, assign a copy, xp.asarray({other.name.lower()}.{attr}, copy=True)")
