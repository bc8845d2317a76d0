"""``xn.evaluate``: the mean loss (and accuracy, perplexity) of a model on data, where the model is: the
evaluation pass of :class:`~xpnet.training.trainer.Trainer`, or of :func:`~xpnet.training.streams.evaluate_stream`
over a token stream."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from .._user import keyword_hints
from ..backend import no_autograd
from ..backend.threads import blas_threads as threads_context
from ..datasets.stream import TokenStream
from ..distributed._checks import describe_settings
from ..distributed._guard import collective
from ..layers.recurrent import refuse_time_first
from ..layers.evaluation_look import looked
from ..losses import check_mean, get as _get_loss
from ..models.ids import ids_checked_once
from .data import common_device, inputs, named_inputs, pair, prepare
from .preflight import check_last_activation, check_model, int_arg
from .streams import (add_perplexity, check_ids, check_stream, evaluate_stream, is_sequence_loss,
                      perplexity_loss)
from .trainer import Trainer

__all__ = ["evaluate", "EVAL_BATCH", "LOSS_HINT", "loss_settings"]

EVAL_BATCH = 1024  # xn.evaluate's default batch_size, and xn.train's least for validation

LOSS_HINT = "loss=... (a loss object or a name: loss=xn.losses.SoftmaxCrossEntropy(), loss='cross_entropy')"


def loss_settings(loss: Any) -> dict[str, Any]:
    """The loss's settings that every rank must share (``comm``)."""
    return describe_settings(_get_loss(loss))


_EVALUATE_KEYWORDS = {name: hint for names, hint in (
    (("verbose",), "xn.evaluate prints nothing; it returns the figures as a dict"),
    (("criterion", "loss_fn"), LOSS_HINT),
    (("metrics",), "xn.evaluate returns the loss, and the accuracy for cross-entropy (the perplexity for sequences)"),
    (("device",), "xn.evaluate runs where the model is: model.to(device) first (xn.train leaves it on its device)"),
    (("x", "y"), "pass the data as one pair: xn.evaluate(model, (x, y), loss=...)"),
) for name in names}


@keyword_hints("evaluate", _EVALUATE_KEYWORDS)
@collective("xn.evaluate", data={"data": "evaluate data"}, same=("batch_size",),
            settings={"model": describe_settings, "loss": loss_settings}, weights="model")
def evaluate(model: Any, data: Any, *, loss: Any, batch_size: int | None = None, comm: Any = None,
             blas_threads: Any = None) -> dict[str, Any]:
    """Mean loss and accuracy of ``model`` on ``data = (x, y)``, on the model's device.

    Returns ``{"loss": float, "accuracy": float or None}``; accuracy is None where the targets are not
    class labels (e.g. MSE against real values). The loss is the mean over every target of the data (the
    labels that are not the loss's ``ignore_index``: padding counts for nothing), whatever ``batch_size``.
    ``batch_size`` (default 1024) bounds memory. With ``comm`` each rank evaluates its share and the sums
    are reduced; every rank must hold the same weights (a digest of each parameter and buffer is compared:
    a difference raises on every rank, naming the first; ``comm.broadcast_params(model)`` gives every rank
    rank 0's). ``blas_threads`` as in ``xn.train``.
    Over arrays each row is a sequence of its own for stateful recurrent layers: every batch starts them
    from zeros, and the state they carried before the call is theirs again after it (so is it in
    ``xn.train``'s validation). The loss object is left as it was, and so is the model after a training forward
    whose backward has not run (as ``model.predict`` leaves it): a validation line between a step's loss and its
    backward leaves the backward to that step's forward, as PyTorch's, whose criterion keeps nothing.

    ``data`` may also be a ``xn.datasets.TokenStream``: one pass over it as ``xn.train`` reads a
    validation stream (the model's recurrent state reset before and after; ``batch_size`` None or the
    stream's). For cross-entropy over sequences of ids (a stream, or labels (N, T)) the result also holds
    ``"perplexity"``, exp of the mean negative log-likelihood per counted token (of the mean loss, but without
    class weights or label smoothing).
    """
    check_model(model, "evaluate")
    loss = check_mean(_get_loss(loss), "evaluate")
    check_last_activation(model, loss, "evaluate")
    stream = check_stream(data, batch_size, "evaluate") if isinstance(data, TokenStream) else None
    x, y = pair(data if stream is None else next(stream.epoch(0)), "evaluate data")
    batch_size = EVAL_BATCH if batch_size is None else int_arg("batch_size", batch_size, 1, who="evaluate")
    if stream is not None or batch_size < int(y.shape[0]) or comm is not None:
        refuse_time_first(model, "xn.evaluate")
    dev = model.device
    common_device({"model": dev, **named_inputs("x", x), "y": y})
    threads = threads_context(blas_threads, dev)
    # a look: a backward after it serves the forward before it (a step's), as after predict
    with dev.activate(), threads as tuner, looked(model), _as_it_was(loss):  # on cuda:N, GPU N (Device.activate)
        x, y, classes = prepare(x, y, model, loss, dev, "evaluate data")
        trainer = Trainer(model, loss, None, dev, comm, progress=False)
        trainer.threads = tuner
        if stream is not None or is_sequence_loss(loss, y):
            trainer.nll = perplexity_loss(loss)
        datasets = [(stream.xs,) if stream is not None else inputs(x)]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), no_autograd(dev.xp), \
                ids_checked_once(model, datasets):
            if stream is None:
                value, accuracy, nll = trainer.evaluate(x, y, classes, batch_size, loss.ignores_any(y))
            else:
                check_ids(stream, model, x, "evaluate data")
                (value, nll), accuracy = evaluate_stream(trainer, stream, loss.ignores_any(stream.ids)), None
    result = {"loss": value, "accuracy": accuracy}
    if stream is not None or is_sequence_loss(loss, y):
        add_perplexity(result, ("",), {"": nll})
    return result


@contextmanager
def _as_it_was(loss: Any) -> Iterator[None]:
    """``loss`` left as it was: a backward after ``xn.evaluate`` (a validation line between a step's loss and its
    backward) serves the step's forward, as PyTorch's criterion, which keeps nothing, and as ``looked`` leaves the
    model (``Model.predict``'s)."""
    own = getattr(loss, "__dict__", None)
    before = None if own is None else dict(own)
    try:
        yield
    finally:
        if before is not None:
            for key in [k for k in own if k not in before]:
                del own[key]
            own.update(before)
