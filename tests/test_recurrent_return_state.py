"""RNN, LSTM and GRU with return_state=True, PyTorch's calling convention: out, (h_n, c_n) = lstm(x, (h0, c0)),
equal to torch.nn's in float64 (out, h_n, c_n, dx, dh0, dc0, every parameter gradient); a model written PyTorch's
way trains; the Sequential's refusal, saving, and the error a model's forward gets for unpacking the output of a
layer built without the switch."""

import numpy as np
import pytest
from test_recurrent_stack import _compare_with_torch

import xpnet as xn
from xpnet.layers import GRU, LSTM, RNN

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

N, T, D, H = 3, 4, 3, 5
TOL = {"rtol": 1e-11, "atol": 1e-12}


@pytest.mark.parametrize("kind, options, batch_first", [
    ("LSTM", {}, True), ("GRU", {}, True), ("RNN", {}, False),
    ("LSTM", {"num_layers": 2, "bidirectional": True}, True),
    ("LSTM", {"proj_size": 2, "num_layers": 2}, False),
], ids=["LSTM", "GRU", "RNN-time-first", "LSTM-2-layers-bidirectional", "LSTM-proj_size-2-layers-time-first"])
def test_equals_pytorch_in_float64(kind, options, batch_first):
    """layer(x, hx) gives PyTorch's out and h_n (c_n), each state (num_layers * num_directions, N, H_out);
    backward(dout, dh_n, dc_n) in those shapes gives its dx, dh0, dc0 (layer.dh, layer.dc in h0's shape) and
    every parameter gradient."""
    _compare_with_torch(kind, options, xn.device("cpu"), batch_first=batch_first, final=True, return_state=True)


def _torch_lstm(rng):
    module = torch.nn.LSTM(D, H, batch_first=True, dtype=torch.float64)
    layer = LSTM(D, H, dtype="float64", return_state=True, stateful=True)
    xn.load_torch_state_dict(layer, module.state_dict())
    return module, layer


def test_stateful_carries_its_state_and_hx_overrides_it(rng):
    """stateful=True: two calls of T steps give PyTorch's one call of 2T, h_n and c_n at each end; an hx given
    starts its call from it, and None from zeros, whatever was carried."""
    module, layer = _torch_lstm(rng)
    x = rng.standard_normal((N, 2 * T, D))
    out, (hn, cn) = module(torch.from_numpy(x))
    (y1, _), (y2, (h2, c2)) = layer(x[:, :T]), layer(x[:, T:])
    np.testing.assert_allclose(np.concatenate([y1, y2], axis=1), out.detach().numpy(), **TOL)
    np.testing.assert_allclose(h2, hn.detach().numpy(), **TOL)
    np.testing.assert_allclose(c2, cn.detach().numpy(), **TOL)
    h0, c0 = rng.standard_normal((1, N, H)), rng.standard_normal((1, N, H))
    out, (hn, _) = module(torch.from_numpy(x[:, :T]), (torch.from_numpy(h0), torch.from_numpy(c0)))
    y, (h, _) = layer(x[:, :T], (h0, c0))
    np.testing.assert_allclose(y, out.detach().numpy(), **TOL)
    np.testing.assert_allclose(layer.h, hn.detach().numpy()[0], **TOL)  # carried on from there
    np.testing.assert_allclose(layer(x[:, :T], None)[0], y1, **TOL)


class PyTorchWay(xn.Model):
    """A classifier of sequences as PyTorch's users write it: the LSTM from a given state, its last output."""

    def __init__(self):
        super().__init__()
        self.lstm = LSTM(D, H, return_state=True)
        self.fc = xn.layers.Linear(H, 2)

    def forward(self, x, train=True):
        h0 = c0 = np.zeros((1, x.shape[0], H), np.float32)
        out, (h, c) = self.lstm(x, (h0, c0))
        self.steps = out.shape[1]
        return self.fc(out[:, -1])

    def backward(self, dy):
        dlast = self.fc.backward(dy)
        dout = np.zeros((dlast.shape[0], self.steps, H), np.float32)
        dout[:, -1] = dlast
        return self.lstm.backward(dout)


def test_a_model_written_pytorchs_way_trains_and_saves_the_switch(tmp_path, rng):
    xn.init.seed(0)
    x = rng.standard_normal((32, T, D)).astype(np.float32)
    t = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)
    model = PyTorchWay()
    history = xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.Adam(model, lr=0.05), epochs=4,
                       batch_size=8, progress=False)
    assert history.epochs[-1]["train_loss"] < 0.5 * history.epochs[0]["train_loss"]
    model.save(tmp_path / "m.npz")
    again = xn.load(tmp_path / "m.npz")
    assert again.lstm.return_state and "return_state=True" in repr(again.lstm)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    stack = LSTM(D, H, num_layers=2, return_state=True)
    assert repr(LSTM.from_config(stack.config())) == repr(stack) == \
        "LSTM(input_size=3, hidden_size=5, dtype='float32', return_state=True, num_layers=2)"


def test_a_non_finite_step_is_found_past_the_layers_tuple_outputs(rng):
    """xn.train's search for the first non-finite value replays the epoch's earlier steps watching every layer, whose
    outputs here are (out, (h_n, c_n))."""
    x = rng.standard_normal((16, T, D)).astype(np.float32)
    x[-1, 0, 0] = np.nan
    with pytest.raises(xn.XpnetTrainingError, match=r"epoch 1, step 2 of 2; first non-finite value: the input batch"):
        xn.train(PyTorchWay(), (x, np.zeros(16, np.int64)), loss="cross_entropy", optimizer="sgd", epochs=1,
                 batch_size=8, shuffle=False, progress=False)


class FromFinalState(xn.Model):
    """PyTorch's other classifier: the scores from h_n, whose gradient backward takes by position."""

    def __init__(self):
        super().__init__()
        self.lstm = LSTM(D, H, return_state=True)
        self.fc = xn.layers.Linear(H, 2)

    def forward(self, x, train=True):
        out, (h_n, c_n) = self.lstm(x)
        self.shape = out.shape
        return self.fc(h_n[-1])

    def backward(self, dy):
        dh = self.fc.backward(dy)
        return self.lstm.backward(np.zeros(self.shape, dh.dtype), dh[None])


def test_backward_given_dh_n_by_position_is_watched_by_gradcheck_and_the_guard(rng):
    """gradcheck's and the NaN guard's watchers took one gradient per backward: dh_n by position failed there."""
    x = rng.standard_normal((4, T, D))
    assert xn.gradcheck(FromFinalState().to(dtype="float64"), x, np.array([0, 1, 1, 0]), loss="cross_entropy",
                        max_entries=8)  # every tensor's gradient comes back through dh_n: 8 entries each show it
    x[-1, 0, 0] = np.nan
    with pytest.raises(xn.XpnetTrainingError, match=r"epoch 1, step 2 of 2; first non-finite value: the input batch"):
        xn.train(FromFinalState(), (x.astype(np.float32), np.zeros(4, np.int64)), loss="cross_entropy",
                 optimizer="sgd", epochs=1, batch_size=2, shuffle=False, progress=False)


@pytest.mark.parametrize("make, call", [(lambda: LSTM(D, H, return_state=True),
                                          r"out, \(h_n, c_n\) = self.lstm\(x, \(h0, c0\)\)"),
                                         (lambda: GRU(D, H, num_layers=2, return_state=True),
                                          r"out, h_n = self.gru\(x, h0\)")], ids=["LSTM", "GRU-stack"])
def test_a_sequential_refuses_it_saying_what_to_write(make, call):
    with pytest.raises(ValueError, match=r"Sequential: item 0, .*, returns \(out, .*\) \(return_state=True\), which "
                                         r"the next layer cannot take: leave return_state out in a Sequential .*"
                                         r"or write an xn.Model whose forward unpacks it, " + call):
        xn.Sequential(make(), xn.layers.Linear(H, 2))


class Unpacking(xn.Model):
    """PyTorch's forward over an xpnet LSTM built without return_state."""

    def __init__(self, deeper=False):
        super().__init__()
        self.encoder = xn.Sequential(xn.layers.Linear(D, D), LSTM(D, H))
        self.deeper = deeper

    def forward(self, x, train=True):
        if self.deeper:
            return _first_and_rest(self.encoder(x))
        out, (h, c) = self.encoder(x)
        return out


def _first_and_rest(y):
    first, rest = y  # an unpacking error of a function the forward calls: no hint
    return first


@pytest.mark.parametrize("n, error", [(3, r"too many values to unpack \(expected 2\)"),
                                      (1, r"not enough values to unpack \(expected 2, got 1\)")])
def test_unpacking_the_output_pytorchs_way_says_what_the_layer_returns(rng, n, error):
    x = rng.standard_normal((n, T, D)).astype(np.float32)
    with pytest.raises(ValueError, match=r"^Unpacking.forward: " + error + r"; Unpacking holds 'encoder.1' \(LSTM\), "
                                         r"and xpnet's RNN, LSTM and GRU return the output alone, one array: write "
                                         r"out = self.encoder\[1\]\(x\), or build it as xn.layers.LSTM\(..., "
                                         r"return_state=True\) for PyTorch's out, \(h_n, c_n\) = "
                                         r"self.encoder\[1\]\(x, \(h0, c0\)\)$") as caught:
        Unpacking()(x)
    assert isinstance(caught.value.__cause__, ValueError) and str(caught.value.__cause__).startswith(error[:8])
    with pytest.raises(ValueError, match=r"^too many values to unpack \(expected 2\)$"):
        Unpacking(deeper=True)(rng.standard_normal((3, T, D)).astype(np.float32))


def test_arguments_that_do_not_fit_are_refused(rng):
    x = rng.standard_normal((N, T, D)).astype(np.float32)
    lstm, gru = LSTM(D, H, return_state=True), GRU(D, H, return_state=True)
    with pytest.raises(TypeError, match=r"LSTM.forward\(x, hx\): hx is a pair \(h0, c0\) of arrays of shape "
                                        r"\(1, N, 5\) \(num_layers \* num_directions, as PyTorch's; None: zeros\), "
                                        r"got ndarray"):
        lstm(x, np.zeros((1, N, H), np.float32))
    with pytest.raises(ValueError, match=r"GRU.forward\(x, hx\): h0 must have shape \(1, N, 5\), PyTorch's "
                                         r"\(num_layers \* num_directions, N, H_out\), got \(3, 5\)"):
        gru(x, np.zeros((N, H), np.float32))  # the (N, H) of set_state
    with pytest.raises(ValueError, match=r"GRU: hx holds 2 sequences but the input has 3; give hx the input's N"):
        gru(x, np.zeros((1, 2, H), np.float32))
    with pytest.raises(TypeError, match=r"GRU.forward\(x, hx\): with return_state=True the second argument is "
                                        r"PyTorch's hx, the start state, got False; pass train by name"):
        gru(x, False)
    y, h_n = gru(x, train=False)
    assert y.shape == (N, T, H) and h_n.shape == (1, N, H)
    gru(x)
    with pytest.raises(ValueError, match=r"GRU.backward: dh_n must have shape \(1, N, 5\), the h_n the forward "
                                         r"returned \(return_state=True\), got \(3, 5\)"):
        gru.backward(np.zeros_like(y), np.zeros((N, H), np.float32))
    with pytest.raises(TypeError, match=r"RNN.forward\(x, train\): takes no hx; .* or build the layer with "
                                        r"return_state=True for PyTorch's out, h_n = rnn\(x, h0\)$"):
        RNN(D, H)(x, hx=None)
