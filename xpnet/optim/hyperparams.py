"""The checks on an optimizer's hyperparameters, each a ValueError naming the optimizer, the argument,
what it must be and what came: ``positive`` (lr, eps, weight_decay), ``fraction`` (momentum, betas),
``choice`` (weight_decay_on, convention); ``after_weight_decay``: a value of PyTorch's argument in
``weight_decay_on``'s place (Adam's amsgrad, RMSprop's momentum)."""

from __future__ import annotations

import math
from typing import Any, Callable

from .._user import is_real

__all__ = ["positive", "fraction", "choice", "after_weight_decay"]


def positive(arg: str, v: Any, opt: Any, allow_zero: bool = False) -> float:
    """``v`` as a float: a finite number > 0 (>= 0 with ``allow_zero``)."""
    if not is_real(v) or not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{type(opt).__name__}: {arg} must be a finite number {bound}, got {v!r}")
    return float(v)


def fraction(arg: str, v: Any, opt: Any) -> float:
    """``v`` as a float in [0, 1)."""
    if not is_real(v) or not 0.0 <= v < 1.0:
        raise ValueError(f"{type(opt).__name__}: {arg} must be in [0, 1), got {v!r}")
    return float(v)


def choice(arg: str, v: Any, choices: tuple[str, ...], opt: Any) -> str:
    """``v``, one of ``choices``."""
    if v not in choices:
        raise ValueError(f"{type(opt).__name__}: {arg} must be one of {', '.join(map(repr, choices))}, got {v!r}")
    return v


def after_weight_decay(v: Any, opt: Any, pytorch_arg: str, fits: Callable[[Any], bool]) -> None:
    """Refuse ``v``, given in ``weight_decay_on``'s place, where ``fits`` says it is a value of PyTorch's argument
    there (torch.optim's ``Adam(params, lr, betas, eps, weight_decay, amsgrad)``, ``RMSprop(..., weight_decay,
    momentum, centered)``), naming that argument and the keyword to write."""
    if fits(v):
        raise ValueError(f"{type(opt).__name__}: weight_decay_on, the argument after weight_decay, must be one of "
                         f"'weights', 'all', got {v!r}: PyTorch's argument there, {pytorch_arg}, goes by name here: "
                         f"{pytorch_arg}={v!r}")
