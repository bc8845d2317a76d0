"""What a gradient of the wrong shape given to a layer's backward most likely is, and what to pass instead.

PyTorch's autograd takes the gradient through whatever the user did to a layer's output (a reshape, a mask, a sum,
a broadcast); here the user does it by hand, and a gradient of the shape the loss saw, not the layer's output's, is
the usual slip. ``dy_hint(shape, got)`` guesses from the two shapes alone which of these it was.
"""

from __future__ import annotations

import math


def dy_hint(shape: tuple[int, ...], got: tuple[int, ...]) -> str:
    """Where an output of ``shape`` was reshaped to ``got`` (a loss on ``y.reshape(-1, C)``, the seq2seq tutorial's
    ``view(-1, V)``), summed over some axes (a CBOW's ``embeds.sum(0)``), cut to some of its rows (a loss on
    ``output[mask]``) or broadcast to it (Bahdanau attention's ``Wa(query) + Ua(keys)``), what its gradient is, and
    where ``got`` stacks rows of a one-sample output (a layer called once per step), not to sum them; else ``""``."""
    if math.prod(shape) == math.prod(got):
        return (f"; if the output was reshaped to {got} after this layer (a loss on y.reshape(-1, C)), reshape its "
                f"gradient back: xp.reshape(dy, {shape})")
    summed = _summed_hint(shape, got)
    if summed:
        return summed
    lead = len(got) - len(shape)
    if len(got) == len(shape) and 0 < got[0] < shape[0] and got[1:] == shape[1:]:
        return (f"; if the loss saw only some of the {shape[0]} rows (PyTorch's criterion(output[mask], "
                f"target[mask]), gcn's training nodes), put its gradient back in their rows: dy = "
                "xp.zeros_like(output); dy[mask] = criterion.backward()")
    if lead < 0 or any(s not in (1, g) for s, g in zip(shape, got[lead:])):
        return ""
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and got[lead + i] != 1)
    keep = f"dy.sum(axis={axes if len(axes) > 1 else axes[0]}, keepdims=True)" if not lead else \
        f"xp.reshape(xp.sum(dy, axis={axes}), {shape})"
    steps = ""
    if shape[0] == 1 and got[0] > 1 and got[1:] == shape[1:]:  # the concat guess: dy holds one row per call
        steps = (f"; but if the layer (or the model holding it) ran once per step on one sample each and dy stacks "
                 f"the {got[0]} steps' gradients (REINFORCE's torch.cat(policy_loss).sum()), do not sum them: it "
                 "keeps the last call's caches only, so any dy goes through the last step alone. Call it at each "
                 "step inside one forward of a model of your own whose backward goes through the steps last first, "
                 "or (without Dropout) run it once on the steps' inputs stacked (docs/from-pytorch.md, REINFORCE)")
    return (f"; if the output was broadcast to {got} after this layer (PyTorch's autograd sums the gradient back "
            f"over the broadcast axes): pass {keep}{steps}")


def _summed_hint(shape: tuple[int, ...], got: tuple[int, ...]) -> str:
    """The hint for ``got``: ``shape`` with some axes of size > 1 set to 1 (a sum with keepdims) or with one such
    axis left out (a sum without; only where that axis is the only one it can be); else ``""``. Where one axis
    went, it may also have been indexed (``output[:, -1]``, an RNN's last step): the hint says both."""
    if len(got) == len(shape) and all(g == s or (g == 1 and s > 1) for s, g in zip(shape, got)):
        axes = tuple(i for i, (s, g) in enumerate(zip(shape, got)) if g != s)
        spread, last = f"xp.broadcast_to(g, {shape})", "-1:"
    elif len(got) == len(shape) - 1:
        axes = tuple(k for k in range(len(shape)) if shape[k] > 1 and shape[:k] + shape[k + 1:] == got)
        if len(axes) != 1:
            return ""
        spread, last = f"xp.broadcast_to(xp.expand_dims(g, axis={axes[0]}), {shape})", "-1"
    else:
        return ""
    n = math.prod(shape[i] for i in axes)
    where = f"axis {axes[0]}" if len(axes) == 1 else f"axes {axes}"
    taken = ""
    if len(axes) == 1:
        at = f"[{':, ' * axes[0]}{last}]"
        taken = (f"; if one index along it was taken instead (output{at}), g goes in that place alone: dy = "
                 f"xp.zeros_like(output); dy{at} = g")
    return (f"; if the output was summed over {where} after this layer (a CBOW summing its context embeddings, "
            f"embeds.sum(0)), each of the {n} terms of the sum gets the sum's gradient g: dy = {spread} "
            f"(g / {n} for a mean){taken}")
