"""An evaluation-mode forward between a training forward and its backward: which of the two the backward serves.

An evaluation-mode forward made by the mode (``model.eval(); model(x_val); model.train()``, no ``train=`` given) of
a model (or of a layer by itself) between a training forward and its backward (a validation line within a step)
keeps what it replaced till the next backward, which in training mode serves the training forward, as PyTorch's
autograd serves its graph, and in evaluation mode the evaluation forward (``_Pending``). ``train=False`` given by
the caller keeps the book's rule: the backward serves the last forward. ``called`` (:mod:`.uses`) tells the two
apart where ``layer(x)`` passes its flag on as ``train``; the outermost forward reads it (``_watch``).
``Model.predict`` in between is a look (``looked``): every node is left as it was. Any other evaluation-mode forward
is a use (``_evaluated``): the next backward serves it (a saliency map's backward after ``eval()``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from .forward_state import _ABSENT, _HELD, _LOST, _PENDING, _USES, _nodes
from .one_backward import note_helper
from .uncalled import FORWARDS

__all__ = ["looked"]


@contextlib.contextmanager
def looked(model: Any) -> Any:
    """``Model.predict`` after a training forward of ``model`` whose backward has not run yet (``y = model(x)``,
    then ``model.predict(x2)`` for a target or a line of the log, then ``model.backward(dy)``): a look, leaving
    every node as it was (caches, records of calls, forward counts), so that the backward serves the training
    forward, as PyTorch's serves its graph; it served predict's batch, silently. With no such forward pending,
    predict's forward is a use, which a saliency map's backward follows."""
    if not model.__dict__.get(FORWARDS):
        yield
        return
    before = [(node, dict(vars(node))) for node in _nodes(model)]
    try:
        yield
    finally:
        for node, attributes in before:
            now = vars(node)
            for key in [k for k in now if k not in attributes]:
                del now[key]
            now.update(attributes)


# Not put back by a backward that serves a training forward after a look (_Pending.settle): what the layer holds
# across forwards (as _HELD, less the forward's own records, FORWARDS, _USES, _LOST, which go back) and what a user
# plots, kept as the last forward's.
_NOT_BACK = (_HELD - {FORWARDS, _USES, _LOST}) | {"attention_weights"}


class _Pending:
    """An evaluation-mode forward made by the mode of a model (or of a layer by itself) after a training forward
    whose backward has not run yet: ``model.eval(); v = model(x_val); model.train()`` between ``out = model(x)``
    and ``model.backward(dy)``. ``before``: each node's attributes before the first such forward (held till then:
    one forward's caches more). The evaluation forwards keep their state till the next backward of the model or of
    one of its layers (``settle``): in training mode, the layers' mode at that backward, the training forward's
    state comes back (caches, records of calls, forward counts, the no_grad flag) and the backward serves it, as
    PyTorch's serves the graph of the output it starts from; in evaluation mode (``model.eval()`` kept: a saliency
    map's backward) it serves the evaluation forward. ``train=False`` given by the caller (``model(x, train=False)``,
    ``forward(x, train=False)``, the book's ``train_flg=False``) keeps the book's rule, the last forward is the one
    a backward serves (PyTorch's ``model.eval(); model(x).backward(dy)``): ``restore`` False, from then on till a
    training forward. A training forward in between ends it, counting on from the training forwards before the look
    (``_watch``, ``count_on``). ``attention_weights`` stay the last forward's (a plot). Each later evaluation
    forward finds it and does nothing more: an evaluation loop pays once."""

    __slots__ = ("nodes", "before", "marked", "restore")

    def __init__(self, layer: Any) -> None:
        self.nodes = _nodes(layer)
        self.before = [dict(vars(node)) for node in self.nodes]
        self.marked = False
        self.restore = True

    def note(self) -> None:
        """After an evaluation forward: every node marked as holding this (once)."""
        if not self.marked:
            self.marked = True
            for node in self.nodes:
                vars(node)[_PENDING] = self

    def drop(self) -> None:
        for node in self.nodes:
            if vars(node).get(_PENDING) is self:
                del vars(node)[_PENDING]

    def count_on(self) -> None:
        """A training forward after the look: the training forwards' counts as the look found them, so that this
        one is a second (``out1 = model(x1)``, a look, ``out2 = model(x2)``, one backward: refused as without the
        look, where the look's forward had started the count again)."""
        self.drop()
        for node, before in zip(self.nodes, self.before):
            now = vars(node)
            for k in (FORWARDS, _LOST):
                if k in before:
                    now[k] = before[k]
                else:
                    now.pop(k, None)

    def settle(self, layer: Any) -> None:
        """At a backward of ``layer`` (the model or one of its nodes): the training forward's state back if
        ``layer`` is in training mode and no ``train=False`` was given since, else the evaluation forward's kept;
        either way, once."""
        self.drop()
        if not layer.training or not self.restore:
            return
        for node, before in zip(self.nodes, self.before):
            now, kept = vars(node), _NOT_BACK.union(node.kept_between_uses)
            for k in [k for k in now.keys() | before.keys() if k not in kept]:
                value = before.get(k, _ABSENT)
                if value is _ABSENT:
                    del now[k]
                elif now.get(k, _ABSENT) is not value:
                    now[k] = value


def _watch(layer: Any, train: Any) -> _Pending | None:
    """The outermost forward of ``layer`` (``train``: as the caller gave it, None where it came from the layer's
    mode), run with a training forward's backward pending or an evaluation forward's state noted: an evaluation-
    mode one is watched (``_Pending``; ``train=False`` given, the book's rule from then on); a training-mode one
    ends what was noted (its own backward follows)."""
    pending = vars(layer).get(_PENDING)
    if train is True or (train is None and layer.training):
        if pending is not None:
            pending.count_on()
        if layer.uses_inside:  # a second training forward of a model: through a function of one's own?
            note_helper(layer)
        return None
    if pending is None:
        pending = _Pending(layer)
    if train is False:
        pending.restore = False
    return pending


def _evaluated(layer: Any) -> None:
    """An evaluation-mode forward of ``layer`` (a use): the next backward serves it, whatever training forwards
    ran before it without a backward (targets made in training mode, then a saliency map's or style transfer's
    backward calls after ``eval()``: the second was refused as if the training forwards' caches were lost)."""
    own = layer.__dict__
    own[FORWARDS] = 0  # a forward all the same, for uncalled._stale
    own.pop(_LOST, None)
