"""A backward refused where an optimizer's step changed the weights after the forward whose cache it reads.

PyTorch refuses a backward through an output computed before ``optimizer.step()`` ("one of the variables needed
for gradient computation has been modified by an inplace operation"): the step bumps the weights' version
counters, and autograd checks the versions of the tensors it saved. xpnet's layers keep the forward's input and
read their weights when backward runs, so such a backward gave dW from the old input and dx from the new weights,
silently (a GAN's G loss through D's output from before D's step). How the check goes:

1. ``clock`` counts the changes of parameters made through xpnet: each optimizer's update of a model or param
   group (``stepped``, once its gradients are checked; L-BFGS's at each move of its parameters and at the end of
   its step, ``changed``) and each ``load_state_dict`` (``loaded``). Each stamps the node it changed with the
   clock, the changer's name and how many parameters it changed.
2. Every forward notes the clock on its layer (``SEEN``; ``layers.uses`` and ``layers.no_grad_calls`` write it
   where they note the call: a layer called twice in a forward keeps one per use).
3. A backward whose layer saw another clock (``check``, only then, so a step's loop pays one comparison) looks
   at the nodes changed since: where one changed this layer's own parameters (or, for a layer that is not a
   container, those of the layers it holds, a TiedLinear's Embedding), a RuntimeError names the layer, the step
   and what to write; else it notes the clock, and the next backward is fast again.

Refused alike where PyTorch's backward would not read the weight (a first Linear whose input needs no gradient,
an Embedding): one rule, a forward per step. L-BFGS's closure runs its forward and backward inside ``step``, both
after the last change, so it passes (a closure backpropagating an output computed before the step does not, from its
second evaluation: PyTorch's second backward through that graph raises too); a step after zero_grad() that updated
part of a model (the parameters with a gradient) counts as changing the parameters of that node that hold a gradient
when the backward looks.
"""

from __future__ import annotations

import weakref
from typing import Any

__all__ = ["SEEN", "clock", "stepped", "loaded", "changed", "check"]

SEEN = "_params_clock_at_forward"  # on a layer: the clock its last forward saw
# on a node: (clock, who changed it (an optimizer's class, or words), how many parameters that train (None: all),
# the id of the node it was made for)
STAMP = "_params_changed_at"

clock = 0
_changed: "weakref.WeakSet[Any]" = weakref.WeakSet()  # the nodes that carry a STAMP


def stepped(optimizer: Any, work: list[tuple[Any, ...]]) -> None:
    """``optimizer`` is about to update the parameters of ``work`` (its ``_apply``'s, all of one node). Runs every
    step: its class, not its name, is kept (a string made per step would cost more than the rest)."""
    changed(work[0][1], type(optimizer), len(work))


def loaded(node: Any) -> None:
    """``node.load_state_dict`` put new arrays in its parameters."""
    changed(node, f"{node.name}.load_state_dict", None)


def changed(node: Any, who: Any, count: int | None) -> None:
    """``who`` (what the error calls it: words, or an optimizer's class) changes ``count`` of the parameters of
    ``node`` that train (None: every parameter)."""
    global clock
    clock += 1
    own = node.__dict__
    stamp = own.get(STAMP)
    if stamp is None or stamp[3] != id(node):  # a copy (copy.deepcopy(model)) carries its original's stamp
        _changed.add(node)
    own[STAMP] = (clock, who, count, id(node))


def check(layer: Any) -> None:
    """Called by a backward of ``layer`` whose forward saw another clock: raise where a change since then
    touched the parameters its backward reads."""
    own = layer.__dict__
    seen = own.get(SEEN)
    if seen is None:
        return
    for node in list(_changed):
        when, who, count, _ = node.__dict__[STAMP]
        if when > seen:
            changed = _changed_names(layer, node, count)
            if changed:
                raise RuntimeError(_why(layer, node, who, changed))
    own[SEEN] = clock


def _changed_names(layer: Any, node: Any, count: int | None) -> list[str]:
    """The dotted names in ``node`` of the parameters that ``layer``'s backward reads and the change changed."""
    modules = node.named_modules()
    read = [layer] if layer.uses_inside else [v for v in vars(layer).values() if hasattr(v, "named_modules")
                                              and hasattr(v, "params")] + [layer]
    names = [f"{name}.{k}" if name else k for name, held in modules.items()
             if held.params and any(held is r for r in read) for k in held.params]
    if count is None or not names:
        return names
    params, grads = node.params_and_grads(trainable=True)
    every = count == len(params)
    return [name for name in names if name in params and (every or name in grads)]


def _why(layer: Any, node: Any, who: Any, changed: list[str]) -> str:
    shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
    who = f"{who.__name__}.step()" if isinstance(who, type) else who
    return (f"{layer.name}.backward: {who} changed {node.name}'s {shown} after the forward whose cache this "
            f"backward reads, so it would mix that forward with the new weights (PyTorch refuses it too: 'modified "
            "by an inplace operation'). Run the forward again after the change and go back through its output (a "
            "GAN computes D(G(z)) again after D's step for G's loss, as PyTorch's DCGAN tutorial does), or call "
            "every backward of a forward before the step")
