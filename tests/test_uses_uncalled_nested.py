"""A model of the user's inside an xpnet Sequential, or called within another model of the user's, keeps a record
of the calls its own forward made (xpnet.layers.uncalled): its backward calling a layer's backward more times than
that forward called the layer is refused, naming it and the layer, as when it runs by itself."""

import numpy as np
import pytest
from test_pytorch_ports_basics import _torch_dynamic_net  # the tutorial's class in float64, its draw passed in
from test_uses_uncalled import _data, _draws, _DynamicNet

import xpnet as xn
from xpnet import layers as L


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _in_sequential(draw, loops=lambda n: n):
    return xn.Sequential(_DynamicNet(draw, loops), L.Linear(2, 2, dtype="float64"))


def test_a_model_inside_a_sequential_is_refused_naming_it_and_the_layer():
    model = _in_sequential(_draws(2, 0), loops=lambda n: max(n, 1))  # the second forward draws 0, its backward loops 1
    x, dy = _data()
    model.backward(model(x))
    model(x)
    with pytest.raises(RuntimeError, match=r"^_DynamicNet\.backward calls the backward of 'middle_linear' \(Linear\) "
                                           r"more times than the model's forward \(its call within Sequential's last "
                                           r"forward that this backward serves\) called it \(not at all; this is "
                                           r"backward call 1\), so it would use an earlier forward's cache"):
        model.backward(dy)


def test_xn_train_refuses_a_model_inside_a_sequential_looping_more_than_drawn():
    x, y = _data()
    model = _in_sequential(np.random.default_rng(3).integers(0, 4, 100).tolist().pop, loops=lambda n: n + 1)
    with pytest.raises(RuntimeError, match=r"^_DynamicNet\.backward calls the backward of 'middle_linear'"):
        xn.train(model, (x, y), loss=xn.losses.MeanSquaredError(), optimizer=xn.optim.SGD(lr=0.01), epochs=1,
                 batch_size=2, progress=False)


def _assert_grads_match(ours, theirs, dx, their_x):
    np.testing.assert_allclose(dx, their_x.grad.numpy(), rtol=1e-12, atol=1e-14)
    grads = ours.named_grads()
    for name, p in theirs.named_parameters():
        layer, kind = name.rsplit(".", 1)
        mine = grads.get(f"{layer}.W" if kind == "weight" else f"{layer}.b")
        if p.grad is None:  # the middle layer when no call drew it: no gradient in either
            assert mine is None, name
            continue
        np.testing.assert_allclose(mine.T if kind == "weight" else mine, p.grad.numpy(), rtol=1e-12, atol=1e-14,
                                   err_msg=name)


def test_looping_the_drawn_count_inside_a_sequential_gives_pytorchs_gradients():
    torch = _torch()
    torch.manual_seed(0)
    counts = (3, 0, 2, 1)
    theirs = torch.nn.Sequential(_torch_dynamic_net(torch, 3, 5, 2, _draws(*counts)), torch.nn.Linear(2, 2)).double()
    ours = _in_sequential(_draws(*counts))
    xn.load_torch_state_dict(ours, theirs.state_dict())
    x, _ = _data()
    for _ in counts:
        ours.zero_grad()
        dx = ours.backward(ours(x))  # dy = y: the gradient of sum(y ** 2) / 2
        their_x = torch.from_numpy(x).requires_grad_()
        theirs.zero_grad()
        (theirs(their_x) ** 2 / 2).sum().backward()
        _assert_grads_match(ours, theirs, dx, their_x)


class _Square(_DynamicNet):
    """The DynamicNet 3 -> 5 -> 3, so that it can take its own output."""

    def __init__(self, draw, loops=lambda n: n):
        super().__init__(draw, loops)
        self.output_linear = L.Linear(5, 3, dtype="float64")


class _Twice(xn.Model):
    """A model of the user's calling another twice in its forward (one object for two uses), backward last first."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, train=True):
        return self.inner(self.inner(x))

    def backward(self, dy):
        return self.inner.backward(self.inner.backward(dy))


def test_a_model_called_twice_within_another_is_counted_against_each_call():
    """Drawn 1, then 3: a backward looping 2 times each time makes the 4 middle calls in all, but gives the first
    call a middle call it did not make (its cache an earlier call's), and is refused at its call's backward."""
    model = _Twice(_Square(_draws(1, 3), loops=lambda n: 2))
    x, _ = _data()
    model(x)
    with pytest.raises(RuntimeError, match=r"^_Square\.backward calls the backward of 'middle_linear' \(Linear\) "
                                           r"more times than the model's forward \(its call within _Twice's last "
                                           r"forward that this backward serves\) called it \(once; this is backward "
                                           r"call 2\)"):
        model.backward(np.ones((4, 3)))


def test_a_model_called_twice_within_another_gives_pytorchs_gradients():
    """Each call's backward loops that call's count (the model's state, count and record of calls, put back for
    it); the calls drew different counts, 0 among them."""
    torch = _torch()
    torch.manual_seed(0)
    counts = (1, 3, 0, 2, 2, 0)
    their_inner = _torch_dynamic_net(torch, 3, 5, 3, _draws(*counts))
    ours = _Twice(_Square(_draws(*counts)))
    xn.load_torch_state_dict(ours.inner, their_inner.state_dict())
    x, _ = _data()
    for _ in counts[::2]:
        ours.zero_grad()
        dx = ours.backward(ours(x))
        their_x = torch.from_numpy(x).requires_grad_()
        their_inner.zero_grad()
        (their_inner(their_inner(their_x)) ** 2 / 2).sum().backward()
        _assert_grads_match(ours.inner, their_inner, dx, their_x)


class _Monitored(xn.Model):
    """A model of the user's called in training mode, then looked at in evaluation mode (a monitor's output)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, train=True):
        y = self.inner(x)
        self.seen = self.inner(x, train=False)
        return y

    def backward(self, dy):
        return self.inner.backward(dy)


def test_an_evaluation_mode_look_at_a_model_within_another_leaves_the_uses_record():
    """The look drew 0: its record would refuse the use's backward, which loops the use's 2."""
    model = _Monitored(_DynamicNet(_draws(2, 0)))
    x, dy = _data()
    model(x)
    assert model.inner.n == 2
    assert model.backward(dy).shape == x.shape
