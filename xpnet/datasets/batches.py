"""Minibatches over arrays of any backend, in an order drawn on the host from ``(seed, epoch)``.

The permutation comes from a ``numpy.random.Generator`` seeded with ``(seed, epoch)``, so every
backend and device sees the same batches in the same order, and a resumed run needs no saved
generator state. Only the index array crosses to the device (once per epoch); rows are gathered
there with ``xp.take``.
"""

from __future__ import annotations

import operator
from typing import Any, Iterator

import numpy as np

from ..backend import Device, device_of, same_device, to_device

__all__ = ["BatchIterator", "epoch_permutation", "batch_bounds"]


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """A host permutation of ``range(n)`` (int64) that depends only on ``seed`` and ``epoch``."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)


def batch_bounds(n: int, batch_size: int, rank: int = 0, size: int = 1) -> list[tuple[int, int]]:
    """Row ranges ``(lo, hi)`` of each minibatch of ``n`` rows, stops clamped to ``n``.

    With ``size`` > 1 every global batch of ``batch_size`` rows is split as evenly as possible into
    ``size`` contiguous parts and rank ``rank`` gets part ``rank`` (possibly empty: lo == hi).
    """
    bounds = []
    for start in range(0, n, batch_size):
        count = min(start + batch_size, n) - start
        bounds.append((start + count * rank // size, start + count * (rank + 1) // size))
    return bounds


class BatchIterator:
    """Minibatches of one or more arrays with the same number of rows, all on one device.

    ``BatchIterator(x, y, batch_size=32, seed=0).epoch(e)`` yields ``(x_b, y_b)`` tuples on the
    arrays' device: x: (N, ...) -> x_b: (B, ...), the last batch smaller when B does not divide N.
    ``shuffle=False`` yields contiguous slices (views, no gather). ``rank``/``size`` select this
    process's part of each global batch (data parallel training).
    """

    def __init__(self, *arrays: Any, batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, size: int = 1):
        if not arrays:
            raise ValueError("BatchIterator: expected at least one array")
        n = int(arrays[0].shape[0])
        for i, a in enumerate(arrays[1:], 1):
            if int(a.shape[0]) != n:
                raise ValueError(f"BatchIterator: array {i} has {a.shape[0]} rows but array 0 has {n}")
            if not same_device(a, arrays[0]):
                raise ValueError(f"BatchIterator: array {i} is on {device_of(a)} but array 0 is on "
                                 f"{device_of(arrays[0])}; move them to one device")
        if isinstance(batch_size, bool) or not hasattr(batch_size, "__index__") \
                or not 1 <= operator.index(batch_size):
            raise ValueError(f"BatchIterator: batch_size must be an int >= 1, got {batch_size!r}")
        if not 0 <= rank < size:
            raise ValueError(f"BatchIterator: rank must lie in [0, {size}), got {rank}")
        self.arrays = arrays
        self.n = n
        self.batch_size = operator.index(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.device: Device = device_of(arrays[0])
        self.bounds = batch_bounds(n, self.batch_size, rank, size)

    def __len__(self) -> int:
        return len(self.bounds)

    def epoch(self, epoch: int) -> Iterator[tuple[Any, ...]]:
        """The batches of epoch ``epoch`` (the same ones every time it is asked for)."""
        if not self.shuffle:
            for lo, hi in self.bounds:
                yield tuple(a[lo:hi, ...] for a in self.arrays)
            return
        xp = self.device.xp
        idx = to_device(epoch_permutation(self.n, self.seed, epoch), self.device)
        for lo, hi in self.bounds:
            rows = idx[lo:hi]
            yield tuple(xp.take(a, rows, axis=0) for a in self.arrays)
