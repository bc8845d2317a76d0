"""Epoch time of xpnet, hand-written NumPy (the seeds' style) and PyTorch eager, side by side.

Workloads: MLP 784-100-10, MLP 784-1000-1000-10, the CNN of benchmarks/cnn_epoch.py and a modern small
CNN (two 3x3 conv-BatchNorm-ReLU-pool blocks, Dropout; no hand-written NumPy version), at batch
100 and 1000, float32, SGD and Adam; below the table, the LSTM language model of benchmarks/lstm_lm.py
at the book's BetterRnnlm sizes against PyTorch's nn.LSTM (ms per step; with --device cuda on CuPy
against PyTorch CUDA).
Each implementation runs a fixed number of steps on random data of Fashion-MNIST's shape in this
one process (best of --repeats, implementations interleaved)
and the time is extrapolated to a 60,000-image epoch. Prints a Markdown table: each time with its
ratio to the fastest of the row, then xpnet's time over the hand-written NumPy time and over PyTorch's.
Where Numba is installed, xpnet runs with its Numba kernels, and a column times the same net with
them off (``xn.backend.set_numba(False)``: BatchNorm, ReLU, MaxPool2d and the SGD, Momentum and Adam
updates as portable NumPy code). Where MKL runs xpnet's products (``xpnet[mkl]``: the threads line
says ``MKL: on``), a column times the same net with MKL off (``xn.backend.set_mkl(False)``: every
product on NumPy's own BLAS).

    python benchmarks/compare.py [--steps 30] [--repeats 3] [--device cpu|cuda] [--only mlp-small ...]

On --device cuda xpnet runs on CuPy and PyTorch on CUDA; the NumPy column stays on the CPU. There xpnet's
step is also timed captured as a CUDA graph (``xn.train(graph=...)``'s launches; a cell stays empty for a
model with a layer the capture does not take) beside PyTorch's captured step. That table lives in ``compare_cuda.py``.

    python benchmarks/compare.py --backends torch:cpu jax:cpu [--repeats 3] [--samples 60000]

prints instead one xn.train epoch of the MLP 784-100-10 (batch 100, Adam) on Fashion-MNIST (random
data of its shape when the files are absent) with xpnet on NumPy and on each named device, after an
untimed warm-up epoch on 1,000 images (JAX compiles each operation on first use), runs interleaved,
best of --repeats, and each time over the NumPy time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import numpy as np

# PyTorch's OpenMP threads spin after each op by default and take the cores from NumPy's BLAS in the
# interleaved runs; passive waiting keeps the comparison fair to both.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _steps import EPOCH, LR, best_times, peak_memory, torch_impl, xpnet_impl  # noqa: E402 - shared with compare_cuda
from _threads import mkl_runs_products, thread_line  # noqa: E402
import lstm_lm  # noqa: E402 - the LSTM language model's row
from cnn_epoch import BookNet, params_of, xpnet_model  # noqa: E402 - the book-style CNN lives there

import xpnet as xn  # noqa: E402


# -- hand-written NumPy, the seeds' style -------------------------------------------------------------

class NumpyAdam:
    """The book's Adam, on a dict of arrays."""

    def __init__(self, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t, self.m, self.v = lr, b1, b2, eps, 0, {}, {}

    def __call__(self, p, g):
        self.t += 1
        lr_t = self.lr * np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        for k in p:
            m = self.m.setdefault(k, np.zeros_like(p[k]))
            v = self.v.setdefault(k, np.zeros_like(p[k]))
            m += (1 - self.b1) * (g[k] - m)
            v += (1 - self.b2) * (g[k] ** 2 - v)
            p[k] -= lr_t * m / (np.sqrt(v) + self.eps)


def numpy_sgd(lr):
    def update(p, g):
        for k in p:
            p[k] -= lr * g[k]
    return update


class NumpyMLP:
    """Affine-ReLU-...-Affine-SoftmaxWithLoss, hand-written; params W1, b1, W2, ..."""

    def __init__(self, params, update):
        self.p = {k: v.copy() for k, v in params.items()}
        self.update = update
        self.depth = len(params) // 2

    def step(self, x, t):
        p, acts, masks = self.p, [x], []
        for i in range(1, self.depth + 1):
            a = acts[-1] @ p[f"W{i}"] + p[f"b{i}"]
            if i < self.depth:
                masks.append(a > 0)
                a = np.where(masks[-1], a, 0)
            acts.append(a)
        y = acts[-1]
        z = y - y.max(axis=1, keepdims=True)
        e = np.exp(z)
        dy = e / e.sum(axis=1, keepdims=True)
        # The seeds' SoftmaxWithLoss.forward computes the loss on every step, as xpnet's does.
        self.loss = -np.sum(np.log(dy[np.arange(len(t)), t] + 1e-7)) / len(t)
        dy[np.arange(len(t)), t] -= 1
        dy /= len(t)
        g = {}
        for i in range(self.depth, 0, -1):
            g[f"W{i}"], g[f"b{i}"] = acts[i - 1].T @ dy, dy.sum(axis=0)
            if i > 1:
                dy = np.where(masks[i - 2], dy @ p[f"W{i}"].T, 0)
        self.update(p, g)


# -- the workloads ----------------------------------------------------------------------------------------

def mlp(sizes):
    xn.init.seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(xn.layers.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(xn.layers.ReLU())
    return xn.Sequential(*layers)


def cnn_modern():
    """Two 3x3 conv blocks with padding and batch norm: the convnet people write after the book."""
    xn.init.seed(0)
    L = xn.layers
    return xn.Sequential(L.Conv2d(1, 32, 3, padding=1), L.BatchNorm(32), L.ReLU(), L.MaxPool2d(2),
                         L.Conv2d(32, 64, 3, padding=1), L.BatchNorm(64), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
                         L.Linear(3136, 128), L.ReLU(), L.Dropout(0.3), L.Linear(128, 10))


WORKLOADS = {
    "mlp-small": ("MLP 784-100-10", lambda: mlp((784, 100, 10)), (784,)),
    "mlp-large": ("MLP 784-1000-1000-10", lambda: mlp((784, 1000, 1000, 10)), (784,)),
    "cnn": ("CNN conv5x5x30-pool-100-10", xpnet_model, (1, 28, 28)),
    "cnn-modern": ("CNN 2x(conv3x3-BN-ReLU-pool)-128-10", cnn_modern, (1, 28, 28)),
}


def numpy_impl(workload, model, optimizer):
    update = numpy_sgd(LR["sgd"]) if optimizer == "sgd" else NumpyAdam(LR["adam"])
    if workload == "cnn-modern":
        return None  # no hand-written NumPy version of this net
    if workload == "cnn":
        net = BookNet(params_of(model), update=update)
        return lambda x, t: net.step(x, t, LR["sgd"])
    params = {}
    for k, v in model.named_params().items():
        index, name = k.split(".")
        params[f"{name}{int(index) // 2 + 1}"] = xn.to_numpy(v).copy()
    return NumpyMLP(params, update).step


def switched_off(step, switch):
    """``step`` with one family of xpnet's fast paths switched off while it runs (``switch``:
    ``xn.backend.set_numba`` or ``xn.backend.set_mkl``)."""
    def run(x, t):
        previous = switch(False)
        try:
            step(x, t)
        finally:
            switch(previous)
    return run


def rows(args):
    """``(workload, title, make, batch, optimizer, x, t)`` for every row of the table, the data drawn once."""
    rng = np.random.default_rng(0)
    for key in args.only:
        title, make, shape = WORKLOADS[key]
        for batch in args.batches:
            x = rng.random((batch, *shape), dtype=np.float32)
            t = rng.integers(0, 10, batch)
            for optimizer in ("sgd", "adam"):
                yield key, title, make, batch, optimizer, x, t


def backends_table(devices, samples, repeats):
    """xpnet's own layers on NumPy and on other array libraries: one training epoch each."""
    try:
        (x, t), _ = xn.datasets.load_fashion_mnist()
        data = "Fashion-MNIST"
    except Exception as exc:  # no files: the same shapes, random values
        rng = np.random.default_rng(0)
        x, t = rng.random((60_000, 784), dtype=np.float32), rng.integers(0, 10, 60_000)
        data = f"random data of Fashion-MNIST's shape ({type(exc).__name__})"
    x, t = x[:samples], t[:samples]
    devices = [xn.device("cpu")] + [xn.device(d, fallback=False) for d in devices]
    print(f"xn.train, one epoch of MLP 784-100-10, batch 100, Adam(1e-3), {len(x)} images of {data}; "
          f"best of {repeats}, devices interleaved\n")
    print("| xpnet on | s/epoch | x NumPy | train loss |")
    print("|---|---:|---:|---:|")
    best, loss = {d.name: float("inf") for d in devices}, {}
    for dev in devices:  # untimed: JAX compiles each operation for each shape on first use
        xn.train(mlp((784, 100, 10)), (x[:1000], t[:1000]), loss="cross_entropy", optimizer=xn.optim.Adam(1e-3),
                 epochs=1, batch_size=100, device=dev, seed=0, progress=False)
    for _ in range(repeats):
        for dev in devices:
            history = xn.train(mlp((784, 100, 10)), (x, t), loss="cross_entropy", optimizer=xn.optim.Adam(1e-3),
                               epochs=1, batch_size=100, device=dev, seed=0, progress=False)
            best[dev.name] = min(best[dev.name], history.epochs[0]["seconds"])
            loss[dev.name] = history.epochs[0]["train_loss"]
    for dev in devices:
        print(f"| {dev.name} | {best[dev.name]:.2f} | {best[dev.name] / best['cpu']:.2f} | {loss[dev.name]:.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    ap.add_argument("--batches", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--backends", nargs="+", metavar="DEVICE", help="time xpnet itself on these devices "
                    "(e.g. torch:cpu jax:cpu) beside NumPy instead of the table above")
    ap.add_argument("--samples", type=int, default=EPOCH, help="images per epoch with --backends")
    ap.add_argument("--lstm-steps", type=int, default=3, help="steps per measurement of the LSTM language model "
                    "below the table (benchmarks/lstm_lm.py; 0: none)")
    ap.add_argument("--lstm-size", type=int, nargs=2, default=[10000, 650], metavar=("VOCAB", "HIDDEN"))
    ap.add_argument("--compile", action="store_true", help="on --device cuda, also time torch.compile("
                    "mode='reduce-overhead') (compiles each row first: minutes)")
    args = ap.parse_args()
    dev = xn.device(args.device, fallback=False)  # --device cuda times the GPU or fails, saying why
    try:
        import torch
    except ImportError:
        torch = None
        print("torch is not installed: the PyTorch column is skipped")
    tdev = "cuda" if dev.is_cupy else "cpu"

    print(f"machine: {platform.processor() or platform.machine()}; xpnet on {dev.name}")
    print(thread_line(torch))
    if args.backends:
        backends_table(args.backends, args.samples, args.repeats)
        return
    print(f"{args.steps} steps per measurement, best of {args.repeats}, extrapolated to {EPOCH} images\n")
    if dev.is_cupy:
        if torch is None or not torch.cuda.is_available():
            raise SystemExit("--device cuda compares against PyTorch on CUDA, which is not available here")
        import compare_cuda  # noqa: PLC0415 - beside this file, only for this table

        compare_cuda.cuda_table(args, dev, torch, rows(args))
        return
    numba = dev.is_numpy and xn.backend.fast_path("relu_forward", np) is not None
    mkl = dev.is_numpy and mkl_runs_products()
    print("| workload | batch | optimizer | xpnet s/epoch (x fastest) | xpnet without Numba s/epoch (x fastest) | "
          + ("xpnet without MKL s/epoch (x fastest) | " if mkl else "")
          + "NumPy s/epoch (x fastest) | PyTorch s/epoch (x fastest) | xpnet/NumPy | "
          f"xpnet/PyTorch | xpnet peak {'device (CuPy pool)' if dev.is_cupy else 'host'} MiB/step |")
    print("|---|---:|---|---:|---:|" + ("---:|" if mkl else "") + "---:|---:|---:|---:|---:|")
    for key, title, make, batch, optimizer, x, t in rows(args):
        model = make()
        impls, sync = {}, {}
        numpy_step = numpy_impl(key, model, optimizer)
        if numpy_step is not None:
            impls["numpy"], sync["numpy"] = (numpy_step, x, t), (lambda: None)
        if torch is not None:
            tx, tt = torch.from_numpy(x).to(tdev), torch.from_numpy(t).to(tdev)
            impls["torch"] = (torch_impl(torch, model, optimizer, tdev), tx, tt)
            sync["torch"] = torch.cuda.synchronize if tdev == "cuda" else (lambda: None)
        model.to(dev)
        impls["xpnet"] = (xpnet_impl(model, optimizer), dev.asarray(x), dev.asarray(t))
        sync["xpnet"] = dev.synchronize
        if numba:  # the same net with BatchNorm, ReLU and MaxPool2d as portable NumPy code, interleaved
            impls["xpnet-no-numba"] = (switched_off(xpnet_impl(make(), optimizer), xn.backend.set_numba), x, t)
            sync["xpnet-no-numba"] = dev.synchronize
        if mkl:  # the same net with every product on NumPy's own BLAS, interleaved
            impls["xpnet-no-mkl"] = (switched_off(xpnet_impl(make(), optimizer), xn.backend.set_mkl), x, t)
            sync["xpnet-no-mkl"] = dev.synchronize
        best = best_times(impls, args.steps, args.repeats, sync)
        peak = peak_memory(*impls["xpnet"], dev)
        per_epoch = {k: v * EPOCH / batch for k, v in best.items()}
        fastest = min(per_epoch.values())

        def cell(name):  # epoch seconds and the ratio to the row's fastest implementation
            return f"{per_epoch[name]:.2f} ({per_epoch[name] / fastest:.2f}x)" if name in per_epoch else "-"

        def ratio(name):
            return f"{per_epoch['xpnet'] / per_epoch[name]:.2f}" if name in per_epoch else "-"

        print(f"| {title} | {batch} | {optimizer} | {cell('xpnet')} | {cell('xpnet-no-numba')} | "
              + (f"{cell('xpnet-no-mkl')} | " if mkl else "") + f"{cell('numpy')} | {cell('torch')} | "
              f"{ratio('numpy')} | {ratio('torch')} | {peak / 2**20:.1f} |",
              flush=True)
    if torch is not None and args.lstm_steps:
        print()
        lstm_lm.report(torch, args.lstm_steps, args.repeats, *args.lstm_size)  # the book's BetterRnnlm sizes


if __name__ == "__main__":
    main()
