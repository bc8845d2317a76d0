"""What to write where a layer of one's own has a forward and no backward (``Layer.backward`` raises it, called
directly or by a model's backward)."""

from __future__ import annotations

from typing import Any

__all__ = ["unwritten_backward"]


def unwritten_backward(layer: Any) -> str:
    """Why ``layer.backward`` cannot run (its class wrote none), and what to write."""
    return (f"{layer.name}.backward is not written: a layer of your own writes backward(self, dy) returning the "
            "gradient of its input (xpnet has no autograd); one that returns its input unchanged and records a "
            "loss (neural style's ContentLoss and StyleLoss: self.loss = self.mse(input, self.target)) returns dy + "
            "weight * self.mse.backward(), its loss's gradient joining the one coming back")
