"""Batches for truncated backpropagation through time over one long sequence of ids (the book's
``RnnlmTrainer.get_batch``).

Row i of every batch reads the corpus from its own offset ``i * (len // batch_size)``, ``time_size``
ids at a time, and each batch continues where the one before stopped: a stateful recurrent layer
carries the state of row i from batch to batch, as if it read one long sequence. The targets are the
inputs shifted by one id (the next word). As in the book, one counter runs over the whole training:
epoch e starts where epoch e - 1 stopped, wrapping around the end of the corpus.
"""

from __future__ import annotations

import operator
from typing import Any, Iterator

import numpy as np

from .._user import seed as _seed
from ..backend import rows
from ..backend import Device, device_of, isdtype, namespace, to_device

__all__ = ["TokenStream"]


class TokenStream:
    """``TokenStream(ids, batch_size, time_size).epoch(e)`` yields ``len(self)`` pairs ``(x, t)`` of shape
    (batch_size, time_size) on the ids' device: ``t[i, j]`` is the id after ``x[i, j]`` in the corpus.

    ids: (L,) integers (NumPy or any backend's array, or a Python list of ints, made a NumPy array).
    ``len(self)`` is the book's ``max_iters``, ``(L - 1) // (batch_size * time_size)``. ``positions(step)`` gives
    the corpus positions of the ``step``-th batch of the run (counting over epochs), a host (batch_size, time_size)
    int64 array.
    """

    def __init__(self, ids: Any, batch_size: int, time_size: int, *rest: Any):
        if rest or hasattr(batch_size, "shape"):  # the book's fit(xs, ts, ...): inputs and targets apart
            raise TypeError("TokenStream(ids, batch_size, time_size) takes the corpus once, not inputs and "
                            "targets: the book's fit(corpus[:-1], corpus[1:], ...) is TokenStream(corpus, batch_size, "
                            "time_size)")
        self.batch_size = _positive("batch_size", batch_size)
        self.time_size = _positive("time_size", time_size)
        if not hasattr(ids, "shape"):  # a Python list of ids (char_ids' output as a list, say)
            try:
                ids = np.asarray(ids)
            except ValueError:  # a ragged list of lists
                raise ValueError(f"TokenStream: ids must be a 1-D integer array or a flat list of ints, got a "
                                 f"ragged {type(ids).__name__}") from None
        xp = namespace(ids)
        if ids.ndim != 1 or not isdtype(xp, ids.dtype, "integral"):
            raise ValueError(f"TokenStream: ids must be a 1-D integer array, got shape {tuple(ids.shape)} and "
                             f"dtype {ids.dtype}")
        self.size = int(ids.shape[0]) - 1
        if self.size < self.batch_size * self.time_size:
            raise ValueError(f"TokenStream: {self.size + 1} ids give no full batch of {self.batch_size} rows x "
                             f"{self.time_size} steps (need at least {self.batch_size * self.time_size + 1})")
        self.ids = ids
        self.xs, self.ts = ids[:-1], ids[1:]
        self.device: Device = device_of(ids)
        self.offsets = np.arange(self.batch_size, dtype=np.int64)[:, None] * (self.size // self.batch_size)
        self.steps = self.size // (self.batch_size * self.time_size)
        self._first: Any = None  # positions(0), flat, on the ids' device (made at the first batch)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        raise TypeError("TokenStream: iterate over one epoch's batches, for xs, ts in stream.epoch(epoch)")

    def rank_record(self) -> dict[str, Any]:
        """What defines this stream's batches, for the ranks of a data-parallel run to compare
        (:mod:`xpnet.distributed`, which digests the ids): their count, dtype and bytes, ``batch_size``,
        ``time_size``, and the steps per epoch that follow (named first where lengths differ)."""
        return {"type": "TokenStream", "ids": int(self.ids.shape[0]), "batch_size": self.batch_size,
                "time_size": self.time_size, "steps per epoch": len(self), "ids dtype": str(self.ids.dtype),
                "ids content": self.ids}

    def __repr__(self) -> str:
        return (f"TokenStream({self.size + 1} ids on {self.device.name}, batch_size={self.batch_size}, "
                f"time_size={self.time_size})")

    def to(self, device: Device) -> "TokenStream":
        """The same stream with its ids on ``device`` (itself when they are there already)."""
        if device == self.device:
            return self
        return TokenStream(to_device(self.ids, device), self.batch_size, self.time_size)

    def positions(self, step: int) -> np.ndarray:
        start = step * self.time_size
        return (self.offsets + start + np.arange(self.time_size, dtype=np.int64)[None, :]) % self.size

    def epoch(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        """The batches of epoch ``epoch`` (an int >= 0; the same ones every time it is asked for). Their positions are
        computed on the ids' device from ``positions(0)``, uploaded once: an upload per batch from pageable
        host memory may wait for the work a GPU has queued, and the training loop would then wait each step."""
        _seed(epoch, "TokenStream.epoch", "epoch")
        xp = self.device.xp
        shape = (self.batch_size, self.time_size)
        if self._first is None:
            self._first = to_device(self.positions(0).reshape(-1), self.device)
        (source,) = rows.sources((self.ids,))  # the ids' range read once an epoch, if asked
        for step in range(epoch * self.steps, (epoch + 1) * self.steps):
            where = (self._first + step * self.time_size) % self.size
            yield (rows.note(xp.reshape(xp.take(self.xs, where), shape), source),
                   rows.note(xp.reshape(xp.take(self.ts, where), shape), source))


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") or operator.index(value) < 1:
        raise ValueError(f"TokenStream: {name} must be an int >= 1, got {value!r}")
    return operator.index(value)
