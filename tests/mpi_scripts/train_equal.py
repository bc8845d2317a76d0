"""Data-parallel ``xn.train`` runs, compared by tests/test_distributed.py with one-process runs.

``mpiexec -n N python train_equal.py OUT [--device SPEC] [--checkpoint PATH | --resume PATH]``: every
rank writes its weights (``OUT/<config>-rank<r>.npz``), history, evaluation and how CuPy arrays
travelled (``.json``) and its stdout (``OUT/stdout-rank<r>.txt``). ``--device cuda`` gives each rank
``comm.device("cuda")``; ``--device cuda:0`` puts every rank on GPU 0. ``--checkpoint`` also trains
RESUME_CONFIG for CHECKPOINT_EPOCH epochs writing a full checkpoint; ``--resume`` continues that
checkpoint to EPOCHS epochs. The test imports this file and calls :func:`run` with ``comm=None`` for the reference.
"""

import argparse
import json
import os
import sys

import numpy as np

import xpnet as xn

# 102 = 10 batches of 10 and one of 2: on 3 ranks the last batch leaves rank 0 with no sample.
N_TRAIN, N_VAL, BATCH, EPOCHS, CHECKPOINT_EPOCH = 102, 37, 10, 3, 2
CONFIGS = {f"{opt}-{dtype}": (opt, dtype) for opt in ("sgd", "adam") for dtype in ("float32", "float64")}
RESUME_CONFIG = "adam-float64"


def data(dtype):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N_TRAIN + N_VAL, 5)).astype(dtype)
    y = np.argmax(x @ rng.normal(size=(5, 3)) + 0.3 * rng.normal(size=(N_TRAIN + N_VAL, 3)), axis=1)
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def run(config, comm=None, epochs=EPOCHS, callbacks=(), resume_from=None, device="cpu"):
    """Train one config; returns (weights on the host, history epochs without timings, evaluation)."""
    opt, dtype = CONFIGS[config]
    # Each rank starts from other weights: train must broadcast rank 0's.
    xn.init.seed(3 + (comm.rank if comm is not None else 0))
    model = xn.Sequential(xn.layers.Linear(5, 16), xn.layers.Tanh(), xn.layers.Linear(16, 3)).to("cpu", dtype)
    optimizer = xn.optim.SGD(0.1) if opt == "sgd" else xn.optim.Adam(0.01)
    train, val = data(dtype)
    history = xn.train(model, train, loss="cross_entropy", optimizer=optimizer, epochs=epochs, batch_size=BATCH,
                       device=device, validation=val, seed=5, callbacks=list(callbacks), progress=True,
                       resume_from=resume_from, comm=comm)
    evaluation = xn.evaluate(model, val, loss="cross_entropy", batch_size=8, comm=comm)
    weights = {k: xn.to_numpy(v) for k, v in model.named_params().items()}
    return weights, [{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs], evaluation


def save(out, name, comm, result):
    weights, epochs, evaluation = result
    np.savez(os.path.join(out, f"{name}-rank{comm.rank}.npz"), **weights)
    with open(os.path.join(out, f"{name}-rank{comm.rank}.json"), "w") as f:
        json.dump({"epochs": epochs, "evaluate": evaluation, "cupy_transport": comm.cupy_transport}, f)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--checkpoint")
    parser.add_argument("--resume")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    comm = xn.distributed.init()
    device = comm.device(args.device)
    sys.stdout = open(os.path.join(args.out, f"stdout-rank{comm.rank}.txt"), "w")
    for name in CONFIGS:
        save(args.out, name, comm, run(name, comm, device=device))
    if args.checkpoint:
        saver = xn.callbacks.ModelCheckpoint(args.checkpoint, full=True)
        run(RESUME_CONFIG, comm, epochs=CHECKPOINT_EPOCH, callbacks=[saver], device=device)
    if args.resume:
        save(args.out, "resumed", comm, run(RESUME_CONFIG, comm, resume_from=args.resume, device=device))
    sys.stdout.close()


if __name__ == "__main__":
    main()
