"""Ranks given different streams, models or weights, run by tests/test_distributed.py as
``mpiexec -n N python agree_kinds.py MODE``; the last rank is the odd one out, as in agree.py.

- ``stream``: TokenStreams of other ids (the same length, or another one, which gave another step
  count and a hang until the time limit), as training data, validation data and evaluate's data;
- ``composite``: ``xn.Model`` trees that differ in a layer without parameters, nested or not, or in
  their number of layers;
- ``weights``: ``xn.evaluate`` of models whose weights (or BatchNorm buffers) differ, which gave a
  figure that matches no rank's model.

Every rank catches each error and checks its message; a rank that finds a wrong one fails the job
(through the abort hook). Each rank prints ``<MODE> ok: rank r`` at the end.
"""

import sys

import numpy as np

import xpnet as xn
from _expect import expecter
from xpnet.layers import BatchNorm, Linear, ReLU, Tanh

comm = xn.distributed.init()
rank, size = comm.rank, comm.size
odd = rank == size - 1
others = "rank 0" if size == 2 else f"ranks 0-{size - 2}"
last = f"rank {size - 1}"


expect = expecter(comm)


def data(n=40):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5))
    return x, (x[:, 0] > 0).astype("int64")


def train(model, train_data, **kwargs):
    return xn.train(model, train_data, loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=2,
                    **{"batch_size": 10, **kwargs}, device="cpu", progress=False, comm=comm)


def check_streams():
    def stream(seed=0, length=601):
        return xn.datasets.TokenStream(np.random.default_rng(seed).integers(0, 13, length), 4, 6)

    def rnnlm():
        xn.init.seed(2)
        return xn.book.rnnlm(13, 5, 6, dtype="float64")

    # each rank its own shard of the corpus: trained silently on other data
    expect(ValueError, ["xn.train: train data differs across ranks: ids content"],
           train, rnnlm(), stream(seed=100 + odd), batch_size=None)
    # shards of other lengths: other step counts, and a hang in mismatched collectives until the time limit
    expect(ValueError, [f"train data differs across ranks: ids {others}: 601, {last}: 901; steps per epoch "
                        f"{others}: 25, {last}: 37"], train, rnnlm(), stream(length=901 if odd else 601),
           batch_size=None)
    expect(ValueError, [f"train data differs across ranks: time_size {others}: 6, {last}: 5"],
           train, rnnlm(), xn.datasets.TokenStream(stream().ids, 4, 5 if odd else 6), batch_size=None)
    expect(ValueError, ["validation data differs across ranks: ids content"],
           train, rnnlm(), stream(), batch_size=None, validation=stream(seed=100 + odd))
    expect(ValueError, ["evaluate data differs across ranks: ids content"],
           xn.evaluate, rnnlm(), stream(seed=100 + odd), loss="cross_entropy", comm=comm)
    train(rnnlm(), stream(), batch_size=None, validation=stream(seed=1))  # the same streams still train


class Net(xn.Model):
    def __init__(self, act, blocks=2):
        super().__init__()
        self.fc1 = Linear(5, 8)
        self.act = act
        self.blocks = [xn.Sequential(Linear(8, 8), Tanh()) for _ in range(blocks)]
        self.fc2 = Linear(8, 2)

    def forward(self, x, train=True):
        h = self.act.forward(self.fc1.forward(x, train), train)
        for block in self.blocks:
            h = block.forward(h, train)
        return self.fc2.forward(h, train)

    def backward(self, dy):
        dh = self.fc2.backward(dy)
        for block in reversed(self.blocks):
            dh = block.backward(dh)
        return self.fc1.backward(self.act.backward(dh))


def check_composite():
    expect(ValueError, [f"xn.train model differs across ranks: layer act {others}: Tanh(), {last}: ReLU()"],
           train, Net(ReLU() if odd else Tanh()), data())
    nested = xn.Sequential(xn.Sequential(Linear(5, 8), ReLU() if odd else Tanh()), Linear(8, 2))
    expect(ValueError, [f"xn.train model differs across ranks: layer 0.1 {others}: Tanh(), {last}: ReLU()"],
           train, nested, data())
    expect(ValueError, [f"xn.train model differs across ranks: layer blocks.2 {others}: (none), {last}: Sequential()"],
           train, Net(Tanh(), blocks=3 if odd else 2), data())
    expect(ValueError, [f"xn.evaluate model differs across ranks: layer act {others}: Tanh(), {last}: ReLU()"],
           xn.evaluate, Net(ReLU() if odd else Tanh()), data(), loss="cross_entropy", comm=comm)
    train(Net(Tanh()), data())  # the same tree still trains


def check_weights():
    xn.init.seed(3 + odd)
    model = xn.Sequential(Linear(5, 8), Tanh(), Linear(8, 2))
    expect(ValueError, ["xn.evaluate: the model's weights differ across ranks: parameter '0.W' differs",
                        "comm.broadcast_params(model)", "on every rank"],
           xn.evaluate, model, data(), loss="cross_entropy", comm=comm)
    comm.broadcast_params(model)
    result = xn.evaluate(model, data(), loss="cross_entropy", comm=comm)
    alone = comm.bcast_object(xn.evaluate(model, data(), loss="cross_entropy"))  # rank 0's model, one process
    assert abs(result["loss"] - alone["loss"]) < 1e-6 and result["accuracy"] == alone["accuracy"], (result, alone)
    # BatchNorm keeps running statistics per rank while training; train ends with rank 0's on every rank
    xn.init.seed(3)
    bn = xn.Sequential(Linear(5, 8), BatchNorm(8), ReLU(), Linear(8, 2))
    train(bn, data())
    xn.evaluate(bn, data(), loss="cross_entropy", comm=comm)
    if odd:
        bn.named_modules()["1"].buffers["running_mean"][0] += 1.0
    expect(ValueError, ["xn.evaluate: the model's weights differ across ranks: buffer '1.running_mean' differs"],
           xn.evaluate, bn, data(), loss="cross_entropy", comm=comm)


mode = sys.argv[1]
{"stream": check_streams, "composite": check_composite, "weights": check_weights}[mode]()
print(f"{mode} ok: rank {rank}", flush=True)
