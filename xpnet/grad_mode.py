"""``xn.no_grad``: PyTorch's switch for "record no graph", which xpnet never records.

xpnet has no autograd: every layer computes its gradients in ``backward``, which you call (or
``xn.train`` calls). So nothing is recorded during a forward pass, inside ``no_grad`` or not, and a
PyTorch loop that wraps its evaluation in ``with torch.no_grad():`` runs unchanged. It does not switch
layers to evaluation mode (neither does PyTorch's): for that, ``model.predict(x)`` or
``model.forward(x, train=False)``.
"""

from __future__ import annotations

import contextlib
from typing import Any


class no_grad(contextlib.ContextDecorator):  # noqa: N801 - PyTorch's name, a context manager as theirs
    """``with xn.no_grad(): ...``, ``@xn.no_grad()`` or ``@xn.no_grad``: runs what it wraps unchanged."""

    def __new__(cls, func: Any = None) -> Any:
        self = super().__new__(cls)
        return self(func) if callable(func) else self

    def __init__(self, func: Any = None) -> None:
        pass

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return False
