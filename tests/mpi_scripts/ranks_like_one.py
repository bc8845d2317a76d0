"""Cases where one rank's share differs from the others' in what it counts, run by tests/test_distributed.py as
``mpiexec -n N python ranks_like_one.py CASE``; every rank must get what one process gets.

- ``stream``: a TokenStream of 1 row, fewer rows than ranks, as validation and in ``xn.evaluate``: a rank
  without a row sums nothing.

The last line each rank prints is ``ranks like one: CASE rank r of N``.
"""

import sys

import numpy as np

import xpnet as xn

comm = xn.distributed.init()


def assert_close(mine, reference, what):
    if isinstance(mine, dict):
        assert mine.keys() == reference.keys(), what
        for k in mine:
            assert_close(mine[k], reference[k], f"{what} {k}")
    elif isinstance(mine, (list, tuple)):
        for i, (a, b) in enumerate(zip(mine, reference, strict=True)):
            assert_close(a, b, f"{what} [{i}]")
    elif mine is None or isinstance(mine, (int, str)):
        assert mine == reference, f"{what}: {mine} != {reference}"
    else:
        np.testing.assert_allclose(mine, reference, rtol=1e-12, atol=1e-12, err_msg=f"rank {comm.rank}: {what}")


def weights(model):
    return {k: xn.to_numpy(v) for k, v in model.named_params().items()}


def epochs(history):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs]


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


case = sys.argv[1]
run = {"stream": stream}[case]
assert_close(run(comm), run(None), case)
print(f"ranks like one: {case} rank {comm.rank} of {comm.size}", flush=True)
