"""The :class:`Communicator`: collectives on plain numbers, arrays and models over MPI (NCCL for CuPy)."""

from __future__ import annotations

import operator
import warnings
import weakref
from typing import Any

import array_api_compat
import numpy as np

from .. import backend
from .._user import warn
from ..backend import Device, namespace, to_device, to_numpy
from ._buffers import (
    _empty_like_group,
    _first_difference,
    _group_by_dtype,
    _is_number,
    _layers,
    _pack,
    _python_number,
    _signature,
    _unpack,
    _zeros_like_group,
)
from ._abort import raised_on_every_rank
from ._mpi import import_mpi


class XpnetDistributedWarning(UserWarning):
    """A collective fell back to a slower path (CuPy arrays staged through host memory)."""


class Communicator:
    """A group of processes training one model together.

    ``rank``/``size``: this process and the group's size; ``local_rank``/``local_size``: the same
    within this node (processes sharing memory); ``is_root``: ``rank == 0``; ``mpi_comm``: the
    mpi4py communicator. Every method is collective: all ranks call it, in the same order.
    """

    def __init__(self, mpi_comm: Any, *, _mpi: Any = None):
        self._mpi = _mpi if _mpi is not None else import_mpi()
        self.mpi_comm = mpi_comm
        self.rank = int(mpi_comm.Get_rank())
        self.size = int(mpi_comm.Get_size())
        self.local_comm = mpi_comm.Split_type(self._mpi.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = int(self.local_comm.Get_rank())
        self.local_size = int(self.local_comm.Get_size())
        self._verified: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # models checked once
        self._cupy_link: Any = None  # an NcclLink, or "host" once NCCL was found unusable
        self._entry: Any = None  # inside xn.train/evaluate: the inputs to compare at the first collective

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def cupy_transport(self) -> str | None:
        """How CuPy arrays travel: ``"nccl"``, ``"host"`` (staged through host memory over MPI), or
        None before the first collective on a CuPy array."""
        if self._cupy_link is None or self._cupy_link == "host":
            return self._cupy_link
        return "nccl"

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"

    # -- devices ----------------------------------------------------------------------------

    def device(self, spec: Any = "auto", *, fallback: bool = True) -> Device:
        """This rank's device for ``spec``: ``"cuda"`` and ``"auto"`` (with a GPU) give GPU
        ``local_rank % device_count``, made the current CUDA device of this process; anything else
        as :func:`xpnet.device` (``XPNET_DEVICE=cpu`` still wins, ``fallback`` as there; its warning is
        shown by rank 0 only)."""
        if spec is None or isinstance(spec, str) and spec.strip().lower() in ("cuda", "auto"):
            n = backend.cuda_device_count()
            if n > 0:
                spec = f"cuda:{self.local_rank % n}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dev = backend.device(spec, fallback=fallback)
        for w in caught:  # the fallback warning names the caller's line (rank 0 only: see init)
            warn(w.message, w.category)
        if dev.is_cupy:
            dev.native.use()
        return dev

    # -- plain objects and numbers ----------------------------------------------------------

    def barrier(self) -> None:
        self._sync()
        self.mpi_comm.Barrier()

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        """``obj`` from rank ``root`` on every rank (pickled)."""
        root = self._root(root)
        self._sync()
        return self.mpi_comm.bcast(obj, root=root)

    def allgather_object(self, obj: Any) -> list:
        """Every rank's ``obj`` (pickled), as a list indexed by rank, on every rank."""
        self._sync()
        return self.mpi_comm.allgather(obj)

    def allreduce_sum(self, value: Any) -> Any:
        """Sum over ranks. A Python number gives a Python number; an array gives a new array of the
        same shape, dtype, namespace and device (the input is not modified)."""
        self._sync()
        if _is_number(value):
            return self.mpi_comm.allreduce(_python_number(value), op=self._mpi.SUM)
        if not array_api_compat.is_array_api_obj(value):
            raise TypeError(f"allreduce_sum: expected a Python number or an array, got {type(value).__name__}")
        return self._allreduce_flat(value, owned=False)

    def allreduce_mean(self, value: Any) -> Any:
        """Mean over ranks of a Python number (-> float) or a floating array (-> array, as
        :meth:`allreduce_sum`)."""
        if _is_number(value):
            return float(self.allreduce_sum(float(value))) / self.size
        if array_api_compat.is_array_api_obj(value) and not namespace(value).isdtype(value.dtype, "real floating"):
            raise TypeError(f"allreduce_mean: expected a floating array, got dtype {value.dtype}; "
                            "use allreduce_sum for integer counts")
        return self.allreduce_sum(value) / self.size

    # -- models -----------------------------------------------------------------------------

    def broadcast_params(self, model: Any, root: int = 0) -> None:
        """Copy parameters and buffers of rank ``root``'s model into every rank's model.

        First checks, with one small ``allgather``, that all ranks hold the same parameter names,
        shapes, dtypes and array library; a mismatch raises ValueError on every rank.
        """
        root = self._root(root)
        self._sync()
        self._check_same_model(model, "broadcast_params", root)
        entries = [(store, key, store[key]) for layer in _layers(model).values()
                   for store in (layer.params, layer.buffers) for key in store]
        for group in _group_by_dtype(entries):
            flat = _pack([store[key] for store, key, _ in group]) if self.rank == root else \
                _empty_like_group(group)
            flat = self._bcast_flat(flat, root)
            if self.rank != root:
                for (store, key, like), part in zip(group, _unpack(flat, group)):
                    store[key] = part

    def allreduce_grads(self, model: Any, count: int) -> None:
        """Replace each gradient by the sample-weighted mean over ranks, sum_r(count_r * g_r) / sum_r(count_r).

        ``count`` is the number of samples behind this rank's gradients; with ``count=0`` the rank
        contributes zeros (its gradients may be missing or stale). All gradients of one dtype travel
        as one flat buffer. Raises ValueError (on every rank) when all counts are 0.
        """
        if isinstance(count, bool) or not hasattr(count, "__index__") or operator.index(count) < 0:
            raise ValueError(f"allreduce_grads: count must be an int >= 0 (samples behind this rank's "
                             f"gradients), got {count!r}")
        count = operator.index(count)
        self._sync()
        if model not in self._verified:
            self._check_same_model(model, "allreduce_grads", 0)
        counts = np.array([count], dtype=np.int64)
        self.mpi_comm.Allreduce(self._mpi.IN_PLACE, counts, op=self._mpi.SUM)
        total = int(counts[0])
        if total == 0:
            raise raised_on_every_rank(ValueError(
                "allreduce_grads: every rank passed count=0; there is no gradient to average"))
        scale = count / total
        entries = []
        for layer in _layers(model).values():
            for key, p in layer.params.items():
                g = layer.grads.get(key)
                if count > 0 and g is None:
                    raise RuntimeError(f"allreduce_grads: no gradient for parameter {key!r} of "
                                       f"{type(layer).__name__}; call model.backward(...) first")
                entries.append((layer.grads, key, p if count == 0 else g))
        for group in _group_by_dtype(entries):
            if count == 0:
                flat = _zeros_like_group(group)
            else:
                flat = _pack([g for _, _, g in group])
                if scale != 1.0:
                    flat *= scale
            flat = self._allreduce_flat(flat, owned=True)
            for (grads, key, _), part in zip(group, _unpack(flat, group)):
                grads[key] = part

    # -- internals --------------------------------------------------------------------------

    def _root(self, root: int) -> int:
        if isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < self.size:
            raise ValueError(f"root must be a rank in [0, {self.size}), got {root!r}")
        return root

    def _sync(self) -> None:
        """Inside xn.train/evaluate, the first collective first compares the ranks' inputs (see _guard)."""
        if self._entry is not None and self._entry.pending:
            self._entry.settle(self)

    def _check_same_model(self, model: Any, caller: str, root: int) -> None:
        mine = _signature(model)
        everyone = self.mpi_comm.allgather(mine)
        reference = everyone[root]
        problems = [f"rank {r}: {_first_difference(reference, sig)}" for r, sig in enumerate(everyone)
                    if sig != reference]
        if problems:
            raise raised_on_every_rank(ValueError(
                f"{caller}: the ranks hold different models (compared with rank {root}); build the same "
                "architecture and dtype on every rank. " + "; ".join(problems)))
        self._verified[model] = mine

    def _allreduce_flat(self, flat: Any, *, owned: bool) -> Any:
        """Sum of ``flat`` over ranks, on ``flat``'s device; in place when ``owned`` allows."""
        if isinstance(flat, np.ndarray):
            out = flat if owned else np.array(flat, order="C", copy=True)
            self.mpi_comm.Allreduce(self._mpi.IN_PLACE, out, op=self._mpi.SUM)
            return out
        link = self._nccl(flat) if array_api_compat.is_cupy_array(flat) else None
        if link is not None:
            out = flat if owned else namespace(flat).reshape(_pack([flat]), tuple(flat.shape))
            link.allreduce_(out)
            return out
        host = self._host_copy(flat)
        self.mpi_comm.Allreduce(self._mpi.IN_PLACE, host, op=self._mpi.SUM)
        return to_device(host, backend.device_of(flat))

    def _bcast_flat(self, flat: Any, root: int) -> Any:
        """``flat`` of rank ``root`` on every rank (the other ranks pass a buffer of the same shape)."""
        if isinstance(flat, np.ndarray):
            self.mpi_comm.Bcast(flat, root=root)
            return flat
        link = self._nccl(flat) if array_api_compat.is_cupy_array(flat) else None
        if link is not None:
            link.bcast_(flat, root)
            return flat
        host = self._host_copy(flat)
        self.mpi_comm.Bcast(host, root=root)
        return to_device(host, backend.device_of(flat))

    @staticmethod
    def _host_copy(a: Any) -> np.ndarray:
        """A writable C-ordered host copy (``to_numpy`` may share memory with a CPU-backed namespace)."""
        return np.array(to_numpy(a), order="C", copy=not array_api_compat.is_cupy_array(a))

    def _nccl(self, like: Any) -> Any:
        """The NCCL link for CuPy arrays, set up (collectively) on first use; None to stage through the host."""
        if self._cupy_link is None:
            from ._nccl import NcclLink, nccl_problem  # noqa: PLC0415 - CuPy only

            problem = nccl_problem(self, like)
            if problem is None:
                self._cupy_link = NcclLink(self, like)
            else:
                self._cupy_link = "host"
                if self.is_root:
                    warn(f"xpnet.distributed: NCCL cannot serve this job ({problem}); CuPy arrays "
                         "are reduced through host memory over MPI instead (slower).", XpnetDistributedWarning)
        return None if self._cupy_link == "host" else self._cupy_link
