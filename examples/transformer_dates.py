"""Dates in many formats translated to ISO dates by a small Transformer (xn.layers.Transformer, PyTorch's
nn.Transformer): the book's ch. 8 task (``attention_dates.py``) with "Attention Is All You Need" in place of the
book's LSTM encoder-decoder with attention.

The model is one of your own (``xn.Model``): embeddings scaled by sqrt(d_model) plus the paper's fixed sinusoidal
positions (a layer of your own, forward and backward written out), the encoder-decoder, and a Linear layer over
the vocabulary; the decoder reads the answer so far under a causal mask (``tgt_is_causal=True``). Answers are
decoded greedily, one character at a time. The data are generated in the book's formats (``xn.datasets.dates()``,
50,000 lines, the last 10 % held out).

    python examples/transformer_dates.py [--epochs 3] [--d-model 64] [--layers 2] [--device auto] [--n 50000]
"""

import argparse
import math
import time

import numpy as np

import xpnet as xn

L = xn.layers


class PositionalEncoding(L.Layer):
    """x (N, T, D) -> x * sqrt(D) + PE[:T], the sinusoids of "Attention Is All You Need"
    (PE[p, 2i] = sin(p / 10000^(2i/D)), PE[p, 2i+1] = cos(...)), kept as a buffer so that it moves with the
    model. backward(dy) = dy * sqrt(D). Caches nothing."""

    def __init__(self, d_model, max_len=64):
        super().__init__()
        position = np.arange(max_len)[:, None]
        angle = position / 10000 ** (np.arange(0, d_model, 2) / d_model)
        pe = np.zeros((max_len, d_model), np.float32)
        pe[:, 0::2], pe[:, 1::2] = np.sin(angle), np.cos(angle)
        self.buffers["pe"] = pe
        self.scale = math.sqrt(d_model)

    def forward(self, x, train=True):
        return x * self.scale + self.buffers["pe"][: x.shape[1], :]

    def backward(self, dy):
        return dy * self.scale


class DateTransformer(xn.Model):
    """forward(question ids (N, S), answer so far (N, T)) -> scores (N, T, vocab) of each next character."""

    def __init__(self, vocab, d_model=64, nhead=4, layers=2, dim_feedforward=256, dropout=0.1):
        super().__init__()
        self.src_embed = L.Embedding(vocab, d_model, init=d_model ** -0.5)
        self.src_position = PositionalEncoding(d_model)
        self.tgt_embed = L.Embedding(vocab, d_model, init=d_model ** -0.5)
        self.tgt_position = PositionalEncoding(d_model)
        self.transformer = L.Transformer(d_model, nhead, layers, layers, dim_feedforward, dropout)
        self.out = L.Linear(d_model, vocab)

    def forward(self, src, tgt, train=True):
        s = self.src_position.forward(self.src_embed.forward(src, train), train)
        t = self.tgt_position.forward(self.tgt_embed.forward(tgt, train), train)
        return self.out.forward(self.transformer.forward(s, t, tgt_is_causal=True, train=train), train)

    def backward(self, dy):
        ds, dt = self.transformer.backward(self.out.backward(dy))
        self.src_embed.backward(self.src_position.backward(ds))
        self.tgt_embed.backward(self.tgt_position.backward(dt))
        return None, None  # ids have no gradient

    def answer(self, questions, start, length):
        """Greedy answers (N, length) as a NumPy array: the questions encoded once on the model's device, then
        each step's most likely character appended to the answer so far (evaluation mode: no dropout)."""
        xp = self.device.xp
        src = xn.to_device(questions, self.device)
        memory = self.transformer.encoder.forward(self.src_position.forward(self.src_embed.forward(src, False),
                                                                            False), train=False)
        so_far = xn.to_device(np.asarray(start)[:, None], self.device)
        for _ in range(length):
            t = self.tgt_position.forward(self.tgt_embed.forward(so_far, False), False)
            h = self.transformer.decoder.forward(t, memory, tgt_is_causal=True, train=False)
            scores = self.out.forward(h[:, -1, :], False)
            so_far = xp.concat([so_far, xp.astype(xp.argmax(scores, axis=-1), so_far.dtype)[:, None]], axis=1)
        return xn.to_numpy(so_far[:, 1:])


class ExactMatch(xn.callbacks.Callback):
    """After each epoch, the share of test questions answered exactly, printed with three examples."""

    def __init__(self, model, x_test, t_test, data):
        self.model, self.x_test, self.t_test, self.data = model, x_test, t_test, data
        self.scores = []

    def on_epoch_end(self, epoch, logs):
        start = time.perf_counter()
        guess = self.model.answer(self.x_test, self.t_test[:, 0], self.t_test.shape[1] - 1)
        self.scores.append(float(np.mean(np.all(guess == self.t_test[:, 1:], axis=1))))
        for q, g in zip(self.x_test[:3], guess[:3]):
            print(f"  {self.data.decode(q).strip()!r} -> {self.data.decode(g)!r}")
        print(f"epoch {epoch}: exact-match answers {100 * self.scores[-1]:.2f} % of {len(self.x_test)} "
              f"({time.perf_counter() - start:.1f}s to answer)", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=50_000, help="questions to generate, the last 10 %% held out")
    args = ap.parse_args(argv)

    data = xn.datasets.dates(args.n)
    (x, t), (x_test, t_test) = data.train, data.test
    xn.init.seed(0)
    model = DateTransformer(len(data.char_to_id), d_model=args.d_model, layers=args.layers,
                            dim_feedforward=4 * args.d_model)
    print(model.summary(input_shape=[x.shape[1:], (t.shape[1] - 1,)]).splitlines()[-1])  # the parameter count
    callbacks = [ExactMatch(model, x_test, t_test, data),
                 xn.callbacks.LearningRateSchedule(xn.callbacks.cosine(args.lr, args.epochs, args.lr / 10))]
    xn.train(model, ((x, t[:, :-1]), t[:, 1:]), loss="cross_entropy", optimizer=xn.optim.Adam(args.lr),
             epochs=args.epochs, batch_size=args.batch_size, device=args.device, callbacks=callbacks,
             clip_grad_norm=1.0)
    return callbacks[0].scores


if __name__ == "__main__":
    main()
