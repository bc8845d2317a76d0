"""Sequence models in the loops that cut arrays into batches: ``model.predict``, ``xn.evaluate`` and
``xn.train`` (with its validation) take each row of an array as a sequence of its own."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import GRU, LSTM

V, D, H, T = 7, 4, 5, 6


def stateful_model():
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Embedding(V, D), LSTM(D, H, stateful=True), GRU(H, H, stateful=True),
                         xn.layers.Linear(H, V))


@pytest.mark.parametrize("batch_size", [None, 1, 2, 3, 4])
def test_predict_takes_each_row_alone_and_keeps_the_carried_state(rng, batch_size):
    """A stateful layer carried its state through predict: a second call gave other outputs, a batch
    continued the rows of the batch before, and batch_size=3 on 4 rows failed on the state's row count.
    Each batch starts from zeros; the state set before the call is there after it."""
    model = stateful_model()
    ids = rng.integers(0, V, (4, T))
    expected = model.forward(ids, train=False)  # every row from zeros
    h0 = rng.standard_normal((5, H)).astype("float32")
    model[1].set_state(h0, h0 + 1)
    model[2].set_state(h0)
    for _ in range(2):
        np.testing.assert_allclose(model.predict(ids, batch_size=batch_size), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model[1].h, h0)
    np.testing.assert_array_equal(model[1].c, h0 + 1)
    np.testing.assert_array_equal(model[2].h, h0)


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_evaluate_and_validation_take_rows_alone_and_keep_the_carried_state(rng, batch_size):
    """xn.evaluate twice on the same arrays differed (the state ran on from the first call). Each batch
    starts from zeros, whatever batch_size, the same in xn.train's validation figures, and the carried
    state is the same after."""
    model = stateful_model()
    ids, t = rng.integers(0, V, (8, T)), rng.integers(0, V, (8, T))
    expected = float(xn.losses.SoftmaxCrossEntropy().forward(model.forward(ids, train=False), t))
    h0 = rng.standard_normal((5, H)).astype("float32")
    model[1].set_state(h0)
    first = xn.evaluate(model, (ids, t), loss="cross_entropy", batch_size=batch_size)["loss"]
    assert xn.evaluate(model, (ids, t), loss="cross_entropy", batch_size=batch_size)["loss"] == first
    assert first == pytest.approx(expected, rel=1e-5)
    np.testing.assert_array_equal(model[1].h, h0)
    trained = stateful_model()
    history = xn.train(trained, (ids, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=1,
                       batch_size=8, validation=(ids, t), progress=False)
    for layer in (trained[1], trained[2]):
        layer.reset_state()
    after = float(xn.losses.SoftmaxCrossEntropy().forward(trained.forward(ids, train=False), t))
    assert history.epochs[0]["val_loss"] == pytest.approx(after, rel=1e-5)


def time_first_model():
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Embedding(V, D), LSTM(D, H, batch_first=False), xn.layers.Linear(H, V))


def test_loops_that_would_cut_a_time_first_model_along_time_refuse_it_naming_the_layer(rng):
    """A model whose LSTM takes (T, N, ...) (batch_first=False) was cut into batches of time steps, and
    shuffled along time by xn.train, silently. Where a loop would cut axis 0 it now refuses, naming the
    layer, the axis and what to do; one call that cuts nothing still runs it."""
    model = time_first_model()
    ids, t = rng.integers(0, V, (T, 3)), rng.integers(0, V, (T, 3))  # (T, N), as the layer was told
    full = model.forward(ids, train=False)
    np.testing.assert_array_equal(model.predict(ids), full)
    np.testing.assert_array_equal(model.predict(ids, batch_size=T), full)
    loss = xn.losses.SoftmaxCrossEntropy()
    assert xn.evaluate(model, (ids, t), loss=loss)["loss"] == pytest.approx(float(loss.forward(full, t)), rel=1e-6)
    says = (r"cuts the data into batches along axis 0, the samples, but layer '1' \(LSTM\) takes time first "
            r"\(batch_first=False, input \(T, N, \.\.\.\)\), so its batches would be cut {}along time\. Build the "
            r"recurrent layers with batch_first=True and pass \(N, T, \.\.\.\) data")
    with pytest.raises(ValueError, match=r"Sequential\.predict\(batch_size=2\) " + says.format("")):
        model.predict(ids, batch_size=2)
    with pytest.raises(ValueError, match="xn.evaluate " + says.format("")):
        xn.evaluate(model, (ids, t), loss=loss, batch_size=2)
    with pytest.raises(ValueError, match="xn.train " + says.format("and shuffled ")):
        xn.train(model, (ids, t), loss=loss, optimizer="sgd", epochs=1, batch_size=2, progress=False)
    with pytest.raises(ValueError, match="xn.train " + says.format("and shuffled ")):
        xn.train(model, (ids, t), loss=loss, optimizer="sgd", epochs=1, batch_size=T, progress=False)
    np.testing.assert_array_equal(model.predict(ids), full)  # nothing trained


@pytest.mark.parametrize("batch_size", [1, 2, 4, 8])
def test_loss_figures_with_ignored_labels_are_the_mean_over_real_targets_whatever_the_batches(rng, batch_size):
    """xn.evaluate weighed each batch's mean by its rows, not by its targets that are not ignore_index:
    with padded rows the loss and perplexity moved with batch_size (4.32 in one batch, 2.53 in four).
    evaluate, train's validation and its epoch's train_loss are now the mean over every real target."""
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Embedding(V, D), LSTM(D, H), xn.layers.Linear(H, V))
    model[2].params["b"][...] = [5] + [0] * (V - 1)  # predicts class 0 everywhere
    x, t = rng.integers(1, V, (8, T)), rng.integers(1, V, (8, T))  # rows 0..3: T wrong targets each
    t[4:, 0], t[4:, 1:] = 0, -100  # rows 4..7: one right target each, then padding
    loss = xn.losses.SoftmaxCrossEntropy()
    expected = float(loss.forward(model.predict(x), t))
    result = xn.evaluate(model, (x, t), loss=loss, batch_size=batch_size)
    assert result["loss"] == pytest.approx(expected, rel=1e-6)
    assert result["perplexity"] == pytest.approx(np.exp(expected), rel=1e-6)
    history = xn.train(model, (x, t), loss=loss, optimizer=xn.optim.SGD(1e-9), epochs=1, batch_size=batch_size,
                       validation=(x, t), progress=False)
    assert history.epochs[0]["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert history.epochs[0]["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_every_label_ignored_gives_a_zero_loss_not_nan(rng):
    """Summed over batches, no target left to divide by: 0, as the loss itself gives for such a batch."""
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Embedding(V, D), LSTM(D, H), xn.layers.Linear(H, V))
    x, t = rng.integers(0, V, (4, T)), np.full((4, T), -100)
    assert xn.evaluate(model, (x, t), loss="cross_entropy", batch_size=3)["loss"] == 0.0


@pytest.mark.parametrize("batch_size", [3, 8])
def test_train_over_arrays_starts_each_batch_of_a_stateful_model_from_zeros(rng, batch_size):
    """xn.train over (N, T) arrays carried a stateful layer's state from one shuffled batch of independent
    rows to the next, and a smaller last batch failed ("the state holds 8 sequences but the input has 3").
    Each batch starts from zeros: the weights are those of the same model without carried state, and the
    state set before training is there after it."""
    x, t = rng.integers(0, V, (19, T)), rng.integers(0, V, (19, T))
    trained = []
    for stateful in (True, False):
        xn.init.seed(0)
        model = xn.Sequential(xn.layers.Embedding(V, D), LSTM(D, H, stateful=stateful), xn.layers.Linear(H, V))
        model = model.to("cpu", "float64")
        h0 = np.ones((2, H))
        if stateful:
            model[1].set_state(h0, h0)
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.5), epochs=2,
                 batch_size=batch_size, progress=False)
        trained.append({k: xn.to_numpy(v) for k, v in model.named_params().items()})
        if stateful:
            np.testing.assert_array_equal(model[1].h, h0)
    for k, v in trained[1].items():
        np.testing.assert_allclose(trained[0][k], v, rtol=1e-12, atol=1e-12, err_msg=k)


class CountSpy(xn.losses.SoftmaxCrossEntropy):
    """Cross-entropy that records what each mean_count gave the loops."""

    def __init__(self):
        super().__init__()
        self.counts = []

    def mean_count(self):
        count = super().mean_count()
        self.counts.append(count)
        return count


@pytest.mark.parametrize("padded", [False, True])
def test_loss_counts_stay_on_the_host_unless_a_label_is_ignored(rng, padded):
    """Weighing each batch by its real targets added device work to every step (a count_nonzero over the
    labels, an astype and an add): a kernel launch each on a GPU, even where no label is ignore_index.
    Where none is (the run checks the labels once) every count is a Python int, in training, validation
    and evaluate; padded labels keep the exact count, on the device."""
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Embedding(V, D), LSTM(D, H), xn.layers.Linear(H, V))
    x, t = rng.integers(0, V, (10, T)), rng.integers(0, V, (10, T))
    if padded:
        t[::2, 3:] = -100
    loss = CountSpy()
    history = xn.train(model, (x, t), loss=loss, optimizer=xn.optim.SGD(0.1), epochs=2, batch_size=4,
                       validation=(x, t), progress=False)
    result = xn.evaluate(model, (x, t), loss=loss, batch_size=3)
    assert len(loss.counts) == 2 * (3 + 1) + 4
    if padded:
        assert not any(isinstance(c, int) for c in loss.counts)
    else:
        assert all(isinstance(c, int) for c in loss.counts), loss.counts
        assert sum(loss.counts[-4:]) == t.size
    expected = float(xn.losses.SoftmaxCrossEntropy().forward(model.predict(x), t))
    assert result["loss"] == pytest.approx(expected, rel=1e-6)
    assert history.epochs[-1]["val_loss"] == pytest.approx(expected, rel=1e-6)
