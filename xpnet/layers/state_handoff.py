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
3. A start from the handing layer's output (the book's ``hs[:, -1]``): reading ``dh`` of the layer that owes pays
   its debt (:class:`StateGradient`; the book's ``dhs[:, -1] += decoder.dh`` passes it through ``dhs``). A start
   from its final state (``h_n``, ``c_n``) is paid only by the argument: a read alone (a print) passes nothing.
4. The handing layer's backward (``settle``, one test of an empty dict when nothing is owed) refuses, naming both
   layers and the argument to pass, where it serves the forward that handed the state, the debt is unpaid and its
   argument (``dh_n``, ``dc_n``) is None.

The cells (``GRUCell``, ``LSTMCell``...) take part as decoders: each call given an ``hx`` looks it up (``linked``,
a dict lookup per state array) and keeps its links with its cache; the backward of the call that started from a
handed final state owes it (``owe(cell, links)``), paid only by the handing layer's ``dh_n`` (``dc_n``): the
cell returns ``dh_prev``, read by nobody xpnet sees. And as encoders (a loop of calls, the last one's state given
to the decoder): each training-mode call hands its state (``handed(cell, state)``, numbered per call, kept with
its cache), and the backward of that call (``settle_step``) refuses where the decoder computed the state's
gradient and it did not come back: a decoder layer's ``dh`` (``dc``) never read since its backward (the read is
the only way to take it: a ``dh`` given without it, zeros before the loop, is refused whatever it holds), or,
for a decoder cell (whose backward returned ``dh_prev``), ``dh`` (``dc``) None; a ``dh`` that leaves that
``dh_prev`` out (``dy_t`` where ``dy_t + dh_prev`` was meant) cannot be told from one holding it. Ten Python calls
a step of a cell's loop, forward and backward (an LSTMCell's T=10: 1984 -> 2084, cProfile).

Left alone: a state used only in evaluation (the layer it went to ran no backward), a fresh zero state, a copy
(``xp.asarray(h, copy=True)``: PyTorch's ``h.detach()``) or an explicit ``dh_n=xp.zeros_like(h_n)`` (the gradient
cut on purpose; a cell encoder's cut is the copy alone: its ``dh`` holds its output's gradient too), a stateful
layer's carried state and a cut under ``xn.no_grad()`` (truncated backpropagation through time: the backward of the
forward that handed it never comes, and the next serves another forward). Owners: ``.base`` (NumPy's, CuPy's
views), ``._base`` (PyTorch's); JAX's arrays have neither, and its rows of ``h_n`` are new arrays, so a recurrent
layer notes the rows it returns too and looks up ``hx`` as given. Not followed: arrays that take no weak
reference, a JAX view made by indexing (``h_n[0]``, ``hs[:, -1]``: a new array with a buffer of its own, nothing
naming the array it came from, which xpnet could only match by value), and a cell started from another layer's
output (``hs[:, -1]``: its ``dh_prev`` goes back through ``dhs``, unseen).
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

__all__ = ["FORWARD", "LINKS", "StateGradient", "handed", "linked", "owe", "settle", "settle_step"]

FORWARD = "_forward_number"  # on a layer: the number of the forward its caches are from
LINKS = "_start_state_from"  # on a layer: its forward's links, ((slot, handing layer ref, forward, kind), ...)
FINAL, OUTPUT, STEP = "final", "output", "step"  # what was handed: a final state (h_n), the output, a cell call's state

_numbers = itertools.count(1)
# id(owner array) -> (weakref to it, weakref to the layer that handed it, that forward's number, its kind)
_HANDED: dict[int, tuple[Any, Any, int, str]] = {}
# id(handing layer) -> (weakref to it, the forward's number, [_Debt, ...])
_DEBTS: dict[int, tuple[Any, int, list["_Debt"]]] = {}
_SWEEP = [4096]  # the size of _HANDED at which its dead entries are dropped (doubled while most are alive)


class _Debt:
    """``layer`` (its id and name) started from the state (``slot``: "h" or "c") that another layer handed
    (``kind``: FINAL, OUTPUT, STEP); ``returns``: its backward returns that state's gradient (a cell's ``dh_prev``)
    instead of keeping it in ``dh``."""

    __slots__ = ("layer", "name", "slot", "kind", "paid", "returns")

    def __init__(self, layer: Any, slot: str, kind: str):
        self.layer, self.name, self.slot, self.kind, self.paid = id(layer), layer.name, slot, kind, False
        self.returns = not isinstance(getattr(type(layer), "d" + slot, None), StateGradient)


class _Links(tuple):
    """A forward's links, ((slot, handing layer ref, forward number, kind), ...): a layer pickled or copied with
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


def handed(layer: Any, state: tuple[Any, ...], output: Any = None) -> int:
    """``layer``'s forward ends, giving ``output`` and ending in ``state``: number the forward, note both (a cell's
    call: ``state`` alone, of kind STEP); returns the number. A dead array's entry stays till its id is handed again
    or the table is swept (at ``_SWEEP`` entries): a few Python calls a forward, none per array."""
    number = layer.__dict__[FORWARD] = next(_numbers)
    me = weakref.ref(layer)
    kind = STEP if output is None else FINAL
    try:
        for a in state:
            base = getattr(a, "base", None)
            if base is None:
                base = getattr(a, "_base", None)  # a PyTorch view's owner
            owner = a if base is None else base
            _HANDED[id(owner)] = (weakref.ref(owner), me, number, kind)
        if output is not None:
            base = getattr(output, "base", None)
            if base is None:
                base = getattr(output, "_base", None)
            owner = output if base is None else base
            _HANDED[id(owner)] = (weakref.ref(owner), me, number, OUTPUT)
    except TypeError:  # an array type without weak references: not followed
        pass
    if len(_HANDED) > _SWEEP[0]:
        for key in [key for key, entry in list(_HANDED.items()) if entry[0]() is None]:
            _HANDED.pop(key, None)
        _SWEEP[0] = max(4096, 2 * len(_HANDED))
    return number


def linked(state: tuple[Any, ...], slots: tuple[str, ...], carried_by: Any = None) -> Any:
    """The start state of a forward (``slots``: its names): for each array that a forward handed, (slot, that
    layer, that forward's number, its kind); None where none was. ``carried_by``: a stateful
    layer starting where it left off (no ``hx``), whose own state is no handoff (truncated BPTT)."""
    links = None
    for slot, s in zip(slots, state):
        base = getattr(s, "base", None)
        if base is None:
            base = getattr(s, "_base", None)  # a PyTorch view's owner
        owner = s if base is None else base
        entry = _HANDED.get(id(owner))
        if entry is not None and entry[0]() is owner and entry[1]() is not carried_by:
            links = (links or ()) + ((slot, entry[1], entry[2], entry[3]),)
    return None if links is None else _Links(links)


def owe(layer: Any, links: Any = None) -> None:
    """``layer``'s backward computed the gradient of its start state: a debt to each layer that handed part of it
    (``links``: a cell's call's, which it keeps per call; else the layer's forward's). A cell started from another
    layer's output (``hs[:, -1]``) owes nothing: the ``dh_prev`` it returns goes back through ``dhs``, unseen."""
    for slot, by, number, kind in (layer.__dict__.get(LINKS) if links is None else links) or ():
        handing = by()
        if handing is None or (kind == OUTPUT and links is not None):
            continue
        entry = _DEBTS.get(id(handing))
        if entry is None or entry[0]() is not handing or entry[1] != number:
            if len(_DEBTS) > 64:  # debts to layers gone, or never backpropagated again (frozen)
                for key in [key for key, (ref, _, _) in list(_DEBTS.items()) if ref() is None]:
                    _DEBTS.pop(key, None)
            entry = _DEBTS[id(handing)] = (by, number, [])
        entry[2].append(_Debt(layer, slot, kind))


def _pay(layer: int, slot: str) -> None:
    """A read of ``dh`` (``dc``): pays the debts for a start from the output (the book's ``dhs[:, -1] +=
    decoder.dh``, which passes it through ``dhs``) or from a cell call's state (``cell.backward(dy_t +
    decoder.dh)``); a final state's (``h_n``, ``c_n``) comes back only as the argument (``dh_n``, ``dc_n``): a read
    alone (a print) passes nothing."""
    for _, _, debts in list(_DEBTS.values()):
        for debt in debts:
            if debt.layer == layer and debt.slot == slot and debt.kind != FINAL:
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


def settle_step(cell: Any, number: int, dh: Any, dc: Any) -> None:
    """A cell's backward of its call ``number`` starts, given ``dh`` and ``dc``: raise where a layer started from
    that call's state and computed its gradient, which did not come back: a decoder layer's ``dh`` (``dc``) never
    read (the only way to take it), or a decoder cell's ``dh_prev`` (``dc_prev``) with ``dh`` (``dc``) None."""
    if not _DEBTS:
        return
    entry = _DEBTS.get(id(cell))
    if entry is None or entry[0]() is not cell or entry[1] != number:
        return
    del _DEBTS[id(cell)]
    given = {"h": dh, "c": dc}
    unpaid = [debt for debt in entry[2] if not debt.paid and (not debt.returns or given[debt.slot] is None)]
    if unpaid:
        raise RuntimeError(_why_step(cell, unpaid))


def _why_step(cell: Any, unpaid: list[_Debt]) -> str:
    debt, name = unpaid[0], cell.name.lower()
    slots = [s for s in ("h", "c") if any(d.slot == s for d in unpaid)]
    pair = "c" in cell.state_names
    if debt.returns:  # a decoder cell: its backward of the call that started from the state returned d{slot}_prev
        came = f"{' and '.join('d' + s for s in slots)} None here"
        grads = ", ".join(f"d{s}_prev" for s in slots)
        added = "the (dh_prev, dc_prev) that call's backward returned as (dh, dc)" if pair else \
            "the dh_prev that call's backward returned as dh"
    else:
        came = f"{' and '.join(f'{debt.name}.d{s}' for s in slots)} not read since {debt.name}'s backward"
        grads = ", ".join(f"its d{s}" for s in slots)
        added = f"{debt.name}.dh as dh" + (f" and {debt.name}.dc as dc" if pair else "") + \
            " (their [0] where the state went in as h[None])"
    fix = f"dx, (dh, dc) = {name}.backward(dy_t + dh, dc)" if pair else f"dx, dh = {name}.backward(dy_t + dh)"
    return (f"{cell.name}.backward: the {debt.name} it was handed to started from the state of the call this "
            f"backward serves (as hx or by set_state), and its backward computed that state's gradient ({grads}), "
            f"which did not come back here ({came}): {cell.name}'s gradients would be those of a loss that ignores "
            f"the state it handed on, where PyTorch's autograd carries that gradient back. Pass it: {fix}, with "
            f"{added} (dy_t: the gradient the loss gives this call's h, zeros where none). To cut it on purpose "
            f"(PyTorch's .detach()), give the {debt.name} a copy of the state, xp.asarray(h, copy=True)")


def _why(layer: Any, unpaid: list[_Debt], debts: list[_Debt]) -> str:
    name, debt = layer.name, unpaid[0]
    other = f"{name} itself, in a later call," if debt.layer == id(layer) else f"the {debt.name} it was handed to"
    slots = [s for s in ("h", "c") if any(d.slot == s for d in unpaid)]
    finals = ", ".join(s + "_n" for s in slots)
    none = " and ".join(f"d{s}_n" for s in slots)
    passed = ", ".join(f"d{s}_n=decoder.d{s}" for s in ("h", "c") if any(d.slot == s for d in debts))
    unseen = "a read of decoder.dh, or adding it to dhs[:, -1], is not seen here"
    if debt.returns:  # a cell: its backward returned the gradient of the state its call started from
        pair = any(d.slot == "c" for d in debts)
        passed = "dh_n=dh_prev, dc_n=dc_prev" if pair else "dh_n=dh_prev"
        unseen = f"from dx, {'(dh_prev, dc_prev)' if pair else 'dh_prev'} = cell.backward(...) of its call that " \
                 f"started from the state"
    zeros = ", ".join(f"d{s}_n=xp.zeros_like({s}_n)" for s in slots)
    if debt.kind == OUTPUT:
        came, fix = ("its output (hs[:, -1] as the start state, the book's seq2seq)",
                     f"add it where the state came from, dhs[:, -1] += decoder.dh, before this backward (the book's "
                     f"Seq2seq.backward), or pass backward(dhs, {passed})")
    else:
        came, fix = (f"its final state ({finals}, as hx or by set_state)",
                     f"backward(dhs, {passed}), in the shapes {finals} came in ({unseen})")
    grads = ", ".join(f"d{s}_prev" if debt.returns else f"its d{s}" for s in slots)
    return (f"{name}.backward: {other} started from {came} of the forward this backward serves, and its backward "
            f"computed that state's gradient ({grads}), which was not passed here "
            f"({none} None): {name}'s gradients would be those of a loss that ignores the state it "
            f"handed on, where PyTorch's autograd carries that gradient back. Pass it: {fix} (decoder: the layer "
            f"given the state). To cut it on purpose (PyTorch's .detach()), give that layer a copy, "
            f"xp.asarray(h_n, copy=True), or pass zeros here: {zeros}")
