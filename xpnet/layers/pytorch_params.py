"""PyTorch's ``weight`` and ``bias`` attributes over a layer's params, and ``running_mean`` and ``running_var`` over its
buffers, on the layers PyTorch has them on."""

from __future__ import annotations

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
    dtype; a shape that is not PyTorch's, None, or a parameter the layer lacks is refused."""

    def __init__(self, key: str, transposed: bool = False, store: str = "params"):
        self.key, self.transposed, self.store = key, transposed, store
        self.attr = key

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    def __get__(self, layer: Any, owner: type | None = None) -> Any:
        if layer is None:
            return self
        value = getattr(layer, self.store).get(self.key)
        return value.T if value is not None and self.transposed else value

    def __set__(self, layer: Any, value: Any) -> None:
        who, old = f"{layer.name}.{self.attr}", self.__get__(layer)
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
