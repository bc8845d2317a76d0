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
from conftest import part_of_the_grid_on_jax
from xpnet.layers import MultiheadAttention
from xpnet.models.torch_weights import TORCH_NAMES
from xpnet.testing import assert_placed

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

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
    pytest.param({"kdim": 5, "vdim": 3}, L, S, lambda rng, h: {
        "attn_mask": rng.standard_normal((N * h, L, S)),
        "key_padding_mask": np.where(_bool_mask(rng, (N, S)), -np.inf, 0.0)}, False, id="float-masks-3d-and-padding"),
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
def test_equals_pytorch(dev, rng, request, num_heads, kwargs, length, source, masks, self_attention):
    part_of_the_grid_on_jax(dev, request, ("-4",))  # every mask, with 4 heads
    E = 8
    ours, theirs = _pair(E, num_heads, rng, **kwargs)
    query = rng.standard_normal((N, length, E))
    if self_attention:
        key = value = query
    else:
        key = rng.standard_normal((N, source, kwargs.get("kdim", E)))
        value = rng.standard_normal((N, source, kwargs.get("vdim", E)))
    _compare_with_pytorch(dev, ours, theirs, query, key, value, masks(rng, num_heads), self_attention)


@pytest.mark.parametrize("length,source", [(4, 4), (3, 5)], ids=["square", "L-ne-S"])
def test_is_causal_alone_masks_the_later_keys(dev, rng, length, source):
    """PyTorch wants the mask with is_causal (and raises without); xpnet builds it: key j > query i is masked."""
    ours, theirs = _pair(8, 2, rng)
    query, memory = rng.standard_normal((N, length, 8)), rng.standard_normal((N, source, 8))
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        theirs(*(torch.from_numpy(a) for a in (query, memory, memory)), is_causal=True)
    y_t, w_t = theirs(*(torch.from_numpy(a) for a in (query, memory, memory)),
                      attn_mask=torch.from_numpy(_causal(length, source)))
    ours.to(dev)
    y, w = ours.forward(*(xn.to_device(a, dev) for a in (query, memory, memory)), is_causal=True)
    np.testing.assert_allclose(xn.to_numpy(y), y_t.detach().numpy(), **CLOSE)
    np.testing.assert_allclose(xn.to_numpy(w), w_t.detach().numpy(), **CLOSE)
    assert np.all(xn.to_numpy(w)[:, _causal(length, source)] == 0)


def test_a_query_whose_every_key_is_masked_gives_nan_as_pytorchs(dev, rng):
    """No RuntimeWarning either (the suite turns them into errors); the other queries are untouched; dquery, dkey
    and dvalue are NaN where PyTorch's are."""
    ours, theirs = _pair(8, 2, rng)
    x = rng.standard_normal((N, 4, 8))
    mask = _bool_mask(rng, (4, 4))
    mask[1, :] = True
    inputs = [torch.tensor(x, requires_grad=True) for _ in range(3)]
    y_t, w_t = theirs(*inputs, attn_mask=torch.from_numpy(mask))
    dy = rng.standard_normal((N, 4, 8))
    y_t.backward(torch.from_numpy(dy))
    ours.to(dev)
    y, w = ours.forward(*(xn.to_device(x, dev),) * 3, attn_mask=xn.to_device(mask, dev))
    for g, t in zip(ours.backward(xn.to_device(dy, dev)), inputs):
        np.testing.assert_array_equal(np.isnan(xn.to_numpy(g)), np.isnan(t.grad.numpy()))
    y, w = xn.to_numpy(y), xn.to_numpy(w)
    assert np.isnan(y_t.detach().numpy()[:, 1]).all() and np.isnan(y[:, 1]).all() and np.isnan(w[:, 1]).all()
    keep = [0, 2, 3]
    np.testing.assert_allclose(y[:, keep], y_t.detach().numpy()[:, keep], **CLOSE)
    np.testing.assert_allclose(w[:, keep], w_t.detach().numpy()[:, keep], **CLOSE)


def test_dropout_drops_attention_weights_in_training_only(dev, rng):
    """Training: the weights returned are PyTorch's without dropout, each zeroed or scaled by 1 / (1 - p);
    evaluation (train=False, or the layer's eval()) is PyTorch's in eval()."""
    ours, theirs = _pair(8, 2, rng, dropout=0.25)
    theirs.eval()
    x = rng.standard_normal((N, 4, 8))
    y_t, w_t = theirs(*(torch.from_numpy(x),) * 3, average_attn_weights=False)
    ours.to(dev)
    xs = (xn.to_device(x, dev),) * 3
    y, w = ours.forward(*xs, average_attn_weights=False, train=False)
    np.testing.assert_allclose(xn.to_numpy(y), y_t.detach().numpy(), **CLOSE)
    ours.eval()
    np.testing.assert_allclose(xn.to_numpy(ours(*xs)[0]), y_t.detach().numpy(), **CLOSE)
    _, w = ours.forward(*xs, average_attn_weights=False, train=True)
    w, a = xn.to_numpy(w), w_t.detach().numpy()
    kept = w != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(w[kept], a[kept] / 0.75, **CLOSE)


class Decoder(xn.Model):
    """A Transformer decoder block's attention: causal self-attention with a skip, then attention over a memory
    of another width (kdim = vdim = memory_dim), with dropout. dx adds the three uses of x and the skip."""

    def __init__(self, embed_dim=6, num_heads=2, memory_dim=4, dropout=0.2):
        super().__init__()
        self.self_attn = MultiheadAttention(embed_dim, num_heads, dropout=dropout)
        self.cross_attn = MultiheadAttention(embed_dim, num_heads, kdim=memory_dim, vdim=memory_dim)

    def forward(self, x, memory, train=True):
        h = self.self_attn.forward(x, x, x, is_causal=True, need_weights=False, train=train)[0] + x
        return self.cross_attn.forward(h, memory, memory, train=train)[0]

    def backward(self, dy):
        dh, dmemory_k, dmemory_v = self.cross_attn.backward(dy)
        dq, dk, dv = self.self_attn.backward(dh)
        return dq + dk + dv + dh, dmemory_k + dmemory_v


def test_gradcheck_passes(dev):
    xn.init.seed(0)
    model = Decoder().to(dev)
    rng = np.random.default_rng(0)
    x, memory = (xn.to_device(rng.standard_normal(s).astype("float32"), dev) for s in ((2, 3, 6), (2, 5, 4)))
    report = xn.gradcheck(model, (x, memory), max_entries=16)  # a seeded 16 entries of each tensor
    assert report.ok, str(report)
    assert report["self_attn.W_in"].ok and report["cross_attn.W_k"].ok and report["input[1]"].ok


def test_saved_and_loaded_on_another_device(tmp_path, rng):
    strict = pytest.importorskip("array_api_strict")
    dev1 = xn.Device(strict, strict.Device("device1"))
    xn.init.seed(1)
    model = Decoder(8, 4, 3, 0.0)
    model.cross_attn.params["b_in"] = rng.standard_normal(24).astype(np.float32)
    model.save(tmp_path / "mha.npz")
    loaded = xn.load(tmp_path / "mha.npz", device=dev1)
    assert repr(loaded.cross_attn) == repr(model.cross_attn) == \
        "MultiheadAttention(embed_dim=8, num_heads=4, bias=True, kdim=3, vdim=3)"
    assert sorted(loaded.named_params()) == sorted(model.named_params())
    assert_placed(loaded.cross_attn.params["W_k"], dev1, "float32")
    x, memory = rng.standard_normal((2, 3, 8)).astype(np.float32), rng.standard_normal((2, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(xn.to_numpy(loaded.forward(xn.to_device(x, dev1), xn.to_device(memory, dev1))),
                               model.forward(x, memory), rtol=1e-6, atol=1e-6)


def test_the_same_seed_gives_the_same_weights_everywhere_with_pytorchs_bounds():
    strict = pytest.importorskip("array_api_strict")
    dev1 = xn.Device(strict, strict.Device("device1"))
    xn.init.seed(7)
    here = MultiheadAttention(16, 4, kdim=5, vdim=6)
    xn.init.seed(7)
    there = MultiheadAttention(16, 4, kdim=5, vdim=6).to(dev1)
    for name, value in here.params.items():
        np.testing.assert_array_equal(xn.to_numpy(there.params[name]), value)
    xn.init.seed(7)
    packed = MultiheadAttention(16, 4).params
    for name, fan_in, fan_out, bound in (("W_in", 16, 48, math.sqrt(6 / 64)), ("W_out", 16, 16, 1 / 4)):
        assert packed[name].shape == (fan_in, fan_out) and 0.9 * bound < np.abs(packed[name]).max() <= bound
    assert 0.9 * math.sqrt(6 / 21) < np.abs(here.params["W_k"]).max() <= math.sqrt(6 / 21)
    assert not np.any(packed["b_in"]) and not np.any(packed["b_out"])


class TorchDecoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = torch.nn.MultiheadAttention(6, 2, batch_first=True)
        self.cross_attn = torch.nn.MultiheadAttention(6, 2, kdim=4, vdim=4, batch_first=True)


def test_a_pytorch_state_dict_loads_and_comes_back():
    theirs = TorchDecoder()
    model = Decoder(6, 2, 4)
    xn.load_torch_state_dict(model, theirs.state_dict())
    np.testing.assert_array_equal(model.self_attn.params["W_in"], theirs.self_attn.in_proj_weight.detach().numpy().T)
    np.testing.assert_array_equal(model.cross_attn.params["W_v"],
                                  theirs.cross_attn.v_proj_weight.detach().numpy().T)
    back = xn.torch_state_dict(model)
    assert set(back) == set(theirs.state_dict())
    for name, value in theirs.state_dict().items():
        np.testing.assert_array_equal(back[name], value.numpy(), err_msg=name)
    with pytest.raises(ValueError, match=r"'self_attn.in_proj_weight' has shape \(18, 6\), expected \(24, 8\)"):
        xn.load_torch_state_dict(Decoder(8, 2, 4), theirs.state_dict())


class _UnscaledBackward(MultiheadAttention):
    """Bug: dquery without the 1/sqrt(head_dim) of the scores (the forward scales, the backward forgets)."""

    def backward(self, dy):
        dquery, dkey, dvalue = super().backward(dy)
        return dquery * math.sqrt(self.head_dim), dkey, dvalue


def test_a_backward_that_forgets_the_scale_is_caught(rng):
    _, theirs = _pair(8, 4, rng)
    ours = _UnscaledBackward(8, 4, dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    query, memory = rng.standard_normal((N, L, 8)), rng.standard_normal((N, S, 8))
    with pytest.raises(AssertionError, match="dquery"):
        _compare_with_pytorch(xn.device("cpu"), ours, theirs, query, memory, memory, {})


@pytest.mark.parametrize("kwargs,message", [
    ({"embed_dim": 6, "num_heads": 4}, r"embed_dim \(6\) must be divisible by num_heads \(4\)"),
    ({"embed_dim": 0, "num_heads": 1}, "embed_dim must be a positive int"),
    ({"embed_dim": 8, "num_heads": 2, "dropout": 1.0}, r"dropout must be a float in \[0, 1\)"),
    ({"embed_dim": 8, "num_heads": 2, "add_bias_kv": True}, "add_bias_kv=True is not supported: .*leave it False"),
    ({"embed_dim": 8, "num_heads": 2, "add_zero_attn": True}, "add_zero_attn=True is not supported"),
    ({"embed_dim": 8, "num_heads": 2, "device": "cuda"}, r"device='cuda' is not supported: .*\.to\(device\)"),
])
def test_bad_arguments_are_named_clearly(kwargs, message):
    with pytest.raises(ValueError, match="^MultiheadAttention: " + message):
        MultiheadAttention(**kwargs)
    with pytest.raises(TypeError, match=r"^MultiheadAttention: batch_first must be True or False, got 'no'"):
        MultiheadAttention(8, 2, batch_first="no")


@pytest.mark.parametrize("shapes,masks,message", [
    (((2, 3, 8), (2, 5, 8), (2, 4, 8)), {}, r"expected query \(N, L, 8\), key \(N, S, 8\) and value \(N, S, 8\)"),
    (((3, 8), (5, 8), (5, 8)), {}, r".*one sequence as x\[None\]\), got \(3, 8\)"),
    (((2, 3, 8), (2, 5, 8), (2, 5, 8)), {"attn_mask": np.zeros((5, 3), bool)},
     r"attn_mask must have shape \(3, 5\) or \(4, 3, 5\), got \(5, 3\)"),
    (((2, 3, 8), (2, 5, 8), (2, 5, 8)), {"key_padding_mask": np.zeros((2, 5), np.int64)},
     "key_padding_mask must be boolean .* or float"),
    (((2, 3, 8), (2, 5, 8), (2, 5, 8)), {"key_padding_mask": [[False] * 5] * 2},
     r"key_padding_mask must be an array in the query's namespace and device \(numpy.ndarray on cpu\), got a list"),
])
def test_bad_inputs_are_named_clearly(shapes, masks, message):
    layer = MultiheadAttention(8, 2)
    with pytest.raises((ValueError, TypeError), match="^MultiheadAttention: " + message):
        layer.forward(*(np.zeros(s, np.float32) for s in shapes), **masks)


def test_a_mask_passed_in_trains_place_is_named():
    layer = MultiheadAttention(8, 2)
    x = np.zeros((2, 3, 8), np.float32)
    with pytest.raises(TypeError, match=r"^MultiheadAttention.forward\(query, key, value, .*\): train must be True"):
        layer.forward(x, x, x, None, True, None, True, False, np.zeros((3, 3), bool))


def test_summary_shows_the_shapes_of_the_pair_it_returns():
    """summary() wrote 'tuple' for a layer that returns a pair; it now shows the output's and the
    weights' shapes (None where need_weights=False)."""

    class SelfAttention(xn.Model):
        def __init__(self, need_weights):
            super().__init__()
            self.need_weights = need_weights
            self.attn = xn.layers.MultiheadAttention(16, 4)
            self.fc = xn.layers.Linear(16, 3)

        def forward(self, x, train=True):
            a, _ = self.attn.forward(x, x, x, need_weights=self.need_weights, train=train)
            return self.fc.forward(a, train)

        def backward(self, dy):
            dq, dk, dv = self.attn.backward(self.fc.backward(dy))
            return dq + dk + dv

    table = SelfAttention(True).summary(input_shape=(8, 16))
    assert "MultiheadAttention  (N, 8, 16), (N, 8, 8)" in table and "tuple" not in table
    assert "(N, 8, 16), None" in SelfAttention(False).summary(input_shape=(8, 16))


def test_backward_self_is_the_sum_of_the_three_gradients(dev, rng):
    """Self-attention's dx in one product (what the Transformer layers call) equals dquery + dkey + dvalue, and the
    parameters' gradients are the same either way; after cross-attention it refuses, naming backward."""
    xn.init.seed(3)
    mha = MultiheadAttention(8, 2, dtype="float64").to(dev)
    x, dy = (xn.to_device(rng.standard_normal((2, 5, 8)), dev) for _ in range(2))
    mha.forward(x, x, x)
    dx = mha.backward_self(dy)
    grads = {k: xn.to_numpy(v) for k, v in mha.grads.items()}
    mha.forward(x, x, x)
    dq, dk, dv = mha.backward(dy)
    np.testing.assert_allclose(xn.to_numpy(dx), xn.to_numpy(dq + dk + dv), rtol=1e-12, atol=1e-13)
    for name, g in grads.items():
        np.testing.assert_allclose(g, xn.to_numpy(mha.grads[name]), rtol=1e-12, atol=1e-13, err_msg=name)
    mha.forward(x, xn.to_device(rng.standard_normal((2, 5, 8)), dev), x)
    with pytest.raises(ValueError, match=r"backward_self: the last forward was not self-attention .* call "
                                         r"backward\(dy\)"):
        mha.backward_self(dy)
