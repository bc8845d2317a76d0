"""What one training step asks of a GPU, per model that the README, docs and examples train with ``xn.train``:
kernel launches, host-to-device copies and waits for the GPU (a read back to the host, a synchronize).

Counted on the fake CuPy of ``tests/fake_cupy`` (NumPy dressed as CuPy, which counts each kernel, upload and wait:
``cupy.cuda.stream.launches``, ``uploads``, ``host_waits``); between an epoch's first batch and its last step,
divided by the steps in between, so that what an epoch does once (its permutation, the loss read at its end)
is left out. Each model trains 2 epochs; the second epoch's figures are printed (the first loads kernels and
makes what layers cache). On real CuPy only the waits can be seen from Python, by timing; this script then
prints the host time a step takes instead (the GPU's time is not waited for).

    PYTHONPATH=tests/fake_cupy python benchmarks/launches.py [--only cnn lstm_lm ...] [--top 8] [--json]

``FAKE_CUPY_WAIT_TRACE=1`` (and ``FAKE_CUPY_UPLOAD_TRACE=1``) add the Python stack of each wait (upload) inside
an epoch, the innermost xpnet frames first, to find where it comes from.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import sys
import time

import numpy as np

import xpnet as xn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _threads import thread_line  # noqa: E402 - the folder of this script first

L = xn.layers


def mlp():
    """Issue 23's 784-100-10 MLP at batch 100, SGD: the step the fused kernels were made for."""
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((500, 784)).astype(np.float32), rng.integers(0, 10, 500)
    model = xn.Sequential(L.Linear(784, 100), L.ReLU(), L.Linear(100, 10))
    return model, (x, t), {"loss": "cross_entropy", "optimizer": xn.optim.SGD(0.1), "batch_size": 100}


def cnn():
    """Conv2d, BatchNorm, ReLU, MaxPool2d, Dropout2d, Linear (README's CNN, fashion_mnist_cnn.py), AdamW and a
    per-step OneCycleLR (``LRScheduler(..., interval="step")``)."""
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((40, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 40)
    model = xn.Sequential(L.Conv2d(1, 4, 3, padding=1), L.BatchNorm(4), L.ReLU(), L.MaxPool2d(2), L.Dropout2d(0.2),
                          L.Flatten(), L.Linear(4 * 4 * 4, 10))
    opt = xn.optim.AdamW(1e-3, weight_decay=1e-4)
    sched = xn.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=20)
    return model, (x, t), {"loss": "cross_entropy", "optimizer": opt, "batch_size": 8,
                           "callbacks": [xn.callbacks.LRScheduler(sched, interval="step")]}


def _stream():
    return xn.datasets.TokenStream(np.random.default_rng(0).integers(0, 20, 400), 4, 8)


def lstm_lm():
    """xn.models.LanguageModel (Embedding, 2 stateful LSTMs, Dropout, Linear) over a TokenStream, clip_grad_norm,
    perplexity (char_lm.py)."""
    model = xn.models.LanguageModel(20, 8, 16, num_layers=2, dropout=0.1)
    return model, _stream(), {"loss": "cross_entropy", "optimizer": xn.optim.Adam(1e-2), "clip_grad_norm": 1.0}


def gru_lm():
    """Embedding, a stateful GRU, Linear over a TokenStream, clip_grad_norm."""
    model = xn.Sequential(L.Embedding(20, 8), L.GRU(8, 16, stateful=True), L.Linear(16, 20))
    return model, _stream(), {"loss": "cross_entropy", "optimizer": xn.optim.Adam(1e-2), "clip_grad_norm": 1.0}


class EncoderClassifier(xn.Model):
    """ids (N, T), 0 the padding -> class scores (N, C): Embedding, PositionalEncoding, a TransformerEncoder
    under a key-padding mask made on the device from the ids, the mean over T, Linear."""

    def __init__(self, vocab=20, d_model=16, classes=3):
        super().__init__()
        self.embed = L.Embedding(vocab, d_model)
        self.position = L.PositionalEncoding(d_model, dropout=0.1)
        self.encoder = L.TransformerEncoder(L.TransformerEncoderLayer(d_model, 2, 32, dropout=0.1), 2)
        self.out = L.Linear(d_model, classes)

    def forward(self, ids, train=True):
        h = self.encoder.forward(self.position.forward(self.embed.forward(ids, train), train),
                                 src_key_padding_mask=ids == 0, train=train)
        self._steps = h.shape[1]
        return self.out.forward(h.mean(axis=1), train)

    def backward(self, dy):
        dh = self.out.backward(dy)
        xp = xn.backend.namespace(dh)
        dh = xp.broadcast_to(dh[:, None, :] / self._steps, (dh.shape[0], self._steps, dh.shape[1]))
        self.embed.backward(self.position.backward(self.encoder.backward(dh)))


def transformer():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, (40, 6))
    ids[::2, 4:] = 0  # every other sequence padded
    return EncoderClassifier(), (ids, rng.integers(0, 3, 40)), {"loss": "cross_entropy",
                                                                 "optimizer": xn.optim.Adam(1e-3), "batch_size": 8}


def bag():
    """EmbeddingBag (mean) and Linear: a text classifier of bags of ids (N, L), padding id 0."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 30, (40, 5))
    model = xn.Sequential(L.EmbeddingBag(30, 8, padding_idx=0), L.Linear(8, 3))
    return model, (ids, rng.integers(0, 3, 40)), {"loss": "cross_entropy", "optimizer": xn.optim.Adam(1e-2),
                                                  "batch_size": 8}


def embedding():
    """Embedding, Flatten, Linear: a text classifier of fixed-length ids (N, L)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 30, (40, 5))
    model = xn.Sequential(L.Embedding(30, 8), L.Flatten(), L.Linear(40, 3))
    return model, (ids, rng.integers(0, 3, 40)), {"loss": "cross_entropy", "optimizer": xn.optim.Adam(1e-2),
                                                  "batch_size": 8}


class ResidualNet(xn.Model):
    """A model of one's own with a residual block written out: x -> conv -> bn -> relu -> (+ x) -> pool -> fc."""

    def __init__(self):
        super().__init__()
        self.stem = L.Conv2d(1, 4, 3, padding=1)
        self.body = xn.Sequential(L.Conv2d(4, 4, 3, padding=1, bias=False), L.BatchNorm(4), L.ReLU())
        self.pool, self.fc = L.GlobalAvgPool(), L.Linear(4, 10)

    def forward(self, x, train=True):
        h = self.stem.forward(x, train)
        return self.fc.forward(self.pool.forward(h + self.body.forward(h, train), train), train)

    def backward(self, dy):
        dh = self.pool.backward(self.fc.backward(dy))
        return self.stem.backward(dh + self.body.backward(dh))


def residual():
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((40, 1, 6, 6)).astype(np.float32), rng.integers(0, 10, 40)
    return ResidualNet(), (x, t), {"loss": "cross_entropy", "optimizer": xn.optim.Nesterov(0.05, momentum=0.9),
                                   "batch_size": 8}


def seq2seq():
    """The book's peeky seq2seq (an encoder-decoder with its backward written out) on addition questions,
    clip_grad_norm (seq2seq_addition.py)."""
    data = xn.datasets.addition(64)
    (x, t) = data.train
    model = xn.book.peeky_seq2seq(len(data.char_to_id), wordvec_size=8, hidden_size=16)
    return model, ((x, t[:, :-1]), t[:, 1:]), {"loss": "cross_entropy", "optimizer": xn.optim.Adam(1e-2),
                                               "batch_size": 16, "clip_grad_norm": 5.0}


def attention_seq2seq():
    """The book's attention seq2seq (ch. 8, attention_dates.py), clip_grad_norm."""
    data = xn.datasets.addition(64)
    (x, t) = data.train
    model = xn.book.attention_seq2seq(len(data.char_to_id), wordvec_size=8, hidden_size=16)
    return model, ((x, t[:, :-1]), t[:, 1:]), {"loss": "cross_entropy", "optimizer": xn.optim.Adam(1e-2),
                                               "batch_size": 16, "clip_grad_norm": 5.0}


class Translator(xn.Model):
    """transformer_dates.py's model with xn.layers.PositionalEncoding: (question ids (N, S), answer so far (N, T))
    -> scores (N, T, vocab), the decoder under a causal mask (``tgt_is_causal=True``)."""

    def __init__(self, vocab, d_model=16):
        super().__init__()
        self.src_embed, self.tgt_embed = L.Embedding(vocab, d_model), L.Embedding(vocab, d_model)
        self.src_position = L.PositionalEncoding(d_model, dropout=0.1)
        self.tgt_position = L.PositionalEncoding(d_model, dropout=0.1)
        self.transformer = L.Transformer(d_model, 2, 1, 1, 32, 0.1)
        self.out = L.Linear(d_model, vocab)

    def forward(self, src, tgt, train=True):
        s = self.src_position.forward(self.src_embed.forward(src, train), train)
        t = self.tgt_position.forward(self.tgt_embed.forward(tgt, train), train)
        return self.out.forward(self.transformer.forward(s, t, tgt_is_causal=True, train=train), train)

    def backward(self, dy):
        ds, dt = self.transformer.backward(self.out.backward(dy))
        self.src_embed.backward(self.src_position.backward(ds))
        self.tgt_embed.backward(self.tgt_position.backward(dt))
        return None, None


def translator():
    data = xn.datasets.addition(64)
    (x, t) = data.train
    return Translator(len(data.char_to_id)), ((x, t[:, :-1]), t[:, 1:]), {
        "loss": "cross_entropy", "optimizer": xn.optim.Adam(1e-3), "batch_size": 16, "clip_grad_norm": 1.0}


def norms():
    """Conv1d, BatchNorm over (N, C, L), GroupNorm, InstanceNorm1d, MaxPool1d, Dropout1d, Linear; clip_grad_value."""
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((40, 2, 8)).astype(np.float32), rng.integers(0, 3, 40)
    model = xn.Sequential(L.Conv1d(2, 4, 3, padding=1), L.BatchNorm(4), L.ReLU(), L.GroupNorm(2, 4),
                          L.InstanceNorm1d(4, affine=True), L.MaxPool1d(2), L.Dropout1d(0.1), L.Flatten(),
                          L.Linear(16, 3))
    return model, (x, t), {"loss": "cross_entropy", "optimizer": xn.optim.Adam(1e-2), "batch_size": 8,
                           "clip_grad_value": 1.0}


def augmented():
    """fashion_mnist_resnet.py's recipe, small: Residual blocks (a 1x1 shortcut), GlobalAvgPool, Nesterov, batches
    shifted and flipped on the device (``transform=RandomShiftFlip``), an EMA of the weights updated each step
    (``AveragedWeights(..., interval="step")``)."""
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((40, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 40)
    block = L.Residual(xn.Sequential(L.Conv2d(4, 8, 3, stride=2, padding=1, bias=False), L.BatchNorm(8), L.ReLU(),
                                     L.Conv2d(8, 8, 3, padding=1, bias=False), L.BatchNorm(8)),
                       xn.Sequential(L.Conv2d(4, 8, 1, stride=2, bias=False), L.BatchNorm(8)))
    model = xn.Sequential(L.Conv2d(1, 4, 3, padding=1, bias=False), L.BatchNorm(4), L.ReLU(), block, L.ReLU(),
                          L.GlobalAvgPool(), L.Linear(8, 10))
    swa = xn.optim.swa_utils
    ema = swa.AveragedModel(model, multi_avg_fn=swa.get_ema_multi_avg_fn(0.99))
    return model, (x, t), {"loss": "cross_entropy", "optimizer": xn.optim.Nesterov(0.05, momentum=0.9,
                                                                                    weight_decay=5e-4),
                           "batch_size": 8, "transform": xn.datasets.RandomShiftFlip(1),
                           "callbacks": [xn.callbacks.AveragedWeights(ema, interval="step")]}


def tied_lm():
    """A LanguageModel with tied weights (TiedLinear), gradients accumulated over 2 batches, a per-epoch
    ``scheduler=``."""
    model = xn.models.LanguageModel(20, 16, 16, tie_weights=True)
    opt = xn.optim.SGD(0.5, momentum=0.9)
    return model, _stream(), {"loss": "cross_entropy", "optimizer": opt, "accumulate_grad_batches": 2,
                              "scheduler": xn.optim.lr_scheduler.StepLR(opt, 1, 0.5)}


def finetune():
    """finetune_fashion_mnist.py's second phase, small: a frozen backbone (``requires_grad_(False)``,
    FrozenBatchNorm2d) under a head that trains."""
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((40, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 40)
    backbone = xn.Sequential(L.Conv2d(1, 4, 3, padding=1), L.FrozenBatchNorm2d(4), L.ReLU(), L.MaxPool2d(2))
    backbone.requires_grad_(False)
    model = xn.Sequential(backbone, L.Flatten(), L.Linear(64, 10))
    return model, (x, t), {"loss": "cross_entropy", "optimizer": xn.optim.Adam(1e-2), "batch_size": 8}


MODELS = {f.__name__: f for f in (mlp, cnn, norms, augmented, finetune, lstm_lm, gru_lm, tied_lm, transformer,
                                  translator, bag, embedding, residual, seq2seq, attention_seq2seq)}


@contextlib.contextmanager
def watched_epochs(record):
    """Patch the epochs of BatchIterator and TokenStream: ``record(steps, before, second)`` at each epoch's end,
    where ``before`` is what :func:`counters` gave right after its first batch and ``second`` right after its
    second (the first step done; None where the epoch has one step)."""
    patched = []
    for cls in (xn.datasets.BatchIterator, xn.datasets.TokenStream):
        original = cls.epoch

        def epoch(self, e, *args, original=original, **kwargs):
            batches = original(self, e, *args, **kwargs)
            first = next(batches)
            before, second, steps = counters(), None, 1
            try:
                yield first
                for batch in batches:
                    steps += 1
                    second = counters() if second is None else second
                    yield batch
            finally:
                record(steps, before, second)

        cls.epoch = epoch
        patched.append((cls, original))
    try:
        yield
    finally:
        for cls, original in patched:
            cls.epoch = original


def counters():
    """(waits, uploads, launches by name, wait stacks, upload stacks, host time) so far."""
    import cupy  # noqa: PLC0415
    s = getattr(cupy.cuda.stream, "launches", None)
    if s is None:  # real CuPy
        return 0, 0, collections.Counter(), 0, 0, time.perf_counter()
    st = cupy.cuda.stream
    return st.host_waits, st.uploads, collections.Counter(st.launches), len(st.wait_stacks), len(st.upload_stacks), \
        time.perf_counter()


_NOT_LAUNCHES = {"empty", "empty_like"}  # an allocation only; zeros (a memset) and full/ones (a fill) are counted


def _xpnet_frames(stack: str, depth: int = 4) -> str:
    """The innermost ``depth`` frames of a formatted stack that are xpnet's or the script's."""
    frames = [f for f in stack.split('  File "')[1:] if "fake_cupy" not in f and "/numpy/" not in f
              and "array_api_compat" not in f]
    return " <- ".join(f.split("\n")[0].replace('", line ', ":").split(", in ")[0].split("/xpnet/")[-1]
                       + " " + f.split("\n")[1].strip() for f in reversed(frames[-depth:]))


def measure(name: str) -> dict:
    """One model trained 2 epochs on "cuda": its second epoch's figures per step."""
    xn.init.seed(0)
    model, data, kwargs = MODELS[name]()
    found = []

    def record(steps, before, second):
        after = counters()
        import cupy  # noqa: PLC0415
        st = cupy.cuda.stream
        launches = after[2] - before[2]
        found.append({"steps": steps, "waits": after[0] - before[0], "uploads": after[1] - before[1],
                      "waits_after_first_step": after[0] - (before if second is None else second)[0],
                      "launches": sum(v for k, v in launches.items() if k not in _NOT_LAUNCHES) / steps,
                      "by_name": {k: v / steps for k, v in launches.most_common() if k not in _NOT_LAUNCHES},
                      "wait_stacks": [_xpnet_frames(s) for s in getattr(st, "wait_stacks", [])[before[3]:after[3]]],
                      "upload_stacks": [_xpnet_frames(s) for s in
                                        getattr(st, "upload_stacks", [])[before[4]:after[4]]],
                      "host_ms": 1000 * (after[5] - before[5]) / steps})

    with watched_epochs(record):
        xn.train(model, data, epochs=2, device="cuda", progress=False, **kwargs)
    return {"name": name, **found[-1], "waits_per_epoch": [f["waits"] for f in found],
            "waits_after_first_step": [f["waits_after_first_step"] for f in found],
            "uploads_per_epoch": [f["uploads"] for f in found]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--top", type=int, default=6, help="the kernels launched most, per model")
    ap.add_argument("--json", action="store_true", help="one JSON line per model instead of the table")
    args = ap.parse_args(argv)
    import cupy  # noqa: PLC0415
    fake = hasattr(cupy.cuda.stream, "launches")
    if not fake:
        print("real CuPy: launches and uploads are counted on the fake CuPy only "
              "(PYTHONPATH=tests/fake_cupy); host ms per step follow")
    for name in args.only:
        row = measure(name)
        if args.json:
            print(json.dumps(row))
            continue
        print(f"{name:12s} launches/step {row['launches']:6.1f}  uploads/epoch {row['uploads_per_epoch']}  "
              f"waits/epoch {row['waits_per_epoch']} ({row['waits_after_first_step']} after its first step)  "
              f"host {row['host_ms']:.2f} ms/step ({row['steps']} steps)" if fake
              else f"{name:12s} host {row['host_ms']:.2f} ms/step")
        if fake:
            print("    " + ", ".join(f"{k} {v:g}" for k, v in list(row["by_name"].items())[:args.top]))
            for s in collections.Counter(row["wait_stacks"]).most_common():
                print(f"    wait x{s[1]}: {s[0]}")
            for s in collections.Counter(row["upload_stacks"]).most_common():
                print(f"    upload x{s[1]}: {s[0]}")
    print(f"{thread_line()}; load average {os.getloadavg()[0]:.1f} (host ms are wall time: noisy on a busy machine)")


if __name__ == "__main__":
    main()
