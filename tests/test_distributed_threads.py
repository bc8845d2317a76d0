"""At a rank's exit xpnet starts two threads (the time limit on ``MPI_Init`` of a rank that leaves before
``xn.distributed.init()``, then the watch of the job); Python 3.12.0-3.12.2 refuse new threads there, and the
others waited for that rank until their own limit. Threads started beforehand run them on those versions."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from xpnet.distributed import _threads


@pytest.fixture
def refused(monkeypatch):
    """This process as a Python that refuses new threads at exit, shutting down: threads in reserve started,
    then every new thread refused as CPython 3.12.0-3.12.2 refuses it there."""
    monkeypatch.setattr(_threads, "_jobs", None)
    monkeypatch.setattr(_threads, "refuses_at_exit", lambda: True)
    _threads.reserve()

    def refuse(self):
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)


def test_a_target_refused_a_thread_at_exit_runs_on_a_thread_in_reserve(refused):
    seen = []
    gate = threading.Event()
    waits = _threads.start(lambda: (gate.wait(5), seen.append(threading.current_thread().name)), "xpnet-init-limit")
    runs = _threads.start(lambda: seen.append(threading.current_thread().name), "xpnet-watch")
    runs.join(5)  # the second runs beside the first, which still waits: two in reserve
    assert not runs.is_alive() and len(seen) == 1 and seen[0].startswith("xpnet-reserve-")
    assert waits.is_alive()
    gate.set()
    waits.join(5)
    assert not waits.is_alive() and len(seen) == 2


def test_without_threads_in_reserve_the_refusal_is_raised(monkeypatch):
    monkeypatch.setattr(_threads, "_jobs", None)
    monkeypatch.setattr(threading.Thread, "start", lambda self: (_ for _ in ()).throw(RuntimeError("refused")))
    with pytest.raises(RuntimeError, match="refused"):
        _threads.start(lambda: None, "xpnet-watch")


def test_threads_are_kept_in_reserve_only_where_python_refuses_them_at_exit():
    code = ("import atexit, threading\n"
            "def at_exit():\n"
            "    try:\n"
            "        threading.Thread(target=lambda: None).start()\n"
            "        print('started')\n"
            "    except RuntimeError:\n"
            "        print('refused')\n"
            "atexit.register(at_exit)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    assert out == ("refused" if _threads.refuses_at_exit() else "started")
