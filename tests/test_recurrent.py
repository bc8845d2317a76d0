"""RNN, LSTM and GRU against PyTorch itself in float64 on every device (forward, every parameter
gradient, the input gradient and the start state's gradient), the book's GRU against the book's
formulas, xn.gradcheck on each, stateful runs, and planted bugs that these comparisons must catch."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.backend import namespace
from xpnet.layers import GRU, LSTM, RNN
from xpnet.testing import assert_gradients_ok, assert_placed

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

TOL = {"rtol": 1e-12, "atol": 1e-12}
N, T, D, H = 3, 5, 4, 6


def _copy_torch_weights(layer, module):
    """PyTorch's weights into ``layer`` as API.md says: Wx = weight_ih.T, Wh = weight_hh.T, biases summed
    (GRU: kept apart as bx, bh)."""
    p = {k: v.detach().numpy() for k, v in module.named_parameters()}
    layer.params["Wx"], layer.params["Wh"] = p["weight_ih_l0"].T.copy(), p["weight_hh_l0"].T.copy()
    if not layer.bias:
        return
    if isinstance(layer, GRU):
        layer.params["bx"], layer.params["bh"] = p["bias_ih_l0"].copy(), p["bias_hh_l0"].copy()
    else:
        layer.params["b"] = p["bias_ih_l0"] + p["bias_hh_l0"]


def _compare_with_torch(layer, kind, dev, seed=0):
    """Run ``layer`` (float64, on ``dev``) and torch.nn.<kind> (with the layer's ``batch_first`` and
    ``bias``) with the same weights, start state and output gradient; assert every result equal at TOL
    (AssertionError names the first that is not)."""
    rng = np.random.default_rng(seed)
    relu = {"nonlinearity": "relu"} if getattr(layer, "nonlinearity", "tanh") == "relu" else {}
    module = getattr(torch.nn, kind)(D, H, batch_first=layer.batch_first, bias=layer.bias, dtype=torch.float64, **relu)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape))))
    lead = (N, T) if layer.batch_first else (T, N)
    x, dhs = rng.standard_normal((*lead, D)), rng.standard_normal((*lead, H))
    start = [rng.standard_normal((N, H)) for _ in layer.state_names]
    _copy_torch_weights(layer, module)
    layer.to(dev, dtype="float64")
    layer.set_state(*[xn.to_device(s, dev) for s in start])
    y = layer.forward(xn.to_device(x, dev))
    dx = layer.backward(xn.to_device(dhs, dev))
    assert_placed(y, dev, "float64")
    assert_placed(dx, dev, "float64")

    tx = torch.tensor(x, requires_grad=True)
    tstart = [torch.tensor(s[None], requires_grad=True) for s in start]
    out, _ = module(tx, tuple(tstart) if kind == "LSTM" else tstart[0])
    out.backward(torch.from_numpy(dhs))
    g = {k: v.grad.numpy() for k, v in module.named_parameters()}
    pairs = {"output": (y, out.detach().numpy()), "dx": (dx, tx.grad.numpy()),
             "dWx": (layer.grads["Wx"], g["weight_ih_l0"].T), "dWh": (layer.grads["Wh"], g["weight_hh_l0"].T)}
    # PyTorch's two biases are one b here (but the GRU's); none either side with bias=False
    assert len(g) == len(layer.params) + (layer.bias and kind != "GRU"), (sorted(g), sorted(layer.params))
    if kind == "GRU" and layer.bias:
        pairs.update(dbx=(layer.grads["bx"], g["bias_ih_l0"]), dbh=(layer.grads["bh"], g["bias_hh_l0"]))
    elif layer.bias:
        pairs.update(db_ih=(layer.grads["b"], g["bias_ih_l0"]), db_hh=(layer.grads["b"], g["bias_hh_l0"]))
    for name, ts in zip(layer.state_names, tstart):
        pairs["d" + name] = (getattr(layer, "d" + name), ts.grad.numpy()[0])
    for name, (ours, theirs) in pairs.items():
        np.testing.assert_allclose(xn.to_numpy(ours), theirs, **TOL, err_msg=f"{kind}: {name} differs from PyTorch")


@pytest.mark.parametrize("cls, kind", [(RNN, "RNN"), (LSTM, "LSTM"), (GRU, "GRU")])
def test_equals_pytorch_in_float64(dev, cls, kind):
    _compare_with_torch(cls(D, H), kind, dev)


@pytest.mark.parametrize("options", [{}, {"batch_first": False}], ids=["batch-first", "time-first"])
def test_rnn_relu_equals_pytorch_in_float64(dev, options):
    """nn.RNN(D, H, nonlinearity='relu') (word_language_model's RNN_RELU): max(., 0) in place of tanh."""
    _compare_with_torch(RNN(D, H, nonlinearity="relu", **options), "RNN", dev)


@pytest.mark.parametrize("options", [{"batch_first": False}, {"bias": False}, {"batch_first": False, "bias": False}],
                         ids=["time-first", "no-bias", "time-first-no-bias"])
@pytest.mark.parametrize("cls, kind", [(RNN, "RNN"), (LSTM, "LSTM"), (GRU, "GRU")])
def test_pytorchs_batch_first_false_and_bias_false_mean_what_they_mean_there(dev, cls, kind, options):
    """PyTorch's default layout, time first (T, N, D), and layers without biases: the same numbers as
    torch.nn.<kind> given the same arguments."""
    _compare_with_torch(cls(D, H, **options), kind, dev)


# -- the book's GRU, written from common/time_layers.py (GRU.forward / GRU.backward) ---------------------

def _book_gru(x, h, Wx, Wh, b, dhs):
    """The book's TimeGRU forward and backward loops in NumPy, blocks z, r, h~: (hs, dx, dWx, dWh, db, dh)."""
    H_ = Wh.shape[0]
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    caches, hs = [], []
    for t in range(x.shape[1]):
        xt = x[:, t]
        z = sig(xt @ Wx[:, :H_] + h @ Wh[:, :H_] + b[:H_])
        r = sig(xt @ Wx[:, H_:2 * H_] + h @ Wh[:, H_:2 * H_] + b[H_:2 * H_])
        h_hat = np.tanh(xt @ Wx[:, 2 * H_:] + (r * h) @ Wh[:, 2 * H_:] + b[2 * H_:])
        caches.append((xt, h, z, r, h_hat))
        h = (1 - z) * h + z * h_hat
        hs.append(h)
    dx, dWx, dWh, db, dh = np.zeros_like(x), 0, 0, 0, 0
    for t in reversed(range(x.shape[1])):
        xt, h_prev, z, r, h_hat = caches[t]
        dh_next = dhs[:, t] + dh
        dt = dh_next * z * (1 - h_hat ** 2)
        dhr = dt @ Wh[:, 2 * H_:].T
        dh = dh_next * (1 - z) + r * dhr
        dtz = (dh_next * h_hat - dh_next * h_prev) * z * (1 - z)
        dtr = dhr * h_prev * r * (1 - r)
        dh = dh + dtz @ Wh[:, :H_].T + dtr @ Wh[:, H_:2 * H_].T
        dx[:, t] = dt @ Wx[:, 2 * H_:].T + dtz @ Wx[:, :H_].T + dtr @ Wx[:, H_:2 * H_].T
        dWx = dWx + xt.T @ np.hstack([dtz, dtr, dt])
        dWh = dWh + np.hstack([h_prev.T @ dtz, h_prev.T @ dtr, (r * h_prev).T @ dt])
        db = db + np.hstack([dtz, dtr, dt]).sum(axis=0)
    return np.stack(hs, axis=1), dx, dWx, dWh, db, dh


def test_book_gru_equals_the_books_own_formulas(dev, rng):
    layer = GRU(D, H, convention="book", dtype="float64")
    assert set(layer.params) == {"Wx", "Wh", "b"}
    layer.params["b"] = rng.standard_normal(3 * H)
    x, h0, dhs = rng.standard_normal((N, T, D)), rng.standard_normal((N, H)), rng.standard_normal((N, T, H))
    ref = _book_gru(x, h0, layer.params["Wx"], layer.params["Wh"], layer.params["b"], dhs)
    layer.to(dev)
    layer.set_state(xn.to_device(h0, dev))
    y = layer.forward(xn.to_device(x, dev))
    dx = layer.backward(xn.to_device(dhs, dev))
    ours = (y, dx, layer.grads["Wx"], layer.grads["Wh"], layer.grads["b"], layer.dh)
    for name, a, b in zip(("hs", "dx", "dWx", "dWh", "db", "dh"), ours, ref):
        np.testing.assert_allclose(xn.to_numpy(a), b, rtol=1e-11, atol=1e-12, err_msg=name)


def test_the_two_gru_conventions_are_different_functions(rng):
    x = rng.standard_normal((N, T, D))
    xn.init.seed(0)
    a = GRU(D, H, dtype="float64")
    xn.init.seed(0)
    b = GRU(D, H, convention="book", dtype="float64")
    assert not np.allclose(a.forward(x), b.forward(x))


@pytest.mark.parametrize("make", [lambda: RNN(3, 4), lambda: LSTM(3, 4), lambda: GRU(3, 4),
                                  lambda: GRU(3, 4, convention="book")], ids=["RNN", "LSTM", "GRU", "GRU-book"])
def test_gradcheck(dev, make, rng):
    xn.init.seed(1)
    layer = make().to(dev, dtype="float64")
    report = assert_gradients_ok(layer, rng.standard_normal((2, 3, 3)), rtol=1e-5, max_entries=24)
    assert {row.name for row in report.rows} == {*layer.params, "input"}


# -- state --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_stateful_two_calls_of_t_steps_equal_one_call_of_2t(dev, cls, rng):
    xn.init.seed(2)
    whole = cls(D, H, dtype="float64").to(dev)
    parts = cls(D, H, stateful=True, dtype="float64").to(dev)
    for k, v in whole.params.items():
        parts.params[k] = v
    x = xn.to_device(rng.standard_normal((N, 2 * T, D)), dev)
    dhs = rng.standard_normal((N, 2 * T, H))
    dhs[:, :T] = 0.0
    y = whole.forward(x)
    dx = whole.backward(xn.to_device(dhs, dev))
    y1 = parts.forward(x[:, :T, :])
    y2 = parts.forward(x[:, T:, :])
    np.testing.assert_allclose(np.concatenate([xn.to_numpy(y1), xn.to_numpy(y2)], axis=1), xn.to_numpy(y), **TOL)
    np.testing.assert_allclose(xn.to_numpy(parts.h), xn.to_numpy(y)[:, -1], **TOL)
    # The second call's input gradient sees only its own steps: where dhs is zero before them, the
    # one long sequence gives the same dx there.
    dx2 = parts.backward(xn.to_device(dhs[:, T:], dev))
    np.testing.assert_allclose(xn.to_numpy(dx2), xn.to_numpy(dx)[:, T:], **TOL)
    parts.reset_state()
    np.testing.assert_allclose(xn.to_numpy(parts.forward(x[:, :T, :])), xn.to_numpy(y1), **TOL)


def test_not_stateful_starts_every_forward_from_the_state_that_was_set(rng):
    layer = LSTM(D, H, dtype="float64")
    x = rng.standard_normal((N, T, D))
    zero_start = layer.forward(x)
    h0, c0 = rng.standard_normal((N, H)), rng.standard_normal((N, H))
    layer.set_state(h0, c0)
    first = layer.forward(x)
    np.testing.assert_array_equal(layer.forward(x), first)
    assert layer.h is h0 and layer.c is c0
    assert not np.allclose(first, zero_start)
    layer.reset_state()
    np.testing.assert_array_equal(layer.forward(x), zero_start)
    layer.set_state(h0)  # c defaults to zeros
    np.testing.assert_array_equal(layer.c, np.zeros((N, H)))


def test_state_errors_name_the_layer_and_the_shapes(rng):
    lstm = LSTM(D, H, stateful=True)
    lstm.forward(rng.standard_normal((N, T, D)).astype("float32"))
    with pytest.raises(ValueError, match="LSTM: the state holds 3 sequences but the input has 2; call reset_state"):
        lstm.forward(rng.standard_normal((2, T, D)).astype("float32"))
    with pytest.raises(ValueError, match=r"LSTM: state h must have shape \(N, 6\), got \(3, 5\)"):
        lstm.set_state(np.zeros((3, 5), "float32"))
    with pytest.raises(TypeError, match="RNN: has no cell state c"):
        RNN(D, H).set_state(np.zeros((3, H)), np.zeros((3, H)))
    with pytest.raises(ValueError, match=r"GRU: expected input of shape \(N, T, 4\) with T >= 1 \(batch first\)"):
        GRU(D, H).forward(np.zeros((N, D), "float32"))
    with pytest.raises(ValueError, match="GRU: convention must be 'pytorch' or 'book'"):
        GRU(D, H, convention="keras")


def test_a_state_on_another_device_is_blamed_on_the_state_not_the_input(rng):
    strict = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    lstm = LSTM(D, H, stateful=True).to(xn.Device(strict, strict.Device("device1")))
    h = np.zeros((N, H), "float32")
    with pytest.raises(xn.backend.XpnetDeviceError, match=r"LSTM: state h is on cpu but the layer's parameters "
                                                          r"are on array_api_strict:device1; "
                                                          r".*xn.to_device\(h, device\)"):
        lstm.set_state(h)
    with pytest.raises(TypeError,
                       match=r"LSTM: state c dtype .*float64 does not match the parameters. dtype .*float32"):
        lstm.set_state(xn.to_device(h, lstm.device), xn.to_device(h, lstm.device, dtype="float64"))


def test_model_with_recurrent_layers_saves_and_loads(tmp_path, rng):
    model = xn.Sequential(xn.layers.Embedding(7, D), LSTM(D, H, stateful=True), GRU(H, H, convention="book"),
                          RNN(H, H), xn.layers.Linear(H, 7))
    ids = rng.integers(0, 7, (N, T))
    model.save(tmp_path / "m.npz")
    again = xn.load(tmp_path / "m.npz")
    assert repr(again) == repr(model)
    np.testing.assert_array_equal(again.forward(ids), model.forward(ids))


# -- what a PyTorch user writes ------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_pytorchs_other_arguments_at_their_defaults_are_taken(cls):
    extra = {"proj_size": 0} if cls is LSTM else {}
    layer = cls(D, H, num_layers=1, bias=True, batch_first=True, dropout=0.0, bidirectional=False, device=None,
                dtype=torch.float64, **extra)
    assert repr(layer) == f"{cls.__name__}(input_size={D}, hidden_size={H}, dtype='float64', bias=True)"


@pytest.mark.parametrize("kwargs, message", [
    ({"dropout": 0.5}, r"LSTM: dropout=0.5 is not supported: PyTorch's dropout acts between stacked layers only"),
    ({"proj_size": H}, rf"LSTM: proj_size must be an int from 0 \(no projection\) to below hidden_size={H} "
                       rf"\(PyTorch's rule\), got {H}"),
    ({"proj_size": -1}, r"LSTM: proj_size must be an int .*, got -1"),
    ({"proj_size": True}, r"LSTM: proj_size must be an int .*, got True"),
    ({"device": "cuda"}, r"LSTM: device='cuda' is not supported: make the layer, then move it .* with .to\(device\)"),
])
def test_pytorchs_arguments_xpnet_lacks_say_what_to_write(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LSTM(D, H, **kwargs)


def test_pytorchs_positional_num_layers_is_not_taken_as_stateful():
    """nn.LSTM(10, 20, 2) has two layers; xpnet's third argument is stateful, and 2 must not mean True."""
    with pytest.raises(TypeError, match=r"LSTM: stateful \(the third argument\) must be True or False, got 2; "
                                        r"PyTorch's third is num_layers: write LSTM\(input_size, hidden_size, "
                                        r"num_layers=2\) by name"):
        LSTM(D, H, 2)
    with pytest.raises(TypeError, match="GRU.__init__\\(\\) got an unexpected keyword argument 'proj_size'"):
        GRU(D, H, proj_size=0)  # as in PyTorch: only its LSTM has one


@pytest.mark.parametrize("call", ["forward", "__call__"])
def test_pytorchs_forward_x_hx_is_refused_not_ignored(rng, call):
    """PyTorch's lstm(x, (h0, c0)) starts from h0, c0; xpnet's second argument is train: a state passed
    there must fail, naming set_state, rather than run from zeros."""
    layer = LSTM(D, H)
    x = rng.standard_normal((N, T, D)).astype("float32")
    hx = (np.zeros((1, N, H), "float32"), np.zeros((1, N, H), "float32"))
    with pytest.raises(TypeError, match=r"LSTM.forward\(x, train\): train must be True or False, got tuple; "
                                        r"PyTorch's forward\(x, hx\) is set_state\(h0, c0\) then forward\(x\)"):
        getattr(layer, call)(x, hx)
    assert layer.forward(x, np.True_).shape == (N, T, H)


def test_time_first_errors_say_the_layout_and_save_and_load(tmp_path, rng):
    layer = GRU(D, H, batch_first=False, bias=False)
    with pytest.raises(ValueError, match=r"GRU: expected input of shape \(T, N, 4\) with T >= 1 \(time first: "
                                         r"batch_first=False\), got \(3, 4\)"):
        layer.forward(np.zeros((N, D), "float32"))
    x = rng.standard_normal((T, N, D)).astype("float32")
    layer.forward(x)
    with pytest.raises(ValueError, match=rf"GRU: expected dhs of shape \({T}, {N}, {H}\), got \({N}, {T}, {H}\)"):
        layer.backward(np.zeros((N, T, H), "float32"))
    model = xn.Sequential(layer)
    model.save(tmp_path / "m.npz")
    again = xn.load(tmp_path / "m.npz")
    assert repr(again) == repr(model) and sorted(again.named_params()) == ["0.Wh", "0.Wx"]
    np.testing.assert_array_equal(again.forward(x), model.forward(x))


# -- planted bugs: each must make the comparison with PyTorch fail -------------------------------------

class BookOrderLSTM(LSTM):
    """Bug: PyTorch-ordered weights read in the book's gate order (f, g, i, o)."""

    def _step(self, ax, state):
        xp, h = namespace(ax), self.hidden_size
        book = lambda a: xp.concat([a[:, 2 * h:3 * h], a[:, :2 * h], a[:, 3 * h:]], axis=1)  # noqa: E731
        real = self.params["Wh"]
        self.params["Wh"] = book(real)
        try:
            return super()._step(book(ax), state)
        finally:
            self.params["Wh"] = real


class ForgetsCellGradientLSTM(LSTM):
    """Bug: the gradient of c is not carried back from one step to the step before."""

    def _step_back(self, dh, dstate, cache):
        return super()._step_back(dh, None if dstate is None else (dstate[0], None), cache)


class ForgetsHiddenGradientRNN(RNN):
    """Bug: the gradient of h is not carried back from one step to the step before."""

    def _step_back(self, dh, dstate, cache):
        return super()._step_back(dh, None, cache)


@pytest.mark.parametrize("buggy, kind", [(BookOrderLSTM, "LSTM"), (ForgetsCellGradientLSTM, "LSTM"),
                                         (ForgetsHiddenGradientRNN, "RNN")])
def test_planted_bugs_are_caught(buggy, kind):
    with pytest.raises(AssertionError, match="differs from PyTorch"):
        _compare_with_torch(buggy(D, H), kind, xn.device("cpu"))


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_training_matches_pytorch_once_its_two_biases_are_folded_into_one(kind):
    """The recipe the docstrings and docs/from-pytorch.md give: PyTorch updates bias_ih and bias_hh, each
    with the gradient of xpnet's one b, so training drifts; with bias_hh folded into bias_ih and frozen,
    Adam steps after clip_grad_norm_ agree, and doubling b's gradient gives PyTorch's two-bias SGD."""
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal((N, T, D)), rng.standard_normal((N, T, H))) for _ in range(3)]

    def pair(fold):
        module = getattr(torch.nn, kind)(D, H, batch_first=True, dtype=torch.float64)
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape))))
        layer = getattr(xn.layers, kind)(D, H, dtype="float64")
        _copy_torch_weights(layer, module)
        if fold:
            with torch.no_grad():
                module.bias_ih_l0 += module.bias_hh_l0
                module.bias_hh_l0.zero_()
            module.bias_hh_l0.requires_grad_(False)
        return module, xn.Sequential(layer)

    def train(module, model, t_opt, x_opt, clip, double_b):
        for x, dy in data:
            out = module(torch.tensor(x))[0]
            module.zero_grad()
            out.backward(torch.tensor(dy))
            model.forward(x)
            model.backward(dy)
            if double_b:
                model[0].grads["b"] = 2 * model[0].grads["b"]
            if clip:
                torch.nn.utils.clip_grad_norm_(module.parameters(), 0.5)
                xn.optim.clip_grad_norm(model, 0.5)
            t_opt.step()
            x_opt.step()
        p = {k: v.detach().numpy() for k, v in module.named_parameters()}
        np.testing.assert_allclose(model[0].params["Wx"], p["weight_ih_l0"].T, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(model[0].params["b"], p["bias_ih_l0"] + p["bias_hh_l0"], rtol=1e-10, atol=1e-12)

    module, model = pair(fold=True)
    train(module, model, torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=0.1),
          xn.optim.Adam(model, lr=0.1), clip=True, double_b=False)
    module, model = pair(fold=False)
    train(module, model, torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1),
          xn.optim.SGD(model, lr=0.1, momentum=0.9, weight_decay=0.1, weight_decay_on="all"), clip=False,
          double_b=True)
    module, model = pair(fold=False)
    with pytest.raises(AssertionError):  # unfolded, as copied: the drift the docs warn of
        train(module, model, torch.optim.SGD(module.parameters(), lr=0.1), xn.optim.SGD(model, lr=0.1), clip=False,
              double_b=False)


def test_the_language_model_drops_more_than_pytorchs_stacked_lstm():
    """nn.LSTM(num_layers=2, dropout=p) drops between its layers only, as LSTM(..., num_layers=2, dropout=p)
    does; LanguageModel(num_layers=2, dropout=p), the book's BetterRnnlm, drops num_layers + 1 times."""
    assert len(LSTM(D, H, num_layers=2, dropout=0.5).dropouts) == 1
    lm = xn.models.LanguageModel(10, D, H, num_layers=2, dropout=0.5)
    assert [type(layer).__name__ for layer in lm.layers] == ["Embedding", "Dropout", "LSTM", "Dropout", "LSTM",
                                                             "Dropout", "Linear"]
