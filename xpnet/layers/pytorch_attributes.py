"""What a PyTorch user reads off a layer or model that xpnet keeps elsewhere: the hint of a missing attribute.

Outside a forward, ``fc.grad`` (for ``fc.weight.grad``), ``model.weight`` and ``lstm.weight_ih_l0`` are lookups on
the layer or model, which its ``__getattr__`` answers with what to write (``layer.grads['W']``,
``model.named_params()``, ``layer.params['Wx'].T``). What is read off the array itself (``p.grad``, ``p.size()``,
``p.numel()``, ``p.data``) is NumPy's (or CuPy's) and stays its own error: xpnet does not wrap arrays.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["layer_hint", "model_hint"]

# PyTorch's recurrent parameters: weight_ih_l0, bias_hh_l1_reverse; a cell's weight_ih, bias_hh
_RECURRENT = re.compile(r"(weight|bias)_(ih|hh|hr)(_l\d+(_reverse)?)?")
_WEIGHTS = {"ih": "Wx", "hh": "Wh", "hr": "Wr"}


def layer_hint(layer: Any, name: str) -> str | None:
    """What to write for PyTorch's ``name`` on ``layer`` (which lacks it: ``grad``, a recurrent layer's
    ``weight_ih_l0``...; a stack of levels, a container, asks too), or None where xpnet knows no hint."""
    params = vars(layer).get("params") or {}
    if name == "grad":
        keys = ", ".join(f"layer.grads[{k!r}]" for k in params) or "none (no parameters)"
        return (f"PyTorch's p.grad is layer.grads[key]: here {keys}, in xpnet's layout, filled by backward (a "
                f"model's by dotted name: model.named_grads())")
    found = _RECURRENT.fullmatch(name)
    if found is None or not (vars(layer).get("state_names") or getattr(type(layer), "state_names", None)):
        return None  # (recurrent layers, cells and stacks only)
    kind, which, level = found.group(1), found.group(2), found.group(3) or ""
    every = "xn.torch_state_dict(layer) gives every array by PyTorch's name, in its layout"
    if "Wx" not in params:  # a stack (num_layers > 1, bidirectional): its levels are layers of their own
        return f"PyTorch's {name} is a level's: layer.layers() are the levels, each with Wx, Wh and biases; {every}"
    if level not in ("", "_l0"):
        return f"this layer has one level (PyTorch's _l0): {every}"
    if kind == "weight":
        return f"PyTorch's {name} is layer.params[{_WEIGHTS[which]!r}].T; {every}"
    own = "bx" if which == "ih" else "bh"
    if own in params:
        return f"PyTorch's {name} is layer.params[{own!r}]; {every}"
    if "b" in params:
        return (f"PyTorch's {name} is part of layer.params['b'] (bias_ih + bias_hh, the book's one bias; "
                f"convention='pytorch' keeps the two as bx, bh); {every}")
    return f"this layer was built with bias=False; {every}"


def model_hint(model: Any, name: str) -> str | None:
    """What to write for PyTorch's ``weight``, ``bias`` or ``grad`` read off a model, or None for another name."""
    if name not in ("weight", "bias", "grad") or "params" not in vars(model):
        return None
    if name == "grad":
        return ("a model's gradients by dotted name: model.named_grads() (a layer's: layer.grads['W'], PyTorch's "
                "layer.weight.grad)")
    names = list(model.named_params())
    shown = ", ".join(map(repr, names[:4])) + (", ..." if len(names) > 4 else "")
    return (f"a model holds no {name} of its own: its layers' parameters by dotted name are model.named_params() "
            f"({shown}); a layer's: model.fc1.params['W'] or PyTorch's model.fc1.{name}")
