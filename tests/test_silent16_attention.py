"""MultiheadAttention(batch_first=False): PyTorch's default layout, query (L, N, E), key and value (S, N, ...).

xpnet's MultiheadAttention read (N, L, E) only and refused batch_first=False, so PyTorch's default time-first arrays
given to it were read with L and N swapped (every sequence attending over the batch) wherever no mask's shape or
read of the output told. batch_first=False takes that layout; nn.MultiheadAttention(E, H) (time first) is the
reference, in float64: attn_output, its weights, every input's gradient and every parameter's."""

import copy

import numpy as np
import pytest

import xpnet as xn

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

N, L, S, E, H = 2, 3, 4, 6, 2


def _pair(kdim=None):
    theirs = torch.nn.MultiheadAttention(E, H, kdim=kdim, vdim=kdim, dtype=torch.float64)  # time first
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    ours = xn.layers.MultiheadAttention(E, H, kdim=kdim, vdim=kdim, batch_first=False, dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    return ours, theirs


def _torch_grads(ours, theirs):
    """ours's parameter gradients by PyTorch's names and layouts, and theirs's."""
    grads = copy.deepcopy(ours)
    for name, g in ours.named_grads().items():
        grads.named_params()[name][...] = g
    return xn.torch_state_dict(grads), {k: p.grad.numpy() for k, p in theirs.named_parameters()}


@pytest.mark.parametrize("self_attention", [True, False], ids=["self", "cross"])
@pytest.mark.parametrize("masks", [False, True], ids=["no-masks", "masks"])
def test_batch_first_false_is_pytorchs_time_first_attention(self_attention, masks):
    rng = np.random.default_rng(16)
    ours, theirs = _pair(None if self_attention else 5)
    s = L if self_attention else S
    query = rng.standard_normal((L, N, E))
    key = query if self_attention else rng.standard_normal((s, N, 5))
    value = query if self_attention else rng.standard_normal((s, N, 5))
    options = {}
    if masks:
        padding = np.zeros((N, s), bool)
        padding[1, 0] = True
        options = {"key_padding_mask": padding, "attn_mask": rng.standard_normal((L, s)),
                   "average_attn_weights": False}
    tq = torch.tensor(query, requires_grad=True)
    tk, tv = (tq, tq) if self_attention else (torch.tensor(key, requires_grad=True),
                                              torch.tensor(value, requires_grad=True))
    y_t, w_t = theirs(tq, tk, tv, **{k: torch.tensor(v) if isinstance(v, np.ndarray) else v
                                     for k, v in options.items()})
    y, w = ours(query, key, value, **options)
    assert y.shape == (L, N, E)
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(w, w_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    dy = rng.standard_normal((L, N, E))
    y_t.backward(torch.tensor(dy))
    if self_attention:
        np.testing.assert_allclose(ours.backward_self(dy), tq.grad.numpy(), rtol=1e-12, atol=1e-14)
    else:
        for got, t in zip(ours.backward(dy), (tq, tk, tv)):
            np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-12, atol=1e-14)
    got, expected = _torch_grads(ours, theirs)
    for name, g in expected.items():
        np.testing.assert_allclose(got[name], g, rtol=1e-12, atol=1e-14, err_msg=name)


def test_batch_first_false_says_its_layout_and_is_kept_in_the_config():
    ours = xn.layers.MultiheadAttention(E, H, batch_first=False)
    with pytest.raises(ValueError, match=r"expected query \(L, N, 6\), key \(S, N, 6\) and value \(S, N, 6\) "
                                         r"\(batch_first=False; .*got \(3, 2, 6\), \(4, 5, 6\) and \(4, 5, 6\)"):
        ours(np.zeros((L, N, E), np.float32), np.zeros((S, 5, E), np.float32), np.zeros((S, 5, E), np.float32))
    with pytest.raises(ValueError, match=r"\(batch_first=False; one sequence as x\[:, None\]\), got \(3, 6\)"):
        ours(*[np.zeros((L, E), np.float32)] * 3)  # PyTorch's unbatched (L, E): the hint where it is needed
    assert ours.config()["batch_first"] is False and "batch_first" not in xn.layers.MultiheadAttention(E, H).config()
    assert xn.layers.MultiheadAttention(**ours.config()).batch_first is False
