"""What the layers called as ``layer(x1, x2)`` share (CosineSimilarity, PairwiseDistance, Bilinear, the book's
Attention)."""

from __future__ import annotations

from typing import Any

from ..backend import same_device
from .base import Layer, described
from .uses import called


class _TwoInputs(Layer):
    """``forward(x1, x2, train=True)``; ``backward(dy)`` returns ``(dx1, dx2)``. ``_inputs`` names the two
    inputs in messages; ``_third`` says what an array given third would have been (default: none taken)."""

    _inputs = ("x1", "x2")
    _third = ""

    def __call__(self, x1: Any, x2: Any, train: bool | None = None) -> Any:  # type: ignore[override]
        """``forward`` in the layer's mode, recorded as a use (:mod:`xpnet.layers.uses`)."""
        if train is not None:  # checked here, for the message that names the pair
            train = self._check_pair_train(train)
        return self.forward(x1, x2, train=called(self, train))

    def _check_pair_train(self, train: Any) -> bool:
        """``train`` checked; an array in its place is named a third input, which these layers do not take."""
        a, b = self._inputs
        return self._check_train(train, f"{a}, {b}", self._third or f"{self.name} takes two inputs, {a} and {b}, "
                                 "and no third")

    def _check_pair(self, x1: Any, x2: Any) -> Any:
        """The namespace of x1 and x2, floating arrays that must share namespace, device and dtype."""
        xp = self._check_float(x1)
        self._check_float(x2)
        if not same_device(x1, x2) or x1.dtype != x2.dtype:
            a, b = self._inputs
            raise ValueError(f"{self.name}: {a} and {b} must share namespace, device and dtype, got {described(x1)} "
                             f"and {described(x2)}")
        return xp
