"""A layer called more than once in one forward of a model: its backward calls take the calls back in reverse order.

From the second call of one layer on, :mod:`.uses` keeps the state the call before left (``_again``, into the
layer's ``_Uses``), and the layer's backward calls then take them back in reverse order (``reused``): the first
backward serves the last call, each next one the call before, and their parameter gradients add up, as autograd adds
a shared weight's. So the model's ``backward`` goes through the uses in reverse, as it goes through the layers:
``self.relu.backward`` once per ``self.relu(...)``, last call first. After the last of them the layer holds its last
call's state again (a Dropout's draw count, a cache a later forward reads).
Refused at an optimizer's step, naming the layer: fewer backward calls of a layer than the last forward's calls of
it that needed one (one submodel's backward forgotten), which left an earlier call's gradient with a later call's
caches (:mod:`xpnet.layers.left_out`; ``reused`` opens and closes each round, ``_again`` keeps each call's mode).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from . import left_out
from .forward_state import _USES, _restore, _state
from .zero_grad import add_grads, take_grads

__all__ = ["reused"]


class _Uses:
    """The training-mode calls of one layer in one forward of a model, for its backward calls: ``after[i]``, the
    state of the layer's nodes after call i + 1 (all calls but the last); ``final``, the last call's, kept by
    the first backward; ``backwards``, the backward calls so far; ``running``, a backward of the layer under way
    (its ``backward_params`` calling its ``backward`` is one); ``modes``, (under no_grad, in training mode) of each
    call, and ``model``, the model whose forward made them, for :mod:`.left_out`."""

    __slots__ = ("after", "final", "backwards", "running", "modes", "model")

    def __init__(self) -> None:
        self.after: list[list[tuple[Any, dict[str, Any]]]] = []
        self.final: list[tuple[Any, dict[str, Any]]] = []
        self.backwards = 0
        self.running = False
        self.modes: list[tuple[bool, bool]] = []
        self.model: Any = None


def reused(backward: Callable[..., Any]) -> Callable[..., Any]:
    """``backward`` (or ``backward_params``) taking the calls of the last forward back in reverse order, where
    the layer was called more than once in it (``recorded``): before each backward but the first, the state the
    matching call left is put back, and the parameter gradients already there are added to the new ones."""
    @functools.wraps(backward)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        uses = self.__dict__.get(_USES)
        if uses is None or uses.running:
            return backward(self, *args, **kwargs)
        uses.backwards += 1
        served = len(uses.after) + 2 - uses.backwards  # the call this one serves, counted from 1
        uses.running = True
        try:
            if uses.backwards == 1:  # the last call: its state is in place
                uses.final = _state(self)
                left_out.opened(self, uses)  # till the first call's backward: an optimizer's step refuses it
                return _served(self, backward, served, len(uses.after) + 1, args, kwargs)
            state = uses.after[served - 1]
            _restore(state)
            earlier = take_grads(self)
            try:
                return _served(self, backward, served, len(uses.after) + 1, args, kwargs)
            finally:
                add_grads(earlier)
                if served == 1:  # the first call's backward ends the round: the layer as its last call left it,
                    _restore(uses.final, unless_rebound_since=state)  # its calls kept for another backward of the
                    uses.backwards = 0                                # model (PyTorch's retain_graph) till a forward
                    left_out.closed(self)
        finally:
            uses.running = False
    return run


def _served(layer: Any, backward: Callable[..., Any], served: int, calls: int, args: Any, kwargs: Any) -> Any:
    """``backward`` for call ``served`` of ``calls``; a dy of the wrong shape (the layer's own check) says which
    call this backward took back, as a forgotten backward of a later call (a layer shared between two models, or
    called at each step) makes an earlier call's gradient meet a later call's caches."""
    try:
        return backward(layer, *args, **kwargs)
    except ValueError as e:
        if not str(e).startswith(f"{layer.name}: expected dy of shape"):
            raise
        raise ValueError(
            f"{e}. Or: this backward took back call {served} of the {calls} calls of {layer.name} in the last "
            f"forward (they go back last call first); if its dy is for an earlier call, the backward of a later "
            f"call was left out (a layer shared between two models, or called at each step, needs one backward "
            f"per call)") from e
