"""mpi4py, imported on first use (``import xpnet`` never loads it)."""

from __future__ import annotations

from typing import Any

from .._user import install_hint


class MPIUnavailableError(ImportError):
    """mpi4py (or the MPI library under it) could not be imported."""


def import_mpi() -> Any:
    try:
        from mpi4py import MPI  # noqa: PLC0415 - optional dependency, imported on first use
    except Exception as exc:  # ImportError, or a missing/broken libmpi raising RuntimeError
        raise MPIUnavailableError(
            f"xpnet.distributed needs mpi4py and an MPI library: `{install_hint('mpi')}` "
            "(on a cluster, build mpi4py against the cluster's MPI: "
            f"`pip install --no-binary=mpi4py mpi4py`). Import failed with {type(exc).__name__}: {exc}"
        ) from exc
    return MPI
