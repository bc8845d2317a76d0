"""A model's own backward (a class of the user's) given dy of another dtype than its last forward's output.

A float64 dy (``np.ones(shape)``) into a float32 model makes float64 parameter gradients that only the optimizer's
step refuses, naming a parameter, far from the slip. ``Sequential`` keeps its output's dtype under
:data:`OUTPUT_DTYPE` and refuses it at its backward's entry with :func:`message` (inline there: a training step's
path, no call); for a model whose ``backward`` is written out by hand, ``scoped`` (:mod:`xpnet.layers.uses`) keeps
the dtype of the output of the model's forward (:func:`noted`, where the forward is the user's too) and ``rounded``
compares it with dy's as the model's backward starts (:func:`refuse_other_dtype`): one read and one compare per
backward call. A forward giving something without a dtype (a tuple of outputs, a PackedSequence) is not checked.
"""

from __future__ import annotations

from typing import Any

OUTPUT_DTYPE = "_output_dtype"  # in a model's __dict__: its last forward's output's dtype (None: not an array)


def noted(model: Any, y: Any) -> Any:
    """``y``, the output of ``model``'s forward, its dtype kept for the backward."""
    try:
        model.__dict__[OUTPUT_DTYPE] = y.dtype
    except AttributeError:
        model.__dict__[OUTPUT_DTYPE] = None
    return y


def refuse_other_dtype(model: Any, args: tuple[Any, ...]) -> None:
    """Raise a TypeError where the first of ``args`` given to ``model``'s backward, dy, has another dtype than the
    output of the model's last forward."""
    expected = model.__dict__.get(OUTPUT_DTYPE)
    if expected is None or not args:
        return
    try:
        got = args[0].dtype
    except AttributeError:  # dy no array: the layers say what they expected
        return
    if got is not expected and got != expected:
        raise TypeError(message(model, got, expected))


def message(model: Any, got: Any, expected: Any, source: str = "") -> str:
    """The refusal of a dy of dtype ``got`` given to ``model`` whose last forward's output (``source``: where it came
    from, ", from layer 2 (Linear),") is ``expected``."""
    return (f"{model.name}.backward: dy is {got}, but the last forward's output{source} is {expected}: a {got} "
            f"gradient would make {got} parameter gradients, which the optimizer refuses; give dy in the output's "
            f"dtype (xp.astype(dy, y.dtype))")
