"""Ending the whole job when one rank fails, instead of leaving the others waiting in a collective."""

from __future__ import annotations

import sys
import traceback
from typing import Any


def install_abort_hook(mpi: Any) -> None:
    """Replace ``sys.excepthook`` (once) by one that prints the traceback with the rank and aborts the job."""
    world = mpi.COMM_WORLD
    if world.Get_size() == 1 or getattr(sys.excepthook, "xpnet_abort_hook", False):
        return
    rank = world.Get_rank()

    def abort_hook(exc_type: type, exc: BaseException, tb: Any) -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write("".join(f"[rank {rank}] {line}\n" for line in text.splitlines()))
        sys.stderr.write(f"[rank {rank}] xpnet: aborting all {world.Get_size()} ranks\n")
        sys.stderr.flush()
        world.Abort(1)

    abort_hook.xpnet_abort_hook = True  # type: ignore[attr-defined]
    sys.excepthook = abort_hook
