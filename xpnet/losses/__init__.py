"""Losses: ``forward(y, t) -> 0-d array`` (mean over the batch; SoftmaxCrossEntropy's ``reduction="sum"``
the sum) and ``backward() -> dy``.

Calling a loss, ``loss = criterion(y, t)`` as in PyTorch, gives a :class:`LossValue`: a Python float
whose ``backward()`` says what to write instead (xpnet has no autograd).
"""

from __future__ import annotations

from typing import Any

from .._user import not_here
from .base import Loss, LossValue
from .cross_entropy import SoftmaxCrossEntropy, cross_entropy_labels, cross_entropy_labels_backward
from .regression import MeanSquaredError

__all__ = ["Loss", "LossValue", "SoftmaxCrossEntropy", "MeanSquaredError", "LOSSES", "get", "check_mean",
           "cross_entropy_labels", "cross_entropy_labels_backward"]


LOSSES = {"softmax_cross_entropy": SoftmaxCrossEntropy, "cross_entropy": SoftmaxCrossEntropy,
          "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError}


def get(loss: Any) -> Loss:
    """A loss instance from an instance, a class or a name such as ``"cross_entropy"``."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, type) and issubclass(loss, Loss):
        return loss()
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]()
    raise ValueError(f"loss: expected a Loss, or one of {sorted(LOSSES)}, got {loss!r}")


def check_mean(loss: Loss, who: str) -> Loss:
    """``loss`` when it averages (every loss but one built with ``reduction="sum"``): ``who`` (``train``,
    ``evaluate``) weighs batches and ranks by their size, which a sum would count twice."""
    if getattr(loss, "reduction", "mean") != "mean":
        raise ValueError(f"{who}: the loss has reduction={loss.reduction!r}; {who} averages the loss over batches "
                         f"(and ranks), so pass the loss with reduction='mean' (PyTorch's default; for the gradient "
                         f"of a sum over a batch of B counted positions, multiply the learning rate by B)")
    return loss


# What a PyTorch user reaches for in torch.nn, and what xpnet has instead.
_PYTORCH_NAMES = {
    "CrossEntropyLoss": "xn.losses.SoftmaxCrossEntropy() takes logits and int class labels (or one-hot rows) as "
                        "CrossEntropyLoss does, the mean over the batch, with its label_smoothing; classes on the "
                        "last axis",
    "NLLLoss": "xpnet has no separate log-softmax layer: xn.losses.SoftmaxCrossEntropy() takes the logits",
    "MSELoss": "xn.losses.MeanSquaredError() (the mean over every element, as MSELoss)",
    # The book's names (both volumes).
    "SoftmaxWithLoss": "the book's SoftmaxWithLoss is xn.losses.SoftmaxCrossEntropy() (int labels or one-hot rows)",
    "TimeSoftmaxWithLoss": "the book's TimeSoftmaxWithLoss is xn.losses.SoftmaxCrossEntropy() on (N, T, V) scores "
                           "and (N, T) ids (ignore_index=-1 for the book's ignore_label)",
    "SigmoidWithLoss": "xpnet has no sigmoid cross-entropy loss: for two classes, a Linear with 2 outputs and "
                       "xn.losses.SoftmaxCrossEntropy() (the same model, reparametrised)",
}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, _PYTORCH_NAMES)
