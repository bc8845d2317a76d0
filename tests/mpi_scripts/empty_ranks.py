"""Ranks that see no sample in a whole epoch or evaluation, run by tests/test_distributed.py as
``mpiexec -n N python empty_ranks.py``.

Each case must give every rank what one process gives. It used to end the job in MPICH's "Message
truncated" (exit 142): a rank without samples reduced a 0-d array where the others reduced NumPy
scalars, so one took MPI's buffer path and the others the pickled one. The last line each rank
prints is ``empty ranks ok: rank r of N``.
"""

import numpy as np

import xpnet as xn
from _expect import closer

comm = xn.distributed.init()


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, (x[:, 0] + x[:, 1] > 0).astype("int64")


def model():
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Linear(3, 4), xn.layers.ReLU(), xn.layers.Linear(4, 2)).to("cpu", "float64")


def run(train_data, batch_size, validation, on):
    m = model()
    history = xn.train(m, train_data, loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=2,
                       batch_size=batch_size, device="cpu", validation=validation, progress=False, comm=on)
    epochs = [{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs]
    return {k: xn.to_numpy(v) for k, v in m.named_params().items()}, epochs


assert_close = closer(comm)


CASES = {  # name: (train data, batch size, validation data)
    "4 samples, batch 2": (data(4), 2, None),  # on 3 ranks, rank 2 never gets a row
    "5 samples, batch 1": (data(5), 1, None),  # only rank 0 ever gets a row
    "one validation sample": (data(40), 8, data(1, seed=1)),  # rank 0 validates alone
}
for name, (train_data, batch_size, validation) in CASES.items():
    assert_close(run(train_data, batch_size, validation, comm), run(train_data, batch_size, validation, None), name)

one = data(1, seed=2)
trained = model()
assert xn.evaluate(trained, one, loss="cross_entropy", comm=comm) == xn.evaluate(trained, one, loss="cross_entropy")
print(f"empty ranks ok: rank {comm.rank} of {comm.size}", flush=True)
