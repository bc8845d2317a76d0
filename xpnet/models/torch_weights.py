"""PyTorch's state dicts in and out of xpnet models: ``xn.load_torch_state_dict``, ``xn.torch_state_dict``, and
``xn.read_torch_file``, what a file of ``torch.save`` holds, read without torch (``xpnet/io/torch_file.py``).

How a load goes:

0. A path is read with ``xn.read_torch_file``; ``key=`` picks the state dict out of a checkpoint dict.
1. Every value is read as a host array: NumPy arrays as they are, PyTorch tensors (on any device, with
   ``requires_grad`` or not) through ``xpnet.backend.to_numpy``, by duck typing (torch is never imported).
2. Each node of the xpnet model, by its dotted name, takes its arrays from the keys under the same prefix:
   ``nn.Sequential``'s indices are ``xn.Sequential``'s, a custom ``nn.Module``'s attribute names an
   ``xn.Model``'s. :data:`TORCH_NAMES` (:mod:`.torch_names`) says, per xpnet layer type, which PyTorch array
   (or two) each parameter and buffer is and in what layout; a layer type it does not list (a layer of your own,
   a model's own parameters) keeps its names and layouts.
3. Every problem is gathered, each naming the xpnet layer, the PyTorch key, and what was expected against
   what came (a misshapen array; a key of a layer or direction the xpnet ``LSTM`` was not built with; with
   ``strict=True`` a key left over, saying why it fits nowhere (:mod:`.torch_misfit`), or a parameter not
   filled); one ValueError lists them all before anything changes. A layer of a stacked or bidirectional
   ``LSTM(..., num_layers=2)`` (``lstm.l1_reverse``) takes the keys of its level under the stack's name
   (``lstm.weight_ih_l1_reverse``).
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
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..backend import host_copy, to_numpy
from ..backend.libraries import library
from ..io.paths import fspath
from ..io.streams import describe, is_file_object
from ..io.torch_file import read_torch_archive
from ..layers import TiedLinear
from ..layers.tree import IncompatibleKeys
from ..layers.two_biases import mark as mark_two_biases
from .shared_names import named_at_every_place, named_once, other_places
from .torch_misfit import unexpected_lines, whole_dict_hints
from .torch_names import (TORCH_NAMES, dropped_keys, node_described, parse_formula, renamed_old, torch_names_of,
                          torch_place, torch_refusal)

__all__ = ["TORCH_NAMES", "load_torch_state_dict", "read_torch_file", "torch_state_dict"]


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
    arrays = renamed_old(arrays, modules)
    converted: dict[str, np.ndarray] = {}
    used: set[str] = set()
    missing: list[str] = []
    summed: list[tuple[Any, bool]] = []  # the one-bias layers, whether given a nonzero bias_hh (layers.two_biases)
    for prefix, node in modules.items():
        dot, level = torch_place(prefix, modules)
        where = node_described(prefix, node)
        refusal = torch_refusal(node)
        if refusal is not None:
            problems.append(f"{where}: {refusal}")
            used.update(k for k in arrays if k.rpartition(".")[0] == prefix)
            continue
        own = {**node.params, **node.buffers}
        unfilled = []
        for name, formula in torch_names_of(node, level).items():
            torch_names, how = parse_formula(formula)
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
        used.update(dot + k for k in dropped_keys(node) if dot + k in arrays)
        if isinstance(node, TiedLinear):
            problems += _tied(node, dot, modules, arrays, used)
        needed = [k for _, _, keys in unfilled for k in keys]
        missing += needed
        if strict and unfilled:
            problems.append(f"{where}: PyTorch's {', '.join(map(repr, needed))} not in the dict (for "
                            f"{', '.join(f'{n} = {f}' for n, f, _ in unfilled)})")
    unexpected = [k for k in arrays if k not in used]
    if strict:
        problems = whole_dict_hints(list(arrays), unexpected, model) + problems + unexpected_lines(unexpected, modules)
    if problems:
        raise ValueError(f"{who}: the PyTorch state dict does not fit the xpnet {model.name}:\n  "
                         + "\n  ".join(problems))
    model.load_state_dict(converted, strict=strict)
    for node, two in summed:
        mark_two_biases(node, two)
    return IncompatibleKeys(missing, unexpected)


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
    return [(f"{node_described(dot[:-1], node)}: PyTorch's {key!r} differs from {embedding + '.weight'!r}, but this "
             f"TiedLinear shares the Embedding {embedding!r}'s W: the PyTorch model's output layer is not tied to its "
             "embedding (build an xn.layers.Linear there)")]


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
        dot, level = torch_place(prefix, modules)
        refusal = torch_refusal(node)
        if refusal is not None:
            raise ValueError(f"xn.torch_state_dict: {node_described(prefix, node)}: {refusal}")
        if isinstance(node, TiedLinear):
            out[dot + "weight"] = host_copy(node.embedding.params["W"])
        own = {**node.params, **node.buffers}
        for name, formula in torch_names_of(node, level).items():
            torch_names, how = parse_formula(formula)
            value = host_copy(own[name])
            if name == "num_batches_tracked":  # a float count in xpnet, PyTorch's int64
                value = np.asarray(np.rint(value), dtype=np.int64)
            if how == "+":
                values = [value, np.zeros_like(value)]
            else:
                values = [np.asarray(value.T, order="C") if how == "T" else value]
            out.update(zip((dot + t for t in torch_names), values))
        for k in dropped_keys(node):
            out[dot + k] = np.zeros((), dtype=np.int64)
    out = named_at_every_place(out, other_places(model))
    if as_tensors:
        torch, why = library("torch")
        if torch is None:
            raise ImportError(f"xn.torch_state_dict(as_tensors=True): {why}; or leave as_tensors out for NumPy arrays")
        return {k: torch.from_numpy(v) for k, v in out.items()}
    return out
