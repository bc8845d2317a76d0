"""The numbers of an optimizer step that change from step to step (the learning rate, the step count), as a
step captured as a CUDA graph reads them: 0-d arrays on the device (:class:`DeviceScalars`), which the captured
kernels read and advance, where a Python float would stay the one of the capture; ``Optimizer._per_step``
computes each such number from them, or from Python floats in an eager step."""

from __future__ import annotations

import math
from typing import Any

from ..backend import namespace

__all__ = ["DeviceScalars"]


def _sqrt(x: Any) -> Any:
    """sqrt of a Python float, or of a 0-d device array (a step's number under ``device_scalars``)."""
    return math.sqrt(x) if isinstance(x, float) else namespace(x).sqrt(x)


class DeviceScalars:
    """The learning rate and the step count as 0-d float64 arrays on the parameters' device, for a step
    captured as a CUDA graph: the captured kernels read them, so each launch uses the values of its own
    step, where a Python float would stay the one of the capture. ``set(lr, t)`` fills them (outside a
    capture: at each epoch's start); ``Optimizer.step`` advances ``t`` on the device."""

    def __init__(self, xp: Any, device: Any):
        self.xp = xp
        self.lr = xp.zeros((), dtype=xp.float64, device=device)
        self.t = xp.zeros((), dtype=xp.float64, device=device)
        self._device = device
        self._cached: dict[Any, Any] = {}  # (name, dtype) -> this step's number, computed once per step
        self._constants: dict[Any, Any] = {}  # (value, dtype) -> a 0-d array of it, made once

    def set(self, lr: float, t: int) -> None:
        self.lr[...] = float(lr)
        self.t[...] = float(t)

    def advance(self) -> None:
        self.t += 1.0
        self._cached.clear()

    def constant(self, value: float, dtype: Any) -> Any:
        """``value`` as a 0-d array of ``dtype`` on the device, made once (a fill, no copy from the host): a number
        that does not change from step to step (1.0, the book's eps) where a multi-tensor kernel reads every such
        number from the device."""
        key = (float(value), dtype)
        if key not in self._constants:
            self._constants[key] = self.xp.full((), float(value), dtype=dtype, device=self._device)
        return self._constants[key]

    def once(self, key: Any, compute: Any) -> Any:
        if key not in self._cached:
            self._cached[key] = compute()
        return self._cached[key]
