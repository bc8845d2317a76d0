"""The per-epoch work of ``xn.train`` and ``xn.evaluate`` on one device (and one rank): the steps and
the loss and accuracy sums kept on the device. An epoch whose loss or weights went non-finite is
replayed by :mod:`xpnet.training.guard` to name the step and the layer."""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from ..backend import Device, device_of, fast_path, same_device
from ..backend.threads import ThreadTuner
from ..datasets.batches import BatchIterator
from ..distributed._abort import raised_on_every_rank
from ..io.signals import SigtermFlag
from ..layers.container import mode
from ..layers.norm import BatchNorm
from ..layers.recurrent_state import independent_batches
from ..layers.zero_grad import arm
from ..losses import Loss
from ..optim import Optimizer, clip_grad_norm, clip_grad_value
from .accumulate import GradientMean
from .checkpoint import save_checkpoint
from .guard import Snapshot, all_finite, diagnose, zero_grads
from .data import index_dtype
from .epoch_sums import add_batch
from .history import History
from .planned import PlannedStep
from .streams import StreamBatches

__all__ = ["XpnetTrainingError", "SigtermStop", "TrainerState", "Snapshot", "Trainer", "zero_grads", "logged_figures"]

_REFRESH_S = 0.5


class XpnetTrainingError(RuntimeError):
    """Training cannot go on: the loss became non-finite. The message names epoch, step and layer."""


class SigtermStop(Exception):
    """SIGTERM came during an epoch: stop after the current step, the epoch's start is in ``snapshot``."""

    def __init__(self, snapshot: "Snapshot"):
        super().__init__("SIGTERM")
        self.snapshot = snapshot


def logged_figures(classify: bool, perplexity: bool, val_classify: bool | None) -> frozenset[str]:
    """The figures (of ``xpnet.training.callbacks.MONITORS``) every epoch's log of a run holds, known
    before training (``val_classify``: None without validation data, else whether it has classes)."""
    train = {"loss", *(["accuracy"] if classify else []), *(["perplexity"] if perplexity else [])}
    val = set() if val_classify is None else \
        {"loss", *(["accuracy"] if val_classify else []), *(["perplexity"] if perplexity else [])}
    return frozenset({f"train_{k}" for k in train} | {f"val_{k}" for k in val})


class TrainerState:
    """What callbacks see: the model, optimizer, history and where training runs."""

    def __init__(self, model: Any, optimizer: Optimizer, loss: Loss, history: History, device: Device,
                 comm: Any, seed: int, epochs: int, has_validation: bool, callbacks: list[Any] = ()):
        self.model, self.optimizer, self.loss, self.history = model, optimizer, loss, history
        self.device, self.comm, self.seed, self.epochs = device, comm, seed, epochs
        self.has_validation = has_validation
        # The figures each epoch's log holds (xn.train sets them; by default those a classifier logs).
        self.logged = logged_figures(True, False, True if has_validation else None)
        self.callbacks = list(callbacks)
        self.epoch = 0
        self.batches: dict[str, Any] | None = None  # batch_size, shuffle, drop_last: saved in checkpoints
        self.epoch_offset = 0  # the epochs earlier xn.train calls trained the model for: saved in checkpoints
        self.captured = False  # whether the step runs as a CUDA graph (xpnet.training.graph)

    @property
    def is_root(self) -> bool:
        return self.comm is None or self.comm.rank == 0

    def barrier(self) -> None:
        if self.comm is not None:
            self.comm.barrier()

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """A full checkpoint of the run after ``self.epoch`` epochs (resume with ``resume_from``)."""
        save_checkpoint(path, self.model, self.optimizer, epoch=self.epoch, seed=self.seed, history=self.history,
                        callbacks=self.callbacks, batches=self.batches, epoch_offset=self.epoch_offset)


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Trainer:
    """The per-epoch work of ``train`` and ``evaluate`` on one device (and one rank of ``comm``)."""

    def __init__(self, model: Any, loss: Loss, optimizer: Optimizer | None, dev: Device, comm: Any,
                 progress: bool):
        self.model, self.loss, self.optimizer, self.dev, self.comm = model, loss, optimizer, dev, comm
        if optimizer is not None:  # each step's backward overwrites, whatever zero_grad() a loop of one's own called
            arm(model, on=False)
        self.rank, self.size = (0, 1) if comm is None else (int(comm.rank), int(comm.size))
        self.show = progress and self.rank == 0
        self.bar = self.show and _is_terminal(sys.stdout)
        self.open_bar: Any = None
        self.sigterm: SigtermFlag | None = None
        self.transform: Any = None  # fn(x_batch, epoch, step) -> x_batch, training batches only
        self.inputs = 1  # the arrays of a batch: the model's inputs, y, then the class labels where they differ
        self.first_loss: Any = None  # this rank's (loss sum, count) of the run's first step, as weighted gives them
        self.ignored = True  # whether a target of the training data may be ignored (False: counted on the host)
        self.threads = ThreadTuner([], (1,))  # NumPy's BLAS thread count per step (xpnet.backend.threads)
        self.clip_grad_norm: float | None = None  # max global norm of the (all-reduced) gradients per step
        self.clip_grad_value: float | None = None  # or max absolute value of each of their elements
        self.accumulate = 1  # batches per update (accumulate_grad_batches: xpnet.training.accumulate)
        self.captured: Any = None  # a CapturedEpochs (xpnet.training.graph) where the step runs as a CUDA graph
        self.epoch_offset = 0  # transform's epoch is epoch_offset + the run's epoch (xn.train: epochs_trained)
        self.step_callbacks: list[Any] = []  # those with an on_train_batch_end of their own
        self.nll: Loss | None = None  # the loss perplexity is of, where not self.loss (streams.perplexity_loss)
        self._sum_dtype: Any = None  # loss_sum_dtype's answer, once known

    def after_step(self, step: int) -> bool:
        """Call the per-step hooks (``Callback.on_train_batch_end``) after update ``step`` (from 0) of the
        epoch (with ``accumulate`` > 1 an update follows each group of batches); whether there were any (a
        captured step then reads the lr they may have set)."""
        for cb in self.step_callbacks:
            cb.on_train_batch_end(step)
        return bool(self.step_callbacks)

    def gradient_mean(self, batches: int) -> GradientMean | None:
        """Where ``accumulate`` > 1, the mean that sums the gradients of each group of an epoch of ``batches``
        batches between updates (:mod:`xpnet.training.accumulate`); None where each batch updates."""
        return GradientMean(self.model, self.accumulate, batches) if self.accumulate > 1 else None

    def snapshot(self) -> Snapshot:
        """The epoch's start, for the guard's replay and SIGTERM: weights, optimizer and per-step callbacks."""
        return Snapshot(self.model, self.optimizer, self.step_callbacks)

    def batch_inputs(self, batch: tuple[Any, ...], epoch: int, step: int) -> tuple[Any, ...]:
        """The batch's inputs, through ``transform`` (one input; step counts from 0 within the epoch)."""
        xs = batch[:self.inputs]
        if self.transform is None:
            return xs
        xb = xs[0]
        out = self.transform(xb, self.epoch_offset + epoch, step)
        if not hasattr(out, "shape") or not same_device(out, xb) or tuple(out.shape[:1]) != tuple(xb.shape[:1]):
            got = (f"an array of shape {tuple(out.shape)} on {device_of(out)}" if hasattr(out, "shape")
                   else f"a {type(out).__name__}")
            raise TypeError(f"train: transform must return an array like the batch it gets ({xb.shape[0]} rows on "
                            f"{self.dev.name}), it returned {got} for epoch {epoch}, step {step}")
        return (out,)

    def clip(self, model: Any) -> None:
        """The gradients scaled to a global norm of at most ``clip_grad_norm``, or clamped to
        ``[-clip_grad_value, clip_grad_value]`` (whichever is set)."""
        if self.clip_grad_norm is not None:
            clip_grad_norm(model, self.clip_grad_norm)
        elif self.clip_grad_value is not None:
            clip_grad_value(model, self.clip_grad_value)

    def reduce(self, a: Any) -> Any:
        return a if self.comm is None else self.comm.allreduce_sum(a)

    def zeros(self, dtype: Any) -> Any:
        return self.dev.xp.zeros((), dtype=dtype, device=self.dev.native)

    def loss_sum_dtype(self) -> Any:
        """Loss sums are kept in float32 at least: in a float16 model's dtype, 75,000 samples summed to inf. Read
        once per run (every step sums; the model's dtype walks its whole tree, a ResNet's hundreds of nodes)."""
        if self._sum_dtype is None:
            xp = self.dev.xp
            self._sum_dtype = xp.float64 if self.model.dtype == xp.float64 else xp.float32
        return self._sum_dtype

    def weighted(self, value: Any, rows: int) -> tuple[Any, Any]:
        """A batch's mean ``value`` as (its sum in :meth:`loss_sum_dtype`, 0-d on the device; the count it is the
        mean of, an int or 0-d in the index dtype): the count is the loss's :meth:`~xpnet.losses.Loss.mean_count`
        (the targets that are not ``ignore_index``), else the batch's ``rows``; the figures divide the sums
        by the counts, so that every target weighs alike whatever the batches."""
        value, count = self.mean_and_count(value, rows)
        return self.times(value, count), count

    def times(self, value: Any, count: Any) -> Any:
        """``value * count`` (count an int or a 0-d integer array) in ``value``'s dtype."""
        return value * (count if isinstance(count, int) else self.dev.xp.astype(count, value.dtype))

    def mean_and_count(self, value: Any, rows: int) -> tuple[Any, Any]:
        """:meth:`weighted` before its product: (``value`` in :meth:`loss_sum_dtype`, the count)."""
        xp, dtype = self.dev.xp, self.loss_sum_dtype()
        count = self.loss.mean_count()
        count = rows if count is None else count
        if value.dtype != dtype:  # a float32 or float64 loss is summed as it is: the product is a new array
            value = xp.astype(value, dtype)
        if isinstance(count, int):
            return value, count
        index = index_dtype(self.dev)
        if count.dtype != index:  # count_nonzero gives the index dtype on NumPy and CuPy: no copy there
            count = xp.astype(count, index)
        return value, count

    def nll_sum(self, out: Any, labels: Any) -> Any:
        """The batch's sum of ``self.nll`` after ``self.loss``'s forward on the same ``out``: its mean times the
        count ``self.loss`` gave (the same targets), as :meth:`weighted` gives it."""
        return self.weighted(self.nll.forward(out, labels, check=False), int(labels.shape[0]))[0]

    def first_step_loss(self) -> float | None:
        """The loss of this run's first step, the mean over every target of its global batch (reduced over
        ranks, weighted as the epoch's loss is, so the two compare); None before any step. A collective
        with ``comm``: every rank calls it, once, at the end of the run."""
        if self.first_loss is None:
            return None
        total, count = self.first_loss
        return float(self.reduce(total)) / max(int(self.reduce(count)), 1)

    @contextmanager
    def batch_states(self, batches: Any) -> Iterator[Callable[[], None]]:
        """Around an epoch: the yielded function, called before each batch, starts the stateful recurrent
        layers from zeros for a batch of array rows, which are sequences of their own (a shuffled batch
        is no continuation of the one before, nor has it as many rows), and they hold their earlier
        state afterwards (:func:`~xpnet.layers.recurrent_state.independent_batches`); a stream's batches carry
        the state on (truncated BPTT: :mod:`xpnet.training.streams`)."""
        if isinstance(batches, StreamBatches):
            yield lambda: None
            return
        with independent_batches(self.model) as fresh:
            yield fresh

    def _progress(self, batches: BatchIterator, epoch: int, epochs: int) -> Any:
        """The epoch's bar, or None. It shows the steps and is cleared at the end of the epoch; the epoch's
        summary is then printed as a line of its own, which a narrow terminal wraps instead of cutting off.
        tqdm is imported here, by a run that shows a bar: ``import xpnet`` took 46 ms more with it at the top."""
        if not self.bar:
            return None
        import tqdm  # noqa: PLC0415
        return tqdm.tqdm(total=len(batches), desc=f"epoch {epoch}/{epochs}", unit="step", file=sys.stdout,
                         dynamic_ncols=True, leave=False)

    def run_captured_epoch(self, batches: BatchIterator, epoch: int, epochs: int, n: int) -> dict[str, Any]:
        """``run_epoch`` as launches of the captured step (``self.captured``, :mod:`xpnet.training.graph`)."""
        snapshot = self.snapshot()
        bar = self._progress(batches, epoch, epochs)
        try:
            steps, loss_total, correct, count, nll = self.captured.run_epoch(epoch, bar, snapshot)
        except SigtermStop:
            if bar is not None:
                bar.close()
            raise
        if not math.isfinite(loss_total):
            if bar is not None:
                bar.close()
            self.captured.graph.drop()  # the replay below and its restored weights leave the graph's arrays
            raise self.diagnose(snapshot, batches, epoch, steps)
        self.open_bar = bar
        return {"train_loss": loss_total / max(count, 1),
                "train_accuracy": _accuracy(correct, count, n, self.ignored) if correct is not None else None,
                **({} if nll is None else {"train_nll": nll / max(count, 1)})}

    def run_epoch(self, batches: BatchIterator, epoch: int, epochs: int, n: int, classify: bool) -> dict[str, Any]:
        """One pass over ``batches``: returns train_loss/train_accuracy (and train_nll, the mean of
        ``self.nll``, where there is one), or raises XpnetTrainingError."""
        if self.captured is not None:
            return self.run_captured_epoch(batches, epoch, epochs, n)
        xp, model, optimizer, comm = self.dev.xp, self.model, self.optimizer, self.comm
        snapshot = self.snapshot()
        loss_sum, correct = self.zeros(self.loss_sum_dtype()), self.zeros(index_dtype(self.dev))
        count = self.zeros(index_dtype(self.dev)) if self.ignored else 0  # an int: no device add per step
        nll_sum = None if self.nll is None else self.zeros(loss_sum.dtype)
        bar = self._progress(batches, epoch, epochs)
        steps, seen, updates, last_refresh = 0, 0, 0, time.perf_counter()
        group = self.gradient_mean(len(batches))
        plan = PlannedStep.of(self, batches)  # the steps between the first and the last, where it can prove them
        last = len(batches) - 1
        self.threads.round()
        with self.batch_states(batches) as fresh:
            for batch in batches.epoch(epoch):
                self.threads.begin()
                fresh()
                xs, yb = self.batch_inputs(batch, epoch, steps), batch[self.inputs]
                nb = int(yb.shape[0])
                planned = plan if plan is not None and 0 < steps < last else None
                if nb:
                    value, batch_count, hits, batch_nll = self.forward_backward(xs, yb, batch[-1], classify, planned)
                    loss_sum, correct = add_batch(loss_sum, value, batch_count, correct, hits)
                    count = count + batch_count
                    if nll_sum is not None:
                        nll_sum = nll_sum + batch_nll
                    if group is not None:
                        group.add(batch_count)
                else:
                    if group is None:
                        zero_grads(model)
                    batch_count = 0
                    if self.first_loss is None:
                        self.first_loss = (self.zeros(loss_sum.dtype), 0)
                stop = False
                if group is None or group.ends_group(steps):
                    if group is not None:
                        batch_count = group.finish()
                    stop = self.sigterm is not None and self.sigterm.requested
                    if comm is not None:
                        # Each rank's gradient is the mean over its own targets: weigh it by their count. SIGTERM
                        # to any rank stops every rank after this same update (agreed in the counts' collective).
                        stop = comm.allreduce_grads(model, count=int(batch_count), empty_ok=True, stop=stop)
                    if self.clip_grad_norm is not None or self.clip_grad_value is not None:  # (no call without)
                        self.clip(model)
                    if planned is None:
                        optimizer.step(model)
                    else:
                        planned.update()
                    self.threads.end()
                    if self.step_callbacks:  # after_step's hooks, where there are any
                        self.after_step(updates)
                    updates += 1
                else:
                    self.threads.end()
                steps, seen = steps + 1, seen + nb
                if stop:
                    if bar is not None:
                        bar.close()
                    raise SigtermStop(snapshot)
                if bar is not None:
                    bar.update(1)
                    now = time.perf_counter()
                    if now - last_refresh >= _REFRESH_S and seen:
                        running = float(loss_sum) / max(int(count), 1)
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
        count = max(int(self.reduce(count)), 1)
        logs = {"train_loss": loss_total / count,
                "train_accuracy": _accuracy(int(self.reduce(correct)), count, n, self.ignored) if classify else None}
        if nll_sum is not None:
            logs["train_nll"] = float(self.reduce(nll_sum)) / count
        self.open_bar = bar
        return logs

    def forward_backward(self, xs: tuple[Any, ...], yb: Any, classes: Any, classify: bool,
                         plan: PlannedStep | None = None) -> tuple[Any, Any, Any, Any]:
        """A training step's forward, loss and backward on one non-empty batch (every gradient set; no
        update): (the batch's mean loss in the sum's dtype and the count of targets it is the mean of, as
        :meth:`mean_and_count` gives them (:meth:`times` of both is the batch's loss sum), its correct count
        against ``classes`` or None unless ``classify``, its :meth:`nll_sum` or None without ``self.nll``),
        0-d on the device (the count an int where none is ignored). Notes the run's first loss sum and count.
        ``plan``: the epoch's planned step makes the same calls (:mod:`xpnet.training.planned`)."""
        model, loss = self.model, self.loss
        if plan is not None:
            value, out = plan.forward_backward(xs, yb)
        else:
            out = model.forward(*xs, train=True)
            value = loss.forward(out, yb, check=False)
            model.backward_params(loss.backward())
        mean, count = self.mean_and_count(value, int(yb.shape[0]))
        if self.first_loss is None:
            self.first_loss = (self.times(mean, count), count)
        hits = self.count_correct(out, classes, classes is yb, self.ignored) if classify else None
        return mean, count, hits, None if self.nll is None else self.nll_sum(out, yb)

    def count_correct(self, out: Any, classes: Any, labels_are_classes: bool, ignored: bool = False) -> Any:
        """How many rows of ``out`` have their first maximum at ``classes`` (0-d, on the device): the
        loss's own count where it found one for the same labels (no argmax again), else counted here.
        ``ignored`` (some label may equal the loss's ``ignore_index``): those rows count for nothing, also
        where ``ignore_index`` names a class."""
        found = self.loss.correct_count() if labels_are_classes and not ignored else None
        if found is not None:
            return found
        xp = self.dev.xp
        hits = xp.argmax(out, axis=1) == classes
        if ignored and labels_are_classes:
            hits = hits & (classes != self.loss.ignore_index)
        return xp.count_nonzero(hits)

    def sigterm_agreed(self) -> bool:
        """Whether SIGTERM came to this process (to any rank, agreed by all: one small collective)."""
        flag = self.sigterm is not None and self.sigterm.requested
        if self.comm is None:
            return flag
        xp = self.dev.xp
        flag = xp.asarray(int(flag), dtype=index_dtype(self.dev), device=self.dev.native)
        return int(self.comm.allreduce_sum(flag)) > 0

    def params_finite(self) -> Any:
        """A 0-d device bool: every parameter is finite (no host read)."""
        xp = self.dev.xp
        return fast_path("all_finite", xp, all_finite)(list(self.model.named_params().values()),
                                                       xp.asarray(True, device=self.dev.native))

    def evaluate(self, x: Any, y: Any, classes: Any, batch_size: int,
                 ignored: bool) -> tuple[float, float | None, float | None]:
        """Mean loss, accuracy and mean of ``self.nll`` (None without one) over this rank's share of (x, y)
        (x: one input or a tuple of them),
        summed over ranks, in evaluation mode: no buffer changes. The loss is the mean over every target
        (each batch weighs by :meth:`weighted`'s count: the same whatever ``batch_size``; counted on the
        host unless ``ignored``, whether some target of y may be ignored). Each batch starts the stateful
        recurrent layers from zeros (rows are sequences of their own), whose states are as they were
        afterwards. A last batch of one sample joins the one before where a BatchNorm normalises with the
        batch's statistics in evaluation too (``track_running_stats=False``), which one sample cannot give."""
        model, loss = self.model, self.loss
        xs = x if isinstance(x, tuple) else (x,)
        n = int(y.shape[0])
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        starts = list(range(lo, hi, batch_size))
        if len(starts) > 1 and hi - starts[-1] == 1 and any(isinstance(node, BatchNorm) and not node.track_running_stats
                                                             for node in model.named_modules().values()):
            starts.pop()
        loss_sum, correct = self.zeros(self.loss_sum_dtype()), self.zeros(index_dtype(self.dev))
        count = self.zeros(index_dtype(self.dev)) if ignored else 0
        nll_sum = None if self.nll is None else self.zeros(loss_sum.dtype)
        self.threads.round()
        with mode(model, False), independent_batches(model) as fresh, loss.none_ignored(not ignored):
            for i, start in enumerate(starts):
                self.threads.begin()
                fresh()
                stop = starts[i + 1] if i + 1 < len(starts) else hi
                out = model.forward(*(a[start:stop, ...] for a in xs), train=False)
                value = loss.forward(out, y[start:stop, ...], check=False)
                batch_loss, batch_count = self.weighted(value, stop - start)
                loss_sum, count = loss_sum + batch_loss, count + batch_count
                if nll_sum is not None:
                    nll_sum = nll_sum + self.nll_sum(out, y[start:stop, ...])
                if classes is not None:
                    correct = correct + self.count_correct(out, classes[start:stop, ...], classes is y, ignored)
                self.threads.end()
        count = max(int(self.reduce(count)), 1)
        return (float(self.reduce(loss_sum)) / count,
                _accuracy(int(self.reduce(correct)), count, n, ignored) if classes is not None else None,
                None if nll_sum is None else float(self.reduce(nll_sum)) / count)

    def diagnose(self, snapshot: Snapshot, batches: BatchIterator, epoch: int, steps: int) -> XpnetTrainingError:
        """The error that names the first non-finite step of ``epoch`` (:func:`xpnet.training.guard.diagnose`)."""
        return XpnetTrainingError(diagnose(self, snapshot, batches, epoch, steps))


def _accuracy(correct: int, count: int, n: int, ignored: bool) -> float:
    """``correct`` over the labels that count, as the loss's mean is: the ``count`` of targets not equal to
    ``ignore_index`` where some label may be (``ignored``), else the ``n`` rows."""
    return correct / (max(count, 1) if ignored else n)
