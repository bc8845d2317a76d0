"""Ending the whole job when one rank fails, instead of leaving the others waiting in a collective.

How a rank leaves, and what :func:`install` makes of it (jobs of more than one rank):

1. An uncaught exception raised on every rank at the same point (marked by
   :func:`raised_on_every_rank`: differing data, a NaN loss, ...): only the marked rank prints the
   traceback; all ranks meet once more on a private communicator and exit with status 1. A rank
   that does not come within ``XPNET_EXIT_WAIT_S`` seconds (it caught the error and went on) gets
   the job aborted.
2. Any other uncaught exception: the traceback is printed prefixed with ``[rank r]`` and
   ``MPI.COMM_WORLD.Abort(1)`` ends every rank. Ranks other than 0 wait ``_GRACE_S`` first, so
   that an error raised everywhere after the ranks met is printed once, by rank 0.
3. ``sys.exit(status)`` with a non-zero status, outside case 1: at exit the job is aborted with that
   status (``sys.exit`` is wrapped to note the status; ``raise SystemExit(n)`` and ``os._exit`` are
   not seen).
4. Any exception, ``SystemExit`` included, that leaves ``xn.train``/``xn.evaluate`` on one rank
   while the others may wait in a collective: :func:`escape` aborts the job (see ``_guard``).

A rank killed by a signal (SIGKILL, the OOM killer) runs none of this; ``mpiexec`` ends the job then.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
import traceback
from typing import Any

_PRINTER = "_xpnet_printer"  # attribute on exceptions raised on every rank: the rank that prints it
_POLL_S = 0.005
_FLUSH_S = 0.2  # mpiexec forwards output asynchronously: let it before Abort kills the process
# Before printing and aborting, a rank other than 0 waits this long: when every rank fails at the same
# point (a callback raising everywhere), rank 0's abort ends the job first and one traceback is printed.
# A failure on one rank alone takes this much longer to end the job.
_GRACE_S = 1.0


class _Job:
    """What the hooks of this process know: the world, and how this rank is leaving."""

    def __init__(self, world: Any):
        self.world = world
        self.rank, self.size = int(world.Get_rank()), int(world.Get_size())
        self.exit_comm = world.Dup()  # the last meeting at exit never matches a collective of the job
        self.exit_status: Any = None
        self.leaving_together = False


_job: _Job | None = None


def install(mpi: Any) -> None:
    """Install the hooks above (once per process; nothing for a job of one rank). Collective."""
    global _job
    if _job is not None or mpi.COMM_WORLD.Get_size() == 1:
        return
    _job = _Job(mpi.COMM_WORLD)
    real_exit = sys.exit

    def exit(status: Any = None) -> None:  # noqa: A001 - stands in for sys.exit
        if _job is not None:
            _job.exit_status = status
        real_exit(status)

    exit.__doc__ = real_exit.__doc__
    sys.exit = exit
    sys.excepthook = _excepthook
    atexit.register(_at_exit)


def raised_on_every_rank(exc: BaseException, printer: int = 0) -> BaseException:
    """Mark ``exc`` as raised by every rank at the same point (no rank waits in a collective), to be
    printed by rank ``printer`` only. Returns ``exc``."""
    setattr(exc, _PRINTER, int(printer))
    return exc


def is_raised_on_every_rank(exc: BaseException) -> bool:
    return getattr(exc, _PRINTER, None) is not None


def leave_together(exc: BaseException) -> bool:
    """For a caller that turns ``exc`` into an exit status itself (the CLI): notes that this rank
    leaves because of ``exc``; returns whether this rank should print it."""
    printer = getattr(exc, _PRINTER, None)
    if _job is None:
        return True
    if printer is None:
        return True
    _job.leaving_together = True
    return printer == _job.rank


def escape(exc: BaseException, where: str) -> None:
    """``exc`` leaves ``where`` on this rank while other ranks may wait in a collective: abort the job
    with its traceback (returns only where no hook is installed: the caller re-raises)."""
    if _job is None:
        return
    _abort(_format(exc), f"{type(exc).__name__} left {where} on this rank while the others may wait in a "
                         "collective", 1)


def _excepthook(exc_type: type, exc: BaseException, tb: Any) -> None:
    assert _job is not None
    printer = getattr(exc, _PRINTER, None)
    if printer is None:
        _abort(_format(exc, tb), "uncaught exception", 1)
    _job.leaving_together = True
    if printer == _job.rank:
        _write(_format(exc, tb))


def _at_exit() -> None:
    job = _job
    if job is None:
        return
    if job.leaving_together:
        wait_s = float(os.environ.get("XPNET_EXIT_WAIT_S", "30"))
        if not _meet(job.exit_comm, wait_s):
            _abort([], f"this rank left on an error raised on every rank, but not every rank left within "
                       f"{wait_s:g} s (XPNET_EXIT_WAIT_S); did one catch it and go on?", 1)
        return
    code = _exit_code(job.exit_status)
    if code != 0:
        _abort([], f"this rank exits with status {code} (sys.exit({job.exit_status!r})) while the others may "
                   "wait in a collective", code)


def _meet(comm: Any, wait_s: float) -> bool:
    """Whether every rank of ``comm`` came to this barrier within ``wait_s`` seconds."""
    request = comm.Ibarrier()
    deadline = time.monotonic() + wait_s
    while not request.Test():
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _exit_code(status: Any) -> int:
    """The process exit status Python derives from ``sys.exit(status)``."""
    if status is None:
        return 0
    if isinstance(status, int):
        return status & 0xFF
    return 1


def _format(exc: BaseException, tb: Any = None) -> list[str]:
    text = "".join(traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__))
    return text.splitlines()


def _write(lines: list[str]) -> None:
    assert _job is not None
    sys.stderr.write("".join(f"[rank {_job.rank}] {line}\n" for line in lines))
    sys.stderr.flush()


def _abort(lines: list[str], why: str, code: int) -> None:
    assert _job is not None
    if _job.rank != 0:
        time.sleep(_GRACE_S)
    _write([*lines, f"xpnet: {why}; aborting all {_job.size} ranks"])
    time.sleep(_FLUSH_S)
    _job.world.Abort(code or 1)
    os._exit(code or 1)  # Abort may return before mpiexec kills this process: print nothing more
