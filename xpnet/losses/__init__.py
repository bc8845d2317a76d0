"""Losses: ``forward(y, t) -> 0-d array`` (the mean over the batch, or with ``reduction="sum"`` the sum) and
``backward() -> dy``. Classification: SoftmaxCrossEntropy (``cross_entropy``), SigmoidCrossEntropy
(``bce``, PyTorch's BCEWithLogitsLoss); on probabilities and log-probabilities: BCELoss (``bce_probs``),
NLLLoss (``nll``), KLDivLoss (``kl_div``), PyTorch's; regression: MeanSquaredError (``mse``), MeanAbsoluteError (``l1``,
PyTorch's L1Loss), SmoothL1Loss, HuberLoss; PyTorch's SoftMarginLoss, HingeEmbeddingLoss, MultiLabelSoftMarginLoss
and PoissonNLLLoss.

Calling a loss, ``loss = criterion(y, t)`` as in PyTorch, gives a :class:`LossValue`: a Python float
whose ``backward()`` says what to write instead (xpnet has no autograd).
"""

from __future__ import annotations

from typing import Any

from .._user import did_you_mean, not_here
from .base import Loss
from .binary import SigmoidCrossEntropy
from .cross_entropy import SoftmaxCrossEntropy, cross_entropy_labels, cross_entropy_labels_backward
from .margins import HingeEmbeddingLoss, MultiLabelSoftMarginLoss, PoissonNLLLoss, SoftMarginLoss
from .nll import NLLLoss
from .probabilities import BCELoss, KLDivLoss
from .regression import HuberLoss, MeanAbsoluteError, MeanSquaredError, SmoothL1Loss
from .value import LossValue

__all__ = ["Loss", "LossValue", "SoftmaxCrossEntropy", "SigmoidCrossEntropy", "MeanSquaredError", "MeanAbsoluteError",
           "SmoothL1Loss", "HuberLoss", "NLLLoss", "BCELoss", "KLDivLoss", "SoftMarginLoss",
           "MultiLabelSoftMarginLoss", "PoissonNLLLoss", "HingeEmbeddingLoss", "LOSSES", "get", "check_mean",
           "cross_entropy_labels", "cross_entropy_labels_backward"]


LOSSES = {"softmax_cross_entropy": SoftmaxCrossEntropy, "cross_entropy": SoftmaxCrossEntropy,
          "sigmoid_cross_entropy": SigmoidCrossEntropy, "bce": SigmoidCrossEntropy,
          "bce_with_logits": SigmoidCrossEntropy, "nll": NLLLoss, "nll_loss": NLLLoss, "bce_probs": BCELoss,
          "kl_div": KLDivLoss,
          "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
          "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError, "l1": MeanAbsoluteError,
          "smooth_l1": SmoothL1Loss, "huber": HuberLoss}


def get(loss: Any) -> Loss:
    """A loss instance from an instance, a class or a name such as ``"cross_entropy"``."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, type) and issubclass(loss, Loss):
        return loss()
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]()
    if isinstance(loss, str) and loss in _OTHER_MEANING:
        raise ValueError(f"loss={loss!r}: {_OTHER_MEANING[loss]}")
    raise ValueError(f"loss: expected a Loss, or one of {sorted(LOSSES)}, got {loss!r}{did_you_mean(loss, LOSSES)}")


def check_mean(loss: Loss, who: str) -> Loss:
    """``loss`` when it averages (every loss but one built with ``reduction="sum"``; KLDivLoss's
    ``"batchmean"`` averages over the rows): ``who`` (``train``, ``evaluate``) weighs batches and ranks by
    their size, which a sum would count twice."""
    if getattr(loss, "reduction", "mean") not in ("mean", "batchmean"):
        raise ValueError(f"{who}: the loss has reduction={loss.reduction!r}; {who} averages the loss over batches "
                         f"(and ranks), so pass the loss with reduction='mean' (PyTorch's default; for the gradient "
                         f"of a sum over a batch of B counted positions, multiply the learning rate by B)")
    return loss


# Names another library gives a loss on probabilities, where xpnet's nearest name takes logits: refused, so
# that neither habit silently trains the wrong loss.
_PROBABILITIES = ("takes probabilities; xpnet's name for that is loss='bce_probs' (xn.losses.BCELoss(), after a "
                  "final Sigmoid), and loss='bce' takes logits (xn.losses.SigmoidCrossEntropy(), no final Sigmoid)")
_CATEGORICAL = ("Keras' loss takes softmax probabilities; xpnet's loss='cross_entropy' takes logits: drop the final "
                "Softmax (Keras' activation='softmax') and pass loss='cross_entropy'")
_OTHER_MEANING = {
    "binary_cross_entropy": "PyTorch's F.binary_cross_entropy " + _PROBABILITIES,
    "binary_crossentropy": "Keras' binary_crossentropy " + _PROBABILITIES,
    "categorical_crossentropy": _CATEGORICAL + " with one-hot rows",
    "sparse_categorical_crossentropy": _CATEGORICAL + " with int labels",
    "kl_divergence": "Keras' KL divergence takes probabilities as predictions; loss='kl_div' (xn.losses.KLDivLoss, "
                     "PyTorch's) takes log-probabilities (after xn.layers.LogSoftmax(dim=1))",
}

_SEVERAL = "xpnet has no such loss: its losses take forward(y, t), one prediction and one target, and "
_OWN = "write a loss of your own (subclass xn.losses.Loss: forward(y, t) and backward() -> dy)"

# What a PyTorch user reaches for in torch.nn, and what xpnet has instead.
_PYTORCH_NAMES = {
    "CrossEntropyLoss": "xn.losses.SoftmaxCrossEntropy() takes logits and int class labels (or probability rows) as "
                        "CrossEntropyLoss does, the mean over the batch, with its weight=, ignore_index, "
                        "label_smoothing and reduction ('mean', 'sum'); classes on the last axis (N, ..., C), the "
                        "book's, or on axis 1 (N, C, ...) as CrossEntropyLoss has them with SoftmaxCrossEntropy(dim=1)",
    "MSELoss": "xn.losses.MeanSquaredError() (the mean over every element, as MSELoss, with its reduction)",
    "L1Loss": "xn.losses.MeanAbsoluteError() (the mean of |y - t| over every element, as L1Loss, with its reduction)",
    "BCEWithLogitsLoss": "xn.losses.SigmoidCrossEntropy() takes logits and targets in [0, 1] of their shape as "
                         "BCEWithLogitsLoss does, with its weight, pos_weight and reduction",
    # Losses of several inputs: a loss here is forward(y, t), one prediction and one target.
    "CTCLoss": _SEVERAL + "CTC takes log-probabilities, targets and two length arrays: " + _OWN
               + "; xn.losses.NLLLoss() takes log-probabilities with one label per position",
    "TripletMarginLoss": _SEVERAL + "it takes anchor, positive and negative: compute both distances in an xn.Model "
                         "(xn.layers.PairwiseDistance() takes two inputs) and " + _OWN,
    "CosineEmbeddingLoss": _SEVERAL + "it takes x1, x2 and t: an xn.Model whose output is 1 - cos (xn.layers."
                           "CosineSimilarity(dim=1) takes two inputs) trained with xn.losses.HingeEmbeddingLoss("
                           "margin=1 - margin) is the same loss",
    "MarginRankingLoss": _SEVERAL + "it takes x1, x2 and t: compute d = x1 - x2 in an xn.Model and " + _OWN
                         + " for max(0, margin - t * d); xn.losses.SoftMarginLoss() on d is its smooth form",
    "GaussianNLLLoss": _SEVERAL + "it takes a variance too: return the mean and the variance in one array from an "
                       "xn.Model and " + _OWN + " for 0.5 * (log(var) + (y - t)**2 / var); with a fixed variance it is "
                       "xn.losses.MeanSquaredError() / (2 * var) plus a constant",
    "TripletMarginWithDistanceLoss": _SEVERAL + "it takes anchor, positive and negative: compute both distances in "
                                     "an xn.Model (xn.layers.PairwiseDistance() or CosineSimilarity() take two "
                                     "inputs) and " + _OWN,
    "MultiMarginLoss": "xpnet has no multi-class hinge loss: xn.losses.SoftmaxCrossEntropy() trains a classifier on "
                       "the same logits and int labels, or " + _OWN + " for sum(max(0, margin - y[t] + y[i])) / C",
    "MultiLabelMarginLoss": "xpnet has no multi-label hinge loss: xn.losses.MultiLabelSoftMarginLoss() takes the "
                            "same scores with 0/1 targets (its smooth form), or " + _OWN,
    "AdaptiveLogSoftmaxWithLoss": "xpnet has no adaptive softmax (it takes its own projections and clusters): "
                                  "xn.layers.Linear(in_features, n_classes) then xn.losses.SoftmaxCrossEntropy()",
    "LinearCrossEntropyLoss": "xn.layers.Linear(in_features, num_classes) as the model's last layer, then "
                              "xn.losses.SoftmaxCrossEntropy(): the same loss in two steps",
    # The book's names (both volumes).
    "SoftmaxWithLoss": "the book's SoftmaxWithLoss is xn.losses.SoftmaxCrossEntropy() (int labels or one-hot rows)",
    "TimeSoftmaxWithLoss": "the book's TimeSoftmaxWithLoss is xn.losses.SoftmaxCrossEntropy() on (N, T, V) scores "
                           "and (N, T) ids (ignore_index=-1 for the book's ignore_label)",
    "SigmoidWithLoss": "the book's SigmoidWithLoss is xn.losses.SigmoidCrossEntropy() (scores and 0/1 labels of "
                       "one shape, the mean over them; no 1e-7 inside the log)",
}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, _PYTORCH_NAMES)
