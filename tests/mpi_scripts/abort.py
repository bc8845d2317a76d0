"""A planted failure on rank 1 while rank 0 waits in a collective: the abort hook must end the job."""

import xpnet as xn

comm = xn.distributed.init()
if comm.rank == 1:
    raise RuntimeError("planted failure on rank 1")
comm.barrier()  # without the hook rank 0 would wait here forever
