"""A recurrent layer's state handed to another layer as its start state: the gradient must come back.

Seq2seq as a user writes it: ``enc_out, h = self.encoder(x)`` (``return_state=True``), ``out = self.decoder(y, h)``
(or the book's ``decoder.set_state(hs[:, -1])``), and in backward ``self.decoder.backward(dy)``, then
``self.encoder.backward(dhs)``: with the decoder's ``dh`` (the gradient of the state it started from) left out, the
encoder trains as if its final state did not matter, silently, where PyTorch's autograd carries it back. How it
is told:

1. Each forward of a recurrent layer notes what it handed out (``handed``): its final state and its output, by
   the array owning their memory (a view, ``h_n[0]``, ``hs[:, -1]``, is its owner's: ``.base``, NumPy's and
   CuPy's, whose views name their first owner as NumPy's do), held weakly, with a number for that forward
   (``FORWARD``, kept on the layer).
2. A forward that starts from such an array (``set_state``, PyTorch's ``hx``) notes it (``linked``); its backward,
   having computed that start state's gradient (``dh``, ``dc``), leaves a debt on the layer that handed it
   (``owe``).
3. Reading ``dh`` (``dc``) of the layer that owes pays its debt (:class:`StateGradient`): a backward that passes the
   gradient on reads it (into ``dh_n``, or the book's ``dhs[:, -1] += decoder.dh``).
4. The handing layer's backward (``settle``, one test of an empty dict when nothing is owed) refuses, naming both
   layers and the argument to pass, where it serves the forward that handed the state, the debt is unpaid and its
   argument (``dh_n``, ``dc_n``) is None.

Left alone: a state used only in evaluation (the layer it went to ran no backward), a fresh zero state, a copy
(``xp.asarray(h, copy=True)``: PyTorch's ``h.detach()``) or an explicit ``dh_n=xp.zeros_like(h_n)`` (the gradient
cut on purpose), a stateful layer's carried state and a cut under ``xn.no_grad()`` (truncated backpropagation
through time: the backward of the forward that handed it never comes, and the next serves another forward).
Not followed: arrays that take no weak reference or have no ``.base`` (PyTorch's, JAX's: as before, no check),
and the cells (``LSTMCell``...), whose backward returns the state's gradient.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

__all__ = ["FORWARD", "LINKS", "StateGradient", "handed", "linked", "owe", "settle"]

FORWARD = "_forward_number"  # on a layer: the number of the forward its caches are from
LINKS = "_start_state_from"  # on a layer: its forward's links, ((slot, handing layer ref, forward, output), ...)

_numbers = itertools.count(1)
# id(owner array) -> (weakref to it, weakref to the layer that handed it, that forward's number, its output or not)
_HANDED: dict[int, tuple[Any, Any, int, bool]] = {}
# id(handing layer) -> (weakref to it, the forward's number, [_Debt, ...])
_DEBTS: dict[int, tuple[Any, int, list["_Debt"]]] = {}
_SWEEP = [4096]  # the size of _HANDED at which its dead entries are dropped (doubled while most are alive)


class _Debt:
    """``layer`` (its id and name) started from the state (``slot``: "h" or "c") that another layer handed."""

    __slots__ = ("layer", "name", "slot", "output", "paid")

    def __init__(self, layer: Any, slot: str, output: bool):
        self.layer, self.name, self.slot, self.output, self.paid = id(layer), layer.name, slot, output, False


class _Links(tuple):
    """A forward's links, ((slot, handing layer ref, forward number, output), ...): a layer pickled or copied with
    them drops them (weak references do not pickle; its next forward makes its own)."""

    def __reduce__(self) -> Any:
        return type(None), ()


class StateGradient:
    """``layer.dh`` (``dc``): the gradient of the state the layer's last backward's forward started from; reading
    it pays what that backward owes the layer that handed the state."""

    def __init__(self, slot: str):
        self.slot, self.attr = slot, "d" + slot

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        if _DEBTS:
            _pay(id(obj), self.slot)
        try:
            return obj.__dict__[self.attr]
        except KeyError:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.attr!r}") from None

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.attr] = value


def handed(layer: Any, state: tuple[Any, ...], output: Any) -> None:
    """``layer``'s forward ends, giving ``output`` and ending in ``state``: number the forward, note both. A dead
    array's entry stays till its id is handed again or the table is swept (at ``_SWEEP`` entries): a few Python
    calls a forward, none per array."""
    number = layer.__dict__[FORWARD] = next(_numbers)
    me = weakref.ref(layer)
    try:
        for a in state:
            base = getattr(a, "base", None)
            owner = a if base is None else base
            _HANDED[id(owner)] = (weakref.ref(owner), me, number, False)
        base = getattr(output, "base", None)
        owner = output if base is None else base
        _HANDED[id(owner)] = (weakref.ref(owner), me, number, True)
    except TypeError:  # an array type without weak references: not followed
        pass
    if len(_HANDED) > _SWEEP[0]:
        for key in [key for key, entry in list(_HANDED.items()) if entry[0]() is None]:
            _HANDED.pop(key, None)
        _SWEEP[0] = max(4096, 2 * len(_HANDED))


def linked(state: tuple[Any, ...], slots: tuple[str, ...], carried_by: Any = None) -> Any:
    """The start state of a forward (``slots``: its names): for each array that a forward handed, (slot, that
    layer, that forward's number, whether it was the output); None where none was. ``carried_by``: a stateful
    layer starting where it left off (no ``hx``), whose own state is no handoff (truncated BPTT)."""
    links = None
    for slot, s in zip(slots, state):
        base = getattr(s, "base", None)
        owner = s if base is None else base
        entry = _HANDED.get(id(owner))
        if entry is not None and entry[0]() is owner and entry[1]() is not carried_by:
            links = (links or ()) + ((slot, entry[1], entry[2], entry[3]),)
    return None if links is None else _Links(links)


def owe(layer: Any) -> None:
    """``layer``'s backward computed the gradient of its start state: a debt to each layer that handed part of it."""
    for slot, by, number, output in layer.__dict__.get(LINKS) or ():
        handing = by()
        if handing is None:
            continue
        entry = _DEBTS.get(id(handing))
        if entry is None or entry[0]() is not handing or entry[1] != number:
            if len(_DEBTS) > 64:  # debts to layers gone, or never backpropagated again (frozen)
                for key in [key for key, (ref, _, _) in list(_DEBTS.items()) if ref() is None]:
                    _DEBTS.pop(key, None)
            entry = _DEBTS[id(handing)] = (by, number, [])
        entry[2].append(_Debt(layer, slot, output))


def _pay(layer: int, slot: str) -> None:
    for _, _, debts in list(_DEBTS.values()):
        for debt in debts:
            if debt.layer == layer and debt.slot == slot:
                debt.paid = True


def settle(layer: Any, dh_n: Any, dc_n: Any) -> None:
    """``layer``'s backward starts, given the final state's gradients ``dh_n``, ``dc_n``: raise where a layer that
    started from a state of the forward it serves computed that state's gradient and neither read it nor passed it."""
    if not _DEBTS:
        return
    entry = _DEBTS.pop(id(layer), None)
    if entry is None or entry[0]() is not layer or entry[1] != layer.__dict__.get(FORWARD):
        return
    given = {"h": dh_n, "c": dc_n}
    unpaid = [debt for debt in entry[2] if not debt.paid and given[debt.slot] is None]
    if unpaid:
        raise RuntimeError(_why(layer, unpaid, entry[2]))


def _why(layer: Any, unpaid: list[_Debt], debts: list[_Debt]) -> str:
    name, debt = layer.name, unpaid[0]
    other = f"{name} itself, in a later call," if debt.layer == id(layer) else f"the {debt.name} it was handed to"
    slots = [s for s in ("h", "c") if any(d.slot == s for d in unpaid)]
    finals = ", ".join(s + "_n" for s in slots)
    none = " and ".join(f"d{s}_n" for s in slots)
    passed = ", ".join(f"d{s}_n=decoder.d{s}" for s in ("h", "c") if any(d.slot == s for d in debts))
    zeros = ", ".join(f"d{s}_n=xp.zeros_like({s}_n)" for s in slots)
    if debt.output:
        came, fix = ("its output (hs[:, -1] as the start state, the book's seq2seq)",
                     f"add it where the state came from, dhs[:, -1] += decoder.dh, before this backward (the book's "
                     f"Seq2seq.backward), or pass backward(dhs, {passed})")
    else:
        came, fix = (f"its final state ({finals}, as hx or by set_state)",
                     f"backward(dhs, {passed}), in the shapes {finals} came in")
    return (f"{name}.backward: {other} started from {came} of the forward this backward serves, and its backward "
            f"computed that state's gradient ({', '.join(f'its d{s}' for s in slots)}), which was neither read nor "
            f"passed here ({none} None): {name}'s gradients would be those of a loss that ignores the state it "
            f"handed on, where PyTorch's autograd carries that gradient back. Pass it: {fix} (decoder: the layer "
            f"given the state). To cut it on purpose (PyTorch's .detach()), give that layer a copy, "
            f"xp.asarray(h_n, copy=True), or pass zeros here: {zeros}")
