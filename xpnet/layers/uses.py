"""What a container's forward does around the layers it calls as ``layer(x)``, PyTorch's way.

One layer object for several uses, as PyTorch writes it (``self.relu`` or ``self.pool`` applied after each
convolution, the CIFAR-10 tutorial's ``Net``; one backbone for a siamese network's two inputs; a GRU called at each
step of a decoder loop): a layer keeps what its backward needs from its forward, and a second call would replace
the first's. ``scoped`` wraps every container's ``forward``: the outermost one running, called directly or by
``model(x)``, opens a record of the layers it calls in training mode, as ``layer(x)`` or as ``layer.forward(x)``
(the book's way; ``recorded`` wraps every layer's ``forward`` and notes each call, and a Sequential's
forward notes its layers' first calls itself, ``chained``); from the second call
of one layer on it keeps the state the call before left (every attribute of the layer and of the layers inside
it, by reference: a forward rebinds its caches, it does not write into them), and the layer's backward calls then
take them back in reverse order, last call first (``reused``, :mod:`.reuse`). In a model's evaluation-mode forward
(``model.eval()``, ``predict``) every call is a use too: a saliency map's or FGSM's backward follows it. In a
training-mode forward an evaluation-mode call is a use as well (a backbone put in ``eval()`` to keep its BatchNorm
statistics, called on a siamese network's two inputs), except after a training-mode use of the layer in the same
forward: then it is a look at other data (a monitor's output), and leaves the layer as the use left it, for the
use's backward. Not recorded: what a layer that is not a container runs inside its own forward by ``.forward``
(Conv1d's Conv2d: part of its call); its ``self.act(x)`` calls are uses (``called``).
Refused, naming the layer: a second call of a ``stateful=True`` recurrent layer, whose state flows from one call
into the next, where its backward cannot follow it (loop an ``LSTMCell``, or run the layer once on the whole
sequence). The recurrent cells (``LSTMCell``...) keep their own stack of caches, one per call, the same order
(:mod:`xpnet.layers.recurrent_cells`; ``records_uses = False``).
Refused too, naming the model and the layer: in a model's ``backward`` written out by hand, a layer's backward
called more times than the model's last forward called the layer (:mod:`xpnet.layers.uncalled`).

An evaluation-mode forward made by the mode (no ``train=`` given) of a model (or of a layer by itself) between a
training forward and its backward keeps what it replaced till the next backward, which in training mode serves the
training forward (:mod:`.evaluation_look`); ``train=False`` given by the caller keeps the book's rule: the backward
serves the last forward. ``called`` tells the two apart where ``layer(x)`` passes its flag on as ``train``; the
outermost forward reads it.

The mode: ``layer(x)`` reads the layer's own flag, so ``forward(x, train=False)`` on a model in training mode
runs with every flag set to evaluation for the call (``mode``), as ``model.eval()`` would.
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import Any, Callable

from ..grad_mode import _local as _grad_mode  # .enabled is grad_enabled()'s answer, read without its call
from . import stale
from .backward_calls import _written_out
from .dy_dtype import noted
from .evaluation_look import _evaluated, _watch
from .forward_state import _PENDING, _USES, _nodes, _restore, _state
from .no_grad_calls import UNDER_NO_GRAD
from .reuse import _Uses
from .view_hint import hint_leaf
from .uncalled import CALLS, FORWARDS, Record, counts, keep_since, named

__all__ = ["scoped", "recorded", "chained", "called", "plain_forward"]


class _Local(threading.local):
    """calls: {id(layer): layer} while a container's forward runs, else None; model, the container running it;
    caller, the layer whose forward runs now; called, a layer whose ``__call__`` is under way; repeats:
    {id(layer): its calls} of the layers called more than once in it; no_grad_firsts: {id(layer)} of the layers
    whose first call in it ran under ``xn.no_grad()`` (None till one did); plain: within ``unrecorded()``
    (:mod:`.unrecorded`), every forward runs without its records; looked: an evaluation-mode call ran there;
    plans: there, {id(layer): (type, dtype, shape, forward(x))}, the planned forward of a layer's training-mode
    call on one array of that type, dtype and shape."""

    calls: dict[int, Any] | None = None
    called: Any = None
    caller: Any = None
    no_grad_firsts: set[int] | None = None
    by_mode = False  # with called: that call's train came from the layer's flag (no train= given)
    plain = False
    looked = False
    plans: dict[int, tuple[type, Any, tuple[int, ...], Callable[[Any], Any]]] = {}


_local = _Local()


def scoped(forward: Callable[..., Any], mode: Callable[[Any, bool], Any]) -> Callable[..., Any]:
    """``forward`` opening the record of calls when no container's forward is running already. Given a
    ``train=`` other than the container's mode, it runs within ``mode(self, train)``: a forward written
    PyTorch's way, ``self.drop(x)``, reads each layer's own flag, which would otherwise still say training.
    ``train`` given by position (the book's ``forward(x, False)``) counts as by keyword."""
    from .recurrent_args import ForwardGuard  # imported here: it imports the layer base, which imports this
    guard = ForwardGuard(forward)  # PyTorch's out, (h_n, c_n) = self.lstm(x): an error that says why
    position = _train_position(forward)
    written_out = _written_out(forward)  # xpnet's own containers' backward calls each use once: kept no record
    plain = _PLAIN.get(forward)  # the forward under recorded's wrapper: the outermost call notes itself here
    default = _train_default(forward)
    bare = forward if plain is None else plain  # what runs within unrecorded()

    @functools.wraps(forward)
    def run(self: Any, *xs: Any, **kwargs: Any) -> Any:
        given = position is not None and len(xs) > position
        train = xs[position] if given else kwargs.get("train")
        if (train is True or train is False) and train != self.training:
            with mode(self, train):
                return run(self, *xs, **kwargs)
        local = _local
        if local.plain:  # xn.gradcheck's later passes (unrecorded): the forward alone
            if train is False or (train is None and not self.training):
                local.looked = True
            return bare(self, *xs, **kwargs)
        calls = local.calls
        before = watch = None
        if calls is not None:
            # within another model's forward: a record of its own calls too, but where xpnet's backward takes them
            if written_out or _written_out(type(self).backward):  # (or a subclass's, written out)
                before = counts(calls, local.repeats)
        else:
            own = self.__dict__
            by_mode = local.called is self and local.by_mode  # model(x): train= not given, the model's flag
            if by_mode:
                local.called = None
            if _PENDING in own or (FORWARDS in own and own[FORWARDS]):  # a training forward's backward pending
                watch = _watch(self, None if by_mode else train if given or "train" in kwargs else default)
            if train is not False:
                own[FORWARDS] = own.get(FORWARDS, 0) + 1  # _count_forward's line, without its call
            else:
                _evaluated(self)
            # evaluating: every call is a use (a saliency map's backward follows a model.eval() forward)
            local.calls, local.model, local.caller, local.evaluating = {}, self, None, train is False
            local.evaluation_uses, local.repeats = set(), {}
        try:  # the guard's checks and hints within the record's bounds, as when it was a wrapper of forward
            if guard.checks:
                guard.check(self)
            if calls is not None or plain is None:
                return forward(self, *xs, **kwargs)
            # recorded's wrapper's work for the outermost call (the record is new and empty, no caller): the
            # model's call is noted as a use of its own, so that a backward written out takes it back
            own = self.__dict__
            own[UNDER_NO_GRAD] = not _grad_mode.enabled
            own[stale.SEEN] = stale.clock
            if local.called is self:
                local.called = None
            if not given and "train" not in kwargs:
                train = default
            training = train is True or (train is None and self.training)
            if training or not _stateful(self):
                if not training:
                    if not local.evaluating:  # put in eval() within a training forward: a use all the same
                        local.evaluation_uses.add(id(self))
                    _evaluated(self)
                local.calls[id(self)] = self
                own.pop(_USES, None)
            local.caller = self  # the finally below sets it back
            if written_out:  # the user's forward, most likely with a backward of theirs: dy's dtype checked there
                return noted(self, plain(self, *xs, **kwargs))
            return plain(self, *xs, **kwargs)
        except (TypeError, ValueError, AttributeError) as e:
            hinted = guard.hint(self, e)
            if hinted is None:
                raise
            raise hinted from e
        finally:
            if calls is not None:
                if before is not None:
                    keep_since(self, before, calls, local.repeats, local.model)
            else:
                back = type(self).backward
                mine = _WRITTEN_OUT.get(back)  # _written_out's answer, kept per method: every model forward asks
                if mine is None:
                    mine = _written_out(back)
                    if len(_WRITTEN_OUT) < 1024:  # classes made at run time (tests make thousands): a bound
                        _WRITTEN_OUT[back] = mine
                if written_out or mine:  # what a backward written out may take back
                    self.__dict__[CALLS] = Record(local.calls, local.repeats)
                local.calls = local.model = local.caller = local.evaluation_uses = local.repeats = None
                local.no_grad_firsts = None
                if watch is not None:
                    watch.note()
    return run


def recorded(forward: Callable[..., Any], train_of: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """``forward`` noting its call as a use of the layer while a container's forward runs: ``layer.forward(x)``
    (the book's way) counts as ``layer(x)`` does. Its ``train``, by position or keyword, else its default
    (None there, or no ``train`` at all: the layer's mode), says whether the call is one; ``train_of(self, xs,
    kwargs)`` reads it instead where forward's signature hides it (a recurrent layer's ``*args``). A forward
    running within the same layer's forward (``super().forward``) is the same call, noted once; what a layer
    that is not a container runs within its forward (Conv1d's Conv2d, SpectralNorm's layer) is part of its own
    call, taken back with it (``_nodes``), not noted. An evaluation-mode call of a layer used in training mode
    earlier in the forward leaves the layer as that use left it (no backward follows the look, the use's does);
    any other evaluation-mode call in a training forward is a use (noted in ``evaluation_uses``).
    ``scoped`` does this wrapper's work itself for the outermost model call (a new, empty record, no caller): a
    change here is to be made there too."""
    position = _train_position(forward)
    default = _train_default(forward)
    code = getattr(inspect.unwrap(forward), "__code__", None)  # for hint_leaf, on the error path only

    @functools.wraps(forward)
    def run(self: Any, *xs: Any, **kwargs: Any) -> Any:
        local = _local
        if local.plain:  # xn.gradcheck's later passes (unrecorded): the forward alone, an evaluation-mode call noted
            n = len(xs)
            if train_of is not None:
                train = train_of(self, xs, kwargs)
            else:
                train = xs[position] if position is not None and n > position else kwargs.get("train", default)
            if train is True:  # layer(x), layer.forward(x), forward(x, train=True) or the book's forward(x, True)
                one_input = n == 1 and (not kwargs or kwargs == _TRAINING) or n == 2 and position == 1 and not kwargs
                plan = local.plans.get(id(self)) if one_input else None
                if plan is not None:  # the input the plan was made for: its checks passed in the first pass
                    x = xs[0]
                    if type(x) is plan[0] and x.dtype == plan[1] and x.shape == plan[2]:
                        return plan[3](x)
            elif train is not None or not self.training:
                local.looked = True
            return forward(self, *xs, **kwargs)
        no_grad = self.__dict__[UNDER_NO_GRAD] = not _grad_mode.enabled  # no backward serves it (no_grad_calls)
        self.__dict__[stale.SEEN] = stale.clock  # a backward after a step that changed its weights (layers.stale)
        explicit = local.called is self  # by layer(x): a use wherever it is
        if explicit:
            local.called = None
        calls = local.calls
        caller = None if calls is None else local.caller  # the layer whose forward runs this call
        if caller is self or (caller is not None and not caller.uses_inside and not explicit):
            return forward(self, *xs, **kwargs)
        if train_of is not None:
            train = train_of(self, xs, kwargs)
        else:
            train = xs[position] if position is not None and len(xs) > position else kwargs.get("train", default)
        training = train is True or (train is None and self.training)
        if calls is None:  # a layer called by itself, outside any model: what a model's forward left unfinished
            self.__dict__.pop(_USES, None)  # (it raised, or its backward stopped short) must not steer its backward
            own = self.__dict__
            if _PENDING in own or (FORWARDS in own and own[FORWARDS]):  # a training forward's backward pending
                watch = _watch(self, None if explicit and local.by_mode else train)  # layer(x): the layer's flag
            else:
                watch = None
            if training:
                _count_forward(self)
            else:
                _evaluated(self)
            try:
                return forward(self, *xs, **kwargs)
            except (TypeError, ValueError, AttributeError) as e:  # PyTorch's x.view(...) in a layer of one's own
                hinted = hint_leaf(self, code, e)
                if hinted is None:
                    raise
                raise hinted from e
            finally:
                if watch is not None:
                    watch.note()
        kept = None
        stateful = getattr(self, "stateful", False) is True
        use = training or (local.evaluating and not stateful)
        if not use and calls and any(id(node) in calls and id(node) not in local.evaluation_uses
                                     for node in _nodes(self)):
            kept = _state(self)  # an evaluation-mode look after a use: the use's backward still needs its cache
        elif not use and not stateful:
            use = True  # a part put in eval() (a frozen backbone) called on two inputs: each call is a use
            local.evaluation_uses.add(id(self))
        if use:
            if not training:
                _evaluated(self)
            if id(self) in calls:
                _again(self, training)
            else:  # the first call in this forward: what an earlier forward's calls kept goes
                calls[id(self)] = self
                self.__dict__.pop(_USES, None)
                if no_grad:
                    _first_under_no_grad(self)
                if training and self is not local.model:  # for rounded (the model's own, scoped counts): its
                    _count_forward(self)                    # layers' backward calls written out by hand
        local.caller = self
        try:
            return forward(self, *xs, **kwargs)
        finally:
            local.caller = caller
            if kept is not None:
                _restore(kept)
    if train_of is None:
        _PLAIN[run] = forward
    return run


_TRAINING = {"train": True}  # the keywords a planned call may come with (recorded, within unrecorded())

# recorded's wrappers -> the forward each wraps, for ``chained`` (not a recurrent layer's: its train_of reads *args)
_PLAIN: dict[Callable[..., Any], Callable[..., Any]] = {}


def plain_forward(method: Callable[..., Any]) -> Callable[..., Any] | None:
    """The forward that ``recorded``'s wrapper ``method`` (a class's ``forward``) calls, to run without the
    records where no backward reads them (``xn.train``'s planned steps, ``xn.gradcheck``'s later passes); None
    where ``method`` is no such wrapper (a recurrent layer's, whose ``train_of`` reads ``*args``; a container's)."""
    return _PLAIN.get(method)


def chained(model: Any, layers: Any, x: Any, train: bool) -> Any:
    """``x`` through each of ``layers`` in turn, ``layer.forward(x, train=train)``: Sequential's forward. Where
    the chain runs as a part of a container's forward (``model``'s own call noted, every call of a training
    forward a use), a leaf layer called the first time in it is noted here as ``recorded`` would note it, and its
    forward runs without the wrapper: one decision per layer, not a wrapper's call and its reading of ``train``.
    Any other call (a layer called again, a container, a layer whose ``forward`` is set on the object, such as
    ``xn.gradcheck``'s watchers) goes through ``layer.forward``."""
    local = _local
    calls = local.calls
    if calls is None or local.caller is not model or train is not True:
        for layer in layers:
            x = layer.forward(x, train=train)
        return x
    under_no_grad = not _grad_mode.enabled
    now = stale.clock
    try:
        for layer in layers:
            own = layer.__dict__
            plain = _PLAIN.get(type(layer).forward)
            if plain is None or layer.uses_inside or id(layer) in calls or "forward" in own:
                x = layer.forward(x, train=True)
                continue
            if local.called is layer:
                local.called = None
            own[UNDER_NO_GRAD] = under_no_grad
            own[stale.SEEN] = now
            calls[id(layer)] = layer
            own.pop(_USES, None)
            if under_no_grad:
                _first_under_no_grad(layer)
            own[FORWARDS] = own.get(FORWARDS, 0) + 1  # _count_forward's line, without its call
            local.caller = layer
            x = plain(layer, x, train=True)
            local.caller = model
    finally:
        local.caller = model
    return x


def _train_default(forward: Callable[..., Any]) -> Any:
    """The default of forward's ``train`` (None where it has none, or no ``train`` at all: the layer's mode)."""
    parameter = inspect.signature(forward).parameters.get("train")
    return None if parameter is None or parameter.default is parameter.empty else parameter.default


def _stateful(layer: Any) -> bool:
    return getattr(layer, "stateful", False) is True


def _train_position(forward: Callable[..., Any]) -> int | None:
    """Where ``train`` stands among forward's positional arguments after ``self`` (None: keyword only, or none)."""
    names = [p.name for p in inspect.signature(forward).parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names.index("train") - 1 if "train" in names[1:] else None


def _again(layer: Any, training: bool) -> None:
    """A second or later call of ``layer`` in this forward (in training mode or not): keep the state the call
    before left, and each call's mode for :mod:`.left_out` (the first call's read from the record: in a training
    forward an evaluation-mode use comes before any training-mode one, ``recorded``). A second call of a stateful
    recurrent layer raises a RuntimeError naming the layer, by its dotted name in the model."""
    if getattr(layer, "stateful", False) is True:
        raise RuntimeError(_stateful_twice(layer))
    own = vars(layer)
    uses = own.get(_USES)
    if uses is None:
        local = _local
        uses = own[_USES] = _Uses()
        uses.model = local.model
        firsts = local.no_grad_firsts
        uses.modes.append((firsts is not None and id(layer) in firsts,
                           not local.evaluating and id(layer) not in local.evaluation_uses))
    uses.modes.append((own[UNDER_NO_GRAD], training))
    uses.after.append(_state(layer))
    _local.repeats[id(layer)] = len(uses.after) + 1


def _first_under_no_grad(layer: Any) -> None:
    """``layer``'s first call in this forward runs under ``xn.no_grad()``: for its record of modes (``_again``)."""
    local = _local
    if local.no_grad_firsts is None:
        local.no_grad_firsts = set()
    local.no_grad_firsts.add(id(layer))


def _stateful_twice(layer: Any) -> str:
    """Why a stateful recurrent layer cannot be called twice in one training forward, and what to write."""
    model = _local.model
    kind = getattr(layer, "kind", type(layer)).__name__  # a stack of recurrent layers names its kind
    return (f"{model.name}.forward calls the stateful layer {named(model, layer)} a second time in training "
            "mode: its state flows from one call into the next, where its backward cannot follow it; run it once on "
            "the whole "
            f"sequence (N, T, features), or loop an xn.layers.{kind}Cell, which takes its state as an argument")


def called(layer: Any, train: Any, inputs: str = "x", hint: str = "") -> bool:
    """Said by ``layer.__call__`` before its ``forward``; the ``train`` that forward gets: the layer's flag where
    none was given (``model.eval(); model(x)``), else ``train`` checked (``layer._check_train(train, inputs,
    hint)``: anything but True or False, an array in its place, raises a TypeError naming
    ``{layer}.forward({inputs}, train)``). The call is then a use even inside a layer that is not a container (a
    layer of one's own calling ``self.relu(x)`` twice), where ``layer.forward(x)`` is its own business (Conv1d's
    Conv2d); a flag that came from the layer's mode is told apart from a caller's ``train=False`` by the outermost
    forward (``_watch``)."""
    local = _local
    if train is None:
        local.called, local.by_mode = layer, True
        return layer.training
    train = layer._check_train(train, inputs, hint)
    local.called, local.by_mode = layer, False
    return train


def _count_forward(layer: Any) -> None:
    own = layer.__dict__
    own[FORWARDS] = own.get(FORWARDS, 0) + 1


_WRITTEN_OUT: dict[Callable[..., Any], bool] = {}  # a class's backward -> _written_out's answer (scoped)
