"""PyTorch's ``x.view(shape)`` in a model's forward: NumPy's ``view`` takes a dtype, and fails with "Cannot
interpret '1' as a data type" (or "view() takes from 0 to 2 positional arguments", "Type must be a sub-type of
ndarray type"). Raised by the forward's own line holding ``.view(``, the error is raised again saying to reshape.
Likewise PyTorch's ``x.size(0)`` (NumPy's ``size`` is the number of elements, an int: "'int' object is not
callable"): raised again saying to write ``x.shape[0]``."""

from __future__ import annotations

import linecache
from typing import Any


def view_hint(model: Any, code: Any, error: Exception) -> str | None:
    """The message for ``error``, raised in forward's own frame (``code``) on a line calling ``.view(`` (or
    ``.size(``), or None."""
    if not isinstance(error, (TypeError, ValueError)):
        return None
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None or tb.tb_frame.f_code is not code:
        return None
    line = linecache.getline(code.co_filename, tb.tb_lineno)
    if ".size(" in line and isinstance(error, TypeError) and "'int' object is not callable" in str(error):
        return (f"{model.name}.forward: {error} (line {tb.tb_lineno}: {line.strip()}): NumPy's x.size is the number "
                "of elements, an int, where PyTorch's x.size(dim) is the length of an axis; write x.shape[dim] "
                "(x.shape for x.size())")
    if ".view(" not in line:
        return None
    return (f"{model.name}.forward: {error} (line {tb.tb_lineno}: {line.strip()}): NumPy's x.view(...) takes a dtype, "
            "where PyTorch's x.view(shape) reshapes; write x.reshape(shape), or xp.reshape(x, shape) on any backend")
