"""``Sequential``: layers applied in order, the seeds' TwoLayerNet and deeper nets."""

from __future__ import annotations

import os
from typing import Any

from .._user import is_int
from ..backend import (Device, device, device_of, float_dtype_name, namespace, no_autograd, plain_array, to_device,
                       untracked, writable)
from ..backend.threads import blas_threads as blas_threads_context
from ..layers.base import Layer
from .summary import summary as _summary

__all__ = ["Sequential"]


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
        inner = "".join(f"  ({i}): {layer!r}\n" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner})"

    def summary(self, input_shape: tuple[int, ...] | None = None) -> str:
        """A table of the layers, their output shapes and parameter counts, and the total.

        ``input_shape`` is the shape of one sample, without N (e.g. ``(1, 28, 28)``); it may be left
        out when the first layer is a Linear (``(in_features,)``). Without it the table has no output
        shapes. The shapes come from a forward pass of one zero sample; the layers' caches are kept.
        """
        return _summary(self, input_shape)

    def forward(self, x: Any, train: bool = True) -> Any:
        """Run ``x`` through every layer in order; ``model(x)`` is the same call.

        ``train=True``, the default, is training mode: Dropout drops units, BatchNorm normalises with
        the batch's statistics and updates its running ones, and each layer keeps what ``backward``
        needs. To evaluate, call ``model.predict(x)`` (evaluation mode, on the model's device, in
        batches with ``batch_size=``) or ``model.forward(x, train=False)``: ``model(x_test)`` runs in
        training mode, and BatchNorm's running statistics would take in the test data.
        """
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
        """Replace one parameter or buffer by its name (``"0.W"``) with an array of the same shape. A
        read-only NumPy array (a memmap opened with "r", ``np.broadcast_to``) is copied: optimizers
        update parameters in place."""
        store, key = self._slot(name)
        if not hasattr(value, "shape") or tuple(value.shape) != tuple(store[key].shape):
            got = f"shape {tuple(value.shape)}" if hasattr(value, "shape") else f"a {type(value).__name__}"
            raise ValueError(f"Sequential.set_param: {name!r} needs an array of shape {tuple(store[key].shape)}, "
                             f"got {got}")
        store[key] = writable(value)

    def _slot(self, name: Any) -> tuple[dict[str, Any], str]:
        """The params or buffers dict of a layer holding ``name`` ("<index>.<key>"), and the key."""
        index, _, key = name.partition(".") if isinstance(name, str) else ("", "", "")
        if index.isdigit() and int(index) < len(self.layers):
            layer = self.layers[int(index)]
            for store in (layer.params, layer.buffers):
                if key in store:
                    return store, key
        raise KeyError(f"Sequential.set_param: the model has no parameter or buffer {name!r}; it has "
                       f"{', '.join(self.state()) or 'none'}")

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
        if dtype is not None:
            dtype = float_dtype_name(dtype, "Sequential.to")
        for layer in self.layers:
            layer.to(dev, dtype=dtype)
        return self

    def predict(self, x: Any, batch_size: int | None = None, blas_threads: Any = None) -> Any:
        """Forward in evaluation mode on the model's device; returns an array on that device.

        ``x`` (any backend; an ``np.memmap`` too) is moved to the model's device and cast to its dtype
        one batch at a time; ``batch_size`` bounds memory for large inputs. ``blas_threads`` as in
        ``xn.train``, except that ``"auto"`` runs with the count the last training or evaluation chose
        (``xpnet.backend.threads``).
        """
        if batch_size is not None and (not is_int(batch_size) or batch_size < 1):
            raise ValueError(f"predict: batch_size must be None or an int >= 1, got {batch_size!r}")
        dev = self.device
        threads = blas_threads_context(blas_threads, dev, measure=False)
        with dev.activate(), threads:  # a model on cuda:N runs on GPU N (Device.activate)
            x = plain_array(untracked(x), "predict: x") if hasattr(x, "shape") else to_device(x, dev)
            if not namespace(x).isdtype(x.dtype, "real floating"):
                if namespace(x).isdtype(x.dtype, "integral"):
                    raise TypeError("predict: integer input; convert images to float (and scale to [0, 1]) first")
                raise TypeError(f"predict: x must hold real numbers, got dtype {x.dtype}")
            if x.ndim < 1:
                raise ValueError(f"predict: x must have a sample axis (N, ...), got shape {tuple(x.shape)}")
            n = int(x.shape[0])
            size = max(1, n if batch_size is None else batch_size)
            with no_autograd(dev.xp):
                outs = [self.forward(to_device(x[i:min(i + size, n), ...], dev, dtype=self.dtype), train=False)
                        for i in range(0, max(n, 1), size)]
            return outs[0] if len(outs) == 1 else dev.xp.concat(outs, axis=0)

    def config(self) -> list[dict[str, Any]]:
        """Each layer's type and constructor arguments; ``dtype`` is the one its arrays have now
        (``model.to(dtype=...)`` casts arrays, not the arguments)."""
        configs = []
        for layer in self.layers:
            config = layer.config()
            arrays = [*layer.params.values(), *layer.buffers.values()]
            if "dtype" in config and arrays:
                config["dtype"] = str(arrays[0].dtype).rsplit(".", 1)[-1]
            configs.append({"type": type(layer).__name__, "config": config})
        return configs

    def save(self, path: str | os.PathLike) -> None:
        """Write architecture, params and buffers to ``path`` (.npz) atomically: a temporary file in the
        same folder, then a rename, so an interrupted save never leaves a broken file."""
        from .files import save_model  # noqa: PLC0415 - files builds Sequentials: it sits above this module

        save_model(self, path)
