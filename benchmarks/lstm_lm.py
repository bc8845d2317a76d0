"""An LSTM language model's training step at the book's BetterRnnlm sizes, xpnet against PyTorch (CPU or CUDA).

The model is BetterRnnlm without its weight tying: Embedding(10000, 650) - Dropout - LSTM(650, 650) -
Dropout - LSTM(650, 650) - Dropout - Linear(650, 10000), softmax cross-entropy over (batch 20, 35 steps),
SGD; both LSTMs stateful (the state carried from batch to batch, as the book's RnnlmTrainer does; PyTorch
detaches it). PyTorch runs the same layers (nn.Embedding, nn.Dropout, nn.LSTM with batch_first, nn.Linear,
cross_entropy) eagerly in float32. The two run interleaved in this one process, --steps steps each per
measurement, best of --repeats; prints ms per step, the ratio xpnet / PyTorch and the thread counts.
With ``--device cuda`` xpnet runs on CuPy and PyTorch on CUDA, each run ended by a synchronisation.

    python benchmarks/lstm_lm.py [--steps 5] [--repeats 5] [--vocab 10000] [--hidden 650] [--batch 20]
                                 [--time 35] [--dropout 0.5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

# PyTorch's OpenMP threads spin after each op by default and take the cores from NumPy's BLAS in the
# interleaved runs; passive waiting keeps the comparison fair to both.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _threads import thread_line  # noqa: E402

import xpnet as xn  # noqa: E402
from xpnet.layers import LSTM, Dropout, Embedding, Linear  # noqa: E402


def xpnet_model(vocab: int, hidden: int, p: float) -> xn.Sequential:
    return xn.Sequential(Embedding(vocab, hidden), Dropout(p), LSTM(hidden, hidden, stateful=True), Dropout(p),
                         LSTM(hidden, hidden, stateful=True), Dropout(p), Linear(hidden, vocab))


class TorchLM:
    """The same network in PyTorch, with xpnet's initial weights copied in."""

    def __init__(self, torch, model: xn.Sequential, p: float, device: str = "cpu"):
        nn = torch.nn
        self.torch = torch
        vocab, hidden = model[0].params["W"].shape
        self.embed, self.drop = nn.Embedding(vocab, hidden), nn.Dropout(p)
        self.lstms = [nn.LSTM(hidden, hidden, batch_first=True) for _ in range(2)]
        self.out = nn.Linear(hidden, vocab)
        with torch.no_grad():
            self.embed.weight.copy_(torch.from_numpy(model[0].params["W"]))
            for lstm, ours in zip(self.lstms, (model[2], model[4])):
                lstm.weight_ih_l0.copy_(torch.from_numpy(ours.params["Wx"].T))
                lstm.weight_hh_l0.copy_(torch.from_numpy(ours.params["Wh"].T))
                lstm.bias_ih_l0.copy_(torch.from_numpy(ours.params["b"]))
                lstm.bias_hh_l0.zero_()
            self.out.weight.copy_(torch.from_numpy(model[6].params["W"].T))
            self.out.bias.copy_(torch.from_numpy(model[6].params["b"]))
        for m in (self.embed, *self.lstms, self.out):
            m.to(device)
        self.params = [q for m in (self.embed, *self.lstms, self.out) for q in m.parameters()]
        self.opt = torch.optim.SGD(self.params, lr=0.1)
        self.states = [None, None]

    def step(self, x, t) -> None:
        h = self.drop(self.embed(x))
        for k, lstm in enumerate(self.lstms):
            h, state = lstm(h, self.states[k])
            self.states[k] = tuple(s.detach() for s in state)
            h = self.drop(h)
        scores = self.out(h)
        loss = self.torch.nn.functional.cross_entropy(scores.reshape(-1, scores.shape[-1]), t.reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def batches(steps, vocab, batch, time_size):
    """``steps`` (x, t) batches of token ids on the host, (batch, time_size) each, as the book's trainer cuts them."""
    rng = np.random.default_rng(0)
    corpus = rng.integers(0, vocab, batch * time_size * (steps + 1) + 1)
    return list(xn.datasets.TokenStream(corpus, batch, time_size).epoch(0))[:steps]


def xpnet_runner(model: xn.Sequential, host, dev):
    """xpnet's side: ``model`` moved to ``dev``; returns ``run()``, one SGD step per batch of ``host``, then a
    synchronisation of ``dev``."""
    model.to(dev)
    data = [(xn.to_device(x, dev), xn.to_device(t, dev)) for x, t in host]
    loss, opt = xn.losses.SoftmaxCrossEntropy(), xn.optim.SGD(0.1)

    def run():
        for x, t in data:
            loss.forward(model.forward(x), t, check=False)
            model.backward(loss.backward(), input_grad=False)
            opt.step(model)
        dev.synchronize()
    return run


def measure(torch, steps=5, repeats=5, vocab=10000, hidden=650, batch=20, time_size=35, dropout=0.5,
            device="cpu"):
    """Best-of-``repeats`` seconds per training step of xpnet and of PyTorch, interleaved, on ``device``."""
    dev = xn.device(device, fallback=False)  # cuda: xpnet on CuPy, PyTorch on CUDA, or fail saying why
    on_gpu = dev.name.startswith("cuda")
    host = batches(steps, vocab, batch, time_size)
    torch_device = "cuda" if on_gpu else "cpu"
    torch_batches = [(torch.from_numpy(x).to(torch_device), torch.from_numpy(t).to(torch_device)) for x, t in host]

    xn.init.seed(0)
    model = xpnet_model(vocab, hidden, dropout)
    reference = TorchLM(torch, model, dropout, torch_device)  # xpnet's initial weights, from the host
    run_xpnet = xpnet_runner(model, host, dev)

    def run_torch():
        for x, t in torch_batches:
            reference.step(x, t)
        if on_gpu:
            torch.cuda.synchronize()

    run_xpnet()  # warm-up: first-use costs (fast-path imports, allocator)
    run_torch()
    times = {"xpnet": [], "torch": []}
    for _ in range(repeats):
        for name, fn in (("xpnet", run_xpnet), ("torch", run_torch)):
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / steps)
    return {k: min(v) for k, v in times.items()}


def report(torch, steps=5, repeats=5, vocab=10000, hidden=650, batch=20, time_size=35, dropout=0.5,
           device="cpu") -> None:
    """Print the measurement (``benchmarks/compare.py`` prints it below its table too)."""
    best = measure(torch, steps, repeats, vocab, hidden, batch, time_size, dropout, device)
    ours = "xpnet (CuPy)" if device.startswith("cuda") else "xpnet (NumPy)"
    theirs = f"PyTorch {torch.__version__}" + (" CUDA" if device.startswith("cuda") else "")
    print(f"LSTM language model: vocabulary {vocab}, 2 x LSTM {hidden}, batch {batch}, {time_size} steps, "
          f"dropout {dropout}, SGD, float32; best of {repeats} x {steps} steps")
    print(f"{ours:<24}: {best['xpnet'] * 1e3:.1f} ms/step")
    print(f"{theirs:<24}: {best['torch'] * 1e3:.1f} ms/step")
    print(f"ratio xpnet/PyTorch: {best['xpnet'] / best['torch']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--hidden", type=int, default=650)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--time", type=int, default=35)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (xpnet on CuPy, PyTorch on CUDA)")
    args = ap.parse_args()
    import torch  # noqa: PLC0415 - the baseline; the script needs it

    report(torch, args.steps, args.repeats, args.vocab, args.hidden, args.batch, args.time, args.dropout, args.device)
    print(thread_line(torch))


if __name__ == "__main__":
    main()
