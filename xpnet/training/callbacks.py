"""Callbacks for ``xn.train``: early stopping, checkpoints (learning-rate schedules: ``lr_callback``).

A callback subclasses :class:`Callback` and overrides the hooks it needs. Before ``on_train_begin``
``xn.train`` sets ``self.state``, the trainer's state (``model``, ``optimizer``, ``history``, ``device``,
``comm``, ``is_root``, ``has_validation``, ``logged`` (the figures each epoch's log holds), ``epoch``,
``epochs``, ``save_checkpoint(path)``, ``barrier()``), which ``on_train_begin`` also receives (an override
need not call super); the epoch hooks get the 1-based epoch number and, at the end, that epoch's log (the
dict appended to ``History.epochs``; a callback may add its own figures to it: numbers, NumPy scalars,
strings, which a full checkpoint keeps as JSON); ``on_train_batch_end(batch)`` (Keras' name), where a callback
overrides it, runs after each update with the 0-based step of the epoch. Setting ``self.stop_training = True`` ends
training after the current epoch; each run starts with it False (a callback object may serve several runs).

A callback with state that a resumed run needs returns it from ``state_dict()`` (JSON values, and
model states ``{name: array}``) and takes it back in ``load_state_dict(state)``, called after
``on_train_begin``; full checkpoints carry it. At the end of an epoch ModelCheckpoint runs after
the other callbacks (:func:`epoch_end_order`), so a checkpoint holds their state after that epoch.
Where the NaN guard replays an epoch (:mod:`xpnet.training.guard`), a callback with an
``on_train_batch_end`` first gets back the ``state_dict()`` it gave at the epoch's start, then the hook
runs again after each replayed update.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .._user import did_you_mean, flag, is_real, warn
from ..backend import namespace, to_device
from ..io.paths import XpnetFileError, fspath, save_target
from ..models.files import architecture

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "epoch_end_order"]

MONITORS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "train_perplexity", "val_perplexity")
KERAS_MONITORS = {"loss": "train_loss", "accuracy": "train_accuracy", "acc": "train_accuracy",
                  "val_acc": "val_accuracy"}  # Keras' names for the logs, and xpnet's


class Callback:
    """Hooks called by ``xn.train``; all do nothing by default."""

    stop_training: bool = False

    def on_train_begin(self, state: Any) -> None:
        self.state = state

    def on_epoch_begin(self, epoch: int) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        pass

    def on_train_batch_end(self, batch: int) -> None:
        pass

    def on_train_end(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to go on as this one would have (saved in full checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take up ``state`` from ``state_dict()`` (called after ``on_train_begin``)."""


def interval_arg(who: str, interval: Any) -> str:
    """``interval``, ``"epoch"`` or ``"step"`` (after each update), else a ValueError naming ``who``."""
    if interval not in ("epoch", "step"):
        hint = " (Keras' 'batch' is 'step' here)" if interval == "batch" else ""
        raise ValueError(f"{who}: interval must be 'epoch' or 'step', got {interval!r}{hint}")
    return interval


def epoch_end_order(callbacks: list[Callback]) -> list[Callback]:
    """``callbacks`` with every ModelCheckpoint last (in their given order otherwise)."""
    return sorted(callbacks, key=lambda cb: isinstance(cb, ModelCheckpoint))


class _Monitor:
    """Which log value to watch and whether smaller or larger is better. A NaN or inf value never
    counts as an improvement, and the first one of a run is reported with ``nonfinite`` (what the
    owner then does), once, on the rank that prints."""

    def __init__(self, owner: str, monitor: str, mode: str, min_delta: float = 0.0, nonfinite: str = ""):
        if monitor not in MONITORS:
            hint = f" (Keras' {monitor!r} is {KERAS_MONITORS[monitor]!r} here)" if monitor in KERAS_MONITORS else ""
            if isinstance(monitor, str) and "val_" + monitor.partition("_")[2] in MONITORS:
                hint = (f" (validation_name={monitor.partition('_')[0]!r} renames only the printed figures: "
                        f"monitor {'val_' + monitor.partition('_')[2]!r})")
            raise ValueError(f"{owner}: monitor must be one of {MONITORS}, got {monitor!r}"
                             f"{hint or did_you_mean(monitor, MONITORS)}")
        if mode == "auto":
            mode = "max" if monitor.endswith("accuracy") else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}"
                             f"{did_you_mean(mode, ('auto', 'min', 'max'))}")
        if not is_real(min_delta) or not min_delta >= 0:
            raise ValueError(f"{owner}: min_delta must be a number >= 0, got {min_delta!r}")
        self.owner, self.monitor, self.mode, self.min_delta = owner, monitor, mode, float(min_delta)
        self.nonfinite, self.speak, self.warned = nonfinite, True, False
        self.best: float | None = None

    def check_available(self, state: Any) -> None:
        """Before any training: the run logs the figure watched (``state.logged``)."""
        if self.monitor.startswith("val_") and not state.has_validation:
            raise ValueError(f"{self.owner}: monitor={self.monitor!r} needs validation data; pass "
                             "validation=(x_val, y_val) to xn.train or monitor 'train_loss'")
        if self.monitor not in state.logged:
            raise ValueError(f"{self.owner}: this run logs no {self.monitor!r} (accuracy needs class labels, "
                             f"perplexity a sequence model's cross-entropy); it logs {sorted(state.logged)}")

    def value(self, logs: dict[str, Any]) -> float:
        v = logs.get(self.monitor)
        if v is None:
            raise ValueError(f"{self.owner}: the log has no value for {self.monitor!r} (accuracy is only "
                             f"reported for classification, perplexity for sequence models); logs: "
                             f"{sorted(k for k, x in logs.items() if x is not None)}")
        return float(v)

    def improved(self, logs: dict[str, Any], quiet: bool = False) -> bool:
        """Whether this epoch's value beats the best so far by more than min_delta (and record it)."""
        v = self.value(logs)
        if not math.isfinite(v):
            if not (quiet or self.warned) and self.speak:
                warn(f"{self.owner}: {self.monitor} is {v} in epoch {logs.get('epoch')} (NaN or inf in the "
                     f"{'validation' if self.monitor.startswith('val_') else 'training'} data or in the model's "
                     f"outputs on it); a non-finite value never counts as an improvement, {self.nonfinite}")
                self.warned = True
            return False
        if self.best is None or (v < self.best - self.min_delta if self.mode == "min"
                                 else v > self.best + self.min_delta):
            self.best = v
            return True
        return False

    def replay(self, epochs: list[dict[str, Any]]) -> tuple[int | None, int]:
        """Set ``best`` from the logs of the epochs a resumed run already has (none for a fresh run);
        returns the best epoch (None when there are none) and the number of epochs since it."""
        self.best, best_epoch, since, self.warned = None, None, 0, False
        for i, logs in enumerate(epochs, start=1):
            if logs.get(self.monitor) is None:  # not logged then (e.g. no validation data before)
                continue
            if self.improved(logs, quiet=True):
                best_epoch, since = int(logs.get("epoch", i)), 0
            else:
                since += 1
        return best_epoch, since


class _RestoreBest:
    """EarlyStopping's default restore_best (True), told apart from an explicit True (Keras' restore_best_weights)."""

    def __repr__(self) -> str:
        return "True"


_RESTORE_BEST = _RestoreBest()


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``restore_best=True`` puts back the weights (params and buffers) of the best epoch at the end,
    whether or not training stopped early; they are kept as copies on the model's device. Keras' name
    ``restore_best_weights`` is the same switch (Keras' default is False: pass it to keep the last
    epoch's weights). A full checkpoint carries the patience counter,
    the best value and epoch, whether it stopped, and the best weights (``restore_best=True``): a
    resumed run goes on exactly as the uninterrupted one, and one that had stopped returns at once
    with the weights it ended with. From a checkpoint without that state (an older xpnet), the best
    value and counter are replayed from the history; a best epoch before the checkpoint then has
    no weights in the file, and the end of training warns instead of restoring them.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best: Any = _RESTORE_BEST, *, restore_best_weights: bool | None = None):
        if restore_best_weights is not None:  # Keras' name for the same switch
            keras = flag(restore_best_weights, "EarlyStopping", "restore_best_weights")
            if restore_best is not _RESTORE_BEST and flag(restore_best, "EarlyStopping", "restore_best") != keras:
                raise ValueError(f"EarlyStopping: restore_best={restore_best!r} and restore_best_weights="
                                 f"{restore_best_weights!r} disagree; they are the same switch: give one")
            restore_best = keras
        restore_best = True if restore_best is _RESTORE_BEST else restore_best
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        self._monitor = _Monitor("EarlyStopping", monitor, mode, min_delta,
                                 nonfinite="so such epochs count towards patience")
        self.patience = patience
        self.restore_best = flag(restore_best, "EarlyStopping", "restore_best")
        self.wait = 0
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self._best_state: dict[str, Any] | None = None

    @property
    def best(self) -> float | None:
        return self._monitor.best

    def on_train_begin(self, state: Any) -> None:
        super().on_train_begin(state)
        self._monitor.check_available(state)
        self._monitor.speak = state.is_root
        self.best_epoch, self.wait = self._monitor.replay(state.history.epochs)
        self.stopped_epoch, self.stop_training = None, False
        # Resumed at the best epoch so far: the model holds its weights now.
        at_best = self.best_epoch is not None and self.best_epoch == state.epoch
        self._best_state = _copy_state(state.model) if self.restore_best and at_best else None

    def state_dict(self) -> dict[str, Any]:
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "best_state": self._best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, kind in (("wait", int), ("best", float), ("best_epoch", int), ("stopped_epoch", int),
                          ("best_state", dict)):
            v = state.get(key)
            if (v is None and key != "wait") or (isinstance(v, kind) and not isinstance(v, bool)) \
                    or (kind is float and isinstance(v, int) and not isinstance(v, bool)):
                continue
            raise ValueError(f"EarlyStopping: {key} must be {'an int' if kind is int else kind.__name__}, got {v!r}")
        self.wait, self.best_epoch, self.stopped_epoch = state["wait"], state["best_epoch"], state["stopped_epoch"]
        self._monitor.best = None if state["best"] is None else float(state["best"])
        self.stop_training = self.stopped_epoch is not None
        best = state["best_state"]
        self._best_state = None if best is None else {k: to_device(v, self.state.device) for k, v in best.items()}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self._monitor.improved(logs):
            self.wait, self.best_epoch = 0, epoch
            if self.restore_best:
                self._best_state = _copy_state(self.state.model)
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.stop_training = True

    def on_train_end(self) -> None:
        if not self.restore_best:
            return
        if self._best_state is None:
            if self.best_epoch is not None and self.state.is_root:
                warn(f"EarlyStopping: the best epoch ({self.best_epoch}, {self._monitor.monitor} = "
                     f"{self.best:.6g}) came before the checkpoint this run resumed from, which does "
                     "not hold its weights; the model keeps the weights of its last epoch")
            return
        for name, v in self._best_state.items():
            self.state.model.set_param(name, v)


class ModelCheckpoint(Callback):
    """Save after each epoch (or only when ``monitor`` improved, ``save_best_only=True``).

    ``path`` may hold ``{epoch}`` and log keys, e.g. ``"ckpt-{epoch:03d}.npz"``. ``full=False`` writes
    the model (``model.save``; reload with ``xn.load``); ``full=True`` writes a training checkpoint
    (model, optimizer state, epoch, history, Dropout generator states, the other callbacks' state)
    to resume with ``xn.train(..., resume_from=path)`` (``xn.load(path)`` also opens it, as the model at
    that epoch); it is written after the other callbacks
    have seen the epoch. Missing folders of ``path`` are made at the save (as Keras' and Lightning's
    checkpoints make them); one that cannot be made is refused before training. Writes are atomic; with
    ``comm`` only rank 0 writes, then
    all ranks wait at a barrier. A resumed run takes up the best value from the checkpoint's history,
    so ``save_best_only`` never replaces a better file with a worse one.
    """

    def __init__(self, path: str | os.PathLike, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto", full: bool = False):
        self.path = fspath(path, "ModelCheckpoint")
        self.save_best_only = flag(save_best_only, "ModelCheckpoint", "save_best_only")
        self.full = flag(full, "ModelCheckpoint", "full")
        self._monitor = _Monitor("ModelCheckpoint", monitor, mode,
                                 nonfinite="so only epochs with a finite value are saved")
        self.saved: list[str] = []

    def on_train_begin(self, state: Any) -> None:
        super().on_train_begin(state)
        self._check_path(state.logged)
        try:  # before any training, not at the first save: the file must be able to record the model
            architecture(state.model)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"ModelCheckpoint: the model cannot be saved: {exc}") from None
        if self.save_best_only:
            self._monitor.check_available(state)
            self._monitor.speak = state.is_root
            self._monitor.replay(state.history.epochs)

    def _check_path(self, logged: frozenset[str]) -> None:
        """Before any training: every ``{placeholder}`` is known and logged by this run (``logged``), the folder
        exists and the path is no folder (nor anything else a save refuses: :func:`~xpnet.io.paths.save_target`)."""
        logs = {k: (0.5 if k in logged else None) for k in MONITORS}
        try:
            path = self.path.format(**{**logs, "epoch": 1, "seconds": 1.0, "lr": 0.1})
        except KeyError as exc:
            key = str(exc.args[0])
            val = "val_" + key.partition("_")[2]
            hint = f" (validation_name renames only the printed figures: {{{val}}})" if val in MONITORS else ""
            known = ", ".join("{" + k + "}" for k in ("epoch", *MONITORS, "lr", "seconds"))
            raise ValueError(f"ModelCheckpoint: unknown placeholder {{{key}}} in {self.path!r}; known: {known}"
                             f"{hint}") from None
        except (IndexError, ValueError, TypeError, AttributeError) as exc:
            no_validation = "val_loss" not in logged  # every run with validation data logs its loss
            hint = " (val_* placeholders need validation data)" if no_validation and "val_" in self.path else \
                f" (this run logs {sorted(logged)})"
            raise ValueError(f"ModelCheckpoint: cannot fill in {self.path!r}: {exc}{hint}") from None
        folder = os.path.dirname(os.path.abspath(path))
        existing = folder  # the folders a save makes (as Keras' and Lightning's checkpoints do) must be makeable
        while not os.path.exists(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise ValueError(f"ModelCheckpoint: {existing!r} of {self.path!r} is a file, not a folder; give a "
                             "path in a folder")
        if existing != folder and not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"ModelCheckpoint: the folder {folder!r} of {self.path!r} does not exist and cannot "
                             f"be made: {existing!r} is not writable")
        try:  # a folder, a FIFO, a device there: refused now, not after the first epoch
            save_target(path)
        except XpnetFileError as exc:
            folder = " (a file in it: os.path.join(path, 'model.npz'))" if os.path.isdir(path) else ""
            raise XpnetFileError(f"ModelCheckpoint: {exc}{folder}") from None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.save_best_only and not self._monitor.improved(logs):
            return
        self._save(epoch, logs)

    def save_last(self) -> None:
        """On SIGTERM: write the state after the last complete epoch, if this is a full checkpoint
        that is not ``save_best_only`` (that one keeps its best file)."""
        if self.full and not self.save_best_only:
            epochs = self.state.history.epochs
            self._save(self.state.epoch, epochs[-1] if epochs else {})

    def _save(self, epoch: int, logs: dict[str, Any]) -> None:
        path = self.path.format(**{**logs, "epoch": epoch}) if "{" in self.path else self.path
        if self.state.is_root:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            if self.full:
                self.state.save_checkpoint(path)
            else:
                self.state.model.save(path)
        self.state.barrier()
        self.saved.append(path)


def _copy_state(model: Any) -> dict[str, Any]:
    return {name: namespace(v).asarray(v, copy=True) for name, v in model.state().items()}
