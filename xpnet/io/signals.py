"""SIGTERM, what batch schedulers send before they kill a job, handled like Ctrl-C where it matters.

By default SIGTERM ends Python at once: no ``finally`` runs, a save leaves its temporary file, and
training loses the epoch under way. Two helpers change that, each only while it runs, only in the
main thread, and only where SIGTERM still has its default action (a handler the program installed
is left alone):

- :func:`sigterm_raises` (saves): SIGTERM raises :class:`Terminated` in the code under way, which
  cleans up as for Ctrl-C; then the process ends by SIGTERM as it would have.
- :class:`SigtermFlag` (``xn.train``): SIGTERM only sets ``requested``; the loop stops at a safe
  point, writes what it must, and calls :meth:`SigtermFlag.terminate`. A process that does not get
  there within :func:`grace_s` seconds (stuck in a collective whose partner never comes, or in user
  code) is ended by SIGTERM then, as if the signal had not been trapped. A thread keeps that time:
  Python runs a signal handler only when the main thread is back in the interpreter, which a
  blocking MPI call never gives back, but it writes the signal's number to ``signal.set_wakeup_fd``
  at once, and the thread reads it there.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import threading
import time
from typing import Any, Iterator

__all__ = ["Terminated", "sigterm_raises", "SigtermFlag", "grace_s"]

DEFAULT_GRACE_S = 5.0


def grace_s() -> float:
    """How long ``xn.train`` may take after SIGTERM to reach a safe point and save:
    ``XPNET_SIGTERM_WAIT_S`` seconds, default :data:`DEFAULT_GRACE_S` (``inf``: as long as it takes)."""
    text = os.environ.get("XPNET_SIGTERM_WAIT_S", "").strip()
    try:
        seconds = float(text) if text else DEFAULT_GRACE_S
    except ValueError:
        seconds = float("nan")
    if not seconds >= 0:  # also NaN
        raise ValueError(f"XPNET_SIGTERM_WAIT_S={text!r} in the environment: expected a number of seconds >= 0 "
                         "(inf for no limit), or unset it")
    return seconds


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


def _end_by_sigterm_now() -> None:
    """From any thread: end the process by SIGTERM's default action (``signal.signal`` works in the main
    thread only, so the C library resets the action)."""
    if os.name != "nt":  # on Windows os.kill(pid, SIGTERM) is TerminateProcess, whatever the handler
        libc = ctypes.CDLL(None)
        libc.signal.restype = ctypes.c_void_p
        libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
        libc.signal(signal.SIGTERM, None)  # SIG_DFL
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1.0)
    os._exit(128 + signal.SIGTERM)  # where the default action did not end the process


class SigtermFlag:
    """While active (``with``), SIGTERM sets ``requested`` instead of ending the process, for at most
    ``grace_s()`` seconds (checked on entry): then the process ends by SIGTERM (see the module docstring)."""

    def __init__(self) -> None:
        self.requested = False
        self._installed = False
        self.grace_s = grace_s()
        self._wake: tuple[int, int] | None = None  # the wakeup pipe (read, write) the thread reads
        self._previous_fd = -1
        self._closing = False
        self._thread: threading.Thread | None = None

    def _handler(self, signum: int, frame: Any) -> None:
        self._noticed()

    def _noticed(self) -> None:
        """SIGTERM came (seen by the handler or the thread): note it, and start the grace period once."""
        if self.requested:
            return
        self.requested = True
        if self._thread is None and self.grace_s != float("inf"):  # no wakeup pipe: a timer from here
            threading.Thread(target=self._wait_grace, name="xpnet-sigterm", daemon=True).start()

    def _wait_grace(self) -> None:
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline:
            time.sleep(min(0.05, max(deadline - time.monotonic(), 0.0)))
            if not self._installed:
                return
        sys.stderr.write(f"xpnet: SIGTERM: training did not reach a safe point within {self.grace_s:g} s "
                         "(XPNET_SIGTERM_WAIT_S); ending now without saving\n")
        sys.stderr.flush()
        _end_by_sigterm_now()

    def _watch(self) -> None:
        assert self._wake is not None
        read = self._wake[0]
        while not self._closing:
            select.select([read], [], [])
            try:
                got = os.read(read, 512)
            except BlockingIOError:
                continue
            if self._closing:
                return
            if bytes([signal.SIGTERM]) in got:
                self.requested = True
                if self.grace_s != float("inf"):
                    self._wait_grace()
                return

    def __enter__(self) -> "SigtermFlag":
        if _ours_to_take():
            signal.signal(signal.SIGTERM, self._handler)
            self._installed = True
            self._start_watch()
        return self

    def _start_watch(self) -> None:
        """The thread that reads the wakeup pipe, where no other wakeup fd is set (asyncio's, say). Not on
        Windows, whose wakeup fd must be a socket: there the handler starts the grace period's timer."""
        if os.name == "nt":
            return
        read, write = os.pipe()
        for fd in (read, write):
            os.set_blocking(fd, False)
        previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        if previous != -1:  # someone else's: leave it, and time the grace from the handler
            signal.set_wakeup_fd(previous)
            os.close(read)
            os.close(write)
            return
        self._wake, self._closing = (read, write), False
        self._thread = threading.Thread(target=self._watch, name="xpnet-sigterm", daemon=True)
        self._thread.start()

    def __exit__(self, *exc: Any) -> None:
        if self._installed and signal.getsignal(signal.SIGTERM) == self._handler:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self._installed = False
        if self._wake is not None:
            signal.set_wakeup_fd(-1)
            self._closing = True
            os.write(self._wake[1], b"\0")
            assert self._thread is not None
            self._thread.join()
            for fd in self._wake:
                os.close(fd)
            self._wake, self._thread = None, None

    def terminate(self) -> None:
        """End the process by SIGTERM, as it would have ended when the signal came."""
        _terminate()
