"""``xn.no_grad``, ``xn.enable_grad``, ``xn.set_grad_enabled`` (``xn.is_grad_enabled`` reads them): PyTorch's
switches for recording a graph, which xpnet never records.

xpnet has no autograd: every layer computes its gradients in ``backward``, which you call (or
``xn.train`` calls). So nothing is recorded during a forward pass, inside ``no_grad`` or not, and a
PyTorch loop that wraps its evaluation in ``with torch.no_grad():`` (or a phase in ``with
torch.set_grad_enabled(phase == "train"):``, the transfer-learning tutorial's) runs unchanged. None switches
layers to evaluation mode (neither does PyTorch's): for that, ``model.predict(x)`` or
``model.forward(x, train=False)``.

What they do change: within ``with xn.no_grad():`` (or ``set_grad_enabled(False)`` as a context),
:func:`grad_enabled` is False, and a layer's forward run there marks the layer so that its backward refuses
to serve that call (:mod:`xpnet.layers.no_grad_calls`): a forward replaces the caches of the one before, so a
``target = policy_net(next_x)`` under no_grad between ``q = policy_net(x)`` and ``policy_net.backward(dq)``
would give the no_grad call's gradient, where PyTorch's backward serves the training call. ``set_grad_enabled``
called alone (not as a context), PyTorch's function form, sets this thread's mode until it is set again, as
PyTorch's: after ``xn.set_grad_enabled(False)``, a layer's backward refuses every forward until
``xn.set_grad_enabled(True)``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any


class _Mode(threading.local):
    """stack: the modes the contexts entered replaced, innermost last (made at a thread's first context);
    enabled: the mode (a class attribute until set: read by every layer call, a plain attribute lookup)."""

    enabled = True


_local = _Mode()


def grad_enabled() -> bool:
    """Whether this thread is outside every ``no_grad`` context (or inside an ``enable_grad`` within one)."""
    return _local.enabled


def is_grad_enabled() -> bool:
    """PyTorch's ``torch.is_grad_enabled()``: whether this thread is outside every ``no_grad`` (or in an
    ``enable_grad`` within one, or after ``set_grad_enabled(True)``), as :func:`grad_enabled`."""
    return _local.enabled


class _Unchanged(contextlib.ContextDecorator):
    """A context manager (and decorator) that runs what it wraps with the grad mode ``self.mode`` (None: as it
    is); it records no graph, only the mode that layers read (:func:`grad_enabled`)."""

    mode: bool | None = None

    def __enter__(self) -> None:
        stack = _local.__dict__.setdefault("stack", [])
        stack.append(grad_enabled())
        if self.mode is not None:
            _local.enabled = self.mode
        return None

    def __exit__(self, *exc: Any) -> bool:
        _local.enabled = _local.stack.pop()
        return False


class no_grad(_Unchanged):  # noqa: N801 - PyTorch's name, a context manager as theirs
    """``with xn.no_grad(): ...``, ``@xn.no_grad()`` or ``@xn.no_grad``: runs what it wraps unchanged; the layers
    called there refuse a backward until their next forward outside it."""

    mode = False

    def __new__(cls, func: Any = None) -> Any:
        self = super().__new__(cls)
        return self(func) if callable(func) else self

    def __init__(self, func: Any = None) -> None:
        pass


class enable_grad(no_grad):  # noqa: N801 - PyTorch's name
    """``with xn.enable_grad(): ...`` or as a decorator: runs what it wraps unchanged, with gradients enabled (within
    a ``no_grad``, the layers called there take a backward again)."""

    mode = True


class set_grad_enabled(_Unchanged):  # noqa: N801 - PyTorch's name, a context manager as theirs
    """``with xn.set_grad_enabled(mode): ...`` (``no_grad`` where mode is False), ``@xn.set_grad_enabled(mode)``, or
    the call alone, which sets this thread's mode from then on, as PyTorch's (``prev``: the mode it replaced, back
    at the context's end). ``mode`` must be True or False, as PyTorch's."""

    def __init__(self, mode: Any) -> None:
        if mode is not True and mode is not False:
            raise TypeError(f"set_grad_enabled: mode must be True or False (as PyTorch's), got {mode!r}")
        self.mode, self.prev = mode, grad_enabled()
        _local.enabled = mode

    def __call__(self, func: Any) -> Any:
        """As a decorator: the mode is back as it was; each call of ``func`` runs in a context of its own."""
        _local.enabled = self.prev
        mode = self.mode

        @functools.wraps(func)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with set_grad_enabled(mode):
                return func(*args, **kwargs)
        return wrapped

    def __enter__(self) -> None:
        _local.enabled = self.mode

    def __exit__(self, *exc: Any) -> bool:
        _local.enabled = self.prev
        return False
