"""PyTorch's ReduceLROnPlateau: the lr times ``factor`` when a metric has stopped improving."""

from __future__ import annotations

import math
from typing import Any

from ..._user import is_real
from .base import check_optimizer, count, group_lrs, per_group, rate

__all__ = ["ReduceLROnPlateau"]


class ReduceLROnPlateau:
    """``step(metric)`` after each epoch; after more than ``patience`` epochs without an improvement
    (``threshold``, relative or absolute) the lr is multiplied by ``factor`` (not below ``min_lr``), then
    ``cooldown`` epochs pass before bad epochs count again; each param group's lr alike, ``min_lr`` one value
    for all or a list of one per group, as PyTorch's. In ``xn.train``:
    ``xn.callbacks.LRScheduler(scheduler, monitor="val_loss")``."""

    def __init__(self, optimizer: Any, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0, min_lr: float = 0.0,
                 eps: float = 1e-8):
        who = "ReduceLROnPlateau"
        self.optimizer = check_optimizer(who, optimizer)
        self.factor = rate(who, "factor", factor, 0.0, 1.0, open_lo=True, open_hi=True)
        self.min_lrs = per_group(who, "min_lr", min_lr, self.optimizer, lambda arg, v: rate(who, arg, v))
        self.default_min_lr = None if isinstance(min_lr, (list, tuple)) else self.min_lrs[0]
        self.patience = count(who, "patience", patience, lo=0)
        self.cooldown = count(who, "cooldown", cooldown, lo=0)
        self.threshold = rate(who, "threshold", threshold)
        self.eps = rate(who, "eps", eps)
        for arg, value, choices in (("mode", mode, ("min", "max")), ("threshold_mode", threshold_mode, ("rel", "abs"))):
            if value not in choices:
                raise ValueError(f"{who}: {arg} must be {choices[0]!r} or {choices[1]!r}, got {value!r}")
        self.mode, self.threshold_mode = mode, threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._last_lr = group_lrs(self.optimizer)
        self.best, self.cooldown_counter, self.num_bad_epochs = self.mode_worse, 0, 0

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min":
            return a < best * (1.0 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > best + self.threshold

    def step(self, metrics: Any) -> None:
        """Count ``metrics`` (the epoch's validation loss, say) and reduce the lr when it has plateaued."""
        if not is_real(metrics) and not (hasattr(metrics, "shape") and metrics.shape == ()):
            raise TypeError(f"ReduceLROnPlateau.step: metrics must be a number (the epoch's val_loss, say), got "
                            f"{metrics!r:.60}")
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            groups = self.optimizer.param_groups
            if len(self.min_lrs) != len(groups):  # a group added since it was built
                if self.default_min_lr is None:
                    raise RuntimeError(f"ReduceLROnPlateau: min_lr has {len(self.min_lrs)} values and the optimizer "
                                       f"now {len(groups)} param groups; set scheduler.min_lrs to one per group")
                self.min_lrs = [self.default_min_lr] * len(groups)
            for group, min_lr in zip(groups, self.min_lrs):
                old = float(group["lr"])
                new = max(old * self.factor, min_lr)
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = group_lrs(self.optimizer)

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict) or "best" not in state_dict:
            raise ValueError(f"ReduceLROnPlateau.load_state_dict: expected a dict from state_dict(), got "
                             f"{state_dict!r:.80}")
        self.__dict__.update(state_dict)
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr
