"""Arrays made once and kept: a step that needs the same small device array every time (a mask, an index order,
a count) makes it at its first use, so that later steps copy nothing from the host and a CUDA-graph capture finds
it made in its warm-up steps."""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["kept"]


def kept(store: dict[Any, Any], key: Any, make: Callable[[], Any], limit: int = 64) -> Any:
    """``make()``'s value for ``key``, made at the first ask and kept in ``store``, the oldest dropped once it
    holds ``limit`` (a loop over batches of a few shapes or lengths keeps them all)."""
    if key not in store:
        if len(store) >= limit:
            del store[next(iter(store))]
        store[key] = make()
    return store[key]
