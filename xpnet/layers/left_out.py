"""A layer called K times in a forward, given fewer than K backward calls: refused at the optimizer's step.

A layer called several times in one forward of a model keeps each call's caches, and its backward calls take them
back last call first (:mod:`.uses`). A backward written out by hand that leaves out the backward of one call (a
Linear held by two submodels, the second submodel's ``backward`` forgotten) makes the backward that ran take the
LAST call's caches for the gradient it was given, an earlier call's: the parameter gradient comes out wrong,
silently where the shapes agree, where PyTorch's autograd leaves out only the part that was not backpropagated.
Which call a gradient belongs to cannot be seen, but that calls were left out can: a round of backward calls that
``uses.reused`` opened (the layer's first backward after such a forward: ``opened``) and did not close (the
backward of its first call: ``closed``) is still in ``OPEN`` when an optimizer's step comes, before it changes
anything (``Optimizer._advance``: one test of an empty dict a step). ``refuse`` raises there, naming the layer,
its calls and what to write, where the step updates the layer's parameters and a call not taken back needed a
gradient. Left alone:

- a call under ``xn.no_grad()`` (PyTorch's ``torch.no_grad()`` or ``.detach()``): the steps before a truncation of
  backpropagation through time, a target, a look; the explicit way to leave a call's backward out;
- an evaluation-mode call before a training-mode use of the layer in the same forward (a look, ``uses.recorded``);
- a round whose layer the step does not update (a frozen layer: its round is dropped; another optimizer's model:
  kept for that optimizer's step), or that a later training forward of the layer left behind (its backward
  replaces the gradients; an evaluation-mode one, ``model.predict`` for a line of the log, does not);
- a layer called once (no round), a forward with no backward at all (an evaluation forward, ``model.predict``, a
  call whose output went nowhere and got no backward), the recurrent cells' own stacks of calls.
"""

from __future__ import annotations

from typing import Any

from .uncalled import FORWARDS, named

__all__ = ["OPEN", "USES", "opened", "closed", "refuse"]

USES = "_uses_in_last_forward"  # on a layer: its calls in the last forward (uses._Uses), where it had more than one
OPEN: dict[int, tuple[Any, Any]] = {}  # id(layer) -> (layer, its _Uses) whose round of backward calls is under way


def opened(layer: Any, uses: Any) -> None:
    """``layer``'s first backward after a forward that called it more than once (``uses``)."""
    OPEN[id(layer)] = (layer, uses)


def closed(layer: Any) -> None:
    """The backward of ``layer``'s first call ran: every call was taken back."""
    OPEN.pop(id(layer), None)


def _needed(uses: Any) -> list[int]:
    """The calls (counted from 1) that no backward took back and that needed one: not under no_grad, and in training
    mode, or in evaluation mode where no call of the layer in that forward was in training mode."""
    left = len(uses.modes) - uses.backwards
    trained = any(training for _, training in uses.modes)
    return [call for call, (no_grad, training) in enumerate(uses.modes[:left], 1)
            if not no_grad and (training or not trained)]


def refuse(optimizer: Any, work: list[tuple[Any, ...]]) -> None:
    """Raise where a round in ``OPEN`` left out a call that needed a backward and ``work`` (the step's
    ``(name, node, local name, param, grad, xp)``) updates a parameter of its layer; drop the rounds that need none."""
    stepped = {id(item[3]): item for item in work}
    for key, (layer, uses) in list(OPEN.items()):
        own = vars(layer)
        # a training forward since (its backward replaces the gradients); an evaluation one (predict) leaves them
        replaced = own.get(USES) is not uses and own.get(FORWARDS) != 0
        if replaced or not uses.backwards or not _needed(uses) or not layer.params_and_grads(trainable=True)[0]:
            OPEN.pop(key, None)  # (frozen: no step takes its gradients)
            continue
        item = next((stepped[id(p)] for node in layer.named_modules().values() for p in node.params.values()
                     if id(p) in stepped), None)
        if item is not None:
            OPEN.pop(key, None)
            raise RuntimeError(_why(optimizer, item[1], layer, uses))


def _why(optimizer: Any, root: Any, layer: Any, uses: Any) -> str:
    calls, backwards = len(uses.modes), uses.backwards
    needed = _needed(uses)
    model = uses.model.name if uses.model is not None else "the model"
    which = ", ".join(str(c) for c in needed)
    ran = "1 of its backward calls" if backwards == 1 else f"{backwards} of its backward calls"
    return (f"{optimizer.name}.step(): {model}'s last forward called {named(root, layer)} {calls} times, but only "
            f"{ran} ran before this step, and they take the calls back last call first: call{'s' * (len(needed) > 1)} "
            f"{which} got none, and the backward that ran took back call {calls}'s caches. If its gradient was for "
            f"an earlier call (the backward of a later call left out: a layer shared by two submodels, one "
            f"submodel's backward forgotten), {layer.name}'s parameter gradients are wrong, where PyTorch's autograd "
            f"would leave out only the part not backpropagated. Call its backward once per call, last call first "
            f"(the backward of each submodel that called it); a call whose output needs no gradient (a target, a "
            f"look, the steps before a truncation of backpropagation through time: PyTorch's .detach()) goes under "
            f"`with xn.no_grad():` in the forward")
