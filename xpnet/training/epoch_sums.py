"""An epoch's running sums on the device, moved on after each step: the loss (a batch's mean loss times the count
of targets it is the mean of) and the correct count. One kernel on CuPy (``xpnet.backend.fast_cupy.epoch_sums``)
where the portable additions launch three; the same sums (NumPy's bit for bit)."""

from __future__ import annotations

from typing import Any

from ..backend import fast_path, namespace

__all__ = ["add_batch"]


def add_batch(loss_sum: Any, value: Any, count: Any, correct: Any, hits: Any) -> tuple[Any, Any]:
    """(``loss_sum + value * count``, ``correct + hits``), new 0-d arrays: ``value`` the batch's mean loss in
    ``loss_sum``'s dtype, ``count`` an int or a 0-d array of ``correct``'s (index) dtype; ``hits`` None (no
    accuracy counted) leaves ``correct`` as it is."""
    return fast_path("epoch_sums", namespace(loss_sum), _add_batch)(loss_sum, value, count, correct, hits)


def _add_batch(loss_sum: Any, value: Any, count: Any, correct: Any, hits: Any) -> tuple[Any, Any]:
    """:func:`add_batch`, portable."""
    if not isinstance(count, int):
        count = namespace(value).astype(count, value.dtype)
    return loss_sum + value * count, correct if hits is None else correct + hits
