"""Epoch time of a 784-100-10 MLP: ``xn.train`` against the same loop hand-written in NumPy and in PyTorch.

The NumPy baseline is the book's style (Affine/Relu/SoftmaxWithLoss classes, SGD); the PyTorch one is
the loop a PyTorch user writes (tensors, ``F.cross_entropy``, ``loss.backward()``, ``torch.optim.SGD``).
All three start from the same weights, draw the same batches from the same float32 data, and keep the
same bookkeeping (loss sum and correct count per epoch). They run in this process, interleaved, for
``--repeat`` rounds, and the best time of each is compared. NumPy's loop and xpnet run twice a round: with
the BLAS's own thread count (xpnet's default chooses its count by timing, ``blas_threads="auto"``) and with
1 thread, so that the loop's own cost shows at equal threads. The last lines say how far each is from this
machine's matrix-product peak, measured in the same run (a large float32 product through NumPy's BLAS).
On a machine with a GPU, xpnet on CuPy is timed as well. ``--clock cpu`` times the three loops at one thread
each (PyTorch under ``torch.set_num_threads(1)``) in this process's CPU time instead: steadier on a shared
machine, where wall time measures the other jobs as much as the loops.

    python benchmarks/train_mlp.py [--epochs 1] [--batch-size 100] [--repeat 4] [--samples N] [--clock cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import numpy as np

from _threads import thread_line
from threadpoolctl import threadpool_limits

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


def torch_loop(torch, params, x, t, epochs, batch_size, lr, seed):
    """The same epochs as a PyTorch user writes them (weights laid out as xpnet's: y = x @ W + b)."""
    f = torch.nn.functional
    w = [torch.tensor(params[k], requires_grad=True) for k in ("0.W", "0.b", "2.W", "2.b")]
    opt = torch.optim.SGD(w, lr=lr)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    n = x.shape[0]
    for epoch in range(1, epochs + 1):
        order = torch.from_numpy(xn.datasets.epoch_permutation(n, seed, epoch))
        loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            xb, tb = xt[rows], tt[rows]
            out = torch.relu(xb @ w[0] + w[1]) @ w[2] + w[3]
            loss = f.cross_entropy(out, tb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                loss_sum += loss * len(rows)
                correct += (out.argmax(dim=1) == tb).sum()
    return float(loss_sum) / n, int(correct) / n


def epoch_gflop(n, batch_size, sizes=(784, 100, 10), input_grad=False):
    """GFLOP of one epoch's matrix products: forward, dW and dx of each Linear (the first layer's dx
    only with ``input_grad``: xpnet skips it, the book's loop computes it)."""
    flop = 0
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        flop += 2 * n * a * b * (3 if i or input_grad else 2)
    return flop / 1e9


def peak_gflops(repeat=5):
    """This machine's float32 matrix-product rate through NumPy's BLAS: best of a few 2048^3 products."""
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    best = min(_timed(lambda: a @ a) for _ in range(repeat))
    return 2 * 2048 ** 3 / best / 1e9


CLOCK = time.perf_counter  # the runs' clock: time.process_time with --clock cpu


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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


def time_xpnet(x, t, epochs, batch_size, lr, device, blas_threads=None):
    model = make_model()
    start = CLOCK()
    h = xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(lr), epochs=epochs,
                 batch_size=batch_size, device=device, progress=False, blas_threads=blas_threads)
    return CLOCK() - start, h.epochs[-1]


def time_numpy(x, t, epochs, batch_size, lr, threads=None):
    """The hand-written loop with the BLAS's own thread count, or ``threads`` (threadpoolctl)."""
    params = {k: np.array(xn.to_numpy(v)) for k, v in make_model().named_params().items()}
    limit = contextlib.nullcontext() if threads is None else threadpool_limits(threads, user_api="blas")
    with limit:
        start = CLOCK()
        loss, acc = numpy_loop(params, x, t, epochs, batch_size, lr, seed=0)
        seconds = CLOCK() - start
    return seconds, {"train_loss": loss, "train_accuracy": acc}


def time_torch(torch, x, t, epochs, batch_size, lr):
    params = {k: np.array(xn.to_numpy(v)) for k, v in make_model().named_params().items()}
    start = CLOCK()
    loss, acc = torch_loop(torch, params, x, t, epochs, batch_size, lr, seed=0)
    return CLOCK() - start, {"train_loss": loss, "train_accuracy": acc}


def data_and_header(torch, args, clock: str = "") -> tuple:
    """The training data (its first ``args.samples`` where given), after printing what is timed and the threads."""
    x, t, name = load_data()
    if args.samples:
        x, t = x[:args.samples], t[:args.samples]
    print(f"{name}: x {x.shape} {x.dtype}, 784-100-10 MLP, SGD lr={args.lr}, batch {args.batch_size}, "
          f"{args.epochs} epoch(s) a run, {args.repeat} interleaved rounds, best of each{clock}")
    print(thread_line(torch))
    return x, t


def one_thread_cpu_rounds(torch, args) -> None:
    """``--clock cpu``: the NumPy loop, ``xn.train(blas_threads=1)`` and the PyTorch loop, each at one thread, in
    turns for ``args.repeat`` rounds, by CPU time; prints the best of each and the ratios."""
    x, t = data_and_header(torch, args, ", CPU time at one thread each")
    time_xpnet(x, t, 1, args.batch_size, args.lr, "cpu", blas_threads=1)  # warm-ups: Numba's kernels loaded,
    if torch is not None:                                                 # PyTorch's first-call costs paid
        time_torch(torch, x[:1000], t[:1000], 1, args.batch_size, args.lr)
    runs = {"numpy1": lambda: time_numpy(x, t, args.epochs, args.batch_size, args.lr, threads=1),
            "xpnet1": lambda: time_xpnet(x, t, args.epochs, args.batch_size, args.lr, "cpu", blas_threads=1)}
    if torch is not None:
        runs["torch1"] = lambda: time_torch(torch, x, t, args.epochs, args.batch_size, args.lr)
    times = {k: [] for k in runs}
    for _ in range(args.repeat):
        for k, run in runs.items():
            times[k].append(run()[0] / args.epochs)
    best = {k: min(v) for k, v in times.items()}
    labels = {"numpy1": "numpy hand-written, 1 BLAS thread ", "xpnet1": "xpnet train, blas_threads=1       ",
              "torch1": "pytorch hand-written, 1 thread    "}
    for k in best:
        print(f"{labels[k]}: {best[k]:.3f} CPU s/epoch (runs {', '.join(f'{s:.3f}' for s in times[k])})")
    print(f"ratio xpnet / numpy, both 1 thread, CPU time  : {best['xpnet1'] / best['numpy1']:.3f}x")
    if "torch1" in best:
        print(f"ratio xpnet / pytorch, both 1 thread, CPU time: {best['xpnet1'] / best['torch1']:.3f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--samples", type=int, default=None, help="the first N training samples (default: all)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: every loop at one thread, timed in this process's CPU time")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    if args.clock == "cpu":
        global CLOCK
        CLOCK = time.process_time
        if torch is not None:
            torch.set_num_threads(1)
        # CPU time sums every thread's: the loops at one thread each, where it measures the loop alone
        with threadpool_limits(1, user_api="blas"):
            one_thread_cpu_rounds(torch, args)
        return
    x, t = data_and_header(torch, args)
    times = {"numpy": [], "numpy1": [], "xpnet": [], "xpnet1": [], "torch": []}
    logs = {}
    for _ in range(args.repeat):
        s, logs["xpnet"] = time_xpnet(x, t, args.epochs, args.batch_size, args.lr, "cpu")
        times["xpnet"].append(s)
        s, logs["numpy"] = time_numpy(x, t, args.epochs, args.batch_size, args.lr)
        times["numpy"].append(s)
        s, logs["xpnet1"] = time_xpnet(x, t, args.epochs, args.batch_size, args.lr, "cpu", blas_threads=1)
        times["xpnet1"].append(s)
        s, logs["numpy1"] = time_numpy(x, t, args.epochs, args.batch_size, args.lr, threads=1)
        times["numpy1"].append(s)
        if torch is not None:
            s, logs["torch"] = time_torch(torch, x, t, args.epochs, args.batch_size, args.lr)
            times["torch"].append(s)
    per = args.epochs
    best = {k: min(v) / per for k, v in times.items() if v}
    labels = {"numpy": "numpy hand-written, BLAS's own threads", "numpy1": "numpy hand-written, 1 BLAS thread   ",
              "xpnet": "xpnet train, default (auto threads)  ", "xpnet1": "xpnet train, blas_threads=1         ",
              "torch": "pytorch hand-written, its own threads"}
    for k in best:
        print(f"{labels[k]}: {best[k]:.3f} s/epoch (runs {', '.join(f'{s / per:.3f}' for s in times[k])}; last "
              f"epoch loss {logs[k]['train_loss']:.4f}, accuracy {logs[k]['train_accuracy']:.4f})")
    fastest_numpy = min(best["numpy"], best["numpy1"])
    print(f"ratio xpnet default / faster numpy loop: {best['xpnet'] / fastest_numpy:.3f}x  (target <= 1.10x)")
    print(f"ratio xpnet / numpy, both 1 thread     : {best['xpnet1'] / best['numpy1']:.3f}x  (the loop's own cost)")
    if "torch" in best:
        print(f"ratio xpnet default / pytorch          : {best['xpnet'] / best['torch']:.3f}x  (target <= 0.80x)")
    n = x.shape[0]
    peak = peak_gflops()
    floor = epoch_gflop(n, args.batch_size) / peak
    print(f"matrix products: {epoch_gflop(n, args.batch_size):.1f} GFLOP an epoch (the book's loop also computes the "
          f"first layer's dx: {epoch_gflop(n, args.batch_size, input_grad=True):.1f}); this machine's float32 peak "
          f"through NumPy's BLAS {peak:.0f} GFLOP/s, so {floor:.3f} s an epoch at the peak")
    print("times the peak's epoch: " + ", ".join(f"{k} {best[k] / floor:.1f}x" for k in best))
    if xn.cuda_available():
        time_xpnet(x, t, 1, args.batch_size, args.lr, "cuda")  # warm-up: CuPy compiles its kernels
        gpu = min(time_xpnet(x, t, args.epochs, args.batch_size, args.lr, "cuda")[0] for _ in range(args.repeat))
        print(f"xpnet train (cuda) : {gpu / per:.3f} s/epoch  ({min(times['xpnet']) / gpu:.2f}x faster than xpnet on "
              "the CPU)")
    else:
        print(f"no GPU: {xn.backend.cuda_unavailable_reason()}")


if __name__ == "__main__":
    main()
