"""Gradient descent with and without momentum: PyTorch's ``SGD`` and the book's ``Momentum`` and ``Nesterov``.

SGD (with and without PyTorch's momentum), Momentum and Nesterov's PyTorch convention run as one fused
kernel per parameter on CuPy (``xpnet.backend.fast_cupy``; SGD's first step with momentum, which sets the
buffer to g, excepted; SGD and Nesterov's PyTorch convention one kernel for up to 32 parameters, weight decay and a
captured step's learning rate on the device included) and, where Numba is installed, on NumPy's float32/float64 arrays
(``xpnet.backend.numba_kernels``); Nesterov's book conventions keep the portable update.
"""

from __future__ import annotations

from typing import Any

from .._user import flag, is_bool
from ..backend import fast_path
from .base import Optimizer, unfused
from .hyperparams import choice, fraction


class SGD(Optimizer):
    """Stochastic gradient descent with PyTorch's signature: ``SGD(lr, momentum=0, dampening=0,
    weight_decay=0, nesterov=False)``, positional in PyTorch's order after the model or its parameters
    (``SGD(model.parameters(), 0.1, 0.9)`` as ``torch.optim.SGD``); ``weight_decay_on`` by keyword.

    Without momentum, p -= lr * g (the book's SGD). With ``momentum`` m, PyTorch's form: the buffer
    v = g at the first step, then v = m*v + (1 - dampening)*g, and p -= lr * v, or with ``nesterov=True``
    p -= lr * (g + m*v). ``weight_decay`` adds ``weight_decay * W`` to the gradient of each weight (W, Wx,
    Wh), as the book's MultiLayerNet; PyTorch adds it to every parameter: ``weight_decay_on="all"``, the default
    where the optimizer is built PyTorch's way (its parameters or param groups first), as is PyTorch's lr 1e-3
    where none is given (the book's 0.01 otherwise).
    """

    PYTORCH_ONLY = {"maximize": False, "foreach": None, "differentiable": False, "fused": None}
    TORCH_DEFAULTS = {"lr": 1e-3}  # torch.optim.SGD's, where it is built from parameters or param groups

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, weight_decay_on: str = "weights"):
        super().__init__(lr, weight_decay, weight_decay_on)
        self.momentum = fraction("momentum", momentum, self)
        if is_bool(dampening):  # API.md's third argument was nesterov; PyTorch's, taken here, is dampening
            raise ValueError(f"{self.name}: dampening must be in [0, 1), got {dampening!r}: the third positional "
                             f"argument is dampening, in PyTorch's order; pass nesterov={dampening!r} by keyword")
        self.dampening = fraction("dampening", dampening, self)
        nesterov = flag(nesterov, self.name, "nesterov")  # a TypeError, as every optimizer's flag
        if nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError(f"{self.name}: nesterov=True needs a momentum > 0 and dampening=0 (as PyTorch), got "
                             f"momentum={self.momentum}, dampening={self.dampening}")
        self.nesterov = nesterov

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov}

    def _updated_at_once(self, work: list[tuple[Any, ...]]) -> bool:
        """Every parameter's update in one call where a backend's kernel takes them all (Numba's, for C-contiguous
        float32/float64 NumPy arrays without weight decay: ``"sgd_updates"``, and with momentum, once every parameter
        has its buffer, ``"sgd_momentum_updates"``, bit for bit the per-parameter update's; CuPy's also with weight
        decay or numbers on the device, a captured step's: ``"sgd_multi_tensor"``); else the update of each in turn
        (also for a subclass with an update, a learning rate, a decay or state of its own, which the kernel would
        bypass)."""
        kind = type(self)
        if kind._update is not SGD._update or kind._step_lr is not Optimizer._step_lr or kind._slot is not \
                Optimizer._slot:
            return False
        xp, params, grads = work[0][5], [item[3] for item in work], [item[4] for item in work]
        velocities = None
        if self.momentum:
            state, velocities = self.state, []
            for item in work:  # the first step of a parameter sets its buffer to g: its own update does that
                v = state.get(item[0], {}).get("v")
                if v is None:
                    return False
                velocities.append(v)
        if self.weight_decay or self.device_scalars is not None:
            return _decayed_at_once(self, work, velocities, self.momentum, self.dampening, self.nesterov)
        if not self.momentum:
            return fast_path("sgd_updates", xp, unfused)(params, grads, self._lr) is not NotImplemented
        fused = fast_path("sgd_momentum_updates", xp, unfused)
        return fused(params, grads, velocities, self._lr, self.momentum, self.dampening,
                     self.nesterov) is not NotImplemented

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        if not self.momentum:
            if fast_path("sgd_update", xp, unfused)(p, g, self._step_lr(p)) is not NotImplemented:
                return p
            p -= self._step_lr(p) * g
            return p
        first = name not in self.state
        v = self._slot(name, "v", p, xp)
        fused = fast_path("sgd_momentum_update", xp, unfused)
        if fused(p, g, v, self._step_lr(p), self.momentum, self.dampening, first, self.nesterov) is not NotImplemented:
            return p
        if first:  # PyTorch starts the buffer at g itself, without dampening
            v += g
        else:
            v *= self.momentum
            v += (1.0 - self.dampening) * g
        self._store(name, v=v)
        w = v
        if self.nesterov:
            w = self.momentum * v
            w += g
        p -= self._step_lr(p) * w
        return p


class Momentum(Optimizer):
    """v = momentum * v - lr * g; p += v (the book's Momentum)."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0,
                 weight_decay_on: str = "weights"):
        super().__init__(lr, weight_decay, weight_decay_on)
        self.momentum = fraction("momentum", momentum, self)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "momentum": self.momentum}

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        v = self._slot(name, "v", p, xp)
        if fast_path("momentum_update", xp, unfused)(p, g, v, self._step_lr(p), self.momentum) is not NotImplemented:
            return p
        v *= self.momentum
        v -= self._step_lr(p) * g
        self._store(name, v=v)
        p += v
        return p


class Nesterov(Momentum):
    """Nesterov momentum, m = ``momentum``.

    ``convention="pytorch"`` (the default), PyTorch's ``SGD(nesterov=True)``: v = m*v + g; p -= lr * (g + m*v).
    ``convention="book"``, the book's ``common/optimizer.py`` as its repository holds it since commit
    89eadd0 (January 2021): p += m*m*v - (1 + m)*lr*g, then v = m*v - lr*g. Its v is PyTorch's times -lr,
    so the two take the same steps up to rounding; this one repeats the book's arithmetic operation by operation.
    ``convention="book-2016"``, the same file before that commit: v = m*v - lr*g first, then
    p += m*m*v - (1 + m)*lr*g, which weighs the current gradient (1 + m + m*m)*lr instead of (1 + m)*lr.
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0,
                 weight_decay_on: str = "weights", convention: str = "pytorch"):
        super().__init__(lr, momentum, weight_decay, weight_decay_on)
        self.convention = choice("convention", convention, ("pytorch", "book", "book-2016"), self)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "convention": self.convention}

    def _updated_at_once(self, work: list[tuple[Any, ...]]) -> bool:
        """PyTorch's convention: every parameter's update in one call where a backend's kernel takes them all (SGD's
        ``"sgd_momentum_updates"`` with nesterov, dampening 0: its first step, v = g, is any step's here; CuPy's
        ``"sgd_multi_tensor"`` also with weight decay or numbers on the device), the per-parameter kernel's
        arithmetic; else (the book's conventions, a subclass's own update) each parameter in turn."""
        kind, xp = type(self), work[0][5]
        if (self.convention != "pytorch" or kind._update is not Nesterov._update or kind._slot is not Optimizer._slot
                or kind._step_lr is not Optimizer._step_lr):
            return False
        if self.weight_decay or self.device_scalars is not None:
            if fast_path("sgd_multi_tensor", xp) is None:
                return False
            velocities = [self._slot(item[0], "v", item[3], xp) for item in work]
            return _decayed_at_once(self, work, velocities, self.momentum, 0.0, True)
        if fast_path("sgd_momentum_updates", xp) is None:
            return False
        velocities = [self._slot(item[0], "v", item[3], xp) for item in work]
        fused = fast_path("sgd_momentum_updates", xp, unfused)
        return fused([item[3] for item in work], [item[4] for item in work], velocities, self._lr, self.momentum,
                     0.0, True) is not NotImplemented

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        v, m, lr = self._slot(name, "v", p, xp), self.momentum, self._step_lr(p)
        if self.convention == "pytorch":
            # SGD(momentum=m, nesterov=True)'s update, whose first step (v = 0 * m + g) is any step's here
            if fast_path("sgd_momentum_update", xp, unfused)(p, g, v, lr, m, 0.0, False, True) is not NotImplemented:
                return p
            v *= m
            v += g
            self._store(name, v=v)
            w = m * v
            w += g
            w *= lr
            p -= w
            return p
        if self.convention == "book-2016":
            v *= m
            v -= lr * g
        p += m * m * v
        p -= (1 + m) * lr * g
        if self.convention == "book":
            v *= m
            v -= lr * g
        self._store(name, v=v)
        return p


def _decayed_at_once(opt: Optimizer, work: list[tuple[Any, ...]], velocities: list[Any] | None, momentum: float,
                     dampening: float, nesterov: bool) -> bool:
    """SGD's or Nesterov's step by CuPy's ``"sgd_multi_tensor"`` (none elsewhere: False): with each parameter's L2
    weight decay (``Optimizer._decay``'s g + weight_decay * p, 0 where ``_decays`` spares it) and the learning rate
    of the step (a 0-d device array in a captured step); False where a subclass decays its own way."""
    kind, xp = type(opt), work[0][5]
    fused = fast_path("sgd_multi_tensor", xp)
    if fused is None or kind._decay is not Optimizer._decay or kind._decays is not Optimizer._decays:
        return False
    wd = opt.weight_decay
    decays = [wd if wd and opt._decays(item[0]) else 0.0 for item in work]
    return fused([item[3] for item in work], [item[4] for item in work], velocities, opt._step_lr(work[0][3]),
                 momentum, dampening, nesterov, decays) is not NotImplemented
