"""Data-parallel training over MPI (mpi4py), with NCCL for CuPy arrays.

Launch one process per GPU (or per CPU share) with ``mpiexec -n 4 python train.py``; in the script::

    comm = xn.distributed.init()            # MPI.COMM_WORLD
    dev = comm.device("cuda")               # GPU local_rank % device_count on each node
    xn.train(model, data, ..., device=dev, comm=comm)

Every rank holds a full copy of the model. ``broadcast_params`` makes the copies equal once;
after each backward, ``allreduce_grads`` replaces every gradient by the sample-weighted mean over
the ranks, so the same optimizer step keeps the copies equal.

How arrays travel: NumPy arrays through MPI buffers; CuPy arrays through NCCL on the current
stream (nothing goes to the host per step), or, where NCCL cannot serve (not installed, or ranks
sharing a GPU), through host copies over MPI with one warning; any other array-API namespace
(array_api_strict in the tests) through host copies. mpi4py is optional (``pip install 'xpnet[mpi]'``)
and imported by :func:`init`, never by ``import xpnet``.

A job never waits forever for a rank that left: ``_abort`` ends the job when a rank fails alone
(uncaught exception, ``sys.exit`` with an error status), ``_guard`` makes ``xn.train`` and
``xn.evaluate`` check once that every rank holds the same inputs (``_checks``) and raise errors
that concern every rank on every rank, printed once.
"""

from __future__ import annotations

import warnings
from typing import Any

from ..backend import XpnetDeviceWarning
from ._abort import install as _install_exit_hooks
from ._communicator import Communicator, XpnetDistributedWarning
from ._guard import XpnetDistributedError
from ._mpi import MPIUnavailableError, import_mpi

__all__ = ["Communicator", "MPIUnavailableError", "XpnetDistributedError", "XpnetDistributedWarning", "init"]


_world: Communicator | None = None


def init(mpi_comm: Any = None, *, abort_on_error: bool = True) -> Communicator:
    """The :class:`Communicator` over ``mpi_comm`` (default ``MPI.COMM_WORLD``; collective: call it on
    every rank).

    With ``abort_on_error`` (jobs of more than one rank) no rank leaves the others waiting: an
    uncaught exception prints its traceback prefixed with ``[rank r]`` and calls
    ``MPI.COMM_WORLD.Abort(1)``, and so does a ``sys.exit`` with a non-zero status (``sys.exit`` is
    wrapped to note it); an error raised on every rank together (differing data, a NaN loss) is
    printed once, by rank 0, and the ranks exit with status 1. See ``_abort`` for the cases.
    ``XpnetDeviceWarning`` (CUDA fallback) is shown by rank 0 of ``MPI.COMM_WORLD`` only.
    Raises :class:`MPIUnavailableError` when mpi4py is missing.
    """
    global _world
    mpi = import_mpi()
    if abort_on_error:
        _install_exit_hooks(mpi)
    if mpi.COMM_WORLD.Get_rank() != 0:
        warnings.filterwarnings("ignore", category=XpnetDeviceWarning)
    if mpi_comm is None:
        if _world is None:
            _world = Communicator(mpi.COMM_WORLD, _mpi=mpi)
        return _world
    return Communicator(mpi_comm, _mpi=mpi)
