"""The data ``xn.train`` and ``xn.evaluate`` are given: checked as a pair, put on the model's device
in its dtype, and its targets checked against the loss and the model's output."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np

from ..backend import (Device, XpnetDeviceError, device_of, index_dtype as _index_dtype, namespace, plain_array,
                       to_device, untracked)
from ..datasets.batches import BatchIterator
from ..layers.container import mode
from ..layers.embedding_bag import uncut_bags_hint
from ..layers.recurrent_state import probe_states
from ..losses import BCELoss, Loss, NLLLoss, SigmoidCrossEntropy, SoftmaxCrossEntropy
from ..losses.base import ElementwiseLoss
from ..models.inputs import check_fits, is_ids, probe_rows, to_model_dtype
from .preflight import check_data

__all__ = ["pair", "inputs", "named_inputs", "common_device", "to_model_dtype", "probe_shape", "prepare",
           "index_dtype", "is_one_hot", "binary_targets", "check_sequence_labels"]


# One long sequence of ids, where a pair of (N, T) arrays was expected: the book's RnnlmTrainer habit.
_CORPUS_HINT = ("a 1-D array of ids is one corpus: pass xn.datasets.TokenStream(corpus, batch_size, time_size), "
                "whose targets are the next ids (the book's RnnlmTrainer.fit(xs, ts, ...) and eval_perplexity(model, "
                "corpus))")


def _one_corpus(a: Any) -> bool:
    return getattr(a, "ndim", None) == 1 and namespace(a).isdtype(a.dtype, "integral")


def _inputs_taken(model: Any) -> int:
    """How many inputs the model's forward needs (its positional parameters without a default, but train)."""
    return sum(p.name != "train" and p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               for p in inspect.signature(model.forward).parameters.values())


def pair(data: Any, arg: str) -> tuple[Any, Any]:
    """``data`` as ``(x, y)``, checked; ``x`` is one array, or a tuple of arrays for a model with
    several inputs (``((x1, x2), y)``), each with the samples of y."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        got = f"an array of shape {tuple(data.shape)}" if hasattr(data, "shape") else type(data).__name__
        if _one_corpus(data):
            got += f"; {_CORPUS_HINT}"
        if isinstance(data, BatchIterator):  # a DataLoader habit
            got = (f"a BatchIterator: xpnet cuts the batches itself; pass its arrays as (x, y) (and to xn.train "
                   f"batch_size={data.batch_size}, shuffle={data.shuffle}, drop_last={data.drop_last}, "
                   f"seed={data.seed})")
        elif hasattr(data, "tensors") or hasattr(getattr(data, "dataset", None), "tensors"):  # PyTorch's habit
            held = "dataset" if hasattr(data, "tensors") else "loader.dataset"
            size = getattr(data, "batch_size", None)
            got = (f"a PyTorch {type(data).__name__}: xpnet cuts (and shuffles) the batches itself, on the device; "
                   f"pass the tensors as the pair, ({held}.tensors[0], {held}.tensors[1])"
                   + (f", and {_loader_keywords(data, arg)} to xn.{_call(arg)}" if size is not None else ""))
        elif hasattr(data, "dataset") and hasattr(data, "batch_size"):
            got = (f"a {type(data).__name__} (a loader of batches): xpnet cuts the batches itself, on the device; "
                   f"pass all the samples as two arrays: x, y = xn.datasets.stack_samples(loader.dataset) (each "
                   f"dataset[i] an (x, y)), then xn.{_call(arg)}(model, (x, y), ..., {_loader_keywords(data, arg)})")
        elif _samples(data):
            got = (f"{type(data).__name__}, a dataset of {len(data)} samples (PyTorch's Dataset: dataset[i] one "
                   f"sample), which xn.{_call(arg)} does not read sample by sample; pass all the samples as two "
                   f"arrays: x, y = xn.datasets.stack_samples(data) (each data[i] an (x, y)), then "
                   f"xn.{_call(arg)}(model, (x, y), batch_size=...)")
        raise TypeError(f"{arg}: expected a pair (x, y), e.g. xn.train(model, (x, y), ...), got {got}")
    several = isinstance(data[0], tuple)
    if several and not data[0]:
        raise ValueError(f"{arg}: x is an empty tuple; pass (x1, x2, ...) for a model with several inputs")
    names = [f"x[{i}]" if several else "x" for i in range(len(inputs(data[0])))]
    xs = tuple(_array(a, arg, name) for a, name in zip(inputs(data[0]), names))
    y = _array(data[1], arg, "y")
    for name, x in zip(names, xs):
        check_data(x, f"{arg}: {name}")
    check_data(y, f"{arg}: y", booleans=True)
    for name, x in zip(names, xs):
        if x.ndim < 1 or y.ndim < 1:
            raise ValueError(f"{arg}: {name} and y must have a sample axis, got shapes {tuple(x.shape)} and "
                             f"{tuple(y.shape)}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{arg}: {name} has {x.shape[0]} samples but y has {y.shape[0]}; they must match"
                             + uncut_bags_hint(xs))
    if y.shape[0] < 1:
        raise ValueError(f"{arg}: no samples")
    return (xs if several else xs[0]), y


def _array(a: Any, arg: str, name: str) -> Any:
    """``a`` (x or y of the pair) as an array; a dataset object is refused before NumPy reads it item by item (one
    whose ``__getitem__`` never raises IndexError kept ``np.asarray`` reading forever)."""
    if hasattr(a, "shape"):
        return plain_array(untracked(a), f"{arg}: {name}")
    if not isinstance(a, (tuple, list)) and _samples(a):
        raise TypeError(f"{arg}: {name} is {type(a).__name__}, a dataset of {len(a)} samples (PyTorch's Dataset: "
                        f"dataset[i] one sample), where xn.{_call(arg)} takes arrays; pass all the samples as two "
                        f"arrays: x, y = xn.datasets.stack_samples(data) (each data[i] an (x, y)), then "
                        f"xn.{_call(arg)}(model, (x, y), batch_size=...)")
    return np.asarray(a)


def _samples(data: Any) -> bool:
    """Whether ``data`` is a dataset of samples (PyTorch's Dataset: ``len`` and ``data[i]``; a list of (x, y)); an
    array (which has both) is not: its message says its shape (one corpus of ids: TokenStream)."""
    if hasattr(data, "shape"):
        return False
    if isinstance(data, (tuple, list)):
        return bool(data) and isinstance(data[0], (tuple, list)) and len(data[0]) == 2
    return hasattr(type(data), "__len__") and hasattr(type(data), "__getitem__") and not isinstance(data, (str, dict))


def _call(arg: str) -> str:
    """``train`` or ``evaluate``: the call whose data ``arg`` names (validation data is xn.train's)."""
    return "evaluate" if arg.startswith("evaluate") else "train"


def _loader_keywords(loader: Any, arg: str) -> str:
    """The keywords of ``xn.train`` (or ``evaluate``) that cut the batches a DataLoader yields: its batch size and,
    for training, whether it shuffles (a RandomSampler; xn.train shuffles unless told not to, PyTorch's DataLoader
    only when told to) and drops a last short batch."""
    size = f"batch_size={loader.batch_size}"
    if _call(arg) == "evaluate" or "train" not in arg:
        return size
    shuffle = type(getattr(loader, "sampler", None)).__name__ == "RandomSampler"
    return f"{size}, shuffle={shuffle}, drop_last={bool(getattr(loader, 'drop_last', False))}"


def inputs(x: Any) -> tuple[Any, ...]:
    """The model's inputs: ``x`` itself as a tuple of one, or the tuple of several."""
    return x if isinstance(x, tuple) else (x,)


def common_device(named: dict[str, Any]) -> Device | None:
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


def probe_shape(model: Any, *probes: Any) -> tuple[int, ...]:
    """The shape of the model's output for ``probes`` (inputs of a row or two), in evaluation mode; a stateful
    model's recurrent layers start from zeros for it and keep the state they carried."""
    with mode(model, False), probe_states(model):
        return tuple(model.forward(*probes, train=False).shape)


def prepare(x: Any, y: Any, model: Any, loss: Loss, dev: Device, arg: str) -> tuple[Any, Any, Any]:
    """``(x, y, classes)`` on ``dev`` after checking y against the loss and the model's output.

    ``classes`` is the (N,) class index per sample when accuracy makes sense, else None; for
    SigmoidCrossEntropy with one target per sample, the targets themselves (the loss counts the hits).
    """
    xp = dev.xp
    dtype = model.dtype
    first = inputs(x)[0]
    if dtype is None:
        dtype = first.dtype if namespace(first).isdtype(first.dtype, "real floating") else "float32"
        dtype = getattr(xp, str(dtype).rsplit(".", 1)[-1])
    for i, a in enumerate(inputs(x)):
        if not is_ids(model, a):
            check_fits(a, dev, dtype, f"{arg}: x" if not isinstance(x, tuple) else f"{arg}: x[{i}]")
    xs = tuple(to_device(a, dev) if is_ids(model, a) else to_model_dtype(a, dev, dtype) for a in inputs(x))
    x = xs if isinstance(x, tuple) else xs[0]
    y = to_device(y, dev)
    probes = [probe_rows(a) for a in xs]
    try:
        out_shape = probe_shape(model, *probes)
    except XpnetDeviceError:
        raise  # x was put on the model's device here: a device mismatch is not the data's shape
    except (ValueError, TypeError) as exc:
        # The layer saw a probe of two samples; name the data's shape, which is what the user passed.
        message = str(exc)
        for probe, a in zip(probes, xs):
            message = message.replace(str(tuple(probe.shape)), str(tuple(a.shape)))
        shapes = " and ".join(str(tuple(a.shape)) for a in xs)
        if len(xs) == 1 and is_ids(model, xs[0]) and _one_corpus(xs[0]):
            message += f"; {_CORPUS_HINT}"
        elif len(xs) < _inputs_taken(model) and getattr(model, "inputs_hint", ""):
            message += f"; {model.inputs_hint}"
        raise type(exc)(f"{arg}: x of shape {shapes} does not fit the model: {message}") from None
    if isinstance(loss, (SoftmaxCrossEntropy, NLLLoss)) and len(out_shape) > 2:
        axis = 1 if isinstance(loss, NLLLoss) else loss.dim  # SoftmaxCrossEntropy(dim=1): PyTorch's (N, C, T)
        return x, check_sequence_labels(y, out_shape, loss, dev, arg, axis), None
    if isinstance(loss, (SoftmaxCrossEntropy, NLLLoss)):
        if len(out_shape) != 2:
            raise ValueError(f"{arg}: {loss.name} needs model outputs of shape (N, C), the model gives {out_shape}")
        c = out_shape[1]
        if y.ndim == 1:
            if not xp.isdtype(y.dtype, "integral"):
                raise TypeError(f"{arg}: {loss.name} with targets of shape (N,) needs integer class indices, got "
                                f"dtype {y.dtype}; convert with y.astype('int64'), or pass one-hot rows (N, {c})")
            y = _class_labels(y, c, loss, dev, arg)
            return x, y, y
        if isinstance(loss, NLLLoss):
            raise ValueError(f"{arg}: NLLLoss needs (N,) integer class indices, got targets of shape "
                             f"{tuple(y.shape)}; for target probabilities use KLDivLoss")
        if y.ndim != 2 or y.shape[1] != c:
            raise ValueError(f"{arg}: {loss.name} needs (N,) class indices or (N, {c}) one-hot rows for a model "
                             f"with {c} outputs, got targets of shape {tuple(y.shape)}")
        if float(xp.min(y)) < 0:
            raise ValueError(f"{arg}: {loss.name} targets of shape (N, {c}) are probabilities and must be >= 0, "
                             f"got a minimum of {float(xp.min(y)):g}")
        check_fits(y, dev, dtype, f"{arg}: y")
        y = y if y.dtype == dtype else xp.astype(y, dtype)
        return x, y, xp.argmax(y, axis=1)
    if isinstance(loss, (SigmoidCrossEntropy, BCELoss)):
        return x, *binary_targets(y, out_shape, loss, dev, dtype, arg)
    if isinstance(loss, ElementwiseLoss):
        _check_shaped_like_output(y, out_shape, loss, arg)
        check_fits(y, dev, dtype, f"{arg}: y")
        y = y if y.dtype == dtype else xp.astype(y, dtype)
    return x, y, (xp.argmax(y, axis=1) if is_one_hot(y) else None)


def binary_targets(y: Any, out_shape: tuple[int, ...], loss: Any, dev: Device, dtype: Any,
                   arg: str) -> tuple[Any, Any]:
    """(targets, classes) for a binary cross-entropy: 0/1 labels of any integer or bool dtype, or
    probabilities, in the model's dtype and shape ((N,) labels for an (N, 1) output become a column), checked
    to lie in [0, 1]; classes are the targets where each sample has one (the accuracy's), else None."""
    xp = dev.xp
    if y.ndim == 1 and out_shape[1:] == (1,):
        y = xp.reshape(y, (y.shape[0], 1))
    _check_shaped_like_output(y, out_shape, loss, arg)
    if xp.isdtype(y.dtype, "bool"):
        y = xp.astype(y, dtype)
    lo, hi = float(xp.min(y)), float(xp.max(y))
    if not (lo >= 0 and hi <= 1):
        raise ValueError(f"{arg}: {loss.name} needs targets in [0, 1] (0/1 labels or probabilities), got values in "
                         f"[{lo:g}, {hi:g}]; for more than two classes use SoftmaxCrossEntropy")
    y = y if y.dtype == dtype else xp.astype(y, dtype)
    return y, (y if math.prod(out_shape[1:]) == 1 else None)


def _check_shaped_like_output(y: Any, out_shape: tuple[int, ...], loss: Any, arg: str) -> None:
    """Targets of an elementwise loss have the model output's shape, N aside."""
    if tuple(y.shape[1:]) != out_shape[1:]:
        raise ValueError(f"{arg}: {loss.name} needs targets shaped like the model output (N, "
                         f"{', '.join(map(str, out_shape[1:]))}), got {tuple(y.shape)}")


def check_sequence_labels(y: Any, out_shape: tuple[int, ...], loss: Any, dev: Device, arg: str,
                          axis: int = -1) -> Any:
    """Integer labels (N, T, ...) for scores (N, T, ..., C) (a sequence model; ``axis=1``: (N, C, T, ...), NLLLoss's
    classes, and SoftmaxCrossEntropy's with ``dim=1``), each in [0, C) or equal to the loss's ``ignore_index``;
    returned in the index dtype."""
    xp, c = dev.xp, out_shape[axis]
    positions = tuple(n for i, n in enumerate(out_shape) if i not in (0, axis % len(out_shape)))
    if tuple(y.shape[1:]) != positions or not xp.isdtype(y.dtype, "integral"):
        last = axis == 1 and tuple(y.shape[1:]) == tuple(out_shape[1:-1])
        first = axis % len(out_shape) == len(out_shape) - 1 and tuple(y.shape[1:]) == tuple(out_shape[2:])
        hint = ("; SoftmaxCrossEntropy(dim=1) takes the classes on axis 1, (N, C, T), as PyTorch's: for (N, T, C) "
                "scores, the book's, leave dim out: loss=xn.losses.SoftmaxCrossEntropy()"
                if last and isinstance(loss, SoftmaxCrossEntropy) else
                "; NLLLoss takes the classes on axis 1, (N, C, T), as PyTorch's: for (N, T, C) scores drop the "
                "final LogSoftmax and pass loss='cross_entropy' (the same loss on the logits, with perplexity)"
                if last else "; SoftmaxCrossEntropy takes the classes on the last axis, (N, T, C): for PyTorch's "
                "(N, C, T) scores pass loss=xn.losses.SoftmaxCrossEntropy(dim=1)" if first else "")
        raise ValueError(f"{arg}: {loss.name} on scores of shape (N, {', '.join(map(str, out_shape[1:]))}) needs "
                         f"integer labels of shape (N, {', '.join(map(str, positions))}), got "
                         f"{tuple(y.shape)} of dtype {y.dtype}{hint}")
    return _class_labels(y, c, loss, dev, arg)


def _class_labels(y: Any, c: int, loss: Any, dev: Device, arg: str) -> Any:
    """Integer labels each in [0, C) or equal to the loss's ``ignore_index`` (PyTorch's, for (N,) labels as for
    a sequence's: those count for nothing), in the index dtype."""
    xp = dev.xp
    lo, hi = int(xp.min(y)), int(xp.max(y))
    if lo < 0 or hi >= c:
        ignore = loss.ignore_index
        if bool(xp.any((y != ignore) & ((y < 0) | (y >= c)))):
            raise ValueError(f"{arg}: labels must lie in [0, {c}) for a model with {c} outputs (or equal "
                             f"ignore_index={ignore}), got values in [{lo}, {hi}]")
    index = index_dtype(dev)
    return y if y.dtype == index else xp.astype(y, index)


def index_dtype(dev: Device) -> Any:
    """The namespace's index dtype for labels and counts: int64, or int32 on JAX without x64 (which
    would truncate int64 to it with a warning on every conversion)."""
    return _index_dtype(dev.xp, dev.native)


def is_one_hot(y: Any) -> bool:
    xp = namespace(y)
    if y.ndim != 2 or y.shape[1] < 2 or not xp.isdtype(y.dtype, "real floating"):
        return False
    return bool(xp.all((y == 0.0) | (y == 1.0))) and bool(xp.all(xp.sum(y, axis=1) == 1.0))


def named_inputs(label: str, x: Any) -> dict[str, Any]:
    """``{label: x}``, or ``{"label[0]": x1, ...}`` for several inputs: for checks that name what they find."""
    xs = inputs(x)
    return {label: xs[0]} if len(xs) == 1 and not isinstance(x, tuple) else \
        {f"{label}[{i}]": a for i, a in enumerate(xs)}
