"""Optimizers: one shared ``step(model)`` around a small per-optimizer ``_update``.

Parameters are updated on their device under xpnet's one update rule
(:func:`xpnet.backend.update_rule`): ``_update`` writes ``p -= u`` (in place on NumPy, CuPy and
PyTorch; a new array on JAX, whose arrays are immutable) and returns ``p``, which ``step`` stores
back in the model; updated state goes back with ``_store``. State (velocities, moments) is made
lazily with ``zeros_like(param)``, so it lives on the parameter's device and dtype. Where the namespace
can write into ``out=`` (NumPy, CuPy) the multi-pass updates reuse one work buffer instead of
making a temporary per operation (:func:`xpnet.backend.into`); the arithmetic is the same. On
CuPy, SGD, Momentum and Adam(W) run as one fused kernel per parameter (``xpnet.backend.fast_cupy``).

``weight_decay`` on every optimizer is the book's L2 (MultiLayerNet's ``weight_decay_lambda``):
``lambda * W`` is added to the gradient of each weight ``W`` (Linear and Conv2d), never to biases
or BatchNorm's gamma/beta, unless ``weight_decay_on="all"`` (PyTorch's default: every parameter
the optimizer updates). AdamW decays decoupled from the gradient instead.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

from ._user import is_real
from .backend import fast_path, into, namespace, same_device, to_device, update_rule, writes_out


class Optimizer:
    """Base class. ``step(model)`` checks every gradient (and that the arrays can be updated) first,
    then updates every parameter, so a bad gradient leaves the model untouched. ``weight_decay``
    (default 0) is the book's L2 on weights only; ``weight_decay_on="all"`` decays every parameter,
    as PyTorch."""

    def __init__(self, lr: float, weight_decay: float = 0.0, weight_decay_on: str = "weights"):
        self.lr = _positive("lr", lr, self)
        self.weight_decay = _positive("weight_decay", weight_decay, self, allow_zero=True)
        self.weight_decay_on = _choice("weight_decay_on", weight_decay_on, ("weights", "all"), self)
        self.state: dict[str, dict[str, Any]] = {}
        self.t = 0
        self._model: Any = None  # a weak reference to the bound model (or the model, if it takes none)
        self._work_buffers: dict[Any, Any] = {}

    @property
    def name(self) -> str:
        return type(self).__name__

    def hyperparams(self) -> dict[str, Any]:
        return {"lr": self.lr, "weight_decay": self.weight_decay, "weight_decay_on": self.weight_decay_on}

    def __repr__(self) -> str:
        """``Adam(lr=0.001, betas=(0.9, 0.999), ..., weight_decay=0.0, ...)``: lr, then the optimizer's own
        settings, then those every optimizer has."""
        settings = self.hyperparams()
        shared = Optimizer.hyperparams(self)
        order = ["lr", *(k for k in settings if k not in shared), *(k for k in shared if k != "lr")]
        return f"{self.name}({', '.join(f'{k}={settings[k]!r}' for k in order)})"

    def bind(self, model: Any) -> None:
        """Tie this optimizer to ``model`` (done by the first ``step``); another model then raises, also
        one made after the bound one was freed (a new object can reuse a freed one's ``id``)."""
        if self._model is not None:
            bound = self._model() if isinstance(self._model, weakref.ref) else self._model
            if bound is not model:
                raise ValueError(f"{self.name}: this optimizer is bound to another model; make one optimizer per model")
            return
        try:
            self._model = weakref.ref(model)
        except TypeError:  # a model class with __slots__ and no __weakref__
            self._model = model

    def step(self, model: Any) -> None:
        self.bind(model)
        params, grads = model.named_params(), model.named_grads()
        for name, p in params.items():
            g = grads.get(name)
            if g is None:
                raise RuntimeError(f"{self.name}: no gradient for {name!r}; call model.backward(...) before step")
            if not same_device(p, g) or tuple(g.shape) != tuple(p.shape) or g.dtype != p.dtype:
                raise ValueError(f"{self.name}: gradient of {name!r} does not match its parameter "
                                 f"(shape {tuple(g.shape)} vs {tuple(p.shape)}, dtype {g.dtype} vs {p.dtype})")
            update_rule(namespace(p))
        self.t += 1
        for name, p in params.items():
            g = grads[name]
            new = p
            if self.weight_decay and self._decays(name):
                new, g = self._decay(new, g)
            new = self._update(name, new, g, namespace(p))
            if new is not p:  # an immutable namespace (JAX) made a new array: store it in the model
                model.set_param(name, new)

    def _decays(self, name: str) -> bool:
        """Whether ``weight_decay`` applies to the parameter ``name`` ("0.W", "3.b", ...)."""
        return self.weight_decay_on == "all" or name.rpartition(".")[2] == "W"

    def _decay(self, p: Any, g: Any) -> tuple[Any, Any]:
        """(p, g) after weight decay. L2: the gradient of 0.5 * weight_decay * sum(p**2) added to ``g``
        (a new array); AdamW shrinks ``p`` instead."""
        return p, g + self.weight_decay * p

    def _slot(self, name: str, key: str, p: Any, xp: Any) -> Any:
        slots = self.state.setdefault(name, {})
        if key not in slots:
            slots[key] = xp.zeros_like(p)
        return slots[key]

    def _work(self, p: Any, xp: Any) -> Any:
        """A scratch array shaped like ``p``, a view of one flat buffer per dtype and device shared by
        all parameters (only one update runs at a time), or None where ``xp`` has no ``out=``.
        Never checkpointed."""
        if not writes_out(xp):
            return None
        # str: CuPy's device object compares by id but cannot be hashed (it defines __eq__, no __hash__).
        key = (type(p), p.dtype, str(getattr(p, "device", None)))
        buf = self._work_buffers.get(key)
        if buf is None or buf.shape[0] < p.size:
            buf = self._work_buffers[key] = xp.empty_like(xp.reshape(p, (-1,)))
        return xp.reshape(buf[:p.size], p.shape)

    def _store(self, name: str, **slots: Any) -> None:
        """Keep the updated state of parameter ``name`` (the same arrays, where updated in place)."""
        self.state[name].update(slots)

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        """The updated ``p`` (``p`` itself where the namespace updates in place)."""
        raise NotImplementedError

    @staticmethod
    def _divide_step(p: Any, num: Any, den: Any, lr: float, eps: float, work: Any, xp: Any) -> Any:
        """p -= lr * num / (sqrt(den) + eps), through ``work`` (None: temporaries); returns p."""
        w = into(work, xp.sqrt, den)
        w += eps
        w = into(work, xp.divide, num, w)
        w *= lr
        p -= w
        return p

    # -- checkpointing ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters, step count and per-parameter state (arrays stay on their device)."""
        return {"type": self.name, "hyperparams": self.hyperparams(), "t": self.t,
                "state": {n: dict(s) for n, s in self.state.items()}}

    def load_state_dict(self, sd: dict[str, Any], device: Any = None) -> None:
        if sd.get("type") != self.name:
            raise ValueError(f"{self.name}: cannot load the state of a {sd.get('type')} optimizer")
        for k, v in sd["hyperparams"].items():
            setattr(self, k, tuple(v) if isinstance(v, list) else v)
        self.t = int(sd["t"])
        self._work_buffers = {}
        self.state = {n: {k: (to_device(v, device) if device is not None else v) for k, v in s.items()}
                      for n, s in sd["state"].items()}

    def to(self, device: Any) -> "Optimizer":
        """Move the optimizer state to ``device`` (with the model)."""
        self._work_buffers = {}
        self.state = {n: {k: to_device(v, device) for k, v in s.items()} for n, s in self.state.items()}
        return self


def _positive(arg: str, v: Any, opt: Any, allow_zero: bool = False) -> float:
    if not is_real(v) or not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{type(opt).__name__}: {arg} must be a finite number {bound}, got {v!r}")
    return float(v)


def _fraction(arg: str, v: Any, opt: Any) -> float:
    if not is_real(v) or not 0.0 <= v < 1.0:
        raise ValueError(f"{type(opt).__name__}: {arg} must be in [0, 1), got {v!r}")
    return float(v)


def _choice(arg: str, v: Any, choices: tuple[str, ...], opt: Any) -> str:
    if v not in choices:
        raise ValueError(f"{type(opt).__name__}: {arg} must be one of {', '.join(map(repr, choices))}, got {v!r}")
    return v


class SGD(Optimizer):
    """p -= lr * g (g with ``weight_decay * W`` added for weights, as the book's MultiLayerNet)."""

    def __init__(self, lr: float = 0.01, weight_decay: float = 0.0, weight_decay_on: str = "weights"):
        super().__init__(lr, weight_decay, weight_decay_on)

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        fused = fast_path("sgd_update", xp)
        if fused is not None:
            fused(p, g, self.lr)
            return p
        p -= self.lr * g
        return p


class Momentum(Optimizer):
    """v = momentum * v - lr * g; p += v (the book's Momentum)."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0,
                 weight_decay_on: str = "weights"):
        super().__init__(lr, weight_decay, weight_decay_on)
        self.momentum = _fraction("momentum", momentum, self)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "momentum": self.momentum}

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        v = self._slot(name, "v", p, xp)
        fused = fast_path("momentum_update", xp)
        if fused is not None:
            fused(p, g, v, self.lr, self.momentum)
            return p
        v *= self.momentum
        v -= self.lr * g
        self._store(name, v=v)
        p += v
        return p


class Nesterov(Momentum):
    """Nesterov momentum (as PyTorch's SGD(nesterov=True)): v = m*v + g; p -= lr * (g + m*v)."""

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        v = self._slot(name, "v", p, xp)
        v *= self.momentum
        v += g
        self._store(name, v=v)
        w = self.momentum * v
        w += g
        w *= self.lr
        p -= w
        return p


class AdaGrad(Optimizer):
    """h += g*g; p -= lr * g / (sqrt(h) + eps)."""

    def __init__(self, lr: float = 0.01, eps: float = 1e-7, weight_decay: float = 0.0,
                 weight_decay_on: str = "weights"):
        super().__init__(lr, weight_decay, weight_decay_on)
        self.eps = _positive("eps", eps, self)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "eps": self.eps}

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        h, work = self._slot(name, "h", p, xp), self._work(p, xp)
        h += into(work, xp.multiply, g, g)
        self._store(name, h=h)
        return self._divide_step(p, g, h, self.lr, self.eps, work, xp)


class RMSprop(Optimizer):
    """h = alpha*h + (1-alpha)*g*g; p -= lr * g / (sqrt(h) + eps)."""

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 weight_decay_on: str = "weights"):
        super().__init__(lr, weight_decay, weight_decay_on)
        self.alpha = _fraction("alpha", alpha, self)
        self.eps = _positive("eps", eps, self)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "alpha": self.alpha, "eps": self.eps}

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        h, work = self._slot(name, "h", p, xp), self._work(p, xp)
        h *= self.alpha
        w = into(work, xp.multiply, g, g)
        w *= 1.0 - self.alpha
        h += w
        self._store(name, h=h)
        return self._divide_step(p, g, h, self.lr, self.eps, work, xp)


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba); ``weight_decay`` adds L2 to the weights' gradients.

    m += (1 - b1) * (g - m); v = b2 * v + (1 - b2) * g * g;
    p -= lr_t * m / (sqrt(v) + eps_t) with lr_t = lr * sqrt(1 - b2**t) / (1 - b1**t).

    ``convention="pytorch"`` (the default, as PyTorch and the paper) adds eps to the bias-corrected
    sqrt(v_hat): eps_t = eps * sqrt(1 - b2**t); ``eps`` defaults to 1e-8. ``convention="book"`` is the
    book's common/optimizer.py Adam: eps added to the raw sqrt(v), eps_t = eps, default 1e-7. The two
    differ only in the first steps and where v is tiny.
    """

    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float | None = None,
                 weight_decay: float = 0.0, weight_decay_on: str = "weights", convention: str = "pytorch"):
        super().__init__(lr, weight_decay, weight_decay_on)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{self.name}: betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_fraction("betas[0]", betas[0], self), _fraction("betas[1]", betas[1], self))
        self.convention = _choice("convention", convention, ("pytorch", "book"), self)
        self.eps = _positive("eps", (1e-7 if convention == "book" else 1e-8) if eps is None else eps, self)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "betas": tuple(self.betas), "eps": self.eps, "convention": self.convention}

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        b1, b2 = self.betas
        m, v = self._slot(name, "m", p, xp), self._slot(name, "v", p, xp)
        # Bias correction folded into the step size (and, PyTorch's way, into eps): lr * m_hat / (sqrt(v_hat) + eps).
        correction = math.sqrt(1.0 - b2 ** self.t)
        step = self.lr * correction / (1.0 - b1 ** self.t)
        eps = self.eps if self.convention == "book" else self.eps * correction
        fused = fast_path("adam_update", xp)
        if fused is not None:
            fused(p, g, m, v, b1, b2, step, eps)
            return p
        work = self._work(p, xp)
        w = into(work, xp.subtract, g, m)  # m += (1 - b1) * (g - m), PyTorch's lerp
        w *= 1.0 - b1
        m += w
        v *= b2
        w = into(work, xp.multiply, g, g)
        w *= 1.0 - b2
        v += w
        self._store(name, m=m, v=v)
        return self._divide_step(p, m, v, step, eps, work, xp)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p -= lr * wd * p before the Adam step.

    As PyTorch's AdamW, the decay applies to every parameter by default (``weight_decay_on="all"``);
    ``weight_decay_on="weights"`` spares biases and BatchNorm's gamma/beta.
    """

    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float | None = None,
                 weight_decay: float = 0.01, weight_decay_on: str = "all", convention: str = "pytorch"):
        super().__init__(lr, betas, eps, weight_decay, weight_decay_on, convention)

    def _decay(self, p: Any, g: Any) -> tuple[Any, Any]:
        p *= 1.0 - self.lr * self.weight_decay
        return p, g


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}


def get(optimizer: Any) -> Optimizer:
    """An optimizer from an instance, a class or a name such as ``"adam"`` (with its default lr)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, type) and issubclass(optimizer, Optimizer):
        return optimizer()
    if isinstance(optimizer, str):
        if optimizer.lower() in OPTIMIZERS:
            return OPTIMIZERS[optimizer.lower()]()
        raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    raise TypeError(f"optimizer: expected an xpnet optimizer (e.g. xn.optim.Adam(1e-3)) or its name, got "
                    f"{type(optimizer).__name__}")
