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

A job never waits forever, and its ranks never disagree silently: ``_abort`` ends the job when a
rank fails or leaves alone (also before ``init``, with ``_launch``), ``_watch`` when a rank waits in
a collective for one that left or past the time limit, and ``_guard`` makes ``xn.train`` and
``xn.evaluate`` check once that every rank holds the same data, model, optimizer, loss and arguments
(``_checks``) and raise errors that concern every rank on every rank, printed once.
"""

from __future__ import annotations

import warnings
from typing import Any

from ..backend import XpnetDeviceWarning
from ._abort import install as _install_exit_hooks
from ._abort import install_exit_wrappers as _install_exit_wrappers
from ._abort import watch as _watch
from ._communicator import Communicator, XpnetDistributedWarning
from ._guard import XpnetDistributedError
from ._launch import claim as _claim
from ._launch import launched as _launched
from ._launch import start_mpi as _start_mpi
from ._mpi import MPIUnavailableError
from ._watch import DEFAULT_TIMEOUT_S, timeout_s as _timeout_s

__all__ = ["Communicator", "DEFAULT_TIMEOUT_S", "MPIUnavailableError", "XpnetDistributedError",
           "XpnetDistributedWarning", "init"]


_world: Communicator | None = None

if (_launched() or (0, 1))[1] > 1:
    _claim()
    _install_exit_wrappers()  # a rank that fails or ends before init() still tells the others (_launch)


def init(mpi_comm: Any = None, *, abort_on_error: bool = True, timeout: float | None = None) -> Communicator:
    """The :class:`Communicator` over ``mpi_comm`` (default ``MPI.COMM_WORLD``; collective: call it on
    every rank).

    With ``abort_on_error`` (jobs of more than one rank) no rank leaves the others waiting: an
    uncaught exception prints its traceback prefixed with ``[rank r]`` and calls
    ``MPI.COMM_WORLD.Abort(1)``, and so does a non-zero exit status (``sys.exit`` and ``os._exit`` are
    wrapped to note it); an error raised on every rank together (differing data, a NaN loss) is
    printed once, by rank 0, and the ranks exit with status 1; a rank that ends while another waits
    for it in a collective ends the job, named by the waiting rank. See ``_abort`` for the cases.

    ``timeout``: the seconds a rank may wait in ``MPI_Init`` or in one collective of a Communicator
    (default ``XPNET_COLLECTIVE_TIMEOUT_S``, else :data:`DEFAULT_TIMEOUT_S`; ``math.inf`` for none).
    A longer wait ends the job, naming where every rank was (a rank that hangs, a callback that
    sleeps). ``XpnetDeviceWarning`` (CUDA fallback) is shown by rank 0 of ``MPI.COMM_WORLD`` only.
    Raises :class:`MPIUnavailableError` when mpi4py is missing.
    """
    global _world
    limit_s = _timeout_s(timeout)
    mpi = _start_mpi(limit_s)
    if abort_on_error:
        _install_exit_hooks(mpi, limit_s)
        watch = _watch()
        if watch is not None and timeout is not None:
            watch.limit_s = limit_s
    if mpi.COMM_WORLD.Get_rank() != 0:
        warnings.filterwarnings("ignore", category=XpnetDeviceWarning)
    if mpi_comm is None:
        if _world is None:
            _world = Communicator(mpi.COMM_WORLD, _mpi=mpi)
        return _world
    return Communicator(mpi_comm, _mpi=mpi)
