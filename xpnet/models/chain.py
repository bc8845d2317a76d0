"""``backward_chain``: the backward of a model whose forward runs its parts one after another, stopping, when no
input gradient is wanted, at the earliest part that trains (what ``xn.train`` asks for: ``backward_params``).

``xn.Sequential``, the vision models (ResNet, VGG, AlexNet, MobileNetV2), ``LanguageModel`` and the encoder-decoders
write their backward with it, so that fine-tuning a head on a frozen backbone (PyTorch's ``requires_grad_(False)``)
costs the head's backward alone, as PyTorch's autograd skips what needs no gradient. A model of one's own does the
same (a Flatten, or a function for a reshape of its own forward)::

    class Net(xn.Model):
        def __init__(self, backbone, features, classes):
            super().__init__()
            self.backbone, self.flatten = backbone, xn.layers.Flatten()
            self.head = xn.layers.Linear(features, classes)

        def forward(self, x, train=True):
            return self.head.forward(self.flatten.forward(self.backbone.forward(x, train), train), train)

        def backward(self, dy, input_grad=True):
            return xn.models.backward_chain([self.backbone, self.flatten, self.head], dy, input_grad)

        def backward_params(self, dy):  # what xn.train calls
            self.backward(dy, input_grad=False)
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Sequence, Union

from ..layers.backward_calls import backward_steps
from ..layers.base import Layer

__all__ = ["backward_chain", "StopsWhereNothingTrains"]

Part = Union[Layer, Callable[[Any], Any]]


def backward_chain(parts: Sequence[Part], dy: Any, input_grad: bool = True) -> Any:
    """Backpropagate ``dy`` through ``parts``, a model's steps in forward order: layers (or models), and functions
    taking a gradient back through a step without parameters (the reshape between a pool and a Linear). Returns
    the first part's dx.

    ``input_grad=False`` (``backward_params``: gradients for the parameters only) returns None and stops at the
    earliest layer whose parameters train, which gets ``backward_params`` (no dx: a Sequential there stops inside
    it the same way); nothing below it runs, so a frozen backbone is not backpropagated through at all. Every
    parameter that trains gets the gradient the full backward gives."""
    parts = list(parts)
    if not input_grad:
        # a loop, not next() over a generator, with _trains' first test inline: every training step asks
        for first, part in enumerate(parts):
            if isinstance(part, Layer) and ((part.__dict__.get("params") and not part._frozen) or _trains(part)):
                break
        else:
            return None
        parts = parts[first:]
    if not parts:
        return dy
    # a layer of one's own without a backward says what to write (layers.unwritten)
    return backward_steps(parts[::-1], dy, not input_grad, Layer)


def _trains(part: Layer) -> bool:
    """Whether a parameter of ``part`` (or of a layer inside it) trains: ``part.requires_grad and
    part.named_params()`` from one walk of its tree; a layer with parameters of its own that is not frozen answers
    without the walk (its own node comes first in it)."""
    if part.__dict__.get("params") and not part._frozen:  # (one without params is named by the walk's check)
        return True
    return any(node.params and not node._frozen for node in part.named_modules().values())


class StopsWhereNothingTrains:
    """``backward_params(dy)`` (what ``xn.train`` calls) as ``backward(dy, input_grad=False)``, for a model whose
    backward takes ``input_grad`` (``backward_chain``'s); where a subclass's ``backward(dy)`` does not take it,
    that backward in full, as every model's ``backward_params`` was before."""

    def backward_params(self, dy: Any) -> None:
        if _takes_input_grad(type(self).backward):
            self.backward(dy, input_grad=False)
        else:
            self.backward(dy)


@functools.lru_cache(maxsize=None)
def _takes_input_grad(backward: Callable[..., Any]) -> bool:
    return "input_grad" in inspect.signature(backward).parameters
