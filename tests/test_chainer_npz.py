"""Chainer's save_npz files into xpnet models (xn.load_chainer_npz). Chainer is not installed: each file is
written here as chainer/serializers/npz.py's save_npz writes it, numpy.savez_compressed of
DictionarySerializer's flat dict (keys joined with "/", a None parameter as numpy.asarray(None)), with the
keys of chainer/link.py's serialize (a Chain's children by name, a ChainList's by index among its links,
L.Classifier's model under "predictor/") and the layouts of the links (links/connection/linear.py W (out, in),
convolution_2d.py (out, in, kh, kw), deconvolution_2d.py (in, out, kh, kw), embed_id.py (in, out),
links/rnn/lstm.py upward/lateral). Each model's output is compared with the output computed with NumPy from
the file's arrays by Chainer's formulas (functions/normalization/batch_normalization.py's
fixed_batch_normalization, functions/rnn/lstm.py's _extract_gates and step)."""

import os

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import GRU, LSTM, BatchNorm, Conv2d, ConvTranspose2d, Embedding, Flatten, Linear, ReLU

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _save_npz(path, flat):
    np.savez_compressed(path, **flat)  # chainer.serializers.save_npz(path, link), compression=True
    return path


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


class MLP(xn.Model):
    """examples/mnist/train_mnist.py's MLP, ported (docs/from-chainer.md)."""

    def __init__(self, n_in, n_units, n_out):
        super().__init__()
        self.l1, self.r1 = Linear(n_in, n_units), ReLU()
        self.l2, self.r2 = Linear(n_units, n_units), ReLU()
        self.l3 = Linear(n_units, n_out)

    def forward(self, x, train=True):
        h = self.r1.forward(self.l1.forward(x, train), train)
        return self.l3.forward(self.r2.forward(self.l2.forward(h, train), train), train)

    def backward(self, dy):
        return self.l1.backward(self.r1.backward(self.l2.backward(self.r2.backward(self.l3.backward(dy)))))


def _mlp_file(tmp_path, rng):
    """L.Classifier(MLP(5, 4, 3)) saved: every key under predictor/, Linear's W (out, in)."""
    sizes = {"l1": (4, 5), "l2": (4, 4), "l3": (3, 4)}
    flat = {}
    for name, (out, inp) in sizes.items():
        flat[f"predictor/{name}/W"], flat[f"predictor/{name}/b"] = _f32(rng, out, inp), _f32(rng, out)
    return _save_npz(tmp_path / "mlp.npz", flat), flat


@pytest.mark.parametrize("path", ["predictor/", "predictor"])
def test_a_classifier_wrapped_mlp_gives_chainers_output(tmp_path, rng, path):
    file, f = _mlp_file(tmp_path, rng)
    model = MLP(5, 4, 3)
    assert xn.load_chainer_npz(file, model, path=path) == ([], [])
    x = _f32(rng, 6, 5)
    h = np.maximum(x @ f["predictor/l1/W"].T + f["predictor/l1/b"], 0)  # F.linear: x W^T + b
    h = np.maximum(h @ f["predictor/l2/W"].T + f["predictor/l2/b"], 0)
    np.testing.assert_allclose(model.predict(x), h @ f["predictor/l3/W"].T + f["predictor/l3/b"], **TOL)


def _conv(x, w):
    """F.convolution_2d at stride 1, padding 1: w (out, in, kh, kw)."""
    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))  # (N, C, H, W, kh, kw)
    return np.einsum("nchwij,ocij->nohw", win, w)


def test_a_small_cnn_with_batchnorm_in_a_chainer_sequential(tmp_path, rng):
    """chainer.Sequential(Convolution2D(1, 2, 3, pad=1, nobias=True), BatchNormalization(2), F.relu,
    Deconvolution2D(2, 2, 2, stride=2), L.Linear(128, 3)): its links are 0, 1, 2, 3, F.relu takes no index."""
    f = {"0/W": _f32(rng, 2, 1, 3, 3), "1/gamma": _f32(rng, 2), "1/beta": _f32(rng, 2), "1/avg_mean": _f32(rng, 2),
         "1/avg_var": rng.uniform(0.5, 2, 2).astype(np.float32), "1/N": np.asarray(0),
         "2/W": _f32(rng, 2, 2, 2, 2), "2/b": _f32(rng, 2), "3/W": _f32(rng, 3, 128), "3/b": _f32(rng, 3)}
    model = xn.Sequential(Conv2d(1, 2, 3, padding=1, bias=False), BatchNorm(2, eps=2e-5), ReLU(),
                          ConvTranspose2d(2, 2, 2, stride=2), Flatten(), Linear(128, 3))
    xn.load_chainer_npz(_save_npz(tmp_path / "cnn.npz", f), model)
    x = _f32(rng, 2, 1, 4, 4)
    h = _conv(x, f["0/W"])
    c = (slice(None), None, None)  # fixed_batch_normalization: gamma (x - mean) / sqrt(var + eps) + beta
    h = np.maximum(f["1/gamma"][c] * (h - f["1/avg_mean"][c]) / np.sqrt(f["1/avg_var"][c] + 2e-5) + f["1/beta"][c], 0)
    up = np.einsum("nchw,coab->nohawb", h, f["2/W"]).reshape(2, 2, 8, 8) + f["2/b"][c]  # stride 2 = kernel
    np.testing.assert_allclose(model.predict(x), up.reshape(2, -1) @ f["3/W"].T + f["3/b"], **TOL)
    np.testing.assert_array_equal(xn.to_numpy(model[1].buffers["running_var"]), f["1/avg_var"])


def test_batchnormalizations_finetune_count_n_is_momentum_none_s_count(tmp_path, rng):
    """N counts finetune=True's batches, whose decay 1 - 1/N is momentum=None's cumulative average."""
    f = {"0/gamma": _f32(rng, 2), "0/beta": _f32(rng, 2), "0/avg_mean": _f32(rng, 2), "0/avg_var": _f32(rng, 2) ** 2,
         "0/N": np.asarray(3)}
    model = xn.Sequential(BatchNorm(2, eps=2e-5, momentum=None))
    xn.load_chainer_npz(_save_npz(tmp_path / "bn.npz", f), model)
    assert float(xn.to_numpy(model[0].buffers["num_batches_tracked"])) == 3.0


def test_chainer_sequentials_out_of_order_numbering_is_named(tmp_path, rng):
    """chainer/sequential.py's insert puts each appended link second among its children: Sequential(L0, F.relu,
    L1, F.relu, L2) saves L0 as 0/, L2 as 1/, L1 as 2/."""
    f = {"0/W": _f32(rng, 4, 5), "0/b": _f32(rng, 4), "1/W": _f32(rng, 3, 4), "1/b": _f32(rng, 3),
         "2/W": _f32(rng, 4, 4), "2/b": _f32(rng, 4)}
    model = xn.Sequential(Linear(5, 4), ReLU(), Linear(4, 4), ReLU(), Linear(4, 3))
    with pytest.raises(ValueError, match="(?s)'1/W' has shape.*was a chainer.Sequential.*from the last backwards"):
        xn.load_chainer_npz(_save_npz(tmp_path / "seq.npz", f), model)


class EmbedLSTM(xn.Model):
    def __init__(self, vocab, dim, hidden):
        super().__init__()
        self.embed, self.lstm, self.out = Embedding(vocab, dim), LSTM(dim, hidden), Linear(hidden, vocab)

    def forward(self, ids, train=True):
        return self.out.forward(self.lstm.forward(self.embed.forward(ids, train), train), train)

    def backward(self, dy):
        return self.embed.backward(self.lstm.backward(self.out.backward(dy)))


def test_an_embedid_and_lstm_step_by_chainers_gate_order(tmp_path, rng):
    """L.LSTM called once per time step: lstm_in = upward(x) + lateral(h) (none at the first step), read by
    F.lstm as (N, H, 4): a, i, f, o of each unit side by side; c = tanh(a) sig(i) + sig(f) c, h = sig(o) tanh(c)."""
    v, d, hid = 7, 3, 4
    f = {"embed/W": _f32(rng, v, d), "lstm/upward/W": _f32(rng, 4 * hid, d), "lstm/upward/b": _f32(rng, 4 * hid),
         "lstm/lateral/W": _f32(rng, 4 * hid, hid), "out/W": _f32(rng, v, hid), "out/b": _f32(rng, v)}
    model = EmbedLSTM(v, d, hid)
    xn.load_chainer_npz(_save_npz(tmp_path / "lm.npz", f), model)
    ids = rng.integers(0, v, (2, 5))
    h, c, ys = None, np.zeros((2, hid)), []
    for t in range(ids.shape[1]):
        lstm_in = f["embed/W"][ids[:, t]] @ f["lstm/upward/W"].T + f["lstm/upward/b"]
        lstm_in = lstm_in if h is None else lstm_in + h @ f["lstm/lateral/W"].T
        a, i, g, o = (lstm_in.reshape(2, hid, 4)[:, :, k] for k in range(4))  # _extract_gates
        c = np.tanh(a) * _sigmoid(i) + _sigmoid(g) * c
        h = _sigmoid(o) * np.tanh(c)
        ys.append(h @ f["out/W"].T + f["out/b"])
    np.testing.assert_allclose(model.predict(ids), np.stack(ys, axis=1), **TOL)


def test_a_file_that_does_not_fit_names_every_key_and_changes_nothing(tmp_path, rng):
    _, f = _mlp_file(tmp_path, rng)
    f["predictor/l2/W"] = _f32(rng, 4, 3)  # misshapen
    del f["predictor/l3/b"]  # missing
    f["predictor/l4/W"] = _f32(rng, 3, 3)  # left over
    f["predictor/l1/b"] = np.asarray(None)  # a parameter never initialised: pickled None
    file = _save_npz(tmp_path / "bad.npz", f)
    model = MLP(5, 4, 3)
    before = {k: xn.to_numpy(v).copy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as info:
        xn.load_chainer_npz(file, model, path="predictor/")
    message = str(info.value)
    for part in ["'predictor/l2/W' has shape (4, 3), expected (4, 4)", "'predictor/l3/b' is not in the file",
                 "'predictor/l4/W' left over: the xpnet model has no layer at Chainer's 'predictor/l4/'",
                 "'predictor/l1/b' is None, a parameter never initialised"]:
        assert part in message, message
    assert all(np.array_equal(xn.to_numpy(v), before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="every key starts with 'predictor/'.*pass path='predictor/'"):
        xn.load_chainer_npz(_mlp_file(tmp_path, rng)[0], MLP(5, 4, 3))  # path left out


def test_strict_false_loads_what_fits_and_returns_the_rest(tmp_path, rng):
    f = {"l1/W": _f32(rng, 4, 5), "l1/b": _f32(rng, 4), "extra/W": _f32(rng, 2, 2)}
    model = MLP(5, 4, 3)
    result = xn.load_chainer_npz(_save_npz(tmp_path / "part.npz", f), model, strict=False)
    assert result == (["l2/W", "l2/b", "l3/W", "l3/b"], ["extra/W"])
    np.testing.assert_array_equal(xn.to_numpy(model.l1.params["W"]), f["l1/W"].T)
    one = xn.Model()
    one.l1 = Linear(5, 4, bias=False)  # L.Linear(5, 4, nobias=True) writes no b
    with pytest.raises(ValueError, match=r"'l1/b' left over: layer 'l1' \(Linear.*\) takes 'l1/W'$"):
        xn.load_chainer_npz(_save_npz(tmp_path / "bias.npz", {"l1/W": f["l1/W"], "l1/b": f["l1/b"]}), one)


@pytest.mark.parametrize("layer, says", [
    (BatchNorm(2, convention="book"), "Chainer's avg_var is the unbiased variance"),
    (GRU(2, 2), "maps no Chainer link onto xpnet's GRU"),
])
def test_layers_chainer_has_no_counterpart_for_are_refused(tmp_path, layer, says):
    with pytest.raises(ValueError, match=says):
        xn.load_chainer_npz(_save_npz(tmp_path / "any.npz", {"0/W": np.zeros(2, np.float32)}), xn.Sequential(layer))


def test_chainers_load_npz_says_what_to_write():
    with pytest.raises(AttributeError, match="xn.load_chainer_npz.*is serializers.load_npz"):
        xn.load_npz  # noqa: B018


def test_a_file_object_loads_as_its_path_does(tmp_path, rng):
    """chainer.serializers.load_npz takes a file object too: xn.load_chainer_npz reads one from its position."""
    file, f = _mlp_file(tmp_path, rng)
    by_path, by_object = MLP(5, 4, 3), MLP(5, 4, 3)
    xn.load_chainer_npz(file, by_path, path="predictor/")
    with open(file, "rb") as opened:
        assert xn.load_chainer_npz(opened, by_object, path="predictor/") == ([], [])
        assert opened.tell() == os.path.getsize(file) and not opened.closed
    for name, value in by_path.state_dict().items():
        np.testing.assert_array_equal(by_object.state_dict()[name], value)
