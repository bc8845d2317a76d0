"""Conv2d's stride-1 backward (dW, db and dx) now, against the dcol-in-parts + col2im path it replaced,
and PyTorch's conv backward, interleaved in one process.

    python benchmarks/conv_backward.py [--batch 100] [--channels 32 64] [--size 14] [--repeats 10]

The default shape is the second conv of ``compare.py``'s cnn-modern (32 -> 64 channels, 3x3, padding 1,
14x14 images). The previous path is the layer's own path for other strides (``_input_grad_in_parts``), so
both compute the same dW, db and dx (checked before timing).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _threads import optional_torch, thread_line  # noqa: E402

from xpnet.layers import Conv2d  # noqa: E402


def previous_backward(layer: Conv2d, dy: np.ndarray) -> np.ndarray:
    """The stride-1 backward before the flat layout: the layer's own path for other strides, dcol =
    W.T @ dy in 4 MiB parts of input channels, each summed back by col2im over rows ``ow`` long."""
    xp, _, dy2 = layer._param_grads(dy)
    return layer._input_grad_in_parts(xp, layer.params["W"], dy2, layer._shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--channels", type=int, nargs=2, default=[32, 64])
    ap.add_argument("--size", type=int, default=14)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch = optional_torch()
    print(thread_line(torch))
    rng = np.random.default_rng(0)
    cin, cout = args.channels
    x = rng.standard_normal((args.batch, cin, args.size, args.size), dtype=np.float32)
    dy = rng.standard_normal((args.batch, cout, args.size, args.size), dtype=np.float32)
    layer = Conv2d(cin, cout, 3, padding=1)

    def now():
        layer.forward(x)  # the new backward drops col: each call needs its forward
        return layer.backward(dy)

    def before():
        layer.forward(x)
        return previous_backward(layer, dy)

    np.testing.assert_allclose(now(), before(), rtol=1e-4, atol=1e-4)
    impls = {"xpnet": now, "previous": before, "forward only": lambda: layer.forward(x)}
    if torch is not None:
        tconv = torch.nn.Conv2d(cin, cout, 3, padding=1)
        tx, tdy = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dy)
        impls["PyTorch"] = lambda: tconv(tx).backward(tdy)
        impls["PyTorch forward only"] = lambda: tconv(tx)
    best = {name: float("inf") for name in impls}
    for _ in range(args.repeats):
        for name, fn in impls.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / args.steps)
    ms = {name: 1e3 * v for name, v in best.items()}
    back = {"xpnet": ms["xpnet"] - ms["forward only"], "previous": ms["previous"] - ms["forward only"]}
    print(f"Conv2d({cin}, {cout}, 3, padding=1) on ({args.batch}, {cin}, {args.size}, {args.size}) float32, "
          f"forward + backward (dW, db, dx), best of {args.repeats} x {args.steps}, interleaved:")
    for name in ("xpnet", "previous"):
        print(f"  {name:9s} {ms[name]:7.2f} ms  (backward alone about {back[name]:.2f} ms)")
    if torch is not None:
        torch_back = ms["PyTorch"] - ms["PyTorch forward only"]
        print(f"  PyTorch   {ms['PyTorch']:7.2f} ms  (backward alone about {torch_back:.2f} ms)")
        print(f"xpnet/previous {ms['xpnet'] / ms['previous']:.2f}; xpnet/PyTorch {ms['xpnet'] / ms['PyTorch']:.2f}")
    else:
        print(f"xpnet/previous {ms['xpnet'] / ms['previous']:.2f}")


if __name__ == "__main__":
    main()
