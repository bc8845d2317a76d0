"""The steps of an ``xn.train`` epoch as a plan made once an epoch: each layer's forward and backward and the fused
update called directly, without the per-step bookkeeping a loop of one's own needs.

A loop of one's own may do anything between two calls (call a layer twice, leave a backward out, step between a
forward and its backward, arm ``zero_grad()``, replace a layer), so every call of a step checks for it: the use
records of ``layers.uses``, ``rounded``'s refusals, the optimizer's step plan and gradient checks. ``xn.train``
makes every call of its steps itself, and within an epoch whose every part is xpnet's own, nothing else runs
between them. How an epoch goes where :meth:`PlannedStep.of` finds one:

1. The plan is made at the start of the epoch, where the model is an ``xn.Sequential`` of xpnet's own leaf
   layers (each once, no method set on an object, none holding a layer, none stateful; frozen ones,
   ``requires_grad_(False)``, run their forward and, above the first layer that trains, their backward, and the
   update leaves them out, as the ordinary step), the loss is xpnet's, and the epoch runs no code of the user's
   between steps (no per-step callback, ``transform``, ``comm``, gradient accumulation, perplexity loss;
   ``clip_grad_norm``/``clip_grad_value`` clip between the backward and the update, the ordinary call). Anything
   else: every step the ordinary way.
2. The epoch's first and last steps run the ordinary way (every check, every record; the first finds what the
   model and data would refuse, at the step a loop of one's own would; the last leaves every record as the
   ordinary step leaves it). The steps between reuse what the first proved: the same layers, each once, in
   training mode, with grad mode on, no step between a forward and its backward, no ``zero_grad()`` armed.
3. A planned step calls each layer's forward (the method ``recorded`` wraps; or, on NumPy arrays, the forward of
   its ``planned_calls()``, Linear's and ReLU's: the same kernels without the checks the first step's shapes and
   dtypes passed, the fast paths found once), the loss's forward and backward (SoftmaxCrossEntropy's planned
   calls: its fused kernel, the calls counted as its wrappers count them), each layer's backward (the method
   ``rounded`` wraps, or its planned one) from the last to the first that trains, whose ``backward_params`` it
   calls; it stamps the forward's parameter clock on the model and on each layer before its forward
   (``layers.stale``), as the ordinary forward does, counts the forward of each layer below the first that trains
   (``layers.uses``' ``FORWARDS``, which no backward of a step takes off), and the model's backward tick
   (``layers.zero_grad``). A dy of another dtype than the output goes to the model's ``backward_params``, which
   refuses it, after the forward's counts.
4. The update: ``SGD`` without weight decay calls the fused whole-step kernel (``"sgd_updates"``, with momentum
   ``"sgd_momentum_updates"`` once every buffer is made) and counts the step and its clock as ``Optimizer.step``
   does; where that kernel declines (nothing touched), and for every other optimizer, ``optimizer.step(model)``.

5. An exception within a planned step (a KeyboardInterrupt, a MemoryError, a kernel's error) leaves the records
   the ordinary step leaves where it stops at the same call: the forward counts of the model and of each layer
   whose forward began (not those whose backward began), the loss's call count (``SoftmaxCrossEntropy``'s
   planned forward), the optimizer's step count and the parameter clock (the fused update), so that a loop of
   one's own, or ``xn.train`` again, after catching it meets the checks it meets after an ordinary step's.

The products, kernels and their order are the ordinary step's: the weights, the history and a resumed run are
the same to the bit (``tests/test_planned_step.py`` compares every array and every record the two leave, also
after an exception within a step).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..backend import fast_path, namespace
from ..datasets.batches import BatchIterator
from ..layers import stale
from ..layers.backward_calls import plain_backward
from ..layers.left_out import OPEN
from ..layers.tree import Tree
from ..layers.uncalled import FORWARDS
from ..layers.uses import plain_forward
from ..layers.zero_grad import ARMED, BEFORE, LAST, STEPPED, TICKS
from ..models.sequential import Sequential
from ..optim.base import unfused
from ..optim.sgd import SGD

__all__ = ["PlannedStep", "ENABLED"]

ENABLED = True  # False: every step the ordinary way (tests compare the two)

_SEEN = stale.SEEN
_LEAF = Tree.named_children  # a leaf's named_children (layers.tree)
_SET_ON_OBJECT = ("forward", "backward", "backward_params", "named_children")


def _xpnet_own(obj: Any, package: str) -> bool:
    return type(obj).__module__.startswith(package)


def _plannable(layer: Any) -> bool:
    """A layer of xpnet's without children, ``zero_grad()`` armed, state carried between batches or methods of
    the object's own, holding no layer, whose forward and backward ``recorded`` and ``rounded`` wrap."""
    kind, own = type(layer), layer.__dict__
    return (_xpnet_own(layer, "xpnet.layers.") and kind.named_children is _LEAF and not kind.uses_inside
            and "params" in own and "grads" in own and own.get(ARMED) is None
            and not any(name in own for name in _SET_ON_OBJECT) and getattr(layer, "stateful", False) is not True
            and plain_forward(kind.forward) is not None and plain_backward(kind.backward) is not None
            and not any(hasattr(v, "named_modules") and hasattr(v, "backward") for v in own.values()))


class PlannedStep:
    """The middle steps of one epoch of ``trainer`` (see the module's docstring). ``chain``: (each layer's
    ``__dict__``, its forward(x)) in order; ``backwards``: the backward(dy) of each from the last to the one after
    the first that trains (``start``); ``first``: that one's backward_params(dy); ``nodes``: the ``__dict__`` of the
    model and each layer (for the parameter clock); ``below``: those of the layers below ``start``; ``pairs``:
    (params dict, key) of each parameter that trains in ``params_and_grads`` order."""

    def __init__(self, trainer: Any, layers: list[Any], start: int, names: list[str]):
        self.model, self.loss, self.optimizer = trainer.model, trainer.loss, trainer.optimizer
        self.start = start
        self.chain: list[tuple[dict[str, Any], Any]] = []  # each layer's (__dict__, forward(x)), its backward(dy)
        self.backwards: list[Any] = []  # and the first's backward_params(dy), made at the first planned step
        self.first: Any = None          # (_calls), after the epoch's first step
        self.loss_calls: Any = None  # the loss's planned (forward(y, t), backward()), where it has them
        self.nodes = [self.model.__dict__, *(layer.__dict__ for layer in layers)]
        self.below = self.nodes[1:start + 1]
        self.layers = layers
        self.trained = [layer for layer in layers if layer.params and not layer._frozen]
        self.pairs = [(layer.params, key) for layer in self.trained for key in layer.params]
        self.names = names  # the optimizer's names of the same parameters, in order
        self.count = len(self.pairs)
        self.fused = self._fused()
        self.velocities: list[Any] | None = None

    @classmethod
    def of(cls, trainer: Any, batches: Any) -> "PlannedStep | None":
        """The plan of this epoch of ``trainer`` over ``batches``, or None where a step may meet what only the
        ordinary step's checks and records handle."""
        model = trainer.model
        if not ENABLED or trainer.comm is not None or trainer.accumulate != 1 or trainer.step_callbacks \
                or trainer.transform is not None or trainer.nll is not None or trainer.inputs != 1 \
                or type(batches) is not BatchIterator or len(batches) < 3 or type(model) is not Sequential \
                or not _xpnet_own(trainer.loss, "xpnet.") or model._frozen \
                or any(name in model.__dict__ for name in _SET_ON_OBJECT):
            return None
        layers = list(model.layers)
        if len({id(layer) for layer in layers}) != len(layers) or not all(_plannable(layer) for layer in layers):
            return None
        start = next((i for i, layer in enumerate(layers) if layer.params and not layer._frozen), None)
        if start is None or plain_backward(type(layers[start]).backward_params) is None:
            return None
        try:
            names = list(model.params_and_grads(trainable=True)[0])
        except ValueError:  # a gradient under a name that holds no parameter: the ordinary step refuses it, at its step
            return None
        return cls(trainer, layers, start, names)

    def _fused(self) -> Any:
        """The whole-step kernel the optimizer's ``_updated_at_once`` would call, or None (``optimizer.step``)."""
        opt = self.optimizer
        if type(opt) is not SGD or opt.weight_decay or opt.device_scalars is not None or opt._several_groups \
                or not self.pairs:
            return None
        named = self.model.named_params()
        if len(self.names) != self.count or any(named[name] is not params[key]
                                                for name, (params, key) in zip(self.names, self.pairs)):
            return None
        p = self.pairs[0][0][self.pairs[0][1]]
        return fast_path("sgd_momentum_updates" if opt.momentum else "sgd_updates", namespace(p), unfused)

    def forward_backward(self, xs: tuple[Any, ...], yb: Any) -> Any:
        """A step's forward, loss and backward (``Trainer.forward_backward``'s calls) on the batch ``xs`` (one input)
        and its targets ``yb``; returns (the loss's value, the model's output). An exception leaves the forward
        counts the ordinary step leaves where it stops at the same call (``_forwarded``, ``_backed``)."""
        if not self.chain:  # (before any record: an interrupt here leaves none, as before the ordinary forward)
            self._calls()
        now = stale.clock
        self.nodes[0][_SEEN] = now
        x, reached = xs[0], 0
        try:
            for own, forward in self.chain:  # stamped before its forward, as chained stamps it
                own[_SEEN] = now
                reached += 1
                x = forward(x)
            loss = self.loss
            value = None if self.loss_calls is None else self.loss_calls[0](x, yb)
            if value is None:  # no planned calls, or its kernel declined: the ordinary calls
                value = loss.forward(x, yb, check=False)
                dy = loss.backward()
            else:
                dy = self.loss_calls[1]()
        except BaseException:
            self._forwarded(reached)
            raise
        if getattr(dy, "dtype", None) != x.dtype:  # refused by the model's backward, as the ordinary step's
            self._forwarded(reached)
            self.model.backward_params(dy)
            return value, x
        begun = 0
        try:
            for backward in self.backwards:
                begun += 1
                dy = backward(dy)
            begun += 1
            self.first(dy)
        except BaseException:
            self._backed(begun)
            raise
        for own in self.below:  # no backward of the step reaches them: their forwards add up, as chained counts
            own[FORWARDS] = own.get(FORWARDS, 0) + 1
        own = self.nodes[0]  # the model's backward ran: its tick, as rounded takes it (zero_grad.overwritten)
        TICKS[0] += 1
        own[BEFORE], own[LAST] = own[LAST] if LAST in own else 0, TICKS[0]
        return value, x

    def _forwarded(self, reached: int) -> None:
        """The forward counts of an ordinary step stopped in the forward of layer ``reached`` (counted from 1), or
        after the forward: the model's and those of the layers whose forward began (``chained``'s counts)."""
        for own in self.nodes[:reached + 1]:
            own[FORWARDS] = own.get(FORWARDS, 0) + 1

    def _backed(self, begun: int) -> None:
        """The forward counts of an ordinary step stopped in the ``begun``-th backward call (from the last layer):
        the model's taken off (its backward began), those of the layers whose backward began taken off
        (``backward_steps``), the others' counted."""
        for own in self.nodes[1:len(self.nodes) - begun]:
            own[FORWARDS] = own.get(FORWARDS, 0) + 1

    def _calls(self) -> None:
        """Each layer's calls: its ``planned_calls()`` where it has them (NumPy arrays: nothing for ``untracked``
        to detach) and its last forward and backward ran with this epoch's shapes (the epoch's first step), else
        its forward and backward methods as ``chained`` and ``backward_steps`` call them."""
        numpy = all(type(params[key]) is np.ndarray for params, key in self.pairs)
        planned = getattr(type(self.loss), "planned_calls", None)
        self.loss_calls = planned(self.loss) if planned is not None and numpy else None
        for i, layer in enumerate(self.layers):
            kind = type(layer)
            planned = getattr(kind, "planned_calls", None)
            made = planned(layer) if planned is not None and numpy else None
            forward, backward, backward_params = made if made is not None else (None, None, None)
            self.chain.append((layer.__dict__,
                               forward or functools.partial(plain_forward(kind.forward), layer, train=True)))
            if i > self.start:
                self.backwards.insert(0, backward or functools.partial(plain_backward(kind.backward), layer))
            elif i == self.start:
                self.first = backward_params or functools.partial(plain_backward(kind.backward_params), layer)

    def update(self) -> None:
        """The step's update: the fused kernel with ``Optimizer.step``'s counts, else ``optimizer.step(model)``.
        The counts come after the kernel, or, where it raises, before the exception goes on (``_advance`` and
        ``_apply`` count before their kernel)."""
        opt, model, fused = self.optimizer, self.model, self.fused
        if fused is None:
            opt.step(model)
            return
        if OPEN:  # a round of backward calls left open (layers.left_out): the ordinary step says whether it refuses
            opt.step(model)
            return
        params = [params[key] for params, key in self.pairs]
        grads = [dict.get(layer.grads, key) for layer in self.trained for key in layer.params]  # (no read noted)
        try:
            if opt.momentum:
                done = self.velocities is not None or self._find_velocities() is not None
                done = done and fused(params, grads, self.velocities, opt._lr, opt.momentum, opt.dampening,
                                      opt.nesterov) is not NotImplemented
            else:
                done = fused(params, grads, opt._lr) is not NotImplemented
        except BaseException:
            self._counted()
            raise
        if not done:  # nothing touched: the ordinary step (its per-parameter updates)
            self.fused = None
            opt.step(model)
            return
        self._counted()
        model.__dict__[STEPPED] = TICKS[0]

    def _counted(self) -> None:
        """``Optimizer.step``'s counts of an update: the step (``_advance``) and the parameter clock (``_apply``)."""
        self.optimizer.count_steps(1)
        stale.changed(self.model, type(self.optimizer), self.count)

    def _find_velocities(self) -> list[Any] | None:
        """Each parameter's momentum buffer where every one is made (SGD's first step makes them), else None."""
        state = self.optimizer.state
        found = []
        for name in self.names:
            v = state.get(name, {}).get("v")
            if v is None:
                return None
            found.append(v)
        self.velocities = found
        return found
