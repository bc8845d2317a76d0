"""PyTorch's state dicts in and out of xpnet models: ``xn.load_torch_state_dict``, ``xn.torch_state_dict``, and
``xn.read_torch_file``, what a file of ``torch.save`` holds, read without torch (``xpnet/io/torch_file.py``).

How a load goes:

0. A path is read with ``xn.read_torch_file``; ``key=`` picks the state dict out of a checkpoint dict.
1. Every value is read as a host array: NumPy arrays as they are, PyTorch tensors (on any device, with
   ``requires_grad`` or not) through ``xpnet.backend.to_numpy``, by duck typing (torch is never imported).
2. Each node of the xpnet model, by its dotted name, takes its arrays from the keys under the same prefix:
   ``nn.Sequential``'s indices are ``xn.Sequential``'s, a custom ``nn.Module``'s attribute names an
   ``xn.Model``'s. :data:`TORCH_NAMES` says, per xpnet layer type, which PyTorch array (or two) each
   parameter and buffer is and in what layout; a layer type it does not list (a layer of your own, a
   model's own parameters) keeps its names and layouts.
3. Every problem is gathered, each naming the xpnet layer, the PyTorch key, and what was expected against
   what came (a misshapen array; a key of a layer or direction the xpnet ``LSTM`` was not built with; with
   ``strict=True`` a key left over or a parameter not filled); one ValueError lists them all before anything
   changes. A layer of a stacked or bidirectional ``LSTM(..., num_layers=2)`` (``lstm.l1_reverse``) takes
   the keys of its level under the stack's name (``lstm.weight_ih_l1_reverse``).
4. The converted dict goes through ``model.load_state_dict``, whose checks apply too, and which casts
   and moves each array to its parameter's dtype and device.

``torch_state_dict`` runs the table backwards, to NumPy arrays by PyTorch's names and in its layouts.
Two things cannot be read back exactly and are chosen: RNN's and LSTM's one bias ``b`` (their default, the book's
layout) is ``bias_ih_l0 = b``, ``bias_hh_l0 = 0`` (of every level, ``_l{k}`` and ``_l{k}_reverse``; the cells'
``bias_ih = b``, ``bias_hh = 0``) (the sum is what both compute with; built with ``convention="pytorch"`` they hold
PyTorch's two, ``bx``, ``bh``, which come and go as they are); a BatchNorm whose momentum is a number, which has no
``num_batches_tracked`` (it is unused by PyTorch too then), gives 0 for it, as an InstanceNorm with running
statistics does (PyTorch never counts it there).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..backend import host_copy, to_numpy
from ..backend.libraries import library
from ..io.paths import fspath
from ..io.streams import describe, is_file_object
from ..io.torch_file import read_torch_archive
from ..layers import (GRU, LSTM, RNN, BatchNorm, Bilinear, Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d,
                      Embedding, FrozenBatchNorm2d, GroupNorm, GRUCell, InstanceNorm1d, InstanceNorm2d, LayerNorm,
                      Linear, LSTMCell, MultiheadAttention, PositionalEncoding, PReLU, RMSNorm, RNNCell, SpectralNorm,
                      TiedLinear, WeightNorm)
from ..layers.recurrent_stack import RecurrentStack
from ..layers.tree import IncompatibleKeys
from ..layers.two_biases import mark as mark_two_biases
from .shared_names import named_at_every_place, named_once, other_places

__all__ = ["TORCH_NAMES", "load_torch_state_dict", "read_torch_file", "torch_state_dict"]

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

_RECURRENT_KEY = re.compile(r"(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?")
_BUILT_WITHOUT = ("bias", "affine", "elementwise_affine", "track_running_stats")


def _parse(formula: str) -> tuple[tuple[str, ...], str]:
    """(PyTorch's names, how): how is "" (the same array), "T" (transposed) or "+" (their sum)."""
    if " + " in formula:
        return tuple(formula.split(" + ")), "+"
    if formula.endswith(".T"):
        return (formula[:-2],), "T"
    return (formula,), ""


def _names(node: Any, level: str = "l0") -> dict[str, str]:
    """The node's own parameters and buffers -> their PyTorch formulas (its own names where none is known);
    a recurrent layer's keys are of its ``level`` (``"l1_reverse"``: ``weight_ih_l1_reverse``)."""
    table = next((TORCH_NAMES[cls] for cls in type(node).__mro__ if cls in TORCH_NAMES), {})
    if isinstance(node, (SpectralNorm, WeightNorm)):  # the wrapped layer's weight, by PyTorch's parametrization
        layout = ".T" if _names(node.layer)["W"].endswith(".T") else ""
        table = {"W_orig": "parametrizations.weight.original" + layout, "u": "parametrizations.weight.0._u",
                 "v": "parametrizations.weight.0._v", "b": "bias"} if isinstance(node, SpectralNorm) else \
            {"g": "parametrizations.weight.original0" + layout, "v": "parametrizations.weight.original1" + layout,
             "b": "bias"}
    if isinstance(node, (RNN, LSTM, GRU)):
        table = {k: v.replace("_l0", f"_{level}") for k, v in table.items()}
    return {name: table.get(name, name) for name in (*node.params, *node.buffers)}


def _place(prefix: str, modules: dict[str, Any]) -> tuple[str, str]:
    """Where the node at ``prefix`` finds its PyTorch keys: (their dotted prefix, the recurrent level). A layer
    of a ``RecurrentStack`` (``lstm.l1_reverse``) is one level of PyTorch's module (``lstm.weight_ih_l1_reverse``)."""
    parent, _, attr = prefix.rpartition(".")
    if prefix and isinstance(modules.get(parent), RecurrentStack):
        return (f"{parent}." if parent else ""), attr
    return (f"{prefix}." if prefix else ""), "l0"


def _refusal(node: Any) -> str | None:
    """Why no PyTorch state dict fits this node, or None."""
    if isinstance(node, GRU) and not isinstance(node, RecurrentStack) and node.convention == "book":
        return ("the book's GRU (convention='book') is another function than nn.GRU, so PyTorch's weights do not "
                "fit it: build GRU(..., convention='pytorch') (the default)")
    return None


def _dropped(node: Any) -> tuple[str, ...]:
    """PyTorch's keys (last part) that this node takes and drops: a BatchNorm whose momentum is a number has no
    ``num_batches_tracked``, which PyTorch counts but does not use then either; nor an InstanceNorm with running
    statistics, whose ``num_batches_tracked`` PyTorch never counts; nor a FrozenBatchNorm2d, whose torchvision
    original drops it from the BatchNorm2d state dicts it loads."""
    if isinstance(node, BatchNorm) and node.track_running_stats and node.momentum is not None or \
            isinstance(node, (InstanceNorm1d, InstanceNorm2d)) and node.track_running_stats or \
            isinstance(node, FrozenBatchNorm2d):
        return ("num_batches_tracked",)
    return ()


def _describe(prefix: str, node: Any) -> str:
    if not prefix:
        return f"the model ({node.name})"
    return f"layer {prefix!r} ({node!r})" if not node.named_children() else f"layer {prefix!r} ({node.name})"


def read_torch_file(path: Any) -> Any:
    """What the file at ``path`` of ``torch.save`` (torch 1.6 and later: every torchvision weight file) holds, read
    without torch, every tensor a NumPy array: a state dict is a dict of arrays by PyTorch's names, a checkpoint
    dict (``{"model": state_dict, "epoch": 3}``) keeps its dicts, lists, numbers and strings. As ``torch.load``
    with ``weights_only=True``, nothing in the file is called but the few names a state dict needs; anything
    else is refused, naming it. dtypes: float16/32/64, int8/16/32/64, uint8/16/32/64, bool, complex64/128, and
    bfloat16, which NumPy lacks, as float32 (exact: each bfloat16 is a float32 whose low 16 bits are zero).
    Tensors that shared memory in PyTorch (views of one storage) share it here where they are contiguous; a
    non-contiguous one (a transposed view) is a copy. torch's older format (torch < 1.6) and TorchScript
    archives (``torch.jit.save``) are refused, saying what to do; every error is an XpnetFileError naming the path.
    ``xn.read_torch_file("resnet18-f37072fd.pth")["fc.weight"]`` is torchvision's (1000, 512) float32 array.
    ``path`` may be a binary file object that reads and seeks (``io.BytesIO`` of ``torch.save(obj, buffer)``), as
    ``torch.load(buffer)``: read from its position and left at the end of what it read.
    """
    return read_torch_archive(path, "xn.read_torch_file")


def load_torch_state_dict(model: Any, state_dict: Any, strict: bool = True, *,
                          key: str | None = None) -> IncompatibleKeys:
    """Load a PyTorch state dict (tensors or NumPy arrays by PyTorch's dotted names, from ``torch_model.state_dict()``)
    into the xpnet ``model`` of the same structure, converting names and layouts per layer type
    (:data:`TORCH_NAMES`: Linear's ``W = weight.T``, BatchNorm's ``gamma = weight``, LSTM's
    ``b = bias_ih_l0 + bias_hh_l0``, or with ``convention="pytorch"`` ``bx = bias_ih_l0``, ``bh = bias_hh_l0``...).
    A BatchNorm whose momentum is a number drops PyTorch's ``num_batches_tracked`` (unused by PyTorch too then); a
    ``TiedLinear`` takes PyTorch's copy of the tied weight and checks it is the embedding's.

    ``state_dict`` may be the path of a file of ``torch.save`` (or a binary file object, ``io.BytesIO``), read without
    torch (:func:`read_torch_file`):
    ``xn.load_torch_state_dict(xn.models.resnet18(), "resnet18-f37072fd.pth")`` loads torchvision's file. A
    checkpoint dict (``torch.save({"model": model.state_dict(), "epoch": 3}, path)``) needs ``key``, the entry
    that is the state dict: ``key="model"`` loads ``torch.load(path)["model"]`` (xpnet's argument, not PyTorch's);
    without it the error lists the entries.

    Everything is checked before anything changes: a ValueError names each layer, PyTorch key and what was
    expected against what came. With ``strict=False`` keys left over and parameters not filled are allowed
    (a misshapen array never is) and returned, by PyTorch's names. Example::

        torch_model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
        model = xn.Sequential(xn.layers.Linear(4, 3), xn.layers.ReLU(), xn.layers.Linear(3, 2))
        xn.load_torch_state_dict(model, torch_model.state_dict())    # W = weight.T, b = bias
        torch_model.load_state_dict(xn.torch_state_dict(model, as_tensors=True))   # and back
    """
    who = "xn.load_torch_state_dict"
    source = "the dict"
    if isinstance(state_dict, (bytes, bytearray)) and (b"\0" in state_dict or state_dict[:2] == b"PK"):
        raise TypeError(f"{who}: got {len(state_dict)} bytes of a file's contents, where it reads a file by its path "
                        "or a binary file object (or takes a dict of tensors): pass the path, or io.BytesIO(data)")
    if is_file_object(state_dict):
        source = describe(state_dict)
        state_dict = read_torch_archive(state_dict, who)
    elif isinstance(state_dict, (str, bytes, os.PathLike)):
        source = repr(fspath(state_dict, who))
        state_dict = read_torch_archive(state_dict, who)
    state_dict = _state_dict_in(state_dict, key, source, who)
    problems: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    for entry, value in state_dict.items():
        if not isinstance(entry, str) or not hasattr(value, "shape") or not hasattr(value, "dtype"):
            problems.append(f"the entry {entry!r} is a {type(value).__name__}, not a tensor or array by name")
        else:
            arrays[entry] = to_numpy(value)
    modules = model.named_modules()
    arrays, differ = named_once(arrays, other_places(model))  # a shared layer's arrays under each of its places
    problems += differ
    arrays = _renamed_old(arrays, modules)
    converted: dict[str, np.ndarray] = {}
    used: set[str] = set()
    missing: list[str] = []
    summed: list[tuple[Any, bool]] = []  # the one-bias layers, whether given a nonzero bias_hh (layers.two_biases)
    for prefix, node in modules.items():
        dot, level = _place(prefix, modules)
        where = _describe(prefix, node)
        refusal = _refusal(node)
        if refusal is not None:
            problems.append(f"{where}: {refusal}")
            used.update(k for k in arrays if k.rpartition(".")[0] == prefix)
            continue
        own = {**node.params, **node.buffers}
        unfilled = []
        for name, formula in _names(node, level).items():
            torch_names, how = _parse(formula)
            keys = [dot + t for t in torch_names]
            present = [k for k in keys if k in arrays]
            used.update(present)
            if not present:
                unfilled.append((name, formula, keys))
                continue
            if len(present) < len(keys):
                absent = [k for k in keys if k not in arrays]
                problems.append(f"{where}: PyTorch's {present[0]!r} came without {absent[0]!r}; xpnet's {name} is "
                                f"{formula}")
                continue
            want = tuple(int(d) for d in own[name].shape)
            want = want[::-1] if how == "T" else want
            wrong = [k for k in keys if tuple(arrays[k].shape) != want]
            for k in wrong:
                problems.append(f"{where}: PyTorch's {k!r} has shape {tuple(arrays[k].shape)}, expected {want} "
                                f"(for its {name} {tuple(own[name].shape)} = {formula})")
            if not wrong:
                converted[f"{prefix}.{name}" if prefix else name] = _to_xpnet([arrays[k] for k in keys], how)
                if how == "+":  # marked where PyTorch's own bias_hh came, not xpnet's zeros
                    summed.append((node, bool(np.any(arrays[keys[1]]))))
        used.update(dot + k for k in _dropped(node) if dot + k in arrays)
        if isinstance(node, TiedLinear):
            problems += _tied(node, dot, modules, arrays, used)
        needed = [k for _, _, keys in unfilled for k in keys]
        missing += needed
        if strict and unfilled:
            problems.append(f"{where}: PyTorch's {', '.join(map(repr, needed))} not in the dict (for "
                            f"{', '.join(f'{n} = {f}' for n, f, _ in unfilled)})")
    unexpected = [k for k in arrays if k not in used]
    if strict:
        problems = _hints(list(arrays), unexpected, model) + problems + _unexpected(unexpected, modules)
    if problems:
        raise ValueError(f"{who}: the PyTorch state dict does not fit the xpnet {model.name}:\n  "
                         + "\n  ".join(problems))
    model.load_state_dict(converted, strict=strict)
    for node, two in summed:
        mark_two_biases(node, two)
    return IncompatibleKeys(missing, unexpected)


def _renamed_old(arrays: dict[str, np.ndarray], modules: dict[str, Any]) -> dict[str, np.ndarray]:
    """``arrays`` with the older spectral_norm's and weight_norm's keys (``weight_orig``, ``weight_g``...) of each
    SpectralNorm and WeightNorm under the parametrizations' names, as PyTorch's own weight_norm loads them."""
    renames = {}
    for prefix, node in modules.items():
        dot = f"{prefix}." if prefix else ""
        old = _OLD_NAMES.get(type(node), {})
        if all(dot + k in arrays for k in old):
            renames.update({dot + k: dot + new for k, new in old.items()})
    return {renames.get(k, k): v for k, v in arrays.items()} if renames else arrays


def _state_dict_in(obj: Any, key: str | None, source: str, who: str) -> Mapping[str, Any]:
    """The state dict that ``obj`` (read from ``source``) is, or holds under ``key``: a checkpoint dict without
    ``key`` is refused, listing its entries."""
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            entries = ", ".join(map(repr, obj)) if isinstance(obj, Mapping) else f"none: it is a {type(obj).__name__}"
            raise ValueError(f"{who}: key={key!r}, but {source} has no entry {key!r} (its entries: {entries})")
        obj, source = obj[key], f"{source}[{key!r}]"
    if not isinstance(obj, Mapping):
        raise TypeError(f"{who}: expected a dict of tensors or arrays by PyTorch's names (torch_model.state_dict()) "
                        f"or the path of a file of one, got {type(obj).__name__}"
                        + (f" in {source}" if source != "the dict" else ""))
    if "state" in obj and "param_groups" in obj:
        raise ValueError(f"{who}: {source} is torch.optim's state_dict (an optimizer's: 'state', 'param_groups'), "
                         "which loads with xn.load_torch_optimizer_state_dict(optimizer, model, d); the model's "
                         "weights are in the model's state_dict (torch_model.state_dict(), a checkpoint's "
                         "'model_state_dict')")
    inner = [k for k, v in obj.items() if isinstance(v, Mapping)]
    inner.sort(key=lambda k: not all(hasattr(v, "shape") for v in obj[k].values()))  # the dicts of tensors first
    if inner:
        entries = ", ".join(f"{k!r} ({_what(v)})" for k, v in obj.items())
        raise ValueError(f"{who}: {source} is a checkpoint dict, not a state dict (tensors by name): its entries are "
                         f"{entries}; pass key= naming the state dict, key={inner[0]!r}")
    return obj


def _what(value: Any) -> str:
    if isinstance(value, Mapping):
        arrays = sum(hasattr(v, "shape") and hasattr(v, "dtype") for v in value.values())
        return f"a dict of {len(value)} entries, {arrays} of them tensors"
    return f"{type(value).__name__} of shape {tuple(value.shape)}" if hasattr(value, "shape") else type(value).__name__


def _to_xpnet(arrays: list[np.ndarray], how: str) -> np.ndarray:
    if how == "+":
        return arrays[0] + arrays[1]
    return np.asarray(arrays[0].T if how == "T" else arrays[0], order="C")


def _tied(node: TiedLinear, dot: str, modules: dict[str, Any], arrays: dict[str, np.ndarray],
          used: set[str]) -> list[str]:
    """PyTorch's state dict holds a tied weight under both modules' names: take the output layer's copy,
    after checking it is the embedding's."""
    key = dot + "weight"
    if key not in arrays:
        return []
    used.add(key)
    embedding = next((name for name, n in modules.items() if n is node.embedding), None)
    theirs = None if embedding is None else arrays.get(f"{embedding}.weight")
    if theirs is None or (theirs.shape == arrays[key].shape and np.array_equal(theirs, arrays[key])):
        return []
    return [(f"{_describe(dot[:-1], node)}: PyTorch's {key!r} differs from {embedding + '.weight'!r}, but this "
             f"TiedLinear shares the Embedding {embedding!r}'s W: the PyTorch model's output layer is not tied to its "
             "embedding (build an xn.layers.Linear there)")]


def _unexpected(keys: list[str], modules: dict[str, Any]) -> list[str]:
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
    takes = [prefix + "." + t if prefix else t for f in _names(node).values() for t in _parse(f)[0]]
    # bias is has_bias on the layers whose bias is PyTorch's parameter, the flag itself on the recurrent ones
    without = [f for f in _BUILT_WITHOUT
               if getattr(node, "has_bias" if f == "bias" else f, getattr(node, f, True)) is False]
    return (f"{_describe(prefix, node)} takes {', '.join(map(repr, takes)) or 'no arrays'}"
            + (f" (it was built with {', '.join(f + '=False' for f in without)})" if without else ""))


def _hints(keys: list[str], unexpected: list[str], model: Any) -> list[str]:
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


def torch_state_dict(model: Any, *, as_tensors: bool = False) -> dict[str, Any]:
    """The xpnet ``model``'s parameters and buffers by PyTorch's names and in its layouts, as NumPy copies
    (``as_tensors=True``: CPU torch tensors), for the equivalent PyTorch model:
    ``torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in xn.torch_state_dict(model).items()})``.

    The reverse of :func:`load_torch_state_dict`, with two choices: RNN's and LSTM's one bias ``b`` becomes
    ``bias_ih_l0 = b`` and ``bias_hh_l0 = 0`` (their cells': ``bias_ih``, ``bias_hh``) (their sum is ``b``, which
    is all either model computes with; ``convention="pytorch"``'s ``bx``, ``bh`` go back as they are);
    every BatchNorm that tracks running statistics gives ``num_batches_tracked`` as PyTorch's int64 (its count
    with ``momentum=None``, else 0: PyTorch does not use it then), a FrozenBatchNorm2d 0 too (so the dict loads
    into ``nn.BatchNorm2d`` as into torchvision's ``FrozenBatchNorm2d``, which drops it). A ``TiedLinear`` gives
    the embedding's W as its ``weight`` too, as PyTorch's state dict of tied modules does.
    """
    out: dict[str, np.ndarray] = {}
    modules = model.named_modules()
    for prefix, node in modules.items():
        dot, level = _place(prefix, modules)
        refusal = _refusal(node)
        if refusal is not None:
            raise ValueError(f"xn.torch_state_dict: {_describe(prefix, node)}: {refusal}")
        if isinstance(node, TiedLinear):
            out[dot + "weight"] = host_copy(node.embedding.params["W"])
        own = {**node.params, **node.buffers}
        for name, formula in _names(node, level).items():
            torch_names, how = _parse(formula)
            value = host_copy(own[name])
            if name == "num_batches_tracked":  # a float count in xpnet, PyTorch's int64
                value = np.asarray(np.rint(value), dtype=np.int64)
            if how == "+":
                values = [value, np.zeros_like(value)]
            else:
                values = [np.asarray(value.T, order="C") if how == "T" else value]
            out.update(zip((dot + t for t in torch_names), values))
        for k in _dropped(node):
            out[dot + k] = np.zeros((), dtype=np.int64)
    out = named_at_every_place(out, other_places(model))
    if as_tensors:
        torch, why = library("torch")
        if torch is None:
            raise ImportError(f"xn.torch_state_dict(as_tensors=True): {why}; or leave as_tensors out for NumPy arrays")
        return {k: torch.from_numpy(v) for k, v in out.items()}
    return out
