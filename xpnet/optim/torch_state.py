"""torch.optim's state dicts into xpnet's optimizers: ``xn.load_torch_optimizer_state_dict``, so that a PyTorch run
resumes in xpnet with its momentum and moments, not only its weights (``xn.load_torch_state_dict``).

How a load goes:

0. A path or binary file object is read with ``xn.read_torch_file``; ``key=`` picks the optimizer's state dict out
   of a checkpoint dict (``key="optimizer_state_dict"``).
1. The torch optimizer the dict is of is told by its param groups' keys and its state's keys (a torch state dict
   does not name its class): it must be the twin (:data:`TWINS`) of the xpnet optimizer; another (``NAdam``'s for
   an ``Adam``, ``ASGD``'s, which xpnet lacks) is refused, naming both.
2. torch.optim keeps the state by index: the indices of ``param_groups[i]["params"]`` are, in order, the parameters
   of the i-th group, as ``model.parameters()`` gave them to torch, which for a model of the same structure is the
   order of :func:`torch_parameters` (PyTorch's names, from ``xn.torch_state_dict``'s table, buffers left out).
   Each xpnet param group (one node of the model) is paired with torch's group of the same place; the counts must
   agree (torch's group of only the parameters that train, PyTorch's fine-tuning idiom, pairs with the node's that
   train, its layers frozen alike), and where the dict holds ``param_names`` (torch built from
   ``named_parameters()``), the names too, one the other's dotted tail where ``named_parameters()`` was of a layer
   (``weight``) or a wrapper (``module.fc.weight``).
3. Each parameter's state is renamed (``momentum_buffer`` is SGD's ``v``, ``exp_avg`` Adam's ``m``...) and laid out
   as its parameter (a Linear's transposed, as ``W = weight.T``); its shape is checked against the parameter's, and
   it goes onto the parameter's device and dtype (CuPy's, as torch's load casts state to its parameter's). A
   summed bias (RNN's and LSTM's one ``b = bias_ih_l0 + bias_hh_l0``) takes the state of the two only where they are
   equal (one gradient each step and no weight decay); torch's per-parameter ``step`` becomes xpnet's ``t`` and
   ``skipped`` (a parameter's own step is ``t - skipped``), NAdam's ``mu_product`` its ``scalars``.
4. The groups' hyperparameters come as PyTorch's (``lr``, ``betas``, ``momentum``...; a 0-d tensor, as torch allows
   ``lr`` and ``betas`` to be, as the number it holds), ``weight_decay_on="all"`` (PyTorch's weight decay is on every
   parameter); a setting xpnet lacks at a value that changes the steps
   (``maximize=True``, Adagrad's ``lr_decay``) is refused, the implementation's (``foreach``, ``fused``) are not.
   A key torch's optimizer does not read (the user's own, which torch keeps in the group) is kept, or left out with
   a warning where the xpnet group would read it (``convention``) or refuse it (``momentum`` given to Adam).
5. Every problem is gathered into one ValueError before anything changes; then the converted state goes through
   ``optimizer.load_state_dict``, whose checks apply too.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..backend import device_of, to_device, to_numpy
from ..models.torch_names import node_described, parse_formula, torch_names_of, torch_place, torch_refusal
from ..models.torch_weights import read_torch_file
from .group_keys import check_own_key
from .grouped import _ROOTLESS
from .lbfgs import LBFGS
from .torch_twins import (IMPLEMENTATION, LATER, TORCH_KEYS, TWINS, WHO, by_lr, check_kind, check_pair, implied,
                          twin as find_twin, warn_lr)

__all__ = ["TWINS", "load_torch_optimizer_state_dict", "torch_parameters"]


# A setting xpnet lacks, at a value other than torch's default: how the run goes on all the same (tested exact).
_INSTEAD = {
    "maximize": "xpnet's optimizers minimize: set maximize to False in the dict and train on the negated loss, whose "
                "minimizing is torch's maximizing, state and all",
    "lr_decay": "xn.optim.AdaGrad has no lr_decay: set lr_decay to 0 in the dict and decay lr with "
                "xn.optim.lr_scheduler.LambdaLR(optimizer, lambda n: 1 / (1 + (n + t) * lr_decay)), t = optimizer.t "
                "once loaded, stepped after each optimizer.step()",
}
_LBFGS_FLAT = ("d", "prev_flat_grad")  # torch.optim.LBFGS's flat vectors; old_dirs and old_stps are lists of them
_LBFGS_FLOATS = ("t", "H_diag", "prev_loss")


def torch_parameters(node: Any, who: str = WHO) -> list[tuple[str, str, str, int]]:
    """The parameters of ``node`` in the order of PyTorch's ``model.parameters()`` for the model of the same
    structure: ``(PyTorch's name, xpnet's name, how, part)``, ``how`` as in ``TORCH_NAMES`` ("" the same array, "T"
    transposed, "+" one of two summed), ``part`` which of the two. A node's own parameters come before those of its
    submodules (an ``nn.MultiheadAttention``'s ``in_proj_weight`` before ``out_proj.weight``), buffers never, and a
    parameter found at several places (a shared layer, a tied weight) once, at the first, as torch's."""
    modules = node.named_modules()
    params = node.named_params()
    out: list[tuple[str, str, str, int]] = []
    for prefix, sub in modules.items():
        refusal = torch_refusal(sub)
        if refusal is not None:
            raise ValueError(f"{who}: {node_described(prefix, sub)}: {refusal}")
        dot, level = torch_place(prefix, modules)
        own = []
        for name, formula in torch_names_of(sub, level).items():
            full = f"{prefix}.{name}" if prefix else name
            if name not in sub.params or full not in params:
                continue
            torch_names, how = parse_formula(formula)
            own += [(dot + t, full, how, i) for i, t in enumerate(torch_names)]
        own.sort(key=lambda entry: "." in entry[0][len(dot):])  # stable: the node's own first, as torch registers
        out += own
    return out


def load_torch_optimizer_state_dict(optimizer: Any, model: Any, state_dict: Any, *, key: str | None = None) -> None:
    """Load torch.optim's state dict (``torch_optimizer.state_dict()``: ``state`` by parameter index,
    ``param_groups``) into the xpnet ``optimizer`` of ``model``, the model of the same structure as the PyTorch one,
    whose weights ``xn.load_torch_state_dict`` loads: a PyTorch run resumes in xpnet with its momentum buffers,
    moments and step counts, and steps on as torch's would (tested equal in float64)::

        checkpoint = xn.read_torch_file("checkpoint.pt")   # torch.save({"model_state_dict": ..., ...})
        xn.load_torch_state_dict(model, checkpoint["model_state_dict"])
        optimizer = xn.optim.Adam(model.parameters())
        xn.load_torch_optimizer_state_dict(optimizer, model, checkpoint["optimizer_state_dict"])

    The argument order is ``xn.load_torch_state_dict``'s, the optimizer first, as it is what loads. ``state_dict``
    may be a path or binary file object of ``torch.save``, ``key=`` then names its entry (``"optimizer_state_dict"``).

    The xpnet optimizer must be the torch one's twin (:data:`TWINS`: ``SGD`` for ``torch.optim.SGD`` (or ``Nesterov``
    where ``nesterov=True``; or the book's ``Momentum``, ``v = -lr * momentum_buffer``, and so ``Nesterov``'s
    ``convention="book"`` with ``nesterov=True``, stepping as torch's while lr stays as it is: a warning where the dict
    has an LR scheduler's keys, whose next change of lr moves the two apart; lr 0 refused), ``AdaGrad`` for ``Adagrad``,
    ``RMSprop``, ``Adam``, ``AdamW``, ``NAdam``, ``RAdam``, ``Adamax``, ``Adadelta``, ``LBFGS``, whose flat vectors are
    reordered into xpnet's, of the parameters that train: a layer frozen here that stepped in torch is refused),
    with as many param groups, each of the same parameters (an xpnet group is a layer or model,
    ``{"params": model.fc.parameters()}``). State is paired with parameters by torch's order of ``model.parameters()``
    (:func:`torch_parameters`; checked by name where the dict has ``param_names``) and laid out as the weights (a
    Linear's ``momentum_buffer`` transposed into ``v``). The hyperparameters are the dict's (``lr``, ``betas``,
    ``momentum``, ``weight_decay``...) and ``weight_decay_on="all"``: PyTorch's ``weight_decay`` is on every parameter,
    where xpnet's default spares biases. Refused, each naming the parameter or setting and why, before anything changes:
    a dict of another torch optimizer or of one xpnet lacks (a key of another's in a group is the user's own, as torch
    keeps it, where no other optimizer's keys are all there: kept, or where the xpnet group would read or refuse it,
    left out with a warning); another model (counts, names or shapes); a setting xpnet has no counterpart for at a value
    that changes the steps (``maximize=True``, ``lr_decay``: the error says how to go on); ``Adam``'s book convention
    and ``Nesterov``'s of 2016 (``"book"``'s v is -lr times torch's buffer, as ``Momentum``'s); and a summed bias (the
    default RNN's and LSTM's ``b = bias_ih_l0 + bias_hh_l0``) whose two states differ (weight decay moves the two
    apart): build the layer with ``convention="pytorch"``, whose ``bx``, ``bh`` take each its own. Where the two are
    equal (to rounding: torch sums their one gradient in two reductions; within the square root of the dtype's
    resolution relative to their size) ``b`` takes their mean, exact for ``b``'s gradients; but PyTorch steps each of
    its two biases by the update where xpnet steps the one ``b`` once, so the run goes on as xpnet's one-bias layer
    does, not as torch's (the first step warns, as after ``xn.load_torch_state_dict``).
    """
    state_dict = _read(state_dict, key)
    check_pair(optimizer, model, WHO, "the one xn.load_torch_state_dict loads")
    twin, slots = find_twin(optimizer)
    groups, state = state_dict["param_groups"], state_dict["state"]
    check_kind(optimizer, twin, groups, state)
    places = _places(optimizer, model)
    problems: list[str] = []
    if len(groups) != len(places):
        raise ValueError(f"{WHO}: the PyTorch optimizer has {len(groups)} param group(s), the xpnet {optimizer.name} "
                         f"{len(places)}; build it with as many, each of the same layers ({{'params': "
                         "model.fc.parameters(), 'lr': ...})")
    left_out: list[tuple[str, str]] = []
    values = [_hyperparams(optimizer, twin, i, group, problems, left_out) for i, group in enumerate(groups)]
    if isinstance(optimizer, LBFGS):
        node, _, torch_prefix = places[0]
        loaded = _lbfgs_state(node, torch_prefix, groups[0], state, problems)
        if problems:
            raise ValueError(f"{WHO}: the PyTorch optimizer state does not fit the xpnet {optimizer.name} of "
                             f"{model.name}:\n  " + "\n  ".join(problems))
        optimizer.load_state_dict({"type": optimizer.name, "hyperparams": values[0][0], "t": 0,
                                   "params": list(node.trainable_params()), "state": loaded,
                                   "param_groups": [{**values[0][0], **values[0][1]}]})
        _warn_left_out(optimizer, twin, left_out)
        return
    converted: dict[str, dict[str, Any]] = {}
    steps: dict[str, int] = {}
    mu: dict[str, float] = {}
    for i, (group, (node, name_prefix, torch_prefix)) in enumerate(zip(groups, places)):
        indices = list(group["params"])
        where = f"param_groups[{i}]"
        entries = _entries(node, len(indices), where, torch_prefix, problems)
        if entries is None:
            continue
        names = group.get("param_names")
        lr = values[i][0]["lr"]
        if by_lr(optimizer) and lr == 0 and any(state.get(index) for index in indices):
            problems.append(f"{where}: lr=0, where xn.optim.{optimizer.name}'s v is -lr * torch's momentum_buffer, "
                            "which it cannot hold at lr 0: set the dict's lr to the one the run goes on with, or build "
                            "xn.optim.SGD(lr, momentum=...)")
            continue
        by_param: dict[str, list[tuple[str, str, int, Mapping[str, Any]]]] = {}
        for j, (index, (torch_name, xpnet_name, how, _)) in enumerate(zip(indices, entries)):
            torch_name = torch_prefix + torch_name
            if names is not None and not _same_name(names[j], torch_name):
                problems.append(f"{where}: the parameter at index {index} is PyTorch's {names[j]!r}, where the xpnet "
                                f"model's is {torch_name!r} (for its {xpnet_name}): the state of another model, or a "
                                "model whose modules are registered in another order")
                continue
            by_param.setdefault(xpnet_name, []).append((torch_name, how, index, state.get(index) or {}))
        params = node.named_params()
        for xpnet_name, parts in by_param.items():
            full = name_prefix + xpnet_name
            got = _converted(parts, params[xpnet_name], xpnet_name, slots, problems)
            if got is None:
                continue
            arrays, step, product = got
            if arrays:
                scale = -lr if by_lr(optimizer) else 1.0  # the book's Momentum: v = -lr * momentum_buffer
                converted[full] = {k: _onto(a * scale, params[xpnet_name]) for k, a in arrays.items()}
            if step is not None:
                steps[full] = step
            if product is not None:
                mu[full] = product
    if problems:
        raise ValueError(f"{WHO}: the PyTorch optimizer state does not fit the xpnet {optimizer.name} of "
                         f"{model.name}:\n  " + "\n  ".join(problems))
    t = max(steps.values(), default=0)
    optimizer.load_state_dict({
        "type": optimizer.name, "hyperparams": dict(values[0][0]), "t": t,
        "skipped": {n: t - s for n, s in steps.items() if t - s}, "state": converted,
        "scalars": {n: {"mu_product": p, "mu_step": steps[n]} for n, p in mu.items()},
        "param_groups": [{**v, **extra} for v, extra in values]})
    _warn_left_out(optimizer, twin, left_out)
    warn_lr(optimizer, [(v["lr"], extra.get("initial_lr")) for v, extra in values], WHO)


def _read(state_dict: Any, key: str | None) -> Mapping[str, Any]:
    """The torch.optim state dict that ``state_dict`` is, holds under ``key``, or is the file of."""
    source = "the dict"
    if isinstance(state_dict, (str, bytes, os.PathLike)) or callable(getattr(state_dict, "read", None)):
        source, state_dict = f"the file {state_dict!r}", read_torch_file(state_dict)
    if key is not None:
        if not isinstance(state_dict, Mapping) or key not in state_dict:
            entries = ", ".join(map(repr, state_dict)) if isinstance(state_dict, Mapping) else "none"
            raise ValueError(f"{WHO}: key={key!r}, but {source} has no entry {key!r} (its entries: {entries})")
        state_dict, source = state_dict[key], f"{source}[{key!r}]"
    if isinstance(state_dict, Mapping) and "state" in state_dict and "param_groups" in state_dict:
        if "type" in state_dict:  # xpnet's own
            raise ValueError(f"{WHO}: {source} is an xpnet optimizer's state_dict(), which loads with "
                             "optimizer.load_state_dict(d)")
        return state_dict
    inner = [k for k, v in state_dict.items() if isinstance(v, Mapping) and "param_groups" in v] \
        if isinstance(state_dict, Mapping) else []
    where = "" if source == "the dict" else f" in {source}"
    what = f"a dict of keys {list(state_dict)[:10]}{where}" if isinstance(state_dict, Mapping) else \
        f"a {type(state_dict).__name__}{where}"
    if isinstance(state_dict, Mapping) and state_dict and all(hasattr(v, "shape") for v in state_dict.values()):
        names = ", ".join(map(repr, list(state_dict)[:2])) + (", ..." if len(state_dict) > 2 else "")
        what = (f"a model's state dict{where} (tensors by name: {names}), which loads with "
                "xn.load_torch_state_dict(model, d)")
    hint = f"; its entry {inner[0]!r} is one: pass key={inner[0]!r}" if inner else ""
    raise ValueError(f"{WHO}: expected torch.optim's state_dict (keys 'state' and 'param_groups'), got {what}{hint}")


def _places(optimizer: Any, model: Any, who: str = WHO) -> list[tuple[Any, str, str]]:
    """Per xpnet param group: (its node, the prefix of its state's names, the prefix of its PyTorch names in
    ``model``); ``who``: the function asking."""
    modules = model.named_modules()

    def torch_prefix(node: Any) -> str:
        name = next((k for k, v in modules.items() if v is node), None)
        if name is None:
            raise ValueError(f"{who}: the {optimizer.name} updates a {node.name} that is not inside the "
                             f"{model.name} given; pass the model the optimizer was built with")
        return f"{name}." if name else ""

    groups = optimizer.param_groups
    bound = optimizer._bound()
    if not optimizer._several_groups:
        node = model if bound is None else bound
        return [(node, "", torch_prefix(node))]
    return [(g.node, _ROOTLESS.format(i) if bound is None else optimizer._prefix(bound, g.node, i),
             torch_prefix(g.node)) for i, g in enumerate(groups)]


def _hyperparams(optimizer: Any, twin: str, index: int, group: Mapping[str, Any], problems: list[str],
                 left_out: list[tuple[str, str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the xpnet group's hyperparameters from torch's group ``index`` of ``torch.optim.<twin>``, its ``initial_lr``
    and keys of the user's own); the settings xpnet lacks at a value that changes the steps go to ``problems``, the
    keys torch keeps and does not read that the xpnet group cannot hold to ``left_out`` (the key, where and why)."""
    groups = optimizer.param_groups
    values = groups[index].hyperparams() if index < len(groups) else optimizer.hyperparams()
    if "weight_decay_on" in values:
        values["weight_decay_on"] = "all"
    fixed = {"maximize": False, **implied(optimizer)}
    extra: dict[str, Any] = {}
    where = f"param_groups[{index}]"
    for k, v in group.items():
        if k in ("params", "param_names") or k in IMPLEMENTATION or (k == "initial_accumulator_value"
                                                                      and twin == "Adagrad"):
            continue  # Adagrad's initial sums are in its state, made for every parameter at its construction
        v = _number(v)
        if k == "initial_lr":
            extra[k] = v
        elif k in values and k in TORCH_KEYS[twin]:
            values[k] = tuple(v) if isinstance(v, list) else v
        elif k in fixed or k in optimizer.PYTORCH_ONLY:
            want = fixed.get(k, optimizer.PYTORCH_ONLY.get(k))
            if v != want:
                sgd = ", ".join(f"{key}={value!r}" for key, value in implied(optimizer).items())
                why = f"xn.optim.{optimizer.name} is torch.optim.SGD({sgd}); build xn.optim.SGD to load it" \
                    if k in ("nesterov", "dampening") else _INSTEAD.get(k, "a setting xpnet has no counterpart for")
                problems.append(f"{where}: {k}={v!r}, where xn.optim.{optimizer.name} steps as {k}={want!r} ({why})")
        else:  # torch.optim.<twin> keeps it in the group and does not read it: the user's own ('name': 'head')
            why = _unheld(optimizer, twin, k, values)
            if why is None:
                extra[k] = v
            else:
                left_out.append((k, f"{where}[{k!r}] ({why})"))
    for k, default in LATER.items():  # an older torch's dict without it: torch reads its default, not xpnet's own
        if k in values and k not in group:
            values[k] = default
    try:  # checked as the constructor checks them, before anything changes
        type(optimizer)(**values)
    except TypeError:  # an optimizer of one's own whose __init__ takes other arguments: checked as they are set
        pass
    except ValueError as e:
        problems.append(f"{where}: {e}")
    return values, extra


def _unheld(optimizer: Any, twin: str, key: Any, values: Mapping[str, Any]) -> str | None:
    """Why the xpnet group cannot hold ``key``, a key of torch's group that ``torch.optim.<twin>`` does not read,
    as the user's own (None: it can): a setting of the xpnet optimizer's own, which it would read, or a key its
    groups refuse as the user's (named as, or close to, a hyperparameter: ``group_keys.check_own_key``)."""
    if key in values:
        return (f"xn.optim.{optimizer.name}'s own setting {key}, which torch.optim.{twin} has not: read as it, the "
                "steps would not be torch's")
    try:
        check_own_key(optimizer, key, WHO)
    except (KeyError, TypeError):
        return (f"xn.optim.{optimizer.name}'s param groups refuse it as a key of the user's own: named as, or close "
                "to, a hyperparameter of an xpnet optimizer")
    return None


def _warn_left_out(optimizer: Any, twin: str, left_out: list[tuple[str, str]]) -> None:
    """The warning of the keys of torch's groups that the load left out (:func:`_unheld`), naming each and why."""
    if left_out:
        warnings.warn(f"{WHO}: left out of the xpnet {optimizer.name}'s param groups, the keys of the user's own "
                      f"that torch.optim.{twin} keeps and does not read (so the steps are torch's all the same): "
                      f"{'; '.join(w for _, w in left_out)}; to keep one, rename it in the dict before the load "
                      f"(g['my_{left_out[0][0]}'] = g.pop({left_out[0][0]!r}) for g in d['param_groups'])", UserWarning,
                      stacklevel=3)


def _entries(node: Any, count: int, where: str, torch_prefix: str,
             problems: list[str]) -> list[tuple[str, str, str, int]] | None:
    """The :func:`torch_parameters` of ``node`` that torch's group ``where`` of ``count`` parameters holds: all of
    them, or those that train where torch's optimizer was given only those (PyTorch's fine-tuning idiom,
    ``Adam(p for p in model.parameters() if p.requires_grad)``, the xpnet layers frozen alike); None with
    ``problems`` told why, where neither count is ``count``."""
    entries = torch_parameters(node)
    trained = node.trainable_params()
    training = [e for e in entries if e[1] in trained]
    if count == len(entries):
        return entries
    if count == len(training):
        return training
    listed = ", ".join(torch_prefix + e[0] for e in entries[:8]) + (", ..." if len(entries) > 8 else "")
    frozen = f", {len(training)} of them trainable" if len(training) < len(entries) else ""
    problems.append(f"{where} holds {count} parameters, but the xpnet {node.name}{_at(torch_prefix)} has "
                    f"{len(entries)} in PyTorch's naming ({listed}){frozen}: the state of another model, or of one "
                    "whose layers are frozen otherwise (requires_grad_(False) the layers torch's optimizer left out)")
    return None


def _same_name(theirs: str, ours: str) -> bool:
    """Whether torch's ``param_names`` entry names the parameter of the model's PyTorch name ``ours``: the same, or one
    the other's dotted tail, as ``named_parameters()`` of the group's layer gives ``weight`` for ``fc.weight``, and of a
    wrapper (DistributedDataParallel) ``module.fc.weight``."""
    return theirs == ours or theirs.endswith("." + ours) or ours.endswith("." + theirs)


def _number(value: Any) -> Any:
    """A hyperparameter torch holds as a 0-d tensor (``lr=torch.tensor(0.01)``, Adam's ``betas``; a 0-d NumPy array
    once read from a file) as the Python number it holds, also inside a tuple or list; anything else as is."""
    if isinstance(value, (tuple, list)):
        return type(value)(_number(v) for v in value)
    if hasattr(value, "shape") and hasattr(value, "dtype") and tuple(value.shape) == ():
        return to_numpy(value).item()
    return value


def _converted(parts: list[tuple[str, str, int, Mapping[str, Any]]], p: Any, name: str, slots: dict[str, str],
               problems: list[str]) -> tuple[dict[str, Any], int | None, float | None] | None:
    """(xpnet's state of the parameter ``name`` (``p``), its step, NAdam's mu_product) from torch's state of the
    PyTorch parameters ``parts`` ((name, how, index, state)); None with ``problems`` told why not."""
    shape = tuple(int(d) for d in p.shape)
    each = []
    for torch_name, how, index, s in parts:
        arrays = {}
        for slot, tkey in slots.items():
            value = s.get(tkey)
            if value is None:
                continue
            a = to_numpy(value)
            want = shape[::-1] if how == "T" else shape
            if tuple(a.shape) != want:
                problems.append(f"PyTorch's {torch_name!r} (index {index}) has {tkey} of shape {tuple(a.shape)}, "
                                f"expected {want} for xpnet's {name} {shape}: the state of another model")
                return None
            arrays[slot] = np.array(a.T if how == "T" else a, order="C", copy=True)
        step = None if s.get("step") is None else int(round(float(to_numpy(s["step"]))))
        product = None if s.get("mu_product") is None else float(to_numpy(s["mu_product"]))
        each.append((torch_name, arrays, step, product))
    if len(each) == 2:  # a summed bias: one state for the two
        (a_name, a, a_step, a_mu), (b_name, b, b_step, b_mu) = each
        apart = [k for k in {*a, *b} if k not in a or k not in b or not _equal(a[k], b[k])]
        if apart or a_step != b_step or not _equal(np.float64(a_mu or 0.0), np.float64(b_mu or 0.0)):
            how = f"their {', '.join(f'{slots[k]}' for k in sorted(apart))} differ" if apart else "their steps differ"
            problems.append(f"xpnet's {name} = {a_name} + {b_name}, one bias, takes the state of the two only where "
                            f"it is equal, and {how} (weight decay moves them apart, as do two gradients): build the "
                            "layer with convention='pytorch', whose bx and bh are PyTorch's two biases, each with its "
                            "own state (and load the weights again)")
            return None
        return {k: (a[k] + b[k]) / 2 for k in a}, a_step, None if a_mu is None else (a_mu + b_mu) / 2
    return each[0][1], each[0][2], each[0][3]


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the states of PyTorch's two biases are one state: equal to rounding (torch sums their one gradient in
    two reductions), within the square root of their dtype's resolution relative to their size."""
    tol = float(np.sqrt(np.finfo(a.dtype).eps)) if np.issubdtype(a.dtype, np.floating) else 0.0
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= tol * scale))


def _lbfgs_state(node: Any, torch_prefix: str, group: Mapping[str, Any], state: Mapping[Any, Any],
                 problems: list[str]) -> dict[str, Any]:
    """torch.optim.LBFGS's state (under its first parameter's index) for xpnet's: its flat vectors, of every
    parameter in torch's order and layouts, reordered into xpnet's flat vector of the parameters that train, in
    ``trainable_params()`` order and xpnet's layouts; its numbers as Python floats, its scratch list ``al`` left out."""
    entries = _entries(node, len(group["params"]), "param_groups[0]", torch_prefix, problems)
    if entries is None:
        return {}
    params, trained = node.named_params(), node.trainable_params()
    first = next(iter(trained.values()), None)
    offsets, at = {}, 0
    for torch_name, xpnet_name, how, _ in entries:
        shape = tuple(int(d) for d in params[xpnet_name].shape)
        offsets[xpnet_name] = (at, shape[::-1] if how == "T" else shape, how, torch_prefix + torch_name)
        at += math.prod(shape)
    summed = sorted({v[3] for v in offsets.values() if v[2] == "+"})
    if summed:
        problems.append(f"xpnet's one bias of {', '.join(map(repr, summed))} sums two PyTorch parameters, whose "
                        "parts of L-BFGS's flat vectors one bias cannot hold: build the layer with "
                        "convention='pytorch' (bx, bh: PyTorch's two)")
        return {}
    order = []
    for name in trained:
        start, shape, how, _ = offsets[name]
        index = np.arange(start, start + math.prod(shape)).reshape(shape)
        order.append((index.T if how == "T" else index).ravel())
    order = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
    theirs = state.get(list(group["params"])[0]) or {}
    loaded: dict[str, Any] = {k: int(round(float(to_numpy(theirs[k])))) for k in ("func_evals", "n_iter")
                              if k in theirs}
    for k in _LBFGS_FLOATS:
        if theirs.get(k) is not None:
            loaded[k] = float(to_numpy(theirs[k]))
    flats = {k: [theirs[k]] for k in _LBFGS_FLAT if theirs.get(k) is not None}
    flats.update({k: list(theirs[k]) for k in ("old_dirs", "old_stps") if theirs.get(k) is not None})
    frozen = [name for name in offsets if name not in trained]  # in torch's group, frozen here
    left = np.concatenate([np.arange(offsets[n][0], offsets[n][0] + math.prod(offsets[n][1])) for n in frozen]) \
        if frozen else np.zeros(0, dtype=np.int64)
    for k, arrays in flats.items():
        arrays = [to_numpy(a) for a in arrays]
        wrong = [tuple(a.shape) for a in arrays if tuple(a.shape) != (at,)]
        if wrong:
            problems.append(f"torch.optim.LBFGS's {k} has shape {wrong[0]}, where the xpnet {node.name}'s "
                            f"parameters make a flat vector of {at}: the state of another model")
            return {}
        if any(np.any(a[left] != 0) for a in arrays):  # zeros where torch froze them too: dropped exactly
            theirs_named = ", ".join(offsets[n][3] for n in frozen)
            problems.append(f"torch.optim.LBFGS's history has nonzero parts for {theirs_named} (they stepped in "
                            f"torch), where xpnet's {', '.join(frozen)} are frozen: its flat vector of the parameters "
                            "that train has no place for them, and its steps would not be torch's; unfreeze them "
                            "(requires_grad_(True)) to go on as torch's, or build a new LBFGS")
            return {}
        moved = [_onto(np.array(a[order], copy=True), first) for a in arrays]
        loaded[k] = moved if k in ("old_dirs", "old_stps") else moved[0]
    if theirs.get("ro") is not None:
        loaded["ro"] = [float(to_numpy(r)) for r in theirs["ro"]]
    return loaded


def _onto(a: np.ndarray, p: Any) -> Any:
    """The converted state ``a`` on the device and in the dtype of its parameter ``p`` (None: as it is), as torch's
    ``load_state_dict`` casts a state to its parameter's: a model on the GPU takes its state there at the load."""
    return a if p is None else to_device(a, device_of(p), dtype=p.dtype)


def _at(prefix: str) -> str:
    return f" at {prefix[:-1]!r}" if prefix else ""
