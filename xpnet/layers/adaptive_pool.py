"""Adaptive pooling of NCHW images to a given output size, PyTorch's nn.AdaptiveAvgPool2d: output pixel (i, j)
pools the window rows [floor(i*H/oh), ceil((i+1)*H/oh)) by columns [floor(j*W/ow), ceil((j+1)*W/ow))
(AdaptivePooling.h's start_index and end_index, in integers)."""

from __future__ import annotations

import operator
from typing import Any

from ..backend import untracked
from . import _interp
from .base import Layer


def output_pair(layer: str, output_size: Any) -> tuple[int | None, int | None]:
    """PyTorch's output_size: an int or a pair of ints >= 1, None keeping that side's size; else a ValueError."""
    items = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if output_size is None or len(items) != 2 or any(
            v is not None and (isinstance(v, bool) or not hasattr(v, "__index__") or operator.index(v) < 1)
            for v in items):
        raise ValueError(f"{layer}: output_size must be an int >= 1 or an (oh, ow) pair of them, None keeping "
                         f"that side's input size (as PyTorch's; its 0 would give an empty output), got "
                         f"{output_size!r}")
    return tuple(None if v is None else operator.index(v) for v in items)


class _AdaptivePool2d(Layer):
    def __init__(self, output_size: Any):
        super().__init__()
        self.output_size = output_pair(self.name, output_size)
        self._shape = None
        self._plan: tuple[Any, Any] | None = None  # (key of an input's size, dtype and device; its plan)

    def config(self) -> dict[str, Any]:
        return {"output_size": list(self.output_size)}

    def _start(self, x: Any) -> Any:
        """The namespace of x after checking it is (N, C, H, W); remembers its shape."""
        xp = self._check_float(x)
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected a 4-d input (N, C, H, W), got shape {tuple(x.shape)}")
        self._shape = tuple(x.shape)
        return xp

    def _out_hw(self, in_hw: tuple[int, ...]) -> tuple[int, int]:
        return tuple(i if o is None else o for i, o in zip(in_hw, self.output_size))

    def _plan_for(self, x: Any) -> Any:
        """``self._make_plan(x)``, made once per input size, dtype and device."""
        key = (tuple(x.shape[2:]), x.dtype, x.device)
        if self._plan is None or self._plan[0] != key:
            self._plan = (key, self._make_plan(x, self._out_hw(x.shape[2:])))
        return self._plan[1]


class AdaptiveAvgPool2d(_AdaptivePool2d):
    """The mean of each adaptive window (see the module): x (N, C, H, W) -> y (N, C, oh, ow), PyTorch's
    nn.AdaptiveAvgPool2d(output_size), an int or a pair, None keeping that side's size. Averaging is separable:
    y = A_h @ x @ A_w^T with A_h (oh, H) holding 1 / len(window) over each row's window (``_interp.adaptive``),
    made on the input's device once per input size, and dx = A_h^T @ dy @ A_w; where each window is one pixel
    repeated (an output a whole multiple of the input), a broadcast and block sums instead. The (1, 1) output
    stays 4-d as PyTorch's; ``GlobalAvgPool()`` is AdaptiveAvgPool2d(1) with the flatten after it.
    Caches the input shape and the plan of its size."""

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._start(x)
        return _interp.resize(xp, x, self._plan_for(x))

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        n, c, h, w = self._need(self._shape)
        plan = self._plan[1]
        xp = self._check_grad(dy, (n, c, *plan[0]))
        return _interp.resize_back(xp, dy, plan, (h, w))

    @staticmethod
    def _make_plan(x: Any, out: tuple[int, int]) -> _interp.Plan:
        return _interp.plan([_interp.adaptive(i, o) for i, o in zip(x.shape[2:], out)], x)
