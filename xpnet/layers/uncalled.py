"""A backward written out by hand refused where it would take an earlier forward's cache, a wrong gradient.

A layer keeps the caches of its last forward (of each call in a model's last forward: :mod:`xpnet.layers.uses`).
In a model's ``backward`` written out by hand (a class of the user's: xpnet's own containers call each use's
backward once), a layer's backward called more times than the model's last forward called the layer (PyTorch's
DynamicNet looping its middle layer more times than its forward drew, or once after a forward that drew 0) would
take an earlier forward's cache: refused, naming the model and the layer. The model's forward keeps its record of
calls (``Record``, an attribute of the model under ``CALLS``; ``uses._again`` counts the repeated ones), whether it
runs by itself or within the forward of another model (an xpnet Sequential holding it, or a model of the user's:
``keep_since``, the calls since its own forward began), and ``backward_calls.rounded`` counts each layer's backward
calls within each backward of the model (``Check``), again at each one; within a model's backward, those of a model
of the user's inside it count against both records, the outer first. ``replaced`` says why
``backward_calls.rounded`` refuses a backward after the backward of the last of several forwards, which hold the
last one's caches only.
"""

from __future__ import annotations

import copy
import threading
from typing import Any, Callable

from .backward_order import refuse_first_call_first

__all__ = ["CALLS", "FORWARDS", "Record", "Check", "checking", "counts", "keep_since", "named", "replaced"]

# A model's (or a lone layer's) own training forwards since its last backward (backward_calls.rounded), read by _stale.
FORWARDS = "_forwards_since_backward"
CALLS = "_calls_in_last_forward"  # a model's: the layers its last forward called (Record), for its backward


class _Checking(threading.local):
    """check: a model's written-out backward under way (``Check``), else None."""

    check = None


checking = _Checking()


def named(model: Any, layer: Any) -> str:
    """``layer`` by its dotted name in ``model`` and its class, ``'middle_linear' (Linear)``."""
    name = next((k for k, v in model.named_modules().items() if v is layer), None) if model is not layer else None
    return f"'{name}' ({layer.name})" if name else layer.name


class Record:
    """The layers a model's last forward called (``calls``), and how often those called more than once
    (``repeats``), kept for its backward; an attribute of the model, not a dict its layer search would read.
    ``within``: the name of the model whose forward called it (a Sequential holding it), None for its own."""

    __slots__ = ("calls", "repeats", "within")

    def __init__(self, calls: dict[int, Any], repeats: dict[int, int], within: str | None = None) -> None:
        self.calls, self.repeats, self.within = calls, repeats, within

    def __deepcopy__(self, memo: dict[int, Any]) -> "Record":
        """The record of a copied model (``copy.deepcopy``: xn.gradcheck's, a target network) names its copies."""
        copies = {key: copy.deepcopy(layer, memo) for key, layer in self.calls.items()}
        return Record({id(layer): layer for layer in copies.values()},
                      {id(copies[key]): calls for key, calls in self.repeats.items()}, self.within)


def counts(calls: dict[int, Any], repeats: dict[int, int]) -> dict[int, int]:
    """How many times the running forward called each layer so far (``uses``' record of calls)."""
    return {key: repeats.get(key, 1) for key in calls}


def keep_since(model: Any, before: dict[int, int], calls: dict[int, Any], repeats: dict[int, int],
               within: Any) -> None:
    """Keep on ``model``, a model of the user's called within ``within``'s forward, the record of the calls its own
    forward made: those since ``before`` (:func:`counts` as its forward began). A call that was no use of the model
    (an evaluation-mode look after a use) leaves the use's record. The record is part of the model's state, so
    each call of a model called twice in one forward gets its own back for its backward (``reuse.reused``)."""
    key = id(model)
    if key not in calls or repeats.get(key, 1) == before.get(key, 0):
        return
    own: dict[int, Any] = {}
    again: dict[int, int] = {}
    for key, layer in calls.items():
        times = repeats.get(key, 1) - before.get(key, 0)
        if times > 0:
            own[key] = layer
        if times > 1:
            again[key] = times
    model.__dict__[CALLS] = Record(own, again, within.name)


class Check:
    """A model's backward written out by hand, under way: each layer's backward calls within it so far
    (``backwards``), against the calls of the model's last forward. Within the backward of a layer that is not
    a container (Conv1d's Conv2d, a cell's stack of calls: part of its call, as in forward), or of a model that
    this forward did not call (by itself, it keeps a record of its own), nothing is counted. Within the backward
    of a model this forward called that keeps a record of its own (a model of the user's inside it), the calls
    count against both records (``outer``, the check of the model holding it), the outer first."""

    __slots__ = ("model", "backwards", "layer", "outer")

    def __init__(self, model: Any, outer: "Check | None" = None) -> None:
        self.model, self.backwards, self.outer = model, {}, outer
        self.layer = model  # the container whose backward runs now: its own re-entry (backward_params) is no call

    def serve_model(self, run: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        repeats = self.model.__dict__[CALLS].repeats
        if repeats:  # a layer called more than once: its backward calls in the order its names say (backward_order)
            refuse_first_call_first(self.model, repeats)
        checking.check = self
        try:
            return run(self.model, *args, **kwargs)
        finally:
            checking.check = None

    def serve(self, layer: Any, run: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        calls = self.count(layer)
        if layer.uses_inside and calls:  # a container this forward called: its layers' backward calls count too
            if CALLS in layer.__dict__ and layer is not self.model:  # and against its own record of calls
                repeats = layer.__dict__[CALLS].repeats
                if repeats:
                    refuse_first_call_first(layer, repeats)
                checking.check = Check(layer, self)
                try:
                    return run(layer, *args, **kwargs)
                finally:
                    checking.check = self
            outer, self.layer = self.layer, layer
            try:
                return run(layer, *args, **kwargs)
            finally:
                self.layer = outer
        checking.check = None  # its own business (a model called by itself checks its own calls)
        try:
            return run(layer, *args, **kwargs)
        finally:
            checking.check = self

    def count(self, layer: Any) -> int:
        """One more backward call of ``layer``, counted by the outer checks first, then by this one: how many times
        the model's forward called it. One call too many of a stale layer raises a RuntimeError."""
        if self.outer is not None:
            self.outer.count(layer)
        # read now, not when the check began: a model called twice in a forward has the record of the call that
        # this backward serves put back by then (reuse.reused)
        record = self.model.__dict__[CALLS]
        key = id(layer)
        backwards = self.backwards.get(key, 0) + 1
        calls = record.repeats.get(key) or int(key in record.calls)
        if backwards > calls and _stale(layer):
            raise RuntimeError(_uncalled(self.model, record, layer, calls, backwards))
        self.backwards[key] = backwards
        return calls


def _stale(layer: Any) -> bool:
    """Whether ``layer`` holds no forward's cache since its last backward: no training or evaluation-mode
    forward ran since (``FORWARDS``: by itself, a backward's own recomputation), it keeps no stack of calls of
    its own (a cell's), nor state that an evaluation-mode forward carries on unrecorded (a stateful layer's)."""
    return layer.records_uses and getattr(layer, "stateful", False) is not True and FORWARDS not in vars(layer)


def _uncalled(model: Any, record: Record, layer: Any, calls: int, backwards: int) -> str:
    """Why a model's backward may not call a layer's backward more often than its last forward called it."""
    times = "not at all" if calls == 0 else "once" if calls == 1 else f"{calls} times"
    forward = "the model's last forward" if record.within is None else \
        f"the model's forward (its call within {record.within}'s last forward that this backward serves)"
    return (f"{model.name}.backward calls the backward of {named(model, layer)} more times than {forward} called "
            f"it ({times}; this is backward call {backwards}), so it would use an earlier forward's "
            "cache and give a wrong gradient; call each layer's backward once per call the forward made, last call "
            "first (keep the forward's count, e.g. self.n = random.randint(0, 3), and loop range(self.n) in "
            "backward)")


def replaced(layer: Any, lost: int) -> str:
    """Why a backward after the backward of the last of several forwards cannot serve the one before."""
    kind = "model" if layer.uses_inside else "layer"
    return (f"{layer.name}.backward: the {kind} ran {lost + 1} training forwards before its backward calls, each "
            "replacing the caches of the one before, and the backward after the first would take the last "
            "forward's caches again instead of the forward's before it (PyTorch's autograd keeps every call's "
            f"graph; an xpnet {kind} keeps one call's caches). Call it within one forward of a model of your own "
            "(its forward calling it at each step: each call is then kept, and the backward calls take them back "
            "last first), join the inputs into one batch, or take each forward's backward before the next forward")
