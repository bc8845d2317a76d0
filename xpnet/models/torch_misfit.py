"""Why a PyTorch state dict does not fit an xpnet model: the lines ``xn.load_torch_state_dict`` (:mod:`.torch_weights`)
gives, with ``strict=True``, for the keys left over (one line per reason, saying what to build or pass) and for a
whole dict that is most likely something else (saved from ``nn.DataParallel``, an xpnet state dict)."""

from __future__ import annotations

import re
from typing import Any

from ..layers import GRU, LSTM, RNN, InstanceNorm1d, InstanceNorm2d, PositionalEncoding
from ..layers.recurrent_stack import RecurrentStack
from .torch_names import node_described, parse_formula, torch_names_of

__all__ = ["unexpected_lines", "whole_dict_hints"]

_RECURRENT_KEY = re.compile(r"(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?")
_BUILT_WITHOUT = ("bias", "affine", "elementwise_affine", "track_running_stats")


def unexpected_lines(keys: list[str], modules: dict[str, Any]) -> list[str]:
    """Why each of PyTorch's ``keys`` has no place in the xpnet model, and what to do: one line per reason."""
    by_reason: dict[str, list[str]] = {}
    for key in keys:
        by_reason.setdefault(_reason(key, modules), []).append(key)
    return [f"PyTorch's {', '.join(map(repr, group))}: {reason}" for reason, group in by_reason.items()]


def _reason(key: str, modules: dict[str, Any]) -> str:
    prefix, _, last = key.rpartition(".")
    node = modules.get(prefix)
    recurrent = _RECURRENT_KEY.fullmatch(last)
    kind = node.name if isinstance(node, (RNN, LSTM, GRU, RecurrentStack)) else "RNN/LSTM/GRU"
    one = kind if "/" not in kind else "LSTM"
    if recurrent and recurrent.group(2) == "hr":
        return ("the projection of h of an nn.LSTM(..., proj_size=P): build the xpnet layer as the PyTorch one, "
                "LSTM(D, H, ..., proj_size=P)")
    if recurrent and recurrent.group(4) and not getattr(node, "bidirectional", False):
        return (f"the reverse direction of a bidirectional nn.{kind}: build the xpnet layer as the PyTorch one, "
                f"{one}(D, H, ..., bidirectional=True)")
    if recurrent and int(recurrent.group(3)) >= getattr(node, "num_layers", 1):
        k = int(recurrent.group(3))
        return (f"layer {k} of a stacked nn.{kind}(num_layers={k + 1} or more): build the xpnet layer as the "
                f"PyTorch one, {one}(D, H, num_layers={k + 1}, ...)")
    if node is None:
        return f"the xpnet model has no layer {prefix!r}"
    if isinstance(node, PositionalEncoding) and last == "pe":
        return (f"the table a hand-written PositionalEncoding keeps as a buffer; xpnet's computes the same itself: "
                f"leave {key!r} out, or pass strict=False")
    if isinstance(node, (InstanceNorm1d, InstanceNorm2d)) and not node.track_running_stats \
            and last in ("running_mean", "running_var"):
        # PyTorch's own load refuses them alike (_InstanceNorm._load_from_state_dict); built with
        # track_running_stats=True, the layer would normalise with them in eval mode, not as the checkpoint's model
        return ("running statistics of an InstanceNorm that tracks none (PyTorch's default since 0.4.0, xpnet's too): "
                "a checkpoint saved before carries them unused (fast_neural_style's models); leave them out "
                "(fast_neural_style's stylize deletes the keys matching r'in\\d+\\.running_(mean|var)$') or pass "
                "strict=False. Build the layer with track_running_stats=True only where they are meant to be used: "
                "in eval mode it then normalises with them, not with each sample's statistics")
    takes = [prefix + "." + t if prefix else t for f in torch_names_of(node).values() for t in parse_formula(f)[0]]
    # bias is has_bias on the layers whose bias is PyTorch's parameter, the flag itself on the recurrent ones
    without = [f for f in _BUILT_WITHOUT
               if getattr(node, "has_bias" if f == "bias" else f, getattr(node, f, True)) is False]
    return (f"{node_described(prefix, node)} takes {', '.join(map(repr, takes)) or 'no arrays'}"
            + (f" (it was built with {', '.join(f + '=False' for f in without)})" if without else ""))


def whole_dict_hints(keys: list[str], unexpected: list[str], model: Any) -> list[str]:
    """What a whole dict that does not fit most likely is."""
    hints = []
    if keys and all(k.startswith("module.") for k in keys) and "module" not in model.named_children():
        hints.append("every key starts with 'module.' (saved from nn.DataParallel or DistributedDataParallel): "
                     "pass {k.removeprefix('module.'): v for k, v in state_dict.items()}")
    own = model.state()
    if any(k in own for k in unexpected):
        hints.append("some keys are xpnet's own names: an xpnet state dict (model.state_dict()) loads with "
                     "model.load_state_dict(d)")
    return hints

