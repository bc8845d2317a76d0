"""One training epoch of a 784-100-10 ReLU MLP (batch 100, float32, SGD) on random data of MNIST's
shape: xpnet's layers vs the same computation written directly in NumPy (the seeds' style).

    python benchmarks/mlp_step.py [--n 60000] [--repeats 3] [--device cpu] [--clock cpu]

The two epochs run in turns (NumPy, xpnet, NumPy, ...), so that a change in the machine's load meets both. Prints
the best epoch of each and their ratio xpnet / NumPy (target on CPU: <= 1.10). ``--clock cpu`` times each epoch in
this process's CPU time instead of wall time: steadier on a shared machine, and fair at one BLAS thread
(``OMP_NUM_THREADS=1``) only, where neither loop runs work on other threads.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _threads import thread_line

import xpnet as xn


def numpy_epoch(x, t, params, lr, batch):
    """The book's TwoLayerNet step, hand-written: Affine - ReLU - Affine - SoftmaxWithLoss, SGD."""
    W1, b1, W2, b2 = params
    n = x.shape[0]
    for i in range(0, n, batch):
        xb, tb = x[i:i + batch], t[i:i + batch]
        h = xb @ W1 + b1
        mask = h > 0
        a = np.where(mask, h, 0)
        y = a @ W2 + b2
        z = y - y.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        # The seeds' SoftmaxWithLoss.forward computes the loss on every step, as xpnet's does.
        loss = -np.sum(np.log(p[np.arange(len(tb)), tb] + 1e-7)) / len(tb)  # noqa: F841
        dy = p
        dy[np.arange(len(tb)), tb] -= 1
        dy /= len(tb)
        dW2, db2 = a.T @ dy, dy.sum(axis=0)
        da = dy @ W2.T
        dh = np.where(mask, da, 0)
        dW1, db1 = xb.T @ dh, dh.sum(axis=0)
        W1 -= lr * dW1
        b1 -= lr * db1
        W2 -= lr * dW2
        b2 -= lr * db2


def xpnet_epoch(x, t, model, loss, opt, batch):
    n = x.shape[0]
    for i in range(0, n, batch):
        stop = min(i + batch, n)
        loss.forward(model.forward(x[i:stop, ...]), t[i:stop], check=False)
        model.backward(loss.backward(), input_grad=False)
        opt.step(model)


def best_of_turns(repeats, fns, clock=time.perf_counter):
    """The best time of each of ``fns`` over ``repeats`` rounds, each round running every one once in turn."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start = clock()
            fn()
            best[k] = min(best[k], clock() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: this process's CPU time (fair at OMP_NUM_THREADS=1 only)")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    x = rng.random((args.n, 784), dtype=np.float32)
    t = rng.integers(0, 10, args.n)
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(784, 100), xn.layers.ReLU(), xn.layers.Linear(100, 10))
    params = [np.array(model.named_params()[k]) for k in ("0.W", "0.b", "2.W", "2.b")]
    dev = xn.device(args.device, fallback=False)  # --device cuda times the GPU or fails, saying why
    model.to(dev)
    xd, td = xn.to_device(x, dev), xn.to_device(t, dev)
    loss, opt = xn.losses.SoftmaxCrossEntropy(), xn.optim.SGD(0.1)

    def run_xpnet():
        xpnet_epoch(xd, td, model, loss, opt, 100)
        dev.synchronize()

    numpy_epoch(x[:1000], t[:1000], [p.copy() for p in params], 0.1, 100)  # warm-up
    run_xpnet()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    t_np, t_xn = best_of_turns(args.repeats, [lambda: numpy_epoch(x, t, params, 0.1, 100), run_xpnet], clock)
    print(f"784-100-10 MLP, batch 100, float32, SGD, {args.n} samples, best of {args.repeats} in turns "
          f"({args.clock} time)")
    print(f"hand-written NumPy : {t_np:.3f} s/epoch")
    print(f"xpnet on {dev.name:<9} : {t_xn:.3f} s/epoch")
    print(f"ratio xpnet/NumPy  : {t_xn / t_np:.3f}  (target <= 1.10 on CPU)")
    print(thread_line())


if __name__ == "__main__":
    main()
