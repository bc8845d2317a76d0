"""Data parallel on one machine: 1 process with 2 BLAS threads against 2 MPI ranks with 1 thread each.

MLP 784-1000-1000-10, float32, global batch 1000 (Fashion-MNIST when its files are on disk, else
random data of that shape), SGD. Times a fixed number of steps (after warm-up) and the share of each
step spent in ``comm.allreduce_grads``, prints a Markdown table, then a model on paper of the
efficiency at 8, 64 and 512 GPUs from the measured compute time per step and an assumed link
(and, since a CPU step is far slower than a GPU's, also from a GPU step estimated by its FLOPs).

    python benchmarks/distributed.py [--steps 20] [--device cpu] [--bandwidth-gbs 25] [--latency-us 5]
                                     [--gpu-tflops 50] [--require-nccl]

With ``--device cuda`` the 1-process runs are on the GPU, the 1-rank run under mpiexec measures the
overhead of ``allreduce_grads`` through NCCL on one rank, and the 2-rank run happens only where there
are two GPUs. The last line says how that 1-rank run reduced the gradients; ``--require-nccl`` makes the
script fail unless it was NCCL (a CuPy without NCCL reduces through host memory instead).
``--worker`` is the part each process runs (started by this script).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import xpnet as xn
from xpnet.datasets.batches import batch_bounds

SIZES = (784, 1000, 1000, 10)
GLOBAL_BATCH = 1000
WARMUP = 3


def load_data() -> tuple[np.ndarray, np.ndarray, str]:
    try:
        xn.datasets.mnist.find_files("fashion-mnist", download=False)
        (x, y), _ = xn.datasets.load_fashion_mnist(normalize=True, flatten=True)
        return x.astype(np.float32), y, "Fashion-MNIST"
    except Exception:  # no files here (and no download in a benchmark): the timing only needs the shapes
        rng = np.random.default_rng(0)
        return rng.random((60000, SIZES[0]), dtype=np.float32), rng.integers(0, 10, 60000), "random data"


def worker(args: argparse.Namespace) -> None:
    """Time ``args.steps`` steps; the root prints one JSON line with the medians in seconds."""
    comm = xn.distributed.init() if args.mpi else None
    rank, size = (comm.rank, comm.size) if comm else (0, 1)
    dev = comm.device(args.device, fallback=False) if comm else xn.device(args.device, fallback=False)
    x, y, source = load_data()
    xn.init.seed(0)
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers += [xn.layers.Linear(fan_in, fan_out)] + ([xn.layers.ReLU()] if i < len(SIZES) - 2 else [])
    model = xn.Sequential(*layers).to(dev, "float32")
    if comm:
        comm.broadcast_params(model)
    loss, optimizer = xn.losses.SoftmaxCrossEntropy(), xn.optim.SGD(0.01)
    bounds = batch_bounds(x.shape[0], GLOBAL_BATCH, rank, size)
    x, y = dev.asarray(x), dev.asarray(y)
    compute, reduce, total = [], [], []
    for step in range(WARMUP + args.steps):
        lo, hi = bounds[step % len(bounds)]
        dev.synchronize()
        t0 = time.perf_counter()
        out = model.forward(x[lo:hi, ...], train=True)
        loss.forward(out, y[lo:hi], check=False)
        model.backward(loss.backward())
        dev.synchronize()
        t1 = time.perf_counter()
        if comm:
            comm.allreduce_grads(model, count=hi - lo)
            dev.synchronize()
        t2 = time.perf_counter()
        optimizer.step(model)
        dev.synchronize()
        t3 = time.perf_counter()
        if step >= WARMUP:
            compute.append(t1 - t0 + t3 - t2)
            reduce.append(t2 - t1)
            total.append(t3 - t0)
    if rank == 0:
        transport = comm.cupy_transport if comm and dev.is_cupy else ("mpi" if comm else "none")
        print(json.dumps({"ranks": size, "device": dev.name, "data": source, "transport": transport,
                          "step": statistics.median(total), "compute": statistics.median(compute),
                          "allreduce": statistics.median(reduce)}), flush=True)


def run(cmd: list[str], threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def find_mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


def ring_allreduce_s(n: int, nbytes: float, bandwidth: float, latency: float) -> float:
    """Ring all-reduce: each rank sends and receives 2(N-1)/N of the bytes, in 2(N-1) steps."""
    return 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bandwidth-gbs", type=float, default=25.0,
                        help="assumed all-reduce bandwidth per GPU in GB/s (25: one 200 Gb/s InfiniBand link)")
    parser.add_argument("--latency-us", type=float, default=5.0, help="assumed latency per ring step")
    parser.add_argument("--gpu-tflops", type=float, default=50.0,
                        help="assumed float32 TFLOP/s of one GPU for the estimated step (50: an H100, no TF32)")
    parser.add_argument("--require-nccl", action="store_true",
                        help="fail (exit 1, saying why, on the last line) unless the 1-rank run under mpiexec reduced "
                             "the gradients through NCCL (ci/gpu-session.sh's check)")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--mpi", action="store_true")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    me = [sys.executable, os.path.abspath(__file__), "--worker", "--steps", str(args.steps), "--device", args.device]
    rows = [("1 process, 1 thread", run(me, 1)), ("1 process, 2 threads", run(me, 2))]
    mpiexec = find_mpiexec()
    two_ranks_fit = args.device == "cpu" or xn.backend.cuda_device_count() >= 2
    if mpiexec:
        rows.append(("1 rank under mpiexec", run([mpiexec, "-n", "1", *me, "--mpi"], 1)))
    if mpiexec and two_ranks_fit:
        rows.append(("2 ranks, 1 thread each", run([mpiexec, "-n", "2", *me, "--mpi"], 1)))
    base = rows[1][1]["step"]
    print(f"MLP {'-'.join(map(str, SIZES))}, float32, global batch {GLOBAL_BATCH}, {rows[0][1]['data']}, "
          f"{rows[0][1]['device']}, median of {args.steps} steps\n")
    print("| run | transport | step (ms) | compute (ms) | allreduce_grads (ms) | allreduce share "
          "| speed-up vs 2 threads |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        print(f"| {name} | {r.get('transport', '')} | {r['step'] * 1e3:.1f} | {r['compute'] * 1e3:.1f} | "
              f"{r['allreduce'] * 1e3:.2f} | {r['allreduce'] / r['step']:.1%} | {base / r['step']:.2f}x |")
    if not (mpiexec and two_ranks_fit):
        print("\n(2-rank run skipped: " + ("no mpiexec found)" if not mpiexec else "fewer than 2 GPUs)"))

    n_params = sum(a * b + b for a, b in zip(SIZES[:-1], SIZES[1:]))
    nbytes = 4 * n_params
    bandwidth, latency = args.bandwidth_gbs * 1e9, args.latency_us * 1e-6
    measured = rows[0][1]["compute"] if args.device != "cpu" else rows[1][1]["compute"]
    # forward and backward of a Linear layer: 6 FLOP per weight and sample
    estimated = 6 * n_params * GLOBAL_BATCH / (args.gpu_tflops * 1e12)
    print(f"\nModel on paper: {n_params:,} float32 gradients = {nbytes / 1e6:.1f} MB per step; a ring all-reduce "
          f"moves 2(N-1)/N of them per rank in 2(N-1) steps; assumed {args.bandwidth_gbs:g} GB/s per GPU and "
          f"{args.latency_us:g} us per step; no overlap of communication with backward (as in xpnet). Compute per "
          f"step of {GLOBAL_BATCH} samples: measured {measured * 1e3:.2f} ms on {rows[0][1]['device']}, and "
          f"estimated {estimated * 1e3:.3f} ms for a GPU at {args.gpu_tflops:g} TFLOP/s. Efficiency = compute / "
          f"(compute + all-reduce); weak: {GLOBAL_BATCH} samples per GPU; strong: one global batch of "
          f"{GLOBAL_BATCH} split N ways (compute / N, optimistic for small per-GPU batches).\n")
    print("| GPUs | all-reduce (ms) | measured, weak | measured, strong | GPU estimate, weak | GPU estimate, strong |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in (8, 64, 512):
        t_ar = ring_allreduce_s(n, nbytes, bandwidth, latency)
        cells = [f"{t / (t + t_ar):.0%}" for step in (measured, estimated) for t in (step, step / n)]
        print(f"| {n} | {t_ar * 1e3:.2f} | " + " | ".join(cells) + " |")
    print()
    print(transport_line(dict(rows), args.require_nccl))


def transport_line(rows: dict, require_nccl: bool) -> str:
    """The last line: how the 1-rank run under mpiexec reduced the gradients; with ``require_nccl``, a
    ``SystemExit`` (exit 1) saying so where that was not NCCL."""
    one_rank = rows.get("1 rank under mpiexec")
    if one_rank is None:
        line = "allreduce_grads: not measured (no mpiexec found)"
    else:
        line = (f"allreduce_grads on 1 rank under mpiexec on {one_rank['device']}: through {one_rank['transport']}, "
                f"{one_rank['allreduce'] * 1e3:.2f} ms per step")
    if require_nccl and (one_rank is None or one_rank["transport"] != "nccl"):
        raise SystemExit(f"--require-nccl: {line}, not NCCL")
    return line


if __name__ == "__main__":
    main()
