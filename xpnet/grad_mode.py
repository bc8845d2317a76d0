"""``xn.no_grad``, ``xn.enable_grad``, ``xn.set_grad_enabled``: PyTorch's switches for recording a graph, which
xpnet never records.

xpnet has no autograd: every layer computes its gradients in ``backward``, which you call (or
``xn.train`` calls). So nothing is recorded during a forward pass, inside ``no_grad`` or not, and a
PyTorch loop that wraps its evaluation in ``with torch.no_grad():`` (or a phase in ``with
torch.set_grad_enabled(phase == "train"):``, the transfer-learning tutorial's) runs unchanged. None switches
layers to evaluation mode (neither does PyTorch's): for that, ``model.predict(x)`` or
``model.forward(x, train=False)``.
"""

from __future__ import annotations

import contextlib
from typing import Any


class _Unchanged(contextlib.ContextDecorator):
    """A context manager (and decorator) that runs what it wraps unchanged: xpnet records no graph to switch."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return False


class no_grad(_Unchanged):  # noqa: N801 - PyTorch's name, a context manager as theirs
    """``with xn.no_grad(): ...``, ``@xn.no_grad()`` or ``@xn.no_grad``: runs what it wraps unchanged."""

    def __new__(cls, func: Any = None) -> Any:
        self = super().__new__(cls)
        return self(func) if callable(func) else self

    def __init__(self, func: Any = None) -> None:
        pass


class enable_grad(no_grad):  # noqa: N801 - PyTorch's name
    """``with xn.enable_grad(): ...`` or as a decorator: runs what it wraps unchanged, as ``no_grad`` does."""


class set_grad_enabled(_Unchanged):  # noqa: N801 - PyTorch's name, a context manager as theirs
    """``with xn.set_grad_enabled(mode): ...``, or the call alone: runs what it wraps unchanged. ``mode`` must be
    True or False, as PyTorch's."""

    def __init__(self, mode: Any) -> None:
        if mode is not True and mode is not False:
            raise TypeError(f"set_grad_enabled: mode must be True or False (as PyTorch's), got {mode!r}")
        self.mode = mode
