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
