"""A thread on each rank so that no rank waits forever in a collective.

How it works (jobs of more than one rank, set up by ``xn.distributed.init()``; see ``_abort``):

1. Each collective of a :class:`Communicator` runs inside :meth:`Watch.waiting`: the main thread notes
   what it waits in, with which ranks, and since when (nothing is sent; the step pays two assignments).
2. A rank that leaves (its program ends, ``sys.exit``, ``os._exit``, an error every rank raised) first
   tells every other rank how (:meth:`Watch.announce`), then waits for them at exit.
3. The thread receives those notices and questions every ``_TICK_S``. A rank still waiting in a
   collective ``_LEFT_GRACE_S`` after a rank of that collective announced that it left ends the job,
   naming the rank and how it left.
4. A wait longer than the time limit (``init(timeout=...)``, else ``XPNET_COLLECTIVE_TIMEOUT_S``,
   default :data:`DEFAULT_TIMEOUT_S`) asks the other ranks where they are; their threads answer (in
   which collective, or at which line of the program), and the job ends with the answers: that names
   a rank that hangs or works much longer than the others (a callback that sleeps, a slow save).
5. A collective queued on a GPU stream (NCCL) returns before it runs; the wait for the other ranks
   happens on the GPU, and the host would notice only at its next synchronisation (reading the loss),
   outside any collective. :meth:`Watch.queued` hands the thread a ``done()`` of it (a CUDA event
   query), and the thread watches it as a wait in that collective from the moment it was queued until
   it is done: a member that left, or the time limit, ends the job as in 3 and 4.

Messages travel on a duplicate of ``MPI.COMM_WORLD`` that nothing else uses. Only waits inside
xpnet's collectives are watched: a collective called on the mpi4py communicator directly is not; nor
is any where MPI was started without ``THREAD_MULTIPLE`` (mpi4py's default gives it).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections import deque
from typing import Any, Callable

from ._threads import start as start_thread

DEFAULT_TIMEOUT_S = 300.0
_TICK_S = 0.1
_LEFT_GRACE_S = 1.0  # a collective the leaving rank finished may take this long to finish here too
_ANSWER_S = 2.0  # how long a rank that timed out waits for the others to say where they are
_NOTICE, _QUESTION, _ANSWER = 7301, 7302, 7303
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_DISTRIBUTED = os.path.join(_PACKAGE, "distributed") + os.sep


def timeout_s(value: Any = None) -> float:
    """The time limit on a wait in a collective: ``value`` (seconds, ``math.inf`` for none), else
    ``XPNET_COLLECTIVE_TIMEOUT_S``, else :data:`DEFAULT_TIMEOUT_S`."""
    source = "timeout"
    if value is None:
        value = os.environ.get("XPNET_COLLECTIVE_TIMEOUT_S", "").strip() or DEFAULT_TIMEOUT_S
        source = "XPNET_COLLECTIVE_TIMEOUT_S"
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not seconds > 0:  # also NaN
        raise ValueError(f"xn.distributed.init: {source} must be a number of seconds > 0 (inf for no limit), "
                         f"got {value!r}")
    return seconds


class Watch:
    """This rank's watcher (see the module docstring). Building it is collective (a ``Dup``)."""

    def __init__(self, world: Any, rank: int, size: int, limit_s: float,
                 abort: Callable[[list[str], str, int], None]):
        from mpi4py import MPI  # noqa: PLC0415 - only once init() imported it

        self._mpi = MPI
        self.comm = world.Dup()
        self.rank, self.size, self.limit_s = rank, size, limit_s
        self._abort = abort
        self._busy: tuple[str, frozenset, float] | None = None
        # Collectives queued on a GPU stream, oldest first: (what, members, since, done).
        self._queued: deque[tuple[str, frozenset, float, Callable[[], bool]]] = deque()
        self.left: dict[int, tuple[str, float]] = {}  # rank -> (how it left, when the notice came)
        self._answers: dict[int, tuple[bool, str]] = {}
        self._sent: list[Any] = []
        self._announced = False
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread: Any = None  # the thread (or _threads' stand-in for it)
        if MPI.Query_thread() < MPI.THREAD_MULTIPLE:  # the thread would call MPI beside the main thread
            if rank == 0:
                sys.stderr.write("xpnet: MPI was started without THREAD_MULTIPLE (mpi4py.rc.thread_level): waits in "
                                 "collectives are not watched (no time limit; a rank that leaves is not noticed)\n")
            return
        self._thread = start_thread(self._run, "xpnet-watch")  # at a late rank's exit maybe a reserve's

    def waiting(self, what: str, members: frozenset) -> "_Waiting":
        """Context: the main thread waits in collective ``what`` with world ranks ``members``."""
        return _Waiting(self, what, members)

    def queued(self, done: Callable[[], bool]) -> None:
        """The collective the main thread waits in was queued on a GPU stream and ends on the GPU; the
        thread watches it until ``done()`` (called from the thread: a CUDA event query) says it ran."""
        busy = self._busy
        if self._thread is not None and busy is not None:
            self._queued.append((f"{busy[0]} (queued on the GPU)", busy[1], time.monotonic(), done))

    def announce(self, how: str) -> None:
        """Tell every other rank that this one leaves, and ``how`` (once)."""
        if self._announced:
            return
        self._announced = True
        self._sent += [self.comm.isend(how, dest=r, tag=_NOTICE) for r in range(self.size) if r != self.rank]

    def finish(self) -> None:
        """After every rank met at exit: stop the thread and take in the notices not yet received, so
        that MPI finalizes with nothing pending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for r in range(self.size):
            if r != self.rank and r not in self.left:
                self.left[r] = (self.comm.recv(source=r, tag=_NOTICE), time.monotonic())
        self._mpi.Request.Waitall(self._sent)

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(_TICK_S):
            try:
                self._receive()
                busy = self._busy
                if busy is not None:
                    self._check(busy, lambda: self._busy is busy)
                gpu = self._oldest_queued()
                if gpu is not None:
                    self._check(gpu[:3], lambda: bool(self._queued) and self._queued[0] is gpu and not gpu[3]())
            except Exception as exc:  # noqa: BLE001 - MPI finalized under us: nothing left to watch
                if not self._mpi.Is_finalized():
                    sys.stderr.write(f"[rank {self.rank}] xpnet: the collective watch stopped: {exc!r}\n")
                return

    def _receive(self) -> None:
        status = self._mpi.Status()
        while self.comm.iprobe(source=self._mpi.ANY_SOURCE, tag=self._mpi.ANY_TAG, status=status):
            source, tag = status.Get_source(), status.Get_tag()
            message = self.comm.recv(source=source, tag=tag)
            if tag == _NOTICE:
                self.left[source] = (message, time.monotonic())
            elif tag == _QUESTION:
                self._sent.append(self.comm.isend(self._where(), dest=source, tag=_ANSWER))
            elif tag == _ANSWER:
                self._answers[source] = message

    def _oldest_queued(self) -> tuple[str, frozenset, float, Callable[[], bool]] | None:
        """The oldest collective queued on a GPU that has not run yet (the ones that ran are dropped)."""
        while self._queued:
            entry = self._queued[0]
            try:
                if not entry[3]():
                    return entry
            except Exception as exc:  # noqa: BLE001 - a CUDA error: the other ranks would wait for this one forever
                self._abort([], f"the GPU failed in {entry[0]} ({type(exc).__name__}: {exc})", 1)
            self._queued.popleft()
        return None

    def _check(self, busy: tuple[str, frozenset, float], ongoing: Callable[[], bool]) -> None:
        """End the job where a member of the wait ``busy`` left or the wait passed the time limit;
        ``ongoing()`` tells whether the wait still goes on."""
        what, members, since = busy
        now = time.monotonic()
        gone = sorted(r for r, (_, noticed) in self.left.items()
                      if r in members and now - max(noticed, since) >= _LEFT_GRACE_S)
        if gone:
            how = self.left[gone[0]][0] if len(gone) == 1 else "; ".join(f"rank {r}: {self.left[r][0]}" for r in gone)
            who = f"rank {gone[0]}" if len(gone) == 1 else "ranks " + ", ".join(map(str, gone))
            them = "it" if len(gone) == 1 else "them"
            self._abort([], f"{who} left ({how}) while this rank waits for {them} in {what} "
                            f"({self._main_location(skip_distributed=True)})", 1)
        elif now - since > self.limit_s:
            self._time_out(busy, now - since, ongoing)

    def _time_out(self, busy: tuple[str, frozenset, float], waited: float, ongoing: Callable[[], bool]) -> None:
        what, members, _ = busy
        others = sorted(members - {self.rank})
        self._answers.clear()
        self._sent += [self.comm.isend(None, dest=r, tag=_QUESTION) for r in others]
        deadline = time.monotonic() + _ANSWER_S
        while time.monotonic() < deadline and len(self._answers) < len(others):
            time.sleep(_TICK_S / 2)
            self._receive()
        if not ongoing():
            return  # the wait ended meanwhile
        if any(r < self.rank and self._answers.get(r, (False, ""))[0] for r in others):
            time.sleep(2 * _ANSWER_S)  # a lower rank waits too: it reports, and its abort ends this process
        lines = [f"rank {r} {self._answers[r][1]}" if r in self._answers else
                 f"rank {r} did not answer (stuck outside Python, or not in xn.distributed)" for r in others]
        self._abort(lines, f"this rank waited {waited:.0f} s in {what} ({self._main_location(True)}), longer than "
                           f"the time limit of {self.limit_s:g} s (XPNET_COLLECTIVE_TIMEOUT_S or "
                           "xn.distributed.init(timeout=...)); where the other ranks are is above", 1)

    def _where(self) -> tuple[bool, str]:
        """(waits in a collective, where this rank is), the answer to a question."""
        busy = self._busy or (self._queued[0][:3] if self._queued else None)
        if busy is not None:
            return True, f"waits in {busy[0]} for {time.monotonic() - busy[2]:.0f} s too"
        return False, f"is not in a collective: it runs {self._main_location(skip_distributed=False)}"

    def _main_location(self, skip_distributed: bool) -> str:
        frame = sys._current_frames().get(self._main)
        return _location(frame, skip_distributed) if frame is not None else "in no Python code"


class _Waiting:
    """Context manager for :meth:`Watch.waiting`; a nested wait keeps the outer one."""

    __slots__ = ("watch", "what", "members", "outer")

    def __init__(self, watch: Watch, what: str, members: frozenset):
        self.watch, self.what, self.members = watch, what, members

    def __enter__(self) -> None:
        self.outer = self.watch._busy
        if self.outer is None:
            self.watch._busy = (self.what, self.members, time.monotonic())

    def __exit__(self, *exc: Any) -> None:
        self.watch._busy = self.outer


def _location(frame: Any, skip_distributed: bool) -> str:
    """``"at train.py:40 in on_epoch_end"``; inside xpnet, also the first caller outside it. With
    ``skip_distributed`` the frames of xpnet.distributed itself are left out."""
    while skip_distributed and frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_DISTRIBUTED):
        frame = frame.f_back
    if frame is None:
        return "at an unknown place"
    text = f"at {_short(frame)}"
    outside = frame
    while outside is not None and os.path.abspath(outside.f_code.co_filename).startswith(_PACKAGE):
        outside = outside.f_back
    if outside is not None and outside is not frame:
        text += f", called from {_short(outside)}"
    return text


def _short(frame: Any) -> str:
    path = os.path.abspath(frame.f_code.co_filename)
    if path.startswith(_PACKAGE):
        path = "xpnet" + os.sep + path[len(_PACKAGE):]
    else:
        relative = os.path.relpath(path)
        path = path if relative.startswith("..") else relative
    return f"{path}:{frame.f_lineno} in {frame.f_code.co_name}"
