"""A backward through a forward from before ``optimizer.step()`` (or ``load_state_dict``) is refused, as PyTorch's
autograd refuses it ("modified by an inplace operation"): xpnet's backward would read the new weights with the old
forward's cache. What a loop writes instead (the forward again after the step) runs; compared with torch in float64."""

import copy

import numpy as np
import pytest

import xpnet as xn

from conftest import require_cuda

L = xn.layers
STALE = "after the forward whose cache this backward reads"


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("make, shape", [
    (lambda: L.Linear(3, 2), (4, 3)),
    (lambda: L.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)),
    (lambda: L.BatchNorm(3), (6, 3)),
], ids=["Linear", "Conv2d", "BatchNorm"])
def test_backward_after_a_step_is_refused_naming_the_layer_and_the_step(make, shape):
    xn.init.seed(0)
    model = xn.Sequential(make())
    opt = xn.optim.SGD(model.parameters(), lr=0.1)
    x = _x(*shape)
    y = model(x)
    dy = np.ones_like(y)
    model.backward(dy)
    opt.step()
    with pytest.raises(RuntimeError, match=f"{model[0].name}.backward: SGD.step\\(\\) changed Sequential's 0.") as e:
        model.backward(dy)
    assert STALE in str(e.value) and "Run the forward again after the change" in str(e.value)
    model(x)
    model.backward(dy)  # the forward again: fine, and again after the next step
    opt.step()
    model(x)
    model.backward(dy)


@pytest.mark.gpu
def test_on_cupy_a_backward_after_a_step_is_refused_and_the_forward_again_runs():
    """On CuPy, where Adam's update is a fused kernel and the LSTM's gates are CuPy's own kernels, the step is
    still noted and the stale backward refused, naming the layer; the forward again gives CuPy's gradients."""
    dev = require_cuda()
    xn.init.seed(0)
    model = xn.Sequential(L.LSTM(3, 4), L.Linear(4, 2)).to(dev)
    opt = xn.optim.Adam(model.parameters(), lr=0.1)
    x = xn.to_device(_x(2, 5, 3), dev)
    dy = xn.to_device(np.ones((2, 5, 2), np.float32), dev)
    model(x)
    model.backward(dy)
    opt.step()
    with pytest.raises(RuntimeError, match="Linear.backward: Adam.step\\(\\) changed Sequential's 1.W, 1.b after"):
        model.backward(dy)
    with pytest.raises(RuntimeError, match="LSTM.backward: Adam.step\\(\\) changed Sequential's 0.Wx, 0.Wh, 0.b"):
        model[0].backward(xn.to_device(np.ones((2, 5, 4), np.float32), dev))
    model(x)
    model.backward(dy)
    xn.testing.assert_placed(model.named_grads()["0.Wx"], dev, "float32")
    opt.step()


def test_a_cell_looped_then_stepped_refuses_its_backward():
    xn.init.seed(0)
    cell = L.LSTMCell(3, 4)
    opt = xn.optim.Adam(cell.parameters(), lr=0.01)
    for backward in (True, False):
        state = None
        for t in range(3):
            state = cell(_x(2, 3, seed=t), state)
        dh, dc = np.zeros((2, 4), np.float32), None
        for t in range(3 if backward else 0):  # the state's gradients passed back (a dropped dc is refused)
            _, (dh, dc) = cell.backward(np.ones((2, 4), np.float32) + dh, dc)
        opt.step()
    with pytest.raises(RuntimeError, match="LSTMCell.backward: Adam.step\\(\\) changed LSTMCell's Wx, Wh, b"):
        cell.backward(np.ones((2, 4), np.float32))


class _Net(xn.Model):
    """A model of one's own with its backward written out."""

    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = L.Linear(3, 5), L.Tanh(), L.Linear(5, 2)

    def forward(self, x, train=True):
        return self.fc2(self.act(self.fc1(x)))

    def backward(self, dy):
        return self.fc1.backward(self.act.backward(self.fc2.backward(dy)))


def test_a_model_of_ones_own_names_its_layer():
    xn.init.seed(0)
    net = _Net()
    opt = xn.optim.SGD(net.parameters(), lr=0.1)
    x = _x(4, 3)
    dy = np.ones((4, 2), np.float32)
    net(x)
    net.backward(dy)
    opt.step()
    with pytest.raises(RuntimeError, match="Linear.backward: SGD.step\\(\\) changed _Net's fc2.W, fc2.b"):
        net.backward(dy)
    net(x)
    net.backward(dy)


def test_a_frozen_layer_and_another_models_step_leave_the_backward_alone():
    xn.init.seed(0)
    first, second = L.Linear(3, 4), L.Linear(4, 2)
    model = xn.Sequential(first, L.ReLU(), second)
    first.requires_grad_(False)
    opt = xn.optim.SGD(model, lr=0.1)
    other = xn.Sequential(L.Linear(2, 2))
    opt_other = xn.optim.SGD(other, lr=0.1)
    other(_x(3, 2))
    other.backward(np.ones((3, 2), np.float32))
    y = model(_x(4, 3))
    opt_other.step()  # another model's step: this forward's weights are as they were
    model.backward(np.ones_like(y))
    opt.step()
    with pytest.raises(RuntimeError, match="SGD.step\\(\\) changed Sequential's 2.W, 2.b"):
        model.backward(np.ones_like(y))
    first.backward(np.ones((4, 4), np.float32))  # frozen: the step left its weights as they were


def test_gradient_accumulation_two_backwards_then_one_step():
    xn.init.seed(0)
    model = xn.Sequential(L.Linear(3, 4), L.Tanh(), L.Linear(4, 2))
    opt = xn.optim.SGD(model, lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        for seed in (1, 2):
            y = model(_x(4, 3, seed=seed))
            model.backward(np.ones_like(y) / 2)
        opt.step()


def test_a_copy_of_a_stepped_model_is_checked_with_its_own_optimizer():
    xn.init.seed(0)
    model = xn.Sequential(L.Linear(3, 2))
    opt = xn.optim.SGD(model, lr=0.1)
    x, dy = _x(4, 3), np.ones((4, 2), np.float32)
    model(x)
    model.backward(dy)
    opt.step()
    twin = copy.deepcopy(model)  # a target network, say, that carries the original's notes
    opt_twin = xn.optim.SGD(twin, lr=0.1)
    twin(x)
    twin.backward(dy)
    opt_twin.step()
    with pytest.raises(RuntimeError, match="SGD.step\\(\\) changed Sequential's 0.W"):
        twin.backward(dy)


def test_load_state_dict_after_the_forward_refuses_its_backward():
    xn.init.seed(0)
    model = xn.Sequential(L.Linear(3, 2))
    y = model(_x(4, 3))
    model.load_state_dict(xn.Sequential(L.Linear(3, 2)).state_dict())
    with pytest.raises(RuntimeError, match="Sequential.load_state_dict changed Sequential's 0.W"):
        model.backward(np.ones_like(y))


def test_lbfgs_closure_runs_and_a_backward_after_its_step_is_refused():
    xn.init.seed(0)
    model = xn.Sequential(L.Linear(3, 2, dtype="float64"))
    x, t = np.random.default_rng(0).standard_normal((8, 3)), np.random.default_rng(1).standard_normal((8, 2))
    criterion = xn.losses.MeanSquaredError()
    opt = xn.optim.LBFGS(model, lr=1, max_iter=5)

    def closure():
        opt.zero_grad()
        loss = criterion(model(x), t)
        model.backward(criterion.backward())
        return loss
    first = opt.step(closure)
    assert opt.step(closure) < first
    with pytest.raises(RuntimeError, match="LBFGS.step\\(closure\\) changed Sequential's 0.W"):
        model.backward(np.ones((8, 2)))


def _gan():
    """G and D, xpnet's and torch's with the same float64 weights."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    xn.init.seed(0)
    G = xn.Sequential(L.Linear(2, 3), L.Tanh()).to(dtype="float64")
    D = xn.Sequential(L.Linear(3, 4), L.Tanh(), L.Linear(4, 1)).to(dtype="float64")
    tG = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh()).double()
    tD = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    xn.load_torch_state_dict(G, tG.state_dict())
    xn.load_torch_state_dict(D, tD.state_dict())
    return torch, G, D, tG, tD


def test_dcgan_reusing_ds_output_from_before_its_step_is_refused_recomputing_it_matches_torch():
    torch, G, D, tG, tD = _gan()
    optD, optG = xn.optim.SGD(D, lr=0.1), xn.optim.SGD(G, lr=0.1)
    toptD, toptG = torch.optim.SGD(tD.parameters(), lr=0.1), torch.optim.SGD(tG.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    for _ in range(2):
        real, z = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
        dy = np.full((5, 1), 1 / 5)
        optD.zero_grad()  # D: up on real, down on fake (loss mean(D(fake)) - mean(D(real)))
        D(real)
        D.backward(-dy)
        fake = G(z)
        D(fake)
        D.backward(dy)
        optD.step()
        optG.zero_grad()  # G: loss -mean(D(G(z))), through D's output computed again after D's step
        D(fake)
        G.backward(D.backward(-dy))
        optG.step()

        toptD.zero_grad()
        tfake = tG(torch.from_numpy(z))
        (tD(tfake.detach()).mean() - tD(torch.from_numpy(real)).mean()).backward()
        toptD.step()
        toptG.zero_grad()
        (-tD(tfake).mean()).backward()
        toptG.step()
    for ours, theirs in ((G, tG), (D, tD)):
        for key, value in theirs.state_dict().items():
            np.testing.assert_allclose(xn.torch_state_dict(ours)[key], value.numpy(), rtol=1e-12, atol=1e-14)

    D(fake)  # D's output from before D's step, reused for G's loss: refused, as PyTorch's
    D.backward(dy)
    optD.step()
    with pytest.raises(RuntimeError, match="SGD.step\\(\\) changed Sequential's 2.W, 2.b") as e:
        D.backward(-dy)
    assert "D(G(z)) again after D's step" in str(e.value)
    tout = tD(tG(torch.from_numpy(z)))
    tout.mean().backward(retain_graph=True)
    toptD.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (-tout.mean()).backward()
