"""A model's backward written out by hand may call a layer's backward only as often as the model's last forward
called the layer (xpnet.layers.uses): PyTorch's DynamicNet looping its middle Linear a drawn number of times, with
a backward looping more times than drawn, would otherwise take an earlier forward's cache, a wrong gradient."""

import copy

import numpy as np
import pytest
from test_pytorch_ports_basics import _DynamicNet as _TutorialNet
from test_pytorch_ports_basics import _torch_dynamic_net  # the tutorial's class in float64, its draw passed in

import xpnet as xn
from xpnet import layers as L


class _DynamicNet(_TutorialNet):
    """The port's DynamicNet (3 -> 5 -> 2, float64: the middle Linear and the one ReLU called `draw()` times), its
    backward looping `loops(self.n)` times (the drawn count when written right)."""

    def __init__(self, draw, loops=lambda n: n):
        super().__init__(3, 5, 2, draw)
        self.loops = loops

    def backward(self, dy):
        dh = self.output_linear.backward(dy)
        for _ in range(self.loops(self.n)):
            dh = self.middle_linear.backward(self.relu.backward(dh))
        return self.input_linear.backward(self.relu.backward(dh))


def _draws(*counts):
    return iter(counts).__next__


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((4, 3)), rng.standard_normal((4, 2))


def test_a_backward_calling_a_layer_that_the_last_forward_did_not_call_is_refused_naming_it():
    model = _DynamicNet(_draws(2, 0), loops=lambda n: max(n, 1))  # the second forward draws 0, its backward loops 1
    x, dy = _data()
    model(x)
    model.backward(dy)
    model(x)
    with pytest.raises(RuntimeError, match=r"^_DynamicNet\.backward calls the backward of 'middle_linear' \(Linear\) "
                                           r"more times than the model's last forward called it \(not at all; this is "
                                           r"backward call 1\), so it would use an earlier forward's cache.*once per "
                                           r"call the forward made.*self\.n = random\.randint\(0, 3\)"):
        model.backward(dy)


def test_a_backward_calling_a_layer_more_times_than_the_last_forward_did_is_refused():
    model = _DynamicNet(_draws(2), loops=lambda n: 3)
    x, dy = _data()
    model(x)
    with pytest.raises(RuntimeError, match=r"'middle_linear' \(Linear\) more times than the model's last forward "
                                           r"called it \(2 times; this is backward call 3\)"):
        model.backward(dy)


def test_looping_the_drawn_count_gives_pytorchs_gradients():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    torch.manual_seed(0)
    counts = (3, 0, 2, 1)
    theirs = _torch_dynamic_net(torch, 3, 5, 2, _draws(*counts))
    ours = _DynamicNet(_draws(*counts))
    xn.load_torch_state_dict(ours, theirs.state_dict())
    x, _ = _data()
    for _ in counts:
        ours.zero_grad()
        dx = ours.backward(ours(x))  # dy = y: the gradient of sum(y ** 2) / 2
        their_x = torch.from_numpy(x).requires_grad_()
        theirs.zero_grad()
        (theirs(their_x) ** 2 / 2).sum().backward()
        np.testing.assert_allclose(dx, their_x.grad.numpy(), rtol=1e-12, atol=1e-14)
        grads = ours.named_grads()
        for name, p in theirs.named_parameters():
            layer, kind = name.rsplit(".", 1)
            ours_grad = grads.get(f"{layer}.W" if kind == "weight" else f"{layer}.b")
            if p.grad is None:  # the middle layer when the draw was 0: no gradient in either
                assert ours_grad is None, name
                continue
            ours_grad = ours_grad.T if kind == "weight" else ours_grad
            np.testing.assert_allclose(ours_grad, p.grad.numpy(), rtol=1e-12, atol=1e-14, err_msg=name)


def test_two_backward_calls_of_the_model_after_one_forward_are_each_allowed():
    """Each serves that forward: the counts start again at each backward of the model, not at each forward."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    theirs = _torch_dynamic_net(torch, 3, 5, 2, _draws(0))
    ours = _DynamicNet(_draws(0, 2))
    xn.load_torch_state_dict(ours, theirs.state_dict())
    x, dy = _data()
    ours.zero_grad()
    ours(x)
    ours.backward(dy)
    ours.backward(2 * dy)  # adds up since zero_grad(), as PyTorch's second backward(retain_graph=True)
    (theirs(torch.from_numpy(x)) * torch.from_numpy(3 * dy)).sum().backward()
    grads = ours.named_grads()
    np.testing.assert_allclose(grads["output_linear.W"].T, theirs.output_linear.weight.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(grads["input_linear.b"], theirs.input_linear.bias.grad.numpy(), rtol=1e-12)
    ours(x)  # draws 2: each backward calls the middle layer twice
    ours.backward(dy)
    ours.backward(dy)


def test_a_backward_after_an_evaluation_mode_forward_is_counted_alike():
    """A saliency map's backward follows model.eval(): every call of that forward is a use."""
    model = _DynamicNet(_draws(1, 0), loops=lambda n: 1)
    x, dy = _data()
    model.eval()
    model(x)
    assert model.backward(dy).shape == x.shape
    model(x)
    with pytest.raises(RuntimeError, match=r"'middle_linear' \(Linear\) more times .*\(not at all; "):
        model.backward(dy)


class _Outer(xn.Model):
    """A model calling another model of the user's, and its backward."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.head = inner, L.Linear(2, 1, dtype="float64")

    def forward(self, x, train=True):
        return self.head(self.inner(x))

    def backward(self, dy):
        return self.inner.backward(self.head.backward(dy))


def test_a_model_within_a_model_is_counted_by_its_dotted_name():
    model = _Outer(_DynamicNet(_draws(1, 2), loops=lambda n: 2))
    x, _ = _data()
    dy = np.ones((4, 1))
    model(x)
    with pytest.raises(RuntimeError, match=r"^_Outer\.backward calls the backward of 'inner\.middle_linear' "
                                           r"\(Linear\) more times .*\(once; this is backward call 2\)"):
        model.backward(dy)
    model(x)
    assert model.backward(dy).shape == x.shape


def test_a_model_called_by_itself_then_within_a_sequential_keeps_no_record_of_the_first():
    """Its record of the forward by itself would say the middle layer was not called."""
    inner = _DynamicNet(_draws(0, 2))
    x, dy = _data()
    inner.backward(inner(x))
    model = xn.Sequential(inner)
    model(x)
    assert model.backward(dy).shape == x.shape


class _Parts(xn.Model):
    """Layers whose own backward runs other layers' (Conv1d's Conv2d, WeightNorm's Linear), a cell looped twice
    (its own stack of calls) and a ReLU used twice, each taken back once per call."""

    def __init__(self):
        super().__init__()
        self.conv = L.Conv1d(2, 3, 3, padding=1, dtype="float64")
        self.cell = L.GRUCell(12, 4, dtype="float64")
        self.head = L.WeightNorm(L.Linear(4, 2, dtype="float64"))
        self.relu = L.ReLU()

    def forward(self, x, train=True):
        z = np.reshape(self.relu(self.conv(x)), (x.shape[0], -1))
        return self.head(self.relu(self.cell(z, self.cell(z))))

    def backward(self, dy):
        dz, dh = self.cell.backward(self.relu.backward(self.head.backward(dy)))
        dz2, _ = self.cell.backward(dh)
        return self.conv.backward(self.relu.backward(np.reshape(dz + dz2, (dy.shape[0], 3, 4))))


def test_layers_run_within_a_layers_own_backward_and_cells_are_not_refused():
    x = np.random.default_rng(1).standard_normal((2, 2, 4))
    assert xn.gradcheck(_Parts(), x).ok


class _Stateful(xn.Model):
    """A stateful LSTM (its state carried from call to call) under a head, written out."""

    def __init__(self):
        super().__init__()
        self.lstm, self.head = L.LSTM(3, 4, stateful=True, dtype="float64"), L.Linear(4, 2, dtype="float64")

    def forward(self, x, train=True):
        return self.head(self.lstm(x)[:, -1])

    def backward(self, dy):
        dh = np.zeros((dy.shape[0], 2, 4))
        dh[:, -1] = self.head.backward(dy)
        return self.lstm.backward(dh)


def test_a_backward_after_an_evaluation_mode_forward_of_a_stateful_layer_is_not_refused():
    """In evaluation mode a stateful layer's call is no use of the record (a sampling loop calls it again and
    again); a saliency map's backward after it takes its last call's cache."""
    model = _Stateful()
    x = np.random.default_rng(2).standard_normal((2, 2, 3))
    model.backward(model(x))  # a training step first: its backward leaves no forward since
    model.eval()
    assert model.backward(model(x)).shape == x.shape


def test_a_copy_of_a_model_after_its_forward_takes_the_backward_of_that_forward():
    """copy.deepcopy (a target network, xn.gradcheck's clone): the copy's record names the copied layers."""
    model = _DynamicNet(_draws(2))
    x, dy = _data()
    model(x)
    np.testing.assert_array_equal(copy.deepcopy(model).backward(dy), model.backward(dy))


def test_a_second_backward_of_the_model_takes_back_each_call_of_a_reused_layer_again():
    """PyTorch's retain_graph: the round of a reused layer's calls ended at its first call's backward and dropped
    them, so a second backward of the model gave every call the last call's cache (a wrong dx, silently)."""
    model = _DynamicNet(_draws(2))
    x, dy = _data()
    model(x)
    first = model.backward(dy)
    np.testing.assert_allclose(model.backward(dy), first, rtol=1e-12)


class _SoftmaxWithLoss(L.Layer):
    """The book's lastLayer as a layer of one's own, called by the model's loss() after its forward."""

    def forward(self, x, t, train=True):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        self.y, self.t = e / e.sum(axis=1, keepdims=True), t
        return float(-np.mean(np.log(self.y[np.arange(len(t)), t])))

    def backward(self, dout=1):
        dx = self.y.copy()
        dx[np.arange(len(self.t)), self.t] -= 1
        return dout * dx / len(self.t)


class _TwoLayerNet(xn.Model):
    """The book's TwoLayerNet: its layers in an ordered dict, loss() after the forward, backward in reverse."""

    def __init__(self):
        super().__init__()
        self.layers = {"Affine1": L.Linear(3, 5, dtype="float64"), "Relu1": L.ReLU(),
                       "Affine2": L.Linear(5, 2, dtype="float64")}
        self.last_layer = _SoftmaxWithLoss()

    def forward(self, x, train=True):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        return self.last_layer.forward(self.forward(x), t)

    def backward(self, dout=1):
        dout = self.last_layer.backward(dout)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        return dout


def test_the_books_two_layer_net_with_its_last_layer_called_after_the_forward_is_not_refused():
    """last_layer is called by itself after the model's forward: its cache is that call's, no earlier one's."""
    model = _TwoLayerNet()
    x, t = _data()[0], np.array([0, 1, 1, 0])
    for train in (True, False):
        model.train(train)
        model.loss(x, t)
        assert model.backward().shape == x.shape


def test_xn_train_takes_a_model_whose_backward_loops_the_drawn_count():
    x, y = _data()
    model = _DynamicNet(np.random.default_rng(3).integers(0, 4, 100).tolist().pop)
    history = xn.train(model, (x, y), loss=xn.losses.MeanSquaredError(), optimizer=xn.optim.SGD(lr=0.01),
                       epochs=3, batch_size=2, progress=False)
    assert len(history) == 3 and all(np.isfinite(e["train_loss"]) for e in history.epochs)


class _OwnBackward(xn.Sequential):
    """A Sequential whose backward is written out (the book's way), xpnet's forward kept; ``twice``: the ReLU's
    backward called twice after the one forward that called it once."""

    twice = False

    def backward(self, dy):
        dh = self[1].backward(dy)
        if self.twice:
            dh = self[1].backward(dh)
        return self[0].backward(dh)


def test_a_sequential_subclass_writing_its_own_backward_is_counted_too():
    """Its forward, xpnet's, kept no record of calls, so a backward calling a layer's backward more often than the
    forward called the layer took the earlier call's cache again, silently (a wrong gradient)."""
    x, _ = _data()
    plain, own = xn.Sequential(L.Linear(3, 4, dtype="float64"), L.ReLU()), _OwnBackward()
    own.append(L.Linear(3, 4, dtype="float64")).append(L.ReLU())
    own.load_state_dict(plain.state_dict())
    dy = np.random.default_rng(1).standard_normal((4, 4))
    plain(x), own(x)
    np.testing.assert_array_equal(own.backward(dy), plain.backward(dy))
    np.testing.assert_array_equal(own.named_grads()["0.W"], plain.named_grads()["0.W"])
    own.twice = True
    own(x)
    with pytest.raises(RuntimeError, match=r"^_OwnBackward\.backward calls the backward of '1' \(ReLU\) more times "
                                           r"than the model's last forward called it \(once; this is backward call 2"):
        own.backward(dy)
