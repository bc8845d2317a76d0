"""PyTorch's variants of Adam: NAdam, RAdam, Adamax, with torch.optim's arguments, order, defaults and updates.

Each counts the steps of each parameter (frozen steps left out, as PyTorch's per-parameter ``step``) and reads
every number that changes from step to step through ``Optimizer._per_step``, so a step captured as a CUDA graph
computes them on the device. ``weight_decay`` is xpnet's (L2 on the weights, ``weight_decay_on="all"`` for
PyTorch's every parameter); NAdam's and RAdam's ``decoupled_weight_decay=True`` shrinks the parameter instead,
p *= 1 - lr * weight_decay, as AdamW.
"""

from __future__ import annotations

import math
from typing import Any

from .._user import flag
from ..backend import into, namespace
from .adaptive import betas_pair
from .base import Optimizer
from .device_scalars import _sqrt
from .hyperparams import positive


class _AdamLike(Optimizer):
    """lr, betas, eps and weight decay checked as PyTorch's; m (``exp_avg``) moved on as PyTorch's lerp."""

    PYTORCH_ONLY = {"maximize": False, "foreach": None, "capturable": False, "differentiable": False}

    def __init__(self, lr: float, betas: Any, eps: float, weight_decay: float, weight_decay_on: str,
                 decoupled_weight_decay: bool = False):
        super().__init__(lr, weight_decay, weight_decay_on)
        self.betas = betas_pair(betas, self)
        self.eps = positive("eps", eps, self)
        self.decoupled_weight_decay = flag(decoupled_weight_decay, self.name, "decoupled_weight_decay")

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "betas": tuple(self.betas), "eps": self.eps}

    def _decay(self, p: Any, g: Any) -> tuple[Any, Any]:
        if not self.decoupled_weight_decay:
            return super()._decay(p, g)
        p *= self._per_step("decoupled_decay", p, lambda lr, t: 1.0 - lr * self.weight_decay)
        return p, g

    def _moments(self, name: str, p: Any, g: Any, xp: Any, work: Any, second: str) -> tuple[Any, Any, int]:
        """m lerped towards g, the second state slot ``second`` (made here, moved on by the caller), and
        the parameter's ``t0`` (its own step count is t - t0)."""
        m, s = self._slot(name, "exp_avg", p, xp), self._slot(name, second, p, xp)
        w = into(work, xp.subtract, g, m)
        w *= 1.0 - self.betas[0]
        m += w
        return m, s, self.skipped.get(name, 0)

    def _second_moment(self, v: Any, g: Any, xp: Any, work: Any) -> Any:
        """v = b2 * v + (1 - b2) * g * g, in place where the namespace allows it."""
        v *= self.betas[1]
        w = into(work, xp.multiply, g, g)
        w *= 1.0 - self.betas[1]
        v += w
        return v


class NAdam(_AdamLike):
    """Adam with Nesterov momentum (Dozat), PyTorch's ``torch.optim.NAdam``.

    mu_t = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay)), P_t = mu_1 * ... * mu_t;
    p -= lr * (1 - mu_t) / (1 - P_t) * g / d + lr * mu_{t+1} / (1 - P_t * mu_{t+1}) * m / d,
    d = sqrt(v / (1 - b2**t)) + eps.

    P_t is PyTorch's ``mu_product``: each parameter's running product, each mu with the beta1 of its step
    (OneCycleLR's ``cycle_momentum`` moves it), kept as ``scalars[name] = {"mu_product": P, "mu_step": t}`` in
    ``state_dict()`` and checkpoints, so a resumed run goes on as the uninterrupted one. Steps it has not seen
    (a state or checkpoint without it, steps captured as a CUDA graph, where beta1 stays fixed) are
    multiplied in with the current beta1; a captured step computes P_t in closed form on the device.
    """

    def __init__(self, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False, *,
                 weight_decay_on: str = "weights"):
        super().__init__(lr, betas, eps, weight_decay, weight_decay_on, decoupled_weight_decay)
        self.momentum_decay = positive("momentum_decay", momentum_decay, self, allow_zero=True)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "momentum_decay": self.momentum_decay,
                "decoupled_weight_decay": self.decoupled_weight_decay}

    def _mu(self, n: Any) -> Any:
        return self.betas[0] * (1.0 - 0.5 * 0.96 ** (n * self.momentum_decay))

    def _mu_product(self, name: str, n: int) -> float:
        """P_n of parameter ``name`` at its n-th step, kept for the next: the last one times mu_n (times the
        mu of any steps it did not see, with the current beta1)."""
        kept = self.scalars.get(name, {})
        product, step = kept.get("mu_product", 1.0), kept.get("mu_step", 0)
        product *= math.prod(self._mu(i) for i in range(step + 1, n + 1))
        self.scalars[name] = {"mu_product": product, "mu_step": n}
        return product

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        work = self._work(p, xp)
        m, v, t0 = self._moments(name, p, g, xp, work, "exp_avg_sq")
        v = self._second_moment(v, g, xp, work)
        self._store(name, exp_avg=m, exp_avg_sq=v)
        b2 = self.betas[1]
        if self.device_scalars is None:
            kept = self._mu_product(name, self.t - t0)

            def product(n: Any) -> Any:
                return kept
        else:
            def product(n: Any) -> Any:
                return _product_on_device(self.betas[0], self.momentum_decay, n)
        bc2 = self._per_step(("nadam_bc2", t0), p, lambda lr, t: 1.0 - b2 ** (t - t0))
        c_g = self._per_step(("nadam_g", t0), p,
                             lambda lr, t: lr * (1.0 - self._mu(t - t0)) / (1.0 - product(t - t0)))
        c_m = self._per_step(("nadam_m", t0), p, lambda lr, t: lr * self._mu(t - t0 + 1)
                             / (1.0 - product(t - t0) * self._mu(t - t0 + 1)))
        d = v / bc2 if work is None else xp.divide(v, bc2, out=work)  # a scalar: not into()'s standard call
        d = into(work, xp.sqrt, d)
        d += self.eps
        p -= c_g * (g / d)
        p -= c_m * (m / d)
        return p


def _product_on_device(b1: float, momentum_decay: float, n: Any) -> Any:
    """NAdam's P_n for a 0-d array n: log P_n = n log b1 + sum_i log(1 - x_i), x_i = 0.5 * 0.96**(i * decay),
    summed over i in closed form from log(1 - x) = -sum_k x**k / k (60 terms: 0.5**60 is below float64's
    resolution)."""
    xp = namespace(n)
    if b1 == 0.0:
        return n * 0.0
    if momentum_decay == 0.0:
        return (0.5 * b1) ** n
    c = momentum_decay * math.log(0.96)
    k = xp.arange(1, 61, dtype=n.dtype, device=n.device)
    # sum_{i=1..n} exp(i k c) = exp(k c) * expm1(n k c) / expm1(k c): expm1 keeps its digits where k c is tiny
    logs = 0.5 ** k / k * xp.exp(k * c) * xp.expm1(n * k * c) / xp.expm1(k * c)
    return xp.exp(n * math.log(b1) - xp.sum(logs))


class RAdam(_AdamLike):
    """Rectified Adam (Liu et al.), PyTorch's ``torch.optim.RAdam``.

    rho_inf = 2 / (1 - b2) - 1, rho_t = rho_inf - 2 t b2**t / (1 - b2**t); while rho_t <= 5,
    p -= lr * m / (1 - b1**t) (SGD with momentum); then p -= lr * m / (1 - b1**t) * r_t * sqrt(1 - b2**t) /
    (sqrt(v) + eps), r_t = sqrt((rho_t - 4) (rho_t - 2) rho_inf / ((rho_inf - 4) (rho_inf - 2) rho_t)).
    """

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled_weight_decay: bool = False, *,
                 weight_decay_on: str = "weights"):
        super().__init__(lr, betas, eps, weight_decay, weight_decay_on, decoupled_weight_decay)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "decoupled_weight_decay": self.decoupled_weight_decay}

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        b1, b2 = self.betas
        work = self._work(p, xp)
        m, v, t0 = self._moments(name, p, g, xp, work, "exp_avg_sq")
        v = self._second_moment(v, g, xp, work)
        self._store(name, exp_avg=m, exp_avg_sq=v)
        step = self._per_step(("radam_step", t0), p, lambda lr, t: lr / (1.0 - b1 ** (t - t0)))
        scale = self._per_step(("radam_scale", t0), p, lambda lr, t: _rectified(b2, t - t0))
        if isinstance(scale, float):  # eager: PyTorch's branch on rho_t > 5
            if scale == 0.0:
                p -= step * m
                return p
            return self._divide_step(p, m, v, step * scale, self.eps, work, xp)
        # On the device (a captured step), both branches in one: scale 0 where rho_t <= 5.
        w = into(work, xp.sqrt, v)
        w += self.eps
        w = into(work, xp.divide, scale, w)
        p -= step * m * xp.where(scale > 0.0, w, xp.ones_like(w))
        return p


def _rectified(b2: float, n: Any) -> Any:
    """RAdam's r_n * sqrt(1 - b2**n) where rho_n > 5, else 0 (n an int, or a 0-d array on the device)."""
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    bc2 = 1.0 - b2 ** n
    rho = rho_inf - 2.0 * n * b2 ** n / bc2
    if isinstance(n, int):
        if rho <= 5.0:
            return 0.0
        return math.sqrt((rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)) * \
            math.sqrt(bc2)
    xp = namespace(n)
    ok = rho > 5.0
    safe = xp.where(ok, rho, xp.full_like(rho, 6.0))  # no square root of a negative in the branch not taken
    r = (safe - 4.0) * (safe - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * safe) if rho_inf > 5.0 else \
        xp.zeros_like(rho)
    return xp.where(ok, xp.sqrt(r) * _sqrt(bc2), xp.zeros_like(rho))


class Adamax(_AdamLike):
    """Adam with the infinity norm (Kingma & Ba), PyTorch's ``torch.optim.Adamax``.

    u = max(b2 * u, |g| + eps); p -= lr / (1 - b1**t) * m / u. ``foreach`` (PyTorch's fifth argument) is
    taken and changes nothing: xpnet has one implementation.
    """

    def __init__(self, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, foreach: bool | None = None, *, weight_decay_on: str = "weights"):
        super().__init__(lr, betas, eps, weight_decay, weight_decay_on)
        if foreach is not None:
            flag(foreach, self.name, "foreach")

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        work = self._work(p, xp)
        m, u, t0 = self._moments(name, p, g, xp, work, "exp_inf")
        u *= self.betas[1]
        w = into(work, xp.abs, g)
        w += self.eps
        u = into(None if work is None else u, xp.maximum, u, w)
        self._store(name, exp_avg=m, exp_inf=u)
        b1 = self.betas[0]
        step = self._per_step(("adamax_step", t0), p, lambda lr, t: lr / (1.0 - b1 ** (t - t0)))
        w = into(work, xp.divide, m, u)
        w *= step
        p -= w
        return p
