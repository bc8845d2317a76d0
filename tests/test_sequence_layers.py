"""Embedding, EmbeddingBag, Attention, Linear and Dropout on sequences, and SoftmaxCrossEntropy on (N, T, V) scores:
against PyTorch itself in float64 on every device, xn.gradcheck, the fast paths against the portable
code, and planted embedding bugs that must be caught (repeated ids overwritten instead of added; the
padding row's gradient left unmasked)."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import backend
from xpnet.backend import namespace
from xpnet.layers import Attention, Dropout, Embedding, EmbeddingBag, Layer, Linear, LSTM
from xpnet.layers.embedding import embedding_backward
from xpnet.losses import SoftmaxCrossEntropy
from xpnet.testing import assert_gradients_ok, assert_placed, tolerance

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

TOL = {"rtol": 1e-12, "atol": 1e-12}
V, E = 7, 5
# Repeated ids: the embedding's gradient must add the rows of every position with the same id.
IDS = np.array([[1, 3, 1, 6], [0, 3, 3, 1]])


def _close(ours, theirs, what):
    np.testing.assert_allclose(xn.to_numpy(ours), theirs.detach().numpy() if hasattr(theirs, "detach") else theirs,
                               **TOL, err_msg=what)


def _compare_embedding_with_torch(layer, dev, rng, padding_idx=None):
    W, dy = rng.standard_normal((V, E)), rng.standard_normal((*IDS.shape, E))
    layer.params["W"] = W
    layer.to(dev, dtype="float64")
    y = layer.forward(xn.to_device(IDS, dev))
    assert layer.backward(xn.to_device(dy, dev)) is None  # ids have no gradient
    assert_placed(y, dev, "float64")
    assert_placed(layer.grads["W"], dev, "float64")
    ref = torch.nn.Embedding(V, E, padding_idx=padding_idx, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(W))
    ref(torch.from_numpy(IDS)).backward(torch.from_numpy(dy))
    _close(y, ref(torch.from_numpy(IDS)), "Embedding: output differs from PyTorch")
    _close(layer.grads["W"], ref.weight.grad, "Embedding: dW differs from PyTorch")


def test_embedding_equals_pytorch(dev, rng):
    _compare_embedding_with_torch(Embedding(V, E), dev, rng)


@pytest.mark.parametrize("padding_idx", [3, -1, 0])
def test_embedding_padding_idx_equals_pytorch(dev, rng, padding_idx):
    """The padding row is read in forward and gets no gradient: 3 appears three times in IDS, -1 is 6."""
    layer = Embedding(V, E, padding_idx=padding_idx)
    assert layer.padding_idx == padding_idx % V
    np.testing.assert_array_equal(layer.params["W"][padding_idx % V], np.zeros(E, np.float32))
    _compare_embedding_with_torch(layer, dev, rng, padding_idx)
    assert not np.any(xn.to_numpy(layer.grads["W"])[padding_idx % V])


class OverwritingEmbedding(Embedding):
    """Bug: dW[ids] = dy keeps one row per repeated id instead of adding them (the seeds' NumPy pitfall)."""

    def backward(self, dy):
        dW = np.zeros_like(self.params["W"])
        dW[self._ids.reshape(-1)] = dy.reshape(-1, self.embedding_dim)
        self.grads["W"] = dW


def test_planted_embedding_bug_is_caught(rng):
    with pytest.raises(AssertionError, match="dW differs from PyTorch"):
        _compare_embedding_with_torch(OverwritingEmbedding(V, E), xn.device("cpu"), rng)


class UnmaskedEmbedding(Embedding):
    """Bug: the padding row gets its positions' gradients (the mask left out of backward)."""

    def backward(self, dy):
        self.padding_idx, kept = None, self.padding_idx
        try:
            return super().backward(dy)
        finally:
            self.padding_idx = kept


def test_planted_padding_bug_is_caught(rng):
    with pytest.raises(AssertionError, match="dW differs from PyTorch"):
        _compare_embedding_with_torch(UnmaskedEmbedding(V, E, padding_idx=3), xn.device("cpu"), rng, 3)


def test_embedding_padding_keeps_non_finite_gradients_out_as_pytorch():
    layer = Embedding(V, E, padding_idx=3, dtype="float64")
    layer.forward(IDS)
    dy = np.ones((*IDS.shape, E))
    dy[1, 1] = np.nan  # a padding position
    layer.backward(dy)
    assert np.all(np.isfinite(layer.grads["W"])) and not np.any(layer.grads["W"][3])


def test_tied_linear_gradient_reaches_the_padding_row_as_pytorchs_tied_linear(dev, rng):
    """Only nn.Embedding's backward masks the padding row; the tied nn.Linear's share of W's gradient reaches it."""
    W, b, dy = rng.standard_normal((V, E)), rng.standard_normal(V), rng.standard_normal((*IDS.shape, V))
    embed = Embedding(V, E, padding_idx=3)
    out = xn.layers.TiedLinear(embed)
    embed.params["W"], out.params["b"] = W, b
    model = xn.Sequential(embed, out).to(dev, dtype="float64")
    y = model.forward(xn.to_device(IDS, dev))
    model.backward(xn.to_device(dy, dev))
    ref, lin = torch.nn.Embedding(V, E, padding_idx=3, dtype=torch.float64), torch.nn.Linear(E, V, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(W))
        lin.bias.copy_(torch.from_numpy(b))
    lin.weight = ref.weight
    ref_y = lin(ref(torch.from_numpy(IDS)))
    ref_y.backward(torch.from_numpy(dy))
    _close(y, ref_y, "tied: y differs from PyTorch")
    _close(embed.grads["W"], ref.weight.grad, "tied: dW differs from PyTorch")
    assert np.any(xn.to_numpy(embed.grads["W"])[3])


def test_embedding_padding_idx_is_saved_and_old_files_load(tmp_path):
    from test_files import rewrite  # noqa: PLC0415

    path = tmp_path / "lm.npz"
    embed = Embedding(V, E, padding_idx=-1)
    xn.Sequential(embed, xn.layers.TiedLinear(embed)).save(path)
    loaded = xn.load(path)
    assert loaded[0].padding_idx == V - 1 and loaded[1].embedding is loaded[0]
    np.testing.assert_array_equal(loaded[0].params["W"], embed.params["W"])
    loaded[0].forward(IDS)
    loaded[0].backward(np.ones((*IDS.shape, E), np.float32))
    assert not np.any(loaded[0].grads["W"][V - 1]) and np.all(loaded[0].grads["W"][IDS[IDS != V - 1]])
    rewrite(path, lambda a, m: m["layers"][0]["config"].pop("padding_idx"))  # a file of an earlier xpnet
    assert xn.load(path)[0].padding_idx is None


def test_embedding_from_pretrained_copies_the_rows_as_pytorch(dev, rng):
    weights = rng.standard_normal((V, E))
    layer = Embedding.from_pretrained(xn.to_device(weights, dev), freeze=False, padding_idx=1)
    ref = torch.nn.Embedding.from_pretrained(torch.from_numpy(weights), freeze=False, padding_idx=1)
    assert layer.padding_idx == 1 and layer.dtype == "float64"
    _close(layer.params["W"], ref.weight, "from_pretrained: W differs from PyTorch (the padding row is kept)")
    layer.params["W"][0, 0] += 1.0  # a copy: the caller's array is left alone
    assert xn.to_numpy(weights)[0, 0] != layer.params["W"][0, 0]


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


# Bags of BAG_IDS: [1, 3], [] (empty), [1, 6, 0], [3, 3, 1, 5]; with padding_idx 3, the second bag of 3s only.
BAG_IDS, BAG_OFFSETS = np.array([1, 3, 1, 6, 0, 3, 3, 1, 5]), np.array([0, 2, 2, 5])


def _compare_bag_with_torch(dev, rng, ids, offsets=None, weights=None, **kwargs):
    """EmbeddingBag(V, E, **kwargs) and torch.nn.EmbeddingBag on the same W: y, dW and the per-sample weights'
    gradient equal in float64, on dev."""
    W = rng.standard_normal((V, E))
    layer = EmbeddingBag(V, E, **kwargs).to(dev, dtype="float64")
    layer.params["W"] = xn.to_device(W, dev)
    put = [None if a is None else xn.to_device(a, dev) for a in (ids, offsets, weights)]
    y = layer(*put)
    dy = rng.standard_normal(tuple(y.shape))
    back = layer.backward(xn.to_device(dy, dev))
    ref = torch.nn.EmbeddingBag(V, E, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(W))
    tw = None if weights is None else torch.tensor(weights, requires_grad=True)
    yt = ref(torch.from_numpy(ids), None if offsets is None else torch.from_numpy(offsets), tw)
    yt.backward(torch.from_numpy(dy))
    assert_placed(y, dev, "float64")
    assert_placed(layer.grads["W"], dev, "float64")
    _close(y, yt, f"EmbeddingBag({kwargs}): output differs from PyTorch")
    _close(layer.grads["W"], ref.weight.grad, f"EmbeddingBag({kwargs}): dW differs from PyTorch")
    if weights is None:
        assert back is None  # ids and offsets have no gradient
    else:
        assert back[:2] == (None, None)
        _close(back[2], tw.grad, "EmbeddingBag: per_sample_weights' gradient differs from PyTorch")


def test_embedding_bag_equals_pytorch(dev, rng):
    """Flat ids with offsets (repeated ids, an empty bag) and (B, T) ids, with and without padding_idx (a bag of
    padding only gives zeros, as an empty one; the mean counts the other ids): y and dW as PyTorch's, in each mode.
    JAX, which compiles each operation for each shape (seconds here), runs "max" on the flat ids with padding
    only: its own steps (searchsorted, the bags laid out, argmax) and the scatter-add the others share."""
    jax = dev.xp.__name__.startswith("jax")
    for mode in ("max",) if jax else ("mean", "sum", "max"):
        for padding_idx in (3,) if jax else (None, 3):
            _compare_bag_with_torch(dev, rng, BAG_IDS, BAG_OFFSETS, mode=mode, padding_idx=padding_idx)
            if not jax:
                _compare_bag_with_torch(dev, rng, BAG_IDS[:8].reshape(2, 4), mode=mode, padding_idx=padding_idx)


def test_embedding_bag_last_offset_and_per_sample_weights_equal_pytorch(rng):
    _compare_bag_with_torch(xn.device("cpu"), rng, BAG_IDS, np.append(BAG_OFFSETS, 9), mode="max",
                            include_last_offset=True)
    _compare_bag_with_torch(xn.device("cpu"), rng, BAG_IDS, BAG_OFFSETS, rng.standard_normal(9), mode="sum",
                            padding_idx=3)
    _compare_bag_with_torch(xn.device("cpu"), rng, BAG_IDS[:8].reshape(4, 2), None, rng.standard_normal((4, 2)),
                            mode="sum")


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_embedding_bag_gradcheck(rng, mode):
    layer = EmbeddingBag(V, E, mode=mode, padding_idx=3).to(dtype="float64")
    assert_gradients_ok(layer, (BAG_IDS, BAG_OFFSETS))
    summed = EmbeddingBag(V, E, mode="sum").to(dtype="float64")
    assert_gradients_ok(summed, (BAG_IDS, BAG_OFFSETS, rng.standard_normal(9)))


@pytest.mark.parametrize("call, message", [
    (lambda bag: bag(BAG_IDS), r"EmbeddingBag: 1-D ids need offsets, a 1-D integer array of where each bag starts "
                               r"\(PyTorch's forward\(text, offsets\)\), got None"),
    (lambda bag: bag(BAG_IDS.reshape(3, 3), BAG_OFFSETS), r"input of shape \(3, 3\) is a bag per row and takes no "
                                                          "offsets"),
    (lambda bag: bag(BAG_IDS, np.array([1, 4])), r"offsets must start at 0 and never decrease, at most M = 9 \(the "
                                                 r"number of ids\), got \[1, 4\]"),
    (lambda bag: bag(BAG_IDS, np.array([0, 4, 2])), r"never decrease.*got \[0, 4, 2\]"),
    (lambda bag: bag(BAG_IDS, np.array([0, 10])), r"never decrease.*got \[0, 10\]"),
    (lambda bag: bag(BAG_IDS, np.array([0.0, 2.0])), "EmbeddingBag: offsets must be integers"),
    (lambda bag: bag(BAG_IDS, BAG_OFFSETS, np.ones(9)), r"per_sample_weights need mode='sum', as PyTorch's, got "
                                                        "mode='mean'"),
    (lambda bag: EmbeddingBag(V, E, mode="avg"), "EmbeddingBag: mode must be 'sum', 'mean' or 'max', got 'avg'"),
    (lambda bag: EmbeddingBag(V, E, sparse=True), "EmbeddingBag: sparse=True is not supported: xpnet's gradients "
                                                   "are dense arrays; leave it False"),
    (lambda bag: EmbeddingBag(V, E, _weight=np.zeros((V, E))), r"use EmbeddingBag.from_pretrained\(weights, "
                                                               r"freeze=False\)"),
    (lambda bag: EmbeddingBag(V, E, include_last_offset=True)(BAG_IDS, BAG_OFFSETS),
     r"the last of them M = 9 \(the number of ids\), got \[0, 2, 2, 5\]"),
])
def test_embedding_bag_refuses_what_pytorch_refuses_saying_what_it_takes(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(EmbeddingBag(V, E))


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
