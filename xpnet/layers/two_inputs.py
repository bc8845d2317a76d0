"""What the layers called as ``layer(x1, x2)`` share (CosineSimilarity, PairwiseDistance, Bilinear)."""

from __future__ import annotations

from typing import Any

from .base import Layer
from .uses import note


class _TwoInputs(Layer):
    """``forward(x1, x2, train=True)``; ``backward(dy)`` returns ``(dx1, dx2)``."""

    def __call__(self, x1: Any, x2: Any, train: bool | None = None) -> Any:  # type: ignore[override]
        """``forward`` in the layer's mode, recorded as a use (one object per use, as every layer)."""
        train = self.training if train is None else self._check_pair_train(train)
        note(self, train)
        return self.forward(x1, x2, train=train)

    def _check_pair_train(self, train: Any) -> bool:
        """``train`` checked; an array in its place is named a third input, which these layers do not take."""
        return self._check_train(train, "x1, x2", f"{self.name} takes two inputs, x1 and x2, and no third")
