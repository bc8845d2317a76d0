"""A reader of the book's second volume moving its chapters to xpnet: what they type first (the book's
names, its Trainer's habits) works or says at once what to write, and the pieces that stand for the
book's compute what its source computes (ch01/two_layer_net.py, common/layers.py, common/util.py)."""

import math
import re

import numpy as np
import pytest
from test_book_vol2 import D, H, V, book_rnnlm_loss, book_rnnlm_params, save_params, xpnet_rnnlm
from test_pytorch_guesses import test_pytorch_names_that_xpnet_spells_otherwise_say_what_to_write as says_hint

import xpnet as xn


@pytest.mark.parametrize("expression, hint", [
    ("xn.Trainer", "xn.train(model, (x, t), loss='cross_entropy', optimizer=optimizer, epochs=max_epoch"),
    ("xn.RnnlmTrainer", "xn.train(model, xn.datasets.TokenStream(corpus, batch_size, time_size)"),
    ("xn.eval_perplexity", "xn.evaluate(model, xn.datasets.TokenStream(corpus, 10, 35), loss='cross_entropy')"),
    ("xn.eval_seq2seq", "model.exact_match(x_test, t_test)"),
    ("xn.clip_grads", "xn.optim.clip_grad_norm(model, max_norm)"),
    ("xn.optim.clip_grads", "xn.optim.clip_grad_norm(model, max_norm)"),
    ("xn.to_gpu", "xn.to_device(x, 'cuda')"),
    ("xn.to_cpu", "xn.to_numpy(x)"),
    ("xn.GPU", "xn.train(..., device='cuda')"),
    ("xn.config", "no GPU flag (the book's common/config.py)"),
    ("xn.book.TwoLayerNet", "vol. 2's (ch01, Sigmoid) with activation='sigmoid'"),
    ("xn.book.MultiLayerNet", "xn.book.multi_layer_net(input_size, hidden_size_list, output_size)"),
    ("xn.book.SimpleConvNet", "xn.book.simple_convnet(...)"),
    ("xn.book.SimpleRnnlm", "xn.layers.RNN(D, H, stateful=True)"),
    ("xn.book.Rnnlm", "xn.book.rnnlm(vocab_size, wordvec_size, hidden_size)"),
    ("xn.book.BetterRnnlm", "xn.book.better_rnnlm(vocab_size, wordvec_size, hidden_size, dropout_ratio)"),
    ("xn.book.RnnlmGen", ".generate([start_id], length=sample_size, skip_ids=skip_ids)"),
    ("xn.book.Seq2seq", "xn.book.seq2seq(vocab_size, wordvec_size, hidden_size)"),
    ("xn.book.PeekySeq2seq", "xn.book.peeky_seq2seq("),
    ("xn.book.AttentionSeq2seq", "xn.book.attention_seq2seq("),
    ("xn.datasets.sequence", "xn.datasets.load_seq2seq_file(path)"),
    ("xn.datasets.get_vocab", "char_to_id and id_to_char"),
    ("xn.datasets.load_data", "spiral.load_data() is xn.datasets.spiral()"),
    ("xn.datasets.ptb.load_data", "xn.datasets.load_ptb(split) -> (corpus, word_to_id, id_to_word)"),
    ("xn.layers.MatMul", "xn.layers.Linear(in_features, out_features, bias=False)"),
    ("xn.book.rnnlm(11, 4, 5).save_params", "model.save('model.npz')"),
    ("xn.book.seq2seq(11, 4, 5).load_params", "xn.load_book_params(path, model)"),
    ("xn.optim.SGD(0.1).update", "optimizer.step(model)"),
    ("xn.History().ppl_list", "[e['train_perplexity'] for e in history.epochs]"),
    ("xn.History().loss_list", "[e['train_loss'] for e in history.epochs]"),
])
def test_the_second_volumes_names_say_what_to_write(expression, hint):
    says_hint(expression, hint)


@pytest.mark.parametrize("module, name", [("xpnet.book", "Rnnlm"), ("xpnet.datasets.ptb", "load_data"),
                                          ("xpnet.datasets", "sequence")])
def test_from_import_of_a_book_name_keeps_the_hint(module, name):
    with pytest.raises(ImportError, match=f"cannot import name '{name}' from '{module}': the book's"):
        exec(f"from {module} import {name}", {})  # noqa: S102 - fixed statements


def _corpus(n=400):
    return np.random.default_rng(0).integers(0, V, n)


@pytest.mark.parametrize("keyword, hint", [
    ("eval_interval", "xn.train logs once per epoch (history.epochs)"),
    ("time_size", "pass xn.datasets.TokenStream(corpus, batch_size, time_size) as the data"),
])
def test_the_trainers_fit_keywords_say_what_to_write(keyword, hint):
    corpus = _corpus()
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{keyword}': .*{re.escape(hint)}"):
        xn.train(xn.book.rnnlm(V, D, H), (corpus[:-1], corpus[1:]), loss="cross_entropy", optimizer="sgd", epochs=1,
                 batch_size=4, **{keyword: 5})


def test_one_corpus_of_ids_where_a_pair_of_batches_was_expected_names_token_stream():
    """RnnlmTrainer.fit(xs, ts) and eval_perplexity(model, corpus) take 1-D ids; read as N samples of one id
    they failed inside the LSTM, naming a (2, D) input the user never made."""
    corpus, model = _corpus(), xn.book.rnnlm(V, D, H)
    stream = r"a 1-D array of ids is one corpus: pass xn\.datasets\.TokenStream\(corpus, batch_size, time_size\)"
    with pytest.raises(ValueError, match=r"^train data: x of shape \(399,\) does not fit the model: .*; " + stream):
        xn.train(model, (corpus[:-1], corpus[1:]), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=4)
    with pytest.raises(TypeError, match=r"^evaluate data: expected a pair .*got an array of shape \(400,\); " + stream):
        xn.evaluate(model, corpus, loss="cross_entropy")
    with pytest.raises(TypeError, match=r"takes the corpus once, not inputs and targets: the book's "
                                        r"fit\(corpus\[:-1\], corpus\[1:\], \.\.\.\) is "
                                        r"TokenStream\(corpus, batch_size, time_size\)"):
        xn.datasets.TokenStream(corpus[:-1], corpus[1:], 4, 5)


def test_a_seq2seq_given_the_questions_alone_says_where_the_answers_go():
    """The book's trainer.fit(x_train, t_train): its model shifts t inside forward; here t goes in twice."""
    data = xn.datasets.addition(300)
    (x, t), model = data.train, xn.book.seq2seq(len(data.char_to_id), 4, 8)
    with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'ts'; the book's fit\(x_train, "
                                        r"t_train\) is xn\.train\(model, \(\(x_train, t_train\[:, :-1\]\), "
                                        r"t_train\[:, 1:\]\), loss='cross_entropy', \.\.\.\)"):
        xn.train(model, (x, t), loss="cross_entropy", optimizer="adam", epochs=1, batch_size=32)


@pytest.mark.parametrize("model, x", [(lambda: xn.book.rnnlm(V, D, H), _corpus(20).reshape(2, 10)),
                                      (lambda: xn.book.two_layer_net(2, 4, 3), np.ones((2, 2), np.float32))])
def test_the_books_forward_with_labels_says_where_the_loss_is(model, x):
    """The book's model.forward(xs, ts) returns the loss; an xpnet model's second argument is train."""
    with pytest.raises(TypeError, match=r"train must be True or False, got ndarray; .*the book's forward\(x, t\) -> "
                                        r"loss is loss\.forward\(model\.forward\(x\), t\) here$"):
        model().forward(x, np.zeros(x.shape[:2] if x.dtype.kind == "i" else 2, dtype=np.int64))


def _softmax(x):
    """common/functions.py softmax, for 2-D x."""
    x = x - x.max(axis=1, keepdims=True)
    x = np.exp(x)
    x /= x.sum(axis=1, keepdims=True)
    return x


def book_two_layer_net_step(params, x, t, lr):
    """Vol. 2 ch01/two_layer_net.py (Affine, Sigmoid, Affine, SoftmaxWithLoss of common/layers.py): loss and
    gradients of forward(x, t) then backward(), and the parameters after common/optimizer.py's SGD.update."""
    W1, b1, W2, b2 = params
    x1 = x
    a1 = np.dot(x1, W1) + b1                                   # Affine.forward
    out = 1 / (1 + np.exp(-a1))                                # Sigmoid.forward
    score = np.dot(out, W2) + b2                               # Affine.forward
    y = _softmax(score)                                        # SoftmaxWithLoss.forward
    if t.size == y.size:
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    loss = -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size
    dx = y.copy()                                              # SoftmaxWithLoss.backward(dout=1)
    dx[np.arange(batch_size), t] -= 1
    dx *= 1
    dx = dx / batch_size
    dW2, db2, dout = np.dot(out.T, dx), np.sum(dx, axis=0), np.dot(dx, W2.T)      # Affine.backward
    dx = dout * (1.0 - out) * out                              # Sigmoid.backward
    dW1, db1 = np.dot(x1.T, dx), np.sum(dx, axis=0)            # Affine.backward
    grads = [dW1, db1, dW2, db2]
    return loss, grads, [p - lr * g for p, g in zip(params, grads)]


def test_two_layer_net_with_sigmoid_is_the_second_volumes_ch01_net():
    """Vol. 2's ch01 TwoLayerNet is Affine - Sigmoid - Affine (vol. 1's has a ReLU): the same loss, gradients and
    SGD step on the same weights and the book's one-hot int32 spiral labels."""
    x, labels = xn.datasets.spiral(30, 3, seed=0, dtype="float64")
    t = np.eye(3, dtype=np.int32)[labels]
    xn.init.seed(0)
    model = xn.book.two_layer_net(input_size=2, hidden_size=10, output_size=3, dtype="float64", activation="sigmoid")
    params = [np.array(p) for p in model.named_params().values()]
    loss = xn.losses.SoftmaxCrossEntropy()
    value = loss.forward(model.forward(x), t)
    model.backward(loss.backward())
    book_loss, book_grads, book_after = book_two_layer_net_step(params, x, t, lr=1.0)
    assert abs(float(value) - book_loss) < 1e-6  # the book's 1e-7 inside the log
    for got, want in zip(model.named_grads().values(), book_grads):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    xn.optim.SGD(lr=1.0).step(model)
    for got, want in zip(model.named_params().values(), book_after):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert isinstance(xn.book.two_layer_net(2, 10, 3).layers[1], xn.layers.ReLU)  # vol. 1's by default


def book_eval_perplexity(model_forward, corpus, batch_size=10, time_size=35):
    """common/util.py eval_perplexity, line for line but the progress print; ``model_forward(xs, ts)`` is the
    book's model.forward(xs, ts, train_flg=False), the loss of one batch."""
    corpus_size = len(corpus)
    total_loss = 0
    max_iters = (corpus_size - 1) // (batch_size * time_size)
    jump = (corpus_size - 1) // batch_size
    for iters in range(max_iters):
        xs = np.zeros((batch_size, time_size), dtype=np.int32)
        ts = np.zeros((batch_size, time_size), dtype=np.int32)
        time_offset = iters * time_size
        offsets = [time_offset + (i * jump) for i in range(batch_size)]
        for t in range(time_size):
            for i, offset in enumerate(offsets):
                xs[i, t] = corpus[(offset + t) % corpus_size]
                ts[i, t] = corpus[(offset + t + 1) % corpus_size]
        loss = model_forward(xs, ts)
        total_loss += loss
    ppl = np.exp(total_loss / max_iters)
    return ppl


@pytest.mark.parametrize("size, batch_size, time_size", [(1000, 10, 35), (203, 4, 5), (250, 3, 7)])
def test_evaluate_over_a_token_stream_is_the_books_eval_perplexity(tmp_path, size, batch_size, time_size):
    """The docs' eval_perplexity row: the book's Rnnlm (stateful from batch to batch, reset first as ch06's
    train_rnnlm.py does) and xpnet's, loaded from one book file, give one perplexity."""
    params = book_rnnlm_params(np.random.default_rng(1))
    save_params(params, tmp_path / "Rnnlm.pkl")
    book_params = [p.astype(np.float16).astype(np.float32) for p in params]  # load_params's float16 round trip
    corpus = _corpus(size)
    state = None

    def book_forward(xs, ts):
        nonlocal state
        _, loss, state = book_rnnlm_loss(book_params, xs, ts, state)
        return loss

    want = book_eval_perplexity(book_forward, corpus, batch_size, time_size)
    model = xn.load_book_params(tmp_path / "Rnnlm.pkl", xpnet_rnnlm())
    got = xn.evaluate(model, xn.datasets.TokenStream(corpus, batch_size, time_size), loss="cross_entropy")
    assert math.isclose(got["perplexity"], want, rel_tol=1e-12)
