"""pytorch/examples' word_language_model/generate.py, fast_neural_style's stylize() and mnist/main.py, ported to
xpnet as a PyTorch user writes them first, each run next to the same program in torch, float64, the same weights;
and PyTorch's tensor methods in a backward written out (``dy.sum(dim=1, keepdim=True)``, ``dy.flatten(1)``), which
now say NumPy's spelling as they do in a forward. No downloads: random ids for Wikitext-2, a random image for the
content picture, random (N, 1, 28, 28) images for MNIST."""

import io
import re

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn

from test_pytorch_ports_distill import TransformerNet, _torch_fast_neural_style  # the example's net, shrunk
from test_pytorch_ports_examples import _RNNModel, _torch_rnn_model  # word_language_model/model.py's RNNModel


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


# --- PyTorch's tensor methods in a backward written out -----------------------------------------------------------

class _Head(xn.Model):
    """A model whose backward holds one PyTorch tensor method, picked by ``line``, as a porter first writes it."""

    def __init__(self, line):
        super().__init__()
        self.fc, self.line = nn.Linear(3, 2, dtype="float64"), line

    def forward(self, x, train=True):
        return self.fc(x)

    def backward(self, dy):
        if self.line == "sum":
            dy = dy - dy.sum(dim=1, keepdim=True) / dy.shape[1]
        elif self.line == "var":
            dy = dy / dy.var(unbiased=False)
        elif self.line == "flatten":
            dy = dy.flatten(1)
        elif self.line == "clamp":
            dy = dy.clamp(min=0)
        elif self.line == "view":
            dy = dy.view(-1, 2)
        else:
            dy = self._centred(dy)
        return self.fc.backward(dy)

    def _centred(self, dy):
        return dy - dy.mean(dim=0)


class _Centre(nn.Layer):
    """A layer of one's own: y = x - mean(x) over the features; its backward as PyTorch's reduction reads."""

    def forward(self, x, train=True):
        return x - x.mean(axis=1, keepdims=True)

    def backward(self, dy):
        return dy - dy.mean(dim=1, keepdim=True)


class _Centred(xn.Model):
    def __init__(self):
        super().__init__()
        self.centre = _Centre()

    def forward(self, x, train=True):
        return self.centre(x)

    def backward(self, dy):
        return self.centre.backward(dy)


@pytest.mark.parametrize("line, error, said", [
    ("sum", TypeError, r"'dim' \(line \d+: dy = dy - dy\.sum\(dim=1, keepdim=True\) / dy\.shape\[1\]\): NumPy's "
                       r"reductions take axis=, keepdims= and ddof=.*axis= for dim=, keepdims= for keepdim="),
    ("var", TypeError, r"'unbiased' \(line \d+: .*\): NumPy's reductions .*ddof=1 for unbiased=True"),
    ("flatten", TypeError, r"order must be str, not int \(line \d+: dy = dy\.flatten\(1\)\): NumPy's "
                           r"x\.flatten\(order\) flattens every axis.*x\.reshape\(x\.shape\[0\], -1\)"),
    ("clamp", AttributeError, r"no attribute 'clamp' \(line \d+: dy = dy\.clamp\(min=0\)\): NumPy's arrays have no "
                              r"x\.clamp\(\), PyTorch's.*np\.clip\(x, a, b\)"),
    ("view", ValueError, r"\(line \d+: dy = dy\.view\(-1, 2\)\): NumPy's x\.view\(\.\.\.\) takes a dtype.*write "
                        r"x\.reshape\(shape\)"),
    ("method", TypeError, r"_Head\._centred: .*'dim' \(line \d+: return dy - dy\.mean\(dim=0\)\): NumPy's reductions"),
], ids=["sum", "var", "flatten", "clamp", "view", "method"])
def test_pytorchs_tensor_methods_in_a_backward_written_out_say_numpys_spelling(line, error, said):
    """``dy.sum(dim=1, keepdim=True)``, ``dy.var(unbiased=False)``, ``dy.flatten(1)``, ``dy.clamp(min=0)`` and
    ``dy.view(-1, 2)`` in a model's backward (or in a method of the model it calls) gave NumPy's bare "_sum() got an
    unexpected keyword argument 'dim'", "order must be str, not int" or "no attribute 'clamp'"; a forward's line was
    already answered with NumPy's spelling, a backward's now is too, naming the model, the method and the line."""
    model = _Head(line)
    y = model(np.ones((4, 3)))
    prefix = "" if line == "method" else r"_Head\.backward: "
    with pytest.raises(error, match=r"^" + prefix + r".*" + said):
        model.backward(np.ones_like(y))


def test_a_layer_of_ones_owns_backward_says_numpys_spelling_alone_and_inside_a_model():
    """A leaf layer of the user's whose backward reads ``dy.mean(dim=1, keepdim=True)``: called by itself or from a
    model's backward, the error names that layer's backward and its line (once, not again for the model's)."""
    said = (r"^_Centre\.backward: _mean\(\) got an unexpected keyword argument 'dim' \(line \d+: return dy - "
            r"dy\.mean\(dim=1, keepdim=True\)\): NumPy's reductions take axis=")
    layer = _Centre()
    layer(np.ones((2, 3)))
    with pytest.raises(TypeError, match=said):
        layer.backward(np.ones((2, 3)))
    model = _Centred()
    model(np.ones((2, 3)))
    with pytest.raises(TypeError, match=said) as caught:
        model.backward(np.ones((2, 3)))
    assert str(caught.value).count("NumPy's reductions") == 1


class _OwnError(xn.Model):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2, dtype="float64")

    def forward(self, x, train=True):
        return self.fc(x)

    def backward(self, dy):
        return self.fc.backward(dy[:, :1])


def test_other_errors_of_a_backward_written_out_pass_unchanged():
    """An error that is no PyTorch tensor method's (here xpnet's own check of dy's shape) comes as it was."""
    model = _OwnError()
    y = model(np.ones((4, 3)))
    with pytest.raises(ValueError) as caught:
        model.backward(np.ones_like(y))
    assert "NumPy's" not in str(caught.value) and "line" not in str(caught.value)
