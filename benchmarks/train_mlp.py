"""Epoch time of a 784-100-10 MLP: ``xn.train`` against the same loop hand-written in NumPy.

The baseline is the book's style (Affine/Relu/SoftmaxWithLoss classes, SGD), with the same
shuffle, batch size, float32 data and initial weights, and the same bookkeeping (loss sum and
correct count per epoch). Both run in this process, alternating, and the best of ``--repeat``
runs is compared. On a machine with a GPU, xpnet on CuPy is timed as well.

    python benchmarks/train_mlp.py [--epochs 2] [--batch-size 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _threads import thread_line

import xpnet as xn


class Affine:
    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dout @ self.W.T


class Relu:
    def forward(self, x):
        self.mask = x <= 0
        return np.where(self.mask, 0.0, x).astype(x.dtype, copy=False)

    def backward(self, dout):
        return np.where(self.mask, 0.0, dout).astype(dout.dtype, copy=False)


class SoftmaxWithLoss:
    def forward(self, x, t):
        z = x - x.max(axis=1, keepdims=True)
        e = np.exp(z)
        self.y = e / e.sum(axis=1, keepdims=True)
        self.t = t
        n = x.shape[0]
        return -np.log(self.y[np.arange(n), t] + 1e-7).sum() / n

    def backward(self):
        n = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(n), self.t] -= 1
        return dx / n


def numpy_loop(params, x, t, epochs, batch_size, lr, seed):
    layers = [Affine(params["0.W"], params["0.b"]), Relu(), Affine(params["2.W"], params["2.b"])]
    last = SoftmaxWithLoss()
    n = x.shape[0]
    for epoch in range(1, epochs + 1):
        order = xn.datasets.epoch_permutation(n, seed, epoch)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            xb, tb = x[rows], t[rows]
            h = xb
            for layer in layers:
                h = layer.forward(h)
            loss_sum += last.forward(h, tb) * len(rows)
            correct += int((h.argmax(axis=1) == tb).sum())
            dout = last.backward()
            for layer in reversed(layers):
                dout = layer.backward(dout)
            for layer in (layers[0], layers[2]):
                layer.W -= lr * layer.dW
                layer.b -= lr * layer.db
    return loss_sum / n, correct / n


def make_model():
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Linear(784, 100), xn.layers.ReLU(), xn.layers.Linear(100, 10))


def load_data():
    try:
        (x, t), _ = xn.datasets.load_fashion_mnist(normalize=True, flatten=True, one_hot=False)
        return x.astype(np.float32), t.astype(np.int64), "Fashion-MNIST"
    except Exception as exc:  # no files and no network: the timing only needs the shapes
        rng = np.random.default_rng(0)
        print(f"Fashion-MNIST unavailable ({type(exc).__name__}); timing random data of its shape")
        return rng.random((60000, 784), dtype=np.float32), rng.integers(0, 10, 60000), "random"


def time_xpnet(x, t, epochs, batch_size, lr, device):
    model = make_model()
    start = time.perf_counter()
    h = xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(lr), epochs=epochs,
                 batch_size=batch_size, device=device, progress=False)
    return time.perf_counter() - start, h.epochs[-1]


def time_numpy(x, t, epochs, batch_size, lr):
    params = {k: np.array(xn.to_numpy(v)) for k, v in make_model().named_params().items()}
    start = time.perf_counter()
    loss, acc = numpy_loop(params, x, t, epochs, batch_size, lr, seed=0)
    return time.perf_counter() - start, {"train_loss": loss, "train_accuracy": acc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    x, t, name = load_data()
    print(f"{name}: x {x.shape} {x.dtype}, 784-100-10 MLP, SGD lr={args.lr}, batch {args.batch_size}, "
          f"{args.epochs} epochs, best of {args.repeat}")
    print(thread_line())
    ours, base = [], []
    for _ in range(args.repeat):
        s, logs_x = time_xpnet(x, t, args.epochs, args.batch_size, args.lr, "cpu")
        ours.append(s)
        s, logs_n = time_numpy(x, t, args.epochs, args.batch_size, args.lr)
        base.append(s)
    per = args.epochs
    print(f"numpy hand-written : {min(base) / per:.3f} s/epoch  (last epoch loss {logs_n['train_loss']:.4f}, "
          f"accuracy {logs_n['train_accuracy']:.4f})")
    print(f"xpnet train (cpu)  : {min(ours) / per:.3f} s/epoch  (last epoch loss {logs_x['train_loss']:.4f}, "
          f"accuracy {logs_x['train_accuracy']:.4f})")
    print(f"ratio xpnet/numpy  : {min(ours) / min(base):.3f}x  (target <= 1.10x)")
    if xn.cuda_available():
        time_xpnet(x, t, 1, args.batch_size, args.lr, "cuda")  # warm-up: CuPy compiles its kernels
        gpu = min(time_xpnet(x, t, args.epochs, args.batch_size, args.lr, "cuda")[0] for _ in range(args.repeat))
        print(f"xpnet train (cuda) : {gpu / per:.3f} s/epoch  ({min(ours) / gpu:.2f}x faster than xpnet on the CPU)")
    else:
        print(f"no GPU: {xn.backend.cuda_unavailable_reason()}")


if __name__ == "__main__":
    main()
