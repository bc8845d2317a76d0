"""``xn.train`` and ``xn.evaluate``: a minibatch loop that runs where the model runs.

How a run goes:

1. The device is resolved with ``xn.device(device, fallback=...)``. Every argument, and the
   labels against the loss and the model's output width, are checked before any training.
2. Model, optimizer state and data move to the device once. ``uint8`` inputs (raw images) are
   converted there once: ``astype(model dtype) / 255``; other inputs are cast to the model dtype.
3. Each epoch draws a permutation on the host from ``(seed, epoch)``, moves that index array to
   the device and gathers the batches there, so every device sees the same batches in the same
   order and a resumed run needs no saved shuffle state.
4. No host/device synchronisation per step: the loss sum and correct count are accumulated on
   the device and read once per epoch (and at a progress-bar refresh, at most twice a second).
5. Guard: the weights at the start of each epoch are kept as a device copy. When the epoch's loss
   sum, or the check that every weight is still finite (one device reduction folded into the same
   read), comes back non-finite, the epoch is replayed from that copy one step at a time, checking
   every layer's output and gradient and the weights after each update, to name the step and the
   first layer or parameter that went non-finite; :class:`XpnetTrainingError` is raised with the
   model holding the weights from just before that step.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Iterable

import numpy as np
import tqdm

from . import callbacks as _callbacks
from .backend import Device, device as _resolve_device, device_of, namespace, no_autograd, to_device, untracked
from .checkpoint import (apply_checkpoint, load_checkpoint, restore_callbacks, rng_states, save_checkpoint,
                         set_rng_states)
from .datasets.batches import BatchIterator
from .distributed._abort import raised_on_every_rank
from .distributed._guard import collective
from .history import History
from .losses import Loss, MeanSquaredError, SoftmaxCrossEntropy, get as _get_loss
from .optim import Optimizer
from .optim import get as _get_optimizer
from .preflight import check_callbacks, check_data, check_model, check_single_samples, warn_unscaled
from .signals import SigtermFlag

__all__ = ["train", "evaluate", "History", "XpnetTrainingError", "TrainerState", "save_checkpoint",
           "load_checkpoint"]

_REFRESH_S = 0.5
_AFTER_ALLREDUCE = "the gradients after the all-reduce over ranks"
_EVAL_BATCH = 1024


class XpnetTrainingError(RuntimeError):
    """Training cannot go on: the loss became non-finite. The message names epoch, step and layer."""


class _SigtermStop(Exception):
    """SIGTERM came during an epoch: stop after the current step, the epoch's start is in ``snapshot``."""

    def __init__(self, snapshot: "_Snapshot"):
        super().__init__("SIGTERM")
        self.snapshot = snapshot


# ----------------------------------------------------------------------------------------
# Checking and preparing the data
# ----------------------------------------------------------------------------------------


def _pair(data: Any, arg: str) -> tuple[Any, Any]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        got = f"an array of shape {tuple(data.shape)}" if hasattr(data, "shape") else type(data).__name__
        raise TypeError(f"{arg}: expected a pair (x, y), e.g. xn.train(model, (x, y), ...), got {got}")
    x, y = (untracked(a) if hasattr(a, "shape") else np.asarray(a) for a in data)
    check_data(x, f"{arg}: x")
    check_data(y, f"{arg}: y")
    if x.ndim < 1 or y.ndim < 1:
        raise ValueError(f"{arg}: x and y must have a sample axis, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{arg}: x has {x.shape[0]} samples but y has {y.shape[0]}; they must match")
    if x.shape[0] < 1:
        raise ValueError(f"{arg}: no samples")
    return x, y


def _common_device(named: dict[str, Any]) -> Device | None:
    """The one non-host device among the arrays/models in ``named`` (None if all are on the host)."""
    found: dict[str, Device] = {}
    for what, a in named.items():
        if a is None:
            continue
        dev = a if isinstance(a, Device) else device_of(a)
        if not dev.is_numpy:
            found[what] = dev
    if len(set(found.values())) > 1:
        where = ", ".join(f"{k} on {v}" for k, v in found.items())
        raise ValueError(f"model and data are on two devices ({where}); put them on one device, or keep the "
                         "data in NumPy and let xn.train move it")
    return next(iter(found.values()), None)


def _to_model_dtype(x: Any, dev: Device, dtype: Any) -> Any:
    """``x`` on ``dev`` in the model's float dtype; uint8 (images) is scaled by 1/255 on the device."""
    xp = dev.xp
    x = to_device(x, dev)
    if x.dtype == xp.uint8:
        return xp.astype(x, dtype) / 255.0
    return x if x.dtype == dtype else xp.astype(x, dtype)


def _prepare(x: Any, y: Any, model: Any, loss: Loss, dev: Device, arg: str) -> tuple[Any, Any, Any]:
    """``(x, y, classes)`` on ``dev`` after checking y against the loss and the model's output.

    ``classes`` is the (N,) class index per sample when accuracy makes sense, else None.
    """
    xp = dev.xp
    dtype = model.dtype
    if dtype is None:
        dtype = x.dtype if namespace(x).isdtype(x.dtype, "real floating") else "float32"
        dtype = getattr(xp, str(dtype).rsplit(".", 1)[-1])
    x = _to_model_dtype(x, dev, dtype)
    y = to_device(y, dev)
    probe = x[0:1, ...]
    try:
        out_shape = tuple(model.forward(probe, train=False).shape)
    except (ValueError, TypeError) as exc:
        # The layer saw a one-sample probe; name the data's shape, which is what the user passed.
        message = str(exc).replace(str(tuple(probe.shape)), str(tuple(x.shape)))
        raise type(exc)(f"{arg}: x of shape {tuple(x.shape)} does not fit the model: {message}") from None
    if isinstance(loss, SoftmaxCrossEntropy):
        if len(out_shape) != 2:
            raise ValueError(f"{arg}: {loss.name} needs model outputs of shape (N, C), the model gives {out_shape}")
        c = out_shape[1]
        if y.ndim == 1:
            if not xp.isdtype(y.dtype, "integral"):
                raise TypeError(f"{arg}: {loss.name} with targets of shape (N,) needs integer class indices, got "
                                f"dtype {y.dtype}; convert with y.astype('int64'), or pass one-hot rows (N, {c})")
            lo, hi = int(xp.min(y)), int(xp.max(y))
            if lo < 0 or hi >= c:
                raise ValueError(f"{arg}: labels must lie in [0, {c}) for a model with {c} outputs, got "
                                 f"values in [{lo}, {hi}]")
            index = _index_dtype(dev)
            y = y if y.dtype == index else xp.astype(y, index)
            return x, y, y
        if y.ndim != 2 or y.shape[1] != c:
            raise ValueError(f"{arg}: {loss.name} needs (N,) class indices or (N, {c}) one-hot rows for a model "
                             f"with {c} outputs, got targets of shape {tuple(y.shape)}")
        y = y if y.dtype == dtype else xp.astype(y, dtype)
        return x, y, xp.argmax(y, axis=1)
    if isinstance(loss, MeanSquaredError):
        if tuple(y.shape[1:]) != out_shape[1:]:
            raise ValueError(f"{arg}: {loss.name} needs targets shaped like the model output (N, "
                             f"{', '.join(map(str, out_shape[1:]))}), got {tuple(y.shape)}")
        y = y if y.dtype == dtype else xp.astype(y, dtype)
    return x, y, (xp.argmax(y, axis=1) if _is_one_hot(y) else None)


def _index_dtype(dev: Device) -> Any:
    """The namespace's index dtype for labels and counts: int64, or int32 on JAX without x64 (which
    would truncate int64 to it with a warning on every conversion)."""
    return dev.xp.__array_namespace_info__().default_dtypes(device=dev.native)["indexing"]


def _is_one_hot(y: Any) -> bool:
    xp = namespace(y)
    if y.ndim != 2 or y.shape[1] < 2 or not xp.isdtype(y.dtype, "real floating"):
        return False
    return bool(xp.all((y == 0.0) | (y == 1.0))) and bool(xp.all(xp.sum(y, axis=1) == 1.0))


def _int_arg(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo \
            or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"train: {name} must be an int {bound}, got {value!r}")
    return int(value)


def _use_graph(graph: Any, dev: Device) -> bool:
    """Whether the step is captured as a CUDA graph: ``graph=None`` where that is correct, ``False``
    (or ``XPNET_GRAPH=0`` in the environment) never. Capture is not in this version yet, so every step
    runs eagerly; ``graph=True`` is refused rather than silently ignored."""
    env = os.environ.get("XPNET_GRAPH", "").strip()
    if env not in ("", "0", "1"):
        raise ValueError(f"XPNET_GRAPH must be 0 (no CUDA-graph capture) or 1, got {env!r}")
    if graph is not None and not isinstance(graph, bool):
        raise TypeError(f"train: graph must be None, True or False, got {graph!r}")
    if graph:
        if not dev.is_cupy:
            raise ValueError(f"train: graph=True captures the training step as a CUDA graph, which needs a CuPy "
                             f"device; this run is on {dev.name}. Pass graph=None or False")
        raise NotImplementedError("train: graph=True: CUDA-graph capture of the training step is not in this "
                                  "version of xpnet yet; graph=None or False trains eagerly")
    return False


# ----------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------


class TrainerState:
    """What callbacks see: the model, optimizer, history and where training runs."""

    def __init__(self, model: Any, optimizer: Optimizer, loss: Loss, history: History, device: Device,
                 comm: Any, seed: int, epochs: int, has_validation: bool, callbacks: list[Any] = ()):
        self.model, self.optimizer, self.loss, self.history = model, optimizer, loss, history
        self.device, self.comm, self.seed, self.epochs = device, comm, seed, epochs
        self.has_validation = has_validation
        self.callbacks = list(callbacks)
        self.epoch = 0

    @property
    def is_root(self) -> bool:
        return self.comm is None or self.comm.rank == 0

    def barrier(self) -> None:
        if self.comm is not None:
            self.comm.barrier()

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """A full checkpoint of the run after ``self.epoch`` epochs (resume with ``resume_from``)."""
        save_checkpoint(path, self.model, self.optimizer, epoch=self.epoch, seed=self.seed, history=self.history,
                        callbacks=self.callbacks)


class _Snapshot:
    """Device copies of params, buffers and optimizer state, and the Dropout generator states."""

    def __init__(self, model: Any, optimizer: Optimizer):
        self.state = {k: _copy(v) for k, v in model.state().items()}
        sd = optimizer.state_dict()
        sd["state"] = {n: {k: _copy(v) for k, v in s.items()} for n, s in sd["state"].items()}
        self.optimizer = sd
        self.rng = rng_states(model)

    def restore(self, model: Any, optimizer: Optimizer) -> None:
        for k, v in self.state.items():
            model.set_param(k, _copy(v))
        sd = dict(self.optimizer)
        sd["state"] = {n: {k: _copy(v) for k, v in s.items()} for n, s in sd["state"].items()}
        optimizer.load_state_dict(sd)
        set_rng_states(model, self.rng)


def _copy(a: Any) -> Any:
    return namespace(a).asarray(a, copy=True)


def _all_finite(a: Any) -> bool:
    xp = namespace(a)
    return bool(xp.all(xp.isfinite(a)))


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _Trainer:
    """The per-epoch work of ``train`` and ``evaluate`` on one device (and one rank of ``comm``)."""

    def __init__(self, model: Any, loss: Loss, optimizer: Optimizer | None, dev: Device, comm: Any,
                 progress: bool):
        self.model, self.loss, self.optimizer, self.dev, self.comm = model, loss, optimizer, dev, comm
        self.rank, self.size = (0, 1) if comm is None else (int(comm.rank), int(comm.size))
        self.show = progress and self.rank == 0
        self.bar = self.show and _is_terminal(sys.stdout)
        self.open_bar: Any = None
        self.sigterm: SigtermFlag | None = None
        self.transform: Any = None  # fn(x_batch, epoch, step) -> x_batch, training batches only

    def batch_input(self, batch: tuple[Any, ...], epoch: int, step: int) -> Any:
        """The batch's x, through ``transform`` (step counts from 0 within the epoch)."""
        xb = batch[0]
        return xb if self.transform is None else self.transform(xb, epoch, step)

    def reduce(self, a: Any) -> Any:
        return a if self.comm is None else self.comm.allreduce_sum(a)

    def zeros(self, dtype: Any) -> Any:
        return self.dev.xp.zeros((), dtype=dtype, device=self.dev.native)

    def run_epoch(self, batches: BatchIterator, epoch: int, epochs: int, n: int, classify: bool) -> dict[str, Any]:
        """One pass over ``batches``: returns train_loss/train_accuracy, or raises XpnetTrainingError."""
        xp, model, loss, optimizer, comm = self.dev.xp, self.model, self.loss, self.optimizer, self.comm
        snapshot = _Snapshot(model, optimizer)
        loss_sum, correct = self.zeros(model.dtype), self.zeros(_index_dtype(self.dev))
        # The bar shows the steps and is cleared at the end of the epoch; the epoch's summary is then
        # printed as a line of its own, which a narrow terminal wraps instead of cutting off.
        bar = tqdm.tqdm(total=len(batches), desc=f"epoch {epoch}/{epochs}", unit="step", file=sys.stdout,
                        dynamic_ncols=True, leave=False) if self.bar else None
        steps, seen, last_refresh = 0, 0, time.perf_counter()
        for batch in batches.epoch(epoch):
            xb, yb = self.batch_input(batch, epoch, steps), batch[1]
            nb = int(xb.shape[0])
            if nb:
                out = model.forward(xb, train=True)
                value = loss.forward(out, yb, check=False)
                model.backward(loss.backward(), input_grad=False)
                loss_sum = loss_sum + value * nb
                if classify:
                    correct = correct + xp.count_nonzero(xp.argmax(out, axis=1) == batch[-1])
            else:
                _zero_grads(model)
            if comm is not None:
                comm.allreduce_grads(model, count=nb)
            optimizer.step(model)
            steps, seen = steps + 1, seen + nb
            if comm is None and self.sigterm is not None and self.sigterm.requested:
                if bar is not None:
                    bar.close()
                raise _SigtermStop(snapshot)
            if bar is not None:
                bar.update(1)
                now = time.perf_counter()
                if now - last_refresh >= _REFRESH_S and seen:
                    running = float(loss_sum) / seen
                    bar.set_postfix_str(f"loss {running:.4f}")
                    last_refresh = now
                    if not math.isfinite(running) and comm is None:
                        break
        # One read per epoch covers both the loss and the weights: a finite loss whose update
        # overflowed a weight reads as NaN too, and the replay finds which step did it.
        loss_total = float(self.reduce(xp.where(self.params_finite(), loss_sum, self.zeros(loss_sum.dtype) + math.nan)))
        if not math.isfinite(loss_total):
            if bar is not None:
                bar.close()
            raise raised_on_every_rank(self.diagnose(snapshot, batches, epoch, steps))
        logs = {"train_loss": loss_total / n,
                "train_accuracy": int(self.reduce(correct)) / n if classify else None}
        self.open_bar = bar
        return logs

    def sigterm_agreed(self) -> bool:
        """Whether SIGTERM came to this process (to any rank, agreed by all: one small collective)."""
        flag = self.sigterm is not None and self.sigterm.requested
        if self.comm is None:
            return flag
        xp = self.dev.xp
        flag = xp.asarray(int(flag), dtype=_index_dtype(self.dev), device=self.dev.native)
        return int(self.comm.allreduce_sum(flag)) > 0

    def params_finite(self) -> Any:
        """A 0-d device bool: every parameter is finite (no host read)."""
        xp, ok = self.dev.xp, self.dev.xp.asarray(True, device=self.dev.native)
        for p in self.model.named_params().values():
            ok = ok & xp.all(xp.isfinite(p))
        return ok

    def evaluate(self, x: Any, y: Any, classes: Any, batch_size: int) -> tuple[float, float | None]:
        """Mean loss and accuracy over this rank's share of (x, y), summed over ranks."""
        xp, model, loss = self.dev.xp, self.model, self.loss
        n = int(x.shape[0])
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        loss_sum, correct = self.zeros(model.dtype), self.zeros(_index_dtype(self.dev))
        for start in range(lo, hi, batch_size):
            stop = min(start + batch_size, hi)
            out = model.forward(x[start:stop, ...], train=False)
            loss_sum = loss_sum + loss.forward(out, y[start:stop, ...], check=False) * (stop - start)
            if classes is not None:
                correct = correct + xp.count_nonzero(xp.argmax(out, axis=1) == classes[start:stop])
        value = float(self.reduce(loss_sum)) / n
        return value, (int(self.reduce(correct)) / n if classes is not None else None)

    def diagnose(self, snapshot: _Snapshot, batches: BatchIterator, epoch: int, steps: int) -> XpnetTrainingError:
        """Replay ``epoch`` from its starting weights, checking every layer and every update, up to
        the first bad step; the model is left with the weights from before that step. With ``comm``
        the ranks agree on each step's finding, which names the rank(s) where it was seen."""
        model, comm = self.model, self.comm
        snapshot.restore(model, self.optimizer)

        def agreed(where: str | None) -> str | None:
            if comm is None:
                return where
            found = [(r, w) for r, w in enumerate(comm.allgather_object(where)) if w is not None]
            first = [(r, w) for r, w in found if w != _AFTER_ALLREDUCE] or found  # where it came from
            return "; ".join(f"rank {r}: {w}" for r, w in first) or None

        for step, batch in enumerate(batches.epoch(epoch)):
            if step >= steps:
                break
            where = agreed(self.replay_step(self.batch_input(batch, epoch, step), batch[1]))
            if where is not None:
                return XpnetTrainingError(
                    f"training stopped: the loss became non-finite in epoch {epoch}, step {step + 1} of "
                    f"{len(batches)}; first non-finite value: {where}. The model keeps the weights from "
                    "before that step. Try a smaller learning rate, check the data for NaN/inf, or scale "
                    "the inputs.")
            before = _Snapshot(model, self.optimizer)
            self.optimizer.step(model)
            where = agreed(next((f"parameter {k!r}" for k, p in model.named_params().items() if not _all_finite(p)),
                                None))
            if where is not None:
                before.restore(model, self.optimizer)
                return XpnetTrainingError(
                    f"training stopped: the update of epoch {epoch}, step {step + 1} of {len(batches)} made "
                    f"{where} non-finite, with the loss and every gradient finite ({self.optimizer.name}, "
                    f"lr={self.optimizer.lr:g}). The model keeps the weights from before that step. Try a "
                    "smaller learning rate.")
        return XpnetTrainingError(
            f"training stopped: the loss or the weights of epoch {epoch} became non-finite, but replaying the "
            "epoch from its starting weights did not reproduce it layer by layer (a layer that is not "
            f"deterministic on {self.dev.name}?)")

    def replay_step(self, xb: Any, yb: Any) -> str | None:
        """Forward/backward one batch layer by layer; where the first non-finite value appeared."""
        model, loss = self.model, self.loss
        first = None if _all_finite(xb) else "the input batch"
        nb = int(xb.shape[0])
        if nb:
            h = xb
            for i, layer in enumerate(model.layers):
                h = layer.forward(h, train=True)
                if first is None and not _all_finite(h):
                    first = f"the output of layer {i} ({layer.name})"
            value = loss.forward(h, yb, check=False)
            if first is None and not _all_finite(value):
                first = f"the loss ({loss.name}) with every layer output finite"
            dy = loss.backward()
            for i in range(len(model.layers) - 1, -1, -1):
                layer = model.layers[i]
                dy = layer.backward(dy)
                for key, g in layer.grads.items():
                    if first is None and not _all_finite(g):
                        first = f"the gradient of {key!r} in layer {i} ({layer.name})"
                if first is None and not _all_finite(dy):
                    first = f"the input gradient of layer {i} ({layer.name})"
        else:
            _zero_grads(model)
        if self.comm is not None:
            self.comm.allreduce_grads(model, count=nb)
            if first is None and not all(_all_finite(g) for g in model.named_grads().values()):
                first = _AFTER_ALLREDUCE
        return first


def _zero_grads(model: Any) -> None:
    for layer in model.layers:
        layer.grads = {k: namespace(v).zeros_like(v) for k, v in layer.params.items()}


def _format_logs(logs: dict[str, Any], validation_name: str = "val") -> str:
    """The epoch's figures; the val_* ones are printed under ``validation_name`` (e.g. test_loss)."""
    parts = [f"{k.replace('val_', validation_name + '_', 1)} {logs[k]:.4f}"
             for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy") if logs.get(k) is not None]
    return "  ".join(parts) + f"  ({logs['seconds']:.3g}s)"


@collective("xn.train", data={"data": "train data", "validation": "validation data"},
            same=("epochs", "batch_size", "seed", "shuffle", "drop_last"))
def train(model: Any, data: Any, *extra: Any, loss: Any, optimizer: Any, epochs: int, batch_size: int,
          device: Any = "auto", validation: Any = None, seed: int = 0, callbacks: Iterable[Any] = (),
          progress: bool = True, shuffle: bool = True, fallback: bool = True,
          resume_from: str | os.PathLike | None = None, comm: Any = None, graph: bool | None = None,
          drop_last: bool = False, validation_name: str = "val", transform: Any = None) -> History:
    """Train ``model`` on ``data = (x, y)`` for ``epochs`` epochs of minibatches; returns a :class:`History`.

    x: (N, ...) NumPy array or array of any supported backend (uint8 images are scaled by 1/255 on
    the device); y: (N,) class indices or (N, C) one-hot for cross-entropy, (N, ...) like the output
    for MSE. ``loss`` is a Loss or a name (``"cross_entropy"``, ``"mse"``), ``optimizer`` an Optimizer
    or a name (``"sgd"``, ``"momentum"``, ``"adam"``, ... with the optimizer's default lr).
    ``device``: ``"auto"`` (the device the model/data already live on, else a GPU if available, else
    the CPU), ``"cpu"``, ``"cuda[:N]"`` or a Device; ``fallback=False`` raises instead of falling back to
    the CPU. The same ``seed`` gives the same batches on every device. ``resume_from`` continues from a
    checkpoint written by ``ModelCheckpoint(path, full=True)`` up to ``epochs`` epochs in total.
    ``comm`` (``xn.distributed.init()``) trains data parallel: each rank takes its part of every global
    batch of ``batch_size`` rows, and the result equals the one-process run; every rank must pass the
    same data and arguments (compared when the ranks first meet: a difference raises on every rank).
    ``graph`` asks for the training step to be captured as a CUDA graph on CuPy (see :func:`_use_graph`).
    ``drop_last=True`` leaves out each epoch's last batch when it is smaller than ``batch_size`` (needed
    by BatchNorm when it would hold a single sample; the rows left out differ each epoch).
    ``validation_name`` is the name printed for the validation figures (``"test"`` when ``validation``
    is the test set); History keys stay ``val_*``.
    ``transform(x_batch, epoch, step) -> x_batch`` (e.g. ``xn.datasets.RandomShiftFlip()``) changes each
    training batch on the device after it is gathered (step counts from 0 in each epoch); validation
    data is never transformed. One process only (not with ``comm``).

    Everything is checked before any training (``xpnet.preflight``): a clear error names what to
    change; inputs that look like unscaled 0..255 images give a warning.
    """
    if extra:
        raise TypeError(f"train: pass the data as one pair, xn.train(model, (x, y), ...), not as "
                        f"{2 + len(extra)} separate arguments")
    if not isinstance(validation_name, str) or not validation_name.isidentifier():
        raise ValueError(f"train: validation_name must be a name such as 'val' or 'test', got {validation_name!r}")
    check_model(model, "train")
    if transform is not None and not callable(transform):
        raise TypeError(f"train: transform must be None or a function (x_batch, epoch, step) -> x_batch, "
                        f"e.g. xn.datasets.RandomShiftFlip(), got {type(transform).__name__}")
    if transform is not None and comm is not None:
        raise NotImplementedError("train: transform with comm (data parallel) is not in this version: each "
                                  "rank would draw the same numbers for its part of the batch")
    loss = _get_loss(loss)
    optimizer = _get_optimizer(optimizer)
    optimizer.bind(model)
    x, y = _pair(data, "train data")
    n = int(x.shape[0])
    epochs = _int_arg("epochs", epochs, 0)
    batch_size = _int_arg("batch_size", batch_size, 1, n)
    seed = _int_arg("seed", seed, 0)
    val = _pair(validation, "validation") if validation is not None else None
    callbacks = check_callbacks(callbacks, _callbacks.Callback)
    warn_unscaled({"train data": x, **({"validation": val[0]} if val is not None else {})})
    placed = _common_device({"model": model.device, "x": x, "y": y,
                             "validation x": val and val[0], "validation y": val and val[1]})
    if isinstance(device, str) and device.strip().lower() == "auto" and placed is not None:
        dev = placed
    elif comm is not None:
        dev = comm.device(device, fallback=fallback)  # "cuda": GPU local_rank % device_count
    else:
        dev = _resolve_device(device, fallback=fallback)
    _use_graph(graph, dev)
    rank = 0 if comm is None else int(comm.rank)

    history = History(dev.name)
    start, ckpt = 0, None
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from) if rank == 0 else None
        if comm is not None:
            ckpt = comm.bcast_object(ckpt, root=0)
        scheduled = any(isinstance(cb, _callbacks.LearningRateSchedule) for cb in callbacks)
        start = apply_checkpoint(ckpt, model, optimizer, seed, epochs, keep=("lr",) if scheduled else ())
        history.epochs = [dict(e) for e in ckpt["meta"]["history"]["epochs"]]
    model.to(dev)
    optimizer.to(dev)
    x, y, classes = _prepare(x, y, model, loss, dev, "train data")
    check_single_samples(model, x, n, batch_size, 1 if comm is None else int(comm.size), drop_last)
    classify = classes is not None
    if val is not None:
        xv, yv, cv = _prepare(val[0], val[1], model, loss, dev, "validation")
    if comm is not None:
        comm.broadcast_params(model, root=0)

    trainer = _Trainer(model, loss, optimizer, dev, comm, progress)
    trainer.transform = transform
    arrays = (x, y) if classes is None or classes is y else (x, y, classes)
    batches = BatchIterator(*arrays, batch_size=batch_size, shuffle=shuffle, seed=seed,
                            rank=trainer.rank, size=trainer.size, drop_last=drop_last)
    state = TrainerState(model, optimizer, loss, history, dev, comm, seed, epochs, val is not None, callbacks)
    state.epoch = start
    if trainer.show:
        ranks = f", {trainer.size} ranks" if comm is not None else ""
        print(f"xpnet: training on {dev.name}{ranks}: {n} samples, {len(batches)} steps per epoch, "
              f"epochs {start + 1}..{epochs}", flush=True)
    for cb in callbacks:
        cb.on_train_begin(state)
    if ckpt is not None:
        restore_callbacks(ckpt, callbacks)
    stopped = any(cb.stop_training for cb in callbacks)  # a resumed run that had finished

    # The trainer finds non-finite values itself (the guard); NumPy's overflow warnings would only
    # repeat that, once per step. SIGTERM stops at the end of a step (one process) or of an epoch
    # (ranks agree there), and ends the process after the last checkpoint is written. PyTorch records
    # no autograd graph: xpnet runs its own backward.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), SigtermFlag() as sigterm, \
            no_autograd(dev.xp):
        trainer.sigterm = sigterm
        for epoch in range(start + 1, start if stopped else epochs + 1):
            t0 = time.perf_counter()
            set_rng_states(model)
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            try:
                epoch_logs = trainer.run_epoch(batches, epoch, epochs, batches.used, classify)
            except _SigtermStop as stop:
                stop.snapshot.restore(model, optimizer)  # back to the end of the last complete epoch
                _save_last_and_terminate(callbacks, sigterm)
            logs = {"epoch": epoch, **epoch_logs, "val_loss": None, "val_accuracy": None}
            if val is not None:
                logs["val_loss"], logs["val_accuracy"] = trainer.evaluate(xv, yv, cv, max(batch_size, _EVAL_BATCH))
            logs["seconds"] = time.perf_counter() - t0
            logs["lr"] = float(optimizer.lr)
            if comm is not None:
                logs = comm.bcast_object(logs, root=0)
            history.epochs.append(logs)
            state.epoch = epoch
            if trainer.open_bar is not None:
                trainer.open_bar.close()
            if trainer.show:
                print(f"epoch {epoch}/{epochs}  {_format_logs(logs, validation_name)}", flush=True)
            for cb in _callbacks.epoch_end_order(callbacks):
                cb.on_epoch_end(epoch, logs)
            if trainer.sigterm_agreed():
                _save_last_and_terminate(callbacks, sigterm)
            if any(cb.stop_training for cb in callbacks):
                break
    for cb in callbacks:
        cb.on_train_end()
    return history


def _save_last_and_terminate(callbacks: list[Any], sigterm: SigtermFlag) -> None:
    """Write the state after the last complete epoch to every full, not best-only ModelCheckpoint,
    then end the process by SIGTERM."""
    for cb in callbacks:
        if isinstance(cb, _callbacks.ModelCheckpoint):
            cb.save_last()
    sigterm.terminate()


@collective("xn.evaluate", data={"data": "evaluate data"}, same=("batch_size",))
def evaluate(model: Any, data: Any, *, loss: Any, batch_size: int | None = None, comm: Any = None) -> dict[str, Any]:
    """Mean loss and accuracy of ``model`` on ``data = (x, y)``, on the model's device.

    Returns ``{"loss": float, "accuracy": float or None}``; accuracy is None where the targets are not
    class labels (e.g. MSE against real values). ``batch_size`` (default 1024) bounds memory. With
    ``comm`` each rank evaluates its share and the sums are reduced.
    """
    check_model(model, "evaluate")
    loss = _get_loss(loss)
    x, y = _pair(data, "evaluate data")
    batch_size = _EVAL_BATCH if batch_size is None else _int_arg("batch_size", batch_size, 1)
    dev = model.device
    _common_device({"model": dev, "x": x, "y": y})
    x, y, classes = _prepare(x, y, model, loss, dev, "evaluate data")
    trainer = _Trainer(model, loss, None, dev, comm, progress=False)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), no_autograd(dev.xp):
        value, accuracy = trainer.evaluate(x, y, classes, batch_size)
    return {"loss": value, "accuracy": accuracy}

