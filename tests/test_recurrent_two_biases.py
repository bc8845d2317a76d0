"""RNN, LSTM, RNNCell and LSTMCell with convention="pytorch": PyTorch's two biases, bx = bias_ih and bh = bias_hh,
loaded by xn.load_torch_state_dict and compared with torch itself in float64 (outputs, dx, the start state's
gradients, every parameter gradient by PyTorch's name), training steps of SGD and Adam after clipping equal to
PyTorch's, stacks, saving and moving, what the default (one b, the book's) still is, and the refusals."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.book.vol2_params import book_layout
from xpnet.layers import LSTM, RNN, LSTMCell, RNNCell
from xpnet.layers.recurrent_stack import RecurrentStack
from xpnet.testing import assert_placed

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

TOL = {"rtol": 1e-12, "atol": 1e-12}
N, T, D, H = 3, 4, 3, 5
STACKS = {"no-bias": {"bias": False}, "2-layers": {"num_layers": 2},
          "2-layers-bidirectional": {"num_layers": 2, "bidirectional": True}}


def _pair(kind, ours=(), **options):
    """torch.nn.<kind> in float64 with random weights (its two biases apart), and the xpnet layer with
    convention="pytorch" (and the xpnet-only options ``ours``) that xn.load_torch_state_dict filled from its
    state dict."""
    module = getattr(torch.nn, kind)(D, H, dtype=torch.float64, **options)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)) * 0.5))
    layer = getattr(xn.layers, kind)(D, H, dtype="float64", convention="pytorch", **dict(ours), **options)
    xn.load_torch_state_dict(layer, module.state_dict())
    return module, layer


def _grads_by_torch_name(layer):
    """The layer's (or stack's, or cell's) gradients by PyTorch's names and layouts, written out here."""
    if isinstance(layer, RecurrentStack):
        subs = {"_" + name: sub for name, sub in layer.named_children().items() if name.startswith("l")}
    else:
        subs = {"" if isinstance(layer, (RNNCell, LSTMCell)) else "_l0": layer}
    out = {}
    for level, sub in subs.items():
        g = {k: xn.to_numpy(v) for k, v in sub.grads.items()}
        out.update({f"weight_ih{level}": g["Wx"].T, f"weight_hh{level}": g["Wh"].T})
        if sub.bias:
            out.update({f"bias_ih{level}": g["bx"], f"bias_hh{level}": g["bh"]})
    return out


def _compare_layer(kind, dev, **options):
    """PyTorch's call, ``out, h_n = module(x, h0)``, and its backward, against the layer's (``return_state=True``)."""
    module, layer = _pair(kind, {"return_state": True}, batch_first=True, **options)
    layer.to(dev)
    rows = module.num_layers * (1 + module.bidirectional)
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, H * (1 + module.bidirectional)))
    start = [rng.standard_normal((rows, N, H)) for _ in range(1 + (kind == "LSTM"))]
    hx = [xn.to_device(s, dev) for s in start]
    y, _ = layer.forward(xn.to_device(x, dev), tuple(hx) if kind == "LSTM" else hx[0])
    dx = layer.backward(xn.to_device(dy, dev))
    assert_placed(y, dev, "float64")
    assert_placed(dx, dev, "float64")

    tx, tstart = torch.tensor(x, requires_grad=True), [torch.tensor(s, requires_grad=True) for s in start]
    out, _ = module(tx, tuple(tstart) if kind == "LSTM" else tstart[0])
    out.backward(torch.from_numpy(dy))
    pairs = {"output": (y, out.detach().numpy()), "dx": (dx, tx.grad.numpy())}
    pairs.update({name: (getattr(layer, name), t.grad.numpy()) for name, t in zip(("dh", "dc"), tstart)})
    ours = _grads_by_torch_name(layer)
    assert sorted(ours) == sorted(name for name, _ in module.named_parameters())
    pairs.update({name: (ours[name], p.grad.numpy()) for name, p in module.named_parameters()})
    for name, (a, b) in pairs.items():
        np.testing.assert_allclose(xn.to_numpy(a), b, **TOL, err_msg=f"{kind} {options}: {name} differs from PyTorch")


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_layer_equals_pytorch_in_float64_on_every_device(kind, dev):
    _compare_layer(kind, dev)


@pytest.mark.parametrize("options", list(STACKS.values()), ids=list(STACKS))
@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_stacks_and_no_bias_equal_pytorch_in_float64(kind, options):
    _compare_layer(kind, xn.device("cpu"), **options)


@pytest.mark.parametrize("dev", ["numpy", "strict-device1"], indirect=True)
@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_cell_loop_equals_pytorch_in_float64(kind, dev):
    """T calls of one cell from a given start state, then T backward calls: every gradient summed over the steps."""
    module, cell = _pair(kind + "Cell")
    cell.to(dev)
    rng = np.random.default_rng(2)
    xs, dys = rng.standard_normal((T, N, D)), rng.standard_normal((T, N, H))
    start = [rng.standard_normal((N, H)) for _ in range(1 + (kind == "LSTM"))]
    state, ys = tuple(xn.to_device(s, dev) for s in start), []
    for x in xs:
        state = cell(xn.to_device(x, dev), state if kind == "LSTM" else state[0])
        state = state if kind == "LSTM" else (state,)
        ys.append(xn.to_numpy(state[0]))
    dstate, dxs = (None, None), []
    for t in reversed(range(T)):
        dh = xn.to_device(dys[t], dev) if dstate[0] is None else xn.to_device(dys[t], dev) + dstate[0]
        dx, dstate = cell.backward(dh, dstate[1]) if kind == "LSTM" else cell.backward(dh)
        dstate = dstate if kind == "LSTM" else (dstate, None)
        dxs.insert(0, xn.to_numpy(dx))

    txs, tstart = torch.tensor(xs, requires_grad=True), [torch.tensor(s, requires_grad=True) for s in start]
    tstate, outs = tuple(tstart) if kind == "LSTM" else tstart[0], []
    for t in range(T):
        tstate = module(txs[t], tstate)
        outs.append(tstate[0] if kind == "LSTM" else tstate)
    sum((o * torch.from_numpy(dys[t])).sum() for t, o in enumerate(outs)).backward()
    np.testing.assert_allclose(np.stack(ys), torch.stack(outs).detach().numpy(), **TOL)
    np.testing.assert_allclose(np.stack(dxs), txs.grad.numpy(), **TOL)
    for ours, theirs in zip(dstate, tstart):
        np.testing.assert_allclose(xn.to_numpy(ours), theirs.grad.numpy(), **TOL)
    ours = _grads_by_torch_name(cell)
    assert sorted(ours) == ["bias_hh", "bias_ih", "weight_hh", "weight_ih"]
    for name, p in module.named_parameters():
        np.testing.assert_allclose(ours[name], p.grad.numpy(), **TOL, err_msg=name)


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
@pytest.mark.parametrize("options", [{}, {"num_layers": 2}], ids=["1-layer", "2-layers"])
@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_training_steps_equal_pytorchs(kind, options, optimizer):
    """Three steps of clip_grad_norm_ then SGD (momentum, weight decay on every parameter, as PyTorch's) or Adam:
    the weights after them, read back by PyTorch's names, are PyTorch's (the two biases moved apart, each
    with its own momentum, Adam moments and share of the clipping norm)."""
    module, layer = _pair(kind, batch_first=True, **options)
    model = xn.Sequential(layer)
    if optimizer == "SGD":
        t_opt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        x_opt = xn.optim.SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-3, weight_decay_on="all")
    else:
        t_opt, x_opt = torch.optim.Adam(module.parameters(), lr=0.05), xn.optim.Adam(model, lr=0.05)
    rng = np.random.default_rng(3)
    for _ in range(3):
        x, dy = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, H))
        t_opt.zero_grad()
        module(torch.tensor(x))[0].backward(torch.tensor(dy))
        torch.nn.utils.clip_grad_norm_(module.parameters(), 0.5)
        t_opt.step()
        model.forward(x)
        model.backward(dy)
        xn.optim.clip_grad_norm(model, 0.5)
        x_opt.step()
    theirs = module.state_dict()
    ours = xn.torch_state_dict(model)
    assert sorted(ours) == sorted("0." + k for k in theirs)
    for name, p in theirs.items():
        np.testing.assert_allclose(ours["0." + name], p.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("make", [lambda: RNN(3, 4, convention="pytorch"), lambda: LSTM(3, 4, convention="pytorch"),
                                  lambda: LSTM(3, 4, convention="pytorch", num_layers=2, bidirectional=True)],
                         ids=["RNN", "LSTM", "LSTM-2-layers-bidirectional"])
def test_gradcheck(make):
    xn.init.seed(1)
    layer = make()
    for name, p in layer.named_params().items():  # biases off zero, and apart
        if name.endswith("bh"):
            p += 0.1 * np.arange(p.shape[0], dtype=p.dtype)
    report = xn.gradcheck(layer, np.random.default_rng(4).standard_normal((2, 3, 3)), rtol=1e-5, max_entries=24)
    assert report.ok, str(report)
    assert {row.name.rpartition(".")[2] for row in report.rows} >= {"bx", "bh"}


class CellAndStack(xn.Model):
    def __init__(self):
        super().__init__()
        self.cell = LSTMCell(D, H, convention="pytorch")
        self.stack = RNN(D, H, num_layers=2, convention="pytorch")
        self.lstm = LSTM(D, H)  # the default beside them

    def forward(self, x, train=True):
        h, _ = self.cell(x[:, 0, :])
        return self.stack(x) + self.lstm(x) + h[:, None, :]


def test_saves_loads_and_moves_with_its_two_biases(tmp_path):
    xn.init.seed(5)
    model = CellAndStack()
    for p in model.named_params().values():
        p += 0.1
    x = np.random.default_rng(5).standard_normal((N, T, D)).astype(np.float32)
    xn.save(model, tmp_path / "m.npz")
    loaded = xn.load(tmp_path / "m.npz")
    assert sorted(loaded.named_params()) == sorted(model.named_params())
    assert {"cell.bx", "cell.bh", "stack.l1.bx", "stack.l1.bh", "lstm.b"} <= set(model.named_params())
    assert (loaded.cell.convention, loaded.stack.l0.convention, loaded.lstm.convention) == ("pytorch",) * 2 + ("book",)
    np.testing.assert_array_equal(loaded.forward(x, train=False), model.forward(x, train=False))
    loaded.to(dtype="float64")
    assert {str(p.dtype) for p in loaded.named_params().values()} == {"float64"}
    np.testing.assert_allclose(loaded.forward(x.astype(np.float64), train=False), model.forward(x, train=False),
                               rtol=1e-5, atol=1e-6)
    assert "convention='pytorch'" in repr(model.stack) and "convention" not in repr(model.lstm)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "RNNCell", "LSTMCell"])
def test_the_default_keeps_one_bias_the_sum_computing_the_same(kind):
    module, two = _pair(kind)
    one = getattr(xn.layers, kind)(D, H, dtype="float64")
    xn.load_torch_state_dict(one, module.state_dict())
    assert sorted(one.params) == ["Wh", "Wx", "b"] and sorted(two.params) == ["Wh", "Wx", "bh", "bx"]
    np.testing.assert_allclose(one.params["b"], two.params["bx"] + two.params["bh"], rtol=1e-15)
    x = np.random.default_rng(6).standard_normal((N, T, D) if "Cell" not in kind else (N, D))
    np.testing.assert_allclose(xn.to_numpy(one(x)[0] if kind == "LSTMCell" else one(x)),
                               xn.to_numpy(two(x)[0] if kind == "LSTMCell" else two(x)), rtol=1e-13, atol=1e-14)
    back = xn.torch_state_dict(one)
    suffix = "" if "Cell" in kind else "_l0"
    np.testing.assert_array_equal(back["bias_hh" + suffix], 0)
    np.testing.assert_array_equal(xn.torch_state_dict(two)["bias_hh" + suffix], module.state_dict()["bias_hh" + suffix])


@pytest.mark.parametrize("make", [lambda c: RNN(D, H, convention=c), lambda c: LSTM(D, H, num_layers=2, convention=c),
                                  lambda c: RNNCell(D, H, convention=c), lambda c: LSTMCell(D, H, convention=c)],
                         ids=["RNN", "LSTM-2-layers", "RNNCell", "LSTMCell"])
def test_another_convention_is_refused_naming_layer_values_and_what_came(make):
    with pytest.raises(ValueError, match=r"^(RNN|LSTM|RNNCell|LSTMCell): convention must be 'pytorch' or 'book', got "
                                         r"'keras'; 'book' \(the default\) keeps one bias b = bias_ih \+ bias_hh, "
                                         r"'pytorch' PyTorch's two, bx = bias_ih and bh = bias_hh$"):
        make("keras")


def test_the_books_files_and_chainers_lstm_say_to_build_the_default(tmp_path):
    with pytest.raises(TypeError, match=r"layer 0 is LSTM\(convention='pytorch'\); the book's LSTM is "
                                        r"LSTM\(convention=\"book\"\) \(the default: one bias b\)"):
        book_layout([LSTM(D, H, convention="pytorch")])
    np.savez(tmp_path / "c.npz", **{"upward/W": np.zeros((4 * H, D)), "upward/b": np.zeros(4 * H),
                                    "lateral/W": np.zeros((4 * H, H))})
    with pytest.raises(ValueError, match=r"Chainer's L.LSTM holds one bias .* build LSTM\(..., convention='book'\)"):
        xn.load_chainer_npz(tmp_path / "c.npz", LSTM(D, H, convention="pytorch"))
