"""``xn.callbacks.AveragedWeights``: an :class:`~xpnet.optim.swa_utils.AveragedModel` updated by ``xn.train``
after each epoch (SWA, as PyTorch's example) or after each step (``interval="step"``: the EMA of YOLO, diffusion
models and ViTs)."""

from __future__ import annotations

from typing import Any, Callable

from .._user import is_int
from ..backend import fast_path, namespace
from ..optim.swa_utils import AveragedModel, copies
from .callbacks import Callback, interval_arg

__all__ = ["AveragedWeights"]


class AveragedWeights(Callback):
    """Call ``averaged.update_parameters(model)`` after each epoch (``interval="epoch"``) or each step
    (``interval="step"``), from epoch ``start`` on (1-based: PyTorch's ``if epoch > swa_start`` over 0-based
    epochs is ``start=swa_start + 2``).

    ``averaged`` is moved to the device ``xn.train`` trains on, unless it was made with ``device=``. A full
    checkpoint keeps the average and ``n_averaged`` after the last complete epoch: a resumed run averages
    as the uninterrupted one. Evaluate with ``averaged.predict(x)`` or ``xn.evaluate(averaged, ...)``; with
    BatchNorm and ``use_buffers=False``, first ``xn.optim.swa_utils.update_bn(batches, averaged)``.
    """

    def __init__(self, averaged: Any, interval: str = "epoch", start: int = 1):
        if not isinstance(averaged, AveragedModel):
            raise TypeError(f"AveragedWeights: averaged must be an xn.optim.swa_utils.AveragedModel, e.g. "
                            f"AveragedWeights(AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999)), "
                            f"interval='step'), got {type(averaged).__name__}")
        interval_arg("AveragedWeights", interval)
        if not is_int(start) or start < 1:
            raise ValueError(f"AveragedWeights: start must be an int >= 1 (the first epoch averaged), got {start!r}")
        self.averaged, self.interval, self.start = averaged, interval, int(start)
        self._saved: dict[str, Any] = {}

    def on_train_begin(self, state: Any) -> None:
        super().on_train_begin(state)
        self.averaged.check_like(state.model, "AveragedWeights")
        if not self.averaged.device_given:
            self.averaged.to(state.device)
        self._save()

    def _before_run(self) -> Callable[[], None]:
        """A function putting the average back as it is now (its arrays, their device, ``n_averaged``) with this
        callback's saved state, for :class:`xpnet.training.resume.BeforeResume`: a resumed run refused after
        ``on_train_begin`` moved the average to the training device leaves it where the user had it."""
        averaged, kept = self.averaged, self._saved
        arrays, device, n = dict(averaged.module.state()), averaged.module.device, averaged.n_averaged

        def put_back() -> None:
            for name, v in arrays.items():
                averaged.module.set_param(name, v)
            if device is not None:
                averaged.module.to(device)
            averaged.n_averaged, self._saved = n, kept

        return put_back

    def on_train_batch_end(self, batch: int) -> None:
        # state.epoch counts the epochs completed: the one running is the next
        if self.interval == "step" and self.state.epoch + 1 >= self.start:
            self.averaged.update_parameters(self.state.model)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.interval == "epoch" and epoch >= self.start:
            self.averaged.update_parameters(self.state.model)
        self._save()

    def state_dict(self) -> dict[str, Any]:
        return dict(self._saved)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = state.get("n_averaged")
        if not is_int(n) or n < 0 or not isinstance(state.get("average"), dict):
            raise ValueError(f"AveragedWeights: expected {{'n_averaged': int >= 0, 'average': arrays}}, got "
                             f"n_averaged={n!r}")
        self.averaged.module.load_state_dict(state["average"])
        self.averaged.n_averaged = int(n)
        self._save()

    def _save(self) -> None:
        """The state after the last complete epoch (SIGTERM within an epoch writes that one), as device copies."""
        state = self.averaged.module.state()
        arrays = list(state.values())
        copied = fast_path("copies", namespace(arrays[0]), copies)(arrays) if arrays else []
        average = dict(zip(state, copied))
        self._saved = {"n_averaged": self.averaged.n_averaged, "average": average}
