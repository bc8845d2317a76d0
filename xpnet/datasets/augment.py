"""Data augmentation that runs where the batch lives: random shifts and horizontal flips of images.

The random numbers (one shift per axis and one flip per sample) are drawn on the host from a
``numpy.random.Generator`` seeded with ``(seed, epoch, step)`` and only those few numbers cross to
the device, so every backend and device, a resumed run and the trainer's replay of an epoch see the
same augmented batches. The images themselves are shifted on the device with array-API operations
(slices, ``concat``, ``flip``, ``where``): one pass per possible shift, no per-sample Python loop; on CuPy one
kernel does the flip and both shifts (the same values).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._user import flag
from ..backend import device_of, fast_path, namespace, to_device

__all__ = ["RandomShiftFlip", "shift_flip_params", "shift_flip_portable"]


def shift_flip_params(n: int, max_shift: int, flip: bool, seed: int, epoch: int, step: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Host draws for ``n`` samples: row shifts, column shifts (int64 in ``[-max_shift, max_shift]``)
    and flip flags (bool), depending only on ``(seed, epoch, step)``."""
    rng = np.random.default_rng([seed, epoch, step])
    dy = rng.integers(-max_shift, max_shift + 1, size=n).astype(np.int64)
    dx = rng.integers(-max_shift, max_shift + 1, size=n).astype(np.int64)
    flips = rng.random(n) < 0.5 if flip else np.zeros(n, dtype=bool)
    return dy, dx, flips


def _shifted(xp: Any, x: Any, k: int, axis: int, native: Any) -> Any:
    """``x`` moved by ``k`` positions along ``axis`` (k > 0: towards higher indices), zeros shifted in."""
    if k == 0:
        return x
    n = x.shape[axis]
    zeros = xp.zeros(tuple(abs(k) if i == axis % x.ndim else s for i, s in enumerate(x.shape)),
                     dtype=x.dtype, device=native)
    index = [slice(None)] * x.ndim
    if k > 0:
        index[axis] = slice(0, n - k)
        return xp.concat([zeros, x[tuple(index)]], axis=axis)
    index[axis] = slice(-k, n)
    return xp.concat([x[tuple(index)], zeros], axis=axis)


class RandomShiftFlip:
    """``RandomShiftFlip(max_shift=2, flip=True, seed=0)(x, epoch, step)``: each image of the batch
    x: (N, ..., H, W) moved by its own random (dy, dx) in ``[-max_shift, max_shift]`` pixels with
    zeros shifted in (like padding by ``max_shift`` then a random crop) and, with ``flip``, mirrored
    left-right with probability 1/2 (the flip comes first). Returns an array of the same shape,
    dtype and device. Pass it as ``xn.train(..., transform=RandomShiftFlip())``: it is applied to
    training batches only.
    """

    def __init__(self, max_shift: int = 2, flip: bool = True, seed: int = 0):
        if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
            raise ValueError(f"RandomShiftFlip: max_shift must be an int >= 0 (pixels), got {max_shift!r}")
        flip = flag(flip, "RandomShiftFlip", "flip")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"RandomShiftFlip: seed must be an int >= 0, got {seed!r}")
        self.max_shift, self.flip, self.seed = int(max_shift), flip, int(seed)

    def __repr__(self) -> str:
        return f"RandomShiftFlip(max_shift={self.max_shift}, flip={self.flip}, seed={self.seed})"

    def __call__(self, x: Any, epoch: int, step: int) -> Any:
        for arg, value in (("epoch", epoch), ("step", step)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"RandomShiftFlip: {arg} must be an int >= 0, got {value!r}")
        if getattr(x, "ndim", 0) < 3:
            raise ValueError(f"RandomShiftFlip: expected images of shape (N, ..., H, W), got shape "
                             f"{tuple(getattr(x, 'shape', ()))}; load them with flatten=False")
        s, n = self.max_shift, int(x.shape[0])
        if n == 0 or (s == 0 and not self.flip):
            return x
        if s >= min(x.shape[-2:]):
            raise ValueError(f"RandomShiftFlip: max_shift={s} must be smaller than the image side "
                             f"{tuple(x.shape[-2:])}")
        xp, dev = namespace(x), device_of(x)
        dy, dx, flips = shift_flip_params(n, s, self.flip, self.seed, int(epoch), int(step))
        lead = (n,) + (1,) * (x.ndim - 1)  # one value per sample, broadcast over the image
        flipped = self.flip and flips.any()
        used = [[k for k in range(-s, s + 1) if k != 0 and (shifts == k).any()] for shifts in (dy, dx)]
        if not flipped and not any(used):
            return x
        # the step's draws go to the device in one copy: (flip, dy, dx) per sample
        draws = to_device(np.stack([flips.astype(np.int64), dy, dx]).reshape((3, *lead)), dev)
        return fast_path("shift_flip", xp, shift_flip_portable)(x, draws, flipped, used)


def shift_flip_portable(x: Any, draws: Any, flipped: bool, used: list[list[int]]) -> Any:
    """x (N, ..., H, W) flipped left-right where ``draws[0]`` (int64 (3, N, 1, ..., 1) on x's device: flip, dy, dx
    per sample) is 1, then moved by dy rows and dx columns, zeros shifted in: one ``where`` per shift in ``used``
    ([row shifts], [column shifts], 0 left out), the flip only where ``flipped``. Portable; CuPy's fast path is one
    kernel (``xpnet.backend.fast_cupy.shift_flip``), the same values."""
    xp, native = namespace(x), device_of(x).native
    if flipped:
        x = xp.where(draws[0, ...] == 1, xp.flip(x, axis=-1), x)
    for axis, shifts, ks in ((-2, draws[1, ...], used[0]), (-1, draws[2, ...], used[1])):
        out = x
        for k in ks:
            out = xp.where(shifts == k, _shifted(xp, x, k, axis, native), out)
        x = out
    return x
