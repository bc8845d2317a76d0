"""PyTorch's reflection, replication and circular padding: the layers ReflectionPad1d/2d, ReplicationPad1d/2d,
CircularPad1d/2d, and ``mode_pad``/``mode_unpad``, which Conv2d's ``padding_mode`` uses too.

Each axis is padded by concatenating slices of x (flipped for 'reflect', the edge broadcast for 'replicate', the
far end for 'circular'); backward adds each border's gradient back onto the values it came from, as zero-padded
pieces summed, so that no array is written into (JAX and array-api-strict refuse item assignment).
"""

from __future__ import annotations

from typing import Any

from ..backend import namespace, untracked
from .base import Layer
from .padding import pad_sides

MODES = ("reflect", "replicate", "circular")
_RULES = {"reflect": ("smaller than", "a reflection repeats no edge value"),
          "circular": ("at most", "the input wraps around once at most")}


def _take(x: Any, axis: int, start: int, stop: int) -> Any:
    """x[start:stop] along the negative ``axis``."""
    return x[(..., slice(start, stop)) + (slice(None),) * (-axis - 1)]


def _check(who: str, mode: str, shape: tuple[int, ...], axis: int, before: int, after: int) -> None:
    """PyTorch's limits on one axis' padding, as a one-line ValueError naming ``who``."""
    n = shape[axis]
    if mode == "replicate":
        if n == 0 and before + after:
            raise ValueError(f"{who}: replicate padding needs a value to repeat, got an empty axis {axis} in input "
                             f"shape {shape}")
        return
    relation, why = _RULES[mode]
    if (before >= n or after >= n) if mode == "reflect" else (before > n or after > n):
        other = "padding_mode='replicate'" if who.startswith("Conv") else "ReplicationPad" + who[-2:]
        raise ValueError(f"{who}: {mode} padding ({before}, {after}) on axis {axis} must be {relation} the input's "
                         f"size there, {n} (PyTorch's rule: {why}), got input shape {shape}; pad less, or use "
                         f"{other}")


def _pad_axis(x: Any, axis: int, before: int, after: int, mode: str) -> Any:
    """x grown by ``before`` and ``after`` values along the negative ``axis``, in ``mode``."""
    xp, n = namespace(x), x.shape[axis]
    if mode == "reflect":
        left, right = _take(x, axis, 1, before + 1), _take(x, axis, n - 1 - after, n - 1)
        left, right = xp.flip(left, axis=axis), xp.flip(right, axis=axis)
    elif mode == "replicate":
        shape = list(x.shape)
        shape[axis] = before
        left = xp.broadcast_to(_take(x, axis, 0, 1), tuple(shape))
        shape[axis] = after
        right = xp.broadcast_to(_take(x, axis, n - 1, n), tuple(shape))
    else:
        left, right = _take(x, axis, n - before, n), _take(x, axis, 0, after)
    return xp.concat([p for p in (left, x, right) if p.shape[axis]], axis=axis)


def _unpad_axis(dy: Any, axis: int, before: int, after: int, n: int, mode: str) -> Any:
    """The gradient of :func:`_pad_axis` for an axis of size ``n``: dy's middle plus each border's part, placed on
    the values it was read from."""
    xp = namespace(dy)
    lo, dx = _take(dy, axis, 0, before), _take(dy, axis, before, before + n)
    hi = _take(dy, axis, before + n, before + n + after)

    def placed(piece: Any, start: int) -> Any:
        """``piece`` at ``start`` of a zero array of dx's shape."""
        pieces = []
        for size in (start, n - start - piece.shape[axis]):
            shape = list(dy.shape)
            shape[axis] = size
            pieces.append(xp.zeros(tuple(shape), dtype=dy.dtype, device=dy.device))
        return xp.concat([pieces[0], piece, pieces[1]], axis=axis)

    if mode == "reflect":
        parts = ((xp.flip(lo, axis=axis), 1), (xp.flip(hi, axis=axis), n - 1 - after))
    elif mode == "replicate":
        parts = ((xp.sum(lo, axis=axis, keepdims=True), 0), (xp.sum(hi, axis=axis, keepdims=True), n - 1))
    else:
        parts = ((lo, n - before), (hi, 0))
    for piece, start, size in ((*parts[0], before), (*parts[1], after)):
        if size:
            dx = dx + placed(piece, start)
    return dx


def mode_pad(who: str, x: Any, sides: tuple[int, ...], mode: str) -> Any:
    """x padded by ``sides`` = (left, right[, top, bottom]) on its last one or two axes in ``mode``."""
    pairs = [(-1 - i, sides[2 * i], sides[2 * i + 1]) for i in range(len(sides) // 2)]
    for axis, before, after in pairs:
        _check(who, mode, tuple(x.shape), axis, before, after)
    for axis, before, after in pairs:
        x = _pad_axis(x, axis, before, after, mode)
    return x


def mode_unpad(dy: Any, sides: tuple[int, ...], mode: str, shape: tuple[int, ...]) -> Any:
    """The gradient of :func:`mode_pad` for an input of ``shape``: the axes taken back in reverse order."""
    for i in reversed(range(len(sides) // 2)):
        dy = _unpad_axis(dy, -1 - i, sides[2 * i], sides[2 * i + 1], shape[-1 - i], mode)
    return dy


class _ModePad(Layer):
    """x: (N, C, W) or (C, W) (1d), (N, C, H, W) or (C, H, W) (2d) -> y with the last axes padded in ``mode``:
    W + left + right (and H + top + bottom). ``padding`` is PyTorch's: an int for every side, or (left, right)
    (1d), (left, right, top, bottom) (2d). Caches the input's shape."""

    mode = ""
    dims = 2

    def __init__(self, padding: Any) -> None:
        super().__init__()
        self.padding = pad_sides(self.name, padding, 2 * self.dims)
        self._shape = None

    def config(self) -> dict[str, Any]:
        return {"padding": list(self.padding)}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_float(x)
        if x.ndim not in (self.dims + 1, self.dims + 2):
            axes = "(N, C, W) or (C, W)" if self.dims == 1 else "(N, C, H, W) or (C, H, W)"
            raise ValueError(f"{self.name}: expected {axes}, got shape {tuple(x.shape)}")
        y = mode_pad(self.name, x, self.padding, self.mode)
        self._shape = tuple(x.shape)
        return y

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        shape = self._need(self._shape)
        grown = [shape[-1 - i] + self.padding[2 * i] + self.padding[2 * i + 1] for i in range(self.dims)]
        self._check_grad(dy, (*shape[:-self.dims], *reversed(grown)))
        return mode_unpad(dy, self.padding, self.mode, shape)


class ReflectionPad1d(_ModePad):
    """PyTorch's nn.ReflectionPad1d: x mirrored at its edges, the edge itself not repeated (padding < W)."""

    mode, dims = "reflect", 1


class ReflectionPad2d(_ModePad):
    """PyTorch's nn.ReflectionPad2d: x mirrored at its edges, the edge itself not repeated (padding < H, W)."""

    mode, dims = "reflect", 2


class ReplicationPad1d(_ModePad):
    """PyTorch's nn.ReplicationPad1d: the edge values repeated."""

    mode, dims = "replicate", 1


class ReplicationPad2d(_ModePad):
    """PyTorch's nn.ReplicationPad2d: the edge values repeated."""

    mode, dims = "replicate", 2


class CircularPad1d(_ModePad):
    """PyTorch's nn.CircularPad1d: x wrapped around, its far end before it (padding <= W)."""

    mode, dims = "circular", 1


class CircularPad2d(_ModePad):
    """PyTorch's nn.CircularPad2d: x wrapped around on both axes (padding <= H, W)."""

    mode, dims = "circular", 2
