"""Encoder-decoder models over id sequences, the book's way (vol. 2, ch. 7 and 8): ``Seq2seq``,
``PeekySeq2seq`` and ``AttentionSeq2seq``, with forward and backward written out.

How a step goes:

1. ``forward(xs, ts, train=True)``: the encoder (Embedding, LSTM) reads the question ids xs (N, T_enc)
   and gives its hidden states hs (N, T_enc, H); the decoder starts its LSTM from hs[:, -1] and reads
   the answer ids ts (N, T_dec) (the start symbol, then the answer but its last id), giving scores
   (N, T_dec, V) for the next id at each step. Train it against ``ts`` shifted by one:
   ``xn.train(model, ((xs, ts[:, :-1]), ts[:, 1:]), loss=SoftmaxCrossEntropy(), ...)``.
2. ``backward(dscores)``: the decoder's backward returns the gradient of hs, with the gradient of the
   state its LSTM started from (``lstm.dh``) added at the last step by hand, as the book does; the
   encoder's backward takes it. Ids have no gradient: it returns ``(None, None)``.
3. ``generate(xs, start_id, length)``: greedy decoding of a whole batch, one id per step, each step's
   argmax fed back as the next input (the book's ``generate``, which takes one question at a time).

The decoders differ in what they feed their LSTM and output layer: ``Decoder`` the embedded ids;
``PeekyDecoder`` also the encoder's last state at every step (concatenated before the LSTM and before
the output layer); ``AttentionDecoder`` the LSTM's states and an attention-weighted sum of all
encoder states (:class:`~xpnet.layers.Attention`). Weights start as the book's (``xn.book``'s
builders make these with the book's arguments).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._user import is_int
from ..backend import index_dtype, namespace, no_autograd, plain_array, to_device, to_numpy, untracked
from ..layers import LSTM, Attention, Embedding, Linear
from ..layers.container import Container, mode
from .chain import StopsWhereNothingTrains, backward_chain
from .model import Model

__all__ = ["Encoder", "Decoder", "PeekyDecoder", "AttentionDecoder", "Seq2seq", "PeekySeq2seq",
           "AttentionSeq2seq"]


class Encoder(StopsWhereNothingTrains, Container):
    """ids (N, T) -> hs (N, T, H): Embedding then LSTM (not stateful), the book's ``Encoder`` (its
    ``AttentionEncoder`` keeps all of hs; the others use hs[:, -1])."""

    def __init__(self, vocab_size: int, wordvec_size: int, hidden_size: int, dtype: str = "float32"):
        super().__init__()
        self.embed = Embedding(vocab_size, wordvec_size, dtype=dtype)
        self.lstm = LSTM(wordvec_size, hidden_size, dtype=dtype)

    def forward(self, xs: Any, train: bool = True) -> Any:
        return self.lstm.forward(self.embed.forward(xs, train=train), train=train)

    def backward(self, dhs: Any, input_grad: bool = True) -> None:
        backward_chain([self.embed, self.lstm], dhs, input_grad)


def _at_last_step(dh: Any, steps: int) -> Any:
    """(N, H) -> (N, steps, H), zeros but the last step (the book's ``dhs[:, -1, :] = dh``)."""
    xp = namespace(dh)
    zeros = xp.zeros((dh.shape[0], steps - 1, dh.shape[1]), dtype=dh.dtype, device=dh.device)
    return xp.concat([zeros, dh[:, None, :]], axis=1)


class Decoder(Container):
    """The book's ``Decoder``: ``start(hs)`` sets the LSTM's state to hs[:, -1]; ``run(ids)`` gives
    scores (N, T, V), carrying the state from call to call (stateful); ``backward`` returns d hs."""

    def __init__(self, vocab_size: int, wordvec_size: int, hidden_size: int, dtype: str = "float32"):
        super().__init__()
        self.embed = Embedding(vocab_size, wordvec_size, dtype=dtype)
        self.lstm = LSTM(self._lstm_input(wordvec_size, hidden_size), hidden_size, stateful=True, dtype=dtype)
        self.affine = Linear(self._affine_input(hidden_size), vocab_size, init="sigmoid", dtype=dtype)
        self._enc_steps = 0

    def _lstm_input(self, wordvec_size: int, hidden_size: int) -> int:
        return wordvec_size

    def _affine_input(self, hidden_size: int) -> int:
        return hidden_size

    def start(self, hs: Any) -> None:
        self._enc_steps = hs.shape[1]
        self.lstm.set_state(hs[:, -1, :])

    def forward(self, ts: Any, hs: Any, train: bool = True) -> Any:  # type: ignore[override]
        self.start(hs)
        return self.run(ts, train)

    def run(self, ts: Any, train: bool = True) -> Any:
        out = self.lstm.forward(self.embed.forward(ts, train=train), train=train)
        return self.affine.forward(out, train=train)

    def backward(self, dscore: Any) -> Any:
        self.embed.backward(self.lstm.backward(self.affine.backward(dscore)))
        return _at_last_step(self.lstm.dh, self._enc_steps)


class PeekyDecoder(Decoder):
    """The book's ``PeekyDecoder``: the encoder's last state h is concatenated before the embedded ids
    (the LSTM's input, (h, embed)) and before the LSTM's states (the output layer's, (h, lstm)) at
    every step; its gradient from every step comes back to the encoder with ``lstm.dh``."""

    def _lstm_input(self, wordvec_size: int, hidden_size: int) -> int:
        return hidden_size + wordvec_size

    def _affine_input(self, hidden_size: int) -> int:
        return 2 * hidden_size

    def start(self, hs: Any) -> None:
        super().start(hs)
        self._h = hs[:, -1, :]

    def run(self, ts: Any, train: bool = True) -> Any:
        xp = namespace(self._h)
        n, steps, size = ts.shape[0], ts.shape[1], self._h.shape[1]
        peek = xp.broadcast_to(self._h[:, None, :], (n, steps, size))
        out = self.lstm.forward(xp.concat([peek, self.embed.forward(ts, train=train)], axis=2), train=train)
        return self.affine.forward(xp.concat([peek, out], axis=2), train=train)

    def backward(self, dscore: Any) -> Any:
        xp = namespace(dscore)
        size = self._h.shape[1]
        dout = self.affine.backward(dscore)
        dx = self.lstm.backward(dout[:, :, size:])
        self.embed.backward(dx[:, :, size:])
        dh = self.lstm.dh + xp.sum(dout[:, :, :size] + dx[:, :, :size], axis=1)
        return _at_last_step(dh, self._enc_steps)


class AttentionDecoder(Decoder):
    """The book's ``AttentionDecoder``: the LSTM's states attend over every encoder state
    (:class:`~xpnet.layers.Attention`); the output layer reads (context, state). ``backward`` returns
    the attention's gradient of hs with ``lstm.dh`` added at the last step."""

    def __init__(self, vocab_size: int, wordvec_size: int, hidden_size: int, dtype: str = "float32"):
        super().__init__(vocab_size, wordvec_size, hidden_size, dtype)
        self.attention = Attention()

    def _affine_input(self, hidden_size: int) -> int:
        return 2 * hidden_size

    def start(self, hs: Any) -> None:
        super().start(hs)
        self._hs = hs

    def run(self, ts: Any, train: bool = True) -> Any:
        xp = namespace(self._hs)
        dec_hs = self.lstm.forward(self.embed.forward(ts, train=train), train=train)
        context = self.attention.forward(self._hs, dec_hs, train=train)
        return self.affine.forward(xp.concat([context, dec_hs], axis=2), train=train)

    def backward(self, dscore: Any) -> Any:
        dout = self.affine.backward(dscore)
        size = dout.shape[2] // 2
        dhs, ddec = self.attention.backward(dout[:, :, :size])
        self.embed.backward(self.lstm.backward(ddec + dout[:, :, size:]))
        return dhs + _at_last_step(self.lstm.dh, self._enc_steps)


class Seq2seq(StopsWhereNothingTrains, Model):
    """The book's ``Seq2seq(vocab_size, wordvec_size, hidden_size)``: forward(xs (N, T_enc), ts (N, T_dec))
    -> scores (N, T_dec, vocab_size); see the module docstring. ``generate(xs, start_id, length)``."""

    decoder_class: type = Decoder
    # What xn.train adds when it is given the questions alone (the book's trainer.fit(x_train, t_train)).
    inputs_hint = ("the book's fit(x_train, t_train) is xn.train(model, ((x_train, t_train[:, :-1]), "
                   "t_train[:, 1:]), loss='cross_entropy', ...): the decoder reads the answer so far, the targets "
                   "are its next ids")

    def __init__(self, vocab_size: int, wordvec_size: int, hidden_size: int, dtype: str = "float32"):
        super().__init__()
        self.encoder = Encoder(vocab_size, wordvec_size, hidden_size, dtype)
        self.decoder = self.decoder_class(vocab_size, wordvec_size, hidden_size, dtype)

    def forward(self, xs: Any, ts: Any, train: bool = True) -> Any:  # type: ignore[override]
        if hasattr(xs, "shape") and hasattr(ts, "shape") and tuple(xs.shape[:1]) != tuple(ts.shape[:1]):
            # else the decoder's LSTM spoke of a state the encoder set
            raise ValueError(f"{self.name}: xs (N, T_enc) and ts (N, T_dec) must hold the same number N of sequences, "
                             f"got {tuple(xs.shape)} and {tuple(ts.shape)}")
        return self.decoder.forward(ts, self.encoder.forward(xs, train=train), train=train)

    def backward(self, dscore: Any, input_grad: bool = True) -> tuple[None, None] | None:
        """dscore (N, T_dec, V) -> (None, None) (ids have no gradient); ``input_grad=False`` (``backward_params``):
        None, and a frozen encoder is not backpropagated through (``backward_chain``)."""
        backward_chain([self.encoder, self.decoder], dscore, input_grad)
        return (None, None) if input_grad else None

    def generate(self, xs: Any, start_id: Any, length: int) -> Any:
        """Greedy answers to the questions xs (N, T_enc) (any backend; moved to the model's device):
        ids (N, length) on the model's device in its default index dtype (int64 on NumPy, whatever the
        questions' integer dtype), starting after ``start_id`` (an int, or (N,) ids), each step's most
        likely id fed back as the next input. Runs in evaluation mode."""
        if not is_int(length) or length < 1:
            raise ValueError(f"{self.name}.generate: length must be an int >= 1, got {length!r}")
        dev = self.device
        xp = dev.xp
        xs = to_device(plain_array(untracked(xs), f"{self.name}.generate: xs") if hasattr(xs, "shape") else xs, dev)
        if xs.ndim != 2 or not xp.isdtype(xs.dtype, "integral"):
            raise ValueError(f"{self.name}.generate: xs must be integer ids of shape (N, T), got shape "
                             f"{tuple(xs.shape)} and dtype {xs.dtype}")
        n = xs.shape[0]
        start = (to_numpy(start_id) if hasattr(start_id, "shape") else np.asarray(start_id)).reshape(-1)
        if start.size not in (1, n) or start.dtype.kind not in "iu":
            raise ValueError(f"{self.name}.generate: start_id must be an int or {n} ids, got {start_id!r}")
        # answers in the default index dtype, not the questions': uint8 questions would wrap id 280 to 24
        index = index_dtype(xp, dev.native)
        ids = xp.astype(to_device(np.ascontiguousarray(np.broadcast_to(start, (n,))), dev), index)
        out = []
        from .ids import ids_checked_once  # noqa: PLC0415 - it imports this module

        # xs and the start ids checked once; the ids fed back are argmaxes over the vocabulary: no step
        # reads a range check back (on a GPU each token would wait for the one before)
        with dev.activate(), mode(self, False), no_autograd(xp), ids_checked_once(self, [(xs, ids[:, None])]):
            self.decoder.start(self.encoder.forward(xs, train=False))
            for _ in range(length):
                score = self.decoder.run(ids[:, None], train=False)
                ids = xp.astype(xp.argmax(score[:, 0, :], axis=1), index)
                out.append(ids)
        return xp.stack(out, axis=1)

    def exact_match(self, xs: Any, ts: Any, batch_size: int = 1000) -> float:
        """The fraction of questions xs (N, T_enc) whose greedy answer equals ts[:, 1:] in every id, each
        answer started from its own ts[:, 0] (the book's ``eval_seq2seq`` over a test set, in batches)."""
        xs, ts = np.asarray(to_numpy(xs)), np.asarray(to_numpy(ts))
        if xs.shape[0] != ts.shape[0] or ts.ndim != 2 or ts.shape[1] < 2:
            raise ValueError(f"{self.name}.exact_match: expected questions (N, T_enc) and answers (N, T_dec) with "
                             f"T_dec >= 2, got {tuple(xs.shape)} and {tuple(ts.shape)}")
        right = 0
        for lo in range(0, xs.shape[0], batch_size):
            hi = min(lo + batch_size, xs.shape[0])
            guess = to_numpy(self.generate(xs[lo:hi], ts[lo:hi, 0], ts.shape[1] - 1))
            right += int(np.sum(np.all(guess == ts[lo:hi, 1:], axis=1)))
        return right / max(xs.shape[0], 1)


class PeekySeq2seq(Seq2seq):
    """The book's ``PeekySeq2seq``: :class:`Seq2seq` with a :class:`PeekyDecoder`."""

    decoder_class = PeekyDecoder


class AttentionSeq2seq(Seq2seq):
    """The book's ``AttentionSeq2seq``: the encoder's every state goes to an :class:`AttentionDecoder`.
    ``decoder.attention.attention_weights`` (N, T_dec, T_enc) keeps the last forward's weights."""

    decoder_class = AttentionDecoder
