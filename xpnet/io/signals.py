"""SIGTERM, what batch schedulers send before they kill a job, handled like Ctrl-C where it matters.

By default SIGTERM ends Python at once: no ``finally`` runs, a save leaves its temporary file, and
training loses the epoch under way. Two helpers change that, each only while it runs, only in the
main thread, and only where SIGTERM still has its default action (a handler the program installed
is left alone):

- :func:`sigterm_raises` (saves): SIGTERM raises :class:`Terminated` in the code under way, which
  cleans up as for Ctrl-C; then the process ends by SIGTERM as it would have.
- :class:`SigtermFlag` (``xn.train``): SIGTERM only sets ``requested``; the loop stops at a safe
  point, writes what it must, and calls :meth:`SigtermFlag.terminate`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

__all__ = ["Terminated", "sigterm_raises", "SigtermFlag"]


class Terminated(BaseException):
    """SIGTERM arrived while :func:`sigterm_raises` was active."""


def _ours_to_take() -> bool:
    return threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _terminate() -> None:
    """End the process by SIGTERM, as the default action would have."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)
    raise SystemExit(128 + signal.SIGTERM)  # where the default action did not end the process


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Terminated` (cleanup runs), then ends the process."""
    if not _ours_to_take():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except Terminated:
        _terminate()
        raise
    finally:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


class SigtermFlag:
    """While active (``with``), SIGTERM sets ``requested`` instead of ending the process."""

    def __init__(self) -> None:
        self.requested = False
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __enter__(self) -> "SigtermFlag":
        if _ours_to_take():
            signal.signal(signal.SIGTERM, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed and signal.getsignal(signal.SIGTERM) == self._handler:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self._installed = False

    def terminate(self) -> None:
        """End the process by SIGTERM, as it would have ended when the signal came."""
        _terminate()
