"""Ways for a rank to leave a job, run by tests/test_distributed.py as ``mpiexec -n N python leave.py MODE``.

- ``exit``: rank 1 catches a planted error and calls ``sys.exit(1)`` while rank 0 waits in a barrier.
- ``exit-in-train``: a callback calls ``sys.exit(0)`` on rank 1 only, inside ``xn.train``.
- ``mismatch``: the last rank holds 995 samples instead of 1000; nobody catches the error.
- ``bad-labels``: every rank passes the same labels, out of range for the model; nobody catches the error.
- ``fails-alone``: rank 1 passes an unknown loss name; nobody catches the error.
- ``callback-everywhere``: a callback raises on every rank at the end of epoch 2, after the ranks met.
- ``caught-on-one``: every rank gets the error of ``mismatch``; rank 1 catches it and goes on to a
  collective, the others leave (run with a short ``XPNET_EXIT_WAIT_S``).

Each mode must end the job within seconds with a non-zero status.
"""

import sys

import numpy as np

import xpnet as xn


def data(n=1000):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4)).astype("float32")
    return x[:n], (x[:n, 0] > 0).astype("int64")


class RaiseEverywhere(xn.callbacks.Callback):
    def on_epoch_end(self, epoch, logs):
        if epoch == 2:
            raise RuntimeError("planted: the callback fails on every rank")


class ExitOnRank(xn.callbacks.Callback):
    def __init__(self, rank):
        super().__init__()
        self.rank = rank

    def on_epoch_end(self, epoch, logs):
        if self.state.comm.rank == self.rank:
            sys.exit(0)


def train(comm, x, y, loss="cross_entropy", callbacks=()):
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(4, 8), xn.layers.ReLU(), xn.layers.Linear(8, 2))
    xn.train(model, (x, y), loss=loss, optimizer=xn.optim.SGD(0.1), epochs=3, batch_size=100, device="cpu",
             progress=False, callbacks=list(callbacks), comm=comm)


comm = xn.distributed.init()
mode = sys.argv[1]
if mode == "exit":
    try:
        if comm.rank == 1:
            raise OSError("planted: rank 1 cannot read its input")
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    comm.barrier()
elif mode == "exit-in-train":
    train(comm, *data(), callbacks=[ExitOnRank(1)])
elif mode == "mismatch":
    train(comm, *data(995 if comm.rank == comm.size - 1 else 1000))
elif mode == "bad-labels":
    x, y = data()
    train(comm, x, y + 5)
elif mode == "fails-alone":
    train(comm, *data(), loss="bogus" if comm.rank == 1 else "cross_entropy")
elif mode == "callback-everywhere":
    train(comm, *data(), callbacks=[RaiseEverywhere()])
elif mode == "caught-on-one":
    try:
        train(comm, *data(995 if comm.rank == comm.size - 1 else 1000))
    except ValueError:
        if comm.rank != 1:
            raise
    comm.barrier()
print(f"rank {comm.rank} got past the failure", flush=True)
