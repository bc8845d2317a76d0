"""Batches that are rows of a larger integer array, and that array's least and greatest values, read once.

A range check of ids (an Embedding's ``check_ids``) reads one value back from the device, which on a GPU waits
for all the work queued before it: each training step would wait for the one before. The batches a
:class:`~xpnet.datasets.BatchIterator` or :class:`~xpnet.datasets.TokenStream` gathers are rows of an array it
holds (:func:`note` records each with a :class:`Source`): the least and greatest values of that array, read once an
epoch the first time a check asks (:func:`bounds`), bound every batch of the epoch, so that the check compares host
ints. A batch is known by identity while it lives; anything made from it (a slice, an ``astype``) is not.
"""

from __future__ import annotations

import weakref
from typing import Any

from .devices import to_numpy
from .namespaces import isdtype, namespace


class Source:
    """An integer array whose batches are handed out: its (least, greatest) value, read at the first
    :meth:`bounds` (one device-to-host copy of two values), then kept."""

    def __init__(self, array: Any):
        self.array, self._bounds = array, None

    def bounds(self) -> tuple[int, int]:
        if self._bounds is None:
            xp = namespace(self.array)
            lo, hi = to_numpy(xp.stack([xp.min(self.array), xp.max(self.array)])).tolist()
            self._bounds = (int(lo), int(hi))
        return self._bounds


_batches: dict[int, tuple[weakref.ref, Source]] = {}  # id(batch) -> (a weak reference to it, its Source)


def sources(arrays: tuple[Any, ...]) -> list[Source | None]:
    """A :class:`Source` for each non-empty integer array of ``arrays``, None for the others."""
    return [Source(a) if a.shape[0] and isdtype(namespace(a), a.dtype, "integral") else None for a in arrays]


def note(batch: Any, source: Source | None) -> Any:
    """Record that ``batch`` holds rows of ``source`` (nothing where it is None, or where ``batch`` takes no weak
    reference); returns ``batch``."""
    if source is None:
        return batch
    key = id(batch)

    def forget(ref: weakref.ref) -> None:
        if _batches.get(key, (None,))[0] is ref:
            del _batches[key]

    try:
        ref = weakref.ref(batch, forget)
    except TypeError:
        return batch
    _batches[key] = (ref, source)
    return batch


def bounds(batch: Any) -> tuple[int, int] | None:
    """The (least, greatest) value of the array ``batch`` is rows of (:func:`note`), or None where unknown."""
    entry = _batches.get(id(batch))
    if entry is None or entry[0]() is not batch:
        return None
    return entry[1].bounds()
