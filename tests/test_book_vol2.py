"""The second volume's weight files (BaseModel.save_params: a pickled list of float16 arrays) loaded into
xpnet layers, checked against the book's own computation written from its source (ch06/rnnlm.py,
common/time_layers.py, common/base_model.py)."""

import importlib
import os
import pickle
import sys

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
    return xn.Sequential(Embedding(V, D, dtype=dtype), LSTM(D, H, stateful=True, dtype=dtype),
                         Linear(H, V, dtype=dtype))


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
    with pytest.raises(ValueError,
                       match=r"holds 5 arrays, the model's layers take 6 in the book's order \(Embedding.W"):
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


# -- the models of xn.book: files laid out as the book's constructors lay them out --------------------------------

def book_lstm(Wx, Wh, b, xs, h, c):
    """TimeLSTM.forward (common/time_layers.py): gates f, g, i, o; returns hs (N, T, H) and the last (h, c)."""
    sigmoid = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    size, hs = Wh.shape[0], []
    for t in range(xs.shape[1]):
        A = xs[:, t] @ Wx + h @ Wh + b
        f, g, i, o = (sigmoid(A[:, :size]), np.tanh(A[:, size:2 * size]), sigmoid(A[:, 2 * size:3 * size]),
                      sigmoid(A[:, 3 * size:]))
        c = f * c + g * i
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs, axis=1), (h, c)


def book_attention_scores(params, xs, ts):
    """AttentionSeq2seq's decoder scores (ch08/attention_seq2seq.py, attention_layer.py), in float64: the
    encoder's hs, the decoder's LSTM from (hs[:, -1], 0), TimeAttention, TimeAffine on (context, state)."""
    eW, eWx, eWh, eb, dW, dWx, dWh, db, W, b = (p.astype(np.float64) for p in params)
    n, size = xs.shape[0], eWh.shape[0]
    hs, _ = book_lstm(eWx, eWh, eb, eW[xs], np.zeros((n, size)), np.zeros((n, size)))
    dec, _ = book_lstm(dWx, dWh, db, dW[ts], hs[:, -1], np.zeros((n, size)))
    out = []
    for t in range(ts.shape[1]):
        s = np.sum(hs * dec[:, t][:, None, :], axis=2)
        a = np.exp(s - s.max(axis=1, keepdims=True))
        a /= a.sum(axis=1, keepdims=True)
        out.append(np.concatenate([np.sum(hs * a[:, :, None], axis=1), dec[:, t]], axis=1) @ W + b)
    return np.stack(out, axis=1)


def book_attention_params(rng):
    """AttentionSeq2seq.__init__'s arrays in its params order: encoder embed, LSTM; decoder embed, LSTM, affine."""
    lstm = lambda d: [rng.standard_normal((d, 4 * H)) / np.sqrt(d),  # noqa: E731
                      rng.standard_normal((H, 4 * H)) / np.sqrt(H), rng.standard_normal(4 * H)]
    return [rng.standard_normal((V, D)), *lstm(D), rng.standard_normal((V, D)), *lstm(D),
            rng.standard_normal((2 * H, V)) / np.sqrt(2 * H), rng.standard_normal(V)]


def test_a_book_attention_seq2seq_file_gives_the_books_scores(tmp_path, rng):
    params = book_attention_params(rng)
    save_params(params, tmp_path / "AttentionSeq2seq.pkl")
    model = xn.book.attention_seq2seq(V, D, H, dtype="float64")
    assert xn.load_book_params(tmp_path / "AttentionSeq2seq.pkl", model) is model
    xs, ts = rng.integers(0, V, (3, 7)), rng.integers(0, V, (3, 4))
    expected = book_attention_scores([p.astype(np.float16) for p in params], xs, ts)
    np.testing.assert_allclose(model.predict(xs, ts), expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="holds 10 arrays, the model's layers take 12"):
        xn.load_book_params(tmp_path / "AttentionSeq2seq.pkl", xn.Sequential(
            Embedding(V, D), LSTM(D, H), Embedding(V, D), LSTM(D, H), Linear(H, V), Linear(2 * H, V)))


def test_a_book_better_rnnlm_file_stores_the_tied_matrix_twice(tmp_path, rng):
    embed = rng.standard_normal((V, H)).astype("f")
    lstm = [rng.standard_normal((H, 4 * H)).astype("f"), rng.standard_normal((H, 4 * H)).astype("f"),
            rng.standard_normal(4 * H).astype("f")]
    params = [embed, *lstm, *lstm, embed.T, rng.standard_normal(V).astype("f")]  # BetterRnnlm's params list
    save_params(params, tmp_path / "BetterRnnlm.pkl")
    model = xn.load_book_params(tmp_path / "BetterRnnlm.pkl", xn.book.better_rnnlm(V, H, H))
    np.testing.assert_array_equal(model.named_params()["layers.0.W"], embed.astype(np.float16).astype("f"))
    np.testing.assert_array_equal(model.named_params()["layers.6.b"], params[-1].astype(np.float16).astype("f"))
    assert model.layers[-1].embedding.params["W"] is model.layers[0].params["W"]
    save_params(params[:7] + [embed.T + 1] + params[8:], tmp_path / "untied.pkl")
    with pytest.raises(ValueError, match="entry 7 .* differs from entry 0, its embedding's matrix"):
        xn.load_book_params(tmp_path / "untied.pkl", xn.book.better_rnnlm(V, H, H))


# -- the book's own files and code (its repository, not in this one) ----------------------------------------------

BOOK2 = os.environ.get("XPNET_BOOK2_DIR")
needs_book = pytest.mark.skipif(
    not BOOK2 or not os.path.isfile(os.path.join(BOOK2, "ch08", "AttentionSeq2seq.pkl")),
    reason="XPNET_BOOK2_DIR is not a checkout of oreilly-japan/deep-learning-from-scratch-2 (git clone it and set "
           "XPNET_BOOK2_DIR to run the book's own code against xpnet)")


@pytest.fixture
def book_code(monkeypatch):
    """The book's modules importable as its scripts import them (its root and chapter folders on sys.path)."""
    for folder in ("", "ch07", "ch08"):
        monkeypatch.syspath_prepend(os.path.join(BOOK2, folder))
    monkeypatch.chdir(os.path.join(BOOK2, "ch08"))
    return importlib.import_module


@needs_book
@pytest.mark.slow
def test_the_books_attention_seq2seq_file_gives_the_books_answers_on_its_date_test_set(book_code):
    sequence = book_code("dataset.sequence")
    (_, _), (x_test, t_test) = sequence.load_data("date.txt")
    x_test = x_test[:, ::-1]  # ch08/train.py reverses the questions
    book = book_code("attention_seq2seq").AttentionSeq2seq(len(sequence.char_to_id), 16, 256)
    book.load_params(os.path.join(BOOK2, "ch08", "AttentionSeq2seq.pkl"))
    model = xn.load_book_params(os.path.join(BOOK2, "ch08", "AttentionSeq2seq.pkl"),
                                xn.book.attention_seq2seq(len(sequence.char_to_id), 16, 256))
    ours = xn.to_numpy(model.generate(x_test, t_test[:, 0], t_test.shape[1] - 1))
    theirs = np.array([[int(i) for i in book.generate(x_test[[k]], int(t_test[k, 0]), t_test.shape[1] - 1)]
                       for k in range(len(x_test))])
    assert (ours == theirs).all(axis=1).mean() == 1.0, f"{int((ours != theirs).any(axis=1).sum())} answers differ"


@needs_book
def test_the_books_rnnlm_file_gives_the_books_loss(book_code):
    monkey_path = os.path.join(BOOK2, "ch06")
    sys.path.insert(0, monkey_path)
    try:
        book = book_code("rnnlm").Rnnlm()
    finally:
        sys.path.remove(monkey_path)
    book.load_params(os.path.join(BOOK2, "ch06", "Rnnlm.pkl"))
    model = xn.load_book_params(os.path.join(BOOK2, "ch06", "Rnnlm.pkl"), xn.book.rnnlm())
    rng = np.random.default_rng(0)
    loss = xn.losses.SoftmaxCrossEntropy()
    for _ in range(2):  # the state carries over in both
        xs, ts = rng.integers(0, 10000, (5, 35)), rng.integers(0, 10000, (5, 35))
        np.testing.assert_allclose(float(loss.forward(model.forward(xs), ts)), float(book.forward(xs, ts)), rtol=1e-5)
