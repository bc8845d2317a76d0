"""Data-parallel ``xn.train`` over a TokenStream with ``clip_grad_norm``, compared by tests/test_train_streams.py
with one process: each rank takes its rows of every batch (their recurrent state stays on it), and the
gradient is clipped by the norm of the all-reduced gradient, so every rank ends with the one-process weights.

``mpiexec -n N python stream_clip.py OUT``: every rank writes its weights and history as train_equal.py does
(``OUT/stream-rank<r>.npz``, ``.json``). The test imports this file and calls :func:`run` with ``comm=None``.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_equal import save  # noqa: E402 - beside this file

import xpnet as xn  # noqa: E402


def run(comm=None):
    """Train; returns (weights on the host, history epochs without timings, the last validation loss)."""
    rng = np.random.default_rng(11)
    ids, val_ids = rng.integers(0, 13, 600), rng.integers(0, 13, 200)
    xn.init.seed(2 + (comm.rank if comm is not None else 0))  # train broadcasts rank 0's weights
    model = xn.book.rnnlm(13, 5, 6, dtype="float64")
    history = xn.train(model, xn.datasets.TokenStream(ids, 5, 6), validation=xn.datasets.TokenStream(val_ids, 3, 6),
                       loss="cross_entropy", optimizer=xn.optim.SGD(1.0), epochs=2, clip_grad_norm=0.05,
                       device="cpu", progress=False, comm=comm)
    weights = {k: xn.to_numpy(v) for k, v in model.named_params().items()}
    epochs = [{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs]
    return weights, epochs, {"val_loss": history.epochs[-1]["val_loss"]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    args = parser.parse_args()
    comm = xn.distributed.init()
    save(args.out, "stream", comm, run(comm))


if __name__ == "__main__":
    main()
