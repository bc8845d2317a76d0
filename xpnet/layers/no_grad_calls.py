"""Forwards run under ``xn.no_grad()``, which no backward may serve.

A layer keeps the caches of its last forward only. PyTorch's habit of computing something under ``no_grad``
between a forward and its backward (Double DQN's ``policy_net(next_states).argmax(1)``, an actor-critic's
bootstrapped ``model(next_state)``, a metric on another batch) would therefore give the gradient of the no_grad
call, silently where the batch sizes agree, where PyTorch's backward serves the training call (and refuses a
backward through a no_grad call alone). Every layer's forward notes on the layer whether the call ran with
gradients disabled (:func:`xpnet.grad_mode.grad_enabled`), under ``UNDER_NO_GRAD``: ``xpnet.layers.uses.recorded``
does, which wraps the forward of every layer that records its uses, and ``marked`` wraps the others'; a backward
(or ``backward_params``) of a layer whose last forward ran under no_grad raises
(``xpnet.layers.backward_calls.rounded``, which wraps every layer's), naming the layer and what to write
(:func:`why`). The next forward outside ``no_grad`` clears the note. In the wrappers that run anyway, not two more:
a training step's Python time.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from ..grad_mode import grad_enabled
from . import stale

__all__ = ["marked", "UNDER_NO_GRAD", "why"]

UNDER_NO_GRAD = "_last_forward_under_no_grad"


def marked(forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward`` noting on the layer whether it ran under ``no_grad`` (a layer that records no uses: the
    recurrent cells)."""
    @functools.wraps(forward)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.__dict__[UNDER_NO_GRAD] = not grad_enabled()
        self.__dict__[stale.SEEN] = stale.clock  # a backward after a step that changed its weights (layers.stale)
        return forward(self, *args, **kwargs)
    return run


def why(layer: Any) -> str:
    """Why ``layer``'s backward cannot serve its last forward, run under ``no_grad``, and what to write."""
    kind = "model" if layer.uses_inside else "layer"
    return (f"{layer.name}.backward: the {kind}'s last forward ran under xn.no_grad(), and it keeps the caches of "
            "its last forward only, so this backward would give that call's gradient (PyTorch's backward serves the "
            "training call before it, and refuses one through a no_grad call). Run what needs no gradient before "
            "the training forward (target = target_net(next_x) or model(next_x) under no_grad first, then "
            f"y = model(x), the loss, model.backward(dy)), or call a copy of the {kind} there "
            "(copy.deepcopy(model), as a target network); after xn.set_grad_enabled(False) called alone, as PyTorch's "
            "it stays so until xn.set_grad_enabled(True)")
