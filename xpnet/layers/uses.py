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
take them back in reverse order (``reused``): the first backward serves the last call, each next one the call
before, and their parameter gradients add up, as autograd adds a shared weight's. So the model's ``backward``
goes through the uses in reverse, as it goes through the layers: ``self.relu.backward`` once per
``self.relu(...)``, last call first. After the last of them the layer holds its last call's state again (a
Dropout's draw count, a cache a later forward reads). In a model's evaluation-mode forward (``model.eval()``,
``predict``) every call is a use too: a saliency map's or FGSM's backward follows it. In a training-mode forward
an evaluation-mode call is a use as well (a backbone put in ``eval()`` to keep its BatchNorm statistics, called
on a siamese network's two inputs), except after a training-mode use of the layer in the same forward: then it
is a look at other data (a monitor's output), and leaves the layer as the use left it, for the use's backward.
Not recorded: what a layer that is not a container runs
inside its own forward by ``.forward`` (Conv1d's Conv2d: part of its call); its ``self.act(x)`` calls are uses
(``called``).
Refused, naming the layer: a second call of a ``stateful=True`` recurrent layer, whose state flows from one call
into the next, where its backward cannot follow it (loop an ``LSTMCell``, or run the layer once on the whole
sequence). The recurrent cells (``LSTMCell``...) keep their own stack of caches, one per call, the same order
(:mod:`xpnet.layers.recurrent_cells`; ``records_uses = False``).
Refused too, naming the model and the layer: in a model's ``backward`` written out by hand, a layer's backward
called more times than the model's last forward called the layer (:mod:`xpnet.layers.uncalled`).
Refused at an optimizer's step, naming the layer: fewer backward calls of a layer than the last forward's calls of
it that needed one (one submodel's backward forgotten), which left an earlier call's gradient with a later call's
caches (:mod:`xpnet.layers.left_out`; ``reused`` opens and closes each round, ``_again`` keeps each call's mode).

Backward calls after ``zero_grad()`` add their gradients (``counted``, ``arm``): :mod:`xpnet.layers.zero_grad`.

An evaluation-mode forward made by the mode (``model.eval(); model(x_val); model.train()``, no ``train=`` given) of
a model (or of a layer by itself) between a training forward and its backward (a validation line within a step)
keeps what it replaced till the next backward, which in training mode serves the training forward, as PyTorch's
autograd serves its graph, and in evaluation mode the evaluation forward (``_Pending``). ``train=False`` given by
the caller keeps the book's rule: the backward serves the last forward. ``called`` tells the two apart where
``layer(x)`` passes its flag on as ``train``; the outermost forward reads it.

The mode: ``layer(x)`` reads the layer's own flag, so ``forward(x, train=False)`` on a model in training mode
runs with every flag set to evaluation for the call (``mode``), as ``model.eval()`` would.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from typing import Any, Callable

from ..grad_mode import _local as _grad_mode  # .enabled is grad_enabled()'s answer, read without its call
from . import left_out, stale
from .dy_dtype import noted, refuse_other_dtype
from .no_grad_calls import UNDER_NO_GRAD, why
from .one_backward import HELPED, note_helper, refuse_one_backward_for_two_calls
from .view_hint import hint_leaf
from .uncalled import CALLS, FORWARDS, Check, Record, checking, counts, keep_since, named, replaced
from .zero_grad import ADDING, ARMED, BEFORE, LAST, READ, STEPPED, TICKS, add_grads, take_grads

__all__ = ["scoped", "recorded", "chained", "called", "rounded", "reused", "looked"]


class _Local(threading.local):
    """calls: {id(layer): layer} while a container's forward runs, else None; model, the container running it;
    caller, the layer whose forward runs now; called, a layer whose ``__call__`` is under way; repeats:
    {id(layer): its calls} of the layers called more than once in it; no_grad_firsts: {id(layer)} of the layers
    whose first call in it ran under ``xn.no_grad()`` (None till one did)."""

    calls: dict[int, Any] | None = None
    called: Any = None
    caller: Any = None
    no_grad_firsts: set[int] | None = None
    by_mode = False  # with called: that call's train came from the layer's flag (no train= given)


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

    @functools.wraps(forward)
    def run(self: Any, *xs: Any, **kwargs: Any) -> Any:
        given = position is not None and len(xs) > position
        train = xs[position] if given else kwargs.get("train")
        if (train is True or train is False) and train != self.training:
            with mode(self, train):
                return run(self, *xs, **kwargs)
        local = _local
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
        no_grad = self.__dict__[UNDER_NO_GRAD] = not _grad_mode.enabled  # no backward serves it (no_grad_calls)
        self.__dict__[stale.SEEN] = stale.clock  # a backward after a step that changed its weights (layers.stale)
        local = _local
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


# recorded's wrappers -> the forward each wraps, for ``chained`` (not a recurrent layer's: its train_of reads *args)
_PLAIN: dict[Callable[..., Any], Callable[..., Any]] = {}


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


_USES = left_out.USES
# How many of a model's (or a lone layer's) own training forwards since its last backward (FORWARDS) a backward
# found replaced by a later one before it (``rounded``).
_LOST = "_forwards_replaced"
# Not a forward's state: what the layer holds across forwards, or what wraps its methods (xn.gradcheck's watchers).
# A model's record of calls (CALLS) is a forward's state: each call of a model called twice has its own.
_PENDING = "_training_forward_pending"  # on every node: what evaluation-mode forwards replaced (_Pending)
_HELD = frozenset({"params", "grads", "buffers", "forward", "backward", "backward_params", "training", "_frozen",
                   "_init_args", ARMED, _USES, FORWARDS, _LOST, _PENDING, HELPED, stale.STAMP, BEFORE, LAST, STEPPED,
                   READ})
_ABSENT = object()


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


def _state(layer: Any) -> list[tuple[Any, dict[str, Any]]]:
    """Every attribute a forward may rebind, of ``layer`` and of each layer inside it, by reference."""
    return [(node, {k: v for k, v in vars(node).items() if k not in _HELD and k not in node.kept_between_uses})
            for node in _nodes(layer)]


def _nodes(layer: Any) -> list[Any]:
    """``layer``, the layers inside it, and the layers each of them runs as an attribute of its own without
    holding it as a sub-layer (Conv1d's Conv2d on (N, C, 1, L)), each once."""
    found: dict[int, Any] = {}
    for node in layer.named_modules().values():
        todo = [node]
        while todo:
            one = todo.pop()
            if id(one) not in found:
                found[id(one)] = one
                todo += [v for v in vars(one).values() if hasattr(v, "named_modules") and hasattr(v, "backward")]
    return list(found.values())


def _restore(state: list[tuple[Any, dict[str, Any]]], unless_rebound_since: Any = None) -> None:
    """Put the attributes of ``state`` back; with ``unless_rebound_since`` (an earlier state), only those still
    as they were there (an attribute rebound since, by a backward, keeps its new value: the book's ``lstm.dh``)."""
    for i, (node, attributes) in enumerate(state):
        now = vars(node)
        before = unless_rebound_since[i][1] if unless_rebound_since is not None else None
        for k, v in attributes.items():
            current = now.get(k, _ABSENT)
            if current is v or (before is not None and current is not before.get(k, _ABSENT)):
                continue
            now[k] = v


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


def _stateful_twice(layer: Any) -> str:
    """Why a stateful recurrent layer cannot be called twice in one training forward, and what to write."""
    model = _local.model
    kind = getattr(layer, "kind", type(layer)).__name__  # a stack of recurrent layers names its kind
    return (f"{model.name}.forward calls the stateful layer {named(model, layer)} a second time in training "
            "mode: its state flows from one call into the next, where its backward cannot follow it; run it once on "
            "the whole "
            f"sequence (N, T, features), or loop an xn.layers.{kind}Cell, which takes its state as an argument")


def called(layer: Any, by_mode: bool = False) -> None:
    """Said by ``layer.__call__`` before its ``forward``: the call is a use even inside a layer that is not a
    container (a layer of one's own calling ``self.relu(x)`` twice), where ``layer.forward(x)`` is its own
    business (Conv1d's Conv2d). ``by_mode``: no ``train`` given, the layer's flag says (``model.eval();
    model(x)``), told apart from a caller's ``train=False`` by the outermost forward (``_watch``)."""
    local = _local
    local.called, local.by_mode = layer, by_mode


def _count_forward(layer: Any) -> None:
    own = layer.__dict__
    own[FORWARDS] = own.get(FORWARDS, 0) + 1


def _evaluated(layer: Any) -> None:
    """An evaluation-mode forward of ``layer`` (a use): the next backward serves it, whatever training forwards
    ran before it without a backward (targets made in training mode, then a saliency map's or style transfer's
    backward calls after ``eval()``: the second was refused as if the training forwards' caches were lost)."""
    own = layer.__dict__
    own[FORWARDS] = 0  # a forward all the same, for uncalled._stale
    own.pop(_LOST, None)


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
    if not written_out:
        _PLAIN_BACKWARD[run] = plain
    return run


# rounded's wrappers of xpnet's own backward and backward_params -> the method each wraps, for ``backward_steps``
_PLAIN_BACKWARD: dict[Callable[..., Any], Callable[..., Any]] = {}


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


_WRITTEN_OUT: dict[Callable[..., Any], bool] = {}  # a class's backward -> _written_out's answer (scoped)


def _written_out(method: Callable[..., Any]) -> bool:
    """Whether ``method`` is the user's own, not xpnet's (whose containers call each use's backward once)."""
    module = method.__module__  # asked at every model forward: no split
    return module != "xpnet" and not module.startswith("xpnet.")
