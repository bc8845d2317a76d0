"""The guard of ``xn.train``: a :class:`Snapshot` of each epoch's start, and, when the epoch's loss or
weights went non-finite, a replay of it from there that watches every layer and every update and names
the first step, the layer and the value (:func:`diagnose`; with ``comm`` the ranks agree on each finding)."""

from __future__ import annotations

from typing import Any, Iterable

from ..backend import dtype_name, namespace
from ..layers.container import Watcher, watch
from ..layers.grads import Grads
from ..optim import Optimizer
from ..optim.lr_scheduler.base import group_lrs
from .checkpoint import rng_states, set_rng_states

__all__ = ["Snapshot", "all_finite", "diagnose", "replay_step", "zero_grads"]

_AFTER_ALLREDUCE = "the gradients after the all-reduce over ranks"
_INPUT = "the input batch"


class Snapshot:
    """Device copies of params, buffers and optimizer state, the Dropout generator states, and the
    ``state_dict()`` of ``callbacks`` (those with per-step hooks: an ``LRScheduler(..., interval="step")``,
    ``AveragedWeights``), which is their state after the last complete epoch, kept until the next ends."""

    def __init__(self, model: Any, optimizer: Optimizer, callbacks: Iterable[Any] = ()):
        self.state = {k: _copy(v) for k, v in model.state().items()}
        sd = optimizer.state_dict()
        sd["state"] = {n: {k: _copy(v) for k, v in s.items()} for n, s in sd["state"].items()}
        self.optimizer = sd
        self.rng = rng_states(model)
        self.callbacks = [(cb, cb.state_dict()) for cb in callbacks]

    def restore(self, model: Any, optimizer: Optimizer) -> None:
        for k, v in self.state.items():
            model.set_param(k, _copy(v))
        sd = dict(self.optimizer)
        sd["state"] = {n: {k: _copy(v) for k, v in s.items()} for n, s in sd["state"].items()}
        optimizer.load_state_dict(sd)
        set_rng_states(model, self.rng)
        for cb, state in self.callbacks:  # a scheduler's sets the lr again: the same as the optimizer's
            cb.load_state_dict(state)


def _copy(a: Any) -> Any:
    return namespace(a).asarray(a, copy=True)


def all_finite(arrays: list[Any], ok: Any) -> Any:
    """``ok`` (a 0-d bool on the arrays' device) and whether every value of ``arrays`` is finite, as a 0-d device
    bool, nothing read back (the epoch's one check of the weights), portable: three launches an array on a GPU, where
    CuPy's fast path launches one for up to 32 arrays (``xpnet.backend.fast_cupy.all_finite``)."""
    xp = namespace(ok)
    for a in arrays:
        ok = ok & xp.all(xp.isfinite(a))
    return ok


def _all_finite(a: Any) -> bool:
    """Whether every value of ``a`` is finite: an array, or a layer's tuple of them (an LSTM's ``(out, (h_n, c_n))``
    with return_state=True, MultiheadAttention's output and weights or None)."""
    if a is None or isinstance(a, (tuple, list)):
        return all(_all_finite(v) for v in a or ())
    xp = namespace(a)
    return bool(xp.all(xp.isfinite(a)))


def diagnose(trainer: Any, snapshot: Snapshot, batches: Any, epoch: int, steps: int) -> str:
    """Replay ``epoch`` from its starting weights (and the per-step callbacks' state: each step runs at
    the lr its schedule gave it, and the hooks run after each update as in the epoch; the gradients of each
    group of ``trainer.accumulate`` batches summed before its update as in the epoch), checking every layer
    and every update, up to the first bad step; the model is left with the weights, and the callbacks
    with the state, from before that step. With ``comm``
    the ranks agree on each step's finding, which names the rank(s) where it was seen. Returns the
    message of the error that ``trainer`` (a :class:`~xpnet.training.trainer.Trainer`) raises."""
    model, comm = trainer.model, trainer.comm
    snapshot.restore(model, trainer.optimizer)

    def agreed(where: str | None) -> str | None:
        if comm is None:
            return where
        found = [(r, w) for r, w in enumerate(comm.allgather_object(where)) if w is not None]
        first = [(r, w) for r, w in found if w != _AFTER_ALLREDUCE] or found  # where it came from
        return "; ".join(f"rank {r}: {w}" for r, w in first) or None

    group = trainer.gradient_mean(len(batches))
    updates = 0
    with trainer.batch_states(batches) as fresh:
        for step, batch in enumerate(batches.epoch(epoch)):
            if step >= steps:
                break
            fresh()
            ends = group is None or group.ends_group(step)
            where = agreed(replay_step(trainer, trainer.batch_inputs(batch, epoch, step), batch[trainer.inputs],
                                       group, ends))
            which = f"{'step' if group is None else 'batch'} {step + 1} of {len(batches)}"
            if where is not None:
                kept = "from before that step" if group is None else "that batch ran with"
                return (
                    f"training stopped: the loss became non-finite in epoch {epoch}, {which}; first non-finite "
                    f"value: {where}. The model keeps the weights {kept}. Try a smaller learning rate, check the "
                    f"data for NaN/inf, or scale the inputs.{'' if _INPUT in where else _range_hint(model)}")
            if not ends:
                continue
            trainer.clip(model)
            before = Snapshot(model, trainer.optimizer)
            trainer.optimizer.step(model)
            where = agreed(next((f"parameter {k!r}" for k, p in model.named_params().items()
                                 if not _all_finite(p)), None))
            if where is not None:
                before.restore(model, trainer.optimizer)
                which = which if group is None else \
                    f"after batches {step - step % group.every + 1} to {step + 1} of {len(batches)} (accumulated)"
                return (
                    f"training stopped: the update of epoch {epoch}, {which} made "
                    f"{where} non-finite, with the loss and every gradient finite ({trainer.optimizer.name}, "
                    f"{_lrs(trainer.optimizer)}). The model keeps the weights from before that "
                    f"{'step' if group is None else 'update'}. Try a smaller learning rate.{_range_hint(model)}")
            trainer.after_step(updates)
            updates += 1
    return (
        f"training stopped: the loss or the weights of epoch {epoch} became non-finite, but replaying the "
        "epoch from its starting weights did not reproduce it layer by layer (a layer that is not "
        f"deterministic on {trainer.dev.name}?)")


def _range_hint(model: Any) -> str:
    """For a model in a dtype of small range (float16: 65504), that a value past it is inf: the likely cause."""
    dtype = model.dtype
    if dtype is None:
        return ""
    largest = float(model.device.xp.finfo(dtype).max)
    if largest >= 1e30:  # float32, float64, bfloat16: their range is seldom what ran out
        return ""
    name = str(dtype).rsplit(".", 1)[-1]
    return (f" Note the model is {name}, whose largest number is {largest:g}: a value past it is inf, so the "
            "activations or gradients may simply have outgrown it (train in float32, or keep them small: a "
            "smaller learning rate, scaled inputs, BatchNorm).")


def replay_step(trainer: Any, xs: tuple[Any, ...], yb: Any, group: Any = None, ends: bool = True) -> str | None:
    """Forward/backward one batch watching every layer (by dotted name: ``3`` in a Sequential,
    ``stage1.0.conv1`` in a model); where the first non-finite value appeared. With ``group`` (a
    :class:`~xpnet.training.accumulate.GradientMean`) the gradients are added to it, and where the batch
    ``ends`` the group, its mean becomes the gradients (all-reduced with ``comm``)."""
    model, loss = trainer.model, trainer.loss
    found = _NonFinite(None if all(_all_finite(x) for x in xs) else _INPUT)
    nb, count = int(yb.shape[0]), 0
    if nb:
        with watch(model, found):
            value = loss.forward(model.forward(*xs, train=True), yb, check=False)
            if not _all_finite(value):
                found.note(f"the loss ({loss.name}) with every layer output finite")
            model.backward_params(loss.backward())
            total, count = trainer.weighted(value, nb)
            count = int(count)
            if not _all_finite(total):  # what the epoch sums: a finite mean times the count can pass the range
                found.note(f"the loss ({loss.name}) times its batch's {count} targets, as the epoch sums it: past "
                           f"the range of {dtype_name(total)}")
        bad = [k for k, g in model.named_grads().items() if not _all_finite(g)]
        if bad:  # a gradient a model of the user's computes itself
            found.note(f"the gradient of {bad[0]!r}")
        if group is not None:
            group.add(count)
    elif group is None:
        zero_grads(model)
    first = found.first
    if group is not None:
        if not ends:
            return first
        count = group.finish()
    if trainer.comm is not None:
        trainer.comm.allreduce_grads(model, count=count, empty_ok=True)
        if first is None and not all(_all_finite(g) for g in model.named_grads().values()):
            first = _AFTER_ALLREDUCE
    return first


class _NonFinite(Watcher):
    """Where the first non-finite value of a step appeared (``first``; None while all is finite)."""

    def __init__(self, first: str | None):
        self.first = first

    def note(self, where: str) -> None:
        if self.first is None:
            self.first = where

    def forward(self, name: str, layer: Any, xs: Any, y: Any) -> None:
        if self.first is None and not _all_finite(y):
            self.note(f"the output of layer {name} ({layer.name})")

    def backward(self, name: str, layer: Any, dy: Any, dx: Any) -> None:
        if self.first is not None:
            return
        for key, g in layer.grads.items():
            if not _all_finite(g):
                self.note(f"the gradient of {key!r} in layer {name} ({layer.name})")
        if dx is not None and not _all_finite(dx):
            self.note(f"the input gradient of layer {name} ({layer.name})")


def zero_grads(model: Any) -> None:
    for layer in model.named_modules().values():
        layer.grads = Grads(layer.params, type(layer), {k: namespace(v).zeros_like(v) for k, v in layer.params.items()})


def _lrs(optimizer: Any) -> str:
    """``lr=0.1``, or with several param groups each group's, ``lrs=[0.1, 0.01]``."""
    lrs = group_lrs(optimizer)
    return f"lr={lrs[0]:g}" if len(lrs) == 1 else f"lrs=[{', '.join(f'{lr:g}' for lr in lrs)}]"
