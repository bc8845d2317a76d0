"""The command line's agreement across ranks (``xpnet train --distributed``).

MPI starts before the command line is read (:func:`start_distributed`), so that a rank whose command
line does not parse (:func:`parse`) or differs in what is trained (:func:`same_on_every_rank`) makes
every rank stop with one line, printed once, and exit 2, instead of leaving the others waiting.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from .cli import UsageError
from .distributed._abort import raised_on_every_rank
from .distributed._checks import differences

# Arguments that change what is trained: every rank must be given the same.
SHARED = ("dataset", "model", "epochs", "batch_size", "optimizer", "lr", "seed", "resume")
_ASKED_FOR_HELP = "--help or --version"


def start_distributed(argv: list[str]) -> Any:
    """``xn.distributed.init()`` where ``argv`` holds ``--distributed`` (or a prefix argparse takes for
    it), before the command line is read; None otherwise."""
    if not any(len(a) >= 4 and "--distributed".startswith(a) for a in argv):
        return None
    from . import distributed  # noqa: PLC0415

    try:
        return distributed.init()
    except (distributed.MPIUnavailableError, ValueError) as exc:
        raise UsageError(str(exc).splitlines()[0]) from exc


def parse(argv: list[str], comm: Any, parser: Callable[..., argparse.ArgumentParser]) -> argparse.Namespace | None:
    """``parser(raising=True).parse_args(argv)``, agreed by every rank: a rank whose command line does not
    parse makes every rank raise UsageError naming it; None where every rank printed --help/--version."""
    args, problem = None, None
    try:
        args = parser(raising=True).parse_args(argv)
    except UsageError as exc:
        problem = str(exc)
    except SystemExit:  # --help or --version, printed
        problem = _ASKED_FOR_HELP
    everyone = comm.allgather_object(problem)
    if all(p == _ASKED_FOR_HELP for p in everyone):
        return None
    failed = [(r, p) for r, p in enumerate(everyone) if p is not None and p != _ASKED_FOR_HELP] or \
        [(r, f"it was given {p}, the others a command to run") for r, p in enumerate(everyone) if p is not None]
    if failed:
        rank, message = failed[0]
        raise raised_on_every_rank(UsageError(message if rank == comm.rank else f"rank {rank}: {message}"))
    return args


def same_on_every_rank(args: argparse.Namespace, comm: Any) -> None:
    """A UsageError on every rank where the ranks were given different :data:`SHARED` arguments."""
    mine = {"--" + name.replace("_", "-"): "(default)" if getattr(args, name) is None else getattr(args, name)
            for name in SHARED}
    problems = differences("arguments differ", comm.allgather_object(mine))
    if problems:
        raise raised_on_every_rank(UsageError(
            f"{problems[0]}; give every rank the same command line (--out, --device, --data-root and --quiet "
            "may differ)"))
