"""The scheduler protocol, PyTorch's ``LRScheduler`` for an xpnet optimizer (one ``lr``, no param groups).

A scheduler sets ``optimizer.lr`` when built (its value at ``last_epoch`` 0) and at each ``step()``; it
follows ``torch/optim/lr_scheduler.py`` formula by formula (the chainable forms multiply the current
lr), so that the lrs equal PyTorch's to the last bit. The first scheduler built on an optimizer records
its lr as the optimizer's ``initial_lr`` (PyTorch's ``param_group["initial_lr"]``), every scheduler's
``base_lrs``. Lists of one value per param group are refused: an xpnet optimizer has one lr.
"""

from __future__ import annotations

import math
from typing import Any

from ..._user import is_real
from ..base import Optimizer

__all__ = ["LRScheduler", "check_optimizer", "one_value", "count", "rate"]

def check_optimizer(who: str, optimizer: Any) -> Optimizer:
    """``optimizer`` when it is an xpnet optimizer, else a TypeError saying what to pass."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    kind = f"{type(optimizer).__module__}.{type(optimizer).__name__}"
    torch = " (a PyTorch optimizer updates torch parameters, not an xpnet model)" if kind.startswith("torch") else ""
    raise TypeError(f"{who}: optimizer must be an xpnet optimizer, e.g. {who}(xn.optim.SGD(model, lr=0.1), ...); "
                    f"got {kind}{torch}")


def one_value(who: str, arg: str, value: Any) -> Any:
    """``value``, refusing PyTorch's list of one value per param group."""
    if isinstance(value, (list, tuple)):
        raise ValueError(f"{who}: {arg} is a {type(value).__name__} (one per param group in PyTorch); an xpnet "
                         f"optimizer has one lr and no param groups: pass one value, e.g. {arg}={value[0]!r}"
                         if value else f"{who}: {arg} must be one value, got {value!r}")
    return value


def count(who: str, arg: str, value: Any, lo: int = 1) -> int:
    """An int >= ``lo``, else a ValueError naming ``arg``."""
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
    a one-element list) and, where PyTorch has one, ``_get_closed_form_lr()`` (SequentialLR uses it)."""

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

    def get_last_lr(self) -> list[float]:
        """The lr set by the last step, as a list of one (PyTorch's one per param group)."""
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
        self._set_lr(values[0])

    def _set_lr(self, lr: Any) -> None:
        if not is_real(lr) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"{type(self).__name__}: the lr at last_epoch {self.last_epoch} is {lr!r}; a learning "
                             "rate is a finite number >= 0 (check lr_lambda and the factors)")
        self.optimizer.lr = lr
        self._last_lr = [self.optimizer.lr]

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
        if isinstance(last, list) and len(last) == 1:
            self._set_lr(last[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self.optimizer.lr!r})"
