"""torch.optim's optimizers as xpnet knows them: which xpnet optimizer is whose twin (:data:`TWINS`), and which
torch optimizer a state dict is of, told by its param groups' keys and its state's keys (a torch state dict names no
class), read from torch 2.13's ``torch/optim/*.py``. ``xn.load_torch_optimizer_state_dict`` (``torch_state``) refuses
a dict of another optimizer than the twin with :func:`check_kind`, naming both and what loads it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from .adadelta import Adadelta
from .adam_variants import Adamax, NAdam, RAdam
from .adaptive import AdaGrad, Adam, AdamW, RMSprop
from .base import Optimizer
from .lbfgs import LBFGS
from .sgd import SGD, Momentum, Nesterov

__all__ = ["TWINS", "BY_LR", "IMPLEMENTATION", "IMPLIED", "KNOWN", "TORCH_KEYS", "LATER", "WHO", "by_lr", "check_kind",
           "check_pair", "implied", "twin", "warn_lr"]

WHO = "xn.load_torch_optimizer_state_dict"


def check_pair(optimizer: Any, model: Any, who: str, which_model: str) -> None:
    """Raise a TypeError naming ``who`` unless the arguments are an xpnet optimizer, then an xpnet model
    (``which_model``: the one the message names)."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{who}: expected an xpnet optimizer first (xn.optim.Adam(model.parameters())), got "
                        f"{type(optimizer).__name__}")
    if not hasattr(model, "named_modules"):
        raise TypeError(f"{who}: expected the xpnet model second ({which_model}), got {type(model).__name__}")

_ADAM = {"m": "exp_avg", "v": "exp_avg_sq", "v_max": "max_exp_avg_sq"}
# xpnet optimizer -> (its torch.optim twin, {xpnet state slot: torch state key}); a subclass takes its base's entry
TWINS: dict[type, tuple[str, dict[str, str]]] = {
    SGD: ("SGD", {"v": "momentum_buffer"}),
    Nesterov: ("SGD", {"v": "momentum_buffer"}),  # convention="pytorch": SGD(momentum=m, nesterov=True)
    Momentum: ("SGD", {"v": "momentum_buffer"}),  # the book's: v = -lr * momentum_buffer (BY_LR)
    AdaGrad: ("Adagrad", {"h": "sum"}),
    RMSprop: ("RMSprop", {"h": "square_avg", "grad_avg": "grad_avg", "momentum_buffer": "momentum_buffer"}),
    AdamW: ("AdamW", _ADAM),
    Adam: ("Adam", _ADAM),
    NAdam: ("NAdam", {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}),
    RAdam: ("RAdam", {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}),
    Adamax: ("Adamax", {"exp_avg": "exp_avg", "exp_inf": "exp_inf"}),
    Adadelta: ("Adadelta", {"square_avg": "square_avg", "acc_delta": "acc_delta"}),
    LBFGS: ("LBFGS", {}),  # one state of flat vectors, reordered by _lbfgs_state
}
# The torch.optim.SGD settings an xpnet optimizer of the SGD family steps as; a dict of others is refused.
IMPLIED: dict[type, dict[str, Any]] = {Nesterov: {"nesterov": True, "dampening": 0.0},
                                       Momentum: {"nesterov": False, "dampening": 0.0}}
# The xpnet optimizers whose state is torch's times -lr (its group's), by class and convention: the book's Momentum,
# v = m*v - lr*g and p += v, is torch.optim.SGD(momentum=m), buf = m*buf + g and p -= lr*buf, with v = -lr * buf while
# lr stays as it is; Nesterov(convention="book") is SGD(momentum=m, nesterov=True) so (its docstring).
BY_LR = {(Momentum, None), (Nesterov, "book")}


def _entry(optimizer: Any, table: Any) -> Any:
    """The class of ``table`` that ``optimizer``'s class is, or is first a subclass of (None: none)."""
    return next((cls for cls in type(optimizer).__mro__ if cls in table), None)


def implied(optimizer: Any) -> dict[str, Any]:
    """The torch.optim.SGD settings ``optimizer`` steps as (:data:`IMPLIED`; none for another optimizer)."""
    cls = _entry(optimizer, IMPLIED)
    return {} if cls is None else dict(IMPLIED[cls])


def by_lr(optimizer: Any) -> bool:
    """Whether ``optimizer``'s state is torch's times -lr (:data:`BY_LR`), by its own entry of :data:`TWINS` and its
    convention (Nesterov's PyTorch one, a Momentum's subclass, keeps torch's buffer)."""
    return (_entry(optimizer, TWINS), getattr(optimizer, "convention", None)) in BY_LR


def warn_lr(optimizer: Any, groups: Iterable[tuple[float, float | None]], who: str) -> None:
    """Warn (once, of the first such group) where a state converted by -lr (:func:`by_lr`) is under an LR scheduler:
    ``groups``' (lr, initial_lr), ``initial_lr`` set by a scheduler. The book's Momentum (or Nesterov) and
    torch.optim.SGD step alike only while lr stays as it is. Called by the converters: the warning points at their
    caller."""
    if not by_lr(optimizer):
        return
    for lr_now, initial_lr in groups:
        if initial_lr is not None:
            sgd = "momentum, nesterov=True" if implied(optimizer).get("nesterov") else "momentum"
            warnings.warn(f"{who}: xn.optim.{optimizer.name} steps as torch.optim.SGD({sgd}) only while lr stays as "
                          f"it is (v = -lr * momentum_buffer, lr {lr_now} now); under the LR scheduler this group has "
                          f"(initial_lr {initial_lr}) the next change of lr moves the two apart: the book's v keeps "
                          f"each past step's lr, torch scales its buffer by the new one. Build xn.optim.SGD(lr, "
                          f"{sgd.replace('momentum', 'momentum=...')}) to go on as torch.optim.SGD", UserWarning,
                          stacklevel=3)
            return


# torch.optim's param-group keys per optimizer (torch/optim/*.py, 2.13's defaults), less those every one has
# (maximize, foreach, capturable, differentiable, fused): how a state dict, which names no class, tells its optimizer.
TORCH_KEYS = {
    "SGD": {"lr", "momentum", "dampening", "weight_decay", "nesterov"},
    "Adam": {"lr", "betas", "eps", "weight_decay", "amsgrad", "decoupled_weight_decay"},
    "AdamW": {"lr", "betas", "eps", "weight_decay", "amsgrad", "decoupled_weight_decay"},
    "Adagrad": {"lr", "lr_decay", "eps", "weight_decay", "initial_accumulator_value"},
    "RMSprop": {"lr", "momentum", "alpha", "eps", "centered", "weight_decay"},
    "Adadelta": {"lr", "rho", "eps", "weight_decay"},
    "Adamax": {"lr", "betas", "eps", "weight_decay"},
    "NAdam": {"lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay"},
    "RAdam": {"lr", "betas", "eps", "weight_decay", "decoupled_weight_decay"},
    "ASGD": {"lr", "lambd", "alpha", "t0", "weight_decay"},
    "Rprop": {"lr", "etas", "step_sizes"},
    "LBFGS": {"lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change", "history_size", "line_search_fn"},
    "SparseAdam": {"lr", "betas", "eps"},
    "Adafactor": {"lr", "beta2_decay", "eps", "d", "weight_decay"},
    "Muon": {"lr", "weight_decay", "momentum", "nesterov", "ns_coefficients", "eps", "ns_steps", "adjust_lr_fn"},
}
# added in later torch versions: absent from older dicts, which torch reads as this (NAdam's and RAdam's
# __setstate__; AdamW's as True, a setting of the class there, not of xpnet's AdamW group)
LATER = {"decoupled_weight_decay": False}
_TORCH_STATE = {
    "SGD": {"momentum_buffer"}, "Adam": {"step", *_ADAM.values()}, "AdamW": {"step", *_ADAM.values()},
    "Adagrad": {"step", "sum"}, "RMSprop": {"step", "square_avg", "momentum_buffer", "grad_avg"},
    "Adadelta": {"step", "square_avg", "acc_delta"}, "Adamax": {"step", "exp_avg", "exp_inf"},
    "NAdam": {"step", "mu_product", "exp_avg", "exp_avg_sq"}, "RAdam": {"step", "exp_avg", "exp_avg_sq"},
    "ASGD": {"step", "eta", "mu", "ax"}, "Rprop": {"step", "prev", "step_size"},
    "LBFGS": {"func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad",
              "prev_loss", "al"},
    "SparseAdam": {"step", "exp_avg", "exp_avg_sq"},
    "Adafactor": {"step", "row_var", "col_var", "variance"}, "Muon": {"momentum_buffer"},
}
IMPLEMENTATION = {"foreach", "fused", "capturable", "differentiable"}  # how torch computes, not what
KNOWN = set().union(*TORCH_KEYS.values())
# torch.optim's optimizers xpnet lacks: what to use instead
_INSTEAD = {"ASGD": "xpnet has no ASGD: train with xn.optim.SGD and average with xn.optim.swa_utils.AveragedModel"}


def twin(optimizer: Any, who: str = WHO) -> tuple[str, dict[str, str]]:
    """The torch.optim twin of ``optimizer`` and its state's keys, or a ValueError (``who``: the function asking)
    saying why it has none."""
    cls = _entry(optimizer, TWINS)
    if cls is None:
        raise ValueError(f"{who}: {optimizer.name} has no torch.optim twin (those that have one: "
                         f"{', '.join(sorted({c.__name__ for c in TWINS}))})")
    twin = TWINS[cls]
    if getattr(optimizer, "convention", "pytorch") != "pytorch" and not by_lr(optimizer):
        raise ValueError(f"{who}: {optimizer.name}(convention={optimizer.convention!r}) is the book's, which steps "
                         f"otherwise than torch.optim.{twin[0]}; build {optimizer.name}(..., convention='pytorch') "
                         "to go on as PyTorch's run")
    return twin


def _kinds(groups: list[Any], state: Mapping[Any, Any], exact: bool = True) -> list[str]:
    """The torch.optim optimizers whose state dict this can be: each group holding their keys and (``exact``) no
    other optimizer's, the state only their keys; AdamW and Adam told apart by ``decoupled_weight_decay`` where the
    dict has it (torch before 2.6 did not). ``exact=False``: other optimizers' keys besides, the user's own, which
    torch keeps in a group and does not read (``{'params': ..., 'momentum': 0.9}`` given to Adam), those of which
    the groups hold the most keys."""
    held = [set(g) & KNOWN for g in groups]
    state_keys = {k for s in state.values() if isinstance(s, Mapping) for k in s}
    found = []
    for name, keys in TORCH_KEYS.items():
        if all(keys - set(LATER) <= h and (h <= keys or not exact) for h in held) and state_keys <= _TORCH_STATE[name]:
            decoupled = {bool(g["decoupled_weight_decay"]) for g in groups if "decoupled_weight_decay" in g}
            if name in ("Adam", "AdamW") and decoupled and decoupled != {name == "AdamW"}:
                continue
            found.append(name)
    if exact or not found:
        return found
    held_of = {name: min(len(TORCH_KEYS[name] & h) for h in held) for name in found}
    return [name for name in found if held_of[name] == max(held_of.values())]


def check_kind(optimizer: Any, twin: str, groups: Any, state: Any) -> None:
    """Refuse a dict of another torch optimizer than ``twin``, naming it and what loads it."""
    if not isinstance(groups, list) or not groups or not all(isinstance(g, Mapping) and "params" in g
                                                             for g in groups) or not isinstance(state, Mapping):
        raise ValueError(f"{WHO}: expected torch.optim's state_dict: 'param_groups' a list of dicts each with "
                         f"'params', 'state' a dict by index; got {type(groups).__name__} and {type(state).__name__}")
    kinds = _kinds(groups, state) or _kinds(groups, state, exact=False)
    if twin in kinds:
        return
    keys = sorted(set(groups[0]) - {"params", "param_names"})
    state_keys = sorted({k for s in state.values() if isinstance(s, Mapping) for k in s})
    if not kinds:
        raise ValueError(f"{WHO}: the dict is of no torch.optim optimizer xpnet knows (its param group's keys "
                         f"{keys}, its state's {state_keys}); xn.optim.{optimizer.name} loads torch.optim.{twin}'s")
    theirs = kinds[0]
    ours = [cls.__name__ for cls, (name, _) in TWINS.items() if name == theirs and cls not in IMPLIED]
    instead = f"build xn.optim.{ours[0]} to load it" if ours else \
        _INSTEAD.get(theirs, f"xpnet has no {theirs}: let the xpnet optimizer start afresh")
    # torch.optim.AdamW is Adam(decoupled_weight_decay=True): their dicts are alike
    whose = f"{theirs}'s" + (" (or torch.optim.Adam's with decoupled_weight_decay=True)" if theirs == "AdamW" else "")
    raise ValueError(f"{WHO}: the dict is torch.optim.{whose} (its param group's keys {keys}, its state's "
                     f"{state_keys}), not torch.optim.{twin}'s, the twin of xn.optim.{optimizer.name}: {instead}")
