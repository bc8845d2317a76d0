"""Checks ``xn.train`` and ``xn.evaluate`` make before any training, so that a mistake fails (or
warns) at once with what to change, not in the middle of an epoch or silently.

Each check reads the arguments only; those that look at data or weights make one pass over them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._user import warn
from ..backend import namespace
from ..datasets.batches import batch_bounds
from ..layers.activations import Sigmoid
from ..layers.base import Layer
from ..layers.container import Watcher, mode, no_train, watch
from ..layers.norm import BatchNorm
from ..layers.recurrent_state import probe_states
from ..layers.softmax import LogSoftmax, Softmax
from ..layers.tree import loose_arrays
from ..losses import KLDivLoss, NLLLoss, SigmoidCrossEntropy, SoftmaxCrossEntropy
from ..models import Model, Sequential
from ..models.inputs import probe_rows
from ..optim._blame import mixed_dtypes

__all__ = ["int_arg", "check_model", "check_last_activation", "check_callbacks", "check_data", "check_single_samples"]


def int_arg(name: str, value: Any, lo: int, hi: int | None = None, who: str = "train") -> int:
    """``value``, an int in [lo, hi] (no bool), else a ValueError naming ``who`` and ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo \
            or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{who}: {name} must be an int {bound}, got {value!r}")
    return int(value)


def check_model(model: Any, who: str) -> None:
    """``model`` is an xn.Model (a Sequential or a model of the user's) with real floating, finite parameters,
    for ``train`` all of one dtype."""
    if isinstance(model, Layer) and not isinstance(model, Model):
        raise TypeError(f"{who}: model must be a model, got a bare {model.name} layer; wrap it: "
                        f"xn.Sequential({model.name}(...))")
    if isinstance(model, (list, tuple)):
        raise TypeError(f"{who}: model must be a model, got a {type(model).__name__} of layers; wrap it: "
                        "xn.Sequential(*layers)")
    if not isinstance(model, Model):
        raise TypeError(f"{who}: model must be an xn.Sequential or xn.Model, got {type(model).__name__}" + (
            "; a state dict (what xn.load gives for a file of xn.save(model.state_dict(), path)) goes into a model "
            "built as the saved one: model.load_state_dict(d)" if isinstance(model, dict) else ""))
    missing = no_train(model) or (loose_arrays(model) if who == "train" else "")
    if missing:
        raise TypeError(f"{who}: {missing}")
    for name, p in model.named_params().items():
        xp = namespace(p)
        if not xp.isdtype(p.dtype, "real floating"):
            owner = name.rpartition(".")[0]
            raise TypeError(f"{who}: parameter {name!r} of layer {owner or 'the model itself'} "
                            f"({model.named_modules()[owner].name}) has dtype {p.dtype}; layers train in "
                            "float32 or float64 (dtype='float32')")
    if who == "train":
        _check_one_dtype(model)
        _check_something_trains(model)
    with model.device.activate():  # a model on cuda:N is checked on GPU N (Device.activate)
        bad = [name for name, p in model.named_params().items()
               if not bool(namespace(p).all(namespace(p).isfinite(p)))]
    if bad:
        raise ValueError(f"{who}: parameters {bad} hold NaN or inf before any training (a non-finite init= or "
                         "a broken file?)")


# (last layer, loss) pairs that apply an activation twice, or feed a loss what it does not take, and what to write.
_TWICE = "so it would be applied twice and train badly; drop the last layer (the model's outputs are then the logits)"
_LOG = ("takes log-probabilities, not probabilities: its result would mean nothing; make the last layer "
        "xn.layers.LogSoftmax(dim=...) over the same axis")
_LAST_LAYER = {
    (Sigmoid, SigmoidCrossEntropy): f"takes logits and applies the sigmoid itself, {_TWICE}, or keep it and pass "
                                    "loss=xn.losses.BCELoss() (loss='bce_probs'), which takes probabilities",
    (Softmax, SoftmaxCrossEntropy): f"takes logits and applies the softmax itself, {_TWICE}",
    (LogSoftmax, SoftmaxCrossEntropy): f"takes logits and applies the log-softmax itself, {_TWICE}, or keep it and "
                                       "pass loss=xn.losses.NLLLoss() (loss='nll'), which takes log-probabilities",
    (Softmax, NLLLoss): _LOG,
    (Softmax, KLDivLoss): _LOG}


def check_last_activation(model: Any, loss: Any, who: str) -> None:
    """Refuse a Sequential whose last layer (a nested Sequential's last, at any depth) is the activation the
    loss applies itself: Sigmoid with a logits BCE, Softmax or LogSoftmax with cross-entropy (the Keras habit
    of ``activation='softmax'`` with categorical cross-entropy); or Softmax before a loss on log-probabilities
    (NLLLoss, KLDivLoss). Each would train, badly, with no error. Other models are not looked into: their
    forward decides what comes last."""
    path, last = [], model
    while isinstance(last, Sequential) and last.layers:
        path.append(str(len(last.layers) - 1))
        last = last.layers[-1]
    why = next((text for (layer, kind), text in _LAST_LAYER.items()
                if isinstance(last, layer) and isinstance(loss, kind)), None)
    if why is not None:
        raise ValueError(f"{who}: the model ends in {last.name} (layer {'.'.join(path)}) and the loss {loss.name} "
                         f"{why}")


def _check_something_trains(model: Any) -> None:
    """Some parameter trains: with every one frozen (``requires_grad_(False)``) a run would only cost time
    (PyTorch's optimizer refuses the empty list of parameters that ``requires_grad`` leaves)."""
    if not model.named_params() or model.trainable_params():
        return
    children = [name for name, child in model.named_children().items() if child.named_params()]
    part = "model" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in children[-1].split(".")) if children \
        else "model"
    raise ValueError(f"train: every parameter of the model is frozen (requires_grad_(False)), so nothing would "
                     f"train; unfreeze what should: {part}.requires_grad_(True)")


def _check_one_dtype(model: Any) -> None:
    """Every parameter in one dtype: a layer of another dtype passes its dy in that dtype to the layers
    before it, whose gradients then do not match their parameters at the first step, which would name
    them rather than the odd layer. Names the fewer (the odd ones) and the fix."""
    why = mixed_dtypes(model, model.named_params())
    if why is not None:
        raise TypeError(f"train: {why}")


def check_callbacks(callbacks: Any, callback_type: type) -> list[Any]:
    """``callbacks`` as a list, each a Callback; a single callback gets a hint to wrap it."""
    if isinstance(callbacks, callback_type):
        raise TypeError(f"train: callbacks must be a list, got a single {type(callbacks).__name__}; pass "
                        f"callbacks=[{type(callbacks).__name__}(...)]")
    if isinstance(callbacks, (str, bytes, dict)) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"train: callbacks must be a list of xn.callbacks.Callback, got {type(callbacks).__name__}")
    callbacks = list(callbacks)
    for cb in callbacks:
        if not isinstance(cb, callback_type):
            raise TypeError(f"train: callbacks must be xn.callbacks.Callback instances, got {type(cb).__name__}")
    _warn_unknown_hooks(callbacks, callback_type)
    return callbacks


def _warn_unknown_hooks(callbacks: list[Any], callback_type: type) -> None:
    """Warn once about a method ``on_...`` that is no hook of ``callback_type`` (Keras' old ``on_batch_end``,
    Lightning's ``on_train_epoch_end``): xn.train would never call it, silently."""
    hooks = {name for name in dir(callback_type) if name.startswith("on_")}
    for cb in callbacks:
        unknown = sorted(name for name in dir(type(cb)) if name.startswith("on_") and name not in hooks
                         and callable(getattr(type(cb), name)))
        if unknown:
            ours = ", ".join(f"{name}{_HOOK_ARGS.get(name, '()')}" for name in sorted(hooks, key=_hook_rank))
            warn(f"train: callback {type(cb).__name__} defines {', '.join(unknown)}, which xn.train never calls; "
                 f"its hooks are {ours} (epochs count from 1; steps from 0)")
            return


_HOOK_ORDER = ["on_train_begin", "on_epoch_begin", "on_train_batch_end", "on_epoch_end", "on_train_end"]
_HOOK_ARGS = {"on_train_begin": "(state)", "on_epoch_begin": "(epoch)", "on_train_batch_end": "(batch)",
              "on_epoch_end": "(epoch, logs)"}


def _hook_rank(name: str) -> tuple[int, str]:
    return (_HOOK_ORDER.index(name) if name in _HOOK_ORDER else len(_HOOK_ORDER), name)


def check_data(a: Any, arg: str, booleans: bool = False) -> None:
    """``a`` holds real numbers: no strings, Python objects, complex numbers, nor booleans unless ``booleans``
    (targets: a binary cross-entropy's 0/1 labels, or a regression's, become the model's dtype)."""
    if isinstance(a, np.ndarray):
        kind = a.dtype.kind
        if kind in "OUSVMm":
            what = {"O": "Python objects", "U": "strings", "S": "bytes", "V": "records",
                    "M": "datetimes", "m": "timedeltas"}[kind]
            raise TypeError(f"{arg} holds {what} (dtype {a.dtype}); convert it to numbers "
                            "(np.asarray(..., dtype=np.float32), labels to int64) first")
    xp = namespace(a)
    for kind in ("complex floating",) if booleans else ("bool", "complex floating"):
        if xp.isdtype(a.dtype, kind):
            raise TypeError(f"{arg} has dtype {a.dtype}; xn.train needs real numbers (inputs as float32, "
                            "labels as int class indices)")


def check_single_samples(model: Any, x: Any, n: int, batch_size: int, size: int, drop_last: bool) -> None:
    """BatchNorm cannot normalise one sample per feature in training: refuse a batch (or a rank's part
    of one) that would hold a single sample where it sees one value per feature. ``x``: the model's
    input, or a tuple of its inputs."""
    found = _SingleValueNorms()
    with watch(model, found), mode(model, False), probe_states(model):  # the shapes watched do not depend on N
        model.forward(*(probe_rows(a) for a in (x if isinstance(x, tuple) else (x,))), train=False)
    single = list(found.names)
    if not single:
        return
    used = n - n % batch_size if drop_last else n
    parts = {hi - lo for rank in range(size) for lo, hi in batch_bounds(used, batch_size, rank, size)}
    if 1 in parts:
        where = "the last batch holds" if size == 1 else "a rank's part of a batch holds"
        raise ValueError(f"train: {where} a single sample ({n} samples, batch_size={batch_size}"
                         f"{f', {size} ranks' if size > 1 else ''}), which {', '.join(single)} cannot normalise in "
                         "training; pass drop_last=True, or pick a batch_size that leaves no single sample")


class _SingleValueNorms(Watcher):
    """The BatchNorm layers that see one value per feature in a one-sample batch, by name."""

    def __init__(self) -> None:
        self.names: dict[str, None] = {}

    def before_forward(self, name: str, layer: Any, xs: tuple[Any, ...]) -> None:
        h = xs[0]
        if isinstance(layer, BatchNorm) and (h.ndim == 2 or math.prod(h.shape[2:]) == 1):  # (N, C, L...)
            self.names[f"layer {name} ({layer.name})"] = None
