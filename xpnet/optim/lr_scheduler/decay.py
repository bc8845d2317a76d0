"""The schedules of one formula: PyTorch's StepLR, MultiStepLR, ExponentialLR, LambdaLR, MultiplicativeLR,
LinearLR, ConstantLR, PolynomialLR, CosineAnnealingLR and CosineAnnealingWarmRestarts, each with PyTorch's
arguments and its chainable ``get_lr`` (the closed form only where PyTorch uses one), each param group's lr
from its own."""

from __future__ import annotations

import math
import types
from bisect import bisect_right
from collections import Counter
from typing import Any, Callable

from .base import LRScheduler, check_optimizer, count, per_group, rate

__all__ = ["StepLR", "MultiStepLR", "ExponentialLR", "LambdaLR", "MultiplicativeLR", "LinearLR", "ConstantLR",
           "PolynomialLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts"]


class StepLR(LRScheduler):
    """lr * gamma every ``step_size`` steps."""

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size = count("StepLR", "step_size", step_size)
        self.gamma = rate("StepLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._lrs()
        return [lr * self.gamma for lr in self._lrs()]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """lr * gamma at each of ``milestones`` (step counts; a repeated one multiplies as often)."""

    def __init__(self, optimizer: Any, milestones: Any, gamma: float = 0.1, last_epoch: int = -1):
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise ValueError(f"MultiStepLR: milestones must be a list of ints >= 0, got {milestones!r}")
        self.milestones = Counter(count("MultiStepLR", f"milestones[{i}]", m, lo=0) for i, m in enumerate(milestones))
        self.gamma = rate("MultiStepLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch not in self.milestones:
            return self._lrs()
        return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in self._lrs()]

    def _get_closed_form_lr(self) -> list[float]:
        milestones = sorted(self.milestones.elements())
        return [base * self.gamma ** bisect_right(milestones, self.last_epoch) for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "milestones": sorted(self.milestones.elements())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.milestones = Counter(self.milestones)


class ExponentialLR(LRScheduler):
    """lr * gamma every step."""

    def __init__(self, optimizer: Any, gamma: float, last_epoch: int = -1):
        self.gamma = rate("ExponentialLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self._lrs()
        return [lr * self.gamma for lr in self._lrs()]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma ** self.last_epoch for base in self.base_lrs]


class _OfLambda(LRScheduler):
    """LambdaLR and MultiplicativeLR: a function of the step count (one for all param groups, or a list of one
    per group); a function's ``__dict__`` saved where it has one."""

    def __init__(self, optimizer: Any, lr_lambda: Callable[[int], float], last_epoch: int = -1):
        who = type(self).__name__

        def function(arg: str, fn: Any) -> Any:
            if not callable(fn):
                raise TypeError(f"{who}: {arg} must be a function of the step count, got {fn!r}")
            return fn
        self.lr_lambdas = per_group(who, "lr_lambda", lr_lambda, check_optimizer(who, optimizer), function)
        super().__init__(optimizer, last_epoch)

    def _factors(self) -> list[float]:
        """Each group's ``lr_lambda(last_epoch)``, checked to be a number (a string failed in the product)."""
        factors = [fn(self.last_epoch) for fn in self.lr_lambdas]
        for factor in factors:
            if not hasattr(factor, "__float__"):  # a number of any kind (a bool too, as PyTorch multiplies it)
                raise TypeError(f"{type(self).__name__}: lr_lambda({self.last_epoch}) must return a number (the "
                                f"factor), got {factor!r}")
        return factors

    def state_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in super().state_dict().items() if k != "lr_lambdas"},
                "lr_lambdas": [None if isinstance(fn, types.FunctionType) else dict(fn.__dict__)
                               for fn in self.lr_lambdas]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("lr_lambdas", [None])
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "lr_lambdas"})
        for fn, kept in zip(self.lr_lambdas, saved or []):
            if kept is not None:
                fn.__dict__.update(kept)


class LambdaLR(_OfLambda):
    """base lr * lr_lambda(step count)."""

    def get_lr(self) -> list[float]:
        return [base * factor for factor, base in zip(self._factors(), self.base_lrs)]


class MultiplicativeLR(_OfLambda):
    """lr * lr_lambda(step count) at each step after the first."""

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self._lrs()
        return [lr * factor for factor, lr in zip(self._factors(), self._lrs())]


class LinearLR(LRScheduler):
    """The lr times a factor going linearly from ``start_factor`` to ``end_factor`` over ``total_iters`` steps."""

    def __init__(self, optimizer: Any, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5,
                 last_epoch: int = -1):
        self.start_factor = rate("LinearLR", "start_factor", start_factor, 0.0, 1.0, open_lo=True)
        self.end_factor = rate("LinearLR", "end_factor", end_factor, 0.0, 1.0)
        self.total_iters = count("LinearLR", "total_iters", total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lrs = self._lrs()
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in lrs]
        if self._is_initial or self.last_epoch > self.total_iters:
            return lrs
        delta = self.end_factor - self.start_factor
        return [lr * (1.0 + delta / (self.total_iters * self.start_factor + (self.last_epoch - 1) * delta))
                for lr in lrs]

    def _get_closed_form_lr(self) -> list[float]:
        delta = self.end_factor - self.start_factor
        return [base * (self.start_factor + delta * min(self.total_iters, self.last_epoch) / self.total_iters)
                for base in self.base_lrs]


class ConstantLR(LRScheduler):
    """The lr times ``factor`` for the first ``total_iters`` steps."""

    def __init__(self, optimizer: Any, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1):
        self.factor = rate("ConstantLR", "factor", factor, 0.0, 1.0, open_lo=True)
        self.total_iters = count("ConstantLR", "total_iters", total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lrs = self._lrs()
        if self.last_epoch == 0:
            return [lr * self.factor for lr in lrs]
        if self.last_epoch != self.total_iters:
            return lrs
        return [lr * (1.0 / self.factor) for lr in lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * (self.factor + (self.last_epoch >= self.total_iters) * (1 - self.factor))
                for base in self.base_lrs]


class PolynomialLR(LRScheduler):
    """base lr * (1 - step / total_iters) ** power, then 0."""

    def __init__(self, optimizer: Any, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1):
        self.total_iters = count("PolynomialLR", "total_iters", total_iters)
        self.power = rate("PolynomialLR", "power", power)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._lrs()
        factor = ((1.0 - self.last_epoch / self.total_iters)
                  / (1.0 - (self.last_epoch - 1) / self.total_iters)) ** self.power
        return [lr * factor for lr in self._lrs()]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * (1.0 - min(self.total_iters, self.last_epoch) / self.total_iters) ** self.power
                for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine from the base lr down to ``eta_min`` over ``T_max`` steps, and up again after (PyTorch's)."""

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):  # noqa: N803
        self.T_max = count("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = rate("CosineAnnealingLR", "eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lrs, e, t = self._lrs(), self.last_epoch, self.T_max
        if self._is_initial:
            return lrs
        if self._step_count == 1 and e > 0:
            return [self.eta_min + (base - self.eta_min) * (1 + math.cos(e * math.pi / t)) / 2
                    for base in self.base_lrs]
        if (e - 1 - t) % (2 * t) == 0:
            return [lr + (base - self.eta_min) * (1 - math.cos(math.pi / t)) / 2
                    for lr, base in zip(lrs, self.base_lrs)]
        return [(1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * (e - 1) / t)) * (lr - self.eta_min)
                + self.eta_min for lr in lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return [self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine from the base lr to ``eta_min`` over ``T_0`` steps, restarting with periods times ``T_mult``;
    ``step(epoch)`` takes a fractional epoch (``scheduler.step(epoch + i / iters)``) as PyTorch's."""

    def __init__(self, optimizer: Any, T_0: int, T_mult: int = 1, eta_min: float = 0.0,  # noqa: N803
                 last_epoch: int = -1):
        self.T_0 = self.T_i = count("CosineAnnealingWarmRestarts", "T_0", T_0)
        self.T_mult = count("CosineAnnealingWarmRestarts", "T_mult", T_mult)
        self.eta_min = rate("CosineAnnealingWarmRestarts", "eta_min", eta_min)
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
                for base in self.base_lrs]

    def step(self, epoch: Any = None) -> None:
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            rate("CosineAnnealingWarmRestarts.step", "epoch", epoch)
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log((epoch / self.T_0 * (self.T_mult - 1) + 1), self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult ** n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult ** n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        self._set_lrs(self.get_lr())
