"""A layer called K times in one forward given fewer than K backward calls: refused at the optimizer's step
(xpnet.layers.left_out). The ported program that forgets one submodel's backward gave a wrong gradient silently;
the legit ways to leave calls out (``xn.no_grad()``, an evaluation-mode look, a frozen layer) still train as
PyTorch. References: torch itself in float64."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L

F64 = "float64"


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


class Tower(xn.Model):
    def __init__(self, shared):
        super().__init__()
        self.shared = shared
        self.act = L.Tanh()

    def forward(self, x, train=True):
        return self.act(self.shared(x))

    def backward(self, dy):
        return self.shared.backward(self.act.backward(dy))


class TwoTowers(xn.Model):
    """Two submodels holding one Linear, PyTorch's ``self.a = Tower(shared); self.b = Tower(shared)``."""

    def __init__(self):
        super().__init__()
        shared = L.Linear(3, 3, dtype=F64)
        self.a, self.b = Tower(shared), Tower(shared)

    def forward(self, x1, x2, train=True):
        return self.a(x1) + 2 * self.b(x2)

    def backward(self, dy):
        self.b.backward(2 * dy)  # the later call first
        return self.a.backward(dy)


class BForgotten(TwoTowers):
    def backward(self, dy):  # self.b.backward(2 * dy) left out
        return self.a.backward(dy)


def _loaded(linear, torch):
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 3).double()
    xn.load_torch_state_dict(linear, lin.state_dict())
    return lin


def test_a_forgotten_submodel_backward_is_refused_at_the_step_and_nothing_changes():
    torch = _torch()
    model = BForgotten()
    _loaded(model.a.shared, torch)
    before = {k: v.copy() for k, v in model.named_params().items()}
    opt = xn.optim.SGD(model, lr=0.1)
    rng = np.random.default_rng(0)
    x1, x2, dy = (rng.standard_normal((4, 3)) for _ in range(3))
    opt.zero_grad()
    model(x1, x2)
    model.backward(dy)
    model.predict(x1, x2)  # a line of the log: the gradients are still the wrong ones
    with pytest.raises(RuntimeError, match=r"SGD\.step\(\): BForgotten's forward called 'a\.shared' \(Linear\) "
                                           r"2 times, but only 1 of its backward calls ran.*call 1 got none.*ran took "
                                           r"call 2's caches.*once per call, last call first.*xn\.no_grad"):
        opt.step()
    for k, v in model.named_params().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_the_program_with_both_backward_calls_trains_as_pytorch():
    """With model.predict between the backward and the step, and an evaluation forward after it."""
    torch = _torch()
    model = TwoTowers()
    lin = _loaded(model.a.shared, torch)
    opt, topt = xn.optim.SGD(model, lr=0.1, momentum=0.9), torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(1)
    for _ in range(3):
        x1, x2, dy = (rng.standard_normal((4, 3)) for _ in range(3))
        opt.zero_grad()
        model(x1, x2)
        model.backward(dy)
        model.predict(x2, x1)  # a look for the log, and an evaluation forward after the step: no matter
        opt.step()
        model.eval()
        model(x2, x2)
        model.train()
        topt.zero_grad()
        y = torch.tanh(lin(torch.from_numpy(x1))) + 2 * torch.tanh(lin(torch.from_numpy(x2)))
        y.backward(torch.from_numpy(dy))
        topt.step()
    np.testing.assert_allclose(model.a.shared.params["W"], lin.weight.detach().numpy().T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model.a.shared.params["b"], lin.bias.detach().numpy(), rtol=1e-12, atol=1e-14)


class Truncated(xn.Model):
    """An RNN backpropagated through its last ``kept`` steps only, the steps before them under ``xn.no_grad()``
    (PyTorch's ``h.detach()`` there) when ``detached``: ``h = tanh(step(x_t + h))`` written out, or an RNNCell."""

    def __init__(self, kept, detached, cell):
        super().__init__()
        self.step = L.RNNCell(3, 3, convention="pytorch", dtype=F64) if cell else L.Linear(3, 3, dtype=F64)
        self.act, self.kept, self.detached, self.cell = L.Tanh(), kept, detached, cell

    def _one(self, x, h):
        return self.step(x, h) if self.cell else self.act(self.step(x + h))

    def forward(self, xs, train=True):
        h = np.zeros_like(xs[0])
        cut = len(xs) - self.kept
        with xn.no_grad() if self.detached else xn.enable_grad():
            for x in xs[:cut]:
                h = self._one(x, h)
        for x in xs[cut:]:
            h = self._one(x, h)
        return h

    def backward(self, dh):
        for _ in range(self.kept):
            dh = self.step.backward(dh)[1] if self.cell else self.step.backward(self.act.backward(dh))
        return dh


@pytest.mark.parametrize("cell", [False, True], ids=["linear", "rnn-cell"])
@pytest.mark.parametrize("detached", [True, False], ids=["no_grad", "forgotten"])
def test_truncated_backpropagation_through_time_under_no_grad_trains_as_pytorchs_detach(detached, cell):
    torch = _torch()
    model = Truncated(kept=2, detached=detached, cell=cell)
    torch.manual_seed(2)
    step = (torch.nn.RNNCell(3, 3) if cell else torch.nn.Linear(3, 3)).double()
    xn.load_torch_state_dict(model.step, step.state_dict())
    opt, topt = xn.optim.SGD(model, lr=0.1), torch.optim.SGD(step.parameters(), lr=0.1)
    rng = np.random.default_rng(2)
    xs, dh = rng.standard_normal((5, 4, 3)), rng.standard_normal((4, 3))
    model(xs)
    model.backward(dh)
    if not detached:
        name = "RNNCell" if cell else "Linear"
        with pytest.raises(RuntimeError, match=rf"'step' \({name}\) 5 times, but only 2 of its backward calls "
                                               r"ran.*calls 1, 2, 3 got none"):
            opt.step()
        return
    opt.step()
    h = torch.zeros(4, 3, dtype=torch.float64)
    for t, x in enumerate(torch.from_numpy(xs)):
        if t == 3:
            h = h.detach()
        h = step(x, h) if cell else torch.tanh(step(x + h))
    h.backward(torch.from_numpy(dh))
    topt.step()
    ours = xn.torch_state_dict(model.step)
    for name, value in step.state_dict().items():
        np.testing.assert_allclose(ours[name], value.numpy(), rtol=1e-12, atol=1e-14, err_msg=name)


class LookThenUse(TwoTowers):
    """``self.b`` looks at x2 in evaluation mode before ``self.a``'s training-mode use; its output reaches no loss."""

    def forward(self, x1, x2, train=True):
        self.b.eval()
        self.look = self.b(x2)
        self.b.train()
        return self.a(x1)

    def backward(self, dy):
        return self.a.backward(dy)


class FrozenShared(BForgotten):
    def __init__(self):
        super().__init__()
        self.head = L.Linear(3, 3, dtype=F64)
        self.a.shared.requires_grad_(False)

    def forward(self, x1, x2, train=True):
        return self.head(super().forward(x1, x2))

    def backward(self, dy):
        return super().backward(self.head.backward(dy))


class TargetUnderNoGrad(xn.Model):
    """A target from the same Sequential under ``xn.no_grad()`` in the forward, then the training call."""

    def __init__(self):
        super().__init__()
        self.a = xn.Sequential(L.Linear(3, 3, dtype=F64), L.Tanh())

    def forward(self, x1, x2, train=True):
        with xn.no_grad():
            self.target = self.a(x2)
        return self.a(x1) - self.target

    def backward(self, dy):
        return self.a.backward(dy)


@pytest.mark.parametrize("make", [BForgotten, TargetUnderNoGrad], ids=["forgotten", "no_grad-target"])
def test_a_step_written_by_hand_reading_named_grads_is_checked_as_an_optimizers(make):
    """The char-RNN tutorial's update, ``p -= lr * model.named_grads()[name]``, bypasses the optimizer's step:
    reading ``named_grads()`` refuses the forgotten backward there, and leaves a call that needs none alone."""
    model, x = make(), np.ones((4, 3))
    model.backward(np.ones((4, 3)) + 0 * model(x, x))
    if make is BForgotten:
        with pytest.raises(RuntimeError, match=r"^BForgotten\.named_grads\(\): BForgotten's forward called "
                                               r"'a\.shared' \(Linear\) 2 times, but only 1 of its backward calls "
                                               r"ran before these gradients were read.*call 1 got none"):
            model.named_grads()
        return
    before = {k: v.copy() for k, v in model.named_params().items()}
    for name, p in model.named_params().items():
        p -= 0.1 * model.named_grads()[name]
    assert all((model.named_params()[k] != v).any() for k, v in before.items())


class ShapeProbe(TargetUnderNoGrad):
    """A shape probe in the forward, its output going nowhere (PyTorch's lazy ``self.n = self.a(x[:1]).shape[1]``,
    which autograd ignores), under ``xn.no_grad()`` where ``quiet``."""

    quiet = True

    def forward(self, x1, x2, train=True):
        with xn.no_grad() if self.quiet else xn.enable_grad():
            self.n = self.a(x1[:1]).shape[1]
        return self.a(x1)


def test_a_shape_probe_whose_output_goes_nowhere_is_refused_saying_to_put_it_under_no_grad():
    """It cannot be told from a call whose backward was forgotten (its output may have fed arithmetic whose result
    went on), so it is refused like one, the message naming the call and what to write."""
    model = ShapeProbe()
    model.quiet = False
    opt = xn.optim.SGD(model, lr=0.1)
    x = np.ones((4, 3))
    model.backward(np.ones((4, 3)) + 0 * model(x, x))
    with pytest.raises(RuntimeError, match=r"called 'a' \(Sequential\) 2 times.*call 1 got none.*goes nowhere \(a "
                                           r"warm-up or a shape probe, `self.n = self.a\(x\[:1\]\).shape\[1\]`, "
                                           r"which autograd ignores\) goes under `with xn.no_grad\(\):`"):
        opt.step()


@pytest.mark.parametrize("make", [LookThenUse, TargetUnderNoGrad, ShapeProbe, FrozenShared],
                         ids=["evaluation-look", "no_grad-target", "no_grad-shape-probe", "frozen"])
def test_calls_left_out_that_need_no_gradient_step_as_pytorch(make):
    """A look or a target before the use leaves the use's gradient alone; a frozen shared layer's calls are no
    step's matter (the head trains on what reached it, as PyTorch's step with the layer's requires_grad_(False))."""
    torch = _torch()
    model = make()
    linear = model.a[0] if isinstance(model, TargetUnderNoGrad) else model.a.shared
    lin = _loaded(linear, torch)
    trained = model.head if make is FrozenShared else linear
    before = {k: v.copy() for k, v in trained.params.items()}
    opt = xn.optim.SGD(model, lr=0.1)
    rng = np.random.default_rng(3)
    x1, x2, dy = (rng.standard_normal((4, 3)) for _ in range(3))
    model(x1, x2)
    model.backward(dy)
    grads = {k: v.copy() for k, v in trained.grads.items()}
    opt.step()
    if make is not FrozenShared:
        torch.tanh(lin(torch.from_numpy(x1))).backward(torch.from_numpy(dy))
        np.testing.assert_allclose(grads["W"], lin.weight.grad.numpy().T, rtol=1e-12, atol=1e-14)
    for k, v in trained.params.items():
        np.testing.assert_allclose(v, before[k] - 0.1 * grads[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("read", [lambda g: g.get("W"), lambda g: g.items(), lambda g: g.values()],
                         ids=[".get('W')", ".items()", ".values()"])
def test_a_read_of_layer_grads_by_get_items_or_values_is_refused_as_by_key(read):
    """``layer.grads.get(key)``, ``.items()``, ``.values()`` after the forgotten submodel's backward: refused as
    ``grads[key]`` is, naming the read; xpnet's own reads through them (the optimizer's step) are no user's."""
    rng = np.random.default_rng(2)
    x1, x2, dy = (rng.standard_normal((4, 3)) for _ in range(3))
    model = BForgotten()
    model(x1, x2)
    model.backward(dy)
    with pytest.raises(RuntimeError, match=r"^Linear.grads\.(get\('W'\)|items\(\)|values\(\)): BForgotten's "
                                           r"forward called 'a\.shared' \(Linear\) 2 times"):
        read(model.a.shared.grads)


def test_a_step_written_by_hand_reading_layer_grads_is_refused_as_named_grads_is():
    """The book's own update, ``params[key] -= lr * layer.grads[key]`` per layer, after the forgotten submodel's
    backward: refused at the read, naming the layer; with both backward calls the same loop equals torch's step."""
    torch = _torch()
    rng = np.random.default_rng(2)
    x1, x2, dy = (rng.standard_normal((4, 3)) for _ in range(3))
    for model in (BForgotten(), TwoTowers()):
        lin = _loaded(model.a.shared, torch)
        model(x1, x2)
        model.backward(dy)
        shared = model.a.shared
        if isinstance(model, BForgotten):
            with pytest.raises(RuntimeError, match=r"^Linear.grads\['W'\]: BForgotten's forward called 'a\.shared' "
                                                   r"\(Linear\) 2 times, but only 1 of its backward calls ran"):
                shared.grads["W"]
            continue
        for key in shared.params:
            shared.params[key] -= 0.1 * shared.grads[key]
        y = torch.tanh(lin(torch.from_numpy(x1))) + 2 * torch.tanh(lin(torch.from_numpy(x2)))
        y.backward(torch.from_numpy(dy))
        with torch.no_grad():
            for p in lin.parameters():
                p -= 0.1 * p.grad
        np.testing.assert_allclose(shared.params["W"], lin.weight.detach().numpy().T, rtol=1e-12, atol=1e-14)
