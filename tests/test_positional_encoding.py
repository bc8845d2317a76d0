"""PositionalEncoding against the two tables it replaces, run in PyTorch in float64: d2l's (batch first) and
pytorch/examples' word_language_model (time first), each copied from its source with only the dtype changed;
its dropout drawn as xn.layers.Dropout draws; the table made once per length; clear errors."""

import math

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import Dropout, PositionalEncoding

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
nn = torch.nn

CLOSE = {"rtol": 1e-12, "atol": 1e-12}


class D2lPositionalEncoding(nn.Module):
    """d2l-en chapter_attention-mechanisms-and-transformers/self-attention-and-positional-encoding.md (PyTorch
    tab), float32 -> float64."""

    def __init__(self, num_hiddens, dropout, max_len=1000):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.P = torch.zeros((1, max_len, num_hiddens), dtype=torch.float64)
        X = torch.arange(max_len, dtype=torch.float64).reshape(-1, 1) / torch.pow(10000, torch.arange(
            0, num_hiddens, 2, dtype=torch.float64) / num_hiddens)
        self.P[:, :, 0::2] = torch.sin(X)
        self.P[:, :, 1::2] = torch.cos(X)

    def forward(self, X):
        X = X + self.P[:, :X.shape[1], :].to(X.device)
        return self.dropout(X)


class ExamplesPositionalEncoding(nn.Module):
    """pytorch/examples word_language_model/model.py, .float() -> .double()."""

    def __init__(self, d_model, dropout=0.1, max_len=5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        position = torch.arange(0, max_len, dtype=torch.float64).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).double() * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        pe = pe.unsqueeze(0).transpose(0, 1)
        self.register_buffer('pe', pe)

    def forward(self, x):
        x = x + self.pe[:x.size(0), :]
        return self.dropout(x)


def _x(*shape):
    return np.random.default_rng(0).standard_normal(shape)


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_equals_d2l_batch_first_and_pytorch_examples_time_first(p):
    """Evaluation mode (and p = 0 in training): y = x + P of both sources, over 40 positions of 16 features."""
    x = _x(3, 40, 16)
    d2l, examples = D2lPositionalEncoding(16, p).eval(), ExamplesPositionalEncoding(16, p).eval()
    ours, ours_tf = PositionalEncoding(16, p), PositionalEncoding(16, p, batch_first=False)
    want = d2l(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours.forward(x, train=False), want, **CLOSE)
    xt = np.ascontiguousarray(x.transpose(1, 0, 2))
    want_tf = examples(torch.from_numpy(xt)).numpy()
    np.testing.assert_allclose(ours_tf.forward(xt, train=False), want_tf, **CLOSE)
    if p == 0.0:
        np.testing.assert_allclose(ours.forward(x, train=True), want, **CLOSE)
        np.testing.assert_array_equal(ours.backward(np.ones_like(x)), np.ones_like(x))


def test_dropout_is_xn_dropout_seeded_as_it_is():
    """The training forward is Dropout(p)'s of x + P (same seed, same mask), and dx is Dropout's backward."""
    x, dy = _x(2, 5, 8).astype(np.float32), _x(2, 5, 8).astype(np.float32) + 1
    xn.init.seed(7)
    ours = PositionalEncoding(8, 0.4)
    y = ours.forward(x)
    xn.init.seed(7)
    theirs = Dropout(0.4)
    table = PositionalEncoding(8, 0.0).forward(np.zeros_like(x), train=False)
    np.testing.assert_array_equal(y, theirs.forward(x + table))
    np.testing.assert_array_equal(ours.backward(dy), theirs.backward(dy))
    assert 0 < np.count_nonzero(y == 0) < y.size


def test_the_table_is_made_once_per_length_and_dtype():
    pe = PositionalEncoding(8, 0.0)
    pe.forward(np.zeros((2, 5, 8), np.float32), train=False)
    first = pe._table[1]
    pe.forward(np.ones((4, 5, 8), np.float32), train=False)
    assert pe._table[1] is first
    pe.forward(np.ones((4, 6, 8), np.float32), train=False)
    assert pe._table[1] is not first and pe._table[1].shape == (1, 6, 8)
    pe.forward(np.ones((4, 6, 8), np.float64), train=False)
    assert pe._table[1].dtype == np.float64


def test_what_does_not_fit_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"PositionalEncoding: d_model must be even .* use d_model=8 or 6"):
        PositionalEncoding(7)
    with pytest.raises(ValueError, match=r"PositionalEncoding: dropout must be a float in \[0, 1\)"):
        PositionalEncoding(8, 1.0)
    pe = PositionalEncoding(8, max_len=4)
    with pytest.raises(ValueError, match=r"T = 5 positions, more than max_len = 4; .*max_len=5"):
        pe.forward(np.zeros((2, 5, 8), np.float32))
    with pytest.raises(ValueError, match=r"expected x of shape \(T, N, d_model\) \(batch_first=False\) with "
                                         r"d_model = 8, got \(2, 5, 6\)"):
        PositionalEncoding(8, batch_first=False).forward(np.zeros((2, 5, 6), np.float32))


def test_saved_and_loaded_with_its_arguments(tmp_path):
    model = xn.Sequential(PositionalEncoding(8, 0.2, 50, batch_first=False))
    model.save(tmp_path / "pe.npz")
    back = xn.load(tmp_path / "pe.npz")[0]
    assert (back.d_model, back.dropout.p, back.max_len, back.batch_first) == (8, 0.2, 50, False)


def test_a_state_dict_holding_the_hand_written_table_says_to_leave_it_out():
    """The Transformer tutorial's PositionalEncoding registers its table as the buffer 'pe', in its state dict."""
    theirs = nn.Sequential(nn.Linear(8, 8), ExamplesPositionalEncoding(8, max_len=20))
    ours = xn.Sequential(xn.layers.Linear(8, 8), PositionalEncoding(8, max_len=20, batch_first=False))
    with pytest.raises(ValueError, match=r"PyTorch's '1.pe': the table a hand-written PositionalEncoding keeps as a "
                                         r"buffer; xpnet's computes the same itself: leave '1.pe' out, or pass "
                                         r"strict=False"):
        xn.load_torch_state_dict(ours, theirs.state_dict())
    assert xn.load_torch_state_dict(ours, theirs.state_dict(), strict=False).unexpected_keys == ["1.pe"]
