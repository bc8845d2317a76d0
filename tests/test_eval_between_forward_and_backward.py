"""An evaluation-mode forward made by the mode between a training forward and its backward (a validation line
within a step): ``out = model(x)``, then ``model.eval(); model(x_val); model.train()``, then ``model.backward(dy)``:
the backward serves the training forward, as PyTorch's autograd serves the graph that the first forward saved (it
served the evaluated batch, silently); left in ``eval()`` it serves the evaluation forward (a saliency map). A
``train=False`` given by the caller (``model.forward(x, train=False)``, ``model(x, train=False)``, the book's
``train_flg=False``) keeps the book's rule: the backward serves the last forward."""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L

F64 = "float64"


class Twice(xn.Model):
    """PyTorch's way: one ReLU object for two uses, a BatchNorm between, the backward written out."""

    def __init__(self):
        super().__init__()
        self.fc1, self.bn, self.fc2 = L.Linear(3, 4, dtype=F64), L.BatchNorm(4, dtype=F64), L.Linear(4, 2, dtype=F64)
        self.relu = L.ReLU()

    def forward(self, x, train=True):
        return self.fc2(self.relu(self.bn(self.relu(self.fc1(x)))))

    def backward(self, dy):
        return self.fc1.backward(self.relu.backward(self.bn.backward(self.relu.backward(self.fc2.backward(dy)))))


def _sequential():
    return xn.Sequential(L.Linear(3, 4, dtype=F64), L.Residual(xn.Sequential(L.BatchNorm(4, dtype=F64), L.Tanh())),
                         L.ReLU(), L.Linear(4, 2, dtype=F64))


def _look(model, x_val, no_grad):
    with xn.no_grad() if no_grad else contextlib.nullcontext():  # PyTorch's usual validation, or without it
        model.eval()
        model(x_val)
    model.train()


def _pair(net):
    """Our ``net()`` with a torch twin's weights, in float64; the twin's forward; the names of ours for its parts."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    torch.manual_seed(0)
    theirs = torch.nn.ModuleDict({"fc1": torch.nn.Linear(3, 4), "bn": torch.nn.BatchNorm1d(4),
                                  "fc2": torch.nn.Linear(4, 2)}).double()
    ours = net()
    twice = isinstance(ours, Twice)
    names = {"fc1": "fc1", "bn": "bn", "fc2": "fc2"} if twice else {"0": "fc1", "1.body.0": "bn", "3": "fc2"}
    xn.load_torch_state_dict(ours, {f"{o}.{k}": v for o, t in names.items()
                                    for k, v in theirs[t].state_dict().items()})

    def torch_forward(xt):
        h = theirs["fc1"](xt)
        h = torch.relu(theirs["bn"](torch.relu(h))) if twice else torch.relu(h + torch.tanh(theirs["bn"](h)))
        return theirs["fc2"](h)

    return torch, ours, theirs, torch_forward, names


def _same_grads(ours, theirs, names):
    grads = ours.named_grads()
    for o, t in names.items():
        weight = theirs[t].weight.grad.numpy()
        np.testing.assert_allclose(grads[f"{o}.gamma" if t == "bn" else f"{o}.W"], weight if t == "bn" else weight.T,
                                   rtol=1e-10, err_msg=o)
    bn = ours.bn if isinstance(ours, Twice) else ours[1].body[0]
    np.testing.assert_allclose(xn.to_numpy(bn.running_mean), theirs["bn"].running_mean.numpy(), rtol=1e-12)


@pytest.mark.parametrize("no_grad", [False, True], ids=["eval_then_train", "no_grad"])
@pytest.mark.parametrize("net", [Twice, _sequential], ids=["model", "sequential"])
def test_the_backward_after_an_evaluation_forward_serves_the_training_forward_as_pytorch(net, no_grad):
    torch, ours, theirs, torch_forward, names = _pair(net)
    rng = np.random.default_rng(0)
    x, x_val, dy = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    out = torch_forward(torch.tensor(x))
    theirs.eval()
    with torch.no_grad():
        torch_forward(torch.tensor(x_val))
    theirs.train()
    out.backward(torch.tensor(dy))

    ours(x)
    _look(ours, x_val, no_grad)
    ours.backward(dy)
    _same_grads(ours, theirs, names)


@pytest.mark.parametrize("how", ["forward", "call", "after_a_look"])
@pytest.mark.parametrize("net", [Twice, _sequential], ids=["model", "sequential"])
def test_train_false_given_after_a_training_forward_keeps_the_books_rule_the_last_forward_is_served(net, how):
    """``train=False`` given (the book's ``train_flg=False``), then ``backward``, after a training forward whose
    backward never came: the gradient of the evaluation function at the last input, as PyTorch's
    ``model.eval(); model(x).backward(dy)``; the running statistics moved by the training forwards only."""
    torch, ours, theirs, torch_forward, names = _pair(net)
    rng = np.random.default_rng(5)
    x, x_val, dy = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    torch_forward(torch.tensor(x))
    theirs.eval()
    xt = torch.tensor(x_val, requires_grad=True)
    torch_forward(xt).backward(torch.tensor(dy))

    ours(x)
    if how == "after_a_look":  # what the look left pending is the book's rule's from here on
        _look(ours, x, no_grad=False)
    if how == "forward":
        ours.forward(x_val, train=False)
    else:
        ours(x_val, train=False)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=1e-10)
    _same_grads(ours, theirs, names)


def _lstm_model():
    return xn.Sequential(L.LSTM(3, 4, batch_first=True, stateful=True, dtype=F64), L.Linear(4, 2, dtype=F64))


@pytest.mark.parametrize("net", [
    lambda: xn.Sequential(L.Linear(3, 4, dtype=F64), L.Dropout(0.5), L.Linear(4, 2, dtype=F64)),
    _lstm_model,
    lambda: L.Linear(3, 2, dtype=F64),
], ids=["dropout", "stateful_lstm", "lone_layer"])
def test_a_look_between_leaves_the_step_as_without_it_and_a_saliency_map_after_eval_serves_its_forward(net):
    """Against the same model without the look (a Dropout's mask, a stateful LSTM's state for the next batch, a
    layer called by itself): the gradients and the next step's output equal; kept in eval(), the backward is the
    evaluated batch's."""
    rng = np.random.default_rng(1)
    shape = (2, 3, 3) if net is _lstm_model else (5, 3)
    x, x_val = rng.standard_normal(shape), rng.standard_normal(shape)
    plain = net()
    looked = copy.deepcopy(plain)
    dy = np.ones_like(plain(x))
    expected = plain.backward(dy)
    looked(x)
    looked.eval()
    looked(x_val)
    looked.train()
    np.testing.assert_array_equal(looked.backward(dy), expected)
    for k, g in plain.named_grads().items():
        np.testing.assert_array_equal(looked.named_grads()[k], g, err_msg=k)
    np.testing.assert_array_equal(looked(x), plain(x))  # the next training forward, from the same state
    saliency = copy.deepcopy(looked)
    saliency.eval()
    y = saliency(x_val)
    looked.eval()
    looked(x_val)
    np.testing.assert_array_equal(looked.backward(dy), saliency.backward(np.ones_like(y)))


def test_attention_weights_stay_the_evaluation_forwards_for_a_plot():
    att = L.Attention()
    rng = np.random.default_rng(2)
    hs_enc, hs_dec, val = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 2, 3)), rng.standard_normal((2, 4, 3))
    plain = copy.deepcopy(att)
    plain(hs_enc, hs_dec)
    expected = plain.backward(np.ones((2, 2, 3)))
    att(hs_enc, hs_dec)
    att.eval()
    weights = att(val, hs_dec)
    att.train()
    shown = att.attention_weights
    assert np.array_equal(att.backward(np.ones((2, 2, 3)))[0], expected[0])
    assert att.attention_weights is shown and weights.shape == (2, 2, 3)


def test_a_backward_written_out_layer_by_layer_after_a_look_serves_the_training_forward():
    """The book's ``for layer in reversed(layers): dout = layer.backward(dout)`` after a look."""
    rng = np.random.default_rng(3)
    plain = xn.Sequential(L.Linear(3, 4, dtype=F64), L.BatchNorm(4, dtype=F64), L.ReLU(), L.Linear(4, 2, dtype=F64))
    looked = copy.deepcopy(plain)
    x, x_val, dy = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    plain(x)
    expected = plain.backward(dy)
    looked(x)
    _look(looked, x_val, no_grad=False)
    for layer in reversed(list(looked)):
        dy = layer.backward(dy)
    np.testing.assert_array_equal(dy, expected)
    for k, g in plain.named_grads().items():
        np.testing.assert_array_equal(looked.named_grads()[k], g, err_msg=k)


@pytest.mark.parametrize("given", [False, True], ids=["eval_then_train", "train_false"])
def test_a_training_forward_after_a_look_counts_on_from_the_one_before(given):
    """``out1 = model(x1)``, a look, ``out2 = model(x2)``, one backward of both: refused as without the look (the
    look's forward had started the count again, and the backward served x2's call alone, silently)."""
    model, rng = _sequential(), np.random.default_rng(4)
    x1, x2, x_val = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    out1 = model(x1)
    if given:
        model.forward(x_val, train=False)
    else:
        _look(model, x_val, no_grad=False)
    out2 = model(x2)
    with pytest.raises(RuntimeError, match=r"^Sequential\.backward after model\(x1\), .*model\(x2\): .*serves "
                                           r"model\(x2\) alone"):
        model.backward(out1 - out2)
