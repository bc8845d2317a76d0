"""Ending the whole job when one rank fails or leaves, instead of leaving the others waiting in a collective.

How a rank leaves, and what :func:`install` makes of it (jobs of more than one rank):

1. An uncaught exception raised on every rank at the same point (marked by
   :func:`raised_on_every_rank`: differing data, a NaN loss, ...): only the marked rank prints the
   traceback; all ranks meet once more on a private communicator and exit with status 1. A rank
   that does not come within ``XPNET_EXIT_WAIT_S`` seconds (it caught the error and went on) gets
   the job aborted.
2. Any other uncaught exception: the traceback is printed prefixed with ``[rank r]`` and
   ``MPI.COMM_WORLD.Abort(1)`` ends every rank. Ranks other than 0 wait ``_GRACE_S`` first, so
   that an error raised everywhere after the ranks met is printed once, by rank 0.
3. A non-zero exit status, outside case 1 (``sys.exit(n)``, ``os._exit(n)``, the status the xpnet
   command returns): the job is aborted with that status. ``sys.exit`` and ``os._exit`` are wrapped
   to note the status and the line that called them; ``raise SystemExit(n)`` is not seen (it counts
   as the program's end).
4. Status 0 (the program ended, ``sys.exit(0)``, ``os._exit(0)``): the rank tells the others that it
   leaves and how (``_watch``), then waits for them at exit, as long as it takes: a rank that waits
   for it in a collective ends the job, naming it; the others come when they are done.
5. Any exception, ``SystemExit`` included, that leaves ``xn.train``/``xn.evaluate`` on one rank
   while the others may wait in a collective: :func:`escape` aborts the job (see ``_guard``).
6. A rank that fails or ends before ``xn.distributed.init()``, under a launcher ``_launch``
   recognises: at exit it starts MPI itself (the others wait for it in ``MPI_Init``) and leaves as
   in 2-4, so that the job ends with its cause named.

A rank killed by a signal (SIGKILL, the OOM killer) runs none of this; ``mpiexec`` ends the job then.
A rank that hangs is found by the time limit on collectives (``_watch``).
"""

from __future__ import annotations

import atexit
import math
import os
import sys
import threading
import time
import traceback
from typing import Any

from ._threads import reserve as reserve_threads
from ._watch import Watch, timeout_s

_PRINTER = "_xpnet_printer"  # attribute on exceptions raised on every rank: the rank that prints it
_POLL_S = 0.005
_FLUSH_S = 0.2  # mpiexec forwards output asynchronously: let it before Abort kills the process
# Before printing and aborting, a rank other than 0 waits this long: when every rank fails at the same
# point (a callback raising everywhere), rank 0's abort ends the job first and one traceback is printed.
# A failure on one rank alone takes this much longer to end the job.
_GRACE_S = 1.0
_BEFORE_INIT = " before calling xn.distributed.init()"


class _Job:
    """What the hooks of this process know: the world, its watch, and how this rank is leaving."""

    def __init__(self, world: Any, limit_s: float, late: bool = False):
        self.world = world
        self.rank, self.size = int(world.Get_rank()), int(world.Get_size())
        self.exit_comm = world.Dup()  # the last meeting at exit never matches a collective of the job
        self.watch = Watch(world, self.rank, self.size, limit_s, _abort)
        self.leaving_together = False
        self.late = late  # joined MPI only at exit, never having called init()


class _Exit:
    """How this process leaves, as far as the wrappers saw it."""

    status: Any = None
    how: str | None = None  # "sys.exit(0) at train.py:12"
    uncaught: BaseException | None = None  # an uncaught exception before init()


_job: _Job | None = None
_exit = _Exit()
_pid = os.getpid()
_real: dict[str, Any] = {}  # sys.exit, os._exit and sys.excepthook as they were before the wrappers
_left = False
_aborting = False


def install(mpi: Any, limit_s: float, late: bool = False) -> None:
    """Install the hooks above (once per process; nothing for a job of one rank). Collective."""
    global _job
    if _job is not None or mpi.COMM_WORLD.Get_size() == 1:
        return
    _job = _Job(mpi.COMM_WORLD, limit_s, late)
    install_exit_wrappers()


def install_exit_wrappers() -> None:
    """Wrap ``sys.exit`` and ``os._exit`` to note how the process leaves, and hook uncaught exceptions
    and the exit (once per process; imports nothing)."""
    if _real:
        return
    reserve_threads()  # on Pythons that refuse new threads at exit, where a late rank needs two (_threads)
    _real.update(exit=sys.exit, os_exit=os._exit, excepthook=sys.excepthook)

    def exit(status: Any = None) -> None:  # noqa: A001 - stands in for sys.exit
        if threading.current_thread() is threading.main_thread():  # elsewhere it ends the thread only
            note_exit(status, f"sys.exit({status!r}) at {_caller(sys._getframe(1))}")
        _real["exit"](status)

    def os_exit(status: int) -> None:
        if os.getpid() == _pid and not _aborting:  # not in a forked child, not xpnet's own abort
            note_exit(status, f"os._exit({status!r}) at {_caller(sys._getframe(1))}")
            _leave()
        _real["os_exit"](status)

    exit.__doc__, os_exit.__doc__ = sys.exit.__doc__, os._exit.__doc__
    sys.exit, os._exit = exit, os_exit
    sys.excepthook = _excepthook
    atexit.register(_at_exit)


def note_exit(status: Any, how: str) -> None:
    """Note that this process is about to exit with ``status``, and how (for a caller that returns its
    status to a ``sys.exit`` looked up before the wrapper was installed: the xpnet command)."""
    _exit.status, _exit.how = status, how


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


def real_os_exit(status: int) -> None:
    """``os._exit`` as it was before the wrapper: ends the process at once, telling no one."""
    _real.get("os_exit", os._exit)(status)


def watch() -> Watch | None:
    """This process's watch over collectives (None without the hooks)."""
    return None if _job is None else _job.watch


def _caller(frame: Any) -> str:
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


def _excepthook(exc_type: type, exc: BaseException, tb: Any) -> None:
    if _job is None or os.getpid() != _pid:
        _exit.uncaught = exc  # before init(): the exit joins MPI to tell the others (case 6)
        _real["excepthook"](exc_type, exc, tb)
        return
    printer = getattr(exc, _PRINTER, None)
    if printer is None:
        _abort(_format(exc, tb), "uncaught exception", 1)
    _job.leaving_together = True
    if printer == _job.rank:
        _write(_format(exc, tb))


def _at_exit() -> None:
    if os.getpid() == _pid:
        _leave()


def _leave() -> None:
    """This rank leaves (at exit, or in ``os._exit``): cases 1, 3, 4 and 6 of the module docstring."""
    global _left
    if _left:
        return
    _left = True
    job = _job if _job is not None else _join_late()
    if job is None:
        return
    before = _BEFORE_INIT if job.late else ""
    if _exit.uncaught is not None:
        exc = _exit.uncaught
        _abort([], f"this rank failed{before} ({type(exc).__name__}: {exc})", 1)
    if job.leaving_together:
        job.watch.announce("on an error raised on every rank")
        wait_s = float(os.environ.get("XPNET_EXIT_WAIT_S", "30"))
        if not _meet(job.exit_comm, wait_s):
            _abort([], f"this rank left on an error raised on every rank, but not every rank left within "
                       f"{wait_s:g} s (XPNET_EXIT_WAIT_S); did one catch it and go on?", 1)
        job.watch.finish()
        return
    code = _exit_code(_exit.status)
    how = _exit.how or "its program ended"
    if code != 0:
        _abort([], f"this rank exits with status {code} ({how}){before} while the others may wait in a "
                   "collective", code)
    job.watch.announce(how + before)
    _meet(job.exit_comm, math.inf)  # a rank waiting for this one in a collective ends the job (_watch)
    job.watch.finish()


def _join_late() -> _Job | None:
    """Case 6: start MPI to leave as a rank of the job; None where this process is no rank of a job
    of several that xpnet could join (see ``_launch.join_at_exit``)."""
    from ._launch import join_at_exit  # noqa: PLC0415 - _launch imports this module

    try:
        limit_s = timeout_s()
    except ValueError:
        limit_s = math.inf
    mpi = join_at_exit(limit_s, 1 if _exit.uncaught is not None else _exit_code(_exit.status))
    if mpi is None:
        return None
    install(mpi, limit_s, late=True)
    return _job


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
    global _aborting
    assert _job is not None
    _aborting = True
    if _job.rank != 0:
        time.sleep(_GRACE_S)
    _write([*lines, f"xpnet: {why}; aborting all {_job.size} ranks"])
    time.sleep(_FLUSH_S)
    _job.world.Abort(code or 1)
    real_os_exit(code or 1)  # Abort may return before mpiexec kills this process
