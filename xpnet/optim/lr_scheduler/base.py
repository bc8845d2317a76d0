"""The scheduler protocol, PyTorch's ``LRScheduler`` for an xpnet optimizer.

A scheduler sets the lr of each of ``optimizer.param_groups`` when built (its value at ``last_epoch`` 0)
and at each ``step()``; it follows ``torch/optim/lr_scheduler.py`` formula by formula, each group's lr
from its own (the chainable forms multiply the current lr), so that the lrs equal PyTorch's to the last
bit. The first scheduler built on an optimizer records each group's lr as its ``initial_lr``, every
scheduler's ``base_lrs``. Where PyTorch takes one value per group (LambdaLR's ``lr_lambda``, OneCycleLR's
``max_lr``, ReduceLROnPlateau's ``min_lr``, SWALR's ``swa_lr``) a list of that length is taken
(:func:`per_group`); elsewhere a list is refused (:func:`one_value`).
"""

from __future__ import annotations

import math
from typing import Any

from ..._user import is_real
from ..base import Optimizer

__all__ = ["LRScheduler", "check_optimizer", "one_value", "per_group", "group_lrs", "count", "rate", "momentum_key",
           "set_momentum"]


def check_optimizer(who: str, optimizer: Any) -> Optimizer:
    """``optimizer`` when it is an xpnet optimizer, else a TypeError saying what to pass."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    kind = f"{type(optimizer).__module__}.{type(optimizer).__name__}"
    torch = " (a PyTorch optimizer updates torch parameters, not an xpnet model)" if kind.startswith("torch") else ""
    raise TypeError(f"{who}: optimizer must be an xpnet optimizer, e.g. {who}(xn.optim.SGD(model, lr=0.1), ...); "
                    f"got {kind}{torch}")


def one_value(who: str, arg: str, value: Any) -> Any:
    """``value``, refusing a list (an argument PyTorch takes as one value for every param group)."""
    if isinstance(value, (list, tuple)):
        raise ValueError(f"{who}: {arg} must be one value for every param group (as PyTorch's), got {value!r}")
    return value


def per_group(who: str, arg: str, value: Any, optimizer: Any, check: Any = None) -> list[Any]:
    """PyTorch's ``_format_param``: one value per param group of ``optimizer``, from a list of that length or
    one value for all; ``check(arg, value)`` checks each (its ``arg`` indexed where a list came)."""
    n = len(optimizer.param_groups)
    if not isinstance(value, (list, tuple)):
        return [value if check is None else check(arg, value)] * n
    if len(value) != n:
        raise ValueError(f"{who}: {arg} has {len(value)} values, one per param group, and the optimizer has {n} "
                         f"param group(s); pass {n} value(s) or one for all")
    return [v if check is None else check(f"{arg}[{i}]", v) for i, v in enumerate(value)]


def group_lrs(optimizer: Any) -> list[float]:
    """Each of ``optimizer.param_groups``' lr now."""
    return [group["lr"] for group in optimizer.param_groups]


def momentum_key(who: str, optimizer: Any) -> bool:
    """For ``cycle_momentum``: whether the optimizer's beta1 moves (Adam's ``betas``) rather than its
    ``momentum`` (SGD, RMSprop), as PyTorch's; a ValueError where it has neither."""
    settings = optimizer.hyperparams()
    if "momentum" not in settings and "betas" not in settings:
        raise ValueError(f"{who}: cycle_momentum=True (PyTorch's default) moves the optimizer's momentum or beta1, "
                         f"which {optimizer.name} has not; pass cycle_momentum=False")
    return "betas" in settings


def set_momentum(optimizer: Any, i: int, momentum: float, use_beta1: bool) -> None:
    """Param group ``i``'s momentum (or beta1) to ``momentum``, in range by the scheduler's own checks."""
    group = optimizer.param_groups[i]
    if use_beta1:
        group.put("betas", (momentum, *group["betas"][1:]))
    else:
        group.put("momentum", momentum)


def count(who: str, arg: str, value: Any, lo: int = 1) -> int:
    """An int >= ``lo``, else a ValueError naming ``arg``. A whole float counts as its int, as PyTorch's arithmetic
    takes it (the word-language tutorial's ``StepLR(optimizer, 1.0, gamma=0.95)``)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{who}: {arg} must be an int >= {lo}, got {value!r}")
    return value


def rate(who: str, arg: str, value: Any, lo: float = 0.0, hi: float = math.inf, open_lo: bool = False,
         open_hi: bool = False) -> float:
    """A finite number in [lo, hi] (the ends open where asked), else a ValueError naming ``arg``."""
    value = one_value(who, arg, value)
    if not is_real(value) or not math.isfinite(value) or value < lo or value > hi or (open_lo and value == lo) \
            or (open_hi and value == hi):
        bounds = f"{'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
        raise ValueError(f"{who}: {arg} must be a finite number in {bounds}, got {value!r}")
    return value


class LRScheduler:
    """PyTorch's base class: ``step()`` after each epoch (or batch), ``get_last_lr()``, ``last_epoch``,
    ``state_dict()`` / ``load_state_dict()``. A subclass writes ``get_lr()`` (PyTorch's chainable form,
    one lr per param group) and, where PyTorch has one, ``_get_closed_form_lr()`` (SequentialLR uses it)."""

    _is_initial = False

    def __init__(self, optimizer: Any, last_epoch: int = -1):
        self.optimizer = check_optimizer(type(self).__name__, optimizer)
        last_epoch = count(type(self).__name__, "last_epoch", last_epoch, lo=-1)
        groups = self.optimizer.param_groups
        if last_epoch == -1:
            for group in groups:
                group.setdefault("initial_lr", group["lr"])
        elif any("initial_lr" not in group for group in groups):
            raise ValueError(f"{type(self).__name__}: last_epoch={last_epoch} resumes a schedule, which needs the "
                             "optimizer's initial_lr from an earlier scheduler; resume with "
                             "scheduler.load_state_dict(saved) (or xn.train's resume_from) and last_epoch=-1")
        self.base_lrs = [group["initial_lr"] for group in groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def _lrs(self) -> list[float]:
        return group_lrs(self.optimizer)

    def get_last_lr(self) -> list[float]:
        """The lrs set by the last step, one per param group."""
        return list(self._last_lr)

    def step(self, epoch: Any = None) -> None:
        """Move the schedule on by one (after ``optimizer.step()``, as in PyTorch)."""
        if epoch is not None:
            raise TypeError(f"{type(self).__name__}.step: step(epoch) is deprecated in PyTorch (since 1.4) and not "
                            "taken here; call step() once per epoch (or per batch)")
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch: int | None = None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed = getattr(self, "_get_closed_form_lr", None)
            values = closed() if closed is not None else self.get_lr()
        self._set_lrs(values)

    def _set_lrs(self, lrs: list[Any]) -> None:
        """Each param group's lr, every one checked first."""
        for lr in lrs:
            if not is_real(lr) or not math.isfinite(lr) or lr < 0:
                raise ValueError(f"{type(self).__name__}: the lr at last_epoch {self.last_epoch} is {lr!r}; a "
                                 "learning rate is a finite number >= 0 (check lr_lambda and the factors)")
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = self._lrs()

    def state_dict(self) -> dict[str, Any]:
        """Every attribute but the optimizer, as PyTorch's (JSON values: a full checkpoint keeps them)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take up ``state_dict`` and set the optimizer's lr to its last lr."""
        if not isinstance(state_dict, dict) or "last_epoch" not in state_dict:
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected a dict from "
                             f"{type(self).__name__}.state_dict(), got {state_dict!r:.80}")
        self.__dict__.update(state_dict)
        last = self.__dict__.get("_last_lr")
        if isinstance(last, list) and len(last) == len(self.optimizer.param_groups):
            self._set_lrs(last)

    def __repr__(self) -> str:
        lrs = self._lrs()
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={lrs[0] if len(lrs) == 1 else lrs!r})"
