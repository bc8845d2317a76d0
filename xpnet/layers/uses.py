"""What a container's forward enforces around the layers it calls as ``layer(x)``, PyTorch's way.

One layer object per use: a layer keeps what its backward needs from its last forward only, so a layer called
twice in one training forward of a model (PyTorch's habit: ``self.relu`` or ``self.pool`` applied after each
convolution) would hand the first use's backward the second use's cache: an error far from its cause where the
shapes differ, and silently wrong gradients where they agree. ``scoped`` wraps every container's ``forward``: the
outermost one running, called directly or by ``model(x)``, opens a record of the layers called as ``layer(x)`` in
training mode; ``note`` raises at the second call of one of them. Evaluation-mode calls (no backward follows) and
``layer.forward(x)`` calls are not recorded, nor are the recurrent cells' (``LSTMCell``...): a cell keeps a stack
of caches, one per call, and its backward takes them in reverse order, so PyTorch's loop through one cell is right
(:mod:`xpnet.layers.recurrent_cells`; their ``__call__`` leaves ``note`` out).

Backward calls after ``zero_grad()``, PyTorch's way: ``optimizer.zero_grad()`` (or ``model.zero_grad()``,
Chainer's ``model.cleargrads()``) clears the model's gradients (``set_to_none=False``: sets them to zeros) and
from then on every ``backward`` of the model adds its gradients to those already there, as PyTorch's autograd
does, until the next ``zero_grad()``: DCGAN's discriminator (one backward on real images, one on fakes, then one
step) and gradient accumulation (``model.backward(dy / k)`` for k batches, then one step) run as written. A
model never given ``zero_grad()`` keeps the book's rule: each ``backward`` overwrites every gradient, and so does
one whose optimizer was given it only at ``step(model)`` (the book's ``SGD(lr)``: its ``zero_grad()`` before that
step has no model to clear, so it clears none). ``counted`` wraps every layer's ``backward`` (a model, or a lone
layer that an optimizer updates); the adding is done there, around the whole backward of what ``arm`` armed, so
no layer needs to know: each layer still assigns its gradients, and the model's own sum is made after it (a layer
that writes into its gradient arrays in place, instead of assigning new ones, gets them taken away by the second
backward and fails, naming the layer, rather than silently losing the first's).
A parameter that no backward reached since ``zero_grad()`` has no gradient, and the optimizer's step leaves it
and its state as they are, as PyTorch skips a parameter whose ``grad`` is None.

The mode: ``layer(x)`` reads the layer's own flag, so ``forward(x, train=False)`` on a model in training mode
runs with every flag set to evaluation for the call (``mode``), as ``model.eval()`` would.
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import Any, Callable

from ..backend import namespace

__all__ = ["scoped", "note", "counted", "arm", "armed"]

_local = threading.local()  # calls: {id(layer): layer} while a container's forward runs, else absent; model


def scoped(forward: Callable[..., Any], mode: Callable[[Any, bool], Any]) -> Callable[..., Any]:
    """``forward`` opening the record of calls when no container's forward is running already. Given a
    ``train=`` other than the container's mode, it runs within ``mode(self, train)``: a forward written
    PyTorch's way, ``self.drop(x)``, reads each layer's own flag, which would otherwise still say training.
    ``train`` given by position (the book's ``forward(x, False)``) counts as by keyword."""
    from .recurrent_args import unpacking_hinted  # imported here: it imports the layer base, which imports this
    forward = unpacking_hinted(forward)  # PyTorch's out, (h_n, c_n) = self.lstm(x): an error that says why
    position = _train_position(forward)

    @functools.wraps(forward)
    def run(self: Any, *xs: Any, **kwargs: Any) -> Any:
        train = xs[position] if position is not None and len(xs) > position else kwargs.get("train")
        if (train is True or train is False) and train != self.training:
            with mode(self, train):
                return run(self, *xs, **kwargs)
        if getattr(_local, "calls", None) is not None:
            return forward(self, *xs, **kwargs)
        _local.calls, _local.model = {}, self
        try:
            return forward(self, *xs, **kwargs)
        finally:
            _local.calls = _local.model = None
    return run


def _train_position(forward: Callable[..., Any]) -> int | None:
    """Where ``train`` stands among forward's positional arguments after ``self`` (None: keyword only, or none)."""
    names = [p.name for p in inspect.signature(forward).parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names.index("train") - 1 if "train" in names[1:] else None


def note(layer: Any, train: bool) -> None:
    """Record a training-mode call of ``layer``; a second one in the same forward raises a RuntimeError
    naming the layer, by its dotted name in the model, and the fix."""
    calls = getattr(_local, "calls", None)
    if calls is None or not train:
        return
    if id(layer) not in calls:
        calls[id(layer)] = layer
        return
    model = _local.model
    name = next((k for k, v in model.named_modules().items() if v is layer), None) if model is not layer else None
    where = f"'{name}' ({layer.name})" if name else layer.name
    attr = (name or layer.name.lower()).replace(".", "_")
    make = f"xn.layers.{layer.name}" if type(layer).__module__.startswith("xpnet.layers.") else layer.name
    raise RuntimeError(f"{model.name}.forward calls the layer {where} a second time in training mode; a layer keeps "
                       "what its backward needs from its last forward only, so the first use's backward would get "
                       f"the second's: give each use its own object (self.{attr}1 = {make}(...), "
                       f"self.{attr}2 = ...){_shared(layer)}")


def _shared(layer: Any) -> str:
    """For a layer with parameters, how to keep one set of weights for all uses (own objects would not share
    them): a siamese network's two inputs, pytorch/examples' Linear at every step of a time loop."""
    if not layer.named_params():
        return ""
    name = getattr(layer, "kind", type(layer)).__name__  # a stack of recurrent layers names its kind
    if hasattr(layer, "reset_state") and name in ("RNN", "LSTM", "GRU"):  # a loop over its time steps
        return (f"; for one {name} over the steps of a loop, run it once on the whole sequence (N, T, features), "
                f"stateful=True carrying the state to the next call, or loop an xn.layers.{name}Cell, which keeps "
                "a cache per call and takes them back in reverse order")
    return ("; to share its weights between the uses (a siamese network, one layer at every time step), call it "
            "once on the inputs joined along the batch axis (xp.concat([x1, x2]), then y[:n], y[n:]; steps stacked "
            "on a time axis for a Linear) and backward once on the dys joined alike")


def counted(backward: Callable[..., Any]) -> Callable[..., Any]:
    """``backward`` adding its gradients to those of the backward calls before it since ``arm`` (``zero_grad()``)."""
    @functools.wraps(backward)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls = self.__dict__.get("_backwards_since_zero_grad")
        if calls is None:
            return backward(self, *args, **kwargs)
        self.__dict__["_backwards_since_zero_grad"] = calls + 1
        if calls == 0:  # the first since zero_grad(): there is nothing to add to
            return backward(self, *args, **kwargs)
        earlier = _take_grads(self)
        try:
            return backward(self, *args, **kwargs)
        except KeyError as exc:
            error = _in_place(self, earlier, exc)
            if error is None:
                raise
            raise error from exc
        finally:
            _add_grads(earlier)
    return run


def _take_grads(model: Any) -> list[tuple[Any, dict[str, Any]]]:
    """Take every gradient out of the model's nodes, so that the next backward assigns fresh ones."""
    taken = []
    for node in model.named_modules().values():
        if node.grads:
            taken.append((node, dict(node.grads)))
            node.grads.clear()
    return taken


def _add_grads(taken: list[tuple[Any, dict[str, Any]]]) -> None:
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
            node.__dict__["_backwards_since_zero_grad"] = None
        return
    model.__dict__["_backwards_since_zero_grad"] = 0
    for node in nodes:
        node.grads.clear()
        if not set_to_none and not node._frozen:
            node.grads.update({k: namespace(p).zeros_like(p) for k, p in node.params.items()})


def armed(model: Any) -> bool:
    """Whether ``model``'s backward calls add their gradients (``zero_grad()`` was called on it)."""
    return getattr(model, "__dict__", {}).get("_backwards_since_zero_grad") is not None
