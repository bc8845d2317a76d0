"""Adadelta (Zeiler), PyTorch's ``torch.optim.Adadelta``: its arguments, order, defaults (lr=1.0) and update."""

from __future__ import annotations

from typing import Any

from .._user import flag, is_real
from ..backend import into
from .base import Optimizer
from .hyperparams import positive


class Adadelta(Optimizer):
    """s = rho * s + (1 - rho) * g * g; delta = sqrt(a + eps) / sqrt(s + eps) * g;
    a = rho * a + (1 - rho) * delta * delta; p -= lr * delta.

    ``lr`` scales delta (1.0, PyTorch's default, is the paper's rule); ``rho`` in [0, 1] as PyTorch's. ``foreach``
    (PyTorch's fifth argument) is taken and changes nothing: xpnet has one implementation."""

    PYTORCH_ONLY = {"maximize": False, "capturable": False, "foreach": None, "differentiable": False}

    def __init__(self, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0,
                 foreach: bool | None = None, *, weight_decay_on: str = "weights"):
        super().__init__(lr, weight_decay, weight_decay_on)
        if not is_real(rho) or not 0.0 <= rho <= 1.0:
            raise ValueError(f"{self.name}: rho must be in [0, 1], got {rho!r}")
        self.rho = float(rho)
        self.eps = positive("eps", eps, self)
        if foreach is not None:
            flag(foreach, self.name, "foreach")

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "rho": self.rho, "eps": self.eps}

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        s, a = self._slot(name, "square_avg", p, xp), self._slot(name, "acc_delta", p, xp)
        work = self._work(p, xp)
        s *= self.rho
        w = into(work, xp.multiply, g, g)
        w *= 1.0 - self.rho
        s += w
        delta = xp.sqrt(a + self.eps) / xp.sqrt(s + self.eps) * g
        a *= self.rho
        w = into(work, xp.multiply, delta, delta)
        w *= 1.0 - self.rho
        a += w
        self._store(name, square_avg=s, acc_delta=a)
        p -= self._step_lr(p) * delta
        return p
