"""Ranks given different inputs, run by tests/test_distributed.py as ``mpiexec -n N python agree.py``.

Every rank catches each error and checks its message; the last rank is the odd one out. A rank that
finds a wrong message fails the job (through the abort hook). Each rank prints ``inputs ok: rank r``
after the data and argument checks, ``settings ok: rank r`` after the model, optimizer and loss checks,
``nan diagnosis ok: rank r`` after the NaN diagnosis, and last ``agree ok: rank r of N``. Also: the NaN
diagnosis names the rank and step, and ``comm.device`` / ``xn.device`` falling back to the CPU warn on
rank 0 only (run with ``CUDA_VISIBLE_DEVICES=``).
"""

import numpy as np

import xpnet as xn
from _expect import expecter

comm = xn.distributed.init()
rank, size = comm.rank, comm.size
odd = rank == size - 1
BATCH = 100


def data(n=1000, dtype="float32", changed_row=None, flipped_label=None):
    x = np.random.default_rng(0).normal(size=(1000, 4)).astype(dtype)[:n]
    if changed_row is not None:
        x[changed_row, 0] += 1.0
    y = (x[:, 0] > 0).astype("int64")
    if flipped_label is not None:
        y[flipped_label] = 1 - y[flipped_label]
    return x, y


def model(activation=xn.layers.ReLU):
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Linear(4, 8), activation(), xn.layers.Linear(8, 2))


def train(train_data, validation=None, batch_size=BATCH, epochs=2, net=None, optimizer=None, loss="cross_entropy"):
    return xn.train(net or model(), train_data, loss=loss, optimizer=optimizer or xn.optim.SGD(0.1), epochs=epochs,
                    batch_size=batch_size, device="cpu", validation=validation, shuffle=False, progress=False,
                    comm=comm)


expect = expecter(comm)


# "ranks 0-1: 1000, rank 2: 995" on 3 ranks, "rank 0: 1000, rank 1: 995" on 2
others = "rank 0" if size == 2 else f"ranks 0-{size - 2}"
last = f"rank {size - 1}"
expect(ValueError, [f"train data differs across ranks: samples {others}: 1000, {last}: 995"],
       train, data(995 if odd else 1000))
expect(ValueError, [f"samples {others}: 1000, {last}: 850"], train, data(850 if odd else 1000))
expect(ValueError, [f"x dtype {others}: float32, {last}: float64"], train, data(dtype="float64" if odd else "float32"))
expect(ValueError, ["train data differs across ranks: x content"], train, data(changed_row=0 if odd else None))
# Row 500 is none of the 8 rows the check once sampled; the same x with one label flipped must be told too.
expect(ValueError, ["train data differs across ranks: x content"], train, data(changed_row=500 if odd else None))
expect(ValueError, ["train data differs across ranks: y content"], train, data(flipped_label=500 if odd else None))
expect(ValueError, ["validation data differs across ranks: x content"], train, data(),
       validation=data(changed_row=999 if odd else None))
expect(ValueError, [f"xn.train arguments differ across ranks: batch_size {others}: 100, {last}: 10"],
       train, data(), batch_size=10 if odd else BATCH)
expect(ValueError, [f"evaluate data differs across ranks: samples {others}: 1000, {last}: 995"],
       xn.evaluate, model(), data(995 if odd else 1000), loss="cross_entropy", comm=comm)

expect(ValueError, [f"xn.train arguments differ across ranks: epochs {others}: 2, {last}: 3"],
       train, data(), epochs=3 if odd else 2)
print(f"inputs ok: rank {rank}", flush=True)

# Settings every rank must share, or the ranks train to different weights and exit 0.
expect(ValueError, [f"xn.train optimizer differs across ranks: lr {others}: 0.1, {last}: 0.01"],
       train, data(), optimizer=xn.optim.SGD(0.01 if odd else 0.1))
expect(ValueError, [f"xn.train optimizer differs across ranks: momentum {others}: 0.9, {last}: 0.5"],
       train, data(), optimizer=xn.optim.Momentum(0.1, momentum=0.5 if odd else 0.9))
expect(ValueError, [f"xn.train optimizer differs across ranks: type {others}: SGD, {last}: Adam"],
       train, data(), optimizer=xn.optim.Adam(0.1) if odd else xn.optim.SGD(0.1))
expect(ValueError, [f"xn.train model differs across ranks: layer 1 {others}: ReLU(), {last}: Tanh()"],
       train, data(), net=model(xn.layers.Tanh if odd else xn.layers.ReLU))


def grouped(head_lr):
    """A model and an SGD of two param groups, the head's at ``head_lr``."""
    net = model()
    return net, xn.optim.SGD([{"params": net[0]}, {"params": net[2], "lr": head_lr}], lr=0.1, momentum=0.9)


# Every group's hyperparameters, not only the first's (the optimizer's own).
net, opt = grouped(0.05 if odd else 0.02)
expect(ValueError, [f"xn.train optimizer differs across ranks: param_groups[1] lr {others}: 0.02, {last}: 0.05"],
       train, data(), net=net, optimizer=opt)
net, opt = grouped(0.02)
assert [e["lrs"] for e in train(data(), net=net, optimizer=opt).epochs] == [[0.1, 0.02]] * 2
expect(ValueError, [f"xn.train loss differs across ranks: label_smoothing {others}: 0.0, {last}: 0.1"],
       train, data(), loss=xn.losses.SoftmaxCrossEntropy(label_smoothing=0.1 if odd else 0.0))
expect(ValueError, [f"xn.evaluate model differs across ranks: layer 1 {others}: ReLU(), {last}: Tanh()"],
       xn.evaluate, model(xn.layers.Tanh if odd else xn.layers.ReLU), data(), loss="cross_entropy", comm=comm)
train(data(), optimizer="sgd" if odd else xn.optim.SGD())  # a name and the optimizer it names agree
# A model trained once more on the last rank would shuffle its epochs as later ones (xn.train counts them on).
net = model()
if odd:
    xn.train(net, data(), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=BATCH, progress=False)
expect(ValueError, [f"xn.train model differs across ranks: epochs trained by earlier xn.train calls {others}: 0, "
                    f"{last}: 1"], train, data(), net=net)
# The frozen layers decide which gradients the all-reduce packs: every rank must freeze the same ones, in
# xn.train and in a loop of one's own (where they may change between steps).
net = model()
if odd:
    net[0].requires_grad_(False)
expect(ValueError, [(f"xn.train model differs across ranks: frozen layers (requires_grad_(False)) {others}: [], "
                     f"{last}: ['0']")], train, data(), net=net)
net, loss = model(), xn.losses.SoftmaxCrossEntropy()
x, y = data()
for step in range(2):
    if step == 1 and odd:
        net[0].requires_grad_(False)
    loss.forward(net(x[rank::size]), y[rank::size])
    net.backward(loss.backward())
    if step == 0:
        comm.allreduce_grads(net, count=len(y[rank::size]))
expect(ValueError, ["allreduce_grads: the ranks hold different models", "param '0.W' is (4, 8) float32",
                    "frozen param '0.W' is (4, 8) float32"], comm.allreduce_grads, net, len(y[rank::size]))
net = model()
net[0].requires_grad_(False)
frozen = {k: v.copy() for k, v in net[0].params.items()}
train(data(), net=net)
assert all(np.array_equal(net[0].params[k], v) for k, v in frozen.items()) and not net[0].grads
print(f"settings ok: rank {rank}", flush=True)

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
