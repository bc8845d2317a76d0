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

Backward calls after ``optimizer.zero_grad()``: PyTorch's loop adds the gradients of every ``backward`` since
``zero_grad()`` (DCGAN's discriminator: one backward on real images, one on fakes, then one step); xpnet's backward
overwrites them. ``counted`` wraps every container's ``backward`` to count its calls once an optimizer bound to it
has called ``arm``, and ``backwards_since_zero_grad`` gives the count to the optimizer's step, which refuses more
than one.

The mode: ``layer(x)`` reads the layer's own flag, so ``forward(x, train=False)`` on a model in training mode
runs with every flag set to evaluation for the call (``mode``), as ``model.eval()`` would.
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import Any, Callable

__all__ = ["scoped", "note", "counted", "arm", "backwards_since_zero_grad"]

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
    """``backward`` counting its calls on the container while ``arm`` has armed it."""
    @functools.wraps(backward)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls = self.__dict__.get("_backwards_since_zero_grad")
        if calls is not None:
            self.__dict__["_backwards_since_zero_grad"] = calls + 1
        return backward(self, *args, **kwargs)
    return run


def arm(model: Any, on: bool = True) -> None:
    """Start counting ``model``'s backward calls from 0 (``optimizer.zero_grad()``), or stop (``on=False``, a step)."""
    if isinstance(getattr(model, "__dict__", None), dict):
        model.__dict__["_backwards_since_zero_grad"] = 0 if on else None


def backwards_since_zero_grad(model: Any) -> int:
    """How many times ``model.backward`` ran since the optimizer's ``zero_grad()`` (0 when not counting)."""
    return getattr(model, "__dict__", {}).get("_backwards_since_zero_grad") or 0
