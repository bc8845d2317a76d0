"""Knowing, before MPI starts, that this process is one rank of a job; starting MPI with a time limit.

``MPI_Init`` waits until every rank of the job called it. Two things follow:

1. A rank that fails or ends before ``xn.distributed.init()`` would leave the others waiting there
   forever. So ``import xpnet`` under a launcher that says the job has several ranks (MPICH, Intel MPI,
   Slurm: ``PMI_SIZE``; Open MPI: ``OMPI_COMM_WORLD_SIZE``; MVAPICH: ``MV2_COMM_WORLD_SIZE``) installs
   the exit hooks of ``_abort`` (importing nothing), and such a rank starts MPI at exit
   (:func:`join_at_exit`) to tell the others why it leaves. Ranks that never use xpnet.distributed
   meet there at their ends, and end as they would have. A process that a rank starts inherits the
   launcher's variables but is no rank: ``XPNET_RANK_PID`` (:func:`claim`) tells it apart.
2. A rank that never comes (killed before it started MPI, or a program that does not import xpnet)
   is found by the time limit: :func:`start_mpi` gives up after it, printing why.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from ._mpi import import_mpi
from ._threads import start as start_thread

_SIZE_VARIABLES = (("PMI_SIZE", "PMI_RANK"), ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
                   ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"))
_CLAIM = "XPNET_RANK_PID"


def claim() -> None:
    """Mark this process as the rank the launcher started: a process it starts in turn (a subprocess, a
    multiprocessing worker) inherits the launcher's variables, but is no rank and must not join MPI."""
    os.environ[_CLAIM] = str(os.getpid())


def launched() -> tuple[int, int] | None:
    """``(rank, size)`` of this process as the launcher's environment gives them, or None (also in a
    process that a rank started, which inherits the rank's environment: see :func:`claim`)."""
    if os.environ.get(_CLAIM, str(os.getpid())) != str(os.getpid()):
        return None
    for size_name, rank_name in _SIZE_VARIABLES:
        try:
            return int(os.environ[rank_name]), int(os.environ[size_name])
        except (KeyError, ValueError):
            continue
    return None


def start_mpi(limit_s: float, give_up_status: int = 1, why: str = "") -> Any:
    """``import_mpi()`` (which runs ``MPI_Init``); where it has not returned after ``limit_s`` seconds,
    a rank of the job never came: print why and end this process with ``give_up_status``."""
    from ._abort import real_os_exit  # noqa: PLC0415 - _abort imports this module lazily

    done = threading.Event()
    rank = (launched() or ("?", 0))[0]

    def give_up() -> None:
        if done.wait(limit_s):
            return
        sys.stderr.write(
            f"[rank {rank}] xpnet: MPI_Init has waited {limit_s:g} s for the other ranks of this job{why}: one "
            "never started MPI (it failed or ended before xn.distributed.init() without saying so here, was "
            "killed, or is still busy before it). XPNET_COLLECTIVE_TIMEOUT_S sets this limit; ending this rank\n")
        sys.stderr.flush()
        real_os_exit(give_up_status)  # nothing else ends a process stuck in MPI_Init

    if limit_s != float("inf"):
        start_thread(give_up, "xpnet-init-limit")
    try:
        return import_mpi()
    finally:
        done.set()


def join_at_exit(limit_s: float, status: int) -> Any:
    """MPI, started at the exit (with ``status``) of a rank that never called ``xn.distributed.init()``;
    None where this process is not one of several ranks, mpi4py is missing, or MPI was started by
    someone else."""
    where = launched()
    if where is None or where[1] <= 1:
        return None
    started = sys.modules.get("mpi4py.MPI")
    if started is not None and started.Is_initialized():
        return None  # the program uses MPI itself, without xpnet.distributed: not ours to join
    try:
        mpi = start_mpi(limit_s, status, " (this rank ends before calling xn.distributed.init() and came to "
                                         "tell them)")
    except ImportError:
        return None
    return None if mpi.Is_finalized() else mpi
