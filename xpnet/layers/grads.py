"""A layer's ``grads``: a dict of gradients by parameter name whose missing key says why it is missing.

``backward`` fills ``layer.grads``; ``zero_grad()`` empties it (PyTorch's default ``set_to_none=True``, after
which ``p.grad`` is None), and so do ``requires_grad_(False)`` and ``to()``. ``layer.grads["b"]`` then raised a
bare ``KeyError: 'b'``; it raises a :class:`MissingGradient` (a KeyError, its ``args[0]`` still the key) that says
so and what to write, or, for a name that is no parameter of the layer, lists the layer's parameters (PyTorch's
``weight`` of a Linear: says ``W``). Everything else is a dict's: ``"b" in layer.grads``, ``.get``, iteration;
a key that is there is found by dict's own code, with no Python call.

Reading ``layer.grads[key]``, ``.get(key)``, ``.items()`` or ``.values()`` notes the read (``reads``: the backward
ticks, :mod:`.zero_grad`'s, of the last two reads made after different backward calls): a loop that sums each
backward's gradients by hand, the book's way (``acc[k] += layer.grads[k]`` after each backward, no ``zero_grad()``),
read what the next backward overwrote, and the optimizer's check of two backward calls before a step lets it
through, as after ``model.named_grads()``; a read after the last backward alone (a print) does not. While a round of
backward calls left a call out (:mod:`.left_out`'s ``OPEN``) such a read is refused, as an optimizer's step is.
Reads that are no loop's note nothing: xpnet's own (the optimizer's step, a backward adding to its gradient: told by
the calling frame's module; they use ``.get``, ``.items()``, ``dict(grads)``) and the layer's own (a method of the
layer whose ``grads`` it is: a backward writing into its gradient buffers, ``self.grads["W"][...] = dW``, the book's
sequel's way, overwrites them). ``dict(grads)``, ``grads.copy()``, ``{**grads}`` and iterating over the keys stay
dict's own code and note nothing. ``.get``, ``.items()`` and ``.values()`` ask the frame only where a note could
change something (a backward since the last read noted, or a round open): one Python call where dict's method was
one (the optimizer's ``grads.get(name)`` of a step written by hand adds a frame lookup per layer and backward).
"""

from __future__ import annotations

import sys
from typing import Any

from .._user import did_you_mean
from .left_out import OPEN, refuse_grads_read

__all__ = ["Grads", "MissingGradient", "TICKS", "noted"]

TICKS = [0]  # the backward calls that ran, counted up (:mod:`.zero_grad`'s ticks; here for Grads' reads)


class MissingGradient(KeyError):
    """``layer.grads[key]`` with no gradient under ``key``; ``args[0]`` is the key, as a dict's KeyError."""

    def __init__(self, key: Any, message: str):
        super().__init__(key)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Grads(dict):
    """The gradients of the parameters in ``params`` (the layer's own dict) of a layer of type ``kind``."""

    __slots__ = ("_params", "_kind", "reads")

    def __init__(self, params: dict[str, Any], kind: type, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._params, self._kind, self.reads = params, kind, (0, 0)

    def __getitem__(self, key: Any) -> Any:
        reader = sys._getframe(1).f_locals.get("self")
        if getattr(reader, "__dict__", {}).get("grads") is not self:  # not the layer's own (its backward's) read
            self.reads = noted(self.reads)  # a user's: the gradients of the backward calls so far were seen
            if OPEN:  # a round of backward calls left a call out: refused as an optimizer's step (left_out)
                refuse_grads_read(self, f"[{key!r}]")
        return dict.__getitem__(self, key)

    def get(self, key: Any, default: Any = None) -> Any:
        """dict's ``get``; a user's read noted as ``[key]``'s."""
        if (TICKS[0] != self.reads[1] or OPEN) and _users(self):
            _read(self, f".get({key!r})")
        return dict.get(self, key, default)

    def items(self) -> Any:
        """dict's ``items``; a user's read noted as ``[key]``'s."""
        if (TICKS[0] != self.reads[1] or OPEN) and _users(self):
            _read(self, ".items()")
        return dict.items(self)

    def values(self) -> Any:
        """dict's ``values``; a user's read noted as ``[key]``'s."""
        if (TICKS[0] != self.reads[1] or OPEN) and _users(self):
            _read(self, ".values()")
        return dict.values(self)

    def __reduce__(self) -> Any:
        return Grads, (self._params, self._kind), None, None, iter(dict.items(self))

    def __missing__(self, key: Any) -> Any:
        raise MissingGradient(key, _why_missing(key, self._params, self._kind))


def noted(reads: tuple[int, int]) -> tuple[int, int]:
    """``reads`` (the ticks of the last two reads made after different backward calls) with a read now."""
    tick = TICKS[0]
    return reads if tick == reads[1] else (reads[1], tick)


def _users(grads: Grads) -> bool:
    """Whether the caller of ``grads``' method (two frames up) is a user's loop: neither xpnet's own code nor a
    method of the layer whose ``grads`` it is."""
    try:
        frame = sys._getframe(2)
    except ValueError:  # called from C at the bottom of a thread's stack: no loop of xpnet's
        return True
    module = frame.f_globals.get("__name__") or ""
    if module[:6] == "xpnet." or module == "xpnet":
        return False
    reader = frame.f_locals.get("self")
    return getattr(reader, "__dict__", {}).get("grads") is not grads


def _read(grads: Grads, spelled: str) -> None:
    """A user's read of ``grads`` (``spelled``: how, after ``grads``): noted; refused while a round is open."""
    grads.reads = noted(grads.reads)
    if OPEN:
        refuse_grads_read(grads, spelled)


def _why_missing(key: Any, params: dict[str, Any], kind: type) -> str:
    name = kind.__name__
    if params and key not in params:  # (none: a layer of one's own that rebound self.params after __init__)
        names = ", ".join(map(repr, params)) or "none"
        hint = did_you_mean(key, params)
        theirs = getattr(kind, key, None) if isinstance(key, str) else None
        ours = getattr(theirs, "key", None)
        if ours in params:  # PyTorch's name (Linear's weight, bias), a PyTorchParam's
            layout = " (PyTorch's layout: its .T)" if getattr(theirs, "transposed", False) else ""
            hint = f"; PyTorch's {key!r} is {ours!r} here: {name}.grads[{ours!r}]{layout}"
        return f"{name}.grads[{key!r}]: {name} has no parameter {key!r} (its parameters: {names}){hint}"
    return (f"{name}.grads[{key!r}]: no gradient for {key!r}: backward fills grads, and zero_grad() empties it "
            f"(PyTorch's p.grad is None then), as do requires_grad_(False) and to(); run the backward first, or "
            f"read grads.get({key!r}), None where there is none")
