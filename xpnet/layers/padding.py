"""PyTorch's nn.ConstantPad1d/2d and nn.ZeroPad1d/2d: a border of one value around the last one or two axes;
``pad_sides``,
PyTorch's ``padding`` argument read for every padding layer (``mode_padding`` holds the reflecting ones)."""

from __future__ import annotations

import operator
from typing import Any

from .._user import is_real
from ..backend import set_at, untracked
from .base import Layer


_SIDES = {2: "(left, right)", 4: "(left, right, top, bottom)"}
_CROPS = {2: "x[..., left:W - right]", 4: "x[..., top:H - bottom, left:W - right]"}


def pad_sides(who: str, padding: Any, count: int) -> tuple[int, ...]:
    """PyTorch's ``padding``: an int for every side or ``count`` ints in its order (left, right[, top, bottom]);
    anything else, and a negative side (PyTorch's crop), is a ValueError naming ``who``."""
    sides = (padding,) * count if isinstance(padding, int) and not isinstance(padding, bool) else padding
    if not isinstance(sides, (tuple, list)) or len(sides) != count or \
            any(isinstance(p, bool) or not hasattr(p, "__index__") for p in sides):
        raise ValueError(f"{who}: padding must be an int or {count} ints {_SIDES[count]}, PyTorch's, got {padding!r}")
    sides = tuple(operator.index(p) for p in sides)
    if min(sides) < 0:
        raise ValueError(f"{who}: padding {sides} has a negative side, which PyTorch reads as a crop; xpnet pads "
                         f"only: slice the input instead ({_CROPS[count]})")
    return sides


class ConstantPad2d(Layer):
    """x: (N, C, H, W) or (C, H, W) -> y: (..., top + H + bottom, left + W + right), ``value`` around x.

    ``padding`` is PyTorch's: an int for all four sides or (left, right, top, bottom). Caches the input's shape;
    backward gives dy's inner block (H, W). PyTorch's negative padding (a crop) is refused, saying so.
    """

    _axes = 2  # padded, the last ones

    def __init__(self, padding: Any, value: float) -> None:
        super().__init__()
        self.padding = pad_sides(self.name, padding, 2 * self._axes)
        if not is_real(value):
            raise ValueError(f"{self.name}: value must be a number, got {value!r}")
        self.value = float(value)
        self._shape = None

    def config(self) -> dict[str, Any]:
        return {"padding": list(self.padding), "value": self.value}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        if x.ndim not in (self._axes + 1, self._axes + 2):
            shapes = "(N, C, H, W) or (C, H, W)" if self._axes == 2 else "(N, C, W) or (C, W)"
            raise ValueError(f"{self.name}: expected {shapes}, got shape {tuple(x.shape)}")
        self._shape = tuple(x.shape)
        out = xp.full(self._padded(), self.value, dtype=x.dtype, device=x.device)
        return set_at(out, self._inner(), x)

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        self._need(self._shape)
        self._check_grad(dy, self._padded())
        return dy[self._inner()]

    def _padded(self) -> tuple[int, ...]:
        """The output's shape: PyTorch's padding pairs from the last axis back."""
        shape = list(self._shape)
        for i in range(self._axes):
            shape[-1 - i] += self.padding[2 * i] + self.padding[2 * i + 1]
        return tuple(shape)

    def _inner(self) -> tuple[Any, ...]:
        """The index of the input's block in the output."""
        sides = [slice(self.padding[2 * i], self.padding[2 * i] + self._shape[-1 - i]) for i in range(self._axes)]
        return (..., *reversed(sides))


class ZeroPad2d(ConstantPad2d):
    """PyTorch's nn.ZeroPad2d: ConstantPad2d(padding, 0.0)."""

    def __init__(self, padding: Any) -> None:
        super().__init__(padding, 0.0)

    def config(self) -> dict[str, Any]:
        return {"padding": list(self.padding)}


class ConstantPad1d(ConstantPad2d):
    """x: (N, C, W) or (C, W) -> y: (..., left + W + right), ``value`` around x; ``padding``: an int or
    PyTorch's (left, right)."""

    _axes = 1


class ZeroPad1d(ZeroPad2d):
    """PyTorch's nn.ZeroPad1d: ConstantPad1d(padding, 0.0)."""

    _axes = 1
