"""``model.summary()``: a table of the layers with their output shapes and parameter counts.

Output shapes come from one forward pass in evaluation mode of a single zero sample on the model's
device, through a shallow copy of each layer (so the layers' caches from a pending forward stay).
The input shape is per sample (without N): ``input_shape=`` or, where the first layer tells it,
``Linear(in_features)`` -> ``(in_features,)``. A first ``Conv2d`` cannot tell the image size: then the
table has parameter counts only and says how to get the shapes.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from .._user import is_int

__all__ = ["summary"]


def summary(model: Any, input_shape: tuple[int, ...] | None = None) -> str:
    """The table as a string: index and type of each layer (``repr(model)`` has their arguments),
    output shape (``N`` for the batch), parameter count; then the input shape and the total."""
    layers = list(model.layers)
    if input_shape is None:
        input_shape = _inferred_input_shape(layers)
    elif is_int(input_shape):
        input_shape = (input_shape,)
    if input_shape is not None and (not isinstance(input_shape, (tuple, list))
                                    or not all(is_int(d) and d >= 1 for d in input_shape)):
        raise ValueError(f"summary: input_shape must be the shape of one sample as ints >= 1, e.g. (1, 28, 28), "
                         f"got {input_shape!r}")
    shapes: list[str] = ["-"] * len(layers)
    if input_shape is not None:
        input_shape = tuple(int(d) for d in input_shape)
        dev = model.device
        x = dev.xp.zeros((1, *input_shape), dtype=model.dtype or dev.xp.float32, device=dev.native)
        for i, layer in enumerate(layers):
            x = copy.copy(layer).forward(x, train=False)
            shapes[i] = _shape("N", x.shape[1:])
    counts = [sum(math.prod(p.shape) for p in layer.params.values()) for layer in layers]
    rows = [("#", "layer", "output shape", "params")]
    rows += [(str(i), layer.name, shape, f"{n:,}") for i, (layer, shape, n) in enumerate(zip(layers, shapes, counts))]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    lines = [f"{r[0].rjust(widths[0])}  {r[1].ljust(widths[1])}  {r[2].ljust(widths[2])}  {r[3].rjust(widths[3])}"
             .rstrip() for r in rows]
    rule = "-" * max(len(line) for line in lines)
    footer = [f"input: {_shape('N', input_shape)}" if input_shape is not None else
              "output shapes: pass the shape of one sample, e.g. model.summary(input_shape=(1, 28, 28))",
              f"parameters: {sum(counts):,} ({_dtype(model)}, on {model.device.name})"]
    return "\n".join([lines[0], rule, *lines[1:], rule, *footer])


def _inferred_input_shape(layers: list[Any]) -> tuple[int, ...] | None:
    first = next((layer for layer in layers if layer.params), None)
    if first is not None and first is layers[0] and hasattr(first, "in_features"):
        return (int(first.in_features),)
    return None


def _shape(batch: str, rest: tuple[int, ...]) -> str:
    return "(" + ", ".join([batch, *(str(int(d)) for d in rest)]) + ")"


def _dtype(model: Any) -> str:
    dtype = model.dtype
    return "no parameters" if dtype is None else str(dtype).rsplit(".", 1)[-1]
