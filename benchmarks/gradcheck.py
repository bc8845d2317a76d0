"""Time a gradient check of a 784-50-10 ReLU MLP (softmax cross-entropy) on 3 samples.

xpnet's full check (every entry of W1, b1, W2, b2 and the input; two forward passes each) and its
fast mode (one random direction per tensor) against two baselines run in this same process:
the book's ``numerical_gradient`` written directly in NumPy (float64, params only, as the seeds do it)
and, when installed, ``torch.autograd.gradcheck`` on the same float64 net (params and input).

    python benchmarks/gradcheck.py [--device cpu] [--repeats 1] [--clock cpu] [--model own] [--calls]

``--clock cpu`` times each check in this process's CPU time instead of wall time: steadier on a shared machine,
and fair at one thread (``OMP_NUM_THREADS=1``, which PyTorch's intra-op pool follows too) only. ``--model own``
checks the same MLP written as a model of one's own (``class Net(xn.Model)``, its forward the user's code) in
place of an ``xn.Sequential``. ``--calls`` counts the Python calls a forward pass of xpnet's full check costs
(cProfile's calls of a check at D=60 less those at D=20, over the difference in passes) and times nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import numpy as np

from _threads import thread_line

import xpnet as xn
from xpnet.layers import Linear, ReLU

D, H, C, N = 784, 50, 10, 3


class Net(xn.Model):
    """The MLP as a model of one's own: PyTorch's forward, the book's backward."""

    def __init__(self, d, h, c):
        super().__init__()
        self.fc1, self.relu, self.fc2 = Linear(d, h), ReLU(), Linear(h, c)

    def forward(self, x, train=True):
        return self.fc2(self.relu(self.fc1(x)))

    def backward(self, dy):
        return self.fc1.backward(self.relu.backward(self.fc2.backward(dy)))


def mlp(kind, d, dev):
    xn.init.seed(0)
    model = Net(d, H, C) if kind == "own" else xn.Sequential(Linear(d, H), ReLU(), Linear(H, C))
    return model.to(dev)


def calls_a_pass(kind, dev):
    """Python calls a forward pass of the full check: cProfile's count at D=60 less at D=20, per pass."""
    counted = []
    for d in (20, 20, 60):  # the first D=20 check warms up (imports, fast paths found)
        rng = np.random.default_rng(0)
        x, t = xn.to_device(rng.random((N, d)), dev), xn.to_device(rng.integers(0, C, size=N), dev)
        model = mlp(kind, d, dev)
        profile = cProfile.Profile()
        profile.enable()
        report = xn.gradcheck(model, x, t, "cross_entropy")
        profile.disable()
        counted.append((pstats.Stats(profile).total_calls, report.forward_passes))
    (calls20, passes20), (calls60, passes60) = counted[1:]
    return (calls60 - calls20) / (passes60 - passes20)


def book_check(x, t, params, eps=1e-6):
    """The seeds' numerical_gradient over every parameter (2 forward passes per entry) and the analytic
    gradient of the hand-written TwoLayerNet; returns the max abs difference and the forward passes."""
    W1, b1, W2, b2 = params

    def loss():
        h = np.maximum(x @ W1 + b1, 0)
        y = h @ W2 + b2
        z = y - y.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(t)), t].sum() / len(t)

    h_pre = x @ W1 + b1
    h = np.maximum(h_pre, 0)
    y = h @ W2 + b2
    p = np.exp(y - y.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dy = p.copy()
    dy[np.arange(len(t)), t] -= 1
    dy /= len(t)
    dh = np.where(h_pre > 0, dy @ W2.T, 0)
    analytic = [x.T @ dh, dh.sum(axis=0), h.T @ dy, dy.sum(axis=0)]
    worst, passes = 0.0, 0
    for param, grad in zip(params, analytic):
        it = np.nditer(param, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            v = param[i]
            param[i] = v + eps
            fp = loss()
            param[i] = v - eps
            fm = loss()
            param[i] = v
            passes += 2
            worst = max(worst, abs((fp - fm) / (2 * eps) - grad[i]))
    return worst, passes


def torch_check(x, t, params, fast):
    import torch  # noqa: PLC0415 - optional baseline

    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, *params)]
    labels = torch.tensor(t)

    def loss(x, W1, b1, W2, b2):
        return torch.nn.functional.cross_entropy(torch.relu(x @ W1 + b1) @ W2 + b2, labels)

    return torch.autograd.gradcheck(loss, tensors, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=fast)


CLOCK = [time.perf_counter]  # --clock cpu: time.process_time


def timed(fn):
    start = CLOCK[0]()
    out = fn()
    return CLOCK[0]() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time (fair at OMP_NUM_THREADS=1 only)")
    parser.add_argument("--model", choices=("sequential", "own"), default="sequential",
                        help="own: the MLP as a class Net(xn.Model) of one's own")
    parser.add_argument("--calls", action="store_true", help="count the Python calls a pass, time nothing")
    args = parser.parse_args()
    CLOCK[0] = time.process_time if args.clock == "cpu" else time.perf_counter
    dev = xn.device(args.device)
    if args.calls:
        print(f"xpnet full check, {args.model} model: {calls_a_pass(args.model, dev):.1f} Python calls a forward pass "
              "(cProfile, D=60 less D=20)")
        return

    rng = np.random.default_rng(0)
    x = rng.random((N, D))
    t = rng.integers(0, C, size=N)
    model = mlp(args.model, D, dev)
    x_dev, t_dev = xn.to_device(x.astype("float32"), dev), xn.to_device(t, dev)
    host_params = [xn.to_numpy(v).astype(np.float64) for v in model.named_params().values()]
    entries = sum(p.size for p in host_params) + x.size
    print(f"gradcheck of {D}-{H}-{C} ReLU MLP ({args.model} model) + softmax cross-entropy on {N} samples, "
          f"{entries} entries (params and input), device {dev}")
    print(thread_line())
    print(f"clock: {args.clock} time")

    results = {}
    for name, fast in (("full", False), ("fast", True)):
        best, report = min((timed(lambda: xn.gradcheck(model, x_dev, t_dev, "cross_entropy", fast=fast))
                            for _ in range(args.repeats)), key=lambda r: r[0])
        results[name] = best
        print(f"xpnet {name:4s}: {best:8.3f} s  {report.forward_passes:6d} forward passes  "
              f"{best / report.forward_passes * 1e6:7.1f} us/pass  ok={report.ok}")

    seconds, (worst, passes) = timed(lambda: book_check(x, t, [p.copy() for p in host_params]))
    print(f"book numerical_gradient (NumPy, params only): {seconds:8.3f} s  {passes:6d} forward passes  "
          f"{seconds / passes * 1e6:7.1f} us/pass  max abs err {worst:.1e}")
    per_pass = results["full"] / (entries * 2 + 1)
    print(f"ratio xpnet full / book, per forward pass: {per_pass / (seconds / passes):.2f}")

    try:
        import torch  # noqa: F401, PLC0415 - optional baseline
    except ImportError:
        print("torch.autograd.gradcheck: torch is not installed, baseline skipped")
        return
    for name, fast in (("full", False), ("fast", True)):
        seconds, ok = timed(lambda: torch_check(x, t, host_params, fast))
        print(f"torch.autograd.gradcheck {name:4s} (CPU): {seconds:8.3f} s  ok={ok}  "
              f"ratio xpnet / torch: {results[name] / seconds:.3g}")


if __name__ == "__main__":
    main()
