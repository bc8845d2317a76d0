"""xpnet's optimizer state out to torch.optim: ``xn.torch_optimizer_state_dict``, the reverse of
``xn.load_torch_optimizer_state_dict`` (``torch_state``), so that a run started in xpnet goes on in PyTorch with its
momentum, moments and step counts, not only its weights (``xn.torch_state_dict``).

How an export goes:

1. The xpnet optimizer's torch twin (``torch_twins.TWINS``) is found, or refused saying why (a book convention;
   the book's ``Momentum`` is ``SGD(momentum)``'s with ``momentum_buffer = -v / lr``, ``Nesterov(convention="book")``
   ``SGD(momentum, nesterov=True)``'s so).
2. Each xpnet param group (one node of the model) is torch's group of the same place; its hyperparameters go by
   PyTorch's names, with torch's defaults for the settings xpnet lacks (``maximize=False``, ``foreach=None``...).
   A setting torch has no counterpart for at a value that changes the steps (``weight_decay_on="weights"`` with a
   weight decay: torch decays every parameter of a group) is refused, naming the group and why.
3. torch numbers the parameters across its groups in order, each group's in the order of ``model.parameters()``
   of the model of the same structure (:func:`~xpnet.optim.torch_state.torch_parameters`, frozen ones included, as
   an xpnet group holds them; ``trainable_only=True``: those that train, PyTorch's fine-tuning idiom). Each
   parameter's state is renamed (``v`` is SGD's ``momentum_buffer``...), laid out as torch's parameter (a Linear's
   transposed) and completed with the keys torch's step reads: ``step`` is the
   parameter's own count, ``t - skipped``, NAdam's ``mu_product`` its product of mu up to that step.
4. Every problem is gathered into one ValueError before anything is built; then, with ``as_tensors=True``, each
   array becomes a CPU torch tensor.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .._user import flag
from ..backend import dtype_name, host_copy
from ..backend.libraries import library
from .lbfgs import LBFGS
from .sgd import SGD, Momentum
from .torch_state import _LBFGS_FLAT, _places, torch_parameters
from .torch_twins import IMPLEMENTATION, TORCH_KEYS, by_lr, check_pair, implied, twin as find_twin, warn_lr

__all__ = ["torch_optimizer_state_dict"]

WHO = "xn.torch_optimizer_state_dict"

# torch's state keys that its step reads only under a setting (the group's key that must be true)
_ONLY_WITH = {"max_exp_avg_sq": "amsgrad", "momentum_buffer": "momentum", "grad_avg": "centered"}
_NO_STEP = {"SGD", "LBFGS"}  # torch.optim's optimizers without a per-parameter "step"


def torch_optimizer_state_dict(optimizer: Any, model: Any, *, as_tensors: bool = False,
                               trainable_only: bool = False) -> dict[str, Any]:
    """The xpnet ``optimizer``'s state as torch.optim's ``state_dict()`` (``state`` by parameter index,
    ``param_groups``) for its torch twin built over the PyTorch model of ``model``'s structure, whose weights
    ``xn.torch_state_dict(model)`` gives: a run started in xpnet goes on in PyTorch with its momentum buffers,
    moments, step counts and hyperparameters, step for step as xpnet's would (tested equal in float64)::

        torch_model.load_state_dict(xn.torch_state_dict(model, as_tensors=True))
        torch_optimizer = torch.optim.Adam(torch_model.parameters())
        torch_optimizer.load_state_dict(xn.torch_optimizer_state_dict(optimizer, model, as_tensors=True))

    The arguments are ``xn.load_torch_optimizer_state_dict``'s, less the dict, and ``xn.torch_state_dict``'s
    ``as_tensors``: NumPy copies by default (torch's ``load_state_dict`` takes tensors only: pass
    ``as_tensors=True``, CPU tensors, which torch moves to its parameters' device); ``step`` and ``mu_product`` are
    0-d float64 arrays, as tensors torch's scalar dtype (float32 unless torch's default dtype is float64), as
    torch.optim makes them. The NumPy dict loads back with ``xn.load_torch_optimizer_state_dict``.

    The twin (``torch_twins.TWINS``): ``SGD``, ``Nesterov`` (``SGD(nesterov=True)``) and the book's ``Momentum``
    (``SGD(momentum)``, whose ``momentum_buffer`` is ``-v / lr``, and so ``Nesterov(convention="book")``'s for
    ``SGD(momentum, nesterov=True)``: torch goes on as xpnet's while lr stays as it is; a warning where the group
    has an LR scheduler, whose next change of lr moves the two apart), ``AdaGrad``
    (``Adagrad``, every parameter with state, as torch makes it at construction), ``RMSprop``, ``Adam``, ``AdamW``,
    ``NAdam``, ``RAdam``, ``Adamax``, ``Adadelta``, ``LBFGS`` (its flat vectors reordered into torch's order and
    layouts, zeros for a frozen parameter, as torch's zero gradient of one gives). torch's optimizer must have the same
    param groups, each of every parameter of the same layers (``model.parameters()``, frozen ones included), or
    with ``trainable_only=True`` of those that train (PyTorch's fine-tuning idiom, ``Adam(p for p in
    model.parameters() if p.requires_grad)``, the torch model's layers frozen alike; a frozen parameter's state is
    left out); its indices are those of :func:`~xpnet.optim.torch_state.torch_parameters`. A parameter that has not
    stepped yet has no state, as in torch (``Adagrad``'s: zeros, as its constructor makes them). Refused, naming the
    group or parameter and why, before anything is built: the state of another model than ``model`` (names,
    shapes); the book's conventions (no twin; ``Nesterov``'s ``"book"`` excepted); ``Momentum`` at lr 0 (``v``
    holds no buffer then); a weight decay with ``weight_decay_on="weights"`` (torch's decays every parameter: build
    the xpnet optimizer with ``weight_decay_on="all"``); an xpnet-only hyperparameter; and for ``LBFGS`` the one
    bias of a default RNN/LSTM, and with ``trainable_only=True`` a history holding a parameter frozen since it
    stepped (torch's LBFGS of the parameters that train has no place for its part).
    Converted with a warning: that one bias ``b``, whose weights go out as ``bias_ih = b``, ``bias_hh = 0``: each of
    torch's two takes ``b``'s state (the state each would have, given ``b``'s gradients), but torch then steps each
    of the two by the update where xpnet steps ``b`` once, so the run goes on as torch's two-bias layer does, not as
    xpnet's (``convention="pytorch"`` goes on exactly).
    """
    check_pair(optimizer, model, WHO, "the one xn.torch_state_dict exports")
    as_tensors, trainable_only = flag(as_tensors, WHO, "as_tensors"), flag(trainable_only, WHO, "trainable_only")
    name, slots = find_twin(optimizer, WHO)
    places = _places(optimizer, model, WHO)
    problems: list[str] = []
    groups = [_group(optimizer, i, name, problems) for i in range(len(places))]
    entries = [torch_parameters(node, WHO) for node, _, _ in places]
    if trainable_only:
        entries = [[e for e in found if e[1] in node.trainable_params()]
                   for found, (node, _, _) in zip(entries, places)]
    summed: dict[str, list[str]] = {}
    if isinstance(optimizer, LBFGS):
        state = _lbfgs_state(optimizer, places[0][0], places[0][2], entries[0], problems)
    else:
        state, summed = _param_state(optimizer, name, slots, places, entries, groups, problems)
    if problems:
        raise ValueError(f"{WHO}: the xpnet {optimizer.name}'s state has no torch.optim.{name} equivalent:\n  "
                         + "\n  ".join(problems))
    if summed:
        pairs = "; ".join(f"{n} as {a} = {n}, {b} = 0" for n, (a, b) in summed.items())
        warnings.warn(f"{WHO}: xpnet's one bias goes to torch as its two biases ({pairs}), each with its state; "
                      "torch steps each of the two by the update where xpnet steps the one once, so the run goes on "
                      "as torch's two-bias layer, not as xpnet's: build the layer with convention='pytorch' to go on "
                      "exactly", UserWarning, stacklevel=2)
    warn_lr(optimizer, [(g["lr"], g.get("initial_lr")) for g in groups], WHO)
    first = 0
    for group, found in zip(groups, entries):
        group["params"] = list(range(first, first + len(found)))
        first += len(found)
    out = {"state": state, "param_groups": groups}
    return _as_tensors(out) if as_tensors else out


def _group(optimizer: Any, index: int, name: str, problems: list[str]) -> dict[str, Any]:
    """torch's param group ``index``: the xpnet group's hyperparameters by PyTorch's names, torch's defaults for
    the settings xpnet lacks, its ``initial_lr`` and keys of the user's own; what torch cannot take to ``problems``."""
    xgroup = optimizer.param_groups[index]
    values = xgroup.hyperparams()
    where = f"param_groups[{index}]"
    on = values.pop("weight_decay_on", "all")
    if on != "all" and values.get("weight_decay"):
        problems.append(f"{where}: weight_decay={values['weight_decay']} with weight_decay_on={on!r} spares the "
                        f"biases (and norms' gamma, beta), where torch.optim.{name}'s weight_decay is on every "
                        "parameter of its group: build the xpnet optimizer with weight_decay_on='all'")
    values.pop("convention", None)  # torch has none: twin() took "pytorch", or Nesterov's "book" (by_lr)
    fixed = SGD.PYTORCH_ONLY if isinstance(optimizer, Momentum) else optimizer.PYTORCH_ONLY  # Nesterov's too
    group = {**values, **implied(optimizer), **fixed}
    if "betas" in group:
        group["betas"] = tuple(group["betas"])
    alien = sorted(k for k in group if k not in TORCH_KEYS[name] and k not in IMPLEMENTATION and k != "maximize")
    if alien:
        problems.append(f"{where}: {', '.join(alien)}: xpnet's own, which torch.optim.{name} has no counterpart for")
    if xgroup.initial_lr is not None:
        group["initial_lr"] = xgroup.initial_lr
    group.update(xgroup.own)
    return group


def _param_state(optimizer: Any, name: str, slots: dict[str, str], places: list[tuple[Any, str, str]],
                 entries: list[list[tuple[str, str, str, int]]], groups: list[dict[str, Any]],
                 problems: list[str]) -> tuple[dict[int, dict[str, Any]], dict[str, list[str]]]:
    """torch's ``state`` by index: each parameter's state renamed, laid out as torch's and completed; the
    summed biases (xpnet's name -> torch's two) to warn of."""
    state: dict[int, dict[str, Any]] = {}
    summed: dict[str, list[str]] = {}
    index = 0
    known: set[str] = set()
    for i, ((node, name_prefix, torch_prefix), found, group) in enumerate(zip(places, entries, groups)):
        params = node.named_params()
        known.update(name_prefix + k for k in params)
        keys = [k for k in slots.values() if k not in _ONLY_WITH or group.get(_ONLY_WITH[k])]
        scale = -group["lr"] if by_lr(optimizer) else 1.0  # the book's Momentum: v = -lr * momentum_buffer
        if scale == 0 and any(name_prefix + k in optimizer.state for k in params):
            problems.append(f"param_groups[{i}]: lr=0, where xn.optim.{optimizer.name}'s v is -lr * torch's "
                            "momentum_buffer: at lr 0 it holds nothing of the buffer; export it at the lr the run "
                            "went with, or train with xn.optim.SGD(lr, momentum=...)")
            index += len(found)
            continue
        for torch_name, xpnet_name, how, part in found:
            full = name_prefix + xpnet_name
            own = optimizer.state.get(full)
            if own is None and name != "Adagrad":  # not stepped yet: no state, as in torch
                index += 1
                continue
            p = params[xpnet_name]
            theirs: dict[str, Any] = {}
            if name not in _NO_STEP:
                steps = optimizer.t - optimizer.skipped.get(full, 0) if own is not None else 0
                theirs["step"] = np.asarray(float(steps))
            if name == "NAdam":
                theirs["mu_product"] = np.asarray(_mu_product(optimizer, full, group, int(theirs["step"])))
            by_key = {tkey: slot for slot, tkey in slots.items()}
            shape = tuple(int(d) for d in p.shape)
            for key in keys:
                value = (own or {}).get(by_key[key])
                a = np.zeros(shape, dtype=np.dtype(dtype_name(p))) if value is None else host_copy(value) / scale
                if a.shape != shape:
                    problems.append(f"the state {by_key[key]} of {full} has shape {a.shape}, the parameter {shape}: "
                                    "the state of another model")
                theirs[key] = np.array(a.T, order="C") if how == "T" else a
            state[index] = theirs
            if how == "+":
                summed.setdefault(full, []).append(torch_prefix + torch_name)
            index += 1
    unknown = sorted(set(optimizer.state) - known)
    if unknown:
        problems.append(f"the state of {', '.join(unknown[:4])}{', ...' if len(unknown) > 4 else ''} is of no "
                        "parameter of the model given: pass the model the optimizer steps")
    return state, summed


def _mu_product(optimizer: Any, name: str, group: dict[str, Any], n: int) -> float:
    """NAdam's product of mu up to step ``n`` of parameter ``name``: the one kept, times the mu of the steps it has
    not seen, with the group's beta1 (as its next step would make it), without changing the optimizer."""
    kept = optimizer.scalars.get(name, {})
    b1, decay = group["betas"][0], group["momentum_decay"]
    product = kept.get("mu_product", 1.0)
    return product * math.prod(b1 * (1.0 - 0.5 * 0.96 ** (i * decay)) for i in range(kept.get("mu_step", 0) + 1,
                                                                                      n + 1))


def _lbfgs_state(optimizer: Any, node: Any, torch_prefix: str, found: list[tuple[str, str, str, int]],
                 problems: list[str]) -> dict[int, dict[str, Any]]:
    """torch.optim.LBFGS's state, under its first parameter's index: xpnet's flat vectors (the parameters that train,
    xpnet's layouts) reordered into torch's of every parameter of the group in torch's order and layouts."""
    summed: dict[str, list[str]] = {}
    for torch_name, xpnet_name, how, _ in found:
        if how == "+":
            summed.setdefault(xpnet_name, []).append(torch_prefix + torch_name)
    if summed:
        pairs = ", ".join(f"{n} = {' + '.join(t)}" for n, t in summed.items())
        problems.append(f"xpnet's {pairs}: one bias where "
                        "torch has two, whose parts of L-BFGS's flat vectors (each its own history) one bias cannot "
                        "give: build the layer with convention='pytorch' (bx, bh: PyTorch's two)")
        return {}
    own = optimizer.state
    if not own:
        return {}
    params = node.named_params()
    offsets, at = {}, 0
    for _, xpnet_name, how, _ in found:
        shape = tuple(int(d) for d in params[xpnet_name].shape)
        offsets[xpnet_name] = (at, shape, how)
        at += math.prod(shape)
    names = optimizer._names or list(node.trainable_params())
    gone = [n for n in names if n not in offsets]  # trainable_only, and frozen since the history was made
    if gone:
        problems.append(f"xpnet's LBFGS's history is of the flat vector of {', '.join(names)}, where "
                        f"{', '.join(gone)} train no longer: torch.optim.LBFGS of the parameters that train "
                        "(trainable_only=True) has no place for their part of it; export with trainable_only=False "
                        "(torch's optimizer of every parameter, model.parameters(): torch's LBFGS takes the "
                        "frozen ones' gradients as zeros), or build a new LBFGS")
        return {}
    order = []
    for xpnet_name in names:
        start, shape, how = offsets[xpnet_name]
        index = np.arange(start, start + math.prod(shape)).reshape(shape[::-1] if how == "T" else shape)
        order.append((index.T if how == "T" else index).ravel())
    order = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)

    def spread(flat: Any) -> np.ndarray:
        ours = host_copy(flat)
        theirs = np.zeros(at, dtype=ours.dtype)
        theirs[order] = ours
        return theirs

    out: dict[str, Any] = {k: v for k, v in own.items() if k in ("func_evals", "n_iter", "t", "H_diag", "prev_loss")}
    for k in _LBFGS_FLAT:
        if own.get(k) is not None:
            out[k] = spread(own[k])
    for k in ("old_dirs", "old_stps"):
        if k in own:
            out[k] = [spread(a) for a in own[k]]
    if "ro" in own:
        out["ro"] = [float(r) for r in own["ro"]]
    return {0: out}


def _as_tensors(sd: dict[str, Any]) -> dict[str, Any]:
    """``sd`` with every array a CPU torch tensor, ``step`` and ``mu_product`` of torch's scalar dtype."""
    torch, why = library("torch")
    if torch is None:
        raise ImportError(f"{WHO}(as_tensors=True): {why}; or leave as_tensors out for NumPy arrays")
    scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32

    def tensor(key: str, value: Any) -> Any:
        if isinstance(value, list):
            return [tensor(key, v) for v in value]
        if not isinstance(value, np.ndarray):
            return value
        if key in ("step", "mu_product"):
            return torch.tensor(float(value), dtype=scalar)
        return torch.from_numpy(value)

    return {"state": {i: {k: tensor(k, v) for k, v in s.items()} for i, s in sd["state"].items()},
            "param_groups": sd["param_groups"]}
