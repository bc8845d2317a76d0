"""Optimizers that scale each step by a running size of the gradient: AdaGrad, RMSprop, Adam, AdamW.

Each runs as one fused kernel per parameter on CuPy (``xpnet.backend.fast_cupy``; Adam and AdamW one for up to 32
parameters, with L2 weight decay, AMSGrad and a captured step's numbers on the device too) and, where Numba is
installed, on NumPy's float32/float64 arrays (``xpnet.backend.numba_kernels``).
"""

from __future__ import annotations

from typing import Any

from .. import _chainer
from .._user import flag, is_bool, is_real, keyword_hints
from ..backend import fast_path, into
from .base import Optimizer, unfused
from .device_scalars import _sqrt
from .hyperparams import after_weight_decay, choice, fraction, positive


class AdaGrad(Optimizer):
    """h += g*g; p -= lr * g / (sqrt(h) + eps). ``eps`` is the book's 1e-7 unless given, PyTorch's 1e-10 where
    the optimizer is built PyTorch's way (its parameters or param groups first), whose argument after ``lr`` is
    ``lr_decay``: by position there it is refused."""

    PYTORCH_ONLY = {"lr_decay": 0, "initial_accumulator_value": 0, "foreach": None, "maximize": False,
                    "differentiable": False, "fused": None}
    # torch.optim.Adagrad's arguments after params: built from parameters, its lr_decay by position is refused
    TORCH_ORDER = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")
    TORCH_DEFAULTS = {"eps": 1e-10}  # torch.optim.Adagrad's, built from parameters or param groups

    def __init__(self, lr: float = 0.01, eps: float = 1e-7, weight_decay: float = 0.0,
                 weight_decay_on: str = "weights"):
        super().__init__(lr, weight_decay, weight_decay_on)
        self.eps = positive("eps", eps, self)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "eps": self.eps}

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        h = self._slot(name, "h", p, xp)
        if fast_path("rms_update", xp, unfused)(p, g, h, self._step_lr(p), None, self.eps) is not NotImplemented:
            return p
        work = self._work(p, xp)
        h += into(work, xp.multiply, g, g)
        self._store(name, h=h)
        return self._divide_step(p, g, h, self._step_lr(p), self.eps, work, xp)


class RMSprop(Optimizer):
    """h = alpha*h + (1-alpha)*g*g; p -= lr * g / (sqrt(h) + eps).

    PyTorch's ``momentum`` and ``centered`` (keyword-only here), as ``torch.optim.RMSprop`` steps:
    ``centered=True`` divides by sqrt(h - a*a) + eps, a = alpha*a + (1-alpha)*g the mean gradient; with
    ``momentum`` m > 0, buf = m*buf + g / (sqrt(...) + eps) (from zeros) and p -= lr * buf."""

    PYTORCH_ONLY = {"capturable": False, "foreach": None, "maximize": False, "differentiable": False}
    # torch.optim.RMSprop's arguments after params: more by position than xpnet's five are refused, naming them
    TORCH_POSITIONAL = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "capturable", "foreach",
                        "maximize", "differentiable")

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 weight_decay_on: str = "weights", *, momentum: float = 0.0, centered: bool = False):
        after_weight_decay(weight_decay_on, self, "momentum", is_real)
        super().__init__(lr, weight_decay, weight_decay_on)
        self.alpha = fraction("alpha", alpha, self)
        self.eps = positive("eps", eps, self)
        self.momentum = fraction("momentum", momentum, self)
        self.centered = flag(centered, self.name, "centered")

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "alpha": self.alpha, "eps": self.eps, "momentum": self.momentum,
                "centered": self.centered}

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        h = self._slot(name, "h", p, xp)
        plain = not (self.momentum or self.centered)  # the fused kernels have neither option
        if plain and fast_path("rms_update", xp, unfused)(p, g, h, self._step_lr(p), self.alpha,
                                                          self.eps) is not NotImplemented:
            return p
        # The state moves on in place where the namespace allows it: a captured CUDA step writes into the
        # arrays it was captured with.
        work = self._work(p, xp)
        h *= self.alpha
        w = into(work, xp.multiply, g, g)
        w *= 1.0 - self.alpha
        h += w
        if plain:
            self._store(name, h=h)
            return self._divide_step(p, g, h, self._step_lr(p), self.eps, work, xp)
        slots, den = {"h": h}, h
        if self.centered:
            a = self._slot(name, "grad_avg", p, xp)
            a *= self.alpha
            a += (1.0 - self.alpha) * g
            slots["grad_avg"], den = a, h - a * a
        step = g / (xp.sqrt(den) + self.eps)
        if self.momentum:
            buf = self._slot(name, "momentum_buffer", p, xp)
            buf *= self.momentum
            buf += step
            slots["momentum_buffer"] = step = buf
        self._store(name, **slots)
        p -= self._step_lr(p) * step
        return p


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba); ``weight_decay`` adds L2 to the weights' gradients.

    m += (1 - b1) * (g - m); v = b2 * v + (1 - b2) * g * g;
    p -= lr_t * m / (sqrt(v) + eps_t) with lr_t = lr * sqrt(1 - b2**t) / (1 - b1**t).

    ``convention="pytorch"`` (the default, as PyTorch and the paper) adds eps to the bias-corrected
    sqrt(v_hat): eps_t = eps * sqrt(1 - b2**t); ``eps`` defaults to 1e-8. ``convention="book"`` is the
    book's common/optimizer.py Adam: eps added to the raw sqrt(v), eps_t = eps, default 1e-7. The two
    differ only in the first steps and where v is tiny.

    ``amsgrad=True`` (PyTorch's AMSGrad, keyword-only) divides by the running maximum of v instead, kept as the
    state ``v_max``: v_max = max(v_max, v), from zeros; p -= lr_t * m / (sqrt(v_max) + eps_t).
    """

    PYTORCH_ONLY = {"maximize": False, "foreach": None, "capturable": False,
                    "differentiable": False, "fused": None, "decoupled_weight_decay": False}

    @keyword_hints("Adam", _chainer.ADAM)
    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float | None = None,
                 weight_decay: float = 0.0, weight_decay_on: str = "weights", convention: str = "pytorch", *,
                 amsgrad: bool = False):
        after_weight_decay(weight_decay_on, self, "amsgrad", is_bool)
        super().__init__(lr, weight_decay, weight_decay_on)
        self.amsgrad = flag(amsgrad, self.name, "amsgrad")
        chainer = "; Chainer's Adam(alpha, beta1, beta2) is Adam(lr, betas=(beta1, beta2))" if is_real(betas) else ""
        self.betas = betas_pair(betas, self, chainer)
        self.convention = choice("convention", convention, ("pytorch", "book"), self)
        self.eps = positive("eps", (1e-7 if convention == "book" else 1e-8) if eps is None else eps, self)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "betas": tuple(self.betas), "eps": self.eps, "convention": self.convention,
                "amsgrad": self.amsgrad}

    def _step_eps(self, name: str, p: Any) -> tuple[Any, Any]:
        """This step's step size and eps for the parameter ``name`` (after its slots are made): the bias correction
        folded into the step size (and, PyTorch's way, into eps): lr * m_hat / (sqrt(v_hat) + eps)."""
        b1, b2 = self.betas
        t0 = self.skipped.get(name, 0)  # the parameter's own step is t - t0 (frozen steps left out, as PyTorch)
        step = self._per_step(("adam_step", t0), p,
                              lambda lr, t: lr * _sqrt(1.0 - b2 ** (t - t0)) / (1.0 - b1 ** (t - t0)))
        eps = self.eps if self.convention == "book" else \
            self._per_step(("adam_eps", t0), p, lambda lr, t: self.eps * _sqrt(1.0 - b2 ** (t - t0)))
        return step, eps

    def _updated_at_once(self, work: list[tuple[Any, ...]]) -> bool:
        """Every parameter's update in one call where a backend's kernel takes them all (CuPy's ``"adam_updates"``,
        up to 32 parameters a launch; AdamW's decay, Adam's L2 decay and AMSGrad inside; in a captured step the
        numbers of the step read on the device), the arithmetic of the per-parameter kernels; not a subclass's own
        update or decay."""
        xp, kind = work[0][5], type(self)
        decoupled = kind._decay is AdamW._decay
        if ((kind._decay is not Optimizer._decay and not decoupled) or kind._decays is not Optimizer._decays
                or kind._update is not Adam._update or kind._slot is not Optimizer._slot
                or kind._per_step is not Optimizer._per_step or fast_path("adam_updates", xp) is None):
            return False
        ds, wd = self.device_scalars, self.weight_decay
        ms, vs, vmaxs, keeps, steps, epss, decays = [], [], [], [], [], [], []
        for name, _, _, p, _, _ in work:
            ms.append(self._slot(name, "m", p, xp))
            vs.append(self._slot(name, "v", p, xp))
            if self.amsgrad:
                vmaxs.append(self._slot(name, "v_max", p, xp))
            decays_here = bool(wd) and self._decays(name)
            keep = self._per_step("adamw_decay", p, lambda lr, t: 1.0 - lr * wd) if decays_here and decoupled \
                else 1.0
            decays.append(wd if decays_here and not decoupled else 0.0)
            step, eps = self._step_eps(name, p)
            if ds is not None:  # every number read on the device: the constants too
                keep, eps = (ds.constant(x, p.dtype) if isinstance(x, float) else x for x in (keep, eps))
            keeps.append(keep)
            steps.append(step)
            epss.append(eps)
        fused = fast_path("adam_updates", xp, unfused)
        return fused([item[3] for item in work], [item[4] for item in work], ms, vs, keeps, *self.betas, steps,
                     epss, decays, vmaxs if self.amsgrad else None) is not NotImplemented

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        b1, b2 = self.betas
        keep, self._keep = self.__dict__.get("_keep"), None  # AdamW's decay of this parameter (see AdamW._decay)
        m, v = self._slot(name, "m", p, xp), self._slot(name, "v", p, xp)
        step, eps = self._step_eps(name, p)
        if keep is not None:
            if not self.amsgrad and fast_path("adamw_update", xp, unfused)(p, g, m, v, keep, b1, b2, step,
                                                                           eps) is not NotImplemented:
                return p
            p *= keep
        if not self.amsgrad and fast_path("adam_update", xp, unfused)(p, g, m, v, b1, b2, step,
                                                                      eps) is not NotImplemented:
            return p
        work = self._work(p, xp)
        w = into(work, xp.subtract, g, m)  # m += (1 - b1) * (g - m), PyTorch's lerp
        w *= 1.0 - b1
        m += w
        v *= b2
        w = into(work, xp.multiply, g, g)
        w *= 1.0 - b2
        v += w
        if not self.amsgrad:
            self._store(name, m=m, v=v)
            return self._divide_step(p, m, v, step, eps, work, xp)
        v_max = self._slot(name, "v_max", p, xp)
        v_max = into(None if work is None else v_max, xp.maximum, v_max, v)  # in place where xp writes out=
        self._store(name, m=m, v=v, v_max=v_max)
        return self._divide_step(p, m, v_max, step, eps, work, xp)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p -= lr * wd * p before the Adam step.

    As PyTorch's AdamW, the decay applies to every parameter by default (``weight_decay_on="all"``);
    ``weight_decay_on="weights"`` spares biases and BatchNorm's gamma/beta.
    """

    PYTORCH_ONLY = {**Adam.PYTORCH_ONLY, "decoupled_weight_decay": True}

    @keyword_hints("AdamW", _chainer.ADAM)
    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float | None = None,
                 weight_decay: float = 0.01, weight_decay_on: str = "all", convention: str = "pytorch", *,
                 amsgrad: bool = False):
        super().__init__(lr, betas, eps, weight_decay, weight_decay_on, convention, amsgrad=amsgrad)

    def _decay(self, p: Any, g: Any) -> tuple[Any, Any]:
        keep = self._per_step("adamw_decay", p, lambda lr, t: 1.0 - lr * self.weight_decay)
        if type(self)._update is not Adam._update:  # a subclass's own update: the decay here, as PyTorch's order
            p *= keep
            return p, g
        # p *= keep happens in Adam._update, which runs next for this parameter: there in one kernel with the Adam
        # step where a backend has one (adamw_update: CuPy's, Numba's), else first, as here above.
        self._keep = keep
        return p, g


def betas_pair(betas: Any, opt: Any, hint: str = "") -> tuple[float, float]:
    """``betas`` checked as PyTorch's: a pair (beta1, beta2), each in [0, 1); ``hint`` ends the message."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{opt.name}: betas must be a pair (beta1, beta2), got {betas!r}{hint}")
    return fraction("betas[0]", betas[0], opt), fraction("betas[1]", betas[1], opt)
