"""pytorch/tutorials' "Learning PyTorch with Examples" DynamicNet ported to xpnet as a PyTorch user writes it: one
layer object (or one parameter) used a varying number of times per forward, trained with SGD and momentum;
checked against the same program in torch, float64, the same initial weights and the same counts."""

import random

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


class _DynamicNet(xn.Model):
    """The tutorial's first DynamicNet: the middle Linear (and the one ReLU) called `draw()` times, 0 to 3. The
    backward takes the middle layer back as many times as this forward called it, last call first."""

    def __init__(self, D_in, H, D_out, draw):
        super().__init__()
        self.input_linear = L.Linear(D_in, H, dtype="float64")
        self.middle_linear = L.Linear(H, H, dtype="float64")
        self.output_linear = L.Linear(H, D_out, dtype="float64")
        self.relu = L.ReLU()                                     # .clamp(min=0), one object for every use
        self.draw = draw

    def forward(self, x, train=True):
        h_relu = self.relu(self.input_linear(x))
        self.n = self.draw()
        for _ in range(self.n):
            h_relu = self.relu(self.middle_linear(h_relu))
        return self.output_linear(h_relu)

    def backward(self, dy):
        dh = self.output_linear.backward(dy)
        for _ in range(self.n):
            dh = self.middle_linear.backward(self.relu.backward(dh))
        return self.input_linear.backward(self.relu.backward(dh))


class _PolyNet(xn.Model):
    """The tutorial's current DynamicNet: y = a + b x + c x^2 + d x^3, plus e x^4 and e x^5 as drawn; e reused.
    Caches x and the powers of e used."""

    def __init__(self, draw, start):
        super().__init__()
        for name, value in zip("abcde", start):
            self.params[name] = np.asarray(value, dtype=np.float64)
        self.draw = draw

    def forward(self, x, train=True):
        p = self.params
        self.x, self.exps = x, range(4, self.draw())
        y = p["a"] + p["b"] * x + p["c"] * x ** 2 + p["d"] * x ** 3
        for exp in self.exps:
            y = y + p["e"] * x ** exp
        return y

    def backward(self, dy):
        x = self.x
        sums = dict(a=dy, b=dy * x, c=dy * x ** 2, d=dy * x ** 3)
        if self.exps:  # e unused: no gradient, so the step leaves it and its momentum, as PyTorch's grad of None
            sums["e"] = sum(dy * x ** exp for exp in self.exps)
        self.grads.update({name: np.asarray(np.sum(v)) for name, v in sums.items()})  # 0-d arrays, as the params
        dx = self.params["b"] + 2 * self.params["c"] * x + 3 * self.params["d"] * x ** 2
        return dy * (dx + sum(exp * self.params["e"] * x ** (exp - 1) for exp in self.exps))


def _torch_dynamic_net(torch, D_in, H, D_out, draw):
    class DynamicNet(torch.nn.Module):                          # the tutorial's class, its draw passed in
        def __init__(self):
            super().__init__()
            self.input_linear = torch.nn.Linear(D_in, H)
            self.middle_linear = torch.nn.Linear(H, H)
            self.output_linear = torch.nn.Linear(H, D_out)

        def forward(self, x):
            h_relu = self.input_linear(x).clamp(min=0)
            for _ in range(draw()):
                h_relu = self.middle_linear(h_relu).clamp(min=0)
            return self.output_linear(h_relu)
    return DynamicNet().double()


def _counts(how):
    """The draw of the number of middle calls: fixed per step, or random.randint(0, 3) from a seeded generator."""
    if how == "fixed":
        counts = iter([3, 0, 2, 1, 3, 2])
        return lambda: next(counts)
    rng = random.Random(7)
    return lambda: rng.randint(0, 3)


@pytest.mark.parametrize("how", ["fixed", "random"])
def test_the_dynamic_net_reusing_its_middle_layer_trains_as_pytorchs(how):
    torch = _torch()
    torch.manual_seed(0)
    theirs = _torch_dynamic_net(torch, 3, 6, 2, _counts(how))
    ours = _DynamicNet(3, 6, 2, _counts(how))
    xn.load_torch_state_dict(ours, theirs.state_dict())
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    criterion, their_criterion = xn.losses.MeanSquaredError(reduction="sum"), torch.nn.MSELoss(reduction="sum")
    optimizer = xn.optim.SGD(ours.parameters(), lr=1e-2, momentum=0.9)
    their_optimizer = torch.optim.SGD(theirs.parameters(), lr=1e-2, momentum=0.9)
    for _ in range(6):
        optimizer.zero_grad()
        loss = criterion(ours(x), y)
        ours.backward(criterion.backward())
        optimizer.step()
        their_optimizer.zero_grad()
        their_loss = their_criterion(theirs(torch.from_numpy(x)), torch.from_numpy(y))
        their_loss.backward()
        their_optimizer.step()
        assert float(loss) == pytest.approx(their_loss.item(), rel=1e-10)
    for name, p in xn.torch_state_dict(ours).items():
        np.testing.assert_allclose(np.asarray(p), theirs.state_dict()[name].numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("how", ["fixed", "random"])
def test_the_polynomial_dynamic_net_reusing_e_trains_as_pytorchs(how):
    torch = _torch()
    start = np.random.default_rng(1).standard_normal(5)
    rng = random.Random(3)
    counts = [6, 4, 5, 6] if how == "fixed" else [rng.randint(4, 6) for _ in range(4)]
    ours = _PolyNet(iter(counts).__next__, start)
    params = [torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for v in start]
    x_np = np.linspace(-np.pi, np.pi, 50)
    y_np = np.sin(x_np)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    criterion = xn.losses.MeanSquaredError(reduction="sum")
    optimizer = xn.optim.SGD(ours.parameters(), lr=1e-6, momentum=0.9)
    their_optimizer = torch.optim.SGD(params, lr=1e-6, momentum=0.9)
    for count in counts:
        optimizer.zero_grad()
        loss = criterion(ours(x_np), y_np)
        ours.backward(criterion.backward())
        optimizer.step()
        a, b, c, d, e = params
        y_pred = a + b * x + c * x ** 2 + d * x ** 3
        for exp in range(4, count):
            y_pred = y_pred + e * x ** exp
        their_loss = torch.nn.MSELoss(reduction="sum")(y_pred, y)
        their_optimizer.zero_grad()
        their_loss.backward()
        their_optimizer.step()
        assert float(loss) == pytest.approx(their_loss.item(), rel=1e-10)
    got = ours.named_params()
    np.testing.assert_allclose([float(got[n]) for n in "abcde"], [p.item() for p in params], rtol=1e-10)


def test_a_numpy_scalar_gradient_of_a_0d_parameter_is_refused_saying_to_make_it_an_array():
    """np.sum(dy) gives a numpy.float64, not an array: the step said 'shape () vs (), dtype float64 vs float64'."""
    model = _PolyNet(lambda: 4, np.ones(5))
    x = np.linspace(-1.0, 1.0, 5)
    model(x)
    model.grads.update({name: np.sum(x) for name in "abcde"})
    with pytest.raises(ValueError, match=r"SGD: gradient of 'a' is a NumPy scalar \(float64\).*np.asarray"):
        xn.optim.SGD(model, lr=0.1).step()
