"""Which PyTorch array each xpnet parameter and buffer is, per layer type (:data:`TORCH_NAMES`), and where a node of
a model finds its PyTorch keys: what ``xn.load_torch_state_dict``, ``xn.torch_state_dict`` (:mod:`.torch_weights`)
and ``xn.load_torch_optimizer_state_dict`` read. A formula is ``"name"`` (the same array), ``"name.T"`` (transposed)
or ``"a + b"`` (the sum of two: RNN's and LSTM's one bias)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..layers import (GRU, LSTM, RNN, BatchNorm, Bilinear, Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d,
                      Embedding, FrozenBatchNorm2d, GroupNorm, GRUCell, InstanceNorm1d, InstanceNorm2d, LayerNorm,
                      Linear, LSTMCell, MultiheadAttention, PReLU, RMSNorm, RNNCell, SpectralNorm, TiedLinear,
                      WeightNorm)
from ..layers.recurrent_stack import RecurrentStack

__all__ = ["TORCH_NAMES", "dropped_keys", "node_described", "parse_formula", "renamed_old", "torch_names_of",
           "torch_place", "torch_refusal"]

# RNN's and LSTM's b (the default, convention="book"), or bx and bh (convention="pytorch": PyTorch's own two)
_RECURRENT = {"Wx": "weight_ih_l0.T", "Wh": "weight_hh_l0.T", "b": "bias_ih_l0 + bias_hh_l0", "bx": "bias_ih_l0",
              "bh": "bias_hh_l0"}
_CELL = {"Wx": "weight_ih.T", "Wh": "weight_hh.T", "b": "bias_ih + bias_hh", "bx": "bias_ih",
         "bh": "bias_hh"}  # nn.RNNCell's, nn.LSTMCell's, as RNN's

# xpnet layer type -> {xpnet parameter or buffer: the PyTorch array it is}: "name" the same array,
# "name.T" transposed, "a + b" the sum of two. A subclass takes its base's entry.
TORCH_NAMES: dict[type, dict[str, str]] = {
    Linear: {"W": "weight.T", "b": "bias"},
    Bilinear: {"W": "weight", "b": "bias"},  # W (out, in1, in2), PyTorch's own layout
    Conv2d: {"W": "weight", "b": "bias"},
    ConvTranspose2d: {"W": "weight", "b": "bias"},  # W (in, out // groups, kh, kw), PyTorch's own layout
    Conv1d: {"W": "weight", "b": "bias"},  # W (out, in // groups, k)
    ConvTranspose1d: {"W": "weight", "b": "bias"},  # W (in, out // groups, k)
    BatchNorm: {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var",
                "num_batches_tracked": "num_batches_tracked"},
    LayerNorm: {"gamma": "weight", "beta": "bias"},
    GroupNorm: {"gamma": "weight", "beta": "bias"},
    InstanceNorm1d: {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"},
    InstanceNorm2d: {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"},
    RMSNorm: {"gamma": "weight"},
    PReLU: {"weight": "weight"},
    Embedding: {"W": "weight"},
    TiedLinear: {"b": "bias"},  # its weight is the Embedding's W: see _tied
    RNN: _RECURRENT,
    LSTM: {**_RECURRENT, "Wr": "weight_hr_l0.T"},  # Wr only with proj_size
    GRU: {"Wx": "weight_ih_l0.T", "Wh": "weight_hh_l0.T", "bx": "bias_ih_l0", "bh": "bias_hh_l0"},
    RNNCell: _CELL,
    LSTMCell: _CELL,
    GRUCell: {"Wx": "weight_ih.T", "Wh": "weight_hh.T", "bx": "bias_ih", "bh": "bias_hh"},
    # W_in when kdim == vdim == embed_dim (PyTorch's in_proj_weight), else W_q, W_k, W_v (its q/k/v_proj_weight)
    MultiheadAttention: {"W_in": "in_proj_weight.T", "W_q": "q_proj_weight.T", "W_k": "k_proj_weight.T",
                         "W_v": "v_proj_weight.T", "b_in": "in_proj_bias", "W_out": "out_proj.weight.T",
                         "b_out": "out_proj.bias"},
}

# The older hook functions' names (torch.nn.utils.spectral_norm, weight_norm) -> the parametrizations' (the new API,
# torch's recommendation), which xn.torch_state_dict gives: either loads.
_OLD_NAMES = {SpectralNorm: {"weight_orig": "parametrizations.weight.original",
                             "weight_u": "parametrizations.weight.0._u", "weight_v": "parametrizations.weight.0._v"},
              WeightNorm: {"weight_g": "parametrizations.weight.original0",
                           "weight_v": "parametrizations.weight.original1"}}


def parse_formula(formula: str) -> tuple[tuple[str, ...], str]:
    """(PyTorch's names, how): how is "" (the same array), "T" (transposed) or "+" (their sum)."""
    if " + " in formula:
        return tuple(formula.split(" + ")), "+"
    if formula.endswith(".T"):
        return (formula[:-2],), "T"
    return (formula,), ""


def torch_names_of(node: Any, level: str = "l0") -> dict[str, str]:
    """The node's own parameters and buffers -> their PyTorch formulas (its own names where none is known);
    a recurrent layer's keys are of its ``level`` (``"l1_reverse"``: ``weight_ih_l1_reverse``)."""
    table = next((TORCH_NAMES[cls] for cls in type(node).__mro__ if cls in TORCH_NAMES), {})
    if isinstance(node, (SpectralNorm, WeightNorm)):  # the wrapped layer's weight, by PyTorch's parametrization
        layout = ".T" if torch_names_of(node.layer)["W"].endswith(".T") else ""
        table = {"W_orig": "parametrizations.weight.original" + layout, "u": "parametrizations.weight.0._u",
                 "v": "parametrizations.weight.0._v", "b": "bias"} if isinstance(node, SpectralNorm) else \
            {"g": "parametrizations.weight.original0" + layout, "v": "parametrizations.weight.original1" + layout,
             "b": "bias"}
    if isinstance(node, (RNN, LSTM, GRU)):
        table = {k: v.replace("_l0", f"_{level}") for k, v in table.items()}
    return {name: table.get(name, name) for name in (*node.params, *node.buffers)}


def torch_place(prefix: str, modules: dict[str, Any]) -> tuple[str, str]:
    """Where the node at ``prefix`` finds its PyTorch keys: (their dotted prefix, the recurrent level). A layer
    of a ``RecurrentStack`` (``lstm.l1_reverse``) is one level of PyTorch's module (``lstm.weight_ih_l1_reverse``)."""
    parent, _, attr = prefix.rpartition(".")
    if prefix and isinstance(modules.get(parent), RecurrentStack):
        return (f"{parent}." if parent else ""), attr
    return (f"{prefix}." if prefix else ""), "l0"


def torch_refusal(node: Any) -> str | None:
    """Why no PyTorch state dict fits this node, or None."""
    if isinstance(node, GRU) and not isinstance(node, RecurrentStack) and node.convention == "book":
        return ("the book's GRU (convention='book') is another function than nn.GRU, so PyTorch's weights do not "
                "fit it: build GRU(..., convention='pytorch') (the default)")
    return None


def dropped_keys(node: Any) -> tuple[str, ...]:
    """PyTorch's keys (last part) that this node takes and drops: a BatchNorm whose momentum is a number has no
    ``num_batches_tracked``, which PyTorch counts but does not use then either; nor an InstanceNorm with running
    statistics, whose ``num_batches_tracked`` PyTorch never counts; nor a FrozenBatchNorm2d, whose torchvision
    original drops it from the BatchNorm2d state dicts it loads."""
    if isinstance(node, BatchNorm) and node.track_running_stats and node.momentum is not None or \
            isinstance(node, (InstanceNorm1d, InstanceNorm2d)) and node.track_running_stats or \
            isinstance(node, FrozenBatchNorm2d):
        return ("num_batches_tracked",)
    return ()


def node_described(prefix: str, node: Any) -> str:
    """The node at ``prefix`` for a message: ``the model (Net)``, ``layer 'fc' (Linear(in_features=4, ...))``."""
    if not prefix:
        return f"the model ({node.name})"
    return f"layer {prefix!r} ({node!r})" if not node.named_children() else f"layer {prefix!r} ({node.name})"


def renamed_old(arrays: dict[str, np.ndarray], modules: dict[str, Any]) -> dict[str, np.ndarray]:
    """``arrays`` with the older spectral_norm's and weight_norm's keys (``weight_orig``, ``weight_g``...) of each
    SpectralNorm and WeightNorm under the parametrizations' names, as PyTorch's own weight_norm loads them."""
    renames = {}
    for prefix, node in modules.items():
        dot = f"{prefix}." if prefix else ""
        old = _OLD_NAMES.get(type(node), {})
        if all(dot + k in arrays for k in old):
            renames.update({dot + k: dot + new for k, new in old.items()})
    return {renames.get(k, k): v for k, v in arrays.items()} if renames else arrays

