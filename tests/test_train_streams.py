"""xn.train over a TokenStream (truncated BPTT, the book's RnnlmTrainer), gradient clipping by global norm
(against torch.nn.utils.clip_grad_norm_), perplexity, resume and the NaN guard on streams."""

import copy
import math

import numpy as np
import pytest

import xpnet as xn
from test_distributed import _assert_matches_reference, _load_script, _rank_results, assert_ok, launch, needs_mpi

V, D, H, B, T = 13, 5, 6, 4, 5


def corpus(rng, n=400):
    return rng.integers(0, V, n)


def lm(seed=0):
    xn.init.seed(seed)
    return xn.book.rnnlm(V, D, H, dtype="float64")


def book_rnnlm_trainer(model, ids, epochs, lr, max_grad):
    """RnnlmTrainer.fit(max_epoch=epochs) (common/trainer.py) with SGD, written from the book's source:
    get_batch's offsets and one time_idx over the whole run; clip_grads; the state reset between epochs
    as train_better_rnnlm.py does. Returns each step's loss."""
    xs, ts = ids[:-1], ids[1:]
    data_size = len(xs)
    max_iters = data_size // (B * T)
    offsets = [i * (data_size // B) for i in range(B)]
    time_idx, losses = 0, []
    loss = xn.losses.SoftmaxCrossEntropy()
    for _ in range(epochs):
        model.reset_state()
        for _ in range(max_iters):
            bx, bt = np.empty((B, T), dtype=np.int64), np.empty((B, T), dtype=np.int64)
            for t in range(T):
                for i, offset in enumerate(offsets):
                    bx[i, t], bt[i, t] = xs[(offset + time_idx) % data_size], ts[(offset + time_idx) % data_size]
                time_idx += 1
            losses.append(float(loss.forward(model.forward(bx), bt)))
            model.backward(loss.backward())
            grads = model.named_grads()
            norm = np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
            rate = max_grad / (norm + 1e-6)
            for name, p in model.named_params().items():
                p -= lr * (grads[name] * rate if rate < 1 else grads[name])
    return losses


def test_training_over_a_stream_is_the_books_rnnlm_trainer(rng):
    ids = corpus(rng)
    reference = lm()
    losses = book_rnnlm_trainer(reference, ids, epochs=2, lr=2.0, max_grad=0.5)
    model = lm()
    history = xn.train(model, xn.datasets.TokenStream(ids, B, T), loss="cross_entropy", optimizer=xn.optim.SGD(2.0),
                       epochs=2, clip_grad_norm=0.5, progress=False)
    for k, v in reference.named_params().items():
        np.testing.assert_allclose(model.named_params()[k], v, rtol=1e-10, atol=1e-12, err_msg=k)
    steps = len(losses) // 2
    for e, record in enumerate(history.epochs):
        assert record["train_loss"] == pytest.approx(np.mean(losses[e * steps:(e + 1) * steps]), rel=1e-10)
        assert record["train_perplexity"] == pytest.approx(math.exp(record["train_loss"]), rel=1e-12)


def test_the_stream_without_a_state_reset_would_differ(rng):
    """The epoch's state reset matters: a trainer that carries the state into epoch 2 ends elsewhere."""
    ids = corpus(rng)
    model = lm()
    xn.train(model, xn.datasets.TokenStream(ids, B, T), loss="cross_entropy", optimizer=xn.optim.SGD(2.0), epochs=2,
             progress=False)
    carried = lm()
    stream = xn.datasets.TokenStream(ids, B, T)
    loss = xn.losses.SoftmaxCrossEntropy()
    for step, (x, t) in enumerate(list(stream.epoch(0)) + list(stream.epoch(1))):
        loss.forward(carried.forward(x), t)
        carried.backward(loss.backward())
        xn.optim.SGD(2.0).step(carried)
    assert not np.allclose(carried.named_params()["layers.1.Wh"], model.named_params()["layers.1.Wh"])


def test_stateful_batches_equal_one_long_unrolled_sequence(dev, rng):
    """The scores of a stream's consecutive batches, state carried, are those of each row read in one forward."""
    ids = corpus(rng, 4 * B * T + 1)
    model = lm().to(dev)
    stream = xn.datasets.TokenStream(xn.to_device(ids, dev), B, T)
    pieces = [xn.to_numpy(model.forward(x, train=False)) for x, _ in stream.epoch(0)]
    model.reset_state()
    rows = stream.positions(0)[:, :1] + np.arange(len(stream) * T)[None, :]
    whole = xn.to_numpy(model.forward(xn.to_device(ids[rows], dev), train=False))
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, rtol=1e-11, atol=1e-13)


def test_validation_stream_gives_the_mean_loss_from_a_reset_state(rng):
    ids, val_ids = corpus(rng), corpus(rng, 120)
    model = lm()
    history = xn.train(model, xn.datasets.TokenStream(ids, B, T), validation=xn.datasets.TokenStream(val_ids, 2, T),
                       loss="cross_entropy", optimizer=xn.optim.SGD(1.0), epochs=1, progress=False)
    model.reset_state()
    loss, values = xn.losses.SoftmaxCrossEntropy(), []
    for x, t in xn.datasets.TokenStream(val_ids, 2, T).epoch(0):
        values.append(float(loss.forward(model.forward(x, train=False), t)))
    assert history.epochs[0]["val_loss"] == pytest.approx(np.mean(values), rel=1e-12)
    assert history.epochs[0]["val_perplexity"] == pytest.approx(math.exp(np.mean(values)), rel=1e-12)


def test_evaluate_reads_a_stream_as_training_reads_a_validation_stream(rng):
    ids, val_ids = corpus(rng), corpus(rng, 120)
    model = lm()
    history = xn.train(model, xn.datasets.TokenStream(ids, B, T), validation=xn.datasets.TokenStream(val_ids, 2, T),
                       loss="cross_entropy", optimizer=xn.optim.SGD(1.0), epochs=1, progress=False)
    result = xn.evaluate(model, xn.datasets.TokenStream(val_ids, 2, T), loss="cross_entropy")
    assert result["loss"] == pytest.approx(history.epochs[0]["val_loss"], rel=1e-12)
    assert result["perplexity"] == pytest.approx(history.epochs[0]["val_perplexity"], rel=1e-12)
    assert result["accuracy"] is None
    with pytest.raises(ValueError, match="batch_size=3 but the TokenStream cuts batches of 2"):
        xn.evaluate(model, xn.datasets.TokenStream(val_ids, 2, T), loss="cross_entropy", batch_size=3)
    with pytest.raises(ValueError, match=r"evaluate data: the TokenStream's ids lie in \[0, 13\]"):
        xn.evaluate(model, xn.datasets.TokenStream(np.append(val_ids, V), 2, T), loss="cross_entropy")


def test_evaluate_on_a_pair_starts_from_zeros_and_keeps_a_stateful_models_carried_state(rng):
    """The one-row probe that checks the data against the model does not fail on the state carried from
    training (4 rows); the pair's rows are sequences of their own, evaluated from a zero state, and the
    state training left is the model's again afterwards."""
    model = lm()
    xn.train(model, xn.datasets.TokenStream(corpus(rng), B, T), loss="cross_entropy", optimizer="sgd", epochs=1,
             progress=False)
    x, t = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    twin = copy.deepcopy(model)
    carried = [(lstm.h.copy(), lstm.c.copy()) for lstm in model.lstms]
    twin.reset_state()
    expected = float(xn.losses.SoftmaxCrossEntropy().forward(twin.forward(x, train=False), t))
    result = xn.evaluate(model, (x, t), loss="cross_entropy")
    assert result["loss"] == pytest.approx(expected, rel=1e-12)
    assert result["perplexity"] == pytest.approx(math.exp(expected), rel=1e-12)
    for lstm, (h, c) in zip(model.lstms, carried):
        np.testing.assert_array_equal(lstm.h, h)
        np.testing.assert_array_equal(lstm.c, c)


def test_epoch_line_shows_perplexity(rng, capsys):
    xn.train(lm(), xn.datasets.TokenStream(corpus(rng), B, T), loss="cross_entropy", optimizer="sgd", epochs=1)
    assert "train_perplexity" in capsys.readouterr().out


def test_resume_over_a_stream_equals_the_uninterrupted_run(tmp_path, rng):
    ids = corpus(rng)
    fit = dict(loss="cross_entropy", progress=False, clip_grad_norm=1.0)
    straight = lm()
    xn.train(straight, xn.datasets.TokenStream(ids, B, T), optimizer=xn.optim.Adam(0.01), epochs=3, **fit)
    first = lm()
    xn.train(first, xn.datasets.TokenStream(ids, B, T), optimizer=xn.optim.Adam(0.01), epochs=2,
             callbacks=[xn.callbacks.ModelCheckpoint(tmp_path / "run.npz", full=True)], **fit)
    resumed = lm()
    xn.train(resumed, xn.datasets.TokenStream(ids, B, T), optimizer=xn.optim.Adam(0.01), epochs=3,
             resume_from=tmp_path / "run.npz", **fit)
    for k, v in straight.named_params().items():
        np.testing.assert_array_equal(resumed.named_params()[k], v, err_msg=k)


def test_nan_guard_names_the_step_on_a_stream(rng):
    model = lm().to("cpu", dtype="float32")
    ids = corpus(rng)
    with pytest.raises(xn.XpnetTrainingError, match=r"epoch 1, step \d+ of 19"):
        xn.train(model, xn.datasets.TokenStream(ids, B, T), loss="cross_entropy", optimizer=xn.optim.SGD(1e38),
                 epochs=1, progress=False)


def _count_id_checks(monkeypatch):
    """The shapes of the ids each Embedding's range check reads, in order."""
    seen = []
    real = xn.layers.Embedding.check_range
    monkeypatch.setattr(xn.layers.Embedding, "check_range", lambda self, ids: seen.append(tuple(ids.shape)) or
                        real(self, ids))
    return seen


def test_the_input_embeddings_ids_are_checked_once_per_run_not_per_step(monkeypatch, rng):
    """Each check reads a value back from the device, which on a GPU waits for the queued steps: xn.train
    and xn.evaluate check the ids the input Embedding will read once, before the first step, and turn its
    per-forward check off for the run only."""
    ids = rng.integers(0, 11, 2001)
    seen = _count_id_checks(monkeypatch)
    model = xn.models.LanguageModel(11, 6, 8)
    xn.train(model, xn.datasets.TokenStream(ids, 4, 10), validation=xn.datasets.TokenStream(ids[:401], 4, 10),
             loss="cross_entropy", optimizer="adam", epochs=2, progress=False)
    training = [s for s in seen if s not in ((1, 10), (2, 10))]  # the probes of a row or two before training
    assert training == [(2000,), (400,)] and model.layers[0].check_ids  # 2 x 50 steps and 10 validation steps
    seen.clear()
    x, t = rng.integers(0, 11, (40, 5)), rng.integers(0, 11, (40, 5))
    net = xn.Sequential(xn.layers.Embedding(11, 6), xn.layers.LSTM(6, 8), xn.layers.Linear(8, 11))
    xn.train(net, (x, t), loss="cross_entropy", optimizer="adam", epochs=2, batch_size=8, progress=False)
    xn.evaluate(net, (x, t), loss="cross_entropy", batch_size=8)
    assert [s for s in seen if s[0] > 2] == [(40, 5), (40, 5)] and net[0].check_ids  # not the probes' rows
    seen.clear()
    seq2seq = xn.book.attention_seq2seq(11, 6, 8)  # two inputs, each read by its own Embedding
    xn.train(seq2seq, ((x, t[:, :-1]), t[:, 1:]), loss="cross_entropy", optimizer="adam", epochs=2, batch_size=8,
             progress=False)
    assert [s for s in seen if s[0] > 2] == [(40, 5), (40, 4)]
    assert seq2seq.encoder.embed.check_ids and seq2seq.decoder.embed.check_ids


def test_an_id_out_of_range_in_a_later_batch_fails_before_training(monkeypatch, rng):
    ids = rng.integers(0, 11, 2001)
    ids[1500] = 11  # a later batch's; the first batch, probed before training, is fine
    model = xn.models.LanguageModel(12, 6, 8)  # the output has 12 classes: only the embedding is too small
    model.layers[0] = xn.layers.Embedding(11, 6)
    before = {k: v.copy() for k, v in model.named_params().items()}
    with pytest.raises(ValueError, match=r"Embedding: ids must lie in \[0, 11\), got values in \[0, 11\]"):
        xn.train(model, xn.datasets.TokenStream(ids, 4, 10), loss="cross_entropy", optimizer="adam", epochs=1,
                 progress=False)
    assert model.layers[0].check_ids  # restored
    for k, v in model.named_params().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)  # no step ran


def test_stream_arguments_are_checked(rng):
    stream = xn.datasets.TokenStream(corpus(rng), B, T)
    with pytest.raises(ValueError, match="batch_size=7 but the TokenStream cuts batches of 4 rows"):
        xn.train(lm(), stream, loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=7, progress=False)
    late = np.arange(400) % V
    late[-1] = 20  # only ever a target, of the last batch
    with pytest.raises(ValueError, match=r"the TokenStream's ids lie in \[0, 20\], but the model scores 13"):
        xn.train(lm(), xn.datasets.TokenStream(late, B, T), loss="cross_entropy", optimizer="sgd", epochs=1,
                 progress=False)
    with pytest.raises(TypeError, match="batch_size is required"):
        xn.train(lm(), (np.zeros((4, 3), dtype=np.int64), np.zeros((4, 3), dtype=np.int64)), loss="cross_entropy",
                 optimizer="sgd", epochs=1, progress=False)
    with pytest.raises(ValueError, match="clip_grad_norm: max_norm must be a positive number"):
        xn.train(lm(), stream, loss="cross_entropy", optimizer="sgd", epochs=1, clip_grad_norm=0, progress=False)


def test_clip_grad_norm_equals_pytorch(dev, rng):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    model = lm().to(dev)
    loss = xn.losses.SoftmaxCrossEntropy()
    x, t = xn.to_device(rng.integers(0, V, (B, T)), dev), xn.to_device(rng.integers(0, V, (B, T)), dev)
    loss.forward(model.forward(x), t)
    model.backward(loss.backward())
    grads = {k: xn.to_numpy(g) for k, g in model.named_grads().items()}
    for max_norm in (1e-3, 1e3):
        params = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads.values()]
        for p, g in zip(params, grads.values()):
            p.grad = torch.from_numpy(g.copy())
        expected = torch.nn.utils.clip_grad_norm_(params, max_norm)
        for node in model.named_modules().values():  # the same gradients each time
            for k in node.grads:
                name = next(n for n, g in model.named_grads().items() if g is node.grads[k])
                node.grads[k] = xn.to_device(grads[name], dev)
        norm = xn.optim.clip_grad_norm(model, max_norm)
        assert float(norm) == pytest.approx(float(expected), rel=1e-12)
        for (name, g), p in zip(model.named_grads().items(), params):
            np.testing.assert_allclose(xn.to_numpy(g), p.grad.numpy(), rtol=1e-12, err_msg=name)


@needs_mpi
def test_data_parallel_training_over_a_stream_with_clipping_equals_one_process(tmp_path):
    """mpiexec -n 2: batches of 5 rows split 2 + 3, the gradient clipped after the all-reduce (its norm is the
    whole batch's): every rank ends with the one-process weights and history."""
    script = _load_script("stream_clip")
    assert_ok(launch(2, "stream_clip.py", str(tmp_path)))
    reference = script.run()
    _assert_matches_reference(_rank_results(tmp_path, "stream", 2), reference, "float64")


@pytest.mark.parametrize("loss", [xn.losses.SoftmaxCrossEntropy(-1, 0.2, weight=np.linspace(0.2, 3.0, V)),
                                  xn.losses.SoftmaxCrossEntropy(-1, label_smoothing=0.3)],
                         ids=["weight-and-smoothing", "smoothing"])
def test_perplexity_is_exp_of_the_plain_mean_nll_under_class_weights_and_smoothing(rng, loss):
    """The loss logged is the weighted, smoothed one, but perplexity is exp of the mean negative
    log-likelihood per counted token (torchmetrics' Perplexity, the book's eval_perplexity): torch's
    cross_entropy without weight or smoothing, on a trained model that lr=0 then keeps as it is."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    x, y = rng.integers(0, V, (12, T)), np.where(rng.random((12, T)) < 0.2, -1, rng.integers(0, V, (12, T)))
    xv, yv = rng.integers(0, V, (6, T)), rng.integers(0, V, (6, T))
    model = lm()
    xn.train(model, (x, y), loss=loss, optimizer=xn.optim.SGD(2.0), epochs=10, batch_size=4, progress=False)
    history = xn.train(model, (x, y), loss=loss, optimizer=xn.optim.SGD(0.0), epochs=1, batch_size=4,
                       validation=(xv, yv), progress=False)

    def nll(xs, ys):
        model.reset_state()
        scores = torch.from_numpy(xn.to_numpy(model.forward(xs, train=False)))
        return float(torch.nn.functional.cross_entropy(scores.permute(0, 2, 1), torch.from_numpy(ys),
                                                       ignore_index=-1))

    logs = history.epochs[0]
    assert logs["train_perplexity"] == pytest.approx(math.exp(nll(x, y)), rel=1e-10)
    assert logs["val_perplexity"] == pytest.approx(math.exp(nll(xv, yv)), rel=1e-10)
    assert xn.evaluate(model, (xv, yv), loss=loss)["perplexity"] == pytest.approx(logs["val_perplexity"], rel=1e-12)
    assert logs["train_perplexity"] != pytest.approx(math.exp(logs["train_loss"]), rel=1e-3)  # the loss differs
