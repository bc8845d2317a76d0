"""Starting xpnet's threads, also at a rank's exit.

Python 3.12.0 to 3.12.2 refuse a new thread once the interpreter shuts down, atexit handlers included
("can't create new thread at interpreter shutdown", CPython gh-104690; allowed again from 3.12.3, gh-113964).
There a rank that leaves before ``xn.distributed.init()`` could neither time its ``MPI_Init`` (``_launch``) nor
watch the job (``_watch``) at its exit, and the others waited for it. On those versions, daemon threads started
with the exit hooks (:func:`reserve`) wait for that, and run what :func:`start` is given once new threads are
refused: threads that already exist still run while the atexit handlers do.
"""

from __future__ import annotations

import queue
import sys
import threading
import traceback
from typing import Any, Callable

_RESERVE = 2  # at exit: the MPI_Init time limit, then the watch of the job
_jobs: queue.SimpleQueue | None = None


def refuses_at_exit() -> bool:
    """Whether this Python refuses new threads in atexit handlers."""
    return (3, 12, 0) <= sys.version_info[:3] < (3, 12, 3)


def reserve() -> None:
    """Start the threads in reserve (once per process), where this Python refuses new threads at exit."""
    global _jobs
    if _jobs is not None or not refuses_at_exit():
        return
    _jobs = queue.SimpleQueue()
    for k in range(_RESERVE):
        threading.Thread(target=_serve, args=(_jobs,), name=f"xpnet-reserve-{k}", daemon=True).start()


def _serve(jobs: queue.SimpleQueue) -> None:
    while True:
        target, done = jobs.get()
        try:
            target()
        except Exception:  # noqa: BLE001 - as a thread of its own would: print it, go on serving
            traceback.print_exc()
        finally:
            done.set()


class _Ran:
    """A target run by a thread in reserve: ``join`` as a thread's."""

    def __init__(self) -> None:
        self.done = threading.Event()

    def join(self, timeout: float | None = None) -> None:
        self.done.wait(timeout)

    def is_alive(self) -> bool:
        return not self.done.is_set()


def start(target: Callable[[], Any], name: str) -> Any:
    """``target`` on a new daemon thread called ``name``, or on a thread in reserve where the interpreter, shutting
    down, refuses new ones. Returns the thread, or what stands for it (``join``, ``is_alive``)."""
    try:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread
    except RuntimeError:
        if _jobs is None:
            raise
    ran = _Ran()
    _jobs.put((target, ran.done))
    return ran
