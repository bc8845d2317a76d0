"""``xn.optim.swa_utils``: PyTorch's weight averaging (``torch.optim.swa_utils``) for an xpnet model.

- ``AveragedModel(model, device=None, avg_fn=None, multi_avg_fn=None, use_buffers=False)``: a deep copy of
  ``model`` whose parameters are the running average of ``model``'s, updated by ``update_parameters(model)``;
  equal weights by default (SWA), ``multi_avg_fn=get_ema_multi_avg_fn(decay)`` for an exponential moving
  average (EMA); calling it runs the copy's forward;
- ``get_ema_multi_avg_fn``, ``get_swa_multi_avg_fn``, ``get_ema_avg_fn``, ``get_swa_avg_fn``: PyTorch's formulas;
- ``update_bn(loader, model)``: BatchNorm's running statistics recomputed by one pass over the data;
- ``SWALR(optimizer, swa_lr, anneal_epochs=10, anneal_strategy="cos")``: the lr annealed to ``swa_lr``, a
  scheduler of ``xn.optim.lr_scheduler``'s kind (``scheduler=`` in ``xn.train``, after the schedule before
  it in ``SequentialLR``).

In ``xn.train``, ``xn.callbacks.AveragedWeights(averaged, interval="epoch"|"step")`` updates it. Where xpnet
differs, for arrays that may not be written into (JAX): ``multi_avg_fn(averaged, current, n)`` returns the
new list (PyTorch's writes into the first); ``n_averaged`` is a Python int (PyTorch's a buffer tensor; the
averaged model's ``state_dict()`` holds it, as PyTorch's). SWALR's ``swa_lr`` is one number or a list of one
per param group, as PyTorch's.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import numpy as np

from .._user import flag, is_real
from ..backend import device as resolve_device, device_of, dtype_name, fast_path, namespace, to_device
from ..layers.container import mode
from ..layers.norm import BatchNorm
from ..layers.tree import Tree
from ..models.inputs import to_model_dtype
from ..models.model import Model
from .hyperparams import choice
from .lr_scheduler.base import LRScheduler, check_optimizer, count, per_group, rate

__all__ = ["AveragedModel", "update_bn", "SWALR", "get_ema_multi_avg_fn", "get_swa_multi_avg_fn", "get_ema_avg_fn",
           "get_swa_avg_fn"]


def _lerp(start: Any, end: Any, weight: float) -> Any:
    """PyTorch's lerp: ``start + weight * (end - start)``, written from ``end`` for weights >= 0.5 as its is."""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1.0 - weight)


def lerp_all(starts: list[Any], ends: list[Any], weight: float) -> list[Any]:
    """:func:`_lerp` of each pair, new arrays; on CuPy one kernel for up to 32 pairs (``"lerp_all"``)."""
    return [_lerp(a, c, weight) for a, c in zip(starts, ends)]


def copies(arrays: list[Any]) -> list[Any]:
    """A copy of each array (of one device); on CuPy one kernel for up to 32 float arrays (``"copies"``)."""
    return [to_device(a, device_of(a), copy=True) for a in arrays]


def _lerp_each(starts: list[Any], ends: list[Any], weight: float) -> list[Any]:
    """:func:`lerp_all` through the fast path of the arrays' namespace where there is one."""
    if not starts:
        return []
    return fast_path("lerp_all", namespace(starts[0]), lerp_all)(starts, ends, weight)


def _decay(who: str, decay: Any) -> float:
    if not is_real(decay) or not 0.0 <= decay <= 1.0:
        raise ValueError(f"{who}: decay must be a number in [0, 1], got {decay!r}")
    return float(decay)


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable[[list, list, int], list]:
    """EMA over all arrays at once: ``W_ema = decay * W_ema + (1 - decay) * W_model`` (PyTorch's lerp)."""
    decay = _decay("get_ema_multi_avg_fn", decay)
    return lambda averaged, current, n: _lerp_each(averaged, current, 1.0 - decay)


def get_swa_multi_avg_fn() -> Callable[[list, list, int], list]:
    """The equal average over all arrays at once: ``W_avg + (W_model - W_avg) / (n + 1)`` (PyTorch's lerp)."""
    return lambda averaged, current, n: _lerp_each(averaged, current, 1.0 / (n + 1))


def get_ema_avg_fn(decay: float = 0.999) -> Callable[[Any, Any, int], Any]:
    """EMA of one array: ``decay * W_ema + (1 - decay) * W_model``."""
    decay = _decay("get_ema_avg_fn", decay)
    return lambda averaged, current, n: decay * averaged + (1 - decay) * current


def get_swa_avg_fn() -> Callable[[Any, Any, int], Any]:
    """The equal average of one array: ``W_avg + (W_model - W_avg) / (n + 1)``."""
    return lambda averaged, current, n: averaged + (current - averaged) / (n + 1)


class AveragedModel(Model):
    """A copy of ``model`` (``self.module``) holding the running average of its parameters.

    ``update_parameters(model)`` copies them at the first call, then averages with ``avg_fn(averaged,
    current, n_averaged) -> array`` per array or ``multi_avg_fn(averaged_list, current_list, n_averaged) ->
    list``; neither given: the equal average. ``use_buffers=True`` averages the buffers (BatchNorm's
    running statistics) too; else they are copied from ``model`` at each update. ``device``: where the copy
    lives (None: where ``model`` is); ``model``'s arrays are copied there. Names as PyTorch's:
    ``"module.0.W"``; evaluate it with ``averaged.predict(x)`` or ``xn.evaluate(averaged, ...)``.
    """

    def __init__(self, model: Any, device: Any = None, avg_fn: Callable | None = None,
                 multi_avg_fn: Callable | None = None, use_buffers: bool = False):
        super().__init__()
        if not isinstance(model, Tree):
            raise TypeError(f"AveragedModel: model must be an xpnet model or layer, got {type(model).__name__}")
        if avg_fn is not None and multi_avg_fn is not None:
            raise ValueError("AveragedModel: avg_fn and multi_avg_fn both given; pass one of them (or neither: the "
                             "equal average)")
        for arg, fn in (("avg_fn", avg_fn), ("multi_avg_fn", multi_avg_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"AveragedModel: {arg} must be a function, got {type(fn).__name__}; e.g. "
                                f"{arg}=xn.optim.swa_utils.get_ema_{arg}(0.999)")
        self.use_buffers = flag(use_buffers, "AveragedModel", "use_buffers")
        self.module = copy.deepcopy(model)
        if device is not None:
            self.module.to(resolve_device(device))
        self.device_given = device is not None
        self.avg_fn, self.multi_avg_fn = avg_fn, multi_avg_fn
        self.n_averaged = 0

    def forward(self, *xs: Any, train: bool = True, **options: Any) -> Any:
        return self.module.forward(*xs, train=train, **options)

    def backward(self, dy: Any) -> Any:
        raise NotImplementedError("AveragedModel.backward: the average is not trained; train the model itself and "
                                  "call averaged.update_parameters(model) (xn.callbacks.AveragedWeights in xn.train)")

    def check_like(self, model: Any, who: str = "AveragedModel.update_parameters") -> None:
        """Raise a ValueError unless ``model`` holds the arrays of the copy: the same names, shapes and dtypes."""
        own = self.module.state()
        theirs = model.state() if isinstance(model, Tree) else None
        if theirs is None:
            raise TypeError(f"{who}: expected the xpnet model the average was made from, got {type(model).__name__}")
        for name, a in own.items():
            b = theirs.get(name)
            if b is None or tuple(b.shape) != tuple(a.shape) or dtype_name(b) != dtype_name(a):
                got = "none" if b is None else f"{tuple(b.shape)} {dtype_name(b)}"
                raise ValueError(f"{who}: the average holds {name!r} {tuple(a.shape)} {dtype_name(a)}, the model "
                                 f"{got}; pass the model AveragedModel(model) was made from")
        extra = [name for name in theirs if name not in own]
        if extra:
            raise ValueError(f"{who}: the model has {extra} that the average has not; pass the model "
                             "AveragedModel(model) was made from")

    def update_parameters(self, model: Any) -> None:
        """Average ``model``'s parameters (and buffers, ``use_buffers=True``) into the copy's."""
        self.check_like(model)
        dev = self.module.device
        names = list(self.module.state() if self.use_buffers else self.module.named_params())
        theirs = model.state()
        if self.n_averaged == 0:
            new = [to_device(theirs[k], dev, copy=True) for k in names]
        else:
            # The model's own arrays where they are on the average's device: the averaging functions make new
            # arrays (one that hands back the model's array itself is copied below), so no copy a step of each.
            own, current = self.module.state(), [to_device(theirs[k], dev) for k in names]
            if self.avg_fn is not None:
                new = [self.avg_fn(own[k], c, self.n_averaged) for k, c in zip(names, current)]
            else:
                average = self.multi_avg_fn or get_swa_multi_avg_fn()
                new = list(average([own[k] for k in names], current, self.n_averaged))
            models = {id(c) for c in current}
            new = [to_device(v, dev, copy=True) if id(v) in models else v for v in new]
        for k, v in zip(names, new):
            self.module.set_param(k, v)
        if not self.use_buffers:
            buffers = list(self.module.named_buffers())
            here = [theirs[k] for k in buffers]
            if here and all(device_of(a) == dev for a in here):  # the model's own device: one call for all
                made = fast_path("copies", namespace(here[0]), copies)(here)
            else:
                made = [to_device(a, dev, copy=True) for a in here]
            for k, v in zip(buffers, made):
                self.module.set_param(k, v)
        self.n_averaged += 1

    def state_dict(self) -> dict[str, Any]:
        """The copy's arrays (``"module.0.W"``) and ``"n_averaged"``, as PyTorch's."""
        return {**super().state_dict(), "n_averaged": np.asarray(self.n_averaged, dtype=np.int64)}

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> Any:
        state = dict(state_dict) if isinstance(state_dict, dict) else state_dict
        n = state.pop("n_averaged", None) if isinstance(state, dict) else None
        if strict and n is None:
            raise ValueError("AveragedModel.load_state_dict: missing key 'n_averaged' (from averaged.state_dict())")
        result = super().load_state_dict(state, strict)
        if n is not None:
            self.n_averaged = int(n)
        return result


def update_bn(loader: Any, model: Any, device: Any = None) -> None:
    """Recompute the running statistics of every BatchNorm of ``model`` by one pass over ``loader`` in
    training mode, each batch weighted equally (PyTorch's ``momentum=None``); momenta and modes are put back.

    ``loader`` yields arrays, or tuples whose first item is the input (``xn.datasets.BatchIterator``, a list
    of ``(x, y)``); each is moved to ``device`` (None: the model's) in the model's dtype.
    """
    if not isinstance(model, Tree):
        raise TypeError(f"update_bn: model must be an xpnet model, got {type(model).__name__} (PyTorch's order: "
                        "update_bn(loader, model))")
    if hasattr(loader, "shape"):
        raise TypeError("update_bn: loader is one array; pass batches, e.g. xn.datasets.BatchIterator(x, "
                        "batch_size=128) or [x] for one batch")
    layers = [m for m in model.named_modules().values() if isinstance(m, BatchNorm) and m.track_running_stats]
    if not layers:
        return
    momenta = {bn: bn.momentum for bn in layers}
    for bn in layers:  # PyTorch's reset_running_stats (the book's running_var starts at 0)
        xp = namespace(bn.buffers["running_var"])
        for key, v in bn.buffers.items():
            start = key == "running_var" and bn.convention == "pytorch"
            bn.buffers[key] = xp.ones_like(v) if start else xp.zeros_like(v)
    dev = model.device if device is None else resolve_device(device)
    try:
        with mode(model, True):
            for k, batch in enumerate(loader, start=1):
                x = batch[0] if isinstance(batch, (list, tuple)) else batch
                for bn, m in momenta.items():  # batch k weighs 1/k: the cumulative average
                    if m is not None:
                        bn.momentum = 1.0 / k if bn.convention == "pytorch" else 1.0 - 1.0 / k
                model.forward(to_model_dtype(x, dev, model.dtype), train=True)
    finally:
        for bn, m in momenta.items():
            bn.momentum = m


class SWALR(LRScheduler):
    """PyTorch's SWALR: the lr goes from its value when the annealing starts to ``swa_lr`` over
    ``anneal_epochs`` steps (``"cos"`` or ``"linear"``; 0: at the first step), then stays there.

    PyTorch's formula step by step: each step recovers the lr before annealing from the current one, so it
    takes over from whatever schedule set it: stepped by hand after the epochs past ``swa_start`` (PyTorch's
    recipe), or in ``xn.train``, ``scheduler=SequentialLR(opt, [CosineAnnealingLR(opt, T_max=...), SWALR(opt,
    swa_lr=0.05)], milestones=[swa_start + 1])``. ``swa_lr``: one number, or a list of one per param group
    (kept as ``swa_lrs``; PyTorch keeps them in the groups).
    """

    def __init__(self, optimizer: Any, swa_lr: float, anneal_epochs: int = 10, anneal_strategy: str = "cos",
                 last_epoch: int = -1):
        self.swa_lrs = per_group("SWALR", "swa_lr", swa_lr, check_optimizer("SWALR", optimizer),
                                 lambda arg, v: rate("SWALR", arg, v))
        self._anneal_strategy = choice("anneal_strategy", anneal_strategy, ("cos", "linear"), self)
        self.anneal_epochs = count("SWALR", "anneal_epochs", anneal_epochs, lo=0)
        super().__init__(optimizer, last_epoch)

    def anneal_func(self, t: float) -> float:
        """The share of ``swa_lr`` at fraction ``t`` of the annealing."""
        return (1 - math.cos(math.pi * t)) / 2 if self._anneal_strategy == "cos" else t

    def get_lr(self) -> list[float]:
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        prev_alpha = self.anneal_func(max(0, min(1, (step - 1) / max(1, self.anneal_epochs))))
        prev_lrs = [swa_lr if prev_alpha == 1 else (lr - prev_alpha * swa_lr) / (1 - prev_alpha)
                    for lr, swa_lr in zip(self._lrs(), self.swa_lrs)]
        alpha = self.anneal_func(max(0, min(1, step / max(1, self.anneal_epochs))))
        return [swa_lr * alpha + lr * (1 - alpha) for lr, swa_lr in zip(prev_lrs, self.swa_lrs)]
