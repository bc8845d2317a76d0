"""PyTorch's piecewise-linear activations: Hardtanh, ReLU6, Hardsigmoid, Hardswish (MobileNet's), Threshold,
Softshrink, Hardshrink, with its arguments, defaults, formulas and, at each kink, its gradient. Shapes are kept:
x: (N, ...) -> y: (N, ...). Each caches x; ``inplace=True`` is refused as the other activations refuse it."""

from __future__ import annotations

from typing import Any

from .activations import Elementwise, number


class Hardtanh(Elementwise):
    """PyTorch's nn.Hardtanh: y = min(max(x, min_val), max_val); dx = dy strictly between them, else 0 (at
    min_val and max_val too, as PyTorch's). PyTorch's deprecated min_value / max_value are refused."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False,
                 min_value: float | None = None, max_value: float | None = None) -> None:
        super().__init__(inplace)
        for old, new in (("min_value", min_value), ("max_value", max_value)):
            if new is not None:
                raise ValueError(f"{self.name}: {old}= is deprecated in PyTorch and not taken here; write "
                                 f"{old[:3]}_val={new!r}")
        self.min_val, self.max_val = number(self, "min_val", min_val), number(self, "max_val", max_val)
        if not self.min_val < self.max_val:
            raise ValueError(f"{self.name}: max_val must be greater than min_val (PyTorch's rule), got "
                             f"min_val={min_val!r}, max_val={max_val!r}")

    def config(self) -> dict[str, Any]:
        return {"min_val": self.min_val, "max_val": self.max_val}

    def _y(self, xp: Any, x: Any) -> Any:
        return xp.minimum(xp.maximum(x, self.min_val), self.max_val)

    def pieces(self) -> Any:
        x = self._x
        return None if x is None else (x > self.min_val) & (x < self.max_val)

    def _dx(self, xp: Any, x: Any, dy: Any) -> Any:
        return xp.where((x > self.min_val) & (x < self.max_val), dy, xp.zeros_like(dy))


class ReLU6(Hardtanh):
    """PyTorch's nn.ReLU6: Hardtanh(0, 6), y = min(max(x, 0), 6); dx = dy for 0 < x < 6, else 0."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(0.0, 6.0, inplace)

    def config(self) -> dict[str, Any]:
        return {}


# PyTorch's Hardsigmoid backward multiplies by 1.0f / 6.0f, 1/6 rounded to float32 (3e-8 off), on the CPU and CUDA.
_ONE_SIXTH_F32 = 0.16666667163372040


class Hardsigmoid(Elementwise):
    """PyTorch's nn.Hardsigmoid: y = min(max(x + 3, 0), 6) / 6; dx = dy * (1/6 as a float32, PyTorch's
    constant) for -3 < x < 3, else 0."""

    def _y(self, xp: Any, x: Any) -> Any:
        return xp.minimum(xp.maximum(x + 3.0, 0.0), 6.0) / 6.0

    def pieces(self) -> Any:
        return None if self._x is None else (self._x > -3.0) & (self._x < 3.0)

    def _dx(self, xp: Any, x: Any, dy: Any) -> Any:
        return xp.where((x > -3.0) & (x < 3.0), dy * _ONE_SIXTH_F32, xp.zeros_like(dy))


class Hardswish(Elementwise):
    """PyTorch's nn.Hardswish: y = x * (min(max(x + 3, 0), 6) / 6), divided before the product (PyTorch's
    order overflows to inf for x near the largest float); dx = 0 for x <= -3, dy * (x / 3 + 1/2) for
    -3 < x < 3, dy for x >= 3 (PyTorch's sides at the kinks)."""

    def _y(self, xp: Any, x: Any) -> Any:
        return x * (xp.minimum(xp.maximum(x + 3.0, 0.0), 6.0) / 6.0)

    def pieces(self) -> Any:
        return None if self._x is None else (self._x > -3.0) & (self._x < 3.0)

    def _dx(self, xp: Any, x: Any, dy: Any) -> Any:
        inside = xp.where(x < 3.0, dy * (x / 3.0 + 0.5), dy)
        return xp.where(x <= -3.0, xp.zeros_like(dy), inside)


class Threshold(Elementwise):
    """PyTorch's nn.Threshold(threshold, value): y = x where x > threshold, else ``value``; dx = dy where
    x > threshold, else 0 (at the threshold too, as PyTorch's)."""

    def __init__(self, threshold: float, value: float, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.threshold, self.value = number(self, "threshold", threshold), number(self, "value", value)

    def config(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "value": self.value}

    def _y(self, xp: Any, x: Any) -> Any:
        return xp.where(x > self.threshold, x, xp.full_like(x, self.value))

    def pieces(self) -> Any:
        return None if self._x is None else self._x > self.threshold

    def _dx(self, xp: Any, x: Any, dy: Any) -> Any:
        return xp.where(x > self.threshold, dy, xp.zeros_like(dy))


class _Shrink(Elementwise):
    """Softshrink's and Hardshrink's ``lambd`` and their kinks: dx = dy where |x| > lambd, else 0 (at
    +-lambd too, as PyTorch's)."""

    def __init__(self, lambd: float = 0.5) -> None:
        super().__init__()
        self.lambd = number(self, "lambd", lambd)

    def config(self) -> dict[str, Any]:
        return {"lambd": self.lambd}

    def pieces(self) -> Any:
        x = self._x
        return None if x is None else (x < -self.lambd) | (x > self.lambd)

    def _dx(self, xp: Any, x: Any, dy: Any) -> Any:
        return xp.where((x < -self.lambd) | (x > self.lambd), dy, xp.zeros_like(dy))


class Softshrink(_Shrink):
    """PyTorch's nn.Softshrink(lambd=0.5): y = x - lambd above lambd, x + lambd below -lambd, else 0; lambd >= 0
    (PyTorch refuses a negative one at its forward, xpnet when the layer is made)."""

    def __init__(self, lambd: float = 0.5) -> None:
        super().__init__(lambd)
        if self.lambd < 0:
            raise ValueError(f"{self.name}: lambd must be >= 0 (PyTorch's rule), got {lambd!r}")

    def _y(self, xp: Any, x: Any) -> Any:
        zero = xp.zeros_like(x)
        return xp.where(x > self.lambd, x - self.lambd, xp.where(x < -self.lambd, x + self.lambd, zero))


class Hardshrink(_Shrink):
    """PyTorch's nn.Hardshrink(lambd=0.5): y = x where |x| > lambd, else 0 (a negative lambd keeps every x, as
    PyTorch's)."""

    def _y(self, xp: Any, x: Any) -> Any:
        return xp.where((x < -self.lambd) | (x > self.lambd), x, xp.zeros_like(x))
