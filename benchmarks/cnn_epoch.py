"""Time one training epoch of a small CNN: xpnet vs plain NumPy im2col (book style) vs PyTorch CPU.

Net: Conv(1->30, 5x5) - ReLU - MaxPool 2x2 - Linear(4320, 100) - ReLU - Linear(100, 10), softmax
cross-entropy, SGD, batch 100, float32, on random 28x28 images (the timing does not depend on the data).
A fixed number of batches is timed (after one warm-up batch) and extrapolated to a 60,000-image epoch.
Every implementation runs in this one process, so the printed ratios compare like with like.

    python benchmarks/cnn_epoch.py [--batches 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from _threads import thread_line

import xpnet as xn
from xpnet.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU

BATCH, EPOCH = 100, 60_000


# -- the same net in plain NumPy, as in the book (col: (N*oh*ow, C*kh*kw)) ------------------------

def book_im2col(x, kh, kw):
    n, c, h, w = x.shape
    oh, ow = h - kh + 1, w - kw + 1
    col = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, :, i, j, :, :] = x[:, :, i:i + oh, j:j + ow]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, -1)


def book_col2im(col, shape, kh, kw):
    n, c, h, w = shape
    oh, ow = h - kh + 1, w - kw + 1
    col = col.reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros(shape, dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            img[:, :, i:i + oh, j:j + ow] += col[:, :, i, j, :, :]
    return img


class BookNet:
    """The book's SimpleConvNet layers, inlined; stride 1, no padding, pool 2x2 stride 2."""

    def __init__(self, params, update=None):
        self.p = {k: v.copy() for k, v in params.items()}
        self.update = update
        self.col_bytes = 0

    def step(self, x, t, lr):
        p = self.p
        n = x.shape[0]
        fn, _, kh, kw = p["W1"].shape
        oh, ow = x.shape[2] - kh + 1, x.shape[3] - kw + 1
        col = book_im2col(x, kh, kw)
        col_w = p["W1"].reshape(fn, -1).T
        a1 = (col @ col_w + p["b1"]).reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
        mask1 = a1 <= 0
        r1 = np.where(mask1, 0, a1)
        # pooling via im2col of 2x2 windows, as in the book
        ph, pw = oh // 2, ow // 2
        pcol = np.empty((n, fn, 2, 2, ph, pw), dtype=x.dtype)
        for i in range(2):
            for j in range(2):
                pcol[:, :, i, j] = r1[:, :, i:i + 2 * ph:2, j:j + 2 * pw:2]
        pcol = pcol.transpose(0, 4, 5, 1, 2, 3).reshape(-1, 4)
        arg = np.argmax(pcol, axis=1)
        pool = np.max(pcol, axis=1).reshape(n, ph, pw, fn).transpose(0, 3, 1, 2)
        self.col_bytes = col.nbytes + pcol.nbytes
        f = pool.reshape(n, -1)
        a2 = f @ p["W2"] + p["b2"]
        mask2 = a2 <= 0
        r2 = np.where(mask2, 0, a2)
        s = r2 @ p["W3"] + p["b3"]
        s = s - s.max(axis=1, keepdims=True)
        e = np.exp(s)
        prob = e / e.sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(prob[np.arange(n), t] + 1e-7))
        ds = prob.copy()
        ds[np.arange(n), t] -= 1
        ds /= n
        g = {"W3": r2.T @ ds, "b3": ds.sum(0)}
        dr2 = ds @ p["W3"].T
        da2 = np.where(mask2, 0, dr2)
        g["W2"], g["b2"] = f.T @ da2, da2.sum(0)
        dpool = (da2 @ p["W2"].T).reshape(n, fn, ph, pw).transpose(0, 2, 3, 1)
        dmax = np.zeros((dpool.size, 4), dtype=x.dtype)
        dmax[np.arange(arg.size), arg] = dpool.ravel()
        dmax = dmax.reshape(n, ph, pw, fn, 2, 2).transpose(0, 3, 4, 5, 1, 2)
        dr1 = np.zeros((n, fn, oh, ow), dtype=x.dtype)
        for i in range(2):
            for j in range(2):
                dr1[:, :, i:i + 2 * ph:2, j:j + 2 * pw:2] += dmax[:, :, i, j]
        da1 = np.where(mask1, 0, dr1).transpose(0, 2, 3, 1).reshape(-1, fn)
        g["b1"] = da1.sum(0)
        g["W1"] = (col.T @ da1).T.reshape(p["W1"].shape)
        book_col2im(da1 @ col_w.T, x.shape, kh, kw)  # dx, as the book's backward computes it
        if self.update is not None:
            self.update(p, g)
        else:
            for k in p:
                p[k] -= lr * g[k]
        return loss


def xpnet_model():
    xn.init.seed(0)
    return xn.Sequential(Conv2d(1, 30, 5), ReLU(), MaxPool2d(2), Flatten(), Linear(4320, 100), ReLU(),
                         Linear(100, 10))


def params_of(model):
    p = {k: xn.to_numpy(v) for k, v in model.named_params().items()}
    return {"W1": p["0.W"], "b1": p["0.b"], "W2": p["4.W"], "b2": p["4.b"], "W3": p["6.W"], "b3": p["6.b"]}


def time_all(steps, repeats):
    """Best-of-``repeats`` seconds for all batches per implementation, and the peak traced memory of one
    step. Repeats are interleaved (a, b, c, a, b, c, ...) so a busy machine slows all of them alike."""
    best = {name: float("inf") for name in steps}
    for name, (step, data) in steps.items():
        step(*data[0])
    for _ in range(repeats):
        for name, (step, data) in steps.items():
            start = time.perf_counter()
            for xb, tb in data:
                step(xb, tb)
            best[name] = min(best[name], time.perf_counter() - start)
    peaks = {}
    for name, (step, data) in steps.items():
        tracemalloc.start()
        step(*data[0])
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {name: (best[name], peaks[name]) for name in steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=60, help="batches timed (extrapolated to 600)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    batches = [(rng.random((BATCH, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, BATCH))
               for _ in range(args.batches)]
    scale = EPOCH / (BATCH * args.batches)
    lr = 0.01

    model = xpnet_model()
    book = BookNet(params_of(model))
    loss_fn, opt = xn.losses.SoftmaxCrossEntropy(), xn.optim.SGD(lr)

    def xpnet_step(xb, tb):
        loss = loss_fn.forward(model.forward(xb), tb, check=False)
        model.backward(loss_fn.backward(), input_grad=False)  # as PyTorch: no gradient for the images
        opt.step(model)
        return loss

    steps = {"xpnet": (xpnet_step, batches),
             "numpy im2col (book)": (lambda xb, tb: book.step(xb, tb, lr), batches)}

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 30, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                  torch.nn.Flatten(), torch.nn.Linear(4320, 100), torch.nn.ReLU(),
                                  torch.nn.Linear(100, 10))
        topt = torch.optim.SGD(net.parameters(), lr=lr)

        def torch_step(xb, tb):
            topt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xb), tb)
            loss.backward()
            topt.step()
            return loss

        tbatches = [(torch.from_numpy(xb), torch.from_numpy(tb)) for xb, tb in batches]
        steps[f"pytorch {torch.__version__} cpu ({torch.get_num_threads()} threads)"] = (torch_step, tbatches)
    else:
        print("torch is not installed: PyTorch comparison skipped")

    results = time_all(steps, args.repeats)
    xpnet_col = sum(col.nbytes for col in model[0]._col)  # one im2col matrix per group
    print(f"{args.batches} batches of {BATCH} timed (best of {args.repeats}), extrapolated to {EPOCH} images")
    print(thread_line())
    base = results["xpnet"][0]
    for name, (sec, peak) in results.items():
        # tracemalloc sees NumPy's allocations, not PyTorch's own allocator.
        memory = "n/a" if name.startswith("pytorch") else f"{peak / 2**20:.1f} MiB"
        print(f"  {name:40s} {sec * 1e3 / args.batches:7.2f} ms/batch  {sec * scale:6.2f} s/epoch  "
              f"xpnet time / this time = {base / sec:4.2f}  peak NumPy memory/step {memory}")
    print(f"im2col buffers per batch: xpnet conv col {xpnet_col / 2**20:.2f} MiB; "
          f"book conv col + pool col {book.col_bytes / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
