"""``xn.train(..., accumulate_grad_batches=k)``: one update every k batches, on the gradient of the mean loss over
their samples (xpnet/training/accumulate.py). Tiny float64 models: the weights are compared with those of batches
k times larger, cut from the same shuffled order. Two ranks against one process: tests/test_distributed.py."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.training.graph import obstacle

from conftest import DEVICE_MAKERS, approx_or_none
from test_train import FakeComm

N = 30  # batches of 4: 7 of 4 rows and one of 2; in groups of 3: 12, 12 and 6 rows, the batches of 12


def data():
    x, t = xn.datasets.spiral(10, 3, seed=0)
    return x.astype(np.float64), t


def mlp():
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Linear(2, 6), xn.layers.Tanh(), xn.layers.Linear(6, 3)).to("cpu", "float64")


def fit(model, batch_size, epochs=2, optimizer=None, **kw):
    kw = {"loss": "cross_entropy", "epochs": epochs, "progress": False, "seed": 3, "blas_threads": 1, **kw}
    return xn.train(model, data(), optimizer=optimizer or xn.optim.Adam(0.05), batch_size=batch_size, **kw)


def weights(model):
    return {k: xn.to_numpy(v) for k, v in model.named_params().items()}


def assert_weights_close(a, b):
    for k, w in weights(b).items():
        np.testing.assert_allclose(weights(a)[k], w, rtol=1e-12, atol=1e-14, err_msg=k)


def epochs(history):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs]


@pytest.mark.parametrize("make, clip", [
    pytest.param(lambda: xn.optim.SGD(0.5, momentum=0.9), None, id="sgd"),
    pytest.param(lambda: xn.optim.Adam(0.05), None, id="adam"),
    pytest.param(lambda: xn.optim.SGD(0.5), 0.05, id="sgd-clip_grad_norm"),  # clipped after accumulating
])
def test_three_batches_of_4_accumulated_train_as_batches_of_12(make, clip):
    """8 batches of 4 per epoch: updates after batches 3, 6 and 8, the last group of 6 rows as the last batch of 12."""
    accumulated, large = mlp(), mlp()
    h = fit(accumulated, 4, optimizer=make(), clip_grad_norm=clip, accumulate_grad_batches=3)
    h_large = fit(large, 12, optimizer=make(), clip_grad_norm=clip)
    assert_weights_close(accumulated, large)
    for mine, theirs in zip(epochs(h), epochs(h_large), strict=True):  # every batch's loss, with the same weights
        assert mine == {k: approx_or_none(v, rel=1e-12) for k, v in theirs.items()}


def test_one_batch_per_update_is_the_default_path_bit_for_bit():
    one, default = mlp(), mlp()
    h_one, h_default = fit(one, 4, accumulate_grad_batches=1), fit(default, 4)
    for k, w in weights(default).items():
        np.testing.assert_array_equal(weights(one)[k], w, err_msg=k)
    assert epochs(h_one) == epochs(h_default)


@pytest.mark.parametrize("where", ["numpy", "strict-device1"])
def test_batches_weigh_by_the_targets_their_loss_counts(where):
    """Labels padded with ignore_index, a different count of real targets in every batch (counted on the device):
    two batches of 3 accumulated equal batches of 6, whose loss is the mean over all their real targets."""
    dev = DEVICE_MAKERS[where]()
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 7, (11, 4)), rng.integers(0, 7, (11, 4))
    y[:6, 1:] = -100
    y[7, :] = -100

    def run(batch_size, **kw):
        xn.init.seed(1)
        model = xn.Sequential(xn.layers.Embedding(7, 3), xn.layers.Linear(3, 7)).to("cpu", "float64")
        xn.train(model, (x, y), loss=xn.losses.SoftmaxCrossEntropy(ignore_index=-100), optimizer=xn.optim.SGD(1.0),
                 epochs=2, batch_size=batch_size, device=dev, progress=False, seed=1, **kw)
        return model

    assert_weights_close(run(3, accumulate_grad_batches=2), run(6))


def test_comm_all_reduces_once_per_update_with_the_groups_count():
    comm, alone = FakeComm(), mlp()
    spread = mlp()
    fit(spread, 4, comm=comm, accumulate_grad_batches=3)
    fit(alone, 4, accumulate_grad_batches=3)
    assert comm.counts == [12, 12, 6] * 2
    for k, w in weights(alone).items():
        np.testing.assert_array_equal(weights(spread)[k], w, err_msg=k)


class Updates(xn.callbacks.Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, batch):
        self.seen.append((batch, self.state.optimizer.lr))


def test_per_step_callbacks_and_schedules_count_updates():
    """LRScheduler(interval="step") steps after each update, 3 per epoch of 8 batches; scheduler= after each epoch."""
    model = mlp()
    opt = xn.optim.SGD(model, 0.8)
    opt.zero_grad()  # a PyTorch habit before the run: the accumulated update still follows several backward calls
    per_step = xn.callbacks.LRScheduler(xn.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5), interval="step")
    seen = Updates()
    h = fit(model, 4, optimizer=opt, callbacks=[seen, per_step], accumulate_grad_batches=3)
    assert [b for b, _ in seen.seen] == [0, 1, 2] * 2
    assert [lr for _, lr in seen.seen] == pytest.approx([0.8 * 0.5 ** i for i in range(6)])
    assert [e["lr"] for e in h.epochs] == pytest.approx([0.8 * 0.5 ** 3, 0.8 * 0.5 ** 6])
    model = mlp()
    opt = xn.optim.SGD(0.8)
    h = fit(model, 4, optimizer=opt, scheduler=xn.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
            accumulate_grad_batches=3)
    assert [e["lr"] for e in h.epochs] == pytest.approx([0.8, 0.4])  # each epoch's own, as without accumulating


def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path):
    path = tmp_path / "run.npz"
    fit(mlp(), 4, epochs=1, accumulate_grad_batches=3, callbacks=[xn.callbacks.ModelCheckpoint(path, full=True)])
    resumed, full = mlp(), mlp()
    h_resumed = fit(resumed, 4, resume_from=path, accumulate_grad_batches=3)
    h_full = fit(full, 4, accumulate_grad_batches=3)
    for k, w in weights(full).items():
        np.testing.assert_array_equal(weights(resumed)[k], w, err_msg=k)
    assert epochs(h_resumed) == epochs(h_full)
    with pytest.warns(UserWarning, match=r"was trained with accumulate_grad_batches=3, this run has "
                                         r"accumulate_grad_batches=1"):
        fit(mlp(), 4, resume_from=path)


def test_the_guard_names_the_batch_and_keeps_the_weights_it_ran_with():
    x, t = data()
    x[13] = np.nan  # batch 4 of 8 (unshuffled): the first of the second group
    model, before = mlp(), mlp()
    kw = {"loss": "cross_entropy", "batch_size": 4, "shuffle": False,
          "progress": False, "blas_threads": 1, "accumulate_grad_batches": 3}
    with pytest.raises(xn.XpnetTrainingError, match=r"epoch 1, batch 4 of 8; first non-finite value: the input batch\. "
                                                    r"The model keeps the weights that batch ran with"):
        xn.train(model, (x, t), optimizer=xn.optim.SGD(0.5), epochs=1, **kw)
    xn.train(before, (x[:12], t[:12]), optimizer=xn.optim.SGD(0.5), epochs=1, **kw)  # the first group's update alone
    for k, w in weights(before).items():
        np.testing.assert_array_equal(weights(model)[k], w, err_msg=k)


def test_a_token_stream_accumulates_as_a_loop_of_ones_own():
    """Truncated BPTT: the state carries on from batch to batch; each group of 2 updates on the mean of their
    gradients, as a PyTorch loop dividing its loss by 2; the epoch's 5th batch updates alone."""
    ids = np.random.default_rng(2).integers(0, 9, 53)
    stream = xn.datasets.TokenStream(ids, 2, 5)
    assert len(stream) == 5

    def model():
        xn.init.seed(4)
        return xn.book.rnnlm(9, 4, 5, dtype="float64")

    trained = model()
    xn.train(trained, stream, loss="cross_entropy", optimizer=xn.optim.SGD(0.5), epochs=1, progress=False,
             accumulate_grad_batches=2)
    by_hand, loss, opt = model(), xn.losses.SoftmaxCrossEntropy(), xn.optim.SGD(0.5)
    by_hand.reset_state()
    summed, n = {}, 0
    for i, (xb, tb) in enumerate(stream.epoch(0)):
        loss.forward(by_hand.forward(xb, train=True), tb)
        by_hand.backward(loss.backward())
        summed = {k: summed.get(k, 0) + g for k, g in by_hand.named_grads().items()}
        n += 1
        if n == 2 or i == len(stream) - 1:
            for name, layer in by_hand.named_modules().items():
                for key in layer.grads:
                    layer.grads[key] = summed[f"{name}.{key}" if name else key] / n
            opt.step(by_hand)
            summed, n = {}, 0
    assert_weights_close(trained, by_hand)


@pytest.mark.parametrize("bad", [0, -2, True, 2.0, "2", None])
def test_bad_values_are_refused_naming_the_argument(bad):
    with pytest.raises(ValueError, match=rf"^train: accumulate_grad_batches must be an int >= 1, got {bad!r}$"):
        fit(mlp(), 4, accumulate_grad_batches=bad)


def test_graph_capture_is_refused_with_accumulation_and_a_guess_is_told_the_name():
    with pytest.raises(ValueError, match=r"^train: graph=True with accumulate_grad_batches=2: a captured step "
                                         r"launches one forward, backward and update per batch, .*pass graph=None"):
        fit(mlp(), 4, accumulate_grad_batches=2, graph=True)
    batches = xn.datasets.BatchIterator(*data(), batch_size=4)
    why = obstacle(mlp(), xn.losses.SoftmaxCrossEntropy(), xn.optim.SGD(0.1), batches, xn.device("cpu"), accumulate=2)
    assert why.startswith("accumulate_grad_batches=2: a captured step launches one forward, backward and update")
    with pytest.raises(TypeError, match=r"'gradient_accumulation_steps': accumulate_grad_batches=k \(PyTorch "
                                        r"Lightning's name\)"):
        fit(mlp(), 4, gradient_accumulation_steps=2)


def test_a_float16_models_group_weighs_token_counts_past_float16s_largest_number():
    """Counts of targets counted on the device (labels with ignore_index) pass 65504 within a group: each batch
    keeps its share, where the counts cast to float16 made the later batches weigh nothing."""
    from xpnet.training.accumulate import GradientMean
    model = xn.Sequential(xn.layers.Linear(2, 3)).to("cpu", "float16")
    group = GradientMean(model, every=3, batches=3)
    for value, count in ((1.0, 40000), (2.0, 40000), (6.0, 20000)):
        model[0].grads.update({k: np.full(p.shape, value, np.float16) for k, p in model[0].params.items()})
        group.add(np.asarray(count))
    assert int(group.finish()) == 100000
    np.testing.assert_allclose(model[0].grads["b"], np.full(3, (40000 + 80000 + 120000) / 100000), rtol=2e-3)
