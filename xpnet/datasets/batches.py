"""Minibatches over arrays of any backend, in an order drawn on the host from ``(seed, epoch)``.

The permutation comes from a ``numpy.random.Generator`` seeded with ``(seed, epoch)``, so every
backend and device sees the same batches in the same order, and a resumed run needs no saved
generator state. Only the index array crosses to the device (once per epoch); rows are gathered
there with ``xp.take``.

:class:`StaticBatches` is the input side of a captured (CUDA-graph) step: the full batches of an
epoch gathered on the device into buffers made once, with the step counter itself on the device,
so that replaying the same kernels with the same addresses walks through the epoch.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Iterator

import numpy as np

from .._user import flag, keyword_hints, not_here, seed as _seed
from ..backend import rows
from ..backend import (Device, XpnetBackendError, device_of, fast_path, namespace, same_device, to_device,
                       update_rule)

__all__ = ["BatchIterator", "StaticBatches", "epoch_permutation", "batch_bounds"]


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


# What a PyTorch user asks of a DataLoader, and what a BatchIterator has instead.
_DATALOADER_NAMES = {
    "dataset": "a BatchIterator holds arrays, not a dataset: loader.n is the number of samples "
               "(len(loader.dataset)), loader.arrays the arrays, len(loader) the number of batches",
}

# torch.utils.data.DataLoader's keywords that a BatchIterator has no use for, and what to write instead.
_WORKERS = ("the batches are rows gathered from arrays already in memory, on their device: no worker process "
            "loads them; leave {} out")
_DATALOADER_KEYWORDS = {
    **{key: _WORKERS.format(key) for key in ("num_workers", "persistent_workers", "prefetch_factor",
                                             "worker_init_fn", "multiprocessing_context")},
    "pin_memory": "the arrays are on their device already: move them there once, xn.to_device(x, dev), and leave "
                  "pin_memory out",
    "collate_fn": "the batches are rows of arrays of one shape: make the arrays first (sequences of several lengths "
                  "padded into one with xn.layers.pad_sequence(seqs, batch_first=True)), then pass them",
    "sampler": "shuffle=True draws a new seeded order each epoch (seed=...); for another order, index the arrays "
               "yourself (x[order], y[order]) and pass shuffle=False",
    "generator": "seed=... seeds the shuffle (each epoch its own order: loader.epoch(e))",
}
# Their values that change nothing (DataLoader's defaults): taken and dropped, as PyTorch code passes them.
_DATALOADER_DEFAULTS = {"num_workers": 0, "persistent_workers": False, "prefetch_factor": None,
                        "worker_init_fn": None, "multiprocessing_context": None, "pin_memory": False,
                        "collate_fn": None, "sampler": None, "generator": None}


def _dataloader_keywords(init: Any) -> Any:
    """``init`` taking DataLoader's keywords above at their defaults (dropped) and refusing another value of
    one, saying what to write (Python's bare "unexpected keyword argument 'num_workers'" before)."""
    hinted = keyword_hints("BatchIterator", _DATALOADER_KEYWORDS)(init)

    @functools.wraps(init)
    def taking(self: Any, *args: Any, **kwargs: Any) -> None:
        kept = {key: value for key, value in kwargs.items()
                if key not in _DATALOADER_DEFAULTS or type(value) is not type(_DATALOADER_DEFAULTS[key])
                or value != _DATALOADER_DEFAULTS[key]}
        hinted(self, *args, **kept)

    return taking


def _take_rows(a: Any, rows: Any) -> Any:
    """The rows ``rows`` (an index array) of ``a``: a batch, on any backend."""
    return namespace(a).take(a, rows, axis=0)


class BatchIterator:
    """Minibatches of one or more arrays with the same number of rows, all on one device.

    ``BatchIterator(x, y, batch_size=32, seed=0).epoch(e)`` yields ``(x_b, y_b)`` tuples on the
    arrays' device: x: (N, ...) -> x_b: (B, ...), the last batch smaller when B does not divide N.
    ``shuffle=False`` yields contiguous slices (views, no gather). ``rank``/``size`` select this
    process's part of each global batch (data parallel training). ``drop_last=True`` leaves out the
    last batch when it is smaller than ``batch_size`` (as PyTorch's DataLoader); with shuffling the
    rows left out differ from epoch to epoch. Epoch ``e`` is shuffled as epoch ``epoch_offset + e`` of
    ``seed``: ``xn.train`` passes the epochs it has already trained the model for, so that a second call
    goes on to new orders.
    """

    @_dataloader_keywords
    def __init__(self, *arrays: Any, batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, size: int = 1, drop_last: bool = False, epoch_offset: int = 0):
        if not arrays:
            raise ValueError("BatchIterator: expected at least one array")
        for i, a in enumerate(arrays):
            if not hasattr(a, "shape") or len(a.shape) < 1:
                raise TypeError(f"BatchIterator: array {i} must be an array with a sample axis (N, ...), got "
                                f"{type(a).__name__}{f' of shape {tuple(a.shape)}' if hasattr(a, 'shape') else ''}")
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
        self.shuffle = flag(shuffle, "BatchIterator", "shuffle")
        self.seed = _seed(seed, "BatchIterator")
        self.epoch_offset = _seed(epoch_offset, "BatchIterator", "epoch_offset")
        self.device: Device = device_of(arrays[0])
        self.drop_last = flag(drop_last, "BatchIterator", "drop_last")
        self.used = n - n % self.batch_size if self.drop_last else n
        self.bounds = batch_bounds(self.used, self.batch_size, rank, size)

    def __len__(self) -> int:
        return len(self.bounds)

    def __getattr__(self, name: str) -> Any:
        raise not_here("BatchIterator", name, _DATALOADER_NAMES, kind="object")

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        """Unshuffled, the one order every epoch has (a DataLoader without shuffle); shuffled, each epoch is its
        own, so the loop names it."""
        if not self.shuffle:
            return self.epoch(0)
        raise TypeError("BatchIterator: iterate over one epoch's batches, for xb, yb in batches.epoch(epoch): each "
                        "epoch is its own seeded shuffle (a DataLoader reshuffles at each for loop instead); "
                        "with shuffle=False, for xb, yb in batches gives the one order")

    def permutation(self, epoch: int) -> np.ndarray:
        """Epoch ``epoch``'s order of the rows, on the host: ``epoch_permutation(n, seed, epoch_offset + epoch)``."""
        return epoch_permutation(self.n, self.seed, self.epoch_offset + epoch)

    def epoch(self, epoch: int) -> Iterator[tuple[Any, ...]]:
        """The batches of epoch ``epoch`` (an int >= 0; the same ones every time it is asked for)."""
        _seed(epoch, "BatchIterator.epoch", "epoch")
        sources = rows.sources(self.arrays)  # integer arrays (ids): their range read once an epoch, if asked
        if not self.shuffle:
            for lo, hi in self.bounds:
                yield tuple(rows.note(a[lo:hi, ...], s) for a, s in zip(self.arrays, sources))
            return
        take = fast_path("take_rows", self.device.xp, _take_rows)  # asked once an epoch, not every batch
        idx = to_device(self.permutation(epoch), self.device)
        arrays = self.arrays
        for lo, hi in self.bounds:
            picked = idx[lo:hi]
            yield tuple([rows.note(take(a, picked), s) for a, s in zip(arrays, sources)])


class StaticBatches:
    """The full batches of :class:`BatchIterator` ``batches``, gathered on the device into fixed buffers.

    ``load_epoch(e)`` copies epoch ``e``'s permutation into a device buffer made once and sets the
    device step counter to 0; each ``gather()`` then fills ``buffers`` (x: (B_local, ...), y, ...)
    with the next full batch of this rank's share and advances the counter, computing the rows on
    the device from the counter. No host value changes between steps: the same calls, on the same
    addresses, walk through the epoch, which is what a captured CUDA graph replays. The short last
    batch (when ``batch_size`` does not divide N) is not here: ``len(self)`` counts full batches
    only, and the caller takes the last one from ``batches.epoch(e)`` eagerly. ``gather()`` counts its
    own calls on the host (not the launches of a graph that captured it, which never run its Python) and
    refuses one past the epoch's full batches, where the device would index past the permutation.

    Cached: ``perm`` (N,) int64, ``step`` () int64, ``offsets`` (B_local,) int64 (this rank's rows
    within a global batch), and one buffer per array.
    """

    def __init__(self, batches: BatchIterator):
        if not batches.shuffle:
            raise ValueError("StaticBatches: needs a shuffled BatchIterator (shuffle=True); unshuffled "
                             "batches are slices and need no gather")
        dev, b = batches.device, batches.batch_size
        xp = dev.xp
        if update_rule(xp) != "in place":
            raise XpnetBackendError(f"StaticBatches: fills buffers in place, but arrays on {dev.name} are immutable; "
                                    "use BatchIterator.epoch")
        self.batches = batches
        self.full = batches.n // b
        lo, hi = batches.bounds[0] if self.full else (0, 0)
        self.perm = xp.zeros((batches.n,), dtype=xp.int64, device=dev.native)
        self.step = xp.zeros((), dtype=xp.int64, device=dev.native)
        self.offsets = xp.arange(lo, hi, dtype=xp.int64, device=dev.native)
        self.buffers = tuple(xp.empty((hi - lo, *a.shape[1:]), dtype=a.dtype, device=dev.native)
                             for a in batches.arrays)
        self.loaded = False  # a host flag: no permutation yet, every row would be row 0
        self.gathered = 0  # gather() calls since load_epoch, on the host

    def __len__(self) -> int:
        return self.full

    def load_epoch(self, epoch: int) -> None:
        """Put epoch ``epoch``'s permutation in ``perm`` (same buffer) and rewind the step counter."""
        _seed(epoch, "StaticBatches.load_epoch", "epoch")
        self.perm[...] = to_device(self.batches.permutation(epoch), self.batches.device)
        self.step[...] = 0
        self.loaded = True
        self.gathered = 0

    def gather(self) -> tuple[Any, ...]:
        """Fill ``buffers`` with the batch at the device step counter, advance it; returns ``buffers``."""
        if not self.loaded:
            raise RuntimeError("StaticBatches.gather: call load_epoch(epoch) first; until then there is no "
                               "permutation and every row gathered would be row 0")
        if self.gathered >= self.full:
            raise IndexError(f"StaticBatches.gather: the epoch has {self.full} full batch(es) (gather calls 1 to "
                             f"{self.full} after load_epoch), and this is call {self.gathered + 1}; call "
                             "load_epoch(epoch) for the next epoch (the short last batch comes from "
                             "BatchIterator.epoch)")
        self.gathered += 1
        xp = self.batches.device.xp
        rows = xp.take(self.perm, self.offsets + self.step * self.batches.batch_size)
        for buf, a in zip(self.buffers, self.batches.arrays):
            buf[...] = xp.take(a, rows, axis=0)
        self.step[...] = self.step + 1
        return self.buffers
