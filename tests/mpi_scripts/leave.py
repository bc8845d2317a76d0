"""Ways for a rank to leave a job, run by tests/test_distributed.py as ``mpiexec -n N python leave.py MODE``.

- ``exit``: rank 1 catches a planted error and calls ``sys.exit(1)`` while rank 0 waits in a barrier.
- ``exit-in-train``: a callback calls ``sys.exit(0)`` on rank 1 only, inside ``xn.train``.
- ``mismatch``: the last rank holds 995 samples instead of 1000; nobody catches the error.
- ``bad-labels``: every rank passes the same labels, out of range for the model; nobody catches the error.
- ``fails-alone``: rank 1 passes an unknown loss name; nobody catches the error.
- ``callback-everywhere``: a callback raises on every rank at the end of epoch 2, after the ranks met.
- ``caught-on-one``: every rank gets the error of ``mismatch``; rank 1 catches it and goes on
  outside any collective, the others leave (run with a short ``XPNET_EXIT_WAIT_S``).
- ``raise-before-init`` / ``exit-before-init``: rank 1 raises, or calls ``sys.exit(0)``, before
  ``xn.distributed.init()``; the others wait for it in ``MPI_Init``.
- ``exit-instead`` / ``os-exit-instead``: rank 1 calls ``sys.exit(0)`` / ``os._exit(0)`` after init
  instead of training; the others wait for it in ``xn.train``.
- ``sleep-in-callback``: rank 0 sleeps in a callback; the others wait for it in a collective (run with
  a short ``XPNET_COLLECTIVE_TIMEOUT_S``).
- ``sigterm-stuck``: rank 1 prints ``stuck`` and sleeps in a callback, rank 0 waits for it in a
  collective; the test sends SIGTERM to ``mpiexec`` (run with a short ``XPNET_SIGTERM_WAIT_S``).
- ``gpu-queued-hang`` / ``gpu-queued-left`` / ``gpu-queued-ran``: rank 0 queues a collective "on the GPU"
  (what NCCL does: the call returns, the wait happens on the device; here a ``done()`` that stays False,
  or turns True) and then blocks outside any collective, as a host reading the loss would block on the
  GPU; rank 1 hangs outside any collective, or leaves with ``sys.exit(0)``, or meets rank 0 in a
  barrier after as long (run with a short ``XPNET_COLLECTIVE_TIMEOUT_S``). ``gpu-queued-ran`` exits 0.
- ``sigterm-one-rank PATH``: rank 1 alone gets SIGTERM as epoch 3 begins, in epochs of about 2 s (a layer
  sleeps 20 ms a step); every rank stops after the same step, ``PATH`` (a full ModelCheckpoint) holds epoch 2,
  and the job ends by SIGTERM (run with ``XPNET_SIGTERM_WAIT_S`` shorter than an epoch).
- ``child``: each rank runs a Python that imports xpnet and exits; it inherits the launcher's variables
  but is no rank, and must exit 0 at once (not start MPI at its exit). The job exits 0.

Each other mode must end the job within seconds with a non-zero status.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np

import xpnet as xn
from xpnet.distributed._launch import launched


def data(n=1000):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4)).astype("float32")
    return x[:n], (x[:n, 0] > 0).astype("int64")


class RaiseEverywhere(xn.callbacks.Callback):
    def on_epoch_end(self, epoch, logs):
        if epoch == 2:
            raise RuntimeError("planted: the callback fails on every rank")


class SleepOnRank0(xn.callbacks.Callback):
    def on_epoch_end(self, epoch, logs):
        if self.state.comm.rank == 0:
            time.sleep(60)


class StuckOnRank1(xn.callbacks.Callback):
    def on_epoch_end(self, epoch, logs):
        if self.state.comm.rank == 1:
            print("stuck", flush=True)
            time.sleep(1000)


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


mode = sys.argv[1]
if mode.endswith("before-init") and launched()[0] == 1:  # the rank the launcher's environment gives
    if mode == "raise-before-init":
        raise RuntimeError("planted: rank 1 fails before init")
    sys.exit(0)
comm = xn.distributed.init()
if mode in ("raise-before-init", "exit-before-init", "sleep-in-callback"):
    train(comm, *data(), callbacks=[SleepOnRank0()])
elif mode == "sigterm-stuck":
    train(comm, *data(), callbacks=[StuckOnRank1()])
elif mode in ("exit-instead", "os-exit-instead"):
    if comm.rank == 1:
        (os._exit if mode == "os-exit-instead" else sys.exit)(0)
    train(comm, *data())
elif mode.startswith("gpu-queued-"):
    if comm.rank == 0:
        started = time.monotonic()
        with comm._waiting("comm.allreduce_grads"):
            comm._queued(lambda: mode == "gpu-queued-ran" and time.monotonic() - started > 1)
        time.sleep(5 if mode == "gpu-queued-ran" else 60)  # past the time limit of 3 s: a host blocked on the GPU
    elif mode == "gpu-queued-left":
        sys.exit(0)
    elif mode == "gpu-queued-hang":
        time.sleep(60)
    else:
        time.sleep(5)  # and meets rank 0 in the barrier within the time limit
    comm.barrier()
    sys.exit(0)
elif mode == "sigterm-one-rank":
    class Slow(xn.layers.Layer):
        def forward(self, x, train=True):
            time.sleep(0.02)
            return x

        def backward(self, dy):
            return dy

    class SigtermOnRank1(xn.callbacks.Callback):
        def on_epoch_begin(self, epoch):
            if epoch == 3 and self.state.comm.rank == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(4, 8), xn.layers.ReLU(), Slow(), xn.layers.Linear(8, 2))
    xn.train(model, data(), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=100, batch_size=10,
             device="cpu", progress=False, comm=comm,
             callbacks=[xn.callbacks.ModelCheckpoint(sys.argv[2], full=True), SigtermOnRank1()])
elif mode == "child":
    child = subprocess.run([sys.executable, "-c", "import xpnet"], capture_output=True, text=True, timeout=30)
    assert child.returncode == 0 and not child.stderr, f"rank {comm.rank}: {child.returncode}: {child.stderr}"
    print(f"child ok: rank {comm.rank}", flush=True)
    sys.exit(0)
elif mode == "exit":
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
    time.sleep(60)
print(f"rank {comm.rank} got past the failure", flush=True)
