"""Ranks given different inputs, run by tests/test_distributed.py as ``mpiexec -n N python agree.py``.

Every rank catches each error and checks its message; the last rank is the odd one out. A rank that
finds a wrong message fails the job (through the abort hook). Each rank prints ``inputs ok: rank r``
and ``nan diagnosis ok: rank r`` after those checks, and last ``agree ok: rank r of N``. Also: the NaN diagnosis names the rank and step, and ``comm.device`` /
``xn.device`` falling back to the CPU warn on rank 0 only (run with ``CUDA_VISIBLE_DEVICES=``).
"""

import numpy as np

import xpnet as xn

comm = xn.distributed.init()
rank, size = comm.rank, comm.size
odd = rank == size - 1
BATCH = 100


def data(n=1000, dtype="float32", changed_row=None):
    x = np.random.default_rng(0).normal(size=(1000, 4)).astype(dtype)[:n]
    if changed_row is not None:
        x[changed_row, 0] += 1.0
    return x, (x[:, 0] > 0).astype("int64")


def model():
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Linear(4, 8), xn.layers.ReLU(), xn.layers.Linear(8, 2))


def train(train_data, validation=None, batch_size=BATCH, epochs=2):
    return xn.train(model(), train_data, loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=epochs,
                    batch_size=batch_size, device="cpu", validation=validation, shuffle=False, progress=False,
                    comm=comm)


def expect(error, fragments, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except error as exc:
        for f in fragments:
            assert f in str(exc), f"rank {rank}: {f!r} not in: {exc}"
    else:
        raise AssertionError(f"rank {rank}: no {error.__name__} for {fragments}")
    comm.barrier()  # after the error every rank goes on together


# "ranks 0-1: 1000, rank 2: 995" on 3 ranks, "rank 0: 1000, rank 1: 995" on 2
others = "rank 0" if size == 2 else f"ranks 0-{size - 2}"
last = f"rank {size - 1}"
expect(ValueError, [f"train data differs across ranks: samples {others}: 1000, {last}: 995"],
       train, data(995 if odd else 1000))
expect(ValueError, [f"samples {others}: 1000, {last}: 850"], train, data(850 if odd else 1000))
expect(ValueError, [f"x dtype {others}: float32, {last}: float64"], train, data(dtype="float64" if odd else "float32"))
expect(ValueError, ["train data differs across ranks: content"], train, data(changed_row=0 if odd else None))
expect(ValueError, ["validation data differs across ranks: content"], train, data(),
       validation=data(changed_row=999 if odd else None))
expect(ValueError, [f"xn.train arguments differ across ranks: batch_size {others}: 100, {last}: 10"],
       train, data(), batch_size=10 if odd else BATCH)
expect(ValueError, [f"evaluate data differs across ranks: samples {others}: 1000, {last}: 995"],
       xn.evaluate, model(), data(995 if odd else 1000), loss="cross_entropy", comm=comm)

print(f"inputs ok: rank {rank}", flush=True)

# A NaN in the last row of the second global batch: that row is the last rank's.
x, y = data()
x[2 * BATCH - 1, 1] = np.nan
expect(xn.XpnetTrainingError, [f"epoch 1, step 2 of 10; first non-finite value: rank {size - 1}: the input batch."],
       train, (x, y))
print(f"nan diagnosis ok: rank {rank}", flush=True)

dev = comm.device("cuda")
assert dev.name == "cpu", "run with CUDA_VISIBLE_DEVICES= so that the device falls back"
xn.device("cuda")
history = train(data())  # the same inputs everywhere still train
assert len(history.epochs) == 2
print(f"agree ok: rank {rank} of {size}", flush=True)
