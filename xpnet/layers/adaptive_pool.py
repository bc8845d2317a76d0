"""Adaptive pooling of NCHW images to a given output size, PyTorch's nn.AdaptiveAvgPool2d and nn.AdaptiveMaxPool2d:
output pixel (i, j)
pools the window rows [floor(i*H/oh), ceil((i+1)*H/oh)) by columns [floor(j*W/ow), ceil((j+1)*W/ow))
(AdaptivePooling.h's start_index and end_index, in integers)."""

from __future__ import annotations

import operator
from typing import Any

from ..backend import index_dtype, namespace, untracked
from . import _interp
from .base import Layer, pytorch_defaults_only


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
        self._plan: tuple[Any, Any] | None = None  # (_interp.plan_key of an input, its plan)

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
        """``self._make_plan(x, (oh, ow))``, made once per input size, dtype and device."""
        key = _interp.plan_key(x)
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
        return _interp.layer_backward(self, untracked(dy))

    @staticmethod
    def _make_plan(x: Any, out: tuple[int, int]) -> _interp.Plan:
        return _interp.plan([_interp.adaptive(i, o) for i, o in zip(x.shape[2:], out)], x)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """The maximum of each adaptive window (see the module): x (N, C, H, W) -> y (N, C, oh, ow), PyTorch's
    nn.AdaptiveMaxPool2d(output_size), an int or a pair, None keeping that side's size; ``return_indices`` is
    accepted at False only. The gradient of a window goes to its first maximum in row-major order, and to its
    last NaN where it holds any (PyTorch's kernel: ``val > maxval || isnan(val)``). Max is separable too: the
    maximum over each window's columns, then over its rows, each a running maximum over the window's offsets
    (the taps past a shorter window repeat its last pixel, which changes nothing). Backward gathers: each input
    pixel takes dy from the few windows holding it whose argmax it is (no scatter). Portable (take and where),
    no host reads. Caches each output's argmax (row, column) and, once per input size, the index arrays."""

    def __init__(self, output_size: Any, return_indices: bool = False):
        super().__init__(output_size)
        pytorch_defaults_only(self.name, {"return_indices": (
            False, "xpnet's AdaptiveMaxPool2d returns only y (it keeps each window's argmax itself)")},
            {"return_indices": return_indices})
        self._argmax = None

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._start(x)
        _, (taps_h, *_), (taps_w, *_) = self._plan_for(x)
        columns_max, col, _ = _first_max(xp, x, taps_w, 3)
        y, row, col = _first_max(xp, columns_max, taps_h, 2, col)
        self._argmax = (row, col)
        return y

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        n, c, _, _ = self._need(self._shape)
        row, col = self._need(self._argmax)
        out, (_, holders_h, valid_h, rows), (_, holders_w, valid_w, cols) = self._plan[1]
        xp = self._check_grad(dy, (n, c, *out))
        zero = xp.zeros((), dtype=dy.dtype, device=dy.device)
        dx = None
        for a in range(holders_h.shape[0]):
            jh = holders_h[a, :]
            at_row = (xp.take(row, jh, axis=2) == xp.reshape(rows, (-1, 1))) & xp.reshape(valid_h[a, :], (-1, 1))
            dy_h, col_h = xp.take(dy, jh, axis=2), xp.take(col, jh, axis=2)
            for b in range(holders_w.shape[0]):
                jw = holders_w[b, :]
                hit = xp.take(at_row, jw, axis=3) & (xp.take(col_h, jw, axis=3) == cols) & valid_w[b, :]
                part = xp.where(hit, xp.take(dy_h, jw, axis=3), zero)
                dx = part if dx is None else dx + part
        return dx

    @staticmethod
    def _make_plan(x: Any, out: tuple[int, int]) -> tuple[Any, ...]:
        return (out, *(_axis_indices(i, o, x) for i, o in zip(x.shape[2:], out)))


def _first_max(xp: Any, v: Any, taps: Any, axis: int, carried: Any = None) -> tuple[Any, Any, Any]:
    """The maximum of v over each window along ``axis`` (taps: (K, out) input indices), the input index of its
    first maximum (last NaN), and ``carried`` (v's shape) taken at that index."""
    shape = (-1,) if axis == 3 else (-1, 1)
    best = xp.take(v, taps[0, :], axis=axis)
    arg = xp.broadcast_to(xp.reshape(taps[0, :], shape), best.shape)
    got = None if carried is None else xp.take(carried, taps[0, :], axis=axis)
    for k in range(1, taps.shape[0]):
        tap = taps[k, :]
        value = xp.take(v, tap, axis=axis)
        up = (value > best) | xp.isnan(value)
        best = xp.where(up, value, best)
        arg = xp.where(up, xp.reshape(tap, shape), arg)
        got = None if carried is None else xp.where(up, xp.take(carried, tap, axis=axis), got)
    return best, arg, got


def _axis_indices(in_size: int, out_size: int, x: Any) -> tuple[Any, Any, Any, Any]:
    """On x's device, for one axis: taps (K, out), the input indices of each window at each offset (past its end,
    its last); holders (M, in), the windows holding each input index, and valid (M, in), which of them are not
    repeats; and arange(in)."""
    xp = namespace(x)
    spans = [_interp.window(i, in_size, out_size) for i in range(out_size)]
    holding: list[list[int]] = [[] for _ in range(in_size)]
    for i, (start, stop) in enumerate(spans):
        for j in range(start, stop):
            holding[j].append(i)
    k, m = max(stop - start for start, stop in spans), max(len(h) for h in holding)
    taps = [[min(start + t, stop - 1) for start, stop in spans] for t in range(k)]
    holders = [[h[min(t, len(h) - 1)] for h in holding] for t in range(m)]
    valid = [[t < len(h) for h in holding] for t in range(m)]
    index = index_dtype(xp)
    return (xp.asarray(taps, dtype=index, device=x.device), xp.asarray(holders, dtype=index, device=x.device),
            xp.asarray(valid, dtype=xp.bool, device=x.device), xp.arange(in_size, dtype=index, device=x.device))
