"""``expect``, shared by the mpi scripts whose ranks each catch an error and check its message."""


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
