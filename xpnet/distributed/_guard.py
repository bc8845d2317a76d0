"""``xn.train`` and ``xn.evaluate`` with a ``comm``: checked together on entry, never left by one rank alone.

How a guarded call goes on each rank:

1. Before the call, the rank describes its inputs locally (samples, shapes, dtypes and a digest of
   every byte of x and of y of each data pair, or a TokenStream's ids and batch shape; the type and
   settings of the model, optimizer and loss; the scalar arguments that must match; for
   ``xn.evaluate``, a digest of every parameter and buffer of the model).
2. The first collective inside the call (or, when the call fails before reaching one, the failure
   itself) first meets the other ranks in one ``allgather`` of (failure or None, description). When
   the descriptions differ, every rank raises the same ValueError naming each rank's value (the first
   differing parameter, for weights, with what to do); when a
   rank failed, it raises its own exception and the others a :class:`XpnetDistributedError` naming
   it. These errors are marked as raised on every rank: rank 0 (or the failing rank) prints them.
3. Any other exception leaving the call on one rank (a callback failing on rank 0 only,
   ``sys.exit`` inside a callback) ends the job through ``_abort.escape``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any, Callable, Iterator

from ._abort import escape, is_raised_on_every_rank, raised_on_every_rank
from ._checks import (
    describe_data,
    describe_weights,
    differences,
    first_weight_difference,
    plain,
)
from ._communicator import Communicator

# What xn.train and xn.evaluate use of a communicator: another object passed as comm= is refused.
_COMM_NEEDS = ("rank", "size", "device", "barrier", "bcast_object", "allreduce_sum", "allreduce_grads",
               "broadcast_params")


class XpnetDistributedError(RuntimeError):
    """Another rank failed where every rank had to go on together; the message names it."""


class Entry:
    """This rank's description of a guarded call's inputs, compared once with the other ranks'."""

    def __init__(self, where: str, data: dict[str, Any], args: dict[str, Any],
                 settings: dict[str, tuple[Callable, Any]] | None = None, weights: Any = None):
        self.where = where
        self.description = ({label: describe_data(pair) for label, pair in data.items()},
                            {name: plain(v) for name, v in args.items()},
                            {name: _described(fn, value) for name, (fn, value) in (settings or {}).items()},
                            None if weights is None else describe_weights(weights))
        self.pending = True

    def settle(self, comm: Any, failure: BaseException | None = None) -> None:
        """Meet the other ranks (collective); raises on every rank when inputs differ or a rank failed
        (``failure``, this rank's, is then only marked as raised on every rank: the caller re-raises it)."""
        self.pending = False
        status = None if failure is None else f"{type(failure).__name__}: {failure}"
        everyone = comm.mpi_comm.allgather((status, self.description))
        data_labels = list(self.description[0])
        problems = [p for label in data_labels
                    for p in differences(f"{label} differs", [d[0][label] for _, d in everyone])]
        problems += differences(f"{self.where} arguments differ", [d[1] for _, d in everyone])
        if all(s is None for s, _ in everyone):  # a rank that failed may not have described its settings
            problems += [p for name in self.description[2] for p in
                         differences(f"{self.where} {name} differs", [d[2][name] for _, d in everyone])]
        if problems:
            raise raised_on_every_rank(ValueError(
                f"{self.where}: {'; '.join(problems)}. Every rank must pass the same data, model, optimizer, loss "
                "and arguments: each rank takes its own share of every global batch")) from failure
        weights = first_weight_difference([d[3] for _, d in everyone]) if all(s is None for s, _ in everyone) \
            else None
        if weights is not None:
            raise raised_on_every_rank(ValueError(
                f"{self.where}: the model's weights differ across ranks: {weights}. Each rank evaluates its share "
                "of the data with its own weights, so the result would match no rank's model: call "
                "comm.broadcast_params(model) first (every rank then holds rank 0's weights), or load the "
                "weights on every rank"))
        failed = [(rank, s) for rank, (s, _) in enumerate(everyone) if s is not None]
        if not failed:
            return
        first, message = failed[0]
        if failure is not None:
            raised_on_every_rank(failure, printer=first)
            return
        raise raised_on_every_rank(XpnetDistributedError(
            f"{self.where}: rank {first} failed before the ranks started together ({message}); rank "
            f"{first} prints its traceback, and every rank stops here"), printer=first)


def collective(where: str, data: dict[str, str], same: tuple[str, ...],
               settings: dict[str, Callable[[Any], dict[str, Any]]] | None = None,
               weights: str | None = None) -> Callable:
    """Guard a function taking a keyword ``comm`` (see the module docstring).

    ``data`` maps argument names to the labels that name them in errors (``{"data": "train data"}``);
    ``same`` names scalar arguments that must be equal on every rank; ``settings`` maps argument names
    to a function describing the argument's settings (``_checks.describe_settings``), compared too;
    ``weights`` names the model argument whose parameters and buffers must be equal on every rank.
    """
    def wrap(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            comm = kwargs.get("comm")
            _check_comm(comm, where)
            if not isinstance(comm, Communicator) or comm.size == 1:
                return fn(*args, **kwargs)
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                return fn(*args, **kwargs)  # raises the TypeError Python gives
            bound.apply_defaults()
            described = {name: (describe, bound.arguments[name]) for name, describe in (settings or {}).items()}
            entry = Entry(where, {label: bound.arguments[name] for name, label in data.items()},
                          {name: bound.arguments[name] for name in same}, described,
                          None if weights is None else bound.arguments[weights])
            with _entered(comm, entry):
                try:
                    return fn(*args, **kwargs)
                except BaseException as exc:
                    if entry.pending:
                        entry.settle(comm, failure=exc)
                    if not is_raised_on_every_rank(exc):
                        escape(exc, where)
                    raise

        return guarded

    return wrap


def _check_comm(comm: Any, where: str) -> None:
    """``comm`` is None, a Communicator, or an object with every method train/evaluate call on one."""
    if comm is None or isinstance(comm, Communicator):
        return
    missing = [name for name in _COMM_NEEDS if not hasattr(comm, name)]
    if missing:
        raise TypeError(f"{where}: comm must be None or the Communicator that xn.distributed.init() returns, "
                        f"got {type(comm).__name__} (it has no {', '.join(missing)})")


def _described(describe: Callable, value: Any) -> dict[str, Any]:
    try:
        return describe(value)
    except Exception as exc:  # noqa: BLE001 - a description, not a check: the call itself names the problem
        return {"unreadable": type(exc).__name__}


@contextlib.contextmanager
def _entered(comm: Any, entry: Entry) -> Iterator[None]:
    outer = comm._entry
    comm._entry = entry
    try:
        yield
    finally:
        comm._entry = outer
