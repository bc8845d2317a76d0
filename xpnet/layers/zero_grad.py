"""What ``zero_grad()`` arms: the backward calls after it add their gradients, PyTorch's way.

Backward calls after ``zero_grad()``, PyTorch's way: ``optimizer.zero_grad()`` (or ``model.zero_grad()``,
Chainer's ``model.cleargrads()``) clears the model's gradients (``set_to_none=False``: sets them to zeros) and
from then on every ``backward`` of the model adds its gradients to those already there, as PyTorch's autograd
does, until the next ``zero_grad()``: DCGAN's discriminator (one backward on real images, one on fakes, then one
step) and gradient accumulation (``model.backward(dy / k)`` for k batches, then one step) run as written. A
model never given ``zero_grad()`` keeps the book's rule: each ``backward`` overwrites every gradient, and so does
one whose optimizer was given it only at ``step(model)`` (the book's ``SGD(lr)``: its ``zero_grad()`` before that
step has no model to clear, so it clears none). ``counted`` wraps every layer's ``backward`` (a model, or a lone
layer that an optimizer updates); the adding is done there, around the whole backward of the outermost node armed
(``arm`` arms every node: a backward written out layer by layer, the book's ``gradient()``, adds as the model's),
so no layer needs to know: each layer still assigns its gradients, and the model's own sum is made after it (a layer
that writes into its gradient arrays in place, instead of assigning new ones, gets them taken away by the second
backward and fails, naming the layer, rather than silently losing the first's).
A parameter that no backward reached since ``zero_grad()`` has no gradient, and the optimizer's step leaves it
and its state as they are, as PyTorch skips a parameter whose ``grad`` is None.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable

from ..backend import namespace
from .grads import TICKS, Grads, noted

__all__ = ["ARMED", "counted", "arm", "armed", "take_grads", "add_grads", "TICKS", "BEFORE", "LAST", "STEPPED",
           "READ", "ADDING", "overwritten", "noted"]

# A node's backward calls since zero_grad() armed it (None: not armed, each backward overwrites its gradients).
ARMED = "_backwards_since_zero_grad"
# Unarmed, the book's rule overwrites where PyTorch adds: two backward calls of a model before its optimizer's step
# (gradient accumulation without a zero_grad() before the loop, a GAN's two losses, retain_graph) would step on the
# last one's gradient alone, silently. Each backward of a node that ran (a cell's round, whose calls add up, none;
# xn.train's steps skip the check: Optimizer.own_backward_calls) takes a tick (TICKS[0], counted up) and keeps the
# one before (BEFORE, LAST); an optimizer's step (refused or not) notes its tick on the model
# (STEPPED), its zero_grad() on itself, ``model.named_grads()`` its reading on the model (READ: the ticks of its last
# two reads after different backward calls, ``noted``; ``layer.grads[key]`` notes them on the layer's Grads,
# ``reads``: a loop that sums the gradients of its backward calls itself reads each), and ``overwritten`` tells at the
# step whether a backward before the last one came after the first two and went unread before the last one.
BEFORE, LAST, STEPPED, READ = "_backward_tick_before", "_backward_tick", "_stepped_tick", "_grads_read_tick"


def overwritten(model: Any, zeroed: float) -> bool:
    """Whether ``model`` (not armed) ran two backward calls since its last step and since ``zeroed`` (the tick of
    its optimizer's last ``zero_grad()``, which armed nothing where the optimizer was built without its model), and
    its gradients went unread between the two (``named_grads()``, or a node's ``grads[key]``: looked for only
    here, on the way to a refusal; a read after the last backward alone, a print, leaves the first's unseen)."""
    own = model.__dict__
    before = own.get(BEFORE, 0)
    if before <= max(own.get(STEPPED, 0), zeroed) or own.get(ARMED) is not None:
        return False
    last = own.get(LAST, 0)
    reads = [own.get(READ, (0, 0))] + [getattr(node.grads, "reads", (0, 0)) for node in model.named_modules().values()]
    return not any(before <= tick < last for pair in reads for tick in pair)


class _Adding(threading.local):
    """within: whether a backward of this thread is adding (it took its nodes' gradients: those inside take none)."""

    within = False


ADDING = _Adding()


def counted(backward: Callable[..., Any]) -> Callable[..., Any]:
    """``backward`` adding its gradients to those of the backward calls before it since ``arm`` (``zero_grad()``).
    ``arm`` arms every node, so that a backward written out layer by layer (the book's ``gradient()``: ``for layer
    in reversed(layers): dout = layer.backward(dout)``) adds as the model's does; within a backward that took the
    gradients of its nodes, those of the layers inside it have none left to take."""
    @functools.wraps(backward)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls = self.__dict__.get(ARMED)
        if calls is None:
            return backward(self, *args, **kwargs)
        self.__dict__[ARMED] = calls + 1
        local = ADDING
        if calls == 0 or local.within:  # the first since zero_grad(): nothing to add to; or taken already
            return backward(self, *args, **kwargs)
        earlier = take_grads(self)
        local.within = True
        try:
            return backward(self, *args, **kwargs)
        except KeyError as exc:
            error = _in_place(self, earlier, exc)
            if error is None:
                raise
            raise error from exc
        finally:
            local.within = False
            add_grads(earlier)
    return run


def take_grads(model: Any) -> list[tuple[Any, dict[str, Any]]]:
    """Take every gradient out of the model's nodes, so that the next backward assigns fresh ones."""
    taken = []
    for node in model.named_modules().values():
        if node.grads:
            taken.append((node, dict(node.grads)))
            node.grads.clear()
    return taken


def add_grads(taken: list[tuple[Any, dict[str, Any]]]) -> None:
    """Put the taken gradients back, each added to the one the backward assigned in its place, if any."""
    for node, grads in taken:
        for key, earlier in grads.items():
            new = node.grads.get(key)
            node.grads[key] = earlier if new is None else earlier + new


def _in_place(model: Any, taken: list[tuple[Any, dict[str, Any]]], exc: KeyError) -> RuntimeError | None:
    """The error for a backward that read a gradient the sum had taken out (a layer of one's own writing into
    ``self.grads[key]`` in place), or None for a KeyError of another cause."""
    names = {id(node): name for name, node in model.named_modules().items()}
    key = exc.args[0] if exc.args else None
    holders = [f"'{names[id(node)] or model.name}' ({node.name})" for node, grads in taken if key in grads]
    if not holders:
        return None
    where = holders[0]
    return RuntimeError(f"{model.name}.backward ran again since zero_grad(), so it adds to the gradients of the "
                        f"backward before it, and {where} read its gradient {key!r} instead of assigning a "
                        f"new one; write self.grads[{key!r}] = ... in its backward (xpnet adds the "
                        "earlier gradient after the backward), or step after each backward")


def arm(model: Any, on: bool = True, set_to_none: bool = True) -> None:
    """``zero_grad()``: clear ``model``'s gradients (``set_to_none=False``: zeros of each trainable parameter's
    shape) and add the gradients of its backward calls from now on; ``on=False``: overwrite them again (the
    book's rule; ``xn.train`` and ``xn.gradcheck`` run their own backward calls so)."""
    if not isinstance(getattr(model, "__dict__", None), dict):
        return
    if not hasattr(model, "named_modules"):  # not an xpnet layer or model: nothing of its own to add up
        return
    nodes = list(model.named_modules().values())
    if not on:  # every node: a part armed by an optimizer of its own (a head's) would add up the run's gradients
        for node in nodes:
            node.__dict__[ARMED] = None
        return
    for node in nodes:  # each node: a backward of one of its layers, called by itself, adds as the model's
        node.__dict__[ARMED] = 0
        node.grads.clear()
        if type(node.grads) is dict:  # rebound by a backward (or a layer's own __init__): a missing key says why
            node.grads = Grads(node.params, type(node))
        if not set_to_none and not node._frozen:
            node.grads.update({k: namespace(p).zeros_like(p) for k, p in node.params.items()})


def armed(model: Any) -> bool:
    """Whether ``model``'s backward calls add their gradients (``zero_grad()`` was called on it)."""
    return getattr(model, "__dict__", {}).get(ARMED) is not None
