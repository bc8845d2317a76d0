"""``xn.train`` over a ``xn.datasets.TokenStream``: truncated backpropagation through time, the book's
``RnnlmTrainer``, and perplexity for sequence models.

How a run over a stream goes:

1. The stream's ids move to the device once. Its first batch stands for the data in the checks
   before training (the model's output against the loss); every id is checked against the output
   width once.
2. Epoch e (counting from 1) is the stream's epoch e - 1: ``batch_size`` rows read the corpus from
   their own offsets, ``time_size`` ids per step, each batch continuing where the one before stopped
   (one counter over the run, as the book's ``fit(max_epoch=...)``). Every recurrent layer's state is
   reset at the start of the epoch (the book's ``model.reset_state()`` between epochs), and so also
   when the guard replays an epoch or a resumed run starts one; the stateful layers carry it from
   batch to batch within the epoch.
3. With ``comm``, each rank takes its rows of every batch: a row's state stays on its rank, and the
   all-reduced gradient is that of the whole batch.
4. A validation stream is read once in evaluation mode, its state reset before and after (the book's
   ``eval_perplexity`` between ``reset_state()`` calls).

For any model trained with cross-entropy on sequences of ids (scores (N, T, C), labels (N, T)), or with
NLLLoss on log-probabilities (N, C, T) (PyTorch's layout for it), the history and the epoch line give
``train_perplexity`` (and ``val_perplexity``): exp of the mean negative log-likelihood per token that is not
``ignore_index`` (torchmetrics' Perplexity, the book's ``eval_perplexity``). That is exp of the mean loss, except
under class weights or label smoothing: then the loops also take the mean of :func:`perplexity_loss`, the same
loss without them (one more loss forward per batch, only then).
"""

from __future__ import annotations

import math
from typing import Any, Iterator

from ..backend import Device, namespace
from ..datasets.stream import TokenStream
from ..layers.container import mode
from ..losses import NLLLoss, SoftmaxCrossEntropy
from .data import probe_shape

__all__ = ["StreamBatches", "reset_states", "check_stream", "evaluate_stream", "add_perplexity", "is_sequence_loss",
           "perplexity_loss"]


def reset_states(model: Any) -> None:
    """Every recurrent layer of ``model`` starts its next forward from zeros."""
    for node in model.named_modules().values():
        if callable(getattr(node, "reset_state", None)):
            node.reset_state()


def check_stream(stream: TokenStream, batch_size: Any, arg: str) -> TokenStream:
    """The stream, after checking that ``batch_size`` (None or an int) agrees with it."""
    if batch_size is not None and batch_size != stream.batch_size:
        raise ValueError(f"{arg}: batch_size={batch_size!r} but the TokenStream cuts batches of {stream.batch_size} "
                         "rows; pass batch_size=None (or the stream's) and set it on the stream")
    return stream


def check_ids(stream: TokenStream, model: Any, x: Any, arg: str) -> None:
    """Every id of the stream is a class of the model's output, whose width a one-row forward of the
    batch ``x`` (on the model's device) tells; one read from the device. The model's state stays."""
    classes = probe_shape(model, x[0:1, ...])[-1]
    xp = stream.device.xp
    lo, hi = int(xp.min(stream.ids)), int(xp.max(stream.ids))
    if lo < 0 or hi >= classes:
        raise ValueError(f"{arg}: the TokenStream's ids lie in [{lo}, {hi}], but the model scores {classes} classes "
                         f"(ids in [0, {classes}))")


class StreamBatches:
    """A TokenStream as ``xn.train``'s batches on one rank: ``epoch(e)`` yields ``(x, t)`` for epoch e
    (from 1), this rank's rows of each, after resetting the model's recurrent state. ``used``: the rows
    of all ranks over an epoch, the count the loss's mean is taken over."""

    def __init__(self, stream: TokenStream, model: Any, dev: Device, rank: int = 0, size: int = 1):
        self.stream, self.model = stream.to(dev), model
        b = stream.batch_size
        self.lo, self.hi = b * rank // size, b * (rank + 1) // size
        self.used = b * len(stream)

    def __len__(self) -> int:
        return len(self.stream)

    def epoch(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        reset_states(self.model)
        for x, t in self.stream.epoch(epoch - 1):
            yield x[self.lo:self.hi, :], t[self.lo:self.hi, :]


def evaluate_stream(trainer: Any, stream: TokenStream, ignored: bool) -> tuple[float, float | None]:
    """The mean loss over every target of one pass of ``stream`` in evaluation mode: this rank's rows (a
    rank with none, where the stream has fewer rows than ranks, sums nothing), summed over ranks; each
    batch weighs by its count of targets (counted on the host unless ``ignored``: some id may be the loss's
    ``ignore_index``). The model's recurrent state is reset before and after. Returns it and the mean of
    ``trainer.nll`` alike (None without one)."""
    model, loss = trainer.model, trainer.loss
    batches = StreamBatches(stream, model, trainer.dev, trainer.rank, trainer.size)
    total, count = trainer.zeros(trainer.loss_sum_dtype()), 0
    nll = None if trainer.nll is None else trainer.zeros(trainer.loss_sum_dtype())
    with mode(model, False), loss.none_ignored(not ignored):
        for x, t in batches.epoch(1):
            if x.shape[0]:
                out = model.forward(x, train=False)
                batch_total, batch_count = trainer.weighted(loss.forward(out, t, check=False), int(x.shape[0]))
                total, count = total + batch_total, count + batch_count
                if nll is not None:
                    nll = nll + trainer.nll_sum(out, t)
    reset_states(model)
    count = max(int(trainer.reduce(count)), 1)
    return float(trainer.reduce(total)) / count, None if nll is None else float(trainer.reduce(nll)) / count


def is_sequence_loss(loss: Any, y: Any) -> bool:
    """Cross-entropy or NLLLoss (the mean negative log-likelihood per token either) against integer labels with
    a time axis (N, T): a sequence model, with perplexity."""
    return (isinstance(loss, (SoftmaxCrossEntropy, NLLLoss)) and y.ndim >= 2
            and namespace(y).isdtype(y.dtype, "integral"))


def perplexity_loss(loss: Any) -> Any:
    """The loss whose mean is the mean negative log-likelihood per counted token where ``loss``'s is not (class
    weights, label smoothing): ``loss``'s class without them, with its ``ignore_index``; None where ``loss``'s
    mean is that itself."""
    if getattr(loss, "weight", None) is None and not getattr(loss, "label_smoothing", 0.0):
        return None
    if isinstance(loss, SoftmaxCrossEntropy):  # its class axis too (dim=1: PyTorch's (N, C, T) logits)
        return SoftmaxCrossEntropy(ignore_index=loss.ignore_index, dim=loss.dim if loss.dim_given else None)
    return NLLLoss(ignore_index=loss.ignore_index)


def add_perplexity(logs: dict[str, Any], prefixes: tuple[str, ...] = ("train_", "val_"),
                   nll: dict[str, float | None] | None = None) -> None:
    """``train_perplexity`` and ``val_perplexity`` (``perplexity`` from ``loss`` with the prefix ""): exp
    of the mean negative log-likelihoods ``nll[prefix]`` where given, else of the mean losses (inf past
    exp's range)."""
    for prefix in prefixes:
        value = (nll or {}).get(prefix)
        value = logs.get(f"{prefix}loss") if value is None else value
        if value is not None:
            logs[f"{prefix}perplexity"] = math.exp(value) if value < 700 else math.inf
