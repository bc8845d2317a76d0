"""Forwards without the records a backward reads: ``xn.gradcheck``'s later passes through a model of one's own.

A model's forward keeps records for the backward after it (:mod:`.uses`: the calls of each layer, the state a layer
called twice left, the forward counts, the parameter clock, the no_grad flag). A pass of the check after its first
has no backward after it, and nothing of the user's runs between two passes, so within ``unrecorded()`` the
forward of each container (``scoped``) and of each layer (``recorded``) runs alone: the same code, kernels and
order, the records left as the check's rewind put them. The switch is on ``uses``' thread-local record: a forward
in another thread keeps its records.

A layer the check planned (``plans``, :func:`xpnet.gradcheck_plan.planned_leaves`: a Linear, a ReLU on NumPy
arrays) runs its ``planned_calls()`` forward instead, the same kernels without the checks its input passed in the
first pass, where a training-mode call gives it one array of the type, dtype and shape the first pass gave it;
any other call of it runs its forward.

What the records may change in a forward's values: an evaluation-mode call within a training forward (``train=False``
given, a part put in ``eval()``) keeps or puts back the state of the layer (an evaluation-mode look after a use,
:mod:`.uses`), which a stateful recurrent layer's next call reads. Such a call within the switch is noted
(``looked``): the check runs that pass again with the records, and the passes after it too.
"""

from __future__ import annotations

from typing import Any

from .uses import _local

__all__ = ["unrecorded"]


class unrecorded:  # noqa: N801 - a context manager, named as contextlib's are
    """``with unrecorded(plans) as switch:`` forwards in this thread run without their records (see the module),
    the layers of ``plans`` ({id(layer): (type, dtype, shape, forward(x))}) by their planned forward on such an
    input; ``switch.looked`` after it: whether a forward within made an evaluation-mode call (its records might
    have changed the values). Left as it was on the way out, exception or not. One switch serves any number of
    ``with`` blocks, one after the other."""

    __slots__ = ("before", "looked", "plans")

    def __init__(self, plans: dict[int, Any] | None = None) -> None:
        self.plans = {} if plans is None else plans

    def __enter__(self) -> "unrecorded":
        local = _local
        self.before = (local.plain, local.looked, local.plans)
        self.looked = False
        local.plain, local.looked, local.plans = True, False, self.plans
        return self

    def __exit__(self, *exc: Any) -> None:
        local = _local
        self.looked = local.looked
        local.plain, local.looked, local.plans = self.before
        local.called = None  # a layer's __call__ said so to a recorded wrapper that did not read it
