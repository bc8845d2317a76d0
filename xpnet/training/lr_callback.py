"""``xn.callbacks.LRScheduler``: a scheduler of :mod:`xpnet.optim.lr_scheduler` stepped by ``xn.train``,
after each epoch (as PyTorch loops and Lightning's ``interval="epoch"`` do) or after each batch
(``interval="step"``, the warm-ups of Transformers). ``xn.train(..., scheduler=s)`` is
``callbacks=[LRScheduler(s)]``."""

from __future__ import annotations

import copy
from typing import Any

from ..optim.lr_scheduler import LRScheduler as _Scheduler, ReduceLROnPlateau
from .callbacks import KERAS_MONITORS, Callback, _Monitor, interval_arg

__all__ = ["LRScheduler", "as_callback"]


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
            raise ValueError("LRScheduler: OneCycleLR's cycle_momentum changes the momentum, which a captured "
                             "CUDA-graph step keeps as it was captured; pass cycle_momentum=False or graph=False")
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
