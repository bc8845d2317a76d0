"""Upsample x2 (bilinear and nearest), forward + backward, against PyTorch's F.interpolate, interleaved in one
process, and xpnet's two products beside its taps (``xpnet.layers._interp.banded``), checked equal first.

    python benchmarks/upsample.py [--shapes 16,64,32,32 ...] [--steps 3] [--repeats 5]

The default shapes are (16, 64, H, H) for H = 32, 64, 128 and (4, 16, 256, 256), float32. 'nearest' x2 repeats
whole pixels (a broadcast copy and block sums on both of xpnet's paths); 'bilinear' is where taps and products
differ. Prints the threads line and the load average: the figures move with both.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _threads import optional_torch, thread_line  # noqa: E402

from xpnet.layers import Upsample, _interp  # noqa: E402

SHAPES = ["16,64,32,32", "16,64,64,64", "16,64,128,128", "4,16,256,256"]


def xpnet_step(mode: str, x: np.ndarray, dy: np.ndarray, taps: bool | None):
    """Forward + backward of a fresh Upsample(scale_factor=2, mode), by taps, products or (None) xpnet's rule."""
    chosen = _interp.banded if taps is None else (lambda v: taps)
    rule, _interp.banded = _interp.banded, chosen
    try:
        layer = Upsample(scale_factor=2, mode=mode)
        layer.forward(x)  # the plan (taps or matrices) is made here, outside the timing
    finally:
        _interp.banded = rule

    def step():
        layer.forward(x)
        return layer.backward(dy)
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=SHAPES)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch = optional_torch()
    print(thread_line(torch))
    print("load average (1, 5, 15 min): " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(f"Upsample(scale_factor=2) float32, forward + backward, ms, best of {args.repeats} x {args.steps}, "
          "interleaved:")
    print("| mode | shape | xpnet | xpnet products | xpnet taps | PyTorch | xpnet/PyTorch |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for shape in [tuple(int(v) for v in s.split(",")) for s in args.shapes]:
        n, c, h, w = shape
        x = rng.standard_normal(shape, dtype=np.float32)
        dy = rng.standard_normal((n, c, 2 * h, 2 * w), dtype=np.float32)
        for mode in ("bilinear", "nearest"):
            impls = {name: xpnet_step(mode, x, dy, taps)
                     for name, taps in (("xpnet", None), ("products", False), ("taps", True))}
            np.testing.assert_allclose(impls["taps"](), impls["products"](), rtol=1e-4, atol=1e-4)
            if torch is not None:
                tx, tdy = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dy)
                impls["PyTorch"] = lambda tx=tx, tdy=tdy, mode=mode: torch.nn.functional.interpolate(
                    tx, scale_factor=2, mode=mode).backward(tdy)
            best = {name: float("inf") for name in impls}
            for _ in range(args.repeats):
                for name, fn in impls.items():
                    start = time.perf_counter()
                    for _ in range(args.steps):
                        fn()
                    best[name] = min(best[name], (time.perf_counter() - start) / args.steps)
            ms = {name: f"{1e3 * v:.1f}" for name, v in best.items()}
            ratio = f"{best['xpnet'] / best['PyTorch']:.2f}" if torch is not None else "-"
            print(f"| {mode} | {shape} | {ms['xpnet']} | {ms['products']} | {ms['taps']} | "
                  f"{ms.get('PyTorch', '-')} | {ratio} |")


if __name__ == "__main__":
    main()
