"""Losses on probabilities and log-probabilities (BCELoss, NLLLoss, KLDivLoss) equal to PyTorch's, and the
refusal of a model whose last layer applies the activation its logits loss applies again."""

import warnings

import numpy as np
import pytest

import xpnet as xn
from conftest import DEVICE_MAKERS, DEVICES
from xpnet.losses import BCELoss, KLDivLoss, NLLLoss
from xpnet.testing import assert_placed

L = xn.layers


@pytest.mark.parametrize("last, loss, found", [
    (lambda: L.Sigmoid(), "bce", r"Sigmoid \(layer 1\) and the loss SigmoidCrossEntropy takes logits .* drop the "
                                 r"last layer.*xn.losses.BCELoss"),
    (lambda: L.Softmax(dim=1), "cross_entropy", r"Softmax \(layer 1\) and the loss SoftmaxCrossEntropy takes "
                                                r"logits .* drop the last layer"),
    (lambda: xn.Sequential(L.ReLU(), L.LogSoftmax(dim=-1)), "cross_entropy",
     r"LogSoftmax \(layer 1.1\) and the loss SoftmaxCrossEntropy takes logits .* drop the last layer.*"
     r"xn.losses.NLLLoss"),
    (lambda: L.Softmax(dim=1), "nll", r"Softmax \(layer 1\) and the loss NLLLoss takes log-probabilities, not "
                                      r"probabilities: .* make the last layer xn.layers.LogSoftmax")],
    ids=["sigmoid-bce", "softmax-cross_entropy", "nested-logsoftmax-cross_entropy", "softmax-nll"])
def test_a_model_ending_in_the_losses_activation_is_refused(last, loss, found):
    """The Keras habit (Dense(activation='softmax') with categorical cross-entropy, a Sigmoid with a BCE on
    logits) would apply the activation twice and train badly, silently: train and evaluate refuse it."""
    model = xn.Sequential(L.Linear(2, 3), last())
    x, y = np.zeros((4, 2), np.float32), np.array([0, 1, 1, 0])
    y = np.stack([y] * 3, axis=1) if loss == "bce" else y
    for who, call in (("train", lambda: xn.train(model, (x, y), loss=loss, optimizer="sgd", epochs=1, batch_size=2,
                                                 progress=False)),
                      ("evaluate", lambda: xn.evaluate(model, (x, y), loss=loss))):
        with pytest.raises(ValueError, match=rf"^{who}: the model ends in {found}"):
            call()


# ----------------------------------------------------------------------------------------
# NLLLoss, BCELoss, KLDivLoss against PyTorch in float64, value and dy
# ----------------------------------------------------------------------------------------

try:
    import torch
    F = torch.nn.functional
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed (pip install -e '.[backends]')")

# Every device but JAX (one case of its own below, JAX's first call of each op is slow).
ON = [p for p in DEVICES if p.id != "jax"]


@pytest.fixture(params=ON)
def place(request):
    return DEVICE_MAKERS[request.param]()


def _compare(loss, reference, y, t, dev, dout=0.7):
    """``loss`` on ``dev`` against PyTorch's ``reference(y, t)`` on the host: value and dy, for dout != 1."""
    value = loss.forward(xn.to_device(y, dev), xn.to_device(t, dev))
    dy = loss.backward(dout)
    assert_placed(value, dev, "float64")
    assert_placed(dy, dev, "float64")
    ty = torch.tensor(y, requires_grad=True)
    ref = reference(ty, torch.tensor(t))
    (ref * dout).backward()
    np.testing.assert_allclose(float(xn.to_numpy(value)), ref.item(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xn.to_numpy(dy), ty.grad.numpy(), rtol=1e-12, atol=1e-12)


def _log_probs(rng, shape):
    return np.asarray(torch.log_softmax(torch.tensor(rng.standard_normal(shape)), dim=1))


NLL = {"mean": {}, "sum": {"reduction": "sum"}, "weight-ignore": {"weight": np.array([0.5, 2.0, 1.0, 3.0]),
                                                                  "ignore_index": 2},
       "weight-sum": {"weight": np.array([0.5, 2.0, 1.0, 3.0]), "reduction": "sum"}}


@needs_torch
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5)], ids=["2d", "3d"])
@pytest.mark.parametrize("settings", list(NLL))
@needs_torch
def test_nll_loss_equals_pytorch(place, rng, settings, shape):
    """(N, C) and PyTorch's (N, C, d1): the weighted mean divides by the counted labels' weights."""
    kwargs = NLL[settings]
    y = _log_probs(rng, shape)
    t = rng.integers(0, 4, (shape[0], *shape[2:]))
    t.flat[0] = 2  # ignored where ignore_index=2
    theirs = {k: torch.tensor(v) if k == "weight" else v for k, v in kwargs.items()}
    _compare(NLLLoss(**kwargs), lambda a, b: F.nll_loss(a, b, **theirs), y, t, place)


@needs_torch
def test_bce_loss_equals_pytorch_with_probabilities_at_0_and_1(place, rng):
    """Each log floored at -100 (p of 0 or 1 against any target) and the gradient's 1e-12, as PyTorch's."""
    p, t = rng.uniform(size=(5, 3)), rng.uniform(size=(5, 3))
    p[0], t[0] = [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]
    p[1], t[1] = [1.0, 1e-50, 1 - 1e-17], [1.0, 0.5, 0.3]
    weight = rng.uniform(0.1, 2, (1, 3))
    for kwargs in ({}, {"reduction": "sum"}, {"weight": weight}):
        theirs = {k: torch.tensor(v) if k == "weight" else v for k, v in kwargs.items()}
        _compare(BCELoss(**kwargs), lambda a, b: F.binary_cross_entropy(a, b, **theirs), p, t, place)


@needs_torch
@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_loss_equals_pytorch(place, rng, reduction, log_target):
    """Targets of 0 count 0 (xlogy); 'mean' over every element, as PyTorch's (which warns, as xpnet)."""
    y, t = _log_probs(rng, (4, 5)), np.asarray(torch.softmax(torch.tensor(rng.standard_normal((4, 5))), dim=1))
    t[0, :2] = 0.0
    t = np.log(t + 1e-3) if log_target else t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's and xpnet's about 'mean'
        loss = KLDivLoss(reduction, log_target=log_target)
        _compare(loss, lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target), y, t, place)


@needs_torch
def test_on_jax(rng):
    dev = DEVICE_MAKERS["jax"]()
    y, t = _log_probs(rng, (3, 4, 2)), rng.integers(0, 4, (3, 2))
    _compare(NLLLoss(weight=np.array([1.0, 2.0, 0.5, 1.0])), lambda a, b: F.nll_loss(a, b, torch.tensor(
        [1.0, 2.0, 0.5, 1.0], dtype=torch.float64)), y, t, dev)
    p = rng.uniform(size=(3, 2))
    p[0, 0] = 0.0
    _compare(BCELoss(), F.binary_cross_entropy, p, rng.uniform(size=(3, 2)), dev)
    _compare(KLDivLoss("batchmean"), lambda a, b: F.kl_div(a, b, reduction="batchmean"), y[:, :, 0],
             np.exp(_log_probs(rng, (3, 4))), dev)


def test_kl_div_mean_warns_as_pytorch():
    with pytest.warns(UserWarning, match=r"^KLDivLoss: reduction='mean' divides by every element .* "
                                         r"reduction='batchmean'$"):
        KLDivLoss()


# ----------------------------------------------------------------------------------------
# xn.train and xn.evaluate with them
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("last, loss, logits_loss, targets", [
    (lambda: L.LogSoftmax(dim=1), "nll", "cross_entropy", "labels"),
    (lambda: L.LogSoftmax(dim=1), KLDivLoss("batchmean"), "cross_entropy", "one-hot"),
    (lambda: L.Sigmoid(), "bce_probs", "bce", "binary")], ids=["nll", "kl_div-batchmean", "bce_probs"])
def test_a_model_ending_in_its_activation_trains_as_the_logits_model(rng, last, loss, logits_loss, targets):
    """LogSoftmax + NLLLoss (or KLDivLoss on one-hot rows), Sigmoid + BCELoss: the same weights, losses and
    accuracies as the logits model with its logits loss, from the same init (the gradients are equal)."""
    x, labels = rng.standard_normal((24, 3)), rng.integers(0, 4, 24)
    y = {"labels": labels, "one-hot": np.eye(4)[labels], "binary": labels % 2}[targets]
    width = 1 if targets == "binary" else 4
    runs = []
    for ending, kind in ((True, loss), (False, logits_loss)):
        xn.init.seed(0)
        model = xn.Sequential(L.Linear(3, 8, dtype="float64"), L.Tanh(), L.Linear(8, width, dtype="float64"))
        if ending:
            model.append(last())
        history = xn.train(model, (x, y), loss=kind, optimizer=xn.optim.SGD(0.5), epochs=3, batch_size=8,
                           validation=(x, y), progress=False)
        runs.append((model, history, xn.evaluate(model, (x, y), loss=kind)))
    (model, history, result), (logits_model, logits_history, logits_result) = runs
    for k, w in logits_model.named_params().items():
        np.testing.assert_allclose(xn.to_numpy(model.named_params()[k]), xn.to_numpy(w), rtol=1e-9, atol=1e-12)
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose([e[key] for e in history.epochs], [e[key] for e in logits_history.epochs],
                                   rtol=1e-9)
    assert [e["train_accuracy"] for e in history.epochs] == [e["train_accuracy"] for e in logits_history.epochs]
    assert result["accuracy"] == logits_result["accuracy"] is not None


@pytest.mark.parametrize("name, kind", [("nll", NLLLoss), ("nll_loss", NLLLoss), ("bce_probs", BCELoss),
                                        ("kl_div", KLDivLoss)])
def test_losses_by_name(name, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KLDivLoss's 'mean'
        assert type(xn.losses.get(name)) is kind


@pytest.mark.parametrize("name, hint", [
    ("binary_cross_entropy", "PyTorch's F.binary_cross_entropy takes probabilities; xpnet's name for that is "
                             "loss='bce_probs'"),
    ("binary_crossentropy", "Keras' binary_crossentropy takes probabilities"),
    ("categorical_crossentropy", "drop the final Softmax")])
def test_names_that_take_probabilities_elsewhere_are_refused(name, hint):
    """'binary_cross_entropy' was SigmoidCrossEntropy (logits): a PyTorch or Keras user's probabilities."""
    with pytest.raises(ValueError, match=rf"^loss='{name}': .*{hint}"):
        xn.losses.get(name)


def test_wrong_inputs_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^NLLLoss: labels must be integer indices of shape \(2, 4\) for "
                                         r"log-probabilities \(2, 3, 4\), got \(2, 3\); the classes are on axis 1 .*"
                                         r"xp.permute_dims\(y, \(0, 2, 1\)\)$"):
        NLLLoss().forward(np.zeros((2, 3, 4)), np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match=r"^BCELoss: input probabilities must lie in \[0, 1\], got values in "
                                         r"\[-2, 0.5\]; on logits use SigmoidCrossEntropy \(loss='bce'\)$"):
        BCELoss().forward(np.array([[-2.0, 0.5]]), np.array([[0.0, 1.0]]))
    with pytest.raises(TypeError, match=r"^NLLLoss: the first argument is weight \(an array\), got 'sum'; pass "
                                        r"reduction='sum' by name$"):
        NLLLoss("sum")


def test_a_sequence_model_trained_with_nll_loss_logs_perplexity_as_cross_entropy(rng):
    """Conv1d then LogSoftmax(dim=1): log-probabilities (N, C, T), PyTorch's layout for NLLLoss, against
    labels (N, T) give train and val perplexity, exp of the mean loss, and xn.evaluate's "perplexity";
    (N, T, C) log-probabilities are refused, naming cross-entropy on the logits."""
    x, y = rng.standard_normal((12, 3, 6)), rng.integers(0, 5, (12, 6))
    model = xn.Sequential(L.Conv1d(3, 5, 3, padding=1, dtype="float64"), L.LogSoftmax(dim=1))
    history = xn.train(model, (x, y), loss="nll", optimizer="sgd", epochs=1, batch_size=4, validation=(x, y),
                       progress=False)
    epoch, result = history.epochs[-1], xn.evaluate(model, (x, y), loss="nll")
    assert epoch["train_perplexity"] == pytest.approx(np.exp(epoch["train_loss"]), rel=1e-12)
    assert epoch["val_perplexity"] == pytest.approx(np.exp(epoch["val_loss"]), rel=1e-12)
    assert result["perplexity"] == pytest.approx(np.exp(result["loss"]), rel=1e-12)
    time_first = xn.Sequential(L.Embedding(5, 4), L.Linear(4, 5), L.LogSoftmax(dim=-1))
    with pytest.raises(ValueError, match=r"^train data: NLLLoss on scores of shape \(N, 6, 5\) needs integer labels "
                                         r"of shape \(N, 5\), got \(12, 6\) of dtype int64; NLLLoss takes the classes "
                                         r"on axis 1, .* pass loss='cross_entropy' \(the same loss on the logits, "
                                         r"with perplexity\)$"):
        xn.train(time_first, (y, y), loss="nll", optimizer="sgd", epochs=1, batch_size=4, progress=False)
