"""Sequential models, and saving/loading them as device-independent ``.npz`` files."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .backend import Device, device, device_of, to_device, to_numpy
from .fileio import atomic_savez
from .layers.base import Layer, layer_from_config

_CONFIG_KEY = "__xpnet_model__"
FORMAT_VERSION = 1


class Sequential:
    """Layers applied in order. ``named_params()`` keys are ``"<index>.<param>"``, e.g. ``"0.W"``."""

    def __init__(self, *layers: Layer):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not an xpnet layer")
        self.layers: list[Layer] = list(layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self) -> str:
        inner = ",\n  ".join(f"{i}: {_layer_repr(l)}" for i, l in enumerate(self.layers))
        return f"Sequential(\n  {inner}\n)"

    def forward(self, x: Any, train: bool = True) -> Any:
        for layer in self.layers:
            x = layer.forward(x, train=train)
        return x

    __call__ = forward

    def backward(self, dy: Any, input_grad: bool = True) -> Any:
        """Backpropagate ``dy`` through every layer, filling each layer's ``grads``; returns dx.
        ``input_grad=False`` skips the gradient for the input (returns None): training needs none."""
        for layer in self.layers[:0:-1]:
            dy = layer.backward(dy)
        if not self.layers:
            return dy
        if input_grad:
            return self.layers[0].backward(dy)
        self.layers[0].backward_params(dy)
        return None

    def named_params(self) -> dict[str, Any]:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()}

    def named_grads(self) -> dict[str, Any]:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()}

    def named_buffers(self) -> dict[str, Any]:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.buffers.items()}

    def state(self) -> dict[str, Any]:
        """Params and buffers by name (what ``save`` writes)."""
        return {**self.named_params(), **self.named_buffers()}

    def set_param(self, name: str, value: Any) -> None:
        """Replace one parameter or buffer by its name (``"0.W"``)."""
        index, key = _split(name)
        layer = self.layers[index]
        store = layer.params if key in layer.params else layer.buffers
        if key not in store:
            raise KeyError(f"model has no parameter or buffer {name!r}")
        store[key] = value

    @property
    def device(self) -> Device:
        """The device holding the parameters (the CPU for a model without any)."""
        for v in self.state().values():
            return device_of(v)
        return device("cpu")

    @property
    def dtype(self) -> Any:
        for v in self.named_params().values():
            return v.dtype
        return None

    def to(self, dev: Any = None, dtype: Any = None) -> "Sequential":
        """Move params and buffers to ``dev`` (a spec or Device), optionally casting to ``dtype``
        (e.g. ``"float64"``). Returns the model."""
        dev = self.device if dev is None else device(dev)
        for layer in self.layers:
            layer.to(dev, dtype=dtype)
        return self

    def predict(self, x: Any, batch_size: int | None = None) -> Any:
        """Forward in evaluation mode on the model's device; returns an array on that device.

        ``x`` is moved to the model's device first; ``batch_size`` bounds memory for large inputs.
        """
        dev = self.device
        x = to_device(x, dev)
        xp = dev.xp
        if xp.isdtype(x.dtype, "integral"):
            raise TypeError("predict: integer input; convert images to float (and scale to [0, 1]) first")
        if self.dtype is not None and x.dtype != self.dtype:
            x = xp.astype(x, self.dtype)
        n = x.shape[0]
        if batch_size is None or batch_size >= n:
            return self.forward(x, train=False)
        if batch_size < 1:
            raise ValueError(f"predict: batch_size must be >= 1, got {batch_size}")
        outs = [self.forward(x[i:min(i + batch_size, n), ...], train=False) for i in range(0, n, batch_size)]
        return xp.concat(outs, axis=0)

    def config(self) -> list[dict[str, Any]]:
        return [{"type": type(layer).__name__, "config": layer.config()} for layer in self.layers]

    def save(self, path: str | os.PathLike) -> None:
        """Write architecture, params and buffers to ``path`` (.npz) atomically: a temporary file in the
        same folder, then a rename, so an interrupted save never leaves a broken file."""
        arrays = {k: to_numpy(v) for k, v in self.state().items()}
        meta = {"format": FORMAT_VERSION, "layers": self.config()}
        arrays[_CONFIG_KEY] = np.asarray(json.dumps(meta))
        atomic_savez(path, arrays)


def load(path: str | os.PathLike, device: Any = "cpu") -> Sequential:
    """Rebuild a model saved with ``Sequential.save`` onto ``device``."""
    with np.load(os.fspath(path), allow_pickle=False) as data:
        if _CONFIG_KEY not in data.files:
            raise ValueError(f"load: {os.fspath(path)!r} is not an xpnet model file (no architecture record)")
        meta = json.loads(str(data[_CONFIG_KEY]))
        model = Sequential(*[layer_from_config(d["type"], d["config"]) for d in meta["layers"]])
        expected = set(model.state())
        found = set(data.files) - {_CONFIG_KEY}
        if expected != found:
            raise ValueError(f"load: {os.fspath(path)!r} does not match its architecture: missing "
                             f"{sorted(expected - found)}, unexpected {sorted(found - expected)}")
        for name in expected:
            model.set_param(name, data[name])
    return model.to(device)


def _split(name: str) -> tuple[int, str]:
    index, _, key = name.partition(".")
    return int(index), key


def _layer_repr(layer: Layer) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in layer.config().items())
    return f"{type(layer).__name__}({args})"

