"""Helpers shared by the mpi scripts: ``expect`` (each rank catches an error and checks its message) and
``closer`` (each rank compares what it got with the one-process reference)."""

import numpy as np


def expecter(comm):
    """``expect(error, fragments, fn, *args, **kwargs)`` for ``comm``: calls ``fn``, which must raise
    ``error`` with every one of ``fragments`` in its message; then every rank goes on together."""

    def expect(error, fragments, fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
        except error as exc:
            for f in fragments:
                assert f in str(exc), f"rank {comm.rank}: {f!r} not in: {exc}"
        else:
            raise AssertionError(f"rank {comm.rank}: no {error.__name__} for {fragments}")
        comm.barrier()  # after the error every rank goes on together

    return expect


def closer(comm):
    """``assert_close(mine, reference, what)`` for ``comm``: dicts, lists and tuples compared item by item,
    ints, strings and None exactly, arrays and floats to 1e-12."""

    def assert_close(mine, reference, what):
        if isinstance(mine, dict):
            assert mine.keys() == reference.keys(), what
            for k in mine:
                assert_close(mine[k], reference[k], f"{what} {k}")
        elif isinstance(mine, (list, tuple)):
            for i, (a, b) in enumerate(zip(mine, reference, strict=True)):
                assert_close(a, b, f"{what} [{i}]")
        elif mine is None or isinstance(mine, (int, str)):
            assert mine == reference, f"{what}: {mine} != {reference}"
        else:
            np.testing.assert_allclose(mine, reference, rtol=1e-12, atol=1e-12, err_msg=f"rank {comm.rank}: {what}")

    return assert_close
