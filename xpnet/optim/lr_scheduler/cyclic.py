"""PyTorch's CyclicLR: each param group's lr cycled between ``base_lr`` and ``max_lr``, stepped after every
batch, and the momentum (or Adam's beta1) cycled the other way, formula by formula as
``torch/optim/lr_scheduler.py``."""

from __future__ import annotations

import math
import types
from typing import Any, Callable

from ..._user import flag
from .base import LRScheduler, check_optimizer, count, momentum_key, per_group, rate, set_momentum

__all__ = ["CyclicLR"]

MODES = ("triangular", "triangular2", "exp_range")


class CyclicLR(LRScheduler):
    """Up from ``base_lr`` to ``max_lr`` over ``step_size_up`` steps, down over ``step_size_down`` (default: as
    many), again and again; ``mode`` scales the height of each cycle: ``"triangular"`` not at all,
    ``"triangular2"`` halves it each cycle, ``"exp_range"`` by ``gamma ** step``; or ``scale_fn(x)`` in [0, 1]
    of the cycle number (``scale_mode="cycle"``) or of the step (``"iterations"``), ``mode`` then ignored.
    Built with ``last_epoch=-1`` it sets each group's lr to ``base_lr``. ``cycle_momentum=True`` (PyTorch's
    default) moves the momentum (SGD, Momentum, Nesterov, RMSprop) or Adam's beta1 from ``max_momentum`` at the
    lr's low to ``base_momentum`` at its peak. ``base_lr``, ``max_lr``, ``base_momentum`` and ``max_momentum``
    take a list of one value per param group, as PyTorch's. A ``scale_fn`` that is a function is not saved by
    ``state_dict()`` (one of a class keeps its ``__dict__``), as PyTorch's."""

    def __init__(self, optimizer: Any, base_lr: Any, max_lr: Any, step_size_up: int = 2000,
                 step_size_down: int | None = None, mode: str = "triangular", gamma: float = 1.0,
                 scale_fn: Callable[[float], float] | None = None, scale_mode: str = "cycle",
                 cycle_momentum: bool = True, base_momentum: Any = 0.8, max_momentum: Any = 0.9, last_epoch: int = -1):
        who = "CyclicLR"
        optimizer = check_optimizer(who, optimizer)
        last_epoch = count(who, "last_epoch", last_epoch, lo=-1)
        base_lrs = per_group(who, "base_lr", base_lr, optimizer, lambda arg, v: rate(who, arg, v))
        self.max_lrs = per_group(who, "max_lr", max_lr, optimizer, lambda arg, v: rate(who, arg, v))
        up = float(count(who, "step_size_up", step_size_up))
        down = up if step_size_down is None else float(count(who, "step_size_down", step_size_down, lo=0))
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        if scale_fn is None and mode not in MODES:
            raise ValueError(f"{who}: mode must be one of {', '.join(map(repr, MODES))} (or give scale_fn), got "
                             f"{mode!r}")
        if scale_fn is not None and not callable(scale_fn):
            raise TypeError(f"{who}: scale_fn must be a function x -> a factor in [0, 1], got {scale_fn!r}")
        if scale_mode not in ("cycle", "iterations"):
            raise ValueError(f"{who}: scale_mode must be 'cycle' or 'iterations', got {scale_mode!r}")
        self.mode = mode
        self.gamma = rate(who, "gamma", gamma)
        self._scale_fn_custom = scale_fn
        # PyTorch's: a mode of its own scales by the cycle, exp_range by the step, whatever scale_mode says
        self.scale_mode = scale_mode if scale_fn is not None else "iterations" if mode == "exp_range" else "cycle"
        self.cycle_momentum = flag(cycle_momentum, who, "cycle_momentum")
        if self.cycle_momentum:
            self.use_beta1 = momentum_key(who, optimizer)

            def momentum(arg: str, value: Any) -> float:
                return rate(who, arg, value, 0.0, 1.0, open_hi=True)
            self.base_momentums = per_group(who, "base_momentum", base_momentum, optimizer, momentum)
            self.max_momentums = per_group(who, "max_momentum", max_momentum, optimizer, momentum)
        if last_epoch == -1:
            for group, lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = lr
            for i, m in enumerate(self.max_momentums if self.cycle_momentum else []):
                set_momentum(optimizer, i, m, self.use_beta1)
        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs  # after the first step, as PyTorch's (which took each group's initial_lr)

    def scale_fn(self, x: float) -> float:
        """The factor of the cycle's height at ``x`` (the cycle number, or the step for ``"iterations"``)."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        return self.gamma ** x

    def get_lr(self) -> list[float]:
        cycle = math.floor(1 + self.last_epoch / self.total_size)
        x = 1.0 + self.last_epoch / self.total_size - cycle
        scale_factor = x / self.step_ratio if x <= self.step_ratio else (x - 1) / (self.step_ratio - 1)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else self.last_epoch)
        lrs = [base + (top - base) * scale_factor * scale for base, top in zip(self.base_lrs, self.max_lrs)]
        if self.cycle_momentum:
            for i, (low, high) in enumerate(zip(self.base_momentums, self.max_momentums)):
                set_momentum(self.optimizer, i, high - (high - low) * scale_factor * scale, self.use_beta1)
        return lrs

    def state_dict(self) -> dict[str, Any]:
        fn = self._scale_fn_custom
        return {**super().state_dict(),
                "_scale_fn_custom": None if fn is None or isinstance(fn, types.FunctionType) else dict(fn.__dict__)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        kept = state_dict.get("_scale_fn_custom") if isinstance(state_dict, dict) else None
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "_scale_fn_custom"}
                                if isinstance(state_dict, dict) else state_dict)
        if kept is not None and self._scale_fn_custom is not None:
            self._scale_fn_custom.__dict__.update(kept)
        if self.cycle_momentum:  # PyTorch's optimizer state would hold it: here, the momentum of last_epoch
            self.get_lr()
