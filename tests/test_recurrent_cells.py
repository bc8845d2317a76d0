"""RNNCell, LSTMCell, GRUCell against torch.nn's in float64 over a loop of steps through one cell (outputs, dx, the
start state's gradients, every parameter gradient summed over the steps), a model of one's own looping a cell under
xn.gradcheck, and what a PyTorch or book habit that does not fit is told."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import GRUCell, LSTMCell, RNNCell

N, D, H, T = 2, 3, 4, 3
TOL = {"rtol": 1e-12, "atol": 1e-14}


def _loop(cell, xs, start, dys):
    """PyTorch's decoder habit in xpnet: T calls of one cell, then T backward calls in reverse."""
    pair = isinstance(cell, LSTMCell)
    state, ys = start, []
    for x in xs:
        state = cell(x, state)
        ys.append(state[0] if pair else state)
    dh, dc, dxs = None, None, [None] * len(xs)
    for t in reversed(range(len(xs))):
        g = dys[t] if dh is None else dys[t] + dh
        dxs[t], dstate = cell.backward(g, dc) if pair else cell.backward(g)
        dh, dc = dstate if pair else (dstate, None)
    return ys, dxs, (dh, dc) if pair else (dh,)


@pytest.mark.parametrize("dev", ["numpy", "strict-device1", pytest.param("cupy", marks=pytest.mark.gpu)],
                         indirect=True)
@pytest.mark.parametrize("kind", ["RNN", "RNN-relu", "LSTM", "GRU"])
def test_a_loop_through_one_cell_equals_pytorchs_and_sums_the_parameter_gradients(kind, dev):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    rng = np.random.default_rng(0)
    kind, relu = kind.split("-")[0], {"nonlinearity": "relu"} if kind.endswith("relu") else {}
    module = getattr(torch.nn, f"{kind}Cell")(D, H, dtype=torch.float64, **relu)
    cell = getattr(xn.layers, f"{kind}Cell")(D, H, dtype="float64", **relu)
    xn.load_torch_state_dict(cell, module.state_dict())
    cell.to(dev)
    xs, dys = rng.standard_normal((T, N, D)), rng.standard_normal((T, N, H))
    start = [rng.standard_normal((N, H)) for _ in range(1 + (kind == "LSTM"))]
    on = [[xn.to_device(a, dev) for a in arrays] for arrays in (xs, dys, start)]
    for _ in range(2):  # the second round starts afresh: its gradients replace the first's
        ys, dxs, dstart = _loop(cell, on[0], tuple(on[2]) if kind == "LSTM" else on[2][0], on[1])
    for got in (*ys, *dxs, *dstart, *cell.grads.values()):
        xn.testing.assert_placed(got, dev, "float64")
    ys, dxs, dstart = ([xn.to_numpy(a) for a in arrays] for arrays in (ys, dxs, dstart))

    txs, tstart = torch.tensor(xs, requires_grad=True), [torch.tensor(s, requires_grad=True) for s in start]
    state, outs = tuple(tstart) if kind == "LSTM" else tstart[0], []
    for t in range(T):
        state = module(txs[t], state)
        outs.append(state[0] if kind == "LSTM" else state)
    sum((o * torch.from_numpy(dys[t])).sum() for t, o in enumerate(outs)).backward()
    np.testing.assert_allclose(np.stack(ys), torch.stack(outs).detach().numpy(), **TOL)
    np.testing.assert_allclose(np.stack(dxs), txs.grad.numpy(), **TOL)
    for ours, theirs in zip(dstart, tstart):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), **TOL)
    ours = {k: xn.to_numpy(v) for k, v in cell.grads.items()}
    grads = {"weight_ih": ours["Wx"].T, "weight_hh": ours["Wh"].T}
    grads.update({"bias_ih": ours["bx"], "bias_hh": ours["bh"]} if kind == "GRU" else
                 {"bias_ih": ours["b"], "bias_hh": ours["b"]})  # b = bias_ih + bias_hh: the same grad
    for name, p in module.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), **TOL, err_msg=name)


def test_unbatched_steps_are_pytorchs_one_row():
    cell = LSTMCell(D, H, dtype="float64")
    x, h, c = np.random.default_rng(1).standard_normal((3, D + H))[:, :D], np.ones(H), np.zeros(H)
    h1, c1 = cell(x[0], (h, c))
    batched = cell(x[:1], (h[None], c[None]))
    np.testing.assert_array_equal(h1, batched[0][0])
    assert h1.shape == c1.shape == (H,)
    cell.backward(np.ones((1, H)))
    dx, (dh, dc) = cell.backward(np.ones(H))
    assert dx.shape == (D,) and dh.shape == dc.shape == (H,)


class Decoder(xn.Model):
    """h_{t+1} = cell(x_t, h_t) for each step, the same cell every step; scores = head(h_T)."""

    def __init__(self):
        super().__init__()
        self.cell, self.head = GRUCell(D, H), xn.layers.Linear(H, 2)

    def forward(self, x, train=True):
        h = None
        for t in range(x.shape[1]):
            h = self.cell(x[:, t, :], h)
        return self.head(h)

    def backward(self, dy):
        dh, dxs = self.head.backward(dy), []
        for _ in range(T):
            dx, dh = self.cell.backward(dh)
            dxs.insert(0, dx)
        return np.stack(dxs, axis=1)


def test_gradcheck_passes_on_a_model_looping_one_cell_and_a_frozen_cell_gives_dx_only():
    model = Decoder()
    x = np.random.default_rng(2).standard_normal((N, T, D))
    assert xn.gradcheck(model, x, np.array([0, 1]), loss="cross_entropy").ok
    model.to(dtype="float64")
    dy = np.ones((N, 2))
    model(x)
    dx = model.backward(dy)
    model.cell.requires_grad_(False)
    model(x)
    np.testing.assert_array_equal(model.backward(dy), dx)
    assert not model.cell.grads


@pytest.mark.parametrize("call, error, message", [
    (lambda: RNNCell(D, H)(np.zeros((N, D), np.float32), (np.zeros((N, H), np.float32),) * 2), TypeError,
     r"RNNCell.forward\(x, hx, train\): hx is one array h of shape \(2, 4\) \(None: zeros\), got tuple"),
    (lambda: LSTMCell(D, H)(np.zeros((N, D), np.float32), np.zeros((N, H), np.float32)), TypeError,
     (r"LSTMCell.forward\(x, hx, train\): hx is a pair \(h, c\) of arrays of shape \(2, 4\) \(None: zeros\), "
      r"got ndarray")),
    (lambda: GRUCell(D, H).forward(np.zeros((N, D), np.float32), False), TypeError,
     r"got bool; train is the third argument \(train=False by name\)"),
    (lambda: GRUCell(D, H)(np.zeros((N, T, D), np.float32)), ValueError,
     (r"GRUCell: expected input of shape \(N, 3\) or \(3,\) \(one step\), got \(2, 3, 3\); a whole sequence "
      r"\(N, T, 3\) goes through xn.layers.GRU")),
    (lambda: RNNCell(D, H, nonlinearity="gelu"), ValueError,
     r"RNNCell: nonlinearity must be 'tanh' or 'relu', as PyTorch's, got 'gelu'"),
    (lambda: LSTMCell(D, H).backward(np.zeros((N, H), np.float32)), RuntimeError,
     r"LSTMCell: backward called more times than forward"),
])
def test_what_does_not_fit_says_what_to_write(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_an_lstmcell_loop_whose_backward_drops_dc_is_refused_and_one_not_carrying_c_runs():
    """time_sequence_prediction's loop written out: ``cell.backward(dy_t + dh)`` with the later step's ``dc`` left
    out gave the earlier steps no gradient from the cell state, silently; refused at that backward (passing it is
    the loop tested equal to torch above). A loop that starts each step from a fresh c (``h, _ = cell(x, (h,
    zeros))``) carries no c: its dc=None backward calls run."""
    rng = np.random.default_rng(1)
    cell = LSTMCell(D, H, dtype="float64")
    xs, dys = rng.standard_normal((T, N, D)), rng.standard_normal((T, N, H))
    state = (np.zeros((N, H)), np.zeros((N, H)))
    for x in xs:
        state = cell(x, state)
    dh = np.zeros((N, H))
    _, (dh, _) = cell.backward(dys[-1] + dh)  # the last call: its c went nowhere, dc None is right
    with pytest.raises(RuntimeError, match=r"^LSTMCell.backward: the call this backward serves handed its c on to "
                                           r"the next call .*but dc is None here.*dc=xp.zeros_like\(c\)"):
        cell.backward(dys[-2] + dh)
    h = np.zeros((N, H))
    for x in xs:
        h, _ = cell(x, (h, np.zeros((N, H))))
    dh = np.zeros((N, H))
    for t in reversed(range(T)):
        _, (dh, _) = cell.backward(dys[t] + dh)


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_a_cell_loop_whose_backward_drops_dh_is_refused_and_the_last_steps_none_is_zeros(kind):
    """A loop whose last call's h goes nowhere (the loss reads h_1 .. h_{T-1}): its backward takes ``dh=None`` as
    zeros, and the loop written out equals torch's autograd in float64; ``dh=None`` for a call whose h went on as
    the next call's hx (the dh_prev that call's backward returned dropped) is refused, saying what to pass."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    rng = np.random.default_rng(2)
    xs, dys = rng.standard_normal((T, N, D)), rng.standard_normal((T, N, H))
    module = getattr(torch.nn, f"{kind}Cell")(D, H, dtype=torch.float64)
    cell = getattr(xn.layers, f"{kind}Cell")(D, H, dtype="float64")
    xn.load_torch_state_dict(cell, module.state_dict())
    pair = kind == "LSTM"
    state, outs = None, []
    for x in xs:
        state = module(torch.from_numpy(x), state)
        outs.append(state[0] if pair else state)
    sum((h * torch.from_numpy(dy)).sum() for h, dy in zip(outs[:-1], dys)).backward()

    def loop(drop):
        state = None
        for x in xs:
            state = cell(x, state)
        dh, dc = None, None
        for t in reversed(range(T)):
            g = dh if t == T - 1 else None if drop else dys[t] + dh
            _, dstate = cell.backward(g, dc) if pair else cell.backward(g)
            dh, dc = dstate if pair else (dstate, None)

    with pytest.raises(RuntimeError, match=rf"^{kind}Cell.backward: the call this backward serves handed its h on to "
                                           rf"the next call \(as hx\), whose backward returned dh_prev, but dh is "
                                           rf"None here.*Pass it: dx, (\(dh, dc\)|dh) = {kind.lower()}cell\."
                                           rf"backward\(dy_t \+ dh.*pass dh=xp.zeros_like\(h\)"):
        loop(drop=True)
    loop(drop=False)
    g = cell.grads
    ours = {"weight_ih": g["Wx"].T, "weight_hh": g["Wh"].T, "bias_ih": g.get("bx", g.get("b")),
            "bias_hh": g.get("bh", g.get("b"))}
    for name, p in module.named_parameters():
        np.testing.assert_allclose(ours[name], p.grad.numpy(), **TOL, err_msg=name)
