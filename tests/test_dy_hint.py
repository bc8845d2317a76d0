"""A gradient of the wrong shape given to a layer's backward is refused with a guess at what it is: the gradient of
the output summed over an axis (spread it back), of some of its rows (put it back in them), of a reshape or a
broadcast of it."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import Linear, ReLU


@pytest.mark.parametrize("make", [lambda: Linear(3, 4, dtype="float64"), lambda: ReLU()], ids=["Linear", "ReLU"])
def test_the_gradient_of_the_outputs_sum_over_the_rows_says_to_spread_it_not_to_put_it_in_some_rows(make):
    """y.sum(0, keepdims=True)'s (1, D) gradient given to the layer of the (5, D) y: the hint was the one for a loss on
    some of the rows (dy[mask] = ...), which would put the gradient in one row; each row gets it."""
    layer = make()
    y = layer(np.random.default_rng(0).standard_normal((5, 4 if isinstance(layer, ReLU) else 3)))
    with pytest.raises(ValueError, match=rf"^{layer.name}: expected dy of shape \(5, 4\) \(the last forward's output\)"
                                         r", got \(1, 4\); if the output was summed over axis 0 after this layer .* "
                                         r"dy = xp.broadcast_to\(g, \(5, 4\)\) \(g / 5 for a mean\); if one index "
                                         r"along it was taken instead \(output\[-1:\]\), .* dy\[-1:\] = g$") as e:
        layer.backward(np.ones((1, 4)))
    assert "some of the" not in str(e.value)
    assert y.shape == (5, 4)


def test_following_the_sum_hint_gives_pytorchs_gradients():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((5, 3)), rng.standard_normal((1, 4))
    layer = Linear(3, 4, dtype="float64")
    theirs = torch.nn.Linear(3, 4).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(np.asarray(layer.params["W"]).T))
        theirs.bias.copy_(torch.from_numpy(np.asarray(layer.params["b"])))
    (theirs(torch.from_numpy(x)).sum(0, keepdim=True) * torch.from_numpy(w)).sum().backward()
    layer(x)
    layer.backward(np.broadcast_to(w, (5, 4)))     # the hint's dy = xp.broadcast_to(g, shape), g = w
    np.testing.assert_allclose(layer.grads["W"], theirs.weight.grad.numpy().T, rtol=1e-12)
    np.testing.assert_allclose(layer.grads["b"], theirs.bias.grad.numpy(), rtol=1e-12)


def test_a_loss_on_some_rows_keeps_its_hint():
    layer = ReLU()
    layer(np.ones((6, 4)))
    with pytest.raises(ValueError, match=r"got \(3, 4\); if the loss saw only some of the 6 rows .* dy\[mask\] = "):
        layer.backward(np.ones((3, 4)))


def test_sums_over_several_axes_or_without_keepdims_are_told_too():
    layer = ReLU()
    layer(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"summed over axes \(0, 1\) .* xp.broadcast_to\(g, \(2, 3, 4\)\) \(g / 6 "):
        layer.backward(np.ones((1, 1, 4)))
    with pytest.raises(ValueError, match=r"summed over axis 1 .* xp.broadcast_to\(xp.expand_dims\(g, axis=1\), "
                                         r"\(2, 3, 4\)\) \(g / 3 for a mean\); if one index along it was taken "
                                         r"instead \(output\[:, -1\]\), g goes in that place alone: dy = "
                                         r"xp.zeros_like\(output\); dy\[:, -1\] = g$"):
        layer.backward(np.ones((2, 4)))       # an RNN's output[:, -1] (the last step) leaves the same shape
    layer(np.ones((3, 3)))      # (3,) could be the sum over either axis: no guess
    with pytest.raises(ValueError, match=r"^ReLU: expected dy of shape \(3, 3\) \(the last forward's output\), got "
                                         r"\(3,\)$"):
        layer.backward(np.ones(3))


def test_the_embeddings_of_a_batch_of_contexts_summed_over_the_context():
    """A CBOW on a batch: ids (B, C), embeddings (B, C, D) summed over the context axis 1."""
    emb = xn.layers.Embedding(10, 4)
    emb(np.array([[1, 2, 3], [4, 5, 6]]))
    with pytest.raises(ValueError, match=r"^Embedding: .*got \(2, 1, 4\); if the output was summed over axis 1 .*"
                                         r"xp.broadcast_to\(g, \(2, 3, 4\)\) \(g / 3 for a mean\);"):
        emb.backward(np.ones((2, 1, 4), np.float32))
