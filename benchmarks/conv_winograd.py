"""Conv2d 3x3 (stride 1, padding 1) by Winograd F(2x2, 3x3) (``_winograd.py``, beside this file) against Conv2d's
im2col path and PyTorch's CPU convolution: forward, dW (+ db), dx and forward + backward, interleaved in one process.

    python benchmarks/conv_winograd.py [--batch 100] [--shapes 32,64,14 16,32,28] [--steps 3] [--repeats 10]

The default shape is the second conv of ``compare.py``'s cnn-modern (32 -> 64 channels, 14x14 images); its first
(1 -> 32 at 28x28) has too few input channels for Winograd's 16 products to pay for its transforms. Before timing,
Winograd's y, dx, dW and db are checked against the layer's (float32 rtol 1e-4, float64 1e-10; odd and even
sizes, padding 0, 1 and (2, 1)). Each phase runs after an untimed forward where it needs one ("dx": the layer
frozen, no dW; "dW": ``backward_params``, no dx); PyTorch's dW and dx include its forward. Best of ``--repeats``
rounds of ``--steps`` calls, the order rotated every round.

Not adopted (figures as printed, this 2-core machine, load average 3-5.4 from other engineers' tests): for
32 -> 64 at 14x14, batch 100, Winograd/im2col forward+backward was 0.82, 0.80 and 0.75 with 1 BLAS thread
(``OMP_NUM_THREADS=1``; forward 0.68-0.71, dx 0.70-0.83, dW 1.19-1.29), but with NumPy's default 2 threads 0.81,
0.95, 0.84 and 1.18 in four runs (the first two with dW as (V D^T)^T) and 1.59 and 1.55 in the last two (load
5.1-5.4). Presumably (not measured apart) its 16 narrow products a phase each wait on OpenBLAS's second thread,
where im2col's one product waits once; its dW alone is slower in every run (V and D, which its products read,
are 4x x's and dy's size). Other shapes, 2 threads, one run each: 64 -> 128 at 7x7
1.98, 16 -> 32 at 28x28 1.02, 8 -> 16 at 28x28 1.34. Wired into Conv2d (3x3, stride 1, 8 input channels or
more), ``compare.py --only cnn-modern --repeats 3`` with a column of the same net without it, interleaved (batch
100, load 4.3): 134.70 s/epoch against 99.07 without (SGD), 114.13 against 102.48 (Adam); PyTorch 53.01 and 61.35.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _winograd as wg  # noqa: E402
from _threads import optional_torch, thread_line  # noqa: E402

from xpnet.layers import Conv2d  # noqa: E402

PHASES = ("forward", "dW", "dx", "forward+backward")


def winograd_phases(layer: Conv2d, x: np.ndarray, dy: np.ndarray) -> dict:
    """Each phase as (setup, timed) callables, Winograd on the layer's weights."""
    w, b, pad = layer.params["W"], layer.params["b"], layer.padding
    cache = {}

    def forward():
        cache["v"] = wg.forward(x, w, b, pad)[1]

    def dw():
        return wg.backward(dy, cache["v"], w, x.shape, pad, False, True), np.sum(dy, axis=(0, 2, 3))

    def dx():
        return wg.backward(dy, cache["v"], w, x.shape, pad, True, False)

    def both():
        forward()
        return wg.backward(dy, cache["v"], w, x.shape, pad, True, True), np.sum(dy, axis=(0, 2, 3))

    return {"forward": (None, forward), "dW": (forward, dw), "dx": (forward, dx), "forward+backward": (None, both)}


def im2col_phases(layer: Conv2d, x: np.ndarray, dy: np.ndarray) -> dict:
    def forward_as(frozen):
        return lambda: (layer.requires_grad_(not frozen), layer.forward(x))

    return {"forward": (None, lambda: layer.forward(x)),
            "dW": (forward_as(False), lambda: layer.backward_params(dy)),
            "dx": (forward_as(True), lambda: layer.backward(dy)),
            "forward+backward": (lambda: layer.requires_grad_(True), lambda: layer.backward(layer.forward(x)))}


def torch_phases(torch, cin: int, cout: int, x: np.ndarray, dy: np.ndarray) -> dict:
    conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
    tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
    txg = tx.clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            return conv(tx)

    return {"forward": (None, forward),
            "dW": (None, lambda: torch.autograd.grad(conv(tx), (conv.weight, conv.bias), tdy)),
            "dx": (None, lambda: torch.autograd.grad(conv(txg), (txg,), tdy)),
            "forward+backward": (None, lambda: torch.autograd.grad(conv(txg), (txg, conv.weight, conv.bias), tdy))}


def check_equal(n: int, c: int, f: int, h: int, w: int, padding, dtype: str) -> None:
    """Winograd's y, dx, dW, db against the layer's, on random data (float32 rtol 1e-4, float64 1e-10)."""
    rng = np.random.default_rng(0)
    layer = Conv2d(c, f, 3, padding=padding, dtype=dtype)
    layer.params["b"] = rng.standard_normal(f).astype(dtype)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    ref = (y, layer.backward(dy), layer.grads["W"], layer.grads["b"])
    yw, v = wg.forward(x, layer.params["W"], layer.params["b"], layer.padding)
    dx, dw = wg.backward(dy, v, layer.params["W"], x.shape, layer.padding, True, True)
    rtol = 1e-4 if dtype == "float32" else 1e-10
    for a, b in zip((yw, dx, dw, np.sum(dy, axis=(0, 2, 3))), ref):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * float(np.abs(b).max()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--shapes", nargs="+", default=["32,64,14"], help="in,out,size")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch = optional_torch()
    print(thread_line(torch))
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for dtype in ("float32", "float64"):
        for n, c, f, h, w, padding in ((2, 8, 5, 7, 6, 1), (3, 9, 4, 6, 9, 0), (1, 16, 3, 5, 5, (2, 1))):
            check_equal(n, c, f, h, w, padding, dtype)
    print("Winograd equal to im2col: y, dx, dW, db (float32 rtol 1e-4, float64 1e-10)")
    rng = np.random.default_rng(0)
    for shape in args.shapes:
        cin, cout, size = (int(v) for v in shape.split(","))
        x = rng.standard_normal((args.batch, cin, size, size), dtype=np.float32)
        dy = rng.standard_normal((args.batch, cout, size, size), dtype=np.float32)
        layer = Conv2d(cin, cout, 3, padding=1)
        impls = {"Winograd": winograd_phases(layer, x, dy), "im2col": im2col_phases(layer, x, dy)}
        if torch is not None:
            impls["PyTorch"] = torch_phases(torch, cin, cout, x, dy)
        runs = [(name, phase) for phase in PHASES for name in impls]
        best = {run: float("inf") for run in runs}
        for r in range(args.repeats):
            for name, phase in runs[r % len(runs):] + runs[:r % len(runs)]:
                setup, timed = impls[name][phase]
                total = 0.0
                for _ in range(args.steps):
                    if setup is not None:
                        setup()
                    start = time.perf_counter()
                    timed()
                    total += time.perf_counter() - start
                best[(name, phase)] = min(best[(name, phase)], total / args.steps)
        print(f"Conv2d({cin}, {cout}, 3, padding=1) on ({args.batch}, {cin}, {size}, {size}) float32, ms, best of "
              f"{args.repeats} x {args.steps}, interleaved (PyTorch's dW and dx include its forward):")
        print("  " + f"{'':10s}" + "".join(f"{p:>18s}" for p in PHASES))
        for name in impls:
            print("  " + f"{name:10s}" + "".join(f"{1e3 * best[(name, p)]:18.2f}" for p in PHASES))
        ratios = "  ".join(f"{p} {best[('Winograd', p)] / best[('im2col', p)]:.2f}" for p in PHASES)
        print(f"  Winograd/im2col: {ratios}")
        if torch is not None:
            both = best[("Winograd", "forward+backward")] / best[("PyTorch", "forward+backward")]
            print(f"  Winograd/PyTorch forward+backward {both:.2f}; im2col/PyTorch "
                  f"{best[('im2col', 'forward+backward')] / best[('PyTorch', 'forward+backward')]:.2f}")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
