"""The Python a training step costs: an 8-4-2 ReLU MLP at batch 5 (float32, SGD), where the arithmetic is
negligible, written with xpnet's layers, loss and optimizer against the same step hand-written in NumPy.

    python benchmarks/tiny_step.py [--steps 5000] [--rounds 7] [--momentum 0.0]

The two run in turns (NumPy, xpnet, NumPy, ...), each round ``--steps`` steps timed in CPU time (less noisy than
wall time on a shared machine); prints the best round of each in microseconds per step, their ratio, and the
Python calls of one step of each (cProfile), the figures that ``benchmarks/mlp_step.py``'s gap is made of.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import numpy as np

from _threads import thread_line

import xpnet as xn


def numpy_step(x, t, params, velocities, lr, momentum):
    """The step xpnet's runs, hand-written: Affine - ReLU - Affine - softmax cross-entropy, SGD (PyTorch's momentum)."""
    W1, b1, W2, b2 = params
    h = x @ W1 + b1
    mask = h > 0
    a = np.where(mask, h, 0)
    y = a @ W2 + b2
    z = y - y.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    loss = -np.sum(np.log(p[np.arange(len(t)), t] + 1e-7)) / len(t)  # noqa: F841
    dy = p
    dy[np.arange(len(t)), t] -= 1
    dy /= len(t)
    da = dy @ W2.T
    dh = np.where(mask, da, 0)
    for w, g, v in zip(params, (x.T @ dh, dh.sum(axis=0), a.T @ dy, dy.sum(axis=0)), velocities):
        if momentum:
            v *= momentum
            v += g
            g = v
        w -= lr * g


def best_us(step, steps, best):
    """The least of ``best`` and this round's CPU microseconds per call of ``step``."""
    start = time.process_time()
    for _ in range(steps):
        step()
    return min(best, (time.process_time() - start) / steps * 1e6)


def calls_per_step(step, steps=200):
    """Python function calls (cProfile's count) per call of ``step``."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(steps):
        step()
    profile.disable()
    return pstats.Stats(profile).total_calls / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--momentum", type=float, default=0.0)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    x, t = rng.random((5, 8), dtype=np.float32), rng.integers(0, 2, 5)
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(8, 4), xn.layers.ReLU(), xn.layers.Linear(4, 2))
    params = [np.array(model.named_params()[k]) for k in ("0.W", "0.b", "2.W", "2.b")]
    velocities = [np.zeros_like(p) for p in params]
    loss, opt = xn.losses.SoftmaxCrossEntropy(), xn.optim.SGD(0.1, momentum=args.momentum)

    def xpnet_step():
        loss.forward(model.forward(x), t, check=False)
        model.backward(loss.backward(), input_grad=False)
        opt.step(model)

    def hand_step():
        numpy_step(x, t, params, velocities, 0.1, args.momentum)

    for _ in range(200):  # warm-up: Numba's kernels loaded, the optimizer's step plan made
        xpnet_step()
        hand_step()
    best = [float("inf"), float("inf")]
    for _ in range(args.rounds):
        best = [best_us(fn, args.steps, b) for fn, b in zip((hand_step, xpnet_step), best)]
    print(f"8-4-2 MLP, batch 5, float32, SGD(momentum={args.momentum}), {args.steps} steps a round, best of "
          f"{args.rounds} in turns (CPU time)")
    print(f"hand-written NumPy : {best[0]:.1f} us/step, {calls_per_step(hand_step):.0f} Python calls")
    print(f"xpnet              : {best[1]:.1f} us/step, {calls_per_step(xpnet_step):.0f} Python calls")
    print(f"ratio xpnet/NumPy  : {best[1] / best[0]:.2f}")
    print(thread_line())


if __name__ == "__main__":
    main()
