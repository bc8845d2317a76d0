"""Data-parallel ``xn.train`` of an ``xn.Model`` with two inputs, compared by tests/test_composite.py with one process.

``mpiexec -n N python composite.py OUT``: every rank writes its weights, history and evaluation as
train_equal.py does (``OUT/composite-rank<r>.npz``, ``.json``). The test imports this file and calls
:func:`run` with ``comm=None`` for the reference.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_equal import save  # noqa: E402 - beside this file

import xpnet as xn  # noqa: E402
from xpnet.layers import Linear, Tanh  # noqa: E402

N_TRAIN, N_VAL, BATCH, EPOCHS = 102, 37, 10, 3


class Towers(xn.Model):
    """scores = head(tanh(a(x1)) + tanh(b(x2))): two inputs, a fan-in whose gradient goes to both towers."""

    def __init__(self, d1=5, d2=3, hidden=8, classes=3):
        super().__init__()
        self.a = xn.Sequential(Linear(d1, hidden), Tanh())
        self.b = xn.Sequential(Linear(d2, hidden), Tanh())
        self.head = Linear(hidden, classes)

    def forward(self, x1, x2, train=True):
        return self.head.forward(self.a.forward(x1, train) + self.b.forward(x2, train), train)

    def backward(self, dy):
        dh = self.head.backward(dy)
        return self.a.backward(dh), self.b.backward(dh)


def data():
    rng = np.random.default_rng(7)
    x1, x2 = rng.normal(size=(N_TRAIN + N_VAL, 5)), rng.normal(size=(N_TRAIN + N_VAL, 3))
    y = np.argmax(x1[:, :3] - x2 + 0.3 * rng.normal(size=(N_TRAIN + N_VAL, 3)), axis=1)
    return ((x1[:N_TRAIN], x2[:N_TRAIN]), y[:N_TRAIN]), ((x1[N_TRAIN:], x2[N_TRAIN:]), y[N_TRAIN:])


def run(comm=None):
    """Train; returns (weights on the host, history epochs without timings, evaluation)."""
    xn.init.seed(3 + (comm.rank if comm is not None else 0))  # each rank its own weights: train broadcasts rank 0's
    model = Towers().to("cpu", "float64")
    train, val = data()
    history = xn.train(model, train, loss="cross_entropy", optimizer=xn.optim.Adam(0.01), epochs=EPOCHS,
                       batch_size=BATCH, device="cpu", validation=val, seed=5, progress=False, comm=comm)
    evaluation = xn.evaluate(model, val, loss="cross_entropy", batch_size=8, comm=comm)
    weights = {k: xn.to_numpy(v) for k, v in model.named_params().items()}
    return weights, [{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs], evaluation


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    args = parser.parse_args()
    comm = xn.distributed.init()
    save(args.out, "composite", comm, run(comm))


if __name__ == "__main__":
    main()
