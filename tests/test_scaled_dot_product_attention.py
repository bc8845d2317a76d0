"""ScaledDotProductAttention against PyTorch's F.scaled_dot_product_attention in float64 (output; dquery, dkey, dvalue
by autograd) with boolean and float masks, is_causal, scale, leading head axes and enable_gqa; against d2l's
DotProductAttention with valid_lens (its code, run in PyTorch); xn.gradcheck; one object called twice; clear errors."""

import math

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import ScaledDotProductAttention

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
F = torch.nn.functional

CLOSE = {"rtol": 1e-10, "atol": 1e-12}


def _inputs(rng, lead, L=3, S=5, E=4, Ev=6):
    return [rng.standard_normal((*lead, *s)) for s in ((L, E), (S, E), (S, Ev))]


def _grads(layer, torch_fn, xs, forward_kw, rng):
    """Our output and (dq, dk, dv) beside torch_fn's, by autograd, for one random dy."""
    y = layer(*xs, **forward_kw)
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    ty = torch_fn(*ts)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    return [(y, ty.detach().numpy())] + list(zip(layer.backward(dy), (t.grad.numpy() for t in ts)))


MASKS = [  # id, leading axes, layer arguments, forward's mask arguments (NumPy), F's (torch)
    ("none-heads", (2, 3), {}, lambda rng: {}),
    ("bool-True-attends", (2,), {}, lambda rng: {"attn_mask": np.arange(5) < np.array([[1], [3], [5]])}),
    ("float-broadcast", (2, 3), {"scale": 0.3}, lambda rng: {"attn_mask": rng.standard_normal((2, 1, 3, 5))}),
    ("causal", (2,), {}, lambda rng: {"is_causal": True}),
]


@pytest.mark.parametrize("lead, args, masks", [m[1:] for m in MASKS], ids=[m[0] for m in MASKS])
def test_equals_torch_scaled_dot_product_attention(lead, args, masks):
    rng = np.random.default_rng(0)
    xs, kw = _inputs(rng, lead, L=5 if masks(rng).get("is_causal") else 3), masks(rng)
    theirs = {k: torch.tensor(v) if hasattr(v, "shape") else v for k, v in kw.items()}
    pairs = _grads(ScaledDotProductAttention(**args), lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, **theirs, **args), xs, kw, rng)
    for ours, expected in pairs:
        np.testing.assert_allclose(ours, expected, **CLOSE)


@pytest.mark.parametrize("is_causal", [False, True], ids=["no-mask", "causal"])
def test_enable_gqa_equals_torch_grouped_query_attention(is_causal):
    """4 query heads over 2 key/value heads: query heads 0, 1 attend to key/value head 0, heads 2, 3 to head 1
    (F's repeat_interleave); dkey and dvalue summed over each pair."""
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal(s) for s in ((2, 4, 5, 3), (2, 2, 5, 3), (2, 2, 5, 6))]
    pairs = _grads(ScaledDotProductAttention(enable_gqa=True), lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, is_causal=is_causal, enable_gqa=True), xs, {"is_causal": is_causal}, rng)
    for ours, expected in pairs:
        np.testing.assert_allclose(ours, expected, **CLOSE)


@pytest.mark.parametrize("gqa, query_heads, message", [
    (True, 3, r"^ScaledDotProductAttention: with enable_gqa=True, the query's heads Hq must be a multiple of the "
              r"key's and value's Hkv, got Hq=3 and Hkv=2$"),
    (False, 4, r"^ScaledDotProductAttention: expected query \(..., L, E\), .* got \(2, 4, 5, 3\), \(2, 2, 5, 3\) "
               r"and \(2, 2, 5, 6\); for key and value of fewer heads than the query \(grouped-query attention\), "
               r"ScaledDotProductAttention\(enable_gqa=True\)$"),
], ids=["heads-not-a-multiple", "fewer-heads-without-gqa"])
def test_grouped_heads_that_do_not_fit_fail_at_once(gqa, query_heads, message):
    rng = np.random.default_rng(8)
    q, k, v = (rng.standard_normal(s) for s in ((2, query_heads, 5, 3), (2, 2, 5, 3), (2, 2, 5, 6)))
    with pytest.raises(ValueError, match=message):
        ScaledDotProductAttention(enable_gqa=gqa)(q, k, v)


def _d2l_dot_product_attention():
    """d2l's masked_softmax and DotProductAttention (chapter_attention-mechanisms-and-transformers/attention-scoring-
    functions.md, the PyTorch tab), as written there."""
    nn = torch.nn

    def masked_softmax(X, valid_lens):
        def _sequence_mask(X, valid_len, value=0):
            maxlen = X.size(1)
            mask = torch.arange((maxlen), dtype=torch.float32, device=X.device)[None, :] < valid_len[:, None]
            X[~mask] = value
            return X

        if valid_lens is None:
            return nn.functional.softmax(X, dim=-1)
        shape = X.shape
        if valid_lens.dim() == 1:
            valid_lens = torch.repeat_interleave(valid_lens, shape[1])
        else:
            valid_lens = valid_lens.reshape(-1)
        X = _sequence_mask(X.reshape(-1, shape[-1]), valid_lens, value=-1e6)
        return nn.functional.softmax(X.reshape(shape), dim=-1)

    class DotProductAttention(nn.Module):
        def __init__(self, dropout):
            super().__init__()
            self.dropout = nn.Dropout(dropout)

        def forward(self, queries, keys, values, valid_lens=None):
            d = queries.shape[-1]
            scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(d)
            self.attention_weights = masked_softmax(scores, valid_lens)
            return torch.bmm(self.dropout(self.attention_weights), values)

    return DotProductAttention(0.5).eval()


@pytest.mark.parametrize("valid_lens", [np.array([2, 5]), np.array([[1, 3, 5], [2, 4, 4]])], ids=["N", "N-L"])
def test_d2ls_valid_lens_are_the_attn_mask_its_masked_softmax_builds(valid_lens):
    """docs/sequences.md: valid_lens (N,) is attn_mask = arange(S) < valid_lens[:, None, None], (N, L) arange(S) <
    valid_lens[..., None]; d2l's DotProductAttention(dropout) in eval is ScaledDotProductAttention(dropout)."""
    rng = np.random.default_rng(1)
    xs = _inputs(rng, (2,))
    d2l = _d2l_dot_product_attention()
    mask = np.arange(5) < (valid_lens[:, None, None] if valid_lens.ndim == 1 else valid_lens[..., None])
    ours = ScaledDotProductAttention(dropout=0.5)
    pairs = _grads(ours, lambda q, k, v: d2l(q, k, v, torch.tensor(valid_lens)), xs,
                   {"attn_mask": mask, "train": False}, rng)
    for got, expected in pairs:
        np.testing.assert_allclose(got, expected, **CLOSE)
    np.testing.assert_allclose(ours.attention_weights, d2l.attention_weights.detach().numpy(), **CLOSE)


def test_gradcheck_passes():
    report = xn.gradcheck(ScaledDotProductAttention(scale=0.7), tuple(_inputs(np.random.default_rng(2), (2,))))
    assert report.ok, str(report)


def test_dropout_drops_weights_in_training_from_the_seeded_generator():
    """Each weight kept is scaled by 1 / (1 - p), the others zeroed; the same seed, the same draw; none in eval."""
    q, k, v = _inputs(np.random.default_rng(3), (2,))
    outputs = []
    for _ in range(2):
        xn.init.seed(4)
        att = ScaledDotProductAttention(dropout=0.5)
        outputs.append(att(q, k, v))
    a = att.attention_weights
    kept = np.linalg.lstsq(v[0].T, outputs[0][0].T, rcond=None)[0].T  # the dropped weights of sample 0
    assert np.all(np.isclose(kept, 0.0, atol=1e-9) | np.isclose(kept, 2.0 * a[0]))
    assert not np.allclose(kept, a[0]) and np.array_equal(outputs[0], outputs[1])
    np.testing.assert_allclose(att(q, k, v, train=False), a @ v, **CLOSE)


def test_one_object_called_twice_equals_pytorchs_two_calls():
    """self.att(self.att(x, x, x), x, x): the second call's backward first, then the first's."""
    class Twice(xn.Model):
        def __init__(self):
            super().__init__()
            self.att = ScaledDotProductAttention()

        def forward(self, x, train=True):
            return self.att(self.att(x, x, x), x, x)

        def backward(self, dy):
            dq, dk2, dv2 = self.att.backward(dy)
            dq1, dk1, dv1 = self.att.backward(dq)
            return dq1 + dk1 + dv1 + dk2 + dv2

    x, dy = (np.random.default_rng(seed).standard_normal((2, 2, 3, 4)) for seed in (5, 6))
    model = Twice()
    y = model(x)
    dx = model.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = F.scaled_dot_product_attention(F.scaled_dot_product_attention(xt, xt, xt), xt, xt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), **CLOSE)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **CLOSE)


@pytest.mark.parametrize("make, forward, message", [
    (lambda: ScaledDotProductAttention(dropout=1.0), None, r"^ScaledDotProductAttention: dropout must be a float in "
                                                           r"\[0, 1\), got 1.0$"),
    (ScaledDotProductAttention, {"attn_mask": np.ones((3, 5), bool), "is_causal": True},
     r"^ScaledDotProductAttention: is_causal=True with an attn_mask \(PyTorch refuses both\); pass one"),
    (ScaledDotProductAttention, {"attn_mask": np.ones((4, 5), bool)},
     r"^ScaledDotProductAttention: attn_mask must broadcast to the scores \(2, 3, 5\) \(..., L, S\), got \(4, 5\)$"),
    (ScaledDotProductAttention, {"attn_mask": np.ones((3, 5), int)},
     r"^ScaledDotProductAttention: attn_mask must be boolean \(True: attended\) or float \(added\), got int64$"),
    (ScaledDotProductAttention, {"value": np.ones((2, 4, 6))},
     r"^ScaledDotProductAttention: expected query \(..., L, E\), key \(..., S, E\) and value \(..., S, Ev\) "
     r"with the same leading axes, got \(2, 3, 4\), \(2, 5, 4\) and \(2, 4, 6\)$"),
    (ScaledDotProductAttention, {"dropout_p": 0.1, "enable_gqa": True},
     r"^ScaledDotProductAttention: dropout_p, enable_gqa is the layer's, not the call's .* build it with "
     r"ScaledDotProductAttention\(dropout=0.1, enable_gqa=True\), then call layer\(query, key, value"),
], ids=["dropout", "causal-and-mask", "mask-shape", "mask-dtype", "value-length", "functional-keywords"])
def test_what_does_not_fit_fails_at_once(make, forward, message):
    with pytest.raises((ValueError, TypeError), match=message):
        q, k, v = _inputs(np.random.default_rng(6), (2,))
        make()(q, k, forward.pop("value", v), **forward)
