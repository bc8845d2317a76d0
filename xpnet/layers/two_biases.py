"""PyTorch's two recurrent biases loaded into one, said once when an optimizer first trains the layer.

RNN's, LSTM's and their cells' default (``convention="book"``) keeps one bias, ``b = bias_ih + bias_hh``: the
outputs and every gradient are PyTorch's, but PyTorch's optimizer updates its two biases, each with the gradient
of their sum (SGD moves the sum twice as far; weight decay and ``clip_grad_norm_`` count it twice), so training
from the loaded weights drifts from PyTorch's (``xpnet/layers/recurrent.py``'s docstring has the details).
``xn.load_torch_state_dict`` marks each layer given a nonzero ``bias_hh`` (:func:`mark`); the first optimizer step
that updates a marked layer warns once, naming it and ``convention="pytorch"`` (:func:`warn_trained`). Inference
from the loaded weights, the common use, is exact and stays silent; so do a ``bias_hh`` of zeros (what
``xn.torch_state_dict`` writes for one bias, or PyTorch's side folded and frozen) and every load into
``convention="pytorch"``. The optimizer's full walk of a model (its first step, or every step where it keeps no
plan of the step) costs one truth test of :data:`PENDING` while nothing is marked, and one walk of the model's
layers while a marked layer that has not trained lives.
"""

from __future__ import annotations

import weakref
from typing import Any

from .._user import warn

PENDING: dict[int, Any] = {}  # id(layer) -> a weak reference to a marked layer no optimizer has trained yet


def mark(layer: Any, two: bool = True) -> None:
    """``layer`` holds PyTorch's two biases summed into its one ``b`` (``two``): warn when it first trains; or
    (``two=False``) one bias loaded again: nothing to say."""
    if two:
        PENDING[id(layer)] = weakref.ref(layer)
    else:
        PENDING.pop(id(layer), None)


def warn_trained(who: str, model: Any) -> None:
    """Warn once for the marked layers of ``model`` that train (``who``: the optimizer's name), and unmark them."""
    from .recurrent_stack import RecurrentStack  # imported here: it imports the layers, which import this
    found: dict[str, str] = {}
    modules = model.named_modules() if hasattr(model, "named_modules") else {}  # (an optimizer takes any model)
    for name, node in modules.items():
        ref = PENDING.get(id(node))
        if ref is not None and ref() is node and not node._frozen:
            del PENDING[id(node)]
            outer = name.rpartition(".")[0]
            if isinstance(modules.get(outer), RecurrentStack):  # a level of a stack: named by the stack
                name = outer
            found[name] = f"{name!r} ({node.name})" if name else f"the model ({node.name})"
    for key in [k for k, ref in PENDING.items() if ref() is None]:
        del PENDING[key]
    if not found:
        return
    named = list(found.values())
    shown = ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
    warn(f"{who}.step: {shown} {'holds' if len(found) == 1 else 'hold'} PyTorch's two biases summed into one, b = "
         f"bias_ih + bias_hh (xn.load_torch_state_dict into convention='book', the default): outputs and gradients "
         f"are PyTorch's, but this training is not (PyTorch's optimizer updates its two biases, each with b's "
         f"gradient: SGD moves their sum twice as far, weight decay and clip_grad_norm_ count it twice); to train "
         f"as PyTorch does, build the layer with convention='pytorch', which loads the two as they are")
