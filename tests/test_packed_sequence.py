"""xn.layers.pack_padded_sequence / pad_packed_sequence around RNN, LSTM and GRU: each sequence over its own length,
equal to PyTorch's packed sequences in float64 (outputs, h_n, dx, dh0, every parameter gradient); what differs
from PyTorch's is refused, saying what to write."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L

T, N, D, H = 5, 3, 4, 3


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _run_torch(torch, module, x, lengths, batch_first, enforce_sorted, dy, dh):
    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, lengths, batch_first=batch_first,
                                                     enforce_sorted=enforce_sorted)
    out, h_n = module(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=batch_first)
    h_n = h_n[0] if isinstance(h_n, tuple) else h_n
    torch.autograd.backward([out, h_n], [torch.tensor(dy), torch.tensor(dh)])
    return out.detach().numpy(), h_n.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("kind, num_layers, bidirectional, batch_first, lengths", [
    ("GRU", 2, True, False, [5, 3, 2]),         # chatbot_tutorial's encoder: time first
    ("LSTM", 1, True, True, [2, 4, 1]),         # unsorted (enforce_sorted=False), shorter than T: 4 steps back
])
def test_packed_sequences_run_as_pytorchs(kind, num_layers, bidirectional, batch_first, lengths):
    torch = _torch()
    torch.manual_seed(0)
    theirs = getattr(torch.nn, kind)(D, H, num_layers, bidirectional=bidirectional, batch_first=batch_first).double()
    convention = {} if kind == "GRU" else {"convention": "pytorch"}
    ours = getattr(L, kind)(D, H, num_layers=num_layers, bidirectional=bidirectional, return_state=True,
                            dtype="float64", **convention)  # batch first: a packed input has its own layout
    xn.load_torch_state_dict(ours, theirs.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, T, D) if batch_first else (T, N, D))
    steps = max(lengths)
    dy = rng.standard_normal((N, steps, 2 * H) if batch_first else (steps, N, 2 * H))
    dh = rng.standard_normal((num_layers * 2, N, H))
    sorted_ = lengths == sorted(lengths, reverse=True)
    out, h_n, dx = _run_torch(torch, theirs, x, lengths, batch_first, sorted_, dy, dh)

    packed = L.pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=sorted_)
    y, state = ours(packed)
    y, got_lengths = L.pad_packed_sequence(y, batch_first=batch_first)
    np.testing.assert_allclose(y, out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state if kind == "GRU" else state[0], h_n, rtol=1e-12, atol=1e-12)
    assert got_lengths.tolist() == lengths
    np.testing.assert_allclose(ours.backward(dy, dh), dx, rtol=1e-12, atol=1e-12)
    for name, p in theirs.named_parameters():
        base, level = name.rsplit("_l", 1)
        ours_name = {"weight_ih": "Wx", "weight_hh": "Wh", "bias_ih": "bx", "bias_hh": "bh"}[base]
        g = ours.named_grads()[f"l{level}.{ours_name}"]
        np.testing.assert_allclose(g.T if ours_name[0] == "W" else g, p.grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)


def test_a_packed_bidirectional_gru_gives_the_same_on_every_device(dev):
    gru = L.GRU(D, H, bidirectional=True, batch_first=False, return_state=True, dtype="float64")
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((T, N, D)), rng.standard_normal((T, N, 2 * H))
    lengths = [5, 4, 2]

    def run(layer, send):
        y, h_n = layer(L.pack_padded_sequence(send(x), lengths))
        y, _ = L.pad_packed_sequence(y)
        return [xn.to_numpy(a) for a in (y, h_n, layer.backward(send(dy)), layer.dh)]

    expected = run(gru, lambda a: a)
    moved = gru.to(dev)
    for got, want in zip(run(moved, lambda a: xn.to_device(a, dev)), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_what_differs_from_pytorchs_packing_is_refused():
    x = np.zeros((T, N, D))
    with pytest.raises(ValueError, match=r"sorted in decreasing order when enforce_sorted=True.*enforce_sorted=False"):
        L.pack_padded_sequence(x, [2, 5, 1])
    with pytest.raises(ValueError, match=r"every length must be in \[1, T = 5\], got \[5, 3, 0\]"):
        L.pack_padded_sequence(x, [5, 3, 0])
    packed = L.pack_padded_sequence(x, [5, 3, 1])
    with pytest.raises(AttributeError, match=r"keeps the padded array, not PyTorch's flat packed rows"):
        packed.data
    gru = L.GRU(D, H, dtype="float64")
    out = gru(packed)
    with pytest.raises(ValueError, match=r"batch_first=True, but the sequence was packed with batch_first=False"):
        L.pad_packed_sequence(out, batch_first=True)
    with pytest.raises(ValueError, match=r"gradient of pad_packed_sequence's output, \(T, N, H\) .* N = 3 and T >= 5"):
        gru.backward(np.zeros((N, T, H)))
    with pytest.raises(TypeError, match=r"Dropout: got a PackedSequence, which only RNN, LSTM and GRU take.*"
                                        r"pad_packed_sequence\(packed\)"):
        L.Dropout(0.1)(packed)
    gru2 = L.GRU(D, H, return_state=True, dtype="float64")
    with pytest.raises(ValueError, match=r"hx holds 5 sequences but the input has 3; give hx the input's N$"):
        gru2(packed, np.zeros((1, T, H)))  # a packed input's layout is the packing's: no batch_first hint


def test_pad_sequence_pads_as_pytorchs():
    """torch.nn.utils.rnn.pad_sequence (a collate_fn's batch of several lengths) was missing: a bare AttributeError.
    Equal to PyTorch's in float64, time first by default, batch first, padded right and left."""
    torch = _torch()
    rng = np.random.default_rng(0)
    seqs = [rng.standard_normal((length, 2)) for length in (3, 5, 1)]
    for batch_first in (False, True):
        for side in ("right", "left"):
            ours = L.pad_sequence(seqs, batch_first=batch_first, padding_value=-1.0, padding_side=side)
            theirs = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in seqs], batch_first=batch_first,
                                                     padding_value=-1.0, padding_side=side)
            np.testing.assert_array_equal(ours, theirs.numpy())
    ids = L.pad_sequence([np.array([4, 2]), np.array([7])], True)
    assert ids.dtype == np.int64 and ids.tolist() == [[4, 2], [7, 0]]
    with pytest.raises(ValueError, match=r"^pad_sequence: sequence 1 is of shape \(2, 3\) and dtype float64, where "
                                         r"sequence 0 is of shape \(3, 2\) and dtype float64"):
        L.pad_sequence([seqs[0], np.ones((2, 3))])
    with pytest.raises(ValueError, match=r"^pad_sequence: padding_side must be 'right' or 'left', got 'up'"):
        L.pad_sequence(seqs, padding_side="up")
