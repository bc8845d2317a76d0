"""``model.summary()``: a table of the layers with their output shapes and parameter counts.

One row per layer of the model's tree, by dotted name (a Sequential's rows are its indices; a
model inside it has rows of its own below its row, ``"3.body.0"``). Output shapes come from one
forward pass in evaluation mode of two zero samples on the model's device, through a copy of
the model (so the layers' caches from a pending forward stay); two, as torchsummary's, since a
``BatchNorm(track_running_stats=False)`` normalises with the batch's statistics in evaluation too and
refuses one value per feature. The input shape is per sample
(without N): ``input_shape=`` (a list of them for several inputs) or, where the first layer of a
Sequential tells it, ``Linear(in_features)`` -> ``(in_features,)``. A first ``Conv2d`` cannot tell
the image size: then the table has parameter counts only and says how to get the shapes. A layer
that runs twice shows its last output.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from .._user import is_int
from ..backend import index_dtype

__all__ = ["summary"]

_BAD_SHAPE = ("summary: input_shape must be the shape of one sample as ints >= 1, e.g. (1, 28, 28), "
              "or a list of them for several inputs, ")


def summary(model: Any, input_shape: Any = None) -> str:
    """The table as a string: name and type of each layer (``repr(model)`` has their arguments),
    output shape (``N`` for the batch), parameter count (a composite: all of its layers'); then the
    input shape and the total (with the trainable and frozen counts where some layer is frozen)."""
    nodes = {name: node for name, node in model.named_modules().items() if name}
    shapes_in = _input_shapes(model, input_shape)
    shapes = dict.fromkeys(nodes, "-")
    if shapes_in is not None:
        dev = model.device
        probe = copy.deepcopy(model)
        for name, node in probe.named_modules().items():
            if name:
                _record(node, name, shapes)
        dtype = model.dtype or dev.xp.float32
        if model.takes_ids:  # an Embedding first: integer ids in, every input of such a model
            dtype = index_dtype(dev.xp, dev.native)
        xs = [dev.xp.zeros((2, *shape), dtype=dtype, device=dev.native) for shape in shapes_in]
        probe.eval()
        try:
            probe.forward(*xs, train=False)
        except (ValueError, TypeError) as e:
            if input_shape is None:
                raise
            given = ", ".join(map(str, shapes_in))
            image = "; an image keeps its channel axis: (1, 28, 28) for one gray 28x28 image" \
                if any(len(s) == 2 for s in shapes_in) else ""
            raise (ValueError if isinstance(e, ValueError) else TypeError)(
                f"summary: input_shape {given} is the shape of one sample, without N (the model got "
                f"{', '.join(_shape('2', s) for s in shapes_in)}){image}. The model refused it: {e}") from e
    counts = {name: sum(math.prod(p.shape) for p in node.named_params().values()) for name, node in nodes.items()}
    indices = all(name.isdigit() for name in nodes)
    rows = [("#" if indices else "name", "layer", "output shape", "params")]
    rows += [(name, node.name, shapes[name], f"{counts[name]:,}") for name, node in nodes.items()]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    lines = [f"{r[0].rjust(widths[0]) if indices else r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  "
             f"{r[2].ljust(widths[2])}  {r[3].rjust(widths[3])}".rstrip() for r in rows]
    rule = "-" * max(len(line) for line in lines)
    total = sum(math.prod(p.shape) for p in model.named_params().values())
    if shapes_in is None:
        given = "output shapes: pass the shape of one sample, e.g. model.summary(input_shape=(1, 28, 28))"
    else:
        given = "input: " + ", ".join(_shape("N", shape) for shape in shapes_in)
    footer = [given, f"parameters: {total:,} ({_dtype(model)}, on {model.device.name})"]
    trainable = sum(math.prod(p.shape) for p in model.trainable_params().values())
    if trainable < total:  # Keras' trainable / non-trainable split, where requires_grad_(False) froze some
        footer[-1] += f"; trainable: {trainable:,}, frozen: {total - trainable:,}"
    return "\n".join([lines[0], rule, *lines[1:], rule, *footer])


def _input_shapes(model: Any, input_shape: Any) -> list[tuple[int, ...]] | None:
    """The shape of one sample of each input, or None where it is neither given nor inferred."""
    if input_shape is None:
        layers = list(getattr(model, "layers", ()))
        first = next((layer for layer in layers if layer.params), None)
        if first is not None and first is layers[0] and hasattr(first, "in_features"):
            return [(int(first.in_features),)]
        return None
    if is_int(input_shape):
        input_shape = (input_shape,)
    if not isinstance(input_shape, (tuple, list)):
        raise ValueError(_BAD_SHAPE + f"got {input_shape!r}")
    shapes = list(input_shape)
    if not (shapes and all(isinstance(s, (tuple, list)) for s in shapes)):
        shapes = [shapes]
    if not all(all(is_int(d) and d >= 1 for d in s) for s in shapes):
        raise ValueError(_BAD_SHAPE + f"got {input_shape!r}")
    return [tuple(int(d) for d in s) for s in shapes]


def _record(node: Any, name: str, shapes: dict[str, str]) -> None:
    """Make the probe's ``node`` write its output shape into ``shapes[name]`` at each forward."""
    forward = node.forward

    def recorded(*xs: Any, **kwargs: Any) -> Any:
        y = forward(*xs, **kwargs)
        shapes[name] = _described(y)
        return y

    node.forward = recorded


def _described(y: Any) -> str:
    """An output's shape with N for the samples; the shapes of a tuple's items (MultiheadAttention's output
    and weights, a recurrent layer's states), None as None."""
    if hasattr(y, "shape"):
        return _shape("N", y.shape[1:])
    if isinstance(y, tuple) and all(v is None or hasattr(v, "shape") for v in y):
        return ", ".join("None" if v is None else _shape("N", v.shape[1:]) for v in y)
    return type(y).__name__


def _shape(batch: str, rest: tuple[int, ...]) -> str:
    return "(" + ", ".join([batch, *(str(int(d)) for d in rest)]) + ")"


def _dtype(model: Any) -> str:
    dtype = model.dtype
    return "no parameters" if dtype is None else str(dtype).rsplit(".", 1)[-1]
