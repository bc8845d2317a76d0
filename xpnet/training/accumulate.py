"""Gradient accumulation for ``xn.train(..., accumulate_grad_batches=k)`` (PyTorch Lightning's name): the
optimizer steps once every ``k`` batches, on the gradient of the mean loss over every sample of those batches.

How a group of batches goes:

1. Each batch runs its forward and backward as without accumulation. xpnet's backward overwrites the
   gradients (one backward per update), so after each one :meth:`GradientMean.add` folds them into a mean
   of its own, on the device: each batch weighs by the count its loss's mean is over (``loss.mean_count()``,
   the targets that are not ``ignore_index``; else its rows), as the ranks of ``comm`` weigh. The mean is kept
   as a running one, ``m += c / (c_1 + ... + c_j) * (g - m)``: its values stay those of a gradient (a sum
   times the counts could outgrow float16), and a count the loss gives on the device stays there, with no
   host read per batch.
2. The group ends after ``k`` batches, or at the epoch's last batch: a shorter last group steps on its own
   batches, weighed by their own counts, as Lightning does. :meth:`GradientMean.finish` puts the mean back
   as the model's gradients and gives the group's count; then, as for one batch, the all-reduce over the
   ranks of ``comm`` (weighing each rank by that count: one all-reduce per update), the clipping and the
   update.
3. So for a model without batch statistics or random draws (BatchNorm, Dropout), ``batch_size=B`` with
   ``accumulate_grad_batches=k`` ends with the weights of ``batch_size=k * B`` up to float rounding: the
   epoch's order of the rows depends on the seed and the epoch alone, so group i holds the rows of batch i
   of ``k * B``, a last short batch included (with ``drop_last=False``; ``drop_last=True`` leaves out the
   last batch of B rows, which is not the last of k * B rows unless k * B divides the samples).
"""

from __future__ import annotations

from typing import Any

from ..backend import namespace
from .guard import zero_grads

__all__ = ["GradientMean"]


class GradientMean:
    """The count-weighted mean of the gradients of a group of batches of one epoch, kept on the device.

    ``every``: the batches per group (``accumulate_grad_batches``); ``batches``: the epoch's batch count.
    Cached: the running mean per (layer, gradient name) and the group's count (an int, or 0-d on the
    device where the loss counts its targets there)."""

    def __init__(self, model: Any, every: int, batches: int):
        self.model, self.every, self.batches = model, every, batches
        self.mean: dict[tuple[int, str], tuple[Any, Any]] = {}  # (id(layer), name) -> (layer, mean)
        self.count: Any = 0

    def ends_group(self, batch: int) -> bool:
        """Whether the update follows batch ``batch`` (0-based in the epoch)."""
        return (batch + 1) % self.every == 0 or batch + 1 >= self.batches

    def add(self, count: Any) -> None:
        """Fold the gradients the model's last backward left in, weighing them by ``count`` (an int, or 0-d on
        the device): the count of targets that batch's mean loss is over. An empty batch is not added."""
        self.count = total = self.count + count
        ratios: dict[Any, Any] = {}
        for node in self.model.named_modules().values():
            if node._frozen:
                continue
            for key, g in node.grads.items():
                if g.dtype not in ratios:
                    ratios[g.dtype] = _ratio(count, total, g)
                r, held = ratios[g.dtype], self.mean.get((id(node), key))
                self.mean[(id(node), key)] = (node, g * r if held is None else held[1] + r * (g - held[1]))

    def finish(self) -> Any:
        """Put the group's mean in as the model's gradients (zeros where it had no sample on this rank) and
        start the next group; returns the group's count, as :meth:`add` got them (an int, or 0-d)."""
        model, count = self.model, self.count
        if not self.mean:
            zero_grads(model)
        for (_, key), (node, m) in self.mean.items():
            node.grads[key] = m
        self.mean, self.count = {}, 0
        return count


def _ratio(count: Any, total: Any, g: Any) -> Any:
    """``count / total`` (0 where both are 0: every target so far ignored) in ``g``'s dtype; 0-d on the device
    where either is. Divided in float32 at least: a count of tokens passes float16's largest number, 65504."""
    if isinstance(total, int):
        return count / max(total, 1)
    xp = namespace(g)
    dtype = g.dtype if xp.finfo(g.dtype).bits >= 32 else xp.float32
    t = xp.astype(total, dtype)
    c = count if isinstance(count, int) else xp.astype(count, dtype)
    return xp.astype(c / xp.maximum(t, xp.ones_like(t)), g.dtype)
