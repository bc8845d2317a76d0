"""What a layer whose backward reads its own output (Sigmoid, Tanh, Softmax, Softmin, LogSoftmax) hands the caller.

Its backward computes the gradient from the y it cached, and the caller holds that same array: a write into it
(``y += pos``, ``y[:, 0] = 0``, ``y /= y.sum()``) would change the gradient silently, where PyTorch's backward
raises ("modified by an inplace operation"). In a training forward with gradients enabled the caller gets y as a
read-only NumPy view, so that such a write raises at once; in evaluation or under ``no_grad`` (sampling, which
normalises probabilities in place) and off NumPy, y as it is.
"""

from __future__ import annotations

from typing import Any

from ..backend import read_only
from ..grad_mode import grad_enabled

__all__ = ["cached_output"]


def cached_output(y: Any, train: bool) -> Any:
    """``y``, read-only where a training forward's backward will read it (NumPy arrays)."""
    return read_only(y) if train and grad_enabled() else y
