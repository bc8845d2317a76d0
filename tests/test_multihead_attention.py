"""MultiheadAttention against PyTorch's nn.MultiheadAttention(batch_first=True) in float64 on every device, its
weights copied in by xn.load_torch_state_dict: outputs, attention weights (averaged and per head), every parameter
gradient and dquery, dkey, dvalue (PyTorch's by autograd on three separate tensors), for self- and cross-attention,
kdim/vdim, bias=False, each mask, one and four heads; a fully masked query; dropout; xn.gradcheck in a small
Transformer-style model; saving and loading; PyTorch's initialisation from xpnet's seed; a planted gradient bug that
must be caught; clear errors."""

import math

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import MultiheadAttention
from xpnet.models.torch_weights import TORCH_NAMES
from xpnet.testing import assert_placed

torch = pytest.importorskip("torch", reason="the reference is PyTorch itself (pip install -e .[backends])")

CLOSE = {"rtol": 1e-10, "atol": 1e-12}
N, L, S = 2, 3, 5


def _causal(length, source):
    return np.arange(source)[None, :] > np.arange(length)[:, None]


def _bool_mask(rng, shape):
    """Random True (masked) entries, never the first key: every query keeps one."""
    m = rng.random(shape) < 0.4
    m[..., 0] = False
    return m


# (id, constructor arguments beyond (E, heads), L, S, masks: rng, heads -> forward's mask arguments)
CASES = [
    pytest.param({}, 3, 3, lambda rng, h: {}, True, id="self"),
    pytest.param({}, L, S, lambda rng, h: {}, False, id="cross-L-ne-S"),
    pytest.param({"kdim": 5, "vdim": 3}, L, S, lambda rng, h: {}, False, id="kdim-vdim"),
    pytest.param({"bias": False}, L, S, lambda rng, h: {}, False, id="bias-False"),
    pytest.param({}, L, S, lambda rng, h: {"attn_mask": _bool_mask(rng, (L, S))}, False, id="bool-mask-2d"),
    pytest.param({}, L, S, lambda rng, h: {"attn_mask": _bool_mask(rng, (N * h, L, S))}, False, id="bool-mask-3d"),
    pytest.param({}, L, S, lambda rng, h: {"attn_mask": rng.standard_normal((L, S))}, False, id="float-mask"),
    pytest.param({}, L, S, lambda rng, h: {"key_padding_mask": _bool_mask(rng, (N, S))}, False,
                 id="key-padding-mask"),
    pytest.param({"kdim": 5, "vdim": 3}, L, S, lambda rng, h: {"attn_mask": rng.standard_normal((N * h, L, S)),
                                                              "key_padding_mask": np.where(_bool_mask(rng, (N, S)), -np.inf, 0.0)},
                 False, id="float-masks-3d-and-padding"),
    pytest.param({}, 4, 4, lambda rng, h: {"attn_mask": _causal(4, 4), "is_causal": True}, True, id="causal"),
]


def _pair(embed_dim, num_heads, rng, **kwargs):
    """xpnet's layer and PyTorch's in float64, PyTorch's random weights (biases too) loaded into xpnet's."""
    theirs = torch.nn.MultiheadAttention(embed_dim, num_heads, batch_first=True, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)) * 0.5))
    ours = MultiheadAttention(embed_dim, num_heads, dtype="float64", **kwargs)
    xn.load_torch_state_dict(ours, theirs.state_dict())
    return ours, theirs


def _compare_with_pytorch(dev, ours, theirs, query, key, value, masks, self_attention=False):
    """attn_output, attn_weights (averaged, per head, none), each parameter's gradient and dquery, dkey, dvalue.
    With ``self_attention`` PyTorch also runs on one tensor passed three times: its gradient is their sum."""
    ours.to(dev)
    torch_masks = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in masks.items()}
    our_masks = {k: xn.to_device(v, dev) if isinstance(v, np.ndarray) else v for k, v in masks.items()}
    inputs = [torch.tensor(a, requires_grad=True) for a in (query, key, value)]
    y_t, w_t = theirs(*inputs, **torch_masks, average_attn_weights=False)
    dy = np.random.default_rng(5).standard_normal(tuple(y_t.shape))
    y_t.backward(torch.from_numpy(dy))

    def close(a, b, what):
        assert_placed(a, dev, "float64")
        np.testing.assert_allclose(xn.to_numpy(a), b.detach().numpy() if hasattr(b, "detach") else b, **CLOSE,
                                   err_msg=what)

    q, k, v = (xn.to_device(a, dev) for a in (query, key, value))
    y, w = ours.forward(q, k, v, **our_masks, average_attn_weights=False)
    close(y, y_t, "attn_output")
    close(w, w_t, "attn_weights per head")
    y, w_mean = ours.forward(q, k, v, **our_masks)
    close(w_mean, w_t.mean(dim=1), "attn_weights averaged")
    assert ours.forward(q, k, v, **our_masks, need_weights=False)[1] is None
    grads = ours.backward(xn.to_device(dy, dev))
    for g, t, what in zip(grads, inputs, ("dquery", "dkey", "dvalue")):
        close(g, t.grad, what)
    torch_grads = {name: p.grad for name, p in theirs.named_parameters()}
    assert set(ours.grads) == set(ours.params)
    for name, g in ours.grads.items():
        formula = TORCH_NAMES[MultiheadAttention][name]
        close(g, torch_grads[formula[:-2]].T if formula.endswith(".T") else torch_grads[formula], f"d{name}")
    if self_attention:
        x = torch.tensor(query, requires_grad=True)
        theirs(x, x, x, **torch_masks)[0].backward(torch.from_numpy(dy))
        close(grads[0] + grads[1] + grads[2], x.grad, "dx of self-attention")


@pytest.mark.parametrize("num_heads", [1, 4])
@pytest.mark.parametrize("kwargs,length,source,masks,self_attention", CASES)
def test_equals_pytorch(dev, rng, num_heads, kwargs, length, source, masks, self_attention):
    E = 8
    ours, theirs = _pair(E, num_heads, rng, **kwargs)
    query = rng.standard_normal((N, length, E))
    if self_attention:
        key = value = query
    else:
        key = rng.standard_normal((N, source, kwargs.get("kdim", E)))
        value = rng.standard_normal((N, source, kwargs.get("vdim", E)))
    _compare_with_pytorch(dev, ours, theirs, query, key, value, masks(rng, num_heads), self_attention)
