"""What a reader of Dive into Deep Learning (d2l.ai, its PyTorch tabs) writes first in xpnet: it works with
PyTorch's meaning, or fails at once saying what to write instead (docs/from-pytorch.md)."""

import math

import numpy as np
import pytest

import xpnet as xn

TORCH_REASON = "torch is not installed (pip install -e '.[backends]')"


def test_parameter_groups_are_refused_naming_weight_decay_on_weights_only():
    """d2l's weight-decay chapter: SGD([{'params': net.weight, 'weight_decay': wd}, {'params': net.bias}])."""
    net = xn.Sequential(xn.layers.Linear(200, 1))
    with pytest.raises(TypeError, match=r"parameter groups .* SGD\(model, lr=\.\.\., weight_decay=wd\)"):
        xn.optim.SGD([{"params": net[0].weight, "weight_decay": 3}, {"params": net[0].bias}], lr=0.01)


def test_weight_decay_on_weights_only_is_d2ls_parameter_groups():
    """The line the refusal gives trains as d2l's two groups do in PyTorch (the weight decayed, the bias not)."""
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 20)), rng.standard_normal((5, 1))
    tnet = torch.nn.Sequential(torch.nn.Linear(20, 1)).double()
    opt = torch.optim.SGD([{"params": tnet[0].weight, "weight_decay": 3.0}, {"params": tnet[0].bias}], lr=0.01)
    model = xn.Sequential(xn.layers.Linear(20, 1)).to(dtype="float64")
    xn.load_torch_state_dict(model, tnet.state_dict())
    xopt = xn.optim.SGD(model, lr=0.01, weight_decay=3.0)
    loss = xn.losses.MeanSquaredError()
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(tnet(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
        loss.forward(model(x), y)
        model.backward(loss.backward())
        xopt.step()
    np.testing.assert_allclose(model[0].weight, tnet[0].weight.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(model[0].bias, tnet[0].bias.detach().numpy(), rtol=1e-12)


def test_functional_names_scaled_dot_product_attention_not_the_books_unscaled_one():
    with pytest.raises(AttributeError, match=r"ScaledDotProductAttention\(dropout=dropout_p, scale=scale, "
                                             r"enable_gqa=enable_gqa\) for F.scaled_dot_product_attention.*"
                                             r"Attention\(\) .* not scaled"):
        xn.functional


def _d2l_multihead(torch, num_hiddens, num_heads):
    """d2l's MultiHeadAttention, DotProductAttention and masked_softmax (chapter_attention-mechanisms-and-
    transformers), its LazyLinear given sizes, in evaluation."""
    nn = torch.nn

    def masked_softmax(X, valid_lens):
        if valid_lens is None:
            return nn.functional.softmax(X, dim=-1)
        shape = X.shape
        valid_lens = (torch.repeat_interleave(valid_lens, shape[1]) if valid_lens.dim() == 1
                      else valid_lens.reshape(-1))
        X = X.reshape(-1, shape[-1])
        mask = torch.arange(X.size(1), dtype=torch.float32)[None, :] < valid_lens[:, None]
        X[~mask] = -1e6
        return nn.functional.softmax(X.reshape(shape), dim=-1)

    class MultiHeadAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(num_hiddens, num_hiddens, bias=False)
                                                      for _ in range(4))

        def transpose_qkv(self, X):
            X = X.reshape(X.shape[0], X.shape[1], num_heads, -1).permute(0, 2, 1, 3)
            return X.reshape(-1, X.shape[2], X.shape[3])

        def forward(self, queries, keys, values, valid_lens):
            q, k, v = (self.transpose_qkv(W(x)) for W, x in ((self.W_q, queries), (self.W_k, keys),
                                                              (self.W_v, values)))
            if valid_lens is not None:
                valid_lens = torch.repeat_interleave(valid_lens, repeats=num_heads, dim=0)
            scores = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(q.shape[-1])
            out = torch.bmm(masked_softmax(scores, valid_lens), v)
            out = out.reshape(-1, num_heads, out.shape[1], out.shape[2]).permute(0, 2, 1, 3)
            return self.W_o(out.reshape(out.shape[0], out.shape[1], -1))

    return MultiHeadAttention().double().eval()


def test_d2ls_multihead_attention_with_valid_lens_is_multihead_attention_with_masks():
    """docs/from-pytorch.md: d2l's valid_lens (N,) is a key_padding_mask; its decoder's dec_valid_lens
    (rows 1..T) is is_causal=True; d2l's attention is MultiheadAttention(..., bias=False)."""
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    E, heads, S = 8, 2, 5
    ref = _d2l_multihead(torch, E, heads)
    mha = xn.layers.MultiheadAttention(E, heads, 0.0, bias=False).to(dtype="float64")
    mha.params["W_in"] = np.concatenate([ref.W_q.weight.detach().numpy().T, ref.W_k.weight.detach().numpy().T,
                                         ref.W_v.weight.detach().numpy().T], axis=1)
    mha.params["W_out"] = ref.W_o.weight.detach().numpy().T
    rng = np.random.default_rng(0)
    x, kv = rng.standard_normal((2, 4, E)), rng.standard_normal((2, S, E))
    valid_lens = np.array([3, 2])
    with torch.no_grad():
        padded = ref(*map(torch.from_numpy, (x, kv, kv, valid_lens))).numpy()
        causal = ref(*map(torch.from_numpy, (x, x, x, np.array([[1, 2, 3, 4]] * 2)))).numpy()
    mask = np.arange(S)[None, :] >= valid_lens[:, None]
    np.testing.assert_allclose(mha(x, kv, kv, key_padding_mask=mask, train=False)[0], padded, rtol=1e-10)
    np.testing.assert_allclose(mha(x, x, x, is_causal=True, train=False)[0], causal, rtol=1e-10)


@pytest.mark.parametrize("name", ["add_module", "add"])
def test_sequential_add_module_says_sequential_names_by_position(name):
    """d2l's ResNet, DenseNet and Transformer: net = nn.Sequential(); net.add_module(f'b{i+2}', block)."""
    with pytest.raises(AttributeError, match=r"names its layers by position .* model\.append\(layer\) .* xn\.Model"):
        getattr(xn.Sequential(xn.layers.ReLU()), name)


def test_pytorch_in_place_init_in_a_models_init_says_what_to_write():
    """d2l's LinearRegression: self.net.weight.data.normal_(0, 0.01) in __init__ (not only inside model.apply)."""
    class LinearRegression(xn.Model):
        def __init__(self):
            super().__init__()
            self.net = xn.layers.Linear(2, 1)
            self.net.weight.data.normal_(0, 0.01)

    with pytest.raises(AttributeError, match=r"xn\.init\.normal_\(m\.weight, 0\.0, 0\.02\)"):
        LinearRegression()
