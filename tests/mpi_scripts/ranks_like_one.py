"""Cases where one rank's share differs from the others' in what it counts, run by tests/test_distributed.py as
``mpiexec -n N python ranks_like_one.py CASE``; every rank must get what one process gets.

- ``padded``: sequence labels padded with ``ignore_index``, more on some ranks than on others: each rank's
  loss is the mean over its own real targets, so its gradient must weigh by their count, not by its rows.
- ``stream``: a TokenStream of 1 row, fewer rows than ranks, as validation and in ``xn.evaluate``: a rank
  without a row sums nothing.
- ``accumulate``: ``padded`` with ``accumulate_grad_batches=2``: each rank's gradient is the mean over its targets
  of a group of batches (one of them leaving a rank without a row), weighed by their count in one all-reduce.
- ``diverge``: a first batch whose first rows (rank 0's) fit well and whose others do not: the first
  step's loss the divergence warning compares with must be that of the whole batch, as the epoch's is.

The last line each rank prints is ``ranks like one: CASE rank r of N``.
"""

import sys
import warnings

import numpy as np

import xpnet as xn
from _expect import closer

comm = xn.distributed.init()


assert_close = closer(comm)


def weights(model):
    return {k: xn.to_numpy(v) for k, v in model.named_params().items()}


def epochs(history):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs]


def padded(on, accumulate=1):
    rng = np.random.default_rng(0)
    n, t, v = 16, 6, 11
    x, y = rng.integers(0, v, (n, t)), rng.integers(0, v, (n, t))
    y[: n // 2, 2:] = -100  # short sentences, padded; the shuffled batches split them unevenly over ranks
    y[3, :] = -100  # a row with no real target
    xv, yv = x[:5], y[:5]
    xn.init.seed(1)
    model = xn.Sequential(xn.layers.Embedding(v, 4), xn.layers.LSTM(4, 5),
                          xn.layers.Linear(5, v)).to("cpu", "float64")
    loss = xn.losses.SoftmaxCrossEntropy(ignore_index=-100)
    history = xn.train(model, (x, y), loss=loss, optimizer=xn.optim.Adam(0.05), epochs=2, batch_size=5,
                       device="cpu", validation=(xv, yv), progress=False, comm=on, seed=0,
                       accumulate_grad_batches=accumulate)
    return weights(model), epochs(history), xn.evaluate(model, (x, y), loss=loss, batch_size=3, comm=on)


def stream(on):
    rng = np.random.default_rng(11)
    ids, val_ids = rng.integers(0, 13, 300), rng.integers(0, 13, 60)
    xn.init.seed(2)
    model = xn.book.rnnlm(13, 5, 6, dtype="float64")
    history = xn.train(model, xn.datasets.TokenStream(ids, 4, 6), validation=xn.datasets.TokenStream(val_ids, 1, 6),
                       loss="cross_entropy", optimizer=xn.optim.SGD(0.5), epochs=2, device="cpu", progress=False,
                       comm=on)
    return weights(model), epochs(history), xn.evaluate(model, xn.datasets.TokenStream(val_ids, 1, 5),
                                                        loss="cross_entropy", comm=on)


def diverge(on):
    x = np.array([[1.0], [1.0], [1.0], [1.0]] * 3)
    y = np.array([0, 0, 1, 1] * 3)  # rows 0, 1 (rank 0's share of each batch) fit the weights; rows 2, 3 do not
    model = xn.Sequential(xn.layers.Linear(1, 2)).to("cpu", "float64")
    model.load_state_dict({"0.W": np.array([[10.0, -10.0]]), "0.b": np.zeros(2)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = xn.train(model, (x, y), loss="cross_entropy", optimizer=xn.optim.SGD(1e-6), epochs=1,
                           batch_size=4, shuffle=False, device="cpu", progress=False, comm=on)
    said = [str(w.message) for w in caught if "diverged" in str(w.message)]
    return epochs(history), said


case = sys.argv[1]
run = {"padded": padded, "accumulate": lambda on: padded(on, accumulate=2), "stream": stream, "diverge": diverge}[case]
assert_close(run(comm), run(None), case)
print(f"ranks like one: {case} rank {comm.rank} of {comm.size}", flush=True)
