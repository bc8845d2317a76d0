"""The :class:`Communicator`: collectives on plain numbers, arrays and models over MPI (NCCL for CuPy).

Every collective takes the same path on every rank whatever that rank holds: what could differ
(a rank that saw no data holds a 0-d array where the others hold NumPy scalars; a model of another
shape) is first compared in one small ``allgather``, and a difference raises on every rank. Each wait
in a collective is watched (``_watch``): a rank that left or a wait past the time limit ends the job.
"""

from __future__ import annotations

import contextlib
import math
import operator
import warnings
import weakref
import zlib
from typing import Any

import array_api_compat
import numpy as np

from .. import backend
from .._user import warn
from ..backend import Device, host_copy, namespace, to_device
from ._abort import raised_on_every_rank, watch
from ._buffers import (
    _empty_like_group,
    _first_difference,
    _frozen,
    _grad_of,
    _group_by_dtype,
    _is_number,
    _kind_text,
    _layers,
    _pack,
    _reduction_entry,
    _signature,
    _unpack,
    _zeros_like_group,
)
from ._checks import by_rank
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
        self._watch = watch()
        self._world_ranks = frozenset(int(r) for r in self._mpi.Group.Translate_ranks(
            mpi_comm.Get_group(), list(range(self.size)), self._mpi.COMM_WORLD.Get_group()))
        self._entry: Any = None  # inside xn.train/evaluate: the inputs to compare at the first collective
        with self._waiting("xn.distributed.init"):
            self.local_comm = mpi_comm.Split_type(self._mpi.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = int(self.local_comm.Get_rank())
        self.local_size = int(self.local_comm.Get_size())
        self._verified: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # models checked once
        self._cupy_link: Any = None  # an NcclLink, or "host" once NCCL was found unusable

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
        with self._waiting("comm.barrier"):
            self._sync()
            self.mpi_comm.Barrier()

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        """``obj`` from rank ``root`` on every rank (pickled)."""
        root = self._root(root)
        with self._waiting("comm.bcast_object"):
            self._sync()
            return self.mpi_comm.bcast(obj, root=root)

    def allgather_object(self, obj: Any) -> list:
        """Every rank's ``obj`` (pickled), as a list indexed by rank, on every rank."""
        with self._waiting("comm.allgather_object"):
            self._sync()
            return self.mpi_comm.allgather(obj)

    def allreduce_sum(self, value: Any) -> Any:
        """Sum over ranks. A Python or NumPy number gives a Python number; an array gives a new array
        of the same shape, dtype, namespace and device (the input is not modified).

        Numbers and 0-d arrays are gathered and added in rank order on every rank (integers exactly,
        reals with ``math.fsum``), so a rank holding a 0-d array and one holding a NumPy scalar (the
        same sum, on a rank that saw no data) agree. Ranks passing different kinds (an integer here,
        a real there; arrays of other shapes or dtypes) get a ValueError on every rank naming them.
        """
        with self._waiting("comm.allreduce_sum"):
            return self._reduce(value, "allreduce_sum")

    def allreduce_mean(self, value: Any) -> Any:
        """Mean over ranks of a Python number (-> float) or a floating array (-> array, as
        :meth:`allreduce_sum`)."""
        with self._waiting("comm.allreduce_mean"):
            total = self._reduce(value, "allreduce_mean")
        return float(total) / self.size if _is_number(value) else total / self.size

    def _reduce(self, value: Any, caller: str) -> Any:
        self._sync()
        everyone = self.mpi_comm.allgather(_reduction_entry(value, caller))
        bad = [(r, e[1]) for r, e in enumerate(everyone) if e[0] == "bad"]
        if bad:
            same = len(bad) == self.size and all(b[1] == bad[0][1] for b in bad)
            raise raised_on_every_rank(TypeError(f"{caller}: " + (bad[0][1] if same else "; ".join(
                f"rank {r}: {text}" for r, text in bad))))
        kinds = [e[:2] if e[0] == "scalar" else e for e in everyone]
        if any(k != kinds[0] for k in kinds):
            passed = by_rank([_kind_text(k) for k in kinds])
            raise raised_on_every_rank(ValueError(f"{caller}: the ranks passed different kinds of value: {passed}. "
                                                  "Every rank must pass the same kind, shape and dtype"))
        if everyone[0][0] == "array":
            return self._allreduce_flat(value, owned=False)
        values = [e[2] for e in everyone]
        total = sum(values) if everyone[0][1] == "integer" else math.fsum(values)
        if _is_number(value):
            return total
        return namespace(value).asarray(total, dtype=value.dtype, device=array_api_compat.device(value))

    # -- models -----------------------------------------------------------------------------

    def broadcast_params(self, model: Any, root: int = 0) -> None:
        """Copy parameters and buffers of rank ``root``'s model into every rank's model.

        First checks, with one small ``allgather``, that all ranks hold the same parameter names,
        shapes, dtypes and array library; a mismatch raises ValueError on every rank.
        """
        root = self._root(root)
        with self._waiting("comm.broadcast_params"):
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

    def allreduce_grads(self, model: Any, count: int, empty_ok: bool = False, *, stop: bool = False) -> bool:
        """Replace each gradient by the sample-weighted mean over ranks, sum_r(count_r * g_r) / sum_r(count_r).

        ``count`` is the number of samples behind this rank's gradients (the targets its loss is the
        mean over, where the loss ignores some); with ``count=0`` the rank contributes zeros (its
        gradients may be missing or stale). All gradients of one dtype travel as one flat buffer, laid
        out from the parameters (the same on every rank whatever its data): a gradient whose shape or
        dtype is not its parameter's raises. Raises ValueError (on every rank) when all counts are 0,
        unless ``empty_ok``: every gradient is then zero (a batch whose every label is ignored, as one
        process gives it). Frozen parameters (``requires_grad_(False)``) have no gradient and are left
        out; the ranks must freeze the same layers (compared at each call, with the counts).

        ``stop``: this rank's wish to stop after this step (``xn.train`` passes whether SIGTERM came),
        summed over ranks with the counts, in the same small collective; returns whether any rank passed
        ``stop=True``, the same answer on every rank.
        """
        if isinstance(count, bool) or not hasattr(count, "__index__") or operator.index(count) < 0:
            raise ValueError(f"allreduce_grads: count must be an int >= 0 (samples behind this rank's "
                             f"gradients), got {count!r}")
        count = operator.index(count)
        with self._waiting("comm.allreduce_grads"):
            self._sync()
            if model not in self._verified:
                self._check_same_model(model, "allreduce_grads", 0)
            # The frozen layers decide which gradients are packed, and may change between steps: a digest h of
            # them rides with the counts; all ranks agree on it exactly when size * sum(h*h) == sum(h)**2.
            h = zlib.crc32("\n".join(_frozen(model)).encode()) & 0xFFFFF
            counts = np.array([count, int(bool(stop)), h, h * h], dtype=np.int64)
            self.mpi_comm.Allreduce(self._mpi.IN_PLACE, counts, op=self._mpi.SUM)
            total, stopping = int(counts[0]), bool(counts[1])
            if int(counts[2]) ** 2 != self.size * int(counts[3]):  # the same sums on every rank: all check
                self._check_same_model(model, "allreduce_grads", 0)
            trained = [layer for layer in _layers(model).values() if not layer._frozen]  # frozen: no gradient
            if total == 0 and empty_ok:
                for layer in trained:
                    layer.grads.clear()  # in place: a layer's Grads, whose missing key says why, stays one
                    layer.grads.update({key: namespace(p).zeros_like(p) for key, p in layer.params.items()})
                return stopping
            if total == 0:
                raise raised_on_every_rank(ValueError(
                    "allreduce_grads: every rank passed count=0; there is no gradient to average"))
            entries = [(layer, key, p, _grad_of(layer, key, p) if count > 0 else None)
                       for layer in trained for key, p in layer.params.items()]
            for group in _group_by_dtype(entries):
                if count == 0:
                    flat = _zeros_like_group(group)
                else:
                    flat = _pack([g for *_, g in group])
                    if count != total:
                        flat *= count / total
                flat = self._allreduce_flat(flat, owned=True)
                for (layer, key, *_), part in zip(group, _unpack(flat, group)):
                    layer.grads[key] = part
            return stopping

    # -- internals --------------------------------------------------------------------------

    def _root(self, root: int) -> int:
        if isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < self.size:
            raise ValueError(f"root must be a rank in [0, {self.size}), got {root!r}")
        return root

    def _waiting(self, what: str) -> Any:
        """Context around a wait in a collective: watched where ``init`` installed the watch."""
        if self._watch is None:
            return contextlib.nullcontext()
        if self._entry is not None:
            what = f"{what} inside {self._entry.where}"
        return self._watch.waiting(what, self._world_ranks)

    def _queued(self, done: Any) -> None:
        """The collective being waited in was queued on a GPU (NCCL): the watch follows it until ``done()``."""
        if self._watch is not None:
            self._watch.queued(done)

    def _sync(self) -> None:
        """Inside xn.train/evaluate, the first collective first compares the ranks' inputs (see _guard)."""
        if self._entry is not None and self._entry.pending:
            self._entry.settle(self)

    def _check_same_model(self, model: Any, caller: str, root: int) -> None:
        mine = _signature(model, frozen=caller == "allreduce_grads")
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
            self._queued(link.allreduce_(out))
            return out
        host = host_copy(flat)
        self.mpi_comm.Allreduce(self._mpi.IN_PLACE, host, op=self._mpi.SUM)
        return to_device(host, backend.device_of(flat))

    def _bcast_flat(self, flat: Any, root: int) -> Any:
        """``flat`` of rank ``root`` on every rank (the other ranks pass a buffer of the same shape)."""
        if isinstance(flat, np.ndarray):
            self.mpi_comm.Bcast(flat, root=root)
            return flat
        link = self._nccl(flat) if array_api_compat.is_cupy_array(flat) else None
        if link is not None:
            self._queued(link.bcast_(flat, root))
            return flat
        host = host_copy(flat)
        self.mpi_comm.Bcast(host, root=root)
        return to_device(host, backend.device_of(flat))

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
