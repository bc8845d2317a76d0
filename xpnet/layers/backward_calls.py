"""What every layer's ``backward`` (and ``backward_params``) does around the method it wraps (``rounded``).

It refuses to serve a forward whose caches a later forward replaced (``y1 = model(x1); y2 = model(x2)``, then
``backward(dy2)`` and ``backward(dy1)``), a forward run under ``xn.no_grad()`` (:mod:`.no_grad_calls`), a forward
before a step that changed the layer's weights (:mod:`.stale`), within a model's backward written out by hand one
backward more than the layer's calls in the model's last forward (:mod:`.uncalled`), a float64 dy into a float32 model
of the user's (:mod:`.dy_dtype`), and the first backward after several forwards where those calls stand one after the
other before it in the caller's block, PyTorch's one backward for both (:mod:`.one_backward`). First it settles an
evaluation-mode forward made after a training forward whose backward this may be (:mod:`.evaluation_look`).
``backward_steps``, a Sequential's backward, does that work itself where it has nothing to refuse, check or take
back: one wrapper call fewer per layer. Backward calls after ``zero_grad()`` add their gradients (``counted``,
``arm``): :mod:`xpnet.layers.zero_grad`. A backward written out by the user that fails on a PyTorch tensor method
(``dy.sum(dim=1, keepdim=True)``, ``dy.clamp(min=0)``, ``dy.flatten(1)``, ``dy.view(shape)``) is raised again saying
NumPy's spelling, as a forward's is (:mod:`.view_hint`).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from . import stale
from .dy_dtype import refuse_other_dtype
from .forward_state import _LOST, _PENDING, _USES
from .no_grad_calls import UNDER_NO_GRAD, why
from .one_backward import refuse_one_backward_for_two_calls
from .uncalled import CALLS, FORWARDS, Check, checking, replaced
from .view_hint import hint_leaf
from .zero_grad import ADDING, ARMED, BEFORE, LAST, TICKS

__all__ = ["rounded", "backward_steps", "plain_backward"]


def rounded(backward: Callable[..., Any], plain: Callable[..., Any] | None = None,
            ticks: bool = False) -> Callable[..., Any]:
    """``backward`` (or ``backward_params``) refusing to serve a forward whose caches a later forward replaced:
    a model (or a layer by itself) called twice in training mode, ``y1 = model(x1); y2 = model(x2)``, then
    given ``backward(dy2)`` and ``backward(dy1)``, as PyTorch's autograd would take them, holds the second
    call's caches only, so the second backward would silently give the gradient of the second call again. The
    first backward after the forwards serves the last of them (right); a backward after it, with no forward in
    between, raises a RuntimeError naming the model and what to write. Several backward calls after one
    forward (``backward(dy_a)``, ``backward(dy_b)``) stay allowed: each serves that forward. A layer inside a
    model counts the model's training forwards it ran in (``recorded``), so its own backward calls written out by
    hand after several such forwards are refused alike; a backward served by a recorded use of the last forward
    (``reused``) never is (training forwards without a backward before it, a sampling loop's, are no matter).
    An evaluation-mode forward starts the count again (``_evaluated``): the backward calls after it serve it.
    A backward of a layer whose last forward ran under ``xn.no_grad()`` is refused (:mod:`.no_grad_calls`).
    Within a model's backward written out by hand (a class of the user's), each layer's backward calls are counted
    against its calls in the model's last forward (``uncalled.Check``): one more refuses to take an earlier
    forward's cache. ``plain``: the method that ``backward`` wraps in ``counted`` and ``reused``, called directly
    where neither has anything to do (no ``zero_grad()`` armed, no repeated use: one call per forward, the
    common case), sparing a training step two calls per layer.
    The first backward after several forwards is refused too where those calls stand one after the other before it
    in the caller's block, PyTorch's one backward for both (:mod:`.one_backward`). ``ticks`` (a ``backward``, not
    ``backward_params``): each call takes a tick for the optimizer's check of two backward calls overwriting each
    other before a step (:func:`.zero_grad.overwritten`)."""
    written_out = _written_out(backward)
    plain = backward if plain is None else plain

    @functools.wraps(backward)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        own = self.__dict__
        if _PENDING in own:  # an evaluation-mode forward after a training forward whose backward this may be
            own[_PENDING].settle(self)
        if own.get(UNDER_NO_GRAD):  # its last forward ran under xn.no_grad() (layers.no_grad_calls)
            raise RuntimeError(why(self))
        now = stale.clock
        if own.get(stale.SEEN, now) != now:  # a step since its forward (layers.stale)
            stale.check(self)
        check = checking.check
        if check is None:
            if written_out and CALLS in own:
                refuse_other_dtype(self, args)  # a float64 dy into a float32 model (layers.dy_dtype)
                return Check(self).serve_model(run, args, kwargs)
        elif check.layer is not self:
            return check.serve(self, run, args, kwargs)
        forwards = own.pop(FORWARDS, 0)
        uses = own.get(_USES)
        method = plain if uses is None and own.get(ARMED) is None else backward
        start = TICKS[0]
        if not forwards:
            if own.get(_LOST) and (uses is None or not uses.backwards):  # not within a round of the last forward's
                raise RuntimeError(replaced(self, own[_LOST]))           # uses (reused)
            out = method(self, *args, **kwargs)
        else:
            if forwards > 1:  # model(x1); model(x2); model.backward(dy), PyTorch's one backward for both
                refuse_one_backward_for_two_calls(self)                # (one_backward)
            own.pop(_LOST, None)
            out = method(self, *args, **kwargs)
            if forwards > 1:
                own[_LOST] = forwards - 1
        # a backward that ran (not one refused; a round of a repeated use's as one, at its end; a subclass's calling
        # its base's, super().backward(dy), as one), for zero_grad.overwritten; no call on a step's path
        if ticks and (uses is None or not uses.backwards) and not (LAST in own and own[LAST] > start):
            TICKS[0] += 1
            own[BEFORE], own[LAST] = own[LAST] if LAST in own else 0, TICKS[0]
        return out
    if written_out:
        return _hinting(run, getattr(inspect.unwrap(backward), "__code__", None))  # None: no line of its own
    _PLAIN_BACKWARD[run] = plain
    return run


def _hinting(run: Callable[..., Any], code: Any) -> Callable[..., Any]:
    """``run``, a backward written out by the user (of code ``code``), raising a TypeError, ValueError or
    AttributeError of a PyTorch tensor method on one of its lines (or of a method of its layer it called) again
    with NumPy's spelling (:func:`.view_hint.hint_leaf`); other errors pass unchanged."""

    @functools.wraps(run)
    def hinting(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return run(self, *args, **kwargs)
        except (TypeError, ValueError, AttributeError) as e:  # only the error path reads the hint's lines
            hinted = hint_leaf(self, code, e, backward=True)
            if hinted is None:
                raise
            raise hinted from e
    return hinting


# rounded's wrappers of xpnet's own backward and backward_params -> the method each wraps, for ``backward_steps``
_PLAIN_BACKWARD: dict[Callable[..., Any], Callable[..., Any]] = {}


def plain_backward(method: Callable[..., Any]) -> Callable[..., Any] | None:
    """The backward (or backward_params) that ``rounded``'s wrapper ``method`` of a layer of xpnet's calls, for a
    step that does ``rounded``'s work itself (``xn.train``'s planned steps); None where ``method`` is no such
    wrapper (a backward written out by the user)."""
    return _PLAIN_BACKWARD.get(method)


def backward_steps(parts: list[Any], dy: Any, params_last: bool, layer: type) -> Any:
    """``dy`` back through ``parts`` (in backward order), each an instance of ``layer`` (its ``backward(dy)``) or a
    function of dy; with ``params_last`` the last part, a layer, gets ``backward_params(dy)`` and None comes back:
    a Sequential's backward (``backward_chain``). Where ``rounded`` has nothing to refuse, check or take back for a
    layer of xpnet's (one forward since its last backward, that forward's use its only one, not under no_grad, no
    step since, nothing for ``zero_grad()`` to add, no backward written out under way, no method set on the
    object), its work is done here and the method it wraps called: one wrapper call fewer per layer."""
    check = checking.check
    now = stale.clock
    last = len(parts) - 1
    for i, part in enumerate(parts):
        if not isinstance(part, layer):
            dy = part(dy)
            continue
        params = params_last and i == last
        own = part.__dict__
        plain = _PLAIN_BACKWARD.get(type(part).backward_params if params else type(part).backward)
        armed = own.get(ARMED)  # zero_grad()'s count: nothing to add (its first backward, or taken: counted)
        if plain is None or check is not None or own.get(FORWARDS) != 1 or own.get(UNDER_NO_GRAD) \
                or own.get(stale.SEEN, now) != now or own.get(_USES) is not None \
                or (armed and not ADDING.within) or "backward" in own or "backward_params" in own:
            dy = part.backward_params(dy) if params else part.backward(dy)
            continue
        del own[FORWARDS]
        own.pop(_LOST, None)
        if armed is not None:
            own[ARMED] = armed + 1
        dy = plain(part, dy)
    return None if params_last else dy


def _written_out(method: Callable[..., Any]) -> bool:
    """Whether ``method`` is the user's own, not xpnet's (whose containers call each use's backward once)."""
    module = method.__module__  # asked at every model forward: no split
    return module != "xpnet" and not module.startswith("xpnet.")
