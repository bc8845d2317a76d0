"""A recurrent layer's state handed to another as its start state (xpnet/layers/state_handoff.py): a seq2seq
model's written-out backward that leaves the decoder's ``dh`` out of the encoder's backward is refused there,
naming the argument; passing it gives PyTorch's gradients (float64, against autograd); the legitimate ways not
to pass it (a copy, explicit zeros, evaluation, a zero start, a stateful layer's carry) run as before.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import library_device, require_cuda

import xpnet as xn

D, H, N, T = 3, 4, 2, 5
rng = np.random.default_rng(0)
X, Y, W = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, D)), rng.standard_normal((N, T, H))


class Seq2seq(xn.Model):
    """PyTorch's ``enc_out, h = self.encoder(x); out, _ = self.decoder(y, h)``, the loss ``sum((enc_out + out) * W)``;
    ``passes``: whether backward hands the decoder's state gradient to the encoder (the porter's slip: it does not)."""

    def __init__(self, kind, num_layers=1, passes=True):
        super().__init__()
        make = getattr(xn.layers, kind)
        self.encoder = make(D, H, num_layers=num_layers, return_state=True, dtype="float64")
        self.decoder = make(D, H, num_layers=num_layers, return_state=True, dtype="float64")
        self.passes = passes

    def forward(self, x, y, train=True):
        self.enc_out, state = self.encoder(x)
        out, _ = self.decoder(y, state)
        return out

    def backward(self, dout):
        self.decoder.backward(dout)
        states = {}
        if self.passes:
            states["dh_n"] = self.decoder.dh
            if isinstance(self.decoder, xn.layers.LSTM):
                states["dc_n"] = self.decoder.dc
        self.encoder.backward(W, **states)
        return None, None


def _torch_grads(torch, model, kind, num_layers, detach=False):
    """The encoder's gradients by PyTorch's autograd, the same weights, float64."""
    torch.manual_seed(0)
    make = getattr(torch.nn, kind)
    encoder, decoder = (make(D, H, num_layers=num_layers, batch_first=True).double() for _ in range(2))
    xn.load_torch_state_dict(model.encoder, encoder.state_dict())
    xn.load_torch_state_dict(model.decoder, decoder.state_dict())
    enc_out, state = encoder(torch.tensor(X))
    if detach:
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
    out, _ = decoder(torch.tensor(Y), state)
    ((enc_out + out) * torch.tensor(W)).sum().backward()
    return {name: p.grad.numpy() for name, p in encoder.named_parameters()}


def _ours(model):
    """The encoder's gradients in PyTorch's names and layout (weight_ih_l0 = Wx.T, both biases b's gradient)."""
    grads = {}
    layers = model.encoder.layers() if hasattr(model.encoder, "layers") else [model.encoder]
    for k, layer in enumerate(layers):
        g = layer.grads
        grads.update({f"weight_ih_l{k}": g["Wx"].T, f"weight_hh_l{k}": g["Wh"].T})
        grads.update({f"bias_ih_l{k}": g.get("b", g.get("bx")), f"bias_hh_l{k}": g.get("b", g.get("bh"))})
    return grads


@pytest.mark.parametrize("kind, num_layers", [("GRU", 1), ("LSTM", 2)])
def test_an_encoder_backward_without_the_decoders_state_gradient_is_refused(kind, num_layers):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    model = Seq2seq(kind, num_layers, passes=False)
    expected = _torch_grads(torch, model, kind, num_layers)
    model(X, Y)
    with pytest.raises(RuntimeError) as caught:
        model.backward(W)
    text = str(caught.value)
    states = "dh_n=decoder.dh, dc_n=decoder.dc" if kind == "LSTM" else "dh_n=decoder.dh"
    assert text.startswith(f"{kind}.backward: the {kind} it was handed to started from its final state"), text
    assert f"Pass it: backward(dhs, {states})" in text and "PyTorch's autograd carries" in text, text
    assert "xp.asarray(h_n, copy=True)" in text and "dh_n=xp.zeros_like(h_n)" in text, text
    model.passes = True  # written as PyTorch's autograd computes it
    model(X, Y)
    model.backward(W)
    got = _ours(model)
    for name, g in expected.items():
        np.testing.assert_allclose(got[name], g, rtol=1e-10, atol=1e-12, err_msg=name)


def test_the_books_start_from_the_encoders_last_output_is_refused_without_dh_and_agrees_with_it():
    """The book's seq2seq: ``decoder.set_state(hs[:, -1])``; its backward adds ``dh`` at the last step."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    encoder, decoder = (xn.layers.LSTM(D, H, dtype="float64") for _ in range(2))
    theirs = [torch.nn.LSTM(D, H, batch_first=True).double() for _ in range(2)]
    for ours, their in zip((encoder, decoder), theirs):
        xn.load_torch_state_dict(ours, their.state_dict())
    hs, _ = theirs[0](torch.tensor(X))
    out, _ = theirs[1](torch.tensor(Y), (hs[:, -1][None], torch.zeros(1, N, H, dtype=torch.float64)))
    (out * torch.tensor(W)).sum().backward()

    def step(adds):
        hs = encoder(X)
        decoder.set_state(hs[:, -1])
        decoder.backward(W + 0 * decoder(Y))
        dhs = np.zeros_like(hs)
        if adds:
            dhs[:, -1] += decoder.dh
        encoder.backward(dhs)

    with pytest.raises(RuntimeError, match=r"^LSTM.backward: the LSTM it was handed to started from its output "
                                           r"\(hs\[:, -1\] as the start state, the book's seq2seq\).*dhs\[:, -1\] \+= "
                                           r"decoder.dh, before this backward"):
        step(adds=False)
    step(adds=True)
    np.testing.assert_allclose(encoder.grads["Wx"], theirs[0].weight_ih_l0.grad.numpy().T, rtol=1e-10, atol=1e-12)


def test_a_state_cut_on_purpose_used_in_evaluation_or_never_handed_runs_as_before():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    model = Seq2seq("GRU")
    detached = _torch_grads(torch, model, "GRU", 1, detach=True)
    enc, dec = model.encoder, model.decoder
    out, h = enc(X)
    dec.backward(W + 0 * dec(Y, np.array(h, copy=True))[0])  # a copy: PyTorch's h.detach()
    enc.backward(W)
    got = _ours(model)
    for name, g in detached.items():
        np.testing.assert_allclose(got[name], g, rtol=1e-10, atol=1e-12, err_msg=name)
    out, h = enc(X)
    dec.backward(W + 0 * dec(Y, h)[0])
    assert pickle.loads(pickle.dumps(dec)).params.keys() == dec.params.keys()  # its link to enc is no pickle's matter
    enc.backward(np.zeros_like(out), np.zeros_like(h))  # explicit zeros: cut on purpose
    out, h = enc(X)
    with xn.no_grad():
        dec(Y, h, train=False)  # evaluation: no backward of the decoder
    dec.backward(W + 0 * dec(Y, None)[0])  # a fresh zero start
    enc.backward(np.zeros_like(out))
    stateful = xn.layers.LSTM(D, H, stateful=True, dtype="float64")  # truncated BPTT: the carried state
    for _ in range(2):
        stateful.backward(np.ones((N, T, H)) + 0 * stateful(X))


class _Twice(xn.Model):
    """``_, h = self.gru(x); out, _ = self.gru(y, h)``: one GRU, its final state fed to its next call; ``cut``: the
    first call under ``xn.no_grad()`` (truncated backpropagation through time), whose backward never comes."""

    def __init__(self, passes, cut=False):
        super().__init__()
        self.gru, self.passes, self.cut = xn.layers.GRU(D, H, return_state=True, dtype="float64"), passes, cut

    def forward(self, x, y, train=True):
        with xn.no_grad() if self.cut else xn.enable_grad():
            _, h = self.gru(x)
        return self.gru(y, h)[0]

    def backward(self, dout):
        self.gru.backward(dout)
        if not self.cut:
            self.gru.backward(np.zeros_like(dout), self.gru.dh if self.passes else None)
        return None, None


def test_a_layers_own_final_state_fed_to_its_next_call_needs_its_gradient_too():
    """A loop of calls, ``out, h = gru(x_t, h)``: each backward hands ``gru.dh`` to the call before."""
    model = _Twice(passes=False)
    model(X, Y)
    with pytest.raises(RuntimeError, match=r"^GRU.backward: GRU itself, in a later call, started from its final "
                                           r"state \(h_n, as hx or by set_state\)"):
        model.backward(W)
    model.passes = True
    model(X, Y)
    model.backward(W)
    cut = _Twice(passes=False, cut=True)
    for _ in range(2):
        cut(X, Y)
        cut.backward(W)


@pytest.mark.gpu
def test_on_cupy_the_handoff_is_followed_through_views_as_on_numpy():
    """CuPy's views name their owner in ``.base`` as NumPy's do (``h_n[0]``, ``hs[:, -1]``): the encoder's backward
    without the decoder's dh is refused there too, and with it the gradients equal NumPy's."""
    dev = require_cuda()
    on = {name: xn.to_device(a, dev) for name, a in (("x", X), ("y", Y), ("w", W))}
    grads = {}
    for where, arrays in (("cpu", {"x": X, "y": Y, "w": W}), ("cuda", on)):
        xn.init.seed(0)
        model = Seq2seq("LSTM", passes=False).to(dev if where == "cuda" else "cpu")
        model.forward(arrays["x"], arrays["y"])
        with pytest.raises(RuntimeError, match=r"Pass it: backward\(dhs, dh_n=decoder.dh, dc_n=decoder.dc\)"):
            model.decoder.backward(arrays["w"])
            model.encoder.backward(arrays["w"])
        model.forward(arrays["x"], arrays["y"])
        model.decoder.backward(arrays["w"])
        model.encoder.backward(arrays["w"], dh_n=model.decoder.dh, dc_n=model.decoder.dc)
        grads[where] = {k: xn.to_numpy(g) for k, g in model.encoder.grads.items()}
    for k, g in grads["cpu"].items():
        np.testing.assert_allclose(grads["cuda"][k], g, rtol=1e-12, atol=1e-12, err_msg=k)


class _CellDecoder(xn.Model):
    """The translation tutorial's shape with a decoder written per step: ``enc_out, h = self.encoder(x)``, then
    ``h = self.cell(y[:, t], h)`` for each t (LSTMCell: ``(h, c)``); the loss ``sum((enc_out + outs) * W)``.
    ``passes``: whether backward hands the state gradient the cell's first call returned to the encoder."""

    def __init__(self, kind, passes=True):
        super().__init__()
        self.encoder = getattr(xn.layers, kind)(D, H, return_state=True, dtype="float64")
        self.cell = getattr(xn.layers, kind + "Cell")(D, H, dtype="float64")
        self.passes = passes

    def forward(self, x, y, train=True):
        self.enc_out, state = self.encoder(x)
        state = tuple(s[0] for s in state) if isinstance(state, tuple) else state[0]
        outs = []
        for t in range(y.shape[1]):
            state = self.cell(y[:, t], state)
            outs.append(state[0] if isinstance(state, tuple) else state)
        return np.stack(outs, axis=1)

    def backward(self, dout):
        lstm = isinstance(self.cell, xn.layers.LSTMCell)
        dh, dc = np.zeros((N, H)), np.zeros((N, H))
        for t in reversed(range(dout.shape[1])):
            if lstm:
                _, (dh, dc) = self.cell.backward(dout[:, t] + dh, dc)
            else:
                _, dh = self.cell.backward(dout[:, t] + dh)
        states = {"dh_n": dh[None], "dc_n": dc[None]} if lstm else {"dh_n": dh[None]}
        self.encoder.backward(W, **(states if self.passes else {}))
        return None, None


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_a_decoder_cell_loop_from_the_encoders_state_is_followed_as_a_layer_is(kind):
    """A decoder written as a loop of a cell started from the encoder's ``h_n`` (time_sequence_prediction's
    LSTMCell, the tutorial's per-step GRU): the encoder's backward without the state gradient the cell's first call
    returned is refused; passing it gives PyTorch's encoder gradients (float64, autograd)."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    model = _CellDecoder(kind, passes=False)
    torch.manual_seed(0)
    encoder, cell = getattr(torch.nn, kind)(D, H, batch_first=True).double(), \
        getattr(torch.nn, kind + "Cell")(D, H).double()
    xn.load_torch_state_dict(model.encoder, encoder.state_dict())
    xn.load_torch_state_dict(model.cell, cell.state_dict())
    enc_out, state = encoder(torch.tensor(X))
    state = tuple(s[0] for s in state) if isinstance(state, tuple) else state[0]
    outs = []
    for t in range(T):
        state = cell(torch.tensor(Y[:, t]), state)
        outs.append(state[0] if isinstance(state, tuple) else state)
    ((enc_out + torch.stack(outs, 1)) * torch.tensor(W)).sum().backward()
    model(X, Y)
    states = "dh_n and dc_n" if kind == "LSTM" else "dh_n"
    with pytest.raises(RuntimeError, match=rf"^{kind}.backward: the {kind}Cell it was handed to started from its final "
                                           rf"state .*\({states} None\)"):
        model.backward(W)
    model.passes = True
    model(X, Y)
    model.backward(W)
    got = _ours(model)
    for name, p in encoder.named_parameters():
        np.testing.assert_allclose(got[name], p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_a_decoder_state_gradient_only_read_passes_nothing():
    """Reading ``decoder.dh`` (a print) passes nothing: a final state's gradient comes back only as ``dh_n``/``dc_n``
    (the book's ``dhs[:, -1] += decoder.dh`` for a start from the output stays as it was)."""
    model = Seq2seq("LSTM", passes=False)
    model(X, Y)
    model.decoder.backward(W)
    print(model.decoder.dh.sum(), model.decoder.dc.sum())
    with pytest.raises(RuntimeError, match=r"^LSTM.backward: the LSTM it was handed to started from its final state"):
        model.encoder.backward(W, dh_n=model.decoder.dh)  # dc_n left out


@pytest.mark.parametrize("spec", ["torch:cpu", "jax:cpu"])
def test_on_pytorchs_and_jaxs_arrays_the_handoff_is_followed_as_on_numpy(spec):
    """PyTorch's views name their owner in ``._base``; JAX's rows are new arrays, followed where ``h_n`` itself is
    passed on as ``hx`` (PyTorch's way)."""
    dev = library_device(spec)
    model = Seq2seq("GRU", passes=False).to(dev)
    x, y, w = (xn.to_device(a, dev) for a in (X, Y, W))
    model(x, y)
    model.decoder.backward(w)
    with pytest.raises(RuntimeError, match=r"^GRU.backward: the GRU it was handed to started from its final state"):
        model.encoder.backward(w)


class _CellEncoder(xn.Model):
    """An encoder written as a loop of a cell, ``h = self.cell(x[:, t], h)``, its last state given to the decoder:
    a layer (``out, _ = self.decoder(y, h[None])``; the loss also reads the encoder's outputs) or a loop of a second
    cell (the loss reads the decoder's outputs alone). ``passes``: whether backward hands the decoder's state
    gradient (``decoder.dh``, or the ``dh_prev`` its first call's backward returned) to the encoder's last call."""

    def __init__(self, kind, decoder, passes=True):
        super().__init__()
        self.cell = getattr(xn.layers, kind + "Cell")(D, H, dtype="float64")
        layer = decoder == "layer"
        self.decoder = getattr(xn.layers, kind + ("" if layer else "Cell"))(
            D, H, dtype="float64", **({"return_state": True} if layer else {}))
        self.lstm, self.layer, self.passes = kind == "LSTM", layer, passes

    def forward(self, x, y, train=True):
        state, hs = None, []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
            hs.append(state[0] if self.lstm else state)
        self.hs = np.stack(hs, 1)
        if self.layer:
            return self.decoder(y, tuple(s[None] for s in state) if self.lstm else state[None])[0]
        outs = []
        for t in range(y.shape[1]):
            state = self.decoder(y[:, t], state)
            outs.append(state[0] if self.lstm else state)
        return np.stack(outs, 1)

    def backward(self, dout):
        if self.layer:
            self.decoder.backward(dout)
            carried = (self.decoder.dh[0], self.decoder.dc[0] if self.lstm else None) if self.passes else \
                (np.zeros((N, H)), np.zeros((N, H)) if self.lstm else None)  # the porter's slip: zeros to start
            dhs = W
        else:
            dh = dc = None
            for t in reversed(range(dout.shape[1])):
                g = dout[:, t] if dh is None else dout[:, t] + dh
                _, state = self.decoder.backward(g, dc) if self.lstm else self.decoder.backward(g)
                dh, dc = state if self.lstm else (state, None)
            carried = (dh, dc) if self.passes else (None, None)  # the slip: the encoder's loop starts from None
            dhs = None  # the loss reads no encoder output: the state's gradient alone goes back
        dh, dc = carried
        for t in reversed(range(T)):
            g = dh if dhs is None else dhs[:, t] + dh
            _, state = self.cell.backward(g, dc) if self.lstm else self.cell.backward(g)
            dh, dc = state if self.lstm else (state, None)
        return None, None


@pytest.mark.parametrize("kind, decoder", [("GRU", "layer"), ("LSTM", "cell")])
def test_an_encoder_written_as_a_cell_loop_is_followed_as_a_layer_is(kind, decoder):
    """The encoder's last call's backward without the decoder's state gradient is refused: a decoder layer's dh
    never read (zeros to start the loop), or a decoder cell's dh_prev left out (dh None); passing it gives PyTorch's
    gradients (float64, autograd)."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    model = _CellEncoder(kind, decoder, passes=False)
    torch.manual_seed(0)
    cell = getattr(torch.nn, kind + "Cell")(D, H).double()
    dec = (getattr(torch.nn, kind)(D, H, batch_first=True) if decoder == "layer" else
           getattr(torch.nn, kind + "Cell")(D, H)).double()
    xn.load_torch_state_dict(model.cell, cell.state_dict())
    xn.load_torch_state_dict(model.decoder, dec.state_dict())
    state, hs = None, []
    for t in range(T):
        state = cell(torch.tensor(X[:, t]), state)
        hs.append(state[0] if kind == "LSTM" else state)
    if decoder == "layer":
        out = dec(torch.tensor(Y), tuple(s[None] for s in state) if kind == "LSTM" else state[None])[0]
        loss = (torch.stack(hs, 1) * torch.tensor(W)).sum() + (out * torch.tensor(W)).sum()
    else:
        outs = []
        for t in range(T):
            state = dec(torch.tensor(Y[:, t]), state)
            outs.append(state[0] if kind == "LSTM" else state)
        loss = (torch.stack(outs, 1) * torch.tensor(W)).sum()
    loss.backward()
    model(X, Y)
    came = r"dh and dc None here" if decoder == "cell" else r"GRU.dh not read since GRU's backward"
    with pytest.raises(RuntimeError, match=rf"^{kind}Cell.backward: the {kind}(Cell)? it was handed to started from "
                                           rf"the state of the call this backward serves .*\({came}\).*Pass it: "):
        model.backward(W)
    model.passes = True
    model(X, Y)
    model.backward(W)
    g = model.cell.grads
    ours = {"weight_ih": g["Wx"].T, "weight_hh": g["Wh"].T, "bias_ih": g.get("bx", g.get("b")),
            "bias_hh": g.get("bh", g.get("b"))}
    for name, p in cell.named_parameters():
        np.testing.assert_allclose(ours[name], p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
