"""RNN, LSTM and GRU with PyTorch's num_layers, dropout and bidirectional (a RecurrentStack of single layers)
against torch.nn's in float64: output, input gradient, every parameter gradient by PyTorch's names, the start
state's gradient and the end state; the Dropout between layers; state, saving and the refusals."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.book.vol2_params import book_layout
from xpnet.layers import GRU, LSTM, RNN
from xpnet.layers.recurrent_stack import RecurrentStack
from xpnet.testing import assert_gradients_ok, assert_placed

from conftest import DEVICE_MAKERS

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

TOL = {"rtol": 1e-11, "atol": 1e-12}
N, T, D, H = 2, 4, 3, 5
SHAPES = {"2-layers": {"num_layers": 2}, "bidirectional": {"bidirectional": True},
          "2-layers-bidirectional": {"num_layers": 2, "bidirectional": True},
          "3-layers-dropout-eval": {"num_layers": 3, "dropout": 0.4}}


def _grads_by_torch_name(layer):
    """The layer's gradients by PyTorch's names and in its layouts: xn.torch_state_dict with grads for params."""
    subs = layer.layers() if isinstance(layer, RecurrentStack) else [layer]
    kept = [dict(sub.params) for sub in subs]
    try:
        for sub in subs:
            sub.params.update(sub.grads)
        return xn.torch_state_dict(layer)
    finally:
        for sub, params in zip(subs, kept):
            sub.params.clear()
            sub.params.update(params)


def _compare_with_torch(kind, options, dev, batch_first=True, seed=0, final=False, return_state=False):
    """``final``: the loss uses h_n (and c_n) too, their gradients given to backward as dh_n (dc_n).
    ``return_state``: the layer built with it, called PyTorch's way, ``layer(x, hx)``, and its h_n (c_n) compared."""
    rng = np.random.default_rng(seed)
    module = getattr(torch.nn, kind)(D, H, batch_first=batch_first, dtype=torch.float64, **options)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)) * 0.5))
    module.eval()  # dropout, where given, is off in evaluation: the two agree
    layer = getattr(xn.layers, kind)(D, H, batch_first=batch_first, return_state=return_state, **options)
    assert layer.name == kind
    xn.load_torch_state_dict(layer.to(dev, dtype="float64"), module.state_dict())
    rows = module.num_layers * (1 + module.bidirectional)
    lead, width = (N, T) if batch_first else (T, N), options.get("proj_size") or H  # h's width
    x, dy = rng.standard_normal((*lead, D)), rng.standard_normal((*lead, rows // module.num_layers * width))
    start = [rng.standard_normal((rows, N, w)) for w in (width, H)[:1 + (kind == "LSTM")]]
    # a single layer's state is the one row of PyTorch's, (N, width), but with return_state
    single = not isinstance(layer, RecurrentStack) and not return_state
    ends = [rng.standard_normal(s.shape) for s in start] if final else []
    returned = ()  # h_n (and c_n), where the layer returns them
    if return_state:
        hx = [xn.to_device(s, dev) for s in start]
        y, returned = layer(xn.to_device(x, dev), tuple(hx) if kind == "LSTM" else hx[0], train=False)
        returned = returned if kind == "LSTM" else (returned,)
    else:
        layer.set_state(*[xn.to_device(s[0] if single else s, dev) for s in start])
        y = layer.forward(xn.to_device(x, dev), train=False)
    dx = layer.backward(xn.to_device(dy, dev),
                        **{name: xn.to_device(g[0] if single else g, dev) for name, g in zip(("dh_n", "dc_n"), ends)})
    for a in (y, dx, *returned):
        assert_placed(a, dev, "float64")

    tx = torch.tensor(x, requires_grad=True)
    tstart = [torch.tensor(s, requires_grad=True) for s in start]
    out, state_t = module(tx, tuple(tstart) if kind == "LSTM" else tstart[0])
    state_t = state_t if kind == "LSTM" else (state_t,)
    torch.autograd.backward([out, *state_t[:len(ends)]], [torch.from_numpy(dy), *map(torch.from_numpy, ends)])
    pairs = {"output": (y, out.detach().numpy()), "dx": (dx, tx.grad.numpy())}
    pairs.update({name: (s, t.detach().numpy()) for name, s, t in zip(("h_n", "c_n"), returned, state_t)})
    ours = _grads_by_torch_name(layer)
    for name, p in module.named_parameters():
        # PyTorch's bias_hh of RNN and LSTM is xpnet's one b, whose gradient comes back as bias_ih's
        mine = name.replace("_hh_", "_ih_") if kind != "GRU" and name.startswith("bias_hh") else name
        pairs[name] = (ours[mine], p.grad.numpy())
    for name, ts in zip(("dh", "dc"), tstart):
        pairs[name] = (getattr(layer, name), ts.grad.numpy()[0] if single else ts.grad.numpy())
    for name, (a, b) in pairs.items():
        np.testing.assert_allclose(xn.to_numpy(a), b, **TOL, err_msg=f"{kind} {options}: {name} differs from PyTorch")


@pytest.mark.parametrize("options", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_equals_pytorch_in_float64(kind, options):
    _compare_with_torch(kind, options, xn.device("cpu"))


PROJECTED = {"1-layer": {"proj_size": 2}, "2-layers": {"proj_size": 3, "num_layers": 2},
             "2-layers-bidirectional": {"proj_size": 2, "num_layers": 2, "bidirectional": True}}


@pytest.mark.parametrize("options", list(PROJECTED.values()), ids=list(PROJECTED))
def test_lstm_proj_size_equals_pytorch_in_float64(options):
    """nn.LSTM(proj_size=P): h = (o * tanh(c)) @ weight_hr.T, P wide (the output, h0, dh, the next level's
    input), c H wide; output, every parameter's gradient (weight_hr_l{k} too), dx, dh0 and dc0 (it was refused)."""
    _compare_with_torch("LSTM", options, xn.device("cpu"))


def test_equals_pytorch_on_every_device_time_first(dev):
    _compare_with_torch("LSTM", {"num_layers": 2, "bidirectional": True}, dev, batch_first=False)


@pytest.mark.parametrize("where", ["strict-device1", pytest.param("cupy", marks=pytest.mark.gpu), "torch"])
def test_lstm_proj_size_equals_pytorch_on_other_devices(where):
    """Its portable steps (the fast paths' step kernels are left out) on another device (JAX runs the same code
    as array-api-strict, at a few seconds' warm-up)."""
    _compare_with_torch("LSTM", {"num_layers": 2, "bidirectional": True, "proj_size": 2}, DEVICE_MAKERS[where](),
                        batch_first=False)


FINAL = {"1-layer": {}, "2-layers": {"num_layers": 2},
         "2-layers-bidirectional": {"num_layers": 2, "bidirectional": True},
         "proj_size-2-layers": {"num_layers": 2, "proj_size": 3}}


@pytest.mark.parametrize("kind, options", [pytest.param(kind, options, id=f"{kind}-{name}")
                                           for kind in ("RNN", "LSTM", "GRU") for name, options in FINAL.items()
                                           if kind == "LSTM" or "proj_size" not in options])
def test_final_state_gradient_equals_pytorch_in_float64(kind, options):
    """A loss of the output and of h_n (and c_n), d2l's Seq2Seq encoder: backward(dy, dh_n, dc_n) gives
    PyTorch's dx, dh0 (dc0) and every parameter gradient; a single layer takes its (N, H) row (Numba's step
    kernels on NumPy)."""
    _compare_with_torch(kind, options, xn.device("cpu"), final=True)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_final_state_gradient_equals_pytorch_on_another_device_time_first(kind):
    """The portable steps (array-api-strict's second device), time first."""
    _compare_with_torch(kind, {"num_layers": 2, "bidirectional": True}, DEVICE_MAKERS["strict-device1"](),
                        batch_first=False, final=True)


@pytest.mark.parametrize("make", [lambda: LSTM(D, H, dtype="float64"),
                                  lambda: LSTM(D, H, num_layers=2, dtype="float64")], ids=["layer", "stack"])
def test_zero_final_state_gradients_change_nothing(rng, make):
    """dh_n and dc_n of zeros give what backward(dy) alone gives (and dc_n alone is taken)."""
    layer = make()
    x = rng.standard_normal((N, T, D))
    dy = rng.standard_normal((N, T, H))
    zeros = np.zeros((2, N, H) if isinstance(layer, RecurrentStack) else (N, H))
    results = []
    for kw in ({}, {"dh_n": zeros, "dc_n": zeros}, {"dc_n": zeros}):
        layer.forward(x)
        results.append([layer.backward(dy, **kw), layer.dh, layer.dc, *layer.named_grads().values()])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_final_state_gradients_that_do_not_fit_are_refused(rng):
    x, dy = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, H))
    gru, stack = GRU(D, H, dtype="float64"), GRU(D, H, num_layers=2, dtype="float64")
    gru.forward(x)
    with pytest.raises(TypeError, match=r"GRU.backward: dc_n is an LSTM's .* GRU has no cell state"):
        gru.backward(dy, dc_n=np.zeros((N, H)))
    with pytest.raises(ValueError, match=r"GRU.backward: dh_n must have shape \(N, 5\) = \(2, 5\)"):
        gru.backward(dy, dh_n=np.zeros((1, N, H)))
    stack.forward(x)
    with pytest.raises(ValueError, match=r"GRU.backward: dh_n must have shape \(2, N, 5\) \(num_layers"):
        stack.backward(dy, dh_n=np.zeros((N, H)))


def test_dropout_acts_between_layers_in_training_only(rng):
    xn.init.seed(3)
    layer = LSTM(D, H, num_layers=3, dropout=0.5, dtype="float64")
    x = rng.standard_normal((N, T, D))
    y = layer.forward(x)
    assert len(layer.dropouts) == 2  # PyTorch's placement: between the layers, not on x nor after the last
    scales = [xn.to_numpy(d._scale) for d in layer.dropouts]
    assert all((s == 0).any() and (s == 2).any() for s in scales)
    again = layer.l0.forward(x, train=False)
    for k in (1, 2):
        again = getattr(layer, f"l{k}").forward(again * scales[k - 1], train=False)
    np.testing.assert_allclose(y, again, **TOL)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    d = layer.l0.backward(layer.dropouts[0].backward(layer.l1.backward(layer.dropouts[1].backward(
        layer.l2.backward(dy)))))
    np.testing.assert_allclose(dx, d, **TOL)
    plain = LSTM(D, H, num_layers=3, dtype="float64")
    plain.load_state_dict(layer.state_dict())
    np.testing.assert_allclose(layer.forward(x, train=False), plain.forward(x), **TOL)


@pytest.mark.parametrize("make", [lambda: GRU(2, 3, num_layers=2, bidirectional=True, dtype="float64"),
                                  lambda: LSTM(2, 3, num_layers=2, bidirectional=True, proj_size=2, dtype="float64")],
                         ids=["GRU", "LSTM-proj_size"])
def test_gradcheck_stacked_bidirectional(rng, make):
    xn.init.seed(1)
    layer = make()
    report = assert_gradients_ok(layer, rng.standard_normal((2, 3, 2)), rtol=1e-5, max_entries=12)
    assert {row.name for row in report.rows} == {*layer.named_params(), "input"}


@pytest.mark.parametrize("proj_size", [0, 2])
def test_stateful_carries_every_layers_state_and_ends_at_pytorchs_hn_cn(rng, proj_size):
    """With proj_size the h carried is P wide, c H wide, as PyTorch's h_n and c_n."""
    module = torch.nn.LSTM(D, H, 2, batch_first=True, dtype=torch.float64, proj_size=proj_size)
    layer = LSTM(D, H, stateful=True, num_layers=2, dtype="float64", proj_size=proj_size)
    xn.load_torch_state_dict(layer, module.state_dict())
    x = rng.standard_normal((N, 2 * T, D))
    out, (hn, cn) = module(torch.from_numpy(x))
    y1, y2 = layer.forward(x[:, :T]), layer.forward(x[:, T:])
    np.testing.assert_allclose(np.concatenate([y1, y2], axis=1), out.detach().numpy(), **TOL)
    np.testing.assert_allclose(layer.h, hn.detach().numpy(), **TOL)
    np.testing.assert_allclose(layer.c, cn.detach().numpy(), **TOL)
    layer.reset_state()
    assert layer.h is None
    np.testing.assert_allclose(layer.forward(x[:, :T]), y1, **TOL)


def test_saves_loads_and_rebuilds_from_its_config(tmp_path, rng):
    model = xn.Sequential(LSTM(D, H, num_layers=2, dropout=0.2, bidirectional=True), xn.layers.Linear(2 * H, 2))
    model.to(dtype="float64")
    x = rng.standard_normal((N, T, D))
    model.save(tmp_path / "m.npz")
    again = xn.load(tmp_path / "m.npz")
    assert repr(again[0]) == repr(model[0]) == ("LSTM(input_size=3, hidden_size=5, dtype='float64', num_layers=2, "
                                                "dropout=0.2, bidirectional=True)")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert LSTM.from_config(model[0].config()).config() == model[0].config()
    assert list(model[0].named_params())[:3] == ["l0.Wx", "l0.Wh", "l0.b"]
    assert type(LSTM(D, H, num_layers=1, bidirectional=False)) is LSTM


def test_proj_size_is_saved_and_a_projection_into_a_layer_without_one_says_how_to_build_it(tmp_path, rng):
    model = xn.Sequential(LSTM(D, H, num_layers=2, proj_size=2), xn.layers.Linear(2, 2))
    model.save(tmp_path / "m.npz")
    again = xn.load(tmp_path / "m.npz")
    assert repr(again[0]) == "LSTM(input_size=3, hidden_size=5, dtype='float32', proj_size=2, num_layers=2)"
    assert {k: tuple(v.shape) for k, v in again[0].named_params().items() if k.startswith("l1")} == \
        {"l1.Wx": (2, 4 * H), "l1.Wh": (2, 4 * H), "l1.b": (4 * H,), "l1.Wr": (H, 2)}
    x = rng.standard_normal((N, T, D)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    module = torch.nn.LSTM(D, H, proj_size=2, batch_first=True)
    with pytest.raises(ValueError, match=r"'weight_hr_l0': the projection of h of an nn.LSTM\(..., proj_size=P\): "
                                         r"build the xpnet layer as the PyTorch one, LSTM\(D, H, ..., proj_size=P\)"):
        xn.load_torch_state_dict(LSTM(D, 2), module.state_dict())


@pytest.mark.parametrize("make, error, message", [
    (lambda: LSTM(D, H, stateful=True, bidirectional=True), ValueError,
     r"LSTM: stateful=True with bidirectional=True is not supported: the reverse direction starts from the end"),
    (lambda: GRU(D, H, dropout=0.2), ValueError,
     r"GRU: dropout=0.2 is not supported: PyTorch's dropout acts between stacked layers only, and with num_layers=1"),
    (lambda: RNN(D, H, bidirectional=True, dropout=0.2), ValueError, r"RNN: dropout=0.2 is not supported"),
    (lambda: LSTM(D, H, num_layers=2, dropout=1.0), ValueError, r"LSTM: dropout must be a float in \[0, 1\), got 1.0"),
    (lambda: LSTM(D, H, num_layers=0), ValueError, r"LSTM: num_layers must be a positive int, got 0"),
    (lambda: LSTM(D, H, num_layers=True), ValueError, r"LSTM: num_layers must be a positive int, got True"),
    (lambda: GRU(D, H, bidirectional="yes"), TypeError, r"GRU: bidirectional must be True or False, got 'yes'"),
    (lambda: LSTM(D, H, 2), TypeError, (r"LSTM: stateful \(the third argument\) must be True or False, got 2; "
                                        r"PyTorch's third is num_layers: write LSTM\(input_size, hidden_size, "
                                        r"num_layers=2\) by name")),
])
def test_what_is_not_supported_says_what_to_write(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_state_of_the_wrong_shape_and_hx_are_refused(rng):
    layer = LSTM(D, H, num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match=r"LSTM: state h must have shape \(4, N, 5\) \(num_layers \* "
                                         r"num_directions, as PyTorch's h0\), got \(2, 5\)"):
        layer.set_state(np.zeros((N, H), "float32"))
    with pytest.raises(TypeError, match=r"GRU: has no cell state c"):
        GRU(D, H, num_layers=2).set_state(np.zeros((2, N, H)), np.zeros((2, N, H)))
    x = rng.standard_normal((N, T, D)).astype("float32")
    with pytest.raises(TypeError, match=r"LSTM.forward\(x, train\): takes no hx; PyTorch's forward\(x, hx\) is "
                                        r"set_state\(h0, c0\) then forward\(x\)"):
        layer(x, hx=None)
    for call in (layer, layer.forward):
        with pytest.raises(TypeError, match=r"LSTM.forward\(x, train\): train must be True or False, got tuple; "
                                            r"PyTorch's forward\(x, hx\) is set_state\(h0, c0\) then forward\(x\), "
                                            r"with h0, c0 of shape \(num_layers \* num_directions, N, hidden_size\)"):
            call(x, (np.zeros((4, N, H), "float32"),) * 2)
    with pytest.raises(ValueError, match=r"LSTM: expected dy of shape \(\.\.\., 10\)"):
        layer.forward(x)
        layer.backward(np.zeros((N, T, H), "float32"))


@pytest.mark.parametrize("options", [{"num_layers": 2}, {"bidirectional": True}], ids=["2-layers", "bidirectional"])
def test_a_stack_is_an_instance_of_its_kind_as_pytorchs_module(options):
    """PyTorch's users pick layers by type (``isinstance(m, nn.LSTM)``, to initialise weights); xpnet's code
    that reads a single layer's attributes keeps to the single layers."""
    for kind in (RNN, LSTM, GRU):
        layer = kind(D, H, **options)
        assert [isinstance(layer, k) for k in (RNN, LSTM, GRU)] == [k is kind for k in (RNN, LSTM, GRU)]
        assert isinstance(layer, (xn.layers.Linear, kind)) and not issubclass(type(layer), kind)
    with pytest.raises(TypeError, match=r"load_book_params: layer 0 is GRU\(.*num_layers=2\), a stack of layers; "
                                        r"the book's files hold single layers: pass its layers"):
        book_layout([GRU(D, H, num_layers=2, convention="book")])
