"""Embedding, Attention, Linear and Dropout on sequences, and SoftmaxCrossEntropy on (N, T, V) scores:
against PyTorch itself in float64 on every device, xn.gradcheck, the fast paths against the portable
code, and a planted embedding bug (repeated ids overwritten instead of added) that must be caught."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import backend
from xpnet.backend import namespace
from xpnet.layers import Attention, Dropout, Embedding, Layer, Linear, LSTM
from xpnet.layers.embedding import embedding_backward
from xpnet.losses import SoftmaxCrossEntropy
from xpnet.testing import assert_gradients_ok, assert_placed, tolerance

torch = pytest.importorskip("torch", reason="the reference is PyTorch itself (pip install -e .[backends])")

TOL = {"rtol": 1e-12, "atol": 1e-12}
V, E = 7, 5
# Repeated ids: the embedding's gradient must add the rows of every position with the same id.
IDS = np.array([[1, 3, 1, 6], [0, 3, 3, 1]])


def _close(ours, theirs, what):
    np.testing.assert_allclose(xn.to_numpy(ours), theirs.detach().numpy() if hasattr(theirs, "detach") else theirs,
                               **TOL, err_msg=what)


def _compare_embedding_with_torch(layer, dev, rng):
    W, dy = rng.standard_normal((V, E)), rng.standard_normal((*IDS.shape, E))
    layer.params["W"] = W
    layer.to(dev, dtype="float64")
    y = layer.forward(xn.to_device(IDS, dev))
    assert layer.backward(xn.to_device(dy, dev)) is None  # ids have no gradient
    assert_placed(y, dev, "float64")
    ref = torch.nn.Embedding(V, E, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(W))
    ref(torch.from_numpy(IDS)).backward(torch.from_numpy(dy))
    _close(y, ref(torch.from_numpy(IDS)), "Embedding: output differs from PyTorch")
    _close(layer.grads["W"], ref.weight.grad, "Embedding: dW differs from PyTorch")


def test_embedding_equals_pytorch(dev, rng):
    _compare_embedding_with_torch(Embedding(V, E), dev, rng)


class OverwritingEmbedding(Embedding):
    """Bug: dW[ids] = dy keeps one row per repeated id instead of adding them (the seeds' NumPy pitfall)."""

    def backward(self, dy):
        dW = np.zeros_like(self.params["W"])
        dW[self._ids.reshape(-1)] = dy.reshape(-1, self.embedding_dim)
        self.grads["W"] = dW


def test_planted_embedding_bug_is_caught(rng):
    with pytest.raises(AssertionError, match="dW differs from PyTorch"):
        _compare_embedding_with_torch(OverwritingEmbedding(V, E), xn.device("cpu"), rng)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_embedding_fast_paths_equal_the_portable_one_hot_products(library, rng, monkeypatch):
    ids = rng.integers(0, 50, 3000)
    ids[:100] = 7  # many repeats of one id
    dy = rng.standard_normal((3000, 4))
    monkeypatch.setattr("xpnet.layers.embedding.ONE_HOT_ELEMENTS", 50 * 64)  # several blocks of positions
    dev = xn.device("cpu" if library == "numpy" else "torch:cpu")
    ids_d, dy_d = xn.to_device(ids, dev), xn.to_device(dy, dev)
    fast = backend.fast_path("embedding_backward", dev.xp)
    assert fast is not None and fast is not embedding_backward
    ref = np.zeros((50, 4))
    for i, row in zip(ids, dy):
        ref[i] += row
    np.testing.assert_allclose(xn.to_numpy(fast(ids_d, dy_d, 50)), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xn.to_numpy(embedding_backward(ids_d, dy_d, 50)), ref, rtol=1e-12, atol=1e-12)


def test_embedding_checks_ids(rng):
    layer = Embedding(V, E)
    with pytest.raises(ValueError, match=r"Embedding: ids must lie in \[0, 7\), got values in \[-1, 3\]"):
        layer.forward(np.array([[0, -1, 3]]))
    with pytest.raises(TypeError, match="Embedding: expected integer ids, got dtype float32"):
        layer.forward(np.zeros((2, 3), "float32"))
    unchecked = Embedding(V, E, check_ids=False)
    assert unchecked.forward(np.array([[-1]])).shape == (1, 1, E)  # NumPy takes -1 from the end; no check


def _attention_torch(enc, dec, dout):
    te, td = torch.tensor(enc, requires_grad=True), torch.tensor(dec, requires_grad=True)
    a = torch.softmax(td @ te.transpose(1, 2), dim=-1)
    out = a @ te
    out.backward(torch.from_numpy(dout))
    return out, a, te.grad, td.grad


def test_attention_equals_pytorch(dev, rng):
    enc, dec, dout = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 3))
    layer = Attention()
    out = layer(xn.to_device(enc, dev), xn.to_device(dec, dev))
    denc, ddec = layer.backward(xn.to_device(dout, dev))
    ref_out, ref_a, ref_denc, ref_ddec = _attention_torch(enc, dec, dout)
    for arr in (out, denc, ddec, layer.attention_weights):
        assert_placed(arr, dev, "float64")
    _close(out, ref_out, "context")
    _close(layer.attention_weights, ref_a, "attention weights")
    _close(denc, ref_denc, "dhs_enc")
    _close(ddec, ref_ddec, "dhs_dec")


class AttentionOnOneInput(Layer):
    """gradcheck takes one input: x[:, :t_enc] are the encoder states, x[:, t_enc:] the decoder's."""

    def __init__(self, t_enc):
        super().__init__()
        self.t_enc, self.attention = t_enc, Attention()

    def forward(self, x, train=True):
        return self.attention(x[:, :self.t_enc, :], x[:, self.t_enc:, :])

    def backward(self, dy):
        return namespace(dy).concat(self.attention.backward(dy), axis=1)


def test_attention_gradcheck(dev, rng):
    assert_gradients_ok(AttentionOnOneInput(4), xn.to_device(rng.standard_normal((2, 7, 3)), dev))


def test_linear_on_sequences_equals_pytorch(dev, rng):
    x, dy = rng.standard_normal((2, 4, 5)), rng.standard_normal((2, 4, 3))
    layer = Linear(5, 3)
    ref = torch.nn.Linear(5, 3, dtype=torch.float64)
    layer.params["W"], layer.params["b"] = ref.weight.detach().numpy().T.copy(), ref.bias.detach().numpy().copy()
    layer.to(dev, dtype="float64")
    y = layer.forward(xn.to_device(x, dev))
    dx = layer.backward(xn.to_device(dy, dev))
    tx = torch.tensor(x, requires_grad=True)
    out = ref(tx)
    out.backward(torch.from_numpy(dy))
    assert tuple(y.shape) == (2, 4, 3) and tuple(dx.shape) == (2, 4, 5)
    _close(y, out, "y")
    _close(dx, tx.grad, "dx")
    _close(layer.grads["W"], ref.weight.grad.T, "dW")
    _close(layer.grads["b"], ref.bias.grad, "db")


def test_dropout_on_sequences(case, rng):
    dev, dtype = case
    x = xn.to_device((rng.standard_normal((20, 15, 8)) + 3.0).astype(dtype), dev)
    dy = xn.to_device(rng.standard_normal((20, 15, 8)).astype(dtype), dev)
    layer = Dropout(0.4, seed=3)
    y, dx = layer.forward(x), layer.backward(dy)
    assert_placed(y, dev, dtype)
    kept = xn.to_numpy(y) != 0
    assert 0.55 < kept.mean() < 0.65
    np.testing.assert_allclose(xn.to_numpy(dx), np.where(kept, xn.to_numpy(dy) / 0.6, 0), **tolerance(dtype))
    assert layer.forward(x, train=False) is x


@pytest.mark.parametrize("ignore_index, smoothing", [(-100, 0.0), (-1, 0.0), (2, 0.0), (-1, 0.2)])
def test_sequence_cross_entropy_equals_pytorch(dev, rng, ignore_index, smoothing):
    scores = rng.standard_normal((3, 4, V)) * 3
    labels = rng.integers(0, V, (3, 4))
    labels[0, 1] = labels[2, 3] = ignore_index
    loss = SoftmaxCrossEntropy(ignore_index=ignore_index, label_smoothing=smoothing)
    value = loss.forward(xn.to_device(scores, dev), xn.to_device(labels, dev))
    dy = loss.backward(xn.to_device(np.asarray(0.5), dev))
    assert value.ndim == 0
    assert_placed(dy, dev, "float64")
    ts = torch.tensor(scores, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(ts.permute(0, 2, 1), torch.from_numpy(labels), ignore_index=ignore_index,
                                            label_smoothing=smoothing)
    (ref * 0.5).backward()
    _close(value, ref, "loss")
    _close(dy, ts.grad, "dy")


def test_every_label_ignored_gives_zero_loss_and_gradient():
    loss = SoftmaxCrossEntropy(ignore_index=-1)
    assert float(loss.forward(np.zeros((2, 3, 4)), np.full((2, 3), -1))) == 0.0
    np.testing.assert_array_equal(loss.backward(), np.zeros((2, 3, 4)))


def test_sequence_labels_out_of_range_name_the_ignore_index():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\) \(or equal ignore_index=-1\), got values in "
                                         r"\[0, 4\]"):
        SoftmaxCrossEntropy(ignore_index=-1).forward(np.zeros((1, 3, 4)), np.array([[0, -1, 4]]))


def test_language_model_gradcheck(dev, rng):
    """Embedding -> LSTM -> Linear over (N, T) ids with (N, T) labels, some ignored: every gradient."""
    xn.init.seed(3)
    model = xn.Sequential(Embedding(V, 3), LSTM(3, 4), Linear(4, V)).to(dev, dtype="float64")
    labels = rng.integers(0, V, (2, 3))
    labels[1, 0] = -1
    report = xn.gradcheck(model, xn.to_device(IDS[:, :3], dev), xn.to_device(labels, dev),
                          loss=SoftmaxCrossEntropy(ignore_index=-1), max_entries=8)
    assert report.ok, str(report)
    assert [row.name for row in report.rows] == ["0.W", "1.Wx", "1.Wh", "1.b", "2.W", "2.b"]  # no input row for ids
