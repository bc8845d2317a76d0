"""A training step's forward and backward through ``xn.layers.Transformer`` against PyTorch's ``nn.Transformer`` with
the same weights (copied in by ``xn.torch_state_dict``), float32 on the CPU, interleaved, best of each.

Two sizes by default: the one of ``examples/transformer_dates.py`` (batch 64, source 29, target 10, d_model 64,
4 heads, 2 + 2 layers, feed-forward 256) and a larger one (batch 32, 64 and 32 steps, d_model 256, 8 heads,
feed-forward 1024). Dropout 0, a causal target mask; the output's gradient is a fixed random array. The ratio is
xpnet's time over PyTorch's; the BLAS threads are printed.

    python benchmarks/transformer_step.py [--repeat 5] [--steps 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _threads import thread_line

import xpnet as xn

# (batch, source steps, target steps, d_model, heads, feed-forward)
SIZES = {"small": (64, 29, 10, 64, 4, 256), "large": (32, 64, 32, 256, 8, 1024)}


def _steps(size: tuple[int, ...], torch: object) -> tuple[object, object]:
    n, s, t, d, h, f = size
    rng = np.random.default_rng(0)
    src, tgt = (rng.standard_normal(shape).astype(np.float32) for shape in ((n, s, d), (n, t, d)))
    dy = rng.standard_normal((n, t, d)).astype(np.float32)
    xn.init.seed(0)
    ours = xn.layers.Transformer(d, h, 2, 2, f, dropout=0.0)
    theirs = torch.nn.Transformer(d, h, 2, 2, f, dropout=0.0, batch_first=True)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in xn.torch_state_dict(ours).items()})
    mask = torch.nn.Transformer.generate_square_subsequent_mask(t)
    src_t, tgt_t, dy_t = torch.from_numpy(src), torch.from_numpy(tgt), torch.from_numpy(dy)

    def step_ours() -> None:
        ours.forward(src, tgt, tgt_is_causal=True)
        ours.backward(dy)

    def step_theirs() -> None:
        theirs.zero_grad()
        theirs(src_t, tgt_t, tgt_mask=mask, tgt_is_causal=True).backward(dy_t)

    return step_ours, step_theirs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds; the best of each is kept")
    ap.add_argument("--steps", type=int, default=10, help="steps a round")
    args = ap.parse_args(argv)
    import torch  # noqa: PLC0415 - the baseline, in the backends extra

    print(thread_line(torch))
    for name, size in SIZES.items():
        ours, theirs = _steps(size, torch)
        ours(), theirs()  # warm up
        best = {"xpnet": float("inf"), "pytorch": float("inf")}
        for _ in range(args.repeat):
            for who, step in (("xpnet", ours), ("pytorch", theirs)):
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step()
                best[who] = min(best[who], (time.perf_counter() - t0) / args.steps)
        n, s, t, d, h, f = size
        print(f"{name} (batch {n}, source {s}, target {t}, d_model {d}, {h} heads, feed-forward {f}): xpnet "
              f"{best['xpnet'] * 1e3:.1f} ms, PyTorch {best['pytorch'] * 1e3:.1f} ms a step, ratio "
              f"{best['xpnet'] / best['pytorch']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
