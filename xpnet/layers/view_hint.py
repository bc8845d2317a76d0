"""PyTorch's ``x.view(shape)`` in a model's forward: NumPy's ``view`` takes a dtype, and fails with "Cannot
interpret '1' as a data type" (or "view() takes from 0 to 2 positional arguments", "Type must be a sub-type of
ndarray type"). Raised by the forward's own line holding ``.view(``, the error is raised again saying to reshape.
PyTorch's ``x.transpose(0, 1)`` swaps two axes where NumPy's takes them all ("axes don't match array" on a 3-d
array, legacy SNLI's ``ht[-2:].transpose(0, 1).contiguous().view(batch_size, -1)``): raised on such a line, it
says to write ``swapaxes`` or the whole permutation."""

from __future__ import annotations

import linecache
from typing import Any


def view_hint(model: Any, code: Any, error: Exception) -> str | None:
    """The message for ``error``, raised in forward's own frame (``code``) on a line calling ``.view(``, or None."""
    if not isinstance(error, (TypeError, ValueError)):
        return None
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None or tb.tb_frame.f_code is not code:
        return None
    line = linecache.getline(code.co_filename, tb.tb_lineno)
    if ".transpose(" in line and "axes don't match array" in str(error):
        return (f"{model.name}.forward: {error} (line {tb.tb_lineno}: {line.strip()}): NumPy's x.transpose(...) "
                "takes every axis (a permutation), where PyTorch's x.transpose(0, 1) swaps two; write "
                "x.swapaxes(0, 1), or xp.permute_dims(x, (1, 0, 2)) for a 3-d x on any backend")
    if ".view(" not in line:
        return None
    return (f"{model.name}.forward: {error} (line {tb.tb_lineno}: {line.strip()}): NumPy's x.view(...) takes a dtype, "
            "where PyTorch's x.view(shape) reshapes; write x.reshape(shape), or xp.reshape(x, shape) on any backend")
