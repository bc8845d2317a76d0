"""What the audits of test_clear_errors_corners.py left: the optimizer's name with its article, a gradient read
after zero_grad(), a float64 dy into a composite model's own backward, the unpacked call of a recurrent layer
given a packed sequence, and PyTorch's two LSTM biases loaded into one. Each gives one clear error (or warning)
naming the layer, model or function, what was expected and what came.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import Linear, ReLU

f32 = np.float32
X, T = xn.datasets.spiral(10, 3, seed=0)


def _mlp():
    xn.init.seed(0)
    return xn.Sequential(Linear(2, 8), ReLU(), Linear(8, 3))


# -- "a Adam": the optimizer's name with its article ---------------------------------------------------------------

def test_resume_from_another_optimizer_says_an_adam(tmp_path):
    path = tmp_path / "ck.npz"
    args = {"loss": "cross_entropy", "epochs": 1, "batch_size": 10, "progress": False}
    xn.train(_mlp(), (X, T), optimizer="adam", callbacks=[xn.callbacks.ModelCheckpoint(path, full=True)], **args)
    with pytest.raises(ValueError, match=r"holds the state of an Adam optimizer, got SGD; pass an Adam to continue"):
        xn.train(_mlp(), (X, T), optimizer="sgd", resume_from=path, **{**args, "epochs": 2})


# -- outputs, hidden = self.gru(packed, hidden) without return_state suggested batch_first=False -------------------

class _PackedEncoder(xn.Model):
    """The chatbot tutorial's EncoderRNN, its GRU built without return_state."""

    def __init__(self):
        super().__init__()
        self.gru = xn.layers.GRU(3, 4, bidirectional=True)

    def forward(self, x, lengths, hidden=None):
        packed = xn.layers.pack_padded_sequence(x, lengths)
        outputs, hidden = self.gru(packed, hidden)
        return xn.layers.pad_packed_sequence(outputs)[0]


def test_unpacking_a_packed_call_says_what_applies_to_packed_input():
    with pytest.raises(ValueError) as caught:
        _PackedEncoder()(np.zeros((5, 2, 3), f32), [5, 3])
    text = str(caught.value)
    assert text.startswith("_PackedEncoder.forward unpacks the output of self.gru(packed, ...)"), text
    assert "xn.layers.GRU(..., return_state=True)" in text and "batch_first does not matter here" in text, text
    assert "batch_first=False" not in text and "batch of 2" not in text, text


# -- layer.grads['b'] after zero_grad() was a bare KeyError: 'b' (PyTorch's p.grad is None there) ------------------

def test_a_gradient_read_after_zero_grad_says_why_it_is_missing():
    model, x = _mlp(), np.ones((4, 2), f32)
    opt = xn.optim.SGD(model.parameters(), lr=0.1)
    model.backward(np.ones_like(model(x)))
    layer = model.layers[0]
    assert layer.grads["b"].shape == (8,)
    opt.zero_grad()
    assert "b" not in layer.grads and layer.grads.get("b") is None and dict(layer.grads) == {}  # a dict's ways
    with pytest.raises(KeyError, match=r"^Linear.grads\['b'\]: no gradient for 'b': backward fills grads, and "
                                       r"zero_grad\(\) empties it \(PyTorch's p.grad is None then\).*run the backward "
                                       r"first, or read grads.get\('b'\)") as caught:
        layer.grads["b"]
    assert caught.value.args == ("b",)  # the key, as a dict's KeyError
    with pytest.raises(KeyError, match=r"^Linear.grads\['B'\]: Linear has no parameter 'B' \(its parameters: 'W', "
                                       r"'b'\); did you mean 'b'\?$"):
        layer.grads["B"]
    with pytest.raises(KeyError, match=r"^Linear.grads\['weight'\]: Linear has no parameter 'weight' .*; PyTorch's "
                                       r"'weight' is 'W' here: Linear.grads\['W'\] \(PyTorch's layout: its .T\)$"):
        layer.grads["weight"]
    model.backward(np.ones_like(model(x)))
    assert layer.grads["b"].shape == (8,)



def _zeros_of_an_empty_batch():
    """What ``xn.train`` gives a model for a batch of no rows (a rank without samples, an accumulated group of
    none): zeros, by ``guard.zero_grads``, the one function its three places call."""
    from xpnet.training.guard import zero_grads  # noqa: PLC0415 - the loop's own, not public

    model = _mlp()
    zero_grads(model)
    return model.layers[0]


def _backward_of(layer, *inputs):
    out = layer(*inputs)
    layer.backward(np.ones_like(out[0] if isinstance(out, tuple) else out))
    return layer


@pytest.mark.parametrize("kept_by", [
    lambda: _backward_of(xn.layers.MultiheadAttention(4, 2, batch_first=True), *[np.ones((2, 3, 4), f32)] * 3),
    lambda: _backward_of(xn.layers.WeightNorm(Linear(2, 3)), np.ones((4, 2), f32)),
    _zeros_of_an_empty_batch,
], ids=["MultiheadAttention.backward", "WeightNorm.backward", "train's zeros for an empty batch"])
def test_grads_rebound_by_a_backward_or_a_loop_still_say_why_a_key_is_missing(kept_by):
    """Each of these rebound grads to a plain dict (a bare ``KeyError: 'weight'``) until the next zero_grad()."""
    layer = kept_by()
    name = type(layer).__name__
    with pytest.raises(KeyError, match=rf"^{name}.grads\['weight'\]: {name} has no parameter 'weight' \(its "):
        layer.grads["weight"]


# -- a float64 dy into a float32 composite model's own backward made float64 gradients, refused only at opt.step ----

class _Net(xn.Model):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = Linear(3, 5), ReLU(), Linear(5, 2)

    def forward(self, x, train=True):
        return self.fc2(self.act(self.fc1(x)))

    def backward(self, dy):
        return self.fc1.backward(self.act.backward(self.fc2.backward(dy)))


def test_a_dy_of_another_dtype_is_refused_at_a_composite_models_own_backward():
    xn.init.seed(0)
    model, x = _Net(), np.ones((4, 3), f32)
    model(x)
    with pytest.raises(TypeError, match=r"^_Net.backward: dy is float64, but the last forward's output is float32: "
                                        r".*optimizer refuses; give dy in the output's dtype"):
        model.backward(np.ones((4, 2)))
    assert model.named_grads() == {}  # refused before any layer ran
    model.backward(np.ones((4, 2), f32))
    assert {g.dtype for g in model.named_grads().values()} == {np.dtype(f32)}
    model.to("cpu", dtype="float64")
    model(x.astype(np.float64))
    model.backward(np.ones((4, 2)))  # a float64 model takes its float64 dy


# -- PyTorch's two LSTM biases loaded into the default one train otherwise: said once, at the first step -----------

class _Tagger(xn.Model):
    def __init__(self, **kw):
        super().__init__()
        self.lstm, self.fc = xn.layers.LSTM(3, 4, num_layers=2, **kw), Linear(4, 2)

    def forward(self, x, train=True):
        return self.fc(self.lstm(x))

    def backward(self, dy):
        return self.lstm.backward(self.fc.backward(dy))


def _steps(model, state, n):
    """Load ``state`` into ``model``, predict, then ``n`` SGD steps; the warnings they gave."""
    x = np.ones((2, 5, 3), f32)
    opt = xn.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xn.load_torch_state_dict(model, state)
        model.predict(x)  # inference from PyTorch's weights is exact: nothing to say
        for _ in range(n):
            model.backward(np.ones_like(model(x)))
            opt.step()
    return caught


def test_pytorch_two_biases_summed_into_one_are_said_once_as_the_layer_first_trains():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    torch.manual_seed(0)
    torch_lstm, fc = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True), torch.nn.Linear(4, 2)
    state = {**{f"lstm.{k}": v for k, v in torch_lstm.state_dict().items()},  # both biases drawn, nonzero
             **{f"fc.{k}": v for k, v in fc.state_dict().items()}}
    assert _steps(_Tagger(), state, 0) == []
    caught = _steps(_Tagger(), state, 2)
    assert len(caught) == 1 and caught[0].category is UserWarning, [str(w.message) for w in caught]
    text = str(caught[0].message)
    assert text.startswith("SGD.step: 'lstm' (LSTM) holds PyTorch's two biases summed into one, b = bias_ih + "
                           "bias_hh"), text
    assert "this training is not" in text and "convention='pytorch'" in text, text
    assert caught[0].filename == __file__  # attributed to the caller's line
    assert _steps(_Tagger(convention="pytorch"), state, 1) == []
    ours = xn.torch_state_dict(_Tagger())  # xpnet's own export of one bias: bias_hh_l0 = 0
    assert _steps(_Tagger(), ours, 1) == []
