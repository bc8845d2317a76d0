"""A layer called twice in one forward, taken back by a backward written in the forward's order (PyTorch's
autograd has none to get right): refused where the backward's names say which call each backward call is for
(xpnet.layers.backward_order); the reverse order gives each call its own dropout mask. The siamese network's
numbered names: tests/test_reused_layers.py."""

import numpy as np
import pytest

import xpnet as xn

E = 8


class Seq2Seq(xn.Model):
    """The translation tutorial's Seq2SeqTransformer around its one positional encoding, called for src then tgt."""

    def __init__(self):
        super().__init__()
        self.positional_encoding = xn.layers.PositionalEncoding(E, 0.5)

    def forward(self, src, tgt, train=True):
        src_emb = self.positional_encoding(src)
        tgt_emb = self.positional_encoding(tgt)
        self.seen = src_emb, tgt_emb
        return np.concatenate([src_emb, tgt_emb], axis=1)

    def backward(self, dy):  # the forward's order: refused
        dsrc_emb, dtgt_emb = dy[:, :dy.shape[1] // 2], dy[:, dy.shape[1] // 2:]
        dsrc = self.positional_encoding.backward(dsrc_emb)
        dtgt = self.positional_encoding.backward(dtgt_emb)
        return dsrc, dtgt


class Seq2SeqReversed(Seq2Seq):
    def backward(self, dy):
        dsrc_emb, dtgt_emb = dy[:, :dy.shape[1] // 2], dy[:, dy.shape[1] // 2:]
        dtgt = self.positional_encoding.backward(dtgt_emb)
        dsrc = self.positional_encoding.backward(dsrc_emb)
        return dsrc, dtgt


def _inputs():
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, 5, E)) + 3.0, rng.standard_normal((2, 5, E)) + 3.0  # no zero before the dropout


def test_a_backward_in_the_forwards_order_is_refused_naming_both_calls():
    xn.manual_seed(0)
    model = Seq2Seq()
    y = model(*_inputs())
    with pytest.raises(RuntimeError, match=r"backward call 1 of self\.positional_encoding \(PositionalEncoding\), "
                                           r"dsrc = .* call 1, src_emb = .*serves call 2, tgt_emb = .*dropout mask"):
        model.backward(np.ones_like(y))


def test_the_reverse_order_gives_each_call_its_own_dropout_mask():
    xn.manual_seed(0)
    model = Seq2SeqReversed()
    y = model(*_inputs())
    dsrc, dtgt = model.backward(np.ones_like(y))
    src_emb, tgt_emb = model.seen
    assert ((src_emb != 0) != (tgt_emb != 0)).any()  # two masks, so that a swap would show
    np.testing.assert_array_equal(dsrc != 0, src_emb != 0)
    np.testing.assert_array_equal(dtgt != 0, tgt_emb != 0)


class Chain(xn.Model):
    """One activation after two layers that feed each other: the names cross (h is call 1's output, call 2's
    input), and the backward in reverse is left alone."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.act = xn.layers.Linear(3, 3), xn.layers.Linear(3, 3), xn.layers.Tanh()

    def forward(self, x, train=True):
        h = self.act(self.l1(x))
        y = self.act(self.l2(h))
        return y

    def backward(self, dy):
        dh = self.l2.backward(self.act.backward(dy))
        dx = self.l1.backward(self.act.backward(dh))
        return dx


def test_a_backward_in_reverse_whose_names_cross_runs():
    xn.manual_seed(0)
    x = np.random.default_rng(1).standard_normal((4, 3))
    assert xn.gradcheck(Chain(), x).ok
