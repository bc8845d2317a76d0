"""Where one training step of xpnet spends its time: a per-layer profile, and the floor that the
backend's matrix products alone set, next to PyTorch's step in the same run.

    python benchmarks/profile_step.py [--workload mlp-large|mlp-small|cnn|cnn-modern] [--batch 1000] [--optimizer sgd]
                                      [--device cpu|cuda] [--steps 20] [--repeats 3] [--torch-ops 12]

Prints a Markdown table of phases (each layer's forward and backward, the loss, the optimizer),
timed one phase at a time with the device synchronised around it, then:
- for MLPs, the same matrix products run alone in the backend (NumPy/CuPy) and in PyTorch, and the
  ratio xpnet/PyTorch that those products alone would give: no Python, no elementwise work;
- the whole step timed without per-phase synchronisation, and at a tenth of the batch: a step that
  barely gets cheaper with a 10x smaller batch is bound by per-call overhead (Python, kernel
  launches), not by arithmetic;
- on CuPy, the host time to enqueue one step against the synchronised step time: when they are
  close, the GPU waits for the host (launch-bound);
- with ``--torch-ops N``, PyTorch's own breakdown of its step: the N operators that took the most time
  (``torch.profiler``, self time on the CPU, or on the GPU with ``--device cuda``), ms per step, so the
  two profiles can be set side by side.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see compare.py
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _threads import thread_line  # noqa: E402
from _steps import LR, torch_impl, xpnet_impl  # noqa: E402
from compare import WORKLOADS  # noqa: E402

import xpnet as xn  # noqa: E402


def best_ms(fn, steps, repeats, sync):
    """Best-of-``repeats`` milliseconds per call of ``fn`` (``steps`` calls, then ``sync``)."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        sync()
        best = min(best, (time.perf_counter() - start) / steps)
    return best * 1e3


def phase_profile(model, loss, opt, x, t, steps, sync):
    """Milliseconds per phase, each phase synchronised on its own, summed over ``steps`` steps."""
    layers = list(model)
    names = [f"{i} {type(layer).__name__}" for i, layer in enumerate(layers)]
    totals: dict[str, float] = {}

    def timed(key, fn, *args):
        sync()
        start = time.perf_counter()
        out = fn(*args)
        sync()
        totals[key] = totals.get(key, 0.0) + time.perf_counter() - start
        return out

    for step in range(steps + 1):
        if step == 1:
            totals.clear()  # the first step warms caches and allocators
        h = x
        for name, layer in zip(names, layers):
            h = timed(f"{name} forward", layer.forward, h)
        timed("loss forward", loss.forward, h, t, False)
        dy = timed("loss backward", loss.backward)
        for name, layer in zip(names[:0:-1], layers[:0:-1]):
            dy = timed(f"{name} backward", layer.backward, dy)
        timed(f"{names[0]} backward (parameters only)", layers[0].backward_params, dy)
        timed("optimizer", opt.step, model)
    return {k: v / steps * 1e3 for k, v in totals.items()}


def mlp_products(model, batch):
    """The (m, k) @ (k, n) shapes of one MLP step: forward x @ W, backward x.T @ dy and dy @ W.T
    (no dx for the first layer)."""
    shapes, first = [], True
    for layer in model:
        if isinstance(layer, xn.layers.Linear):
            i, o = layer.in_features, layer.out_features
            shapes += [(batch, i, o), (i, batch, o)] + ([] if first else [(batch, o, i)])
            first = False
    return shapes


def products_ms(shapes, asarray, steps, repeats, sync, seed=0):
    rng = np.random.default_rng(seed)
    pairs = [(asarray(rng.random((m, k), dtype=np.float32)), asarray(rng.random((k, n), dtype=np.float32)))
             for m, k, n in shapes]

    def run():
        for a, b in pairs:
            a @ b

    return best_ms(run, steps, repeats, sync)


def torch_ops(torch, step, x, t, steps, on_gpu, top):
    """PyTorch's ``top`` operators by self time over ``steps`` steps (after one untimed), ms per step."""
    from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415 - only with --torch-ops

    step(x, t)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step(x, t)
        if on_gpu:
            torch.cuda.synchronize()
    averages = prof.key_averages()
    key = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    if averages and not hasattr(averages[0], key):  # PyTorch before 2.4 named the GPU's time for CUDA
        key = "self_cuda_time_total"
    events = sorted(averages, key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in events)
    where = "GPU" if on_gpu else "CPU"
    print(f"\nPyTorch's step by operator (torch.profiler, self {where} time, ms per step, all operators "
          f"{total / steps / 1e3:.3f} ms; the profiler adds its own cost):")
    print("| operator | ms per step | calls per step |")
    print("|---|---:|---:|")
    for e in events[:top]:
        print(f"| {e.key} | {getattr(e, key) / steps / 1e3:.3f} | {e.count / steps:g} |")


def xpnet_profile(args, dev, x_host, t_host):
    """xpnet's side, printed: the phase table of ``args.workload`` at ``args.batch`` with ``args.optimizer`` on
    ``dev``, the whole step, the step at a tenth of the batch and, on CuPy, the host's enqueue time. Returns the
    whole step's ms, the model and, for MLPs, the ms of the step's matrix products alone in ``dev``'s backend."""
    title, make, _ = WORKLOADS[args.workload]

    def xpnet_step_at(batch):
        model = make().to(dev)
        return xpnet_impl(model, args.optimizer), dev.asarray(x_host[:batch]), dev.asarray(t_host[:batch]), model

    step, x, t, model = xpnet_step_at(args.batch)
    loss = xn.losses.SoftmaxCrossEntropy()
    opt = xn.optim.SGD(LR["sgd"]) if args.optimizer == "sgd" else xn.optim.Adam(LR["adam"])
    phases = phase_profile(model, loss, opt, x, t, args.steps, dev.synchronize)
    whole = best_ms(lambda: step(x, t), args.steps, args.repeats, dev.synchronize)

    print(f"{title}, batch {args.batch}, {args.optimizer}, float32, xpnet on {dev.name}")
    print(thread_line() + "\n")
    total = sum(phases.values())
    print("| phase | ms per step | share |")
    print("|---|---:|---:|")
    for key, ms in phases.items():
        print(f"| {key} | {ms:.3f} | {ms / total:5.1%} |")
    print(f"| sum of phases (each synchronised) | {total:.3f} | |")
    print(f"\nwhole step, synchronised once: {whole:.3f} ms")

    small = max(1, args.batch // 10)
    step_s, x_s, t_s, _ = xpnet_step_at(small)
    whole_small = best_ms(lambda: step_s(x_s, t_s), args.steps, args.repeats, dev.synchronize)
    print(f"same step at batch {small}: {whole_small:.3f} ms ({whole_small / whole:.0%} of the time for "
          f"{small / args.batch:.0%} of the work)")

    if dev.is_cupy:
        start = time.perf_counter()
        for _ in range(args.steps):
            step(x, t)
        enqueue = (time.perf_counter() - start) / args.steps * 1e3
        dev.synchronize()
        print(f"host time to enqueue a step: {enqueue:.3f} ms of {whole:.3f} ms "
              f"({enqueue / whole:.0%}; near 100 %: the GPU waits for the host)")
    products = None
    if args.workload.startswith("mlp"):
        products = products_ms(mlp_products(model, args.batch), dev.asarray, args.steps, args.repeats,
                               dev.synchronize)
    return whole, model, products


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=list(WORKLOADS), default="mlp-large")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--optimizer", choices=list(LR), default="sgd")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--torch-ops", type=int, default=0, metavar="N",
                    help="also print PyTorch's N most expensive operators (torch.profiler)")
    args = ap.parse_args()
    dev = xn.device(args.device, fallback=False)  # --device cuda times the GPU or fails, saying why
    _, make, shape = WORKLOADS[args.workload]
    rng = np.random.default_rng(0)
    x_host = rng.random((args.batch, *shape), dtype=np.float32)
    t_host = rng.integers(0, 10, args.batch)
    whole, model, ours = xpnet_profile(args, dev, x_host, t_host)

    try:
        import torch
    except ImportError:
        print("\ntorch is not installed: no PyTorch comparison")
        return
    tdev = "cuda" if dev.is_cupy else "cpu"
    tsync = torch.cuda.synchronize if tdev == "cuda" else (lambda: None)
    tstep = torch_impl(torch, make(), args.optimizer, tdev)
    tx, tt = torch.from_numpy(x_host).to(tdev), torch.from_numpy(t_host).to(tdev)
    torch_ms = best_ms(lambda: tstep(tx, tt), args.steps, args.repeats, tsync)
    print(f"\nPyTorch {torch.__version__} step on {tdev} ({torch.get_num_threads()} threads): {torch_ms:.3f} ms; "
          f"xpnet/PyTorch {whole / torch_ms:.2f}")
    if args.torch_ops:
        torch_ops(torch, tstep, tx, tt, args.steps, tdev == "cuda", args.torch_ops)
    if ours is not None:
        shapes = mlp_products(model, args.batch)
        theirs = products_ms(shapes, lambda a: torch.from_numpy(a).to(tdev), args.steps, args.repeats, tsync)
        print(f"the step's {len(shapes)} matrix products alone: {ours:.3f} ms in {dev.name}'s backend "
              f"({ours / whole:.0%} of xpnet's step), {theirs:.3f} ms in PyTorch")
        print(f"floor: with no work but those products, xpnet/PyTorch would be {ours / torch_ms:.2f}")


if __name__ == "__main__":
    main()
