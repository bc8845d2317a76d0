"""The second volume's weight files (BaseModel.save_params: a pickled list of float16 arrays) loaded into
xpnet layers, checked against the book's own computation written from its source (ch06/rnnlm.py,
common/time_layers.py, common/base_model.py)."""

import pickle

import numpy as np
import pytest

import xpnet as xn
from xpnet.book import vol2_params
from xpnet.layers import GRU, LSTM, Attention, Dropout, Embedding, Linear

V, D, H = 11, 4, 5


def book_rnnlm_params(rng):
    """Rnnlm.__init__'s arrays, in its params order: embed W, lstm Wx, Wh, b (f, g, i, o), affine W, b."""
    return [(rng.standard_normal((V, D)) / 100).astype("f"), (rng.standard_normal((D, 4 * H)) / np.sqrt(D)).astype("f"),
            (rng.standard_normal((H, 4 * H)) / np.sqrt(H)).astype("f"), rng.standard_normal(4 * H).astype("f"),
            (rng.standard_normal((H, V)) / np.sqrt(H)).astype("f"), rng.standard_normal(V).astype("f")]


def save_params(params, path):
    """BaseModel.save_params."""
    with open(path, "wb") as f:
        pickle.dump([p.astype(np.float16) for p in params], f)


def book_rnnlm_loss(params, xs, ts, state=None):
    """Rnnlm.forward: TimeEmbedding, stateful TimeLSTM (gates f, g, i, o), TimeAffine, TimeSoftmaxWithLoss;
    in float64 on the arrays load_params makes. Returns (scores, loss, (h, c))."""
    W_embed, Wx, Wh, b, W, b_affine = (p.astype(np.float64) for p in params)
    sigmoid = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    n, steps = xs.shape
    h, c = state or (np.zeros((n, H)), np.zeros((n, H)))
    hs = np.empty((n, steps, H))
    for t in range(steps):
        A = W_embed[xs[:, t]] @ Wx + h @ Wh + b
        f, g, i, o = sigmoid(A[:, :H]), np.tanh(A[:, H:2 * H]), sigmoid(A[:, 2 * H:3 * H]), sigmoid(A[:, 3 * H:])
        c = f * c + g * i
        h = o * np.tanh(c)
        hs[:, t] = h
    scores = (hs.reshape(n * steps, H) @ W + b_affine).reshape(n, steps, V)
    flat = scores.reshape(n * steps, V)
    flat = flat - flat.max(axis=1, keepdims=True)
    ys = np.exp(flat) / np.exp(flat).sum(axis=1, keepdims=True)
    loss = -np.log(ys[np.arange(n * steps), ts.reshape(-1)]).sum() / (n * steps)
    return scores, loss, (h, c)


def xpnet_rnnlm(dtype="float64"):
    return xn.Sequential(Embedding(V, D, dtype=dtype), LSTM(D, H, stateful=True, dtype=dtype), Linear(H, V, dtype=dtype))


def _check_rnnlm_file(path, params, rng):
    model = xn.load_book_params(path, xpnet_rnnlm())
    loss = xn.losses.SoftmaxCrossEntropy()
    state = None
    for _ in range(2):  # two batches in a row: the state carries over, as in the book's stateful Rnnlm
        xs, ts = rng.integers(0, V, (3, 6)), rng.integers(0, V, (3, 6))
        scores, ref_loss, state = book_rnnlm_loss(params, xs, ts, state)
        ours = model.forward(xs)
        np.testing.assert_allclose(ours, scores, rtol=1e-12, atol=1e-12, err_msg="scores differ from the book's")
        np.testing.assert_allclose(float(loss.forward(ours, ts)), ref_loss, rtol=1e-12)


def test_a_book_rnnlm_file_gives_the_books_scores_and_loss(tmp_path, rng):
    params = book_rnnlm_params(rng)
    save_params(params, tmp_path / "Rnnlm.pkl")
    loaded = [p.astype(np.float16) for p in params]  # what load_params reads back
    _check_rnnlm_file(tmp_path / "Rnnlm.pkl", loaded, rng)
    model = xn.load_book_params(tmp_path / "Rnnlm.pkl", xpnet_rnnlm("float32"), device="cpu")
    assert model[1].params["Wx"].dtype == np.float32  # the model's dtype, as the book's astype('f')
    np.testing.assert_array_equal(model[1].params["b"], vol2_params.lstm_from_book(loaded[3]).astype("f"))


def test_without_the_gate_reordering_the_check_fails(tmp_path, rng, monkeypatch):
    """Planted bug: the book's LSTM blocks copied as they are (f read as i, g as f, ...)."""
    params = book_rnnlm_params(rng)
    save_params(params, tmp_path / "Rnnlm.pkl")
    monkeypatch.setattr(vol2_params, "BOOK_GATES", (0, 1, 2, 3))
    with pytest.raises(AssertionError, match="scores differ from the book's"):
        _check_rnnlm_file(tmp_path / "Rnnlm.pkl", [p.astype(np.float16) for p in params], rng)


def test_gate_reordering_round_trips(rng):
    a = rng.standard_normal((3, 4 * H))
    np.testing.assert_array_equal(vol2_params.lstm_to_book(vol2_params.lstm_from_book(a)), a)
    i, f, g, o = np.split(vol2_params.lstm_from_book(np.repeat([0.0, 1.0, 2.0, 3.0], H)), 4)
    assert (i[0], f[0], g[0], o[0]) == (2.0, 0.0, 1.0, 3.0)  # the book's blocks are f, g, i, o


def test_layers_without_parameters_take_nothing_and_a_list_of_layers_works(tmp_path, rng):
    params = [rng.standard_normal((V, D)), rng.standard_normal((D, 3 * H)), rng.standard_normal((H, 3 * H)),
              rng.standard_normal(3 * H)]
    save_params(params, tmp_path / "gru.pkl")
    layers = [Embedding(V, D), Dropout(0.5), GRU(D, H, convention="book"), Attention()]
    assert xn.load_book_params(tmp_path / "gru.pkl", layers) is layers
    np.testing.assert_array_equal(layers[2].params["Wh"], params[2].astype(np.float16).astype("f"))


def test_mismatched_files_are_refused_before_anything_is_copied(tmp_path, rng):
    params = book_rnnlm_params(rng)
    save_params(params[:-1], tmp_path / "short.pkl")
    model = xpnet_rnnlm()
    before = {k: v.copy() for k, v in model.named_params().items()}
    with pytest.raises(ValueError, match=r"holds 5 arrays, the model's layers take 6 in the book's order \(Embedding.W"):
        xn.load_book_params(tmp_path / "short.pkl", model)
    save_params(params[:2] + [params[2][:, :4]] + params[3:], tmp_path / "shape.pkl")
    with pytest.raises(ValueError, match=r"entry 2 of .* has shape \(5, 4\), the model's LSTM.Wh has \(5, 20\)"):
        xn.load_book_params(tmp_path / "shape.pkl", model)
    for k, v in model.named_params().items():
        np.testing.assert_array_equal(v, before[k])
    save_params(params, tmp_path / "ok.pkl")
    with pytest.raises(TypeError, match="layer 1 is GRU\\(convention='pytorch'\\)"):
        xn.load_book_params(tmp_path / "ok.pkl", [Embedding(V, D), GRU(D, H)])
    with pytest.raises(ValueError, match="holds a list of arrays .* pass the model"):
        xn.load_book_params(tmp_path / "ok.pkl")
