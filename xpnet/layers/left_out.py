"""A layer called K times in a forward, given fewer than K backward calls: refused at the optimizer's step.

A layer called several times in one forward of a model keeps each call's caches, and its backward calls take them
back last call first (:mod:`.reuse`). A backward written out by hand that leaves out the backward of one call (a
Linear held by two submodels, the second submodel's ``backward`` forgotten) makes the backward that ran take the
LAST call's caches for the gradient it was given, an earlier call's: the parameter gradient comes out wrong,
silently where the shapes agree, where PyTorch's autograd leaves out only the part that was not backpropagated.
Which call a gradient belongs to cannot be seen, but that calls were left out can: a round of backward calls that
``reuse.reused`` opened (the layer's first backward after such a forward: ``opened``) and did not close (the
backward of its first call: ``closed``) is still in ``OPEN`` when an optimizer's step comes, before it changes
anything (``Optimizer._advance``: one test of an empty dict a step). ``refuse`` raises there, naming the layer,
its calls and what to write, where the step updates the layer's parameters and a call not taken back needed a
gradient; ``refuse_read`` alike where ``model.named_grads()`` is read (a step written by hand, the char-RNN
tutorial's ``p -= lr * model.named_grads()[name]``), and ``refuse_grads_read`` where a user reads ``layer.grads[key]``
(the book's ``params[key] -= lr * grads[key]``; a layer's own read, in its backward, is no user's: ``Grads``), and
at each evaluation of L-BFGS's closure (``LBFGS._evaluate``). Left alone:

- a call under ``xn.no_grad()`` (PyTorch's ``torch.no_grad()`` or ``.detach()``): the steps before a truncation of
  backpropagation through time, a target, a look; the explicit way to leave a call's backward out;
- an evaluation-mode call before a training-mode use of the layer in the same forward (a look, ``uses.recorded``);
- a round whose layer the step does not update (a frozen layer: its round is dropped; another optimizer's model:
  kept for that optimizer's step), or whose gradients a later forward and backward of the layer replaced (a forward
  alone, ``model.predict`` for a line of the log, does not; a cell's round is dropped at its next forward);
- a layer called once (no round), a forward with no backward at all (an evaluation forward, ``model.predict``, a
  call whose output went nowhere and got no backward).

The recurrent cells (``LSTMCell``...) keep a stack of calls of their own (:mod:`.recurrent_cells`): each backward
that leaves calls on it opens the round, the one that empties it closes it, and each call notes whether it ran under
``xn.no_grad()``.
"""

from __future__ import annotations

from typing import Any

from .uncalled import FORWARDS, named

__all__ = ["OPEN", "USES", "opened", "closed", "refuse", "refuse_read", "refuse_grads_read"]

USES = "_uses_in_last_forward"  # on a layer: its calls in the last forward (reuse._Uses), where it had more than one
OPEN: dict[int, tuple[Any, Any]] = {}  # id(layer) -> (layer, its _Uses) whose round of backward calls is under way


def opened(layer: Any, uses: Any) -> None:
    """``layer``'s first backward after a forward that called it more than once (``uses``; None: a cell, whose
    backward says so while calls are left on its stack)."""
    OPEN[id(layer)] = (layer, uses)


def closed(layer: Any) -> None:
    """The backward of ``layer``'s first call ran: every call was taken back."""
    OPEN.pop(id(layer), None)


def _round(layer: Any, uses: Any) -> tuple[int, int, list[int]] | None:
    """(calls, backward calls, the calls (counted from 1) that no backward took back and that needed one) of
    ``layer``'s round, None where a later forward and a backward of the layer since replaced its gradients (a
    forward alone, ``model.predict`` for a line of the log, leaves them: ``FORWARDS``, which a backward takes off,
    says a forward ran since). Needed: not under no_grad, and in
    training mode, or in evaluation mode where no call of the layer in that forward was in training mode. A cell
    (``uses`` None) says it itself (``left_out_round``: its stack of calls)."""
    if uses is None:
        return layer.left_out_round()
    own = vars(layer)
    if own.get(USES) is not uses and FORWARDS not in own:
        return None
    left = len(uses.modes) - uses.backwards
    trained = any(training for _, training in uses.modes)
    return len(uses.modes), uses.backwards, [call for call, (no_grad, training) in enumerate(uses.modes[:left], 1)
                                             if not no_grad and (training or not trained)]


def refuse(optimizer: Any, work: list[tuple[Any, ...]]) -> None:
    """Raise where a round in ``OPEN`` left out a call that needed a backward and ``work`` (the step's
    ``(name, node, local name, param, grad, xp)``) updates a parameter of its layer; drop the rounds that need none."""
    stepped = {id(item[3]): item for item in work}
    for key, (layer, uses) in list(OPEN.items()):
        found = _round(layer, uses)
        if found is None or not found[1] or not found[2] or not layer.trainable_params():
            OPEN.pop(key, None)  # (frozen: no step takes its gradients)
            continue
        item = next((stepped[id(p)] for node in layer.named_modules().values() for p in node.params.values()
                     if id(p) in stepped), None)
        if item is not None:
            OPEN.pop(key, None)
            root = item[1]
            raise RuntimeError(_why(f"{optimizer.name}.step()", "this step", root, layer,
                                    getattr(uses, "model", None) or root, *found))


def refuse_grads_read(grads: Any, spelled: str) -> None:
    """A user's ``layer.grads[key]`` (``grads``: that layer's; ``spelled``: the read after ``grads``, ``['W']``,
    ``.get('W')``, ``.items()``; the book's ``params[key] -= lr * grads[key]``; called while ``OPEN`` holds a
    round): as ``refuse_read`` for the layer whose round is open and holds ``grads``."""
    for layer, uses in list(OPEN.values()):
        if any(node.grads is grads for node in layer.named_modules().values()):
            refuse_read(getattr(uses, "model", None) or layer, f"{type(layer).__name__}.grads{spelled}")
            return


def refuse_read(node: Any, who: str | None = None) -> None:
    """``node.named_grads()`` (a step written by hand, ``p -= lr * model.named_grads()[name]``, reads it; called
    while ``OPEN`` holds a round; ``who``: what read, where not that): raise where a round of a layer inside
    ``node`` left out a call that needed a backward, as an optimizer's step does; drop the rounds that need none."""
    inside = None
    for key, (layer, uses) in list(OPEN.items()):
        found = _round(layer, uses)
        if found is None or not found[1] or not found[2] or not layer.trainable_params():
            OPEN.pop(key, None)
            continue
        if inside is None:
            inside = {id(n) for n in node.named_modules().values()}
        if id(layer) in inside:
            OPEN.pop(key, None)
            raise RuntimeError(_why(who or f"{node.name}.named_grads()", "these gradients were read (for an update "
                                    "written by hand, as an optimizer's step)", node, layer,
                                    getattr(uses, "model", None) or node, *found))


def _why(who: str, when: str, root: Any, layer: Any, model: Any, calls: int, backwards: int,
         needed: list[int]) -> str:
    which = ", ".join(str(c) for c in needed)
    took = f"call {calls}'s caches" if backwards == 1 else f"the caches of calls {calls} to {calls - backwards + 1}"
    ran = "1 of its backward calls" if backwards == 1 else f"{backwards} of its backward calls"
    return (f"{who}: {model.name}'s forward called {named(root, layer)} {calls} times, but only "
            f"{ran} ran before {when}, and they take the calls back last call first: "
            f"call{'s' * (len(needed) > 1)} {which} got none, and the backward calls that ran took {took}. If a "
            f"gradient given was for an earlier call (the backward of a later call left out: a layer shared by two "
            f"submodels, one submodel's backward forgotten), {layer.name}'s parameter gradients are wrong, where "
            f"PyTorch's autograd would leave out only the part not backpropagated. Call its backward once per call, "
            f"last call first (the backward of each submodel that called it); a call whose output needs no gradient "
            f"(a target, a look, the steps before a truncation of backpropagation through time: PyTorch's "
            f".detach()) or goes nowhere (a warm-up or a shape probe, `self.n = self.{_attr(model, layer)}(x[:1])"
            f".shape[1]`, which autograd ignores) goes under `with xn.no_grad():` in the forward")


def _attr(model: Any, layer: Any) -> str:
    """``layer``'s dotted name in ``model`` (``features``), or ``layer`` where it is none of its layers."""
    return next((k for k, v in model.named_modules().items() if v is layer and k), "layer")
