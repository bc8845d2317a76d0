"""The BLAS thread cliff: an ``xn.train`` epoch on an idle machine and under a competing CPU load.

The load is one busy process per core, started and ended by this script. Under it the same epoch runs
with xpnet's default (``blas_threads="auto"``: the thread count chosen by timing, see
``xpnet/backend/threads.py``), with 1 thread, and with one thread per core (OpenBLAS's own default,
what xpnet used before), interleaved, best of ``--repeat``; then the load ends and the default and one
thread per core run again on the idle machine. The model is the seeds' 784-100-10 MLP (batch 100, SGD)
on Fashion-MNIST (random data of its shape when the files are absent).

    python benchmarks/thread_load.py [--repeat 3] [--samples 60000] [--model mlp|cnn]

Prints a table of seconds per epoch and two ratios: the default under load over the best fixed count
under the same load (target <= 1.3), and the default idle over one thread per core idle (target <= 1.0,
within the machine's noise).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import numpy as np

from _threads import thread_line

import xpnet as xn


def _spin(stop: "multiprocessing.synchronize.Event") -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


class Load:
    """One busy process per core while inside."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self) -> "Load":
        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self.procs = [ctx.Process(target=_spin, args=(self.stop,), daemon=True) for _ in range(self.n)]
        for p in self.procs:
            p.start()
        time.sleep(1.0)  # let them reach their loops
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()


def data(samples: int, model: str):
    try:
        (x, t), _ = xn.datasets.load_fashion_mnist(flatten=(model == "mlp"))
        name = "Fashion-MNIST"
    except Exception as exc:  # no files and no network: the timing only needs the shapes
        rng = np.random.default_rng(0)
        x = rng.random((60000, 784) if model == "mlp" else (60000, 1, 28, 28), dtype=np.float32)
        t, name = rng.integers(0, 10, 60000), f"random data ({type(exc).__name__})"
    return x[:samples], t[:samples], name


def make(model: str):
    xn.init.seed(0)
    L = xn.layers
    if model == "mlp":
        return xn.Sequential(L.Linear(784, 100), L.ReLU(), L.Linear(100, 10))
    return xn.Sequential(L.Conv2d(1, 16, 3, padding=1), L.ReLU(), L.MaxPool2d(2), L.Conv2d(16, 32, 3, padding=1),
                         L.ReLU(), L.MaxPool2d(2), L.Flatten(), L.Linear(32 * 7 * 7, 10))


def epoch(x, t, model: str, setting) -> float:
    net = make(model)
    start = time.perf_counter()
    xn.train(net, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=1, batch_size=100,
             device="cpu", progress=False, blas_threads=setting)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--samples", type=int, default=60000)
    ap.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    args = ap.parse_args()
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XPNET_BLAS_THREADS"):
        if k in os.environ:
            raise SystemExit(f"unset {k}: this benchmark compares thread counts itself")
    x, t, name = data(args.samples, args.model)
    cores = os.cpu_count() or 1
    print(f"{name}: {len(x)} samples, model {args.model}, batch 100, SGD; load: {cores} busy processes; "
          f"best of {args.repeat}")
    print(thread_line())
    epoch(x[:1000], t[:1000], args.model, "auto")  # warm-up: Numba compiles, pages fault in
    settings = {"default (auto)": "auto", "1 thread": 1, f"{cores} threads": cores}
    loaded = {k: [] for k in settings}
    with Load(cores):
        for _ in range(args.repeat):
            for label, setting in settings.items():
                loaded[label].append(epoch(x, t, args.model, setting))
    idle = {"default (auto)": [], f"{cores} threads": []}
    for _ in range(args.repeat):
        for label in idle:
            idle[label].append(epoch(x, t, args.model, settings[label]))
    print("| machine | BLAS threads | s/epoch (best) | all runs |")
    print("|---|---|---:|---|")
    for machine, table in (("loaded", loaded), ("idle", idle)):
        for label, runs in table.items():
            print(f"| {machine} | {label} | {min(runs):.3f} | {', '.join(f'{r:.3f}' for r in runs)} |")
    best_fixed = min(min(loaded["1 thread"]), min(loaded[f"{cores} threads"]))
    print(f"loaded: default / best fixed count = {min(loaded['default (auto)']) / best_fixed:.2f}x (target <= 1.3)")
    print(f"idle:   default / {cores} threads (the old default) = "
          f"{min(idle['default (auto)']) / min(idle[f'{cores} threads']):.2f}x (target <= 1.0, within noise)")


if __name__ == "__main__":
    main()
