"""The forward of ``xn.gradcheck``'s perturbed passes, planned once: each layer's own forward called in turn.

A check runs two forward passes per checked entry (84,230 for a 784-50-10 MLP on 3 samples), each on the check's
private float64 copy, each after the copy was put back as the check started (``_Objective.rewind``), none followed
by a backward. The records a forward keeps (:mod:`xpnet.layers.uses`: the calls of each layer, the forwards since
its last backward, the parameter clock, the frames of a function of one's own calling the model twice) are there
for the backward after it, to refuse what a loop of one's own may get wrong; a pass has no backward after it, and
nothing of the user's runs between two passes. So:

1. The first pass (the analytic gradients: forward, loss, backward, watched for writes into x and dy) runs the
   ordinary way, with every check and record.
2. Where the copy is an ``xn.Sequential`` of leaf layers (each once, no method set on an object, none whose
   forward holds uses of its own) or one such layer by itself, each later pass calls each layer's forward, the
   method ``recorded`` wraps, as ``chained`` calls it within a Sequential's training forward: the same code,
   kernels and order, without the records; on NumPy arrays a layer's ``planned_calls()`` forward (Linear's, ReLU's:
   the same kernels without the checks the first pass's shapes and dtypes passed, as ``xn.train``'s planned steps
   call them, :mod:`xpnet.training.planned`), and the loss's likewise (SoftmaxCrossEntropy's fused kernel). The
   check's repeatability pass compares each tensor's planned passes with the ordinary first one: a plan that
   computed another f would fail every row ("not repeatable").
3. Any other model (a model of one's own: its forward is the user's code; a nested Sequential) runs its own
   forward at every pass, without the records (:mod:`xpnet.layers.unrecorded`): every container's and layer's
   forward as it is, unless an evaluation-mode call within a pass asks for them back. On NumPy arrays a leaf
   layer with a ``planned_calls()`` forward whose every call in the first pass took one array of one type, dtype
   and shape (``SeenInputs``) runs that forward where a pass gives it such an array in training mode
   (``planned_leaves``); any other call of it runs its forward, with its checks.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from .layers.container import Watcher
from .layers.tree import Tree
from .layers.uses import plain_forward
from .models.sequential import Sequential

__all__ = ["SeenInputs", "planned_forward", "planned_leaves", "planned_loss"]

_LEAF = Tree.named_children  # a leaf's named_children (layers.tree)


def planned_forward(model: Any, xs: list[Any]) -> Callable[..., Any] | None:
    """``forward(*xs) -> y``: ``model``'s training-mode forward as each layer's own forward called in turn, or
    None where ``model`` is not a Sequential of leaf layers (or one leaf layer) whose forward ``recorded`` wraps.
    ``xs``: the check's inputs; where they and every parameter and buffer are NumPy arrays, a layer's
    ``planned_calls()`` forward stands for its forward where it has one."""
    layers = list(model.layers) if type(model) is Sequential else [model]
    numpy = _numpy(model, xs)
    plains = []
    for layer in layers:
        kind, own = type(layer), vars(layer)
        plain = plain_forward(kind.forward)
        if plain is None or kind.named_children is not _LEAF or "named_children" in own or kind.uses_inside \
                or "forward" in own:
            return None
        made = _planned_calls(layer) if numpy else None
        plains.append(functools.partial(plain, layer, train=True) if made is None else made[0])
    if not plains or len({id(layer) for layer in layers}) != len(layers):
        return None
    head, rest = plains[0], plains[1:]

    def forward(*xs: Any) -> Any:
        y = head(*xs)
        for call in rest:
            y = call(y)
        return y
    return forward


class SeenInputs(Watcher):
    """What each leaf layer was given in the first pass (watched, :func:`xpnet.layers.container.watch`):
    ``inputs[id(layer)]`` is (type, dtype, shape) of the one array every call of it took, or None where a call took
    other than one array, or calls took arrays of more than one kind."""

    def __init__(self) -> None:
        self.inputs: dict[int, tuple[type, Any, tuple[int, ...]] | None] = {}

    def before_forward(self, name: str, layer: Any, xs: tuple[Any, ...]) -> None:
        seen = (type(xs[0]), xs[0].dtype, tuple(xs[0].shape)) if len(xs) == 1 else None
        key = id(layer)
        self.inputs[key] = seen if self.inputs.get(key, seen) == seen else None


def planned_leaves(model: Any, xs: list[Any], inputs: dict[int, Any]) -> dict[int, tuple[Any, ...]]:
    """{id(layer): (type, dtype, shape, forward(x))} for the later passes through ``model``'s own forward
    (:mod:`xpnet.layers.unrecorded`): each layer of ``model`` whose calls in the first pass all took one array of
    one type, dtype and shape (``inputs``, :class:`SeenInputs`) and that has a ``planned_calls()`` forward, where
    ``xs`` and every parameter and buffer are NumPy arrays; nothing elsewhere."""
    if not _numpy(model, xs):
        return {}
    plans = {}
    for layer in model.named_modules().values():
        seen = inputs.get(id(layer))
        if seen is None or "forward" in vars(layer) or plain_forward(type(layer).forward) is None:
            continue
        made = _planned_calls(layer)
        if made is not None:
            plans[id(layer)] = (*seen, made[0])
    return plans


def planned_loss(loss: Any, model: Any, xs: list[Any]) -> Callable[[Any, Any], Any] | None:
    """``forward(y, t) -> value or None`` of ``loss``'s ``planned_calls()`` where ``model``'s arrays and ``xs`` are
    NumPy's (None where it has none, or its last forward took another path); that forward gives None where its
    kernel declines: the ordinary forward then runs."""
    made = _planned_calls(loss) if loss is not None and _numpy(model, xs) else None
    return None if made is None else made[0]


def _numpy(model: Any, xs: list[Any]) -> bool:
    """Whether the inputs and every parameter and buffer are NumPy arrays, where ``xn.train``'s planned steps use
    the ``planned_calls()`` of layers and losses (nothing for ``untracked`` to detach)."""
    return all(type(a) is np.ndarray for a in (*xs, *model.state().values()))


def _planned_calls(obj: Any) -> Any:
    """``obj``'s ``planned_calls()``, where the class that wrote them wrote its forward too: a subclass of
    Linear's of one's own with a forward of its own (``2 * super().forward(x)``) runs that forward, not Linear's
    kernels."""
    kind = type(obj)
    planned = getattr(kind, "planned_calls", None)
    if planned is None or _writer(kind, "planned_calls") is not _writer(kind, "forward"):
        return None
    return planned(obj)


def _writer(kind: type, name: str) -> type | None:
    return next((k for k in kind.__mro__ if name in vars(k)), None)
