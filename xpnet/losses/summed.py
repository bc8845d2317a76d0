"""Which calls of one loss were summed before its ``backward()``: PyTorch's ``loss += criterion(output, t[i])`` at
each step of a loop, then one ``loss.backward()`` (the char-RNN generation and seq2seq tutorials).

A loss layer keeps its last call only, so ``criterion.backward()`` after such a loop gives the gradient of the
last step's term, not of the sum, and every step before it would silently get none. ``Loss.__init_subclass__``
wraps each subclass's ``forward`` (:func:`counted_forward`: numbers the calls) and ``backward``
(:func:`checked_backward`: refuses, naming the loss and the calls, when the last call's value was summed with
an earlier one since the last backward). The sums are seen by :class:`~xpnet.losses.value.LossValue`, whose
operators join the calls each operand came from with :func:`merged`. Summing values whose backward was taken
already (a running total for logging, DCGAN's ``errD = errD_real + errD_fake``) is not refused.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

__all__ = ["counted_forward", "checked_backward", "merged", "first_call", "repeated", "summed_hint"]

Calls = tuple[tuple[Any, int, int], ...]  # (loss, first, last call number) per loss
_CALLS = "_calls"  # how many forwards the loss has run (its last call's number)
_BACKWARD_AT = "_backward_at"  # the call number its last backward served
_SUMMED = "_summed_calls"  # how many calls since that backward were summed with the last one
_DEPTH = "_forward_depth"  # a subclass's forward running its base's (super().forward) is one call


def counted_forward(forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward`` numbering the loss's calls (a call within a call, ``super().forward``, counts once)."""
    @functools.wraps(forward)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        own = self.__dict__
        depth = own.get(_DEPTH, 0)
        if depth == 0:
            own[_CALLS] = own.get(_CALLS, 0) + 1
            own[_SUMMED] = 0
        own[_DEPTH] = depth + 1
        try:
            return forward(self, *args, **kwargs)
        finally:
            own[_DEPTH] = depth
    return run


def checked_backward(backward: Callable[..., Any]) -> Callable[..., Any]:
    """``backward`` refusing where the last call's value was summed with earlier calls' since the last backward."""
    @functools.wraps(backward)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        own = self.__dict__
        summed = own.get(_SUMMED, 0)
        if summed > 1 and own.get(_DEPTH, 0) == 0:
            raise RuntimeError(f"{self.name}.backward(): the values of its last {summed} calls were summed (loss += "
                               f"criterion(output, t[i]) at each step), and it gives the gradient of the last call "
                               f"only: the steps before would get none. {summed_hint(self.name)}")
        out = backward(self, *args, **kwargs)
        own[_BACKWARD_AT] = own.get(_CALLS, 0)
        return out
    return run


def merged(a: Calls, b: Calls) -> Calls:
    """The calls a sum of two LossValues holds, each operand's given as (loss, first, last call number) per loss:
    one entry per loss, its range joined and cut to the calls since its last backward (so a running total over
    an epoch stays one entry). Notes on each loss how many of its calls were summed with its last one."""
    ranges: dict[int, list[Any]] = {}
    for loss, first, last in a + b:
        entry = ranges.setdefault(id(loss), [loss, first, last])
        entry[1], entry[2] = min(entry[1], first), max(entry[2], last)
    out = []
    for loss, first, last in ranges.values():
        own = loss.__dict__
        first = max(first, own.get(_BACKWARD_AT, 0) + 1)
        if last < first:
            continue
        if last == own.get(_CALLS, 0) and last > first:
            own[_SUMMED] = max(own.get(_SUMMED, 0), last - first + 1)
        out.append((loss, first, last))
    return tuple(out)


def first_call(loss: Any) -> Calls:
    """The calls the value of ``loss``'s last call holds: that call alone."""
    n = loss.__dict__.get(_CALLS, 0)
    return ((loss, n, n),)


def repeated(calls: Calls) -> Any:
    """The first loss of which ``calls`` holds several calls, or None."""
    return next((loss for loss, first, last in calls if last > first), None)


def summed_hint(name: str) -> str:
    """What to write in place of one backward of a sum of one loss's calls."""
    return (f"Take each call's gradient right after the call, dys.append(criterion.backward()) (criterion: the "
            f"{name} you called; PyTorch's backward of the sum gives each call its gradient), and give them to a "
            "model whose forward loops over the steps and whose backward goes through them from the last to the "
            "first (docs/from-pytorch.md, the char-RNN generation tutorial). Where the calls are terms of one "
            "step's loss on one output (knowledge distillation's soft and hard cross-entropies), give each term a "
            "loss object of its own and the model the sum of their gradients, scaled as the terms: "
            "model.backward(a * T * kd.backward() + b * ce.backward()) for a * kd(y / T, p) * T**2 + b * ce(y, t)")
