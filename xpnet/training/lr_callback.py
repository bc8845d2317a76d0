"""The callbacks that set the learning rate in ``xn.train``: ``xn.callbacks.LRScheduler``, a scheduler of
:mod:`xpnet.optim.lr_scheduler` stepped after each epoch (as PyTorch loops and Lightning's ``interval="epoch"``
do) or after each batch (``interval="step"``, the warm-ups of Transformers; ``xn.train(..., scheduler=s)`` is
``callbacks=[LRScheduler(s)]``); and ``xn.callbacks.LearningRateSchedule``, the lr of each epoch as a function
of it (:func:`step` and :func:`cosine` build common ones)."""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any, Callable

from .._user import is_real
from ..optim.lr_scheduler import LRScheduler as _Scheduler, ReduceLROnPlateau
from .callbacks import KERAS_MONITORS, Callback, _Monitor, interval_arg

__all__ = ["LRScheduler", "as_callback", "LearningRateSchedule", "step", "cosine"]


class LRScheduler(Callback):
    """Step ``scheduler`` after each epoch (``interval="epoch"``) or each batch (``interval="step"``), after
    the optimizer's update, as ``scheduler.step()`` in a PyTorch loop; ReduceLROnPlateau steps after each epoch
    with the log's ``monitor`` (``val_loss`` by default; Keras' names such as ``"loss"`` taken). A full
    checkpoint keeps the scheduler's state after the last complete epoch: a resumed run gets the lrs of the
    uninterrupted one."""

    def __init__(self, scheduler: Any, interval: str = "epoch", monitor: str = "val_loss"):
        if not isinstance(scheduler, (_Scheduler, ReduceLROnPlateau)):
            raise TypeError(f"LRScheduler: scheduler must be one of xn.optim.lr_scheduler's, e.g. "
                            f"xn.optim.lr_scheduler.StepLR(optimizer, step_size=30), got {type(scheduler).__name__}")
        interval_arg("LRScheduler", interval)
        self.plateau = isinstance(scheduler, ReduceLROnPlateau)
        if self.plateau and interval == "step":
            raise ValueError("LRScheduler: ReduceLROnPlateau reads an epoch's log, interval must be 'epoch'")
        self.scheduler, self.interval = scheduler, interval
        self._monitor = _Monitor("LRScheduler", KERAS_MONITORS.get(monitor, monitor), "auto") if self.plateau \
            else None
        self._saved: dict[str, Any] = {}

    def on_train_begin(self, state: Any) -> None:
        super().on_train_begin(state)
        if self.scheduler.optimizer is not state.optimizer:
            raise ValueError("LRScheduler: the scheduler sets the lr of another optimizer than the one xn.train "
                             "updates; build it on the optimizer you pass: opt = xn.optim.SGD(0.1); "
                             "xn.train(..., optimizer=opt, scheduler=StepLR(opt, 30))")
        if getattr(self.scheduler, "cycle_momentum", False) and getattr(state, "captured", False):
            raise ValueError(f"LRScheduler: {type(self.scheduler).__name__}'s cycle_momentum changes the momentum, "
                             "which a captured CUDA-graph step keeps as it was captured; pass cycle_momentum=False "
                             "or graph=False")
        if self._monitor is not None:
            self._monitor.check_available(state)
        self._saved = copy.deepcopy(self.scheduler.state_dict())

    def on_train_batch_end(self, batch: int) -> None:
        if self.interval == "step":
            self.scheduler.step()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.plateau:
            self.scheduler.step(self._monitor.value(logs))
        elif self.interval == "epoch":
            self.scheduler.step()
        self._saved = copy.deepcopy(self.scheduler.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self._saved}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(copy.deepcopy(state["scheduler"]))
        self._saved = copy.deepcopy(state["scheduler"])


def as_callback(scheduler: Any) -> LRScheduler:
    """``xn.train``'s ``scheduler=``: a scheduler, stepped per epoch, or an :class:`LRScheduler` as it is."""
    return scheduler if isinstance(scheduler, LRScheduler) else LRScheduler(scheduler)


class LearningRateSchedule(Callback):
    """Set ``optimizer.lr = schedule(i)`` before each epoch, ``i`` the 0-based epoch index: epoch 1 runs
    at ``schedule(0)``, as with PyTorch's schedulers (StepLR, CosineAnnealingLR, LambdaLR) and Keras'
    LearningRateScheduler.

    ``schedule`` is any callable of ``i`` alone returning a finite lr >= 0 (0 included, as PyTorch's
    LambdaLR allows: a warm-up from 0); :func:`step` and :func:`cosine` build common ones. Keras'
    ``schedule(epoch, lr)``, which scales the current lr, is refused when built: a resumed run would
    scale another lr than the uninterrupted one did; write the lr as a function of the epoch.

    With several param groups ``schedule(i)`` is the first group's lr (``optimizer.lr``) and every group keeps its
    ratio to it: a group's lr is its initial lr times ``schedule(i)`` over the first group's initial lr, as
    PyTorch's ``LambdaLR(optimizer, lambda i: schedule(i) / first_initial_lr)`` sets each group's initial lr times
    the factor. The initial lrs are each group's ``initial_lr`` (set by a scheduler built earlier, or kept by a
    checkpoint), else its lr when training begins, recorded then as ``initial_lr``; a first group's of 0 is
    refused (give each group its own lambda: ``xn.callbacks.LRScheduler(LambdaLR(optimizer, [f0, f1]))``).
    """

    def __init__(self, schedule: Callable[[int], float]):
        if not callable(schedule):
            raise TypeError(f"LearningRateSchedule: schedule must be a callable epoch -> lr, got {schedule!r}")
        try:
            signature = inspect.signature(schedule)
        except (TypeError, ValueError):  # a builtin without one: taken as it is
            signature = None
        if signature is not None:
            try:
                signature.bind(0)
            except TypeError:
                raise TypeError(f"LearningRateSchedule: schedule must be a function schedule(i) of the 0-based "
                                f"epoch index alone, got one taking {signature}; Keras' schedule(epoch, lr) "
                                "scales the current lr, here write the lr itself, e.g. lambda i: 0.1 * 0.9 ** i "
                                "(or xn.callbacks.step, cosine)") from None
        self.schedule = schedule

    def on_train_begin(self, state: Any) -> None:
        super().on_train_begin(state)
        groups = state.optimizer.param_groups
        if len(groups) > 1:
            for group in groups:
                group.setdefault("initial_lr", group["lr"])
            if groups[0]["initial_lr"] == 0:
                raise ValueError(f"LearningRateSchedule: the first of the {len(groups)} param groups has an initial "
                                 "lr of 0, and schedule(i) sets each group's lr in proportion to it; give each "
                                 "group its own lambda of the epoch: callbacks=[xn.callbacks.LRScheduler("
                                 "xn.optim.lr_scheduler.LambdaLR(optimizer, [f0, f1, ...]))]")

    def on_epoch_begin(self, epoch: int) -> None:
        lr = self.schedule(epoch - 1)
        if not is_real(lr) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"LearningRateSchedule: schedule({epoch - 1}) returned {lr!r}; expected a "
                             "finite number >= 0")
        groups = self.state.optimizer.param_groups
        if len(groups) == 1:
            self.state.optimizer.lr = float(lr)
            return
        first = groups[0]["initial_lr"]
        for group in groups:  # the first group's is float(lr) exactly (times 1.0)
            group["lr"] = float(lr) * (group["initial_lr"] / first)


def step(lr: float, step_size: int, gamma: float = 0.1) -> Callable[[int], float]:
    """``lr * gamma ** (i // step_size)``: multiply by ``gamma`` every ``step_size`` epochs (PyTorch's
    ``StepLR``: with step_size=10, epochs 1 to 10 run at ``lr``, epoch 11 at ``lr * gamma``)."""
    if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
        raise ValueError(f"step: step_size must be an int >= 1, got {step_size!r}")
    _rate("step", allow_zero=True, lr=lr)
    _rate("step", gamma=gamma)
    return lambda i: lr * gamma ** (i // step_size)


def cosine(lr: float, epochs: int, min_lr: float = 0.0) -> Callable[[int], float]:
    """Cosine annealing from ``lr`` (index 0, the first epoch) towards ``min_lr``, reached at index
    ``epochs`` (PyTorch's ``CosineAnnealingLR(T_max=epochs, eta_min=min_lr)``: over ``epochs`` epochs
    the last one runs just above ``min_lr``); after it the lr stays at ``min_lr``, where PyTorch's
    rises again.

    ``lr`` and ``min_lr`` are finite numbers >= 0, as every learning rate.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"cosine: epochs must be an int >= 1, got {epochs!r}")
    _rate("cosine", allow_zero=True, lr=lr, min_lr=min_lr)
    return lambda i: min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(i, epochs) / epochs))


def _rate(who: str, allow_zero: bool = False, **values: Any) -> None:
    """Each of ``values`` is a finite number > 0 (>= 0 with ``allow_zero``), else a ValueError naming it."""
    for arg, v in values.items():
        if not is_real(v) or not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
            raise ValueError(f"{who}: {arg} must be a finite number {'>=' if allow_zero else '>'} 0, got {v!r}")
