"""The second volume's models (xn.book.rnnlm, better_rnnlm, seq2seq, peeky_seq2seq, attention_seq2seq): their
layouts from the book's constructors, gradients (gradcheck, on every device), greedy and sampled generation,
weight tying, integer ids through predict and summary, and saving."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import TiedLinear
from xpnet.testing import assert_gradients_ok

from conftest import DEVICE_MAKERS, DEVICES

V, D, H = 9, 4, 6

SEQ2SEQ = {"Seq2seq": xn.book.seq2seq, "PeekySeq2seq": xn.book.peeky_seq2seq,
           "AttentionSeq2seq": xn.book.attention_seq2seq}
# The attention model (the most code) on every device; the others on NumPy and array-api-strict's device1
# (JAX compiles each operation once: every model on it would double this file's time).
MODEL_DEVICES = [pytest.param("AttentionSeq2seq", d.values[0], id=f"AttentionSeq2seq-{d.id}", marks=d.marks)
                 for d in DEVICES] + [pytest.param(m, d, id=f"{m}-{d}") for m in ("Seq2seq", "PeekySeq2seq")
                                      for d in ("numpy", "strict-device1")]


def ids(rng, *shape):
    return rng.integers(0, V, shape)


def test_builders_have_the_books_parameters_in_its_order():
    """The shapes of each book model's ``params`` list, read from its constructor (ch06, ch07, ch08)."""
    lstm = lambda d: [(d, 4 * H), (H, 4 * H), (4 * H,)]  # noqa: E731
    expected = {
        "Rnnlm": [(V, D), *lstm(D), (H, V), (V,)],
        "BetterRnnlm": [(V, H), *lstm(H), *lstm(H), (V,)],  # the tied output matrix is the embedding
        "Seq2seq": [(V, D), *lstm(D), (V, D), *lstm(D), (H, V), (V,)],
        "PeekySeq2seq": [(V, D), *lstm(D), (V, D), *lstm(H + D), (2 * H, V), (V,)],
        "AttentionSeq2seq": [(V, D), *lstm(D), (V, D), *lstm(D), (2 * H, V), (V,)],
    }
    for name, build in xn.book.BOOK2_MODELS.items():
        model = build(V, H, H) if name == "BetterRnnlm" else build(V, D, H)
        assert [tuple(p.shape) for p in model.parameters()] == expected[name], name


@pytest.mark.parametrize("name, device", MODEL_DEVICES)
def test_seq2seq_gradcheck(name, device, rng):
    """Every parameter's gradient, the encoder's included: the decoder hands the state's gradient back by hand."""
    dev = DEVICE_MAKERS[device]()
    xn.init.seed(0)
    model = SEQ2SEQ[name](V, D, H).to(dev, dtype="float64")
    xs, ts = xn.to_device(ids(rng, 2, 4), dev), xn.to_device(ids(rng, 2, 3), dev)
    report = assert_gradients_ok(model, (xs, ts), xn.to_device(ids(rng, 2, 3), dev),
                                 loss=xn.losses.SoftmaxCrossEntropy(), rtol=1e-5, max_entries=6)
    assert {row.name for row in report.rows} == set(model.named_params())


def test_planted_bug_a_forgotten_state_gradient_is_caught(rng, monkeypatch):
    from xpnet.models import seq2seq

    monkeypatch.setattr(seq2seq, "_at_last_step", lambda dh, steps: 0 * seq2seq.namespace(dh).zeros(
        (dh.shape[0], steps, dh.shape[1]), dtype=dh.dtype))
    xn.init.seed(0)
    model = xn.book.seq2seq(V, D, H).to("cpu", dtype="float64")
    report = xn.gradcheck(model, (ids(rng, 2, 4), ids(rng, 2, 3)), ids(rng, 2, 3), loss=xn.losses.SoftmaxCrossEntropy(),
                          max_entries=12)
    assert not report.ok
    assert {row.name for row in report.rows if not row.ok} >= {"encoder.lstm.Wx", "encoder.embed.W"}


def test_language_model_gradcheck_with_tied_weights(dev, rng):
    xn.init.seed(0)
    model = xn.book.better_rnnlm(V, H, H, dropout_ratio=0.0).to(dev, dtype="float64")
    x, t = xn.to_device(ids(rng, 2, 3), dev), xn.to_device(ids(rng, 2, 3), dev)
    report = assert_gradients_ok(model, x, t, loss=xn.losses.SoftmaxCrossEntropy(), rtol=1e-5, max_entries=6)
    assert {row.name for row in report.rows} == set(model.named_params())


@pytest.mark.parametrize("name", sorted(xn.optim.OPTIMIZERS))
def test_tied_weights_are_one_parameter_and_get_one_update(name, rng):
    """Every optimizer moves the shared matrix as it moves one parameter with that gradient (not twice)."""
    xn.init.seed(0)
    model = xn.book.better_rnnlm(V, H, H, dropout_ratio=0.0).to("cpu", dtype="float64")
    embed, out = model.layers[0], model.layers[-1]
    assert isinstance(out, TiedLinear) and out.embedding is embed
    assert [k for k in model.named_params() if k.endswith(".W")] == ["layers.0.W"]
    loss = xn.losses.SoftmaxCrossEntropy()
    loss.forward(model.forward(ids(rng, 2, 3)), ids(rng, 2, 3))
    model.backward(loss.backward())
    alone = xn.Sequential(xn.layers.Embedding(V, H, dtype="float64"))
    alone.layers[0].params["W"] = np.array(embed.params["W"], copy=True)
    alone.layers[0].grads["W"] = np.array(embed.grads["W"], copy=True)
    shared, single = xn.optim.get(name), xn.optim.get(name)
    shared.step(model)
    single.step(alone)
    np.testing.assert_allclose(embed.params["W"], alone.layers[0].params["W"], rtol=1e-12, atol=1e-15)
    assert out.embedding.params["W"] is embed.params["W"]
    assert sum(np.asarray(v).size for v in model.state_dict().values()) == \
        sum(np.asarray(p).size for p in model.parameters())


def test_tied_gradient_is_the_sum_whichever_backward_runs_first(rng):
    xn.init.seed(0)
    model = xn.book.better_rnnlm(V, H, H, dropout_ratio=0.0).to("cpu", dtype="float64")
    embed, out = model.layers[0], model.layers[-1]
    x = ids(rng, 2, 3)
    e = embed.forward(x)
    dy = rng.standard_normal((2, 3, V))
    out.forward(e)
    dx = out.backward(dy)
    embed.backward(dx)
    first = np.array(embed.grads["W"], copy=True)
    e = embed.forward(x)
    out.forward(e)
    embed.backward(dx)  # the embedding's own share first, then the output layer's is added
    out.backward(dy)
    np.testing.assert_allclose(embed.grads["W"], first, rtol=1e-12)
    own = np.zeros((V, H))
    np.add.at(own, x.reshape(-1), dx.reshape(-1, H))
    np.testing.assert_allclose(first, own + dy.reshape(-1, V).T @ e.reshape(-1, H), rtol=1e-12)


def test_a_sequential_with_tied_weights_is_saved_once_and_loads_tied(tmp_path, rng):
    """The file records the embedding once and the TiedLinear as a reference to it: after loading, the two
    layers read one matrix again (an update through either moves both), and the outputs are the saved model's."""
    xn.init.seed(0)
    embed = xn.layers.Embedding(V, H, dtype="float64")
    model = xn.Sequential(embed, xn.layers.LSTM(H, H, dtype="float64"), TiedLinear(embed))
    model.save(tmp_path / "tied.npz")
    loaded = xn.load(tmp_path / "tied.npz")
    assert loaded[2].embedding is loaded[0]
    assert sorted(loaded.state_dict()) == sorted(model.state_dict()) == ["0.W", "1.Wh", "1.Wx", "1.b", "2.b"]
    x = ids(rng, 2, 3)
    np.testing.assert_array_equal(xn.to_numpy(loaded.predict(x)), xn.to_numpy(model.predict(x)))
    with pytest.raises(TypeError, match="reads the matrix of an Embedding that is not part of this model"):
        xn.save(xn.Sequential(TiedLinear(embed)), tmp_path / "alone.npz")
    assert not (tmp_path / "alone.npz").exists()


def test_a_layer_placed_twice_is_one_layer_again_after_loading(tmp_path):
    xn.init.seed(0)
    block = xn.layers.Linear(4, 4)
    model = xn.Sequential(block, xn.layers.ReLU(), block)
    model.save(tmp_path / "twice.npz")
    loaded = xn.load(tmp_path / "twice.npz")
    assert loaded[0] is loaded[2]
    x = np.random.default_rng(0).standard_normal((3, 4)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("name, device", MODEL_DEVICES)
def test_generate_is_greedy_decoding_step_by_step_for_the_whole_batch(name, device, rng):
    """Each row's answer equals feeding the argmax back one step at a time through forward (teacher forcing
    with the model's own answers), the book's generate for one question."""
    dev = DEVICE_MAKERS[device]()
    xn.init.seed(3)
    model = SEQ2SEQ[name](V, D, H).to(dev, dtype="float64")
    xs = ids(rng, 3, 5)
    out = xn.to_numpy(model.generate(xs, 2, 4))
    assert out.shape == (3, 4)
    for row in range(3):
        answer = [2]
        for _ in range(4):
            scores = xn.to_numpy(model.predict(xs[row:row + 1], np.array([answer])))
            answer.append(int(np.argmax(scores[0, -1])))
        assert out[row].tolist() == answer[1:]


def test_generate_answers_in_the_index_dtype_whatever_the_questions_dtype():
    """Answers were cast to the questions' dtype: uint8 questions with 300 ids turned 280 into 24 (and fed
    24 back)."""
    xn.init.seed(0)
    model = xn.book.seq2seq(300, 4, 4)
    model.decoder.affine.params["b"][...] = 0.0
    model.decoder.affine.params["b"][280] = 100.0  # every step's most likely id
    out = model.generate(np.array([[1, 2, 3]], dtype=np.uint8), np.uint8(0), 3)
    assert out.dtype == np.int64 and out.tolist() == [[280, 280, 280]]


def test_generate_takes_a_numpy_integer_length_as_the_language_model_does(rng):
    xn.init.seed(0)
    model, lm = xn.book.attention_seq2seq(V, D, H), xn.book.rnnlm(V, D, H)
    assert model.generate(ids(rng, 2, 5), 1, np.int64(3)).shape == (2, 3)
    assert lm.generate([1], np.int64(3), seed=0).shape == (1, 3)
    for length in (True, 3.0, 0, np.int64(0)):
        with pytest.raises(ValueError, match="AttentionSeq2seq.generate: length must be an int >= 1"):
            model.generate(ids(rng, 2, 5), 1, length)


def test_exact_match_counts_whole_answers(rng):
    xn.init.seed(3)
    model = xn.book.peeky_seq2seq(V, D, H)
    xs = ids(rng, 6, 5)
    ts = np.concatenate([np.full((6, 1), 2), xn.to_numpy(model.generate(xs, 2, 3))], axis=1)
    ts[1, 2] = (ts[1, 2] + 1) % V
    assert model.exact_match(xs, ts, batch_size=4) == pytest.approx(5 / 6)


def test_sampling_is_seeded_and_temperature_zero_is_greedy(dev, rng):
    xn.init.seed(4)
    model = xn.book.rnnlm(V, D, H).to(dev)
    a = xn.to_numpy(model.generate([1, 2], 12, seed=7))
    assert a.shape == (1, 12) and a.min() >= 0 and a.max() < V
    np.testing.assert_array_equal(a, xn.to_numpy(model.generate([1, 2], 12, seed=7)))
    assert not np.array_equal(a, xn.to_numpy(model.generate([1, 2], 12, seed=8)))
    assert 3 not in xn.to_numpy(model.generate([[1], [2], [3]], 12, seed=1, skip_ids=[3]))
    greedy = xn.to_numpy(model.generate([1, 2], 4, temperature=0))
    prompt = [1, 2]
    for _ in range(4):
        model.reset_state()
        prompt.append(int(np.argmax(xn.to_numpy(model.predict(np.array([prompt])))[0, -1])))
    assert greedy[0].tolist() == prompt[2:]


def test_generation_checks_its_ids_once_not_per_token(monkeypatch, rng):
    """The range check reads a value back (on a GPU each token would wait for the one before): generate
    checks the prompt (and a seq2seq model's questions and start ids) once; the ids fed back are the
    model's own picks. A prompt out of range still fails."""
    seen = []
    real = xn.layers.Embedding.check_range
    monkeypatch.setattr(xn.layers.Embedding, "check_range", lambda self, ids: seen.append(1) or real(self, ids))
    xn.init.seed(0)
    lm, s2s = xn.models.LanguageModel(20, 8, 16), xn.book.attention_seq2seq(13, 8, 16)
    xs = rng.integers(0, 13, (4, 7))
    counts = []
    for length in (3, 9):
        seen.clear()
        lm.generate([1, 2, 3], length, temperature=0.8, seed=1)
        lm.generate([1, 2, 3], length, temperature=0)
        s2s.generate(xs, 1, length)
        counts.append(len(seen))
    assert counts == [4, 4]  # the prompt twice, the questions and the start ids
    assert lm.layers[0].check_ids and s2s.decoder.embed.check_ids
    with pytest.raises(ValueError, match=r"Embedding: ids must lie in \[0, 20\), got values in \[1, 20\]"):
        lm.generate([1, 20], 3)
    seen.clear()  # predict in batches: the ids checked once, not per batch
    lm.predict(rng.integers(0, 20, (12, 5)), batch_size=3)
    assert len(seen) == 1 and lm.layers[0].check_ids
    with pytest.raises(ValueError, match=r"Embedding: ids must lie in \[0, 20\)"):
        lm.predict(np.array([[1, 2], [3, 25]]), batch_size=1)


def test_sampling_follows_the_softmax(rng):
    """With a model whose every step scores the same, the draws' frequencies are softmax(scores / T)."""
    model = xn.book.rnnlm(3, 2, 2, dtype="float64")
    model.layers[-1].params["W"][...] = 0.0
    model.layers[-1].params["b"][...] = [0.0, 1.0, 2.0]
    draws = xn.to_numpy(model.generate(np.zeros((4000, 1), dtype=np.int64), 1, temperature=2.0, seed=0))
    p = np.exp(np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(np.bincount(draws.ravel(), minlength=3) / 4000, p / p.sum(), atol=0.03)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_draws_at_either_end_never_pick_a_skipped_id(monkeypatch, dtype):
    """The float32 cumulative sum of the probabilities ends a little below 1 (0.9999999 here, 0.9999993 over
    10,000 ids): a draw past its end went to the last id, skipped or not (and with the rounding remainder as
    extra probability), and a draw of 0 to the first, as did one below 2**-25 in a float16 model. Draws at
    both ends, with both end ids skipped."""
    vocab = 8
    model = xn.book.rnnlm(vocab, 2, 2, dtype=dtype)
    model.layers[-1].params["W"][...] = 0.0
    model.layers[-1].params["b"][...] = np.linspace(0.0, 1.0, vocab)

    class EndDraws:
        def random(self, shape):
            draws = np.zeros(shape)
            draws[:, 1::3] = np.nextafter(1.0, 0.0)  # rounds to 1.0 in float32
            draws[:, 2::3] = 2.0**-53  # the smallest above 0, 0 in float16
            return draws

    monkeypatch.setattr(np.random, "default_rng", lambda seed=None: EndDraws())
    out = xn.to_numpy(model.generate(np.zeros((6, 1), dtype=np.int64), 3, seed=0, skip_ids=[0, vocab - 1]))
    assert out.min() >= 1 and out.max() <= vocab - 2, out


def test_generate_refuses_skip_ids_and_temperatures_it_cannot_use():
    model = xn.book.rnnlm(V, D, H)
    for skip in ([V], [-1], [1.5], "<unk>"):
        with pytest.raises(ValueError, match=r"LanguageModel.generate: skip_ids must be ids in \[0, 9\), got"):
            model.generate([1], 3, seed=0, skip_ids=skip)
    with pytest.raises(ValueError, match="generate: skip_ids must leave at least one of the 9 ids"):
        model.generate([1], 3, seed=0, skip_ids=list(range(V)))
    for temperature in (float("nan"), float("inf"), -1.0, "1"):
        with pytest.raises(ValueError, match="generate: temperature must be a finite number >= 0"):
            model.generate([1], 3, temperature=temperature)
    assert model.generate([1], 3, temperature=np.float32(0.5), seed=0, skip_ids=np.int64(3)).shape == (1, 3)


def test_predict_summary_and_train_take_integer_ids(rng):
    xn.init.seed(5)
    model = xn.book.attention_seq2seq(V, D, H)
    xs, ts = ids(rng, 8, 5), ids(rng, 8, 4)
    assert xn.to_numpy(model.predict(xs, ts[:, :-1])).shape == (8, 3, V)
    table = model.summary(input_shape=[(5,), (3,)])
    assert "(N, 3, 9)" in table and "(N, 5, 6)" in table
    history = xn.train(model, ((xs, ts[:, :-1]), ts[:, 1:]), loss="cross_entropy", optimizer="adam", epochs=2,
                       batch_size=4, progress=False)
    assert history.epochs[-1]["train_perplexity"] == pytest.approx(np.exp(history.epochs[-1]["train_loss"]))
    lm = xn.Sequential(xn.layers.Embedding(V, D), xn.layers.LSTM(D, H), xn.layers.Linear(H, V))
    assert xn.to_numpy(lm.predict(ids(rng, 2, 7))).shape == (2, 7, V)
    assert "(N, 7, 9)" in lm.summary(input_shape=(7,))
    plain = xn.Sequential(xn.layers.Linear(3, 2))  # no Embedding: integers are numbers, cast as xn.train casts them
    np.testing.assert_array_equal(plain.predict(np.ones((2, 3), dtype=np.int64)), plain.predict(np.ones((2, 3))))


def test_sequence_labels_out_of_range_are_refused_before_training(rng):
    model = xn.book.seq2seq(V, D, H)
    xs, ts = ids(rng, 8, 5), ids(rng, 8, 4)
    ts[3, 2] = V
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\)"):
        xn.train(model, ((xs, ts[:, :-1]), ts[:, 1:]), loss="cross_entropy", optimizer="adam", epochs=1,
                 batch_size=4, progress=False)
    with pytest.raises(ValueError, match=r"integer labels of shape \(N, 3\)"):
        xn.train(model, ((xs, ts[:, :-1]), ts[:, 2:]), loss="cross_entropy", optimizer="adam", epochs=1,
                 batch_size=4, progress=False)


@pytest.mark.parametrize("name", [*SEQ2SEQ, "BetterRnnlm"])
def test_models_save_and_load(tmp_path, name, rng):
    xn.init.seed(6)
    model = xn.book.better_rnnlm(V, H, H) if name == "BetterRnnlm" else SEQ2SEQ[name](V, D, H)
    path = tmp_path / "m.npz"
    xn.save(model, path)
    again = xn.load(path)
    assert type(again) is type(model) and list(again.state_dict()) == list(model.state_dict())
    x = ids(rng, 2, 5)
    inputs = (x,) if name == "BetterRnnlm" else (x, ids(rng, 2, 3))
    np.testing.assert_array_equal(xn.to_numpy(again.predict(*inputs)), xn.to_numpy(model.predict(*inputs)))
    if name == "BetterRnnlm":
        assert again.layers[-1].embedding is again.layers[0]


@pytest.mark.parametrize("bias", [True, False])
def test_a_tied_linear_moved_without_its_embedding_says_so_in_forward(bias):
    """The Embedding is not TiedLinear's child: moving the TiedLinear alone leaves W behind, which forward
    names (it failed inside the array library: array_api_strict's AttributeError, CuPy's TypeError)."""
    dev = DEVICE_MAKERS["strict-device1"]()
    out = TiedLinear(xn.layers.Embedding(V, D), bias=bias).to(dev)
    x = xn.to_device(np.ones((2, D), dtype=np.float32), dev)
    with pytest.raises(xn.backend.XpnetDeviceError, match=r"TiedLinear: input is on .* but the W of its Embedding is "
                                                          r"on cpu: .*not part of the model"):
        out.forward(x)
