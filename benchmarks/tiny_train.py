"""The Python of an ``xn.train`` step: one epoch of an 8-4-2 ReLU MLP at batch 5 (float32, SGD), where the
arithmetic is negligible, against the same epoch hand-written in NumPy (the same batches gathered in the same
order, each through the step of ``benchmarks/tiny_step.py``; no loss sum nor correct count, which ``xn.train``
keeps).

    python benchmarks/tiny_train.py [--samples 10000] [--rounds 5] [--momentum 0.0] [--clip-grad-norm 1.0]

The two run in turns (NumPy, xpnet, NumPy, ...), each round one epoch timed in CPU time (steadier than wall
time on a shared machine); prints the best round of each in microseconds per step, their ratio, and the Python
calls per step of each (cProfile): what ``xn.train`` adds to the step of a loop of one's own, run setup included.
``--clip-grad-norm``: ``xn.train`` clips (``clip_grad_norm=``), the NumPy loop does not (its ratio then includes
the clipping's cost).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import numpy as np

from _threads import thread_line
from tiny_step import numpy_step

import xpnet as xn


def numpy_epoch(x, t, params, velocities, lr, momentum, batch, epoch):
    """One epoch of ``numpy_step`` over the batches ``xn.train`` draws for ``epoch`` (seed 0)."""
    order = xn.datasets.epoch_permutation(x.shape[0], 0, epoch)
    for start in range(0, x.shape[0], batch):
        rows = order[start:start + batch]
        numpy_step(x[rows], t[rows], params, velocities, lr, momentum)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--momentum", type=float, default=0.0)
    ap.add_argument("--clip-grad-norm", type=float, default=None, help="xn.train's clip_grad_norm (NumPy: none)")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    x, t = rng.random((args.samples, 8), dtype=np.float32), rng.integers(0, 2, args.samples)
    steps = -(-args.samples // 5)

    def model():
        xn.init.seed(0)
        return xn.Sequential(xn.layers.Linear(8, 4), xn.layers.ReLU(), xn.layers.Linear(4, 2))

    params = [np.array(model().named_params()[k]) for k in ("0.W", "0.b", "2.W", "2.b")]
    velocities = [np.zeros_like(p) for p in params]

    def xpnet_epoch():
        xn.train(model(), (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1, momentum=args.momentum),
                 epochs=1, batch_size=5, device="cpu", progress=False, blas_threads=1,
                 clip_grad_norm=args.clip_grad_norm)

    def hand_epoch():
        numpy_epoch(x, t, params, velocities, 0.1, args.momentum, 5, 1)

    def cpu_us(fn):
        start = time.process_time()
        fn()
        return (time.process_time() - start) / steps * 1e6

    def calls(fn):
        profile = cProfile.Profile()
        profile.enable()
        fn()
        profile.disable()
        return pstats.Stats(profile).total_calls / steps

    xpnet_epoch()  # warm-up: Numba's kernels loaded
    hand_epoch()
    best = [float("inf"), float("inf")]
    for _ in range(args.rounds):
        best = [min(b, cpu_us(fn)) for fn, b in zip((hand_epoch, xpnet_epoch), best)]
    clip = "" if args.clip_grad_norm is None else f", xn.train with clip_grad_norm={args.clip_grad_norm}"
    print(f"8-4-2 MLP, batch 5, float32, SGD(momentum={args.momentum}){clip}, one epoch of {args.samples} samples "
          f"({steps} steps) a round, best of {args.rounds} in turns (CPU time)")
    print(f"hand-written NumPy loop: {best[0]:.1f} us/step, {calls(hand_epoch):.0f} Python calls a step")
    print(f"xn.train               : {best[1]:.1f} us/step, {calls(xpnet_epoch):.0f} Python calls a step")
    print(f"ratio xn.train/NumPy   : {best[1] / best[0]:.2f}")
    print(thread_line())


if __name__ == "__main__":
    main()
