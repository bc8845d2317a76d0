"""NCCL for CuPy arrays: one ``NcclCommunicator`` per rank, its unique id sent over MPI.

Collectives run on the current CUDA stream of the array's device, in place, so a training step
sends nothing to the host. Each returns the ``done()`` of a CUDA event recorded after it, for the
collective watch (``_watch``): the wait for the other ranks happens on the GPU, after the call returned.
Only imported once a CuPy array reaches a collective.
"""

from __future__ import annotations

from typing import Any, Callable

from .. import backend
from ..backend.libraries import cupy


def _cupy() -> Any:
    if not backend.cuda_available():
        raise RuntimeError(f"CuPy arrays reached a collective but CUDA is not usable: "
                           f"{backend.cuda_unavailable_reason()}")
    return cupy()


def _nccl_module() -> Any:
    from cupy.cuda import nccl  # noqa: PLC0415 - only with cupy present

    if not getattr(nccl, "available", False):
        raise ImportError("this CuPy build has no NCCL (install the nvidia-nccl-cu12/cu13 wheel)")
    return nccl


def _device_id(like: Any) -> int:
    return int(like.device.id)


def nccl_problem(comm: Any, like: Any) -> str | None:
    """Why NCCL cannot serve ``comm`` for arrays on ``like``'s GPU, or None; the same answer on every
    rank (collective: two small allgathers)."""
    problem = None
    try:
        _nccl_module()
    except Exception as exc:  # ImportError, or a broken NCCL library raising anything
        problem = f"rank {comm.rank}: NCCL is not importable ({type(exc).__name__}: {exc})"
    bus_id = _cupy().cuda.runtime.deviceGetPCIBusId(_device_id(like))
    owner: dict[str, int] = {}
    for rank, bus in comm.local_comm.allgather((comm.rank, bus_id)):
        if bus in owner and problem is None:
            problem = (f"ranks {owner[bus]} and {rank} share the GPU at PCI bus {bus}; NCCL needs one GPU "
                       "per rank (launch at most as many ranks per node as GPUs)")
        owner.setdefault(bus, rank)
    problems = [p for p in comm.mpi_comm.allgather(problem) if p is not None]
    return problems[0] if problems else None


class NcclLink:
    """In-place sum and broadcast of 1-D CuPy arrays over all ranks of ``comm`` (collective to build)."""

    def __init__(self, comm: Any, like: Any):
        nccl = _nccl_module()
        self._nccl = nccl
        self.device_id = _device_id(like)
        unique_id = comm.bcast_object(nccl.get_unique_id() if comm.is_root else None, root=0)
        with _cupy().cuda.Device(self.device_id):
            self._comm = nccl.NcclCommunicator(comm.size, unique_id, comm.rank)
        self._types = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
                       "float64": nccl.NCCL_FLOAT64, "int32": nccl.NCCL_INT32, "int64": nccl.NCCL_INT64}

    def _args(self, flat: Any) -> tuple[int, int]:
        if _device_id(flat) != self.device_id:
            raise ValueError(f"NCCL was set up for cuda:{self.device_id} but an array on cuda:{_device_id(flat)} "
                             "reached a collective; keep one GPU per rank (comm.device('cuda'))")
        dtype = self._types.get(str(flat.dtype))
        if dtype is None:
            raise TypeError(f"NCCL collectives take {sorted(self._types)} arrays, got {flat.dtype}")
        return int(flat.size), dtype

    def allreduce_(self, flat: Any) -> Callable[[], bool]:
        """Sum ``flat`` over the ranks, in place; returns whether that has run on the GPU (see the module)."""
        size, dtype = self._args(flat)
        with flat.device:
            stream = _cupy().cuda.get_current_stream()
            self._comm.allReduce(flat.data.ptr, flat.data.ptr, size, dtype, self._nccl.NCCL_SUM, stream.ptr)
            return _ran(stream)

    def bcast_(self, flat: Any, root: int) -> Callable[[], bool]:
        """``flat`` of rank ``root`` on every rank, in place; returns whether that has run on the GPU."""
        size, dtype = self._args(flat)
        with flat.device:
            stream = _cupy().cuda.get_current_stream()
            self._comm.bcast(flat.data.ptr, size, dtype, root, stream.ptr)
            return _ran(stream)


def _ran(stream: Any) -> Callable[[], bool]:
    """``done()`` of what ``stream`` holds now: a CUDA event recorded on it, queried without waiting, with
    the stream's GPU current (the watch thread's own current GPU is 0, where a query would set up a
    context on a rank that uses another)."""
    cp = _cupy()
    event, device = cp.cuda.Event(disable_timing=True), cp.cuda.Device()
    event.record(stream)

    def done() -> bool:
        with device:
            return bool(event.done)

    return done
