"""xn.train called again on the same model goes on to new batch orders, as PyTorch's, Keras' and the book's loops
reshuffle every epoch: a loop of one-epoch calls trains as one call of as many epochs (batches, Dropout masks,
transform draws), a checkpoint of a later call resumes into a fresh model exactly, and a model built anew
starts again from the seed's first order."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.training.loop import epochs_trained

L = xn.layers


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((230, 12)).astype(np.float32)
    return x, (x[:, :4].sum(axis=1) > 0).astype(np.int64) + 2 * (x[:, 4] > 0)


def _model():
    xn.init.seed(0)
    return xn.Sequential(L.Linear(12, 16), L.ReLU(), L.Dropout(0.3), L.Linear(16, 4))


def _train(model, optimizer, epochs, **kwargs):
    return xn.train(model, _data(), loss="cross_entropy", optimizer=optimizer, epochs=epochs, batch_size=32,
                    progress=False, blas_threads=1, **kwargs)


def _same_weights(a, b):
    for name, value in a.named_params().items():
        np.testing.assert_array_equal(xn.to_numpy(value), xn.to_numpy(b.named_params()[name]), err_msg=name)


def test_a_loop_of_one_epoch_calls_trains_as_one_call():
    """Adam's state lives in the optimizer passed each time; Dropout's generator in the layer."""
    looped, looped_opt = _model(), xn.optim.Adam(0.01)
    losses = [_train(looped, looped_opt, 1).epochs[0]["train_loss"] for _ in range(3)]
    once = _model()
    history = _train(once, xn.optim.Adam(0.01), 3)
    _same_weights(looped, once)
    assert losses == [e["train_loss"] for e in history.epochs]
    assert epochs_trained(looped) == epochs_trained(once) == 3


def test_each_call_draws_a_new_order():
    """A second call's transform sees epoch 2, and its permutation is the seed's second, not the first again."""
    model, seen = _model(), []

    def transform(xb, epoch, step):
        seen.append((epoch, step))
        return xb

    for _ in range(2):
        _train(model, "sgd", 1, transform=transform)
    assert [e for e, s in seen if s == 0] == [1, 2]
    perms = [xn.datasets.BatchIterator(np.arange(10), batch_size=10, seed=0, epoch_offset=k).permutation(1)
             for k in (0, 1)]
    assert not np.array_equal(*perms)
    np.testing.assert_array_equal(perms[1], xn.datasets.BatchIterator(np.arange(10), batch_size=10).permutation(2))


def test_a_model_built_anew_starts_from_the_first_order():
    first, again = _model(), _model()
    _train(first, "sgd", 1)
    _train(again, "sgd", 1)
    _same_weights(first, again)


def test_a_later_calls_checkpoint_resumes_into_a_fresh_model(tmp_path):
    """The checkpoint keeps the epochs of the calls before: a fresh model resumed from it (epoch 1 of a second
    call) ends where the uninterrupted second call ends."""
    path = tmp_path / "ckpt.npz"
    interrupted = _model()
    _train(interrupted, "momentum", 1)
    _train(interrupted, "momentum", 1, callbacks=[xn.callbacks.ModelCheckpoint(path, monitor="train_loss",
                                                                               full=True)])
    uninterrupted = _model()
    _train(uninterrupted, "momentum", 1)
    _train(uninterrupted, "momentum", 2)
    resumed = _model()
    _train(resumed, "momentum", 2, resume_from=path)
    _same_weights(resumed, uninterrupted)
    assert epochs_trained(resumed) == 3


def test_epoch_offset_is_checked():
    with pytest.raises(ValueError, match="BatchIterator: epoch_offset"):
        xn.datasets.BatchIterator(np.arange(4), batch_size=2, epoch_offset=-1)
