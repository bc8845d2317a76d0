"""``layer(...)``: every ``__call__`` (a leaf's, a model's, and those of the layers taking more than one input) runs
forward in the layer's mode unless ``train`` is given, and refuses anything but True or False in train's place,
naming the layer's forward and its inputs (layers.uses.called)."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import (RNN, CosineSimilarity, EmbeddingBag, Linear, MaxUnpool2d, MultiheadAttention, ReLU,
                          ScaledDotProductAttention)


class _Net(xn.Model):
    def __init__(self):
        super().__init__()
        self.fc = Linear(3, 2)

    def forward(self, x, train=True):
        return self.fc(x)


def _cases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3)).astype("float32")
    seq = rng.standard_normal((2, 1, 4)).astype("float32")
    pooled, idx = xn.layers.MaxPool2d(2, return_indices=True)(rng.standard_normal((1, 1, 2, 2)).astype("float32"))
    return [
        ("ReLU", ReLU, (x,), "ReLU.forward(x, train)"),
        ("Model", _Net, (x,), "_Net.forward(x, train)"),
        ("RNN", lambda: RNN(3, 2), (x[:, None],), "RNN.forward(x, train)"),
        ("MultiheadAttention", lambda: MultiheadAttention(4, 1), (seq, seq, seq),
         "MultiheadAttention.forward(query, key, value, key_padding_mask,"),
        ("ScaledDotProductAttention", ScaledDotProductAttention, (seq, seq, seq),
         "ScaledDotProductAttention.forward(query, key, value, attn_mask, is_causal, train)"),
        ("EmbeddingBag", lambda: EmbeddingBag(5, 2), (np.array([[1, 2]]),),
         "EmbeddingBag.forward(input, offsets, train)"),
        ("MaxUnpool2d", lambda: MaxUnpool2d(2), (pooled, idx), "MaxUnpool2d.forward(x, indices, output_size, train)"),
        ("CosineSimilarity", CosineSimilarity, (x, x), "CosineSimilarity.forward(x1, x2, train)"),
    ]


CASES = _cases()


@pytest.mark.parametrize("make, xs, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_array_given_as_train_is_refused_naming_the_forward(make, xs, words):
    layer = make()
    with pytest.raises(TypeError, match=r"train must be True or False, got ndarray") as e:
        layer(*xs, train=np.zeros(2))
    assert words in str(e.value)


@pytest.mark.parametrize("make, xs, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_forward_runs_in_the_layers_mode_unless_train_is_given(make, xs, words, monkeypatch):
    layer = make()
    seen = []
    forward = layer.forward
    monkeypatch.setattr(layer, "forward", lambda *a, **k: seen.append(k["train"] if "train" in k else a[-1])
                        or forward(*a, **k))
    layer(*xs)
    layer.eval()
    layer(*xs)
    layer(*xs, train=True)
    layer.train()
    layer(*xs, train=False)
    assert seen == [True, False, True, False]
