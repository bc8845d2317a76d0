"""One layer object called several times in one training forward, PyTorch's way (the CIFAR-10 tutorial's
``self.pool`` and ``self.relu`` after each convolution, a siamese network's one backbone, the seq2seq tutorial's
GRU at each decoder step): the backward calls take the calls back in reverse order, and the parameter gradients of
the uses add up, as autograd's. References: torch itself in float64, and every layer against two of its calls made
one after the other (forward, backward, forward, backward) on a copy."""

import copy
import inspect

import numpy as np
import pytest
from test_every_layer_everywhere import CASES, VARIANTS, _arrays, _inputs

import xpnet as xn
from xpnet import layers as L

F64 = "float64"


class CifarNet(xn.Model):
    """The CIFAR-10 tutorial's Net as written there: one MaxPool2d and one ReLU for every use."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = L.Conv2d(3, 6, 5, dtype=F64), L.Conv2d(6, 16, 5, dtype=F64)
        self.pool = L.MaxPool2d(2, 2)
        self.flatten = L.Flatten()
        self.fc1, self.fc2 = L.Linear(400, 120, dtype=F64), L.Linear(120, 84, dtype=F64)
        self.fc3 = L.Linear(84, 10, dtype=F64)
        self.relu = L.ReLU()

    def forward(self, x, train=True):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)

    def backward(self, dy):  # the forward's calls in reverse, self.relu and self.pool once per use
        dy = self.fc2.backward(self.relu.backward(self.fc3.backward(dy)))
        dy = self.flatten.backward(self.fc1.backward(self.relu.backward(dy)))
        dy = self.conv2.backward(self.relu.backward(self.pool.backward(dy)))
        return self.conv1.backward(self.relu.backward(self.pool.backward(dy)))


class BookCifarNet(CifarNet):
    """The same net written the book's way, each call ``layer.forward(x, train)``: the same uses."""

    def forward(self, x, train=True):
        x = self.pool.forward(self.relu.forward(self.conv1.forward(x, train), train), train)
        x = self.pool.forward(self.relu.forward(self.conv2.forward(x, train), train), train)
        x = self.relu.forward(self.fc1.forward(self.flatten.forward(x, train), train), train)
        return self.fc3.forward(self.relu.forward(self.fc2.forward(x, train), train), train)


class _CifarPasses:
    """CifarNet's forward and backward as a user's mixin holds them: plain functions of a class that is no layer."""

    forward = inspect.unwrap(CifarNet.forward)
    backward = inspect.unwrap(CifarNet.backward)


class MixinCifarNet(_CifarPasses, CifarNet):
    """The net with its forward and backward mixed in ahead of the model's: the same uses (they were once run
    unwrapped, and the second call of self.relu refused)."""


def _torch_grads(model, xpnet_model):
    """PyTorch's parameter gradients under xpnet's names and layouts."""
    grads = {k: v.grad for k, v in model.named_parameters()}
    return {
        name: (g.numpy().T if name.endswith(".W") and g.ndim == 2 else g.numpy())
        for name, g in zip(xpnet_model.named_params(), grads.values())}


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


@pytest.mark.parametrize("net", [CifarNet, BookCifarNet, MixinCifarNet], ids=["layer(x)", "layer.forward(x)", "mixin"])
@pytest.mark.parametrize("evaluating", [False, True], ids=["train", "eval"])
def test_the_cifar_tutorials_net_with_one_relu_and_one_pool_equals_pytorch(net, evaluating):
    """Also after model.eval(): a saliency map's (or FGSM's) backward follows an evaluation-mode forward, whose
    calls are uses too."""
    torch = _torch()

    class TorchCifarNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            nn = torch.nn
            self.conv1, self.pool, self.conv2 = nn.Conv2d(3, 6, 5), nn.MaxPool2d(2, 2), nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = self.pool(torch.relu(self.conv1(x)))
            x = self.pool(torch.relu(self.conv2(x)))
            x = torch.flatten(x, 1)
            return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))

    torch.manual_seed(0)
    theirs = TorchCifarNet().double()
    ours = net()
    xn.load_torch_state_dict(ours, theirs.state_dict())
    if evaluating:
        ours.eval()
        theirs.eval()
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((3, 3, 32, 32)), rng.standard_normal((3, 10))
    y = ours(x)
    dx = ours.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-13)
    expected = _torch_grads(theirs, ours)
    for name, g in ours.named_grads().items():
        np.testing.assert_allclose(g, expected[name], rtol=1e-12, atol=1e-13, err_msg=name)


def test_the_cifar_tutorials_net_passes_gradcheck():
    x, t = np.random.default_rng(1).standard_normal((2, 3, 32, 32)), np.array([1, 7])
    xn.manual_seed(0)
    assert xn.gradcheck(CifarNet(), x, t, loss="cross_entropy", max_entries=8).ok


class Siamese(xn.Model):
    """pytorch/examples' siamese network: one backbone (BatchNorm inside) on both images."""

    def __init__(self):
        super().__init__()
        self.backbone = xn.Sequential(L.Linear(6, 5, dtype=F64), L.BatchNorm(5, dtype=F64), L.Tanh())
        self.head = L.Linear(1, 1, dtype=F64)
        self.distance = L.PairwiseDistance()

    def forward(self, x1, x2, train=True):
        return self.head(self.distance(self.backbone(x1), self.backbone(x2))[:, None])

    def backward(self, dy):  # wrong: the first call's gradient taken back first (refused)
        d1, d2 = self.distance.backward(self.head.backward(dy)[:, 0])
        return self.backbone.backward(d1), self.backbone.backward(d2)


class SiameseReversed(Siamese):
    def backward(self, dy):
        d1, d2 = self.distance.backward(self.head.backward(dy)[:, 0])
        dx2 = self.backbone.backward(d2)  # the second call first
        return self.backbone.backward(d1), dx2


def test_a_siamese_backbone_called_on_both_inputs_equals_pytorch_over_sgd_steps():
    """Each call's BatchNorm normalises its own batch and moves the running statistics, as PyTorch's two calls;
    the backbone's weights take the sum of both uses' gradients."""
    torch = _torch()
    torch.manual_seed(0)
    nn = torch.nn
    backbone = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh()).double()
    head = nn.Linear(1, 1).double()
    ours = SiameseReversed()
    xn.load_torch_state_dict(ours.backbone, backbone.state_dict())
    xn.load_torch_state_dict(ours.head, head.state_dict())
    topt = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=0.1, momentum=0.9)
    opt = xn.optim.SGD(ours, lr=0.1, momentum=0.9)
    rng = np.random.default_rng(2)
    for _ in range(3):
        x1, x2, dy = rng.standard_normal((4, 6)), rng.standard_normal((4, 6)), rng.standard_normal((4, 1))
        opt.zero_grad()
        y = ours(x1, x2)
        dx1, dx2 = ours.backward(dy)
        opt.step()
        t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
        topt.zero_grad()
        yt = head(nn.functional.pairwise_distance(backbone(t1), backbone(t2))[:, None])
        yt.backward(torch.tensor(dy))
        topt.step()
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(dx1, t1.grad.numpy(), rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(dx2, t2.grad.numpy(), rtol=1e-11, atol=1e-13)
    for name, value in xn.torch_state_dict(ours.backbone).items():
        if name.endswith("num_batches_tracked"):  # xpnet's BatchNorm counts no batches at momentum 0.1
            continue
        np.testing.assert_allclose(value, backbone.state_dict()[name].numpy(), rtol=1e-11, atol=1e-13, err_msg=name)


def test_a_gru_called_at_each_step_of_a_decoder_loop_equals_pytorchs_loop():
    """The seq2seq tutorial's DecoderRNN: output, hidden = self.gru(output, hidden) once per step, a Linear on
    each step's output; the backward goes through the steps in reverse, passing the state's gradient back."""
    torch = _torch()
    torch.manual_seed(0)
    gru_t, out_t = torch.nn.GRU(3, 4, batch_first=True).double(), torch.nn.Linear(4, 3).double()
    steps, rng = 4, np.random.default_rng(3)
    x, h0, dys = rng.standard_normal((2, 1, 3)), rng.standard_normal((1, 2, 4)), rng.standard_normal((steps, 2, 1, 3))

    class Decoder(xn.Model):
        def __init__(self):
            super().__init__()
            self.gru, self.out = L.GRU(3, 4, return_state=True, dtype=F64), L.Linear(4, 3, dtype=F64)

        def forward(self, x, h, train=True):
            outputs = []
            for _ in range(steps):  # each step's prediction is the next step's input, as the tutorial's
                output, h = self.gru(x, h)
                x = self.out(output)
                outputs.append(x)
            return outputs

        def backward(self, dys):
            dx, dh = 0.0, np.zeros((1, 2, 4))
            for dy in reversed(dys):
                dout = self.out.backward(dy + dx)
                dx, dh = self.gru.backward(dout, dh), self.gru.dh
            return dx, dh

    ours = Decoder()
    xn.load_torch_state_dict(ours.gru, gru_t.state_dict())
    xn.load_torch_state_dict(ours.out, out_t.state_dict())
    ys = ours(x, h0)
    dx, dh0 = ours.backward(list(dys))
    xt, ht = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    inp, h, theirs = xt, ht, []
    for _ in range(steps):
        output, h = gru_t(inp, h)
        inp = out_t(output)
        theirs.append(inp)
    torch.autograd.backward(theirs, [torch.tensor(d) for d in dys])
    for y, yt in zip(ys, theirs):
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(dh0, ht.grad.numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ours.gru.grads["Wx"], gru_t.weight_ih_l0.grad.numpy().T, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ours.out.grads["W"], out_t.weight.grad.numpy().T, rtol=1e-11, atol=1e-13)


def _second_inputs(xs):
    """Other values for a second call: floats moved and scaled, ids and indices as they are."""
    return [x * -1.5 + 0.25 if x.dtype.kind == "f" else x for x in xs]


def _dys(ys, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(y.shape)).astype(y.dtype) for y in ys]


def _reusable():
    return sorted(name for name, case in {**CASES, **VARIANTS}.items() if not getattr(case.make(), "stateful", False))


@pytest.mark.parametrize("name", _reusable())
def test_every_layer_called_twice_equals_two_calls_one_after_the_other(name):
    """Called twice in one forward, backward in reverse: outputs, input gradients, the summed parameter
    gradients and the buffers equal those of a copy run forward-backward twice; and the next forward after the
    round equals the copy's too (a Dropout's draws go on from the last call's, a carried cache is the last's)."""
    case = {**CASES, **VARIANTS}[name]
    xn.init.seed(0)
    layer = case.make()
    reference = copy.deepcopy(layer)
    xs1 = _inputs(case)
    xs2 = _second_inputs(xs1)

    class Twice(xn.Model):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, train=True):
            first = _arrays(case.forward(self.layer, *xs1, train=True))  # each forward call a use
            return first, _arrays(case.forward(self.layer, *xs2, train=True))

    y1, y2 = Twice().forward()
    dy1, dy2 = _dys(y1, 1), _dys(y2, 2)
    dx2 = _arrays(case.backward(layer, *dy2))
    dx1 = _arrays(case.backward(layer, *dy1))
    grads = {k: np.array(v) for k, v in layer.named_grads().items()}

    r1 = _arrays(case.forward(reference, *xs1, train=True))
    rdx1 = _arrays(case.backward(reference, *dy1))
    rgrads = {k: np.array(v) for k, v in reference.named_grads().items()}
    r2 = _arrays(case.forward(reference, *xs2, train=True))
    rdx2 = _arrays(case.backward(reference, *dy2))
    for k, v in reference.named_grads().items():
        rgrads[k] = rgrads[k] + v if k in rgrads else v
    for ours, theirs in [(y1, r1), (y2, r2), (dx1, rdx1), (dx2, rdx2)]:
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert grads.keys() == rgrads.keys()
    for k in grads:
        np.testing.assert_allclose(grads[k], rgrads[k], rtol=1e-5, atol=1e-6, err_msg=k)
    for k, v in layer.named_buffers().items():
        np.testing.assert_allclose(v, reference.named_buffers()[k], rtol=1e-6, atol=1e-7, err_msg=k)
    for a, b in zip(_arrays(case.forward(layer, *xs1, train=True)), _arrays(case.forward(reference, *xs1, train=True))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_a_siamese_backward_in_the_forwards_order_is_refused_and_the_reverse_passes_gradcheck():
    """Where two uses do not depend on each other, the order of their backward calls is the model's to get
    right (the reverse of the calls): the forward's order, as its names say (x1, x2; d1, d2), is refused
    (it gave each call the other's cache, silently: xpnet.layers.backward_order)."""
    rng = np.random.default_rng(6)
    x1, x2 = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    xn.manual_seed(0)
    with pytest.raises(RuntimeError, match=r"backward call 1 of self\.backbone .*self\.backbone\.backward\(d1\).*"
                                           r"call 1, self\.backbone\(x1\).*serves call 2, self\.backbone\(x2\)"):
        xn.gradcheck(Siamese(), (x1, x2))
    xn.manual_seed(0)
    assert xn.gradcheck(SiameseReversed(), (x1, x2)).ok


def test_gradients_of_the_uses_add_to_those_since_zero_grad():
    """Two training steps' backward calls after one zero_grad(): each sums its own uses, and the two sums add."""
    xn.manual_seed(0)
    model = SiameseReversed()
    reference = copy.deepcopy(model)
    rng = np.random.default_rng(4)
    batches = [(rng.standard_normal((4, 6)), rng.standard_normal((4, 6)), rng.standard_normal((4, 1)))
               for _ in range(2)]
    model.zero_grad()
    for x1, x2, dy in batches:
        model(x1, x2)
        model.backward(dy)
    total = {}
    for x1, x2, dy in batches:
        reference(x1, x2)
        reference.backward(dy)
        for k, v in reference.named_grads().items():
            total[k] = total.get(k, 0) + v
    for k, v in model.named_grads().items():
        np.testing.assert_allclose(v, total[k], rtol=1e-12, err_msg=k)


def test_a_forward_whose_backward_stopped_short_leaves_nothing_to_the_next():
    """A round left unfinished (one backward for two calls, an exception in the loss) does not leak into the
    next forward's backward calls."""
    xn.manual_seed(0)
    model = SiameseReversed()
    reference = copy.deepcopy(model)
    rng = np.random.default_rng(5)
    x1, x2, dy = rng.standard_normal((4, 6)), rng.standard_normal((4, 6)), rng.standard_normal((4, 1))
    model(-x1, x2)
    model.backbone.backward(np.ones((4, 5)))  # one of the two
    model(x1, x2)
    reference(x1, x2)
    for ours, theirs in zip(model.backward(dy), reference.backward(dy)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    for k, v in model.named_grads().items():
        np.testing.assert_allclose(v, reference.named_grads()[k], rtol=1e-12, err_msg=k)


@pytest.mark.parametrize("how", ["raised", "stopped-short"])
def test_a_layer_used_on_its_own_after_an_unfinished_forward_of_a_model_gets_its_own_gradients(how):
    """The model's forward called the layer twice, then raised (or its backward stopped after one call); used on
    its own afterwards (forward, backward, twice, the book's way), the second backward got the model's first
    call's input back."""
    fc = L.Linear(3, 3, dtype=F64)

    class Twice(xn.Model):
        def __init__(self):
            super().__init__()
            self.fc = fc

        def forward(self, x, train=True):
            y = self.fc(self.fc(x))
            if how == "raised":
                raise FloatingPointError("a check of one's own")
            return y

    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3))
    if how == "raised":
        with pytest.raises(FloatingPointError):
            Twice()(x)
    else:
        Twice()(x)
        fc.backward(np.ones((2, 3)))
    for _ in range(2):
        x, dy = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
        fc(x)
        np.testing.assert_allclose(fc.backward(dy), dy @ fc.params["W"].T, rtol=1e-12)
        np.testing.assert_allclose(fc.grads["W"], x.T @ dy, rtol=1e-12)


@pytest.mark.parametrize("book", [False, True], ids=["layer(x, train=False)", "layer.forward(x, False)"])
def test_a_look_in_evaluation_mode_after_a_use_leaves_the_uses_cache_to_its_backward_as_pytorch(book):
    """A forward that also looks at a part in evaluation mode (a monitor's output on other data) after using it in
    training mode: the backward still serves the training call (the look's cache, x * 3 through a BatchNorm's
    running statistics, replaced it)."""
    torch = _torch()
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Tanh()).double()

    class Monitored(xn.Model):
        def __init__(self):
            super().__init__()
            self.body = xn.Sequential(L.Linear(4, 3, dtype=F64), L.BatchNorm(3, dtype=F64), L.Tanh())

        def forward(self, x, train=True):
            y = self.body(x)
            self.look = self.body.forward(x * 3, False) if book else self.body(x * 3, train=False)
            return y

        def backward(self, dy):
            return self.body.backward(dy)

    ours = Monitored()
    xn.load_torch_state_dict(ours.body, theirs.state_dict())
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    theirs.eval()
    look = theirs(xt.detach() * 3)
    theirs.train()
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(ours(x), yt.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(ours.look, look.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=1e-12, atol=1e-13)
    expected = _torch_grads(theirs, ours.body)
    for name, g in ours.body.named_grads().items():
        np.testing.assert_allclose(g, expected[name], rtol=1e-12, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("look_first", [False, True], ids=["siamese", "look-then-use"])
def test_a_backbone_put_in_eval_and_called_on_two_inputs_trains_as_pytorch(look_first):
    """Fine-tuning with the backbone's BatchNorm statistics frozen (``backbone.eval()``) in a siamese network:
    each of its evaluation-mode calls in the training forward is a use, taken back in reverse (the second
    backward got the second input's caches again: a weight gradient off by 3.6). ``look-then-use``: an
    evaluation-mode look before a training-mode use of the same layer leaves the use's backward right."""
    torch = _torch()
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU()).double()
    with torch.no_grad():
        theirs[1].running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        theirs[1].running_var.copy_(torch.tensor([1.5, 0.7, 2.0]))

    class Siamese(xn.Model):
        def __init__(self):
            super().__init__()
            self.backbone = xn.Sequential(L.Linear(4, 3, dtype=F64), L.BatchNorm(3, dtype=F64), L.ReLU())

        def forward(self, a, b, train=True):
            if look_first:  # a look at b in evaluation mode, then a training-mode use on a
                self.backbone.eval()
                fb = self.backbone(b)
                self.backbone.train()
                return self.backbone(a), fb
            return self.backbone(a), self.backbone(b)

        def backward(self, da, db):
            if look_first:
                return self.backbone.backward(da)
            return self.backbone.backward(db), self.backbone.backward(da)

    ours = Siamese()
    xn.load_torch_state_dict(ours.backbone, theirs.state_dict())
    if not look_first:
        ours.backbone.eval()
        theirs.eval()
    rng = np.random.default_rng(3)
    a, b, da, db = (rng.standard_normal(s) for s in [(5, 4), (5, 4), (5, 3), (5, 3)])
    at, bt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    if look_first:
        theirs.eval()
        fb_t = theirs(bt.detach())
        theirs.train()
        fa_t = theirs(at)
        fa_t.backward(torch.from_numpy(da))
    else:
        fa_t, fb_t = theirs(at), theirs(bt)
        torch.autograd.backward([fa_t, fb_t], [torch.from_numpy(da), torch.from_numpy(db)])
    fa, fb = ours(a, b)
    np.testing.assert_allclose(fa, fa_t.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(fb, fb_t.detach().numpy(), rtol=1e-12, atol=1e-13)
    grads = ours.backward(da, db)
    if look_first:
        np.testing.assert_allclose(grads, at.grad.numpy(), rtol=1e-12, atol=1e-13)
    else:
        np.testing.assert_allclose(grads[0], bt.grad.numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(grads[1], at.grad.numpy(), rtol=1e-12, atol=1e-13)
    expected = _torch_grads(theirs, ours.backbone)
    for name, g in ours.backbone.named_grads().items():
        np.testing.assert_allclose(g, expected[name], rtol=1e-12, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("make", [lambda: L.GRU(4, 3, stateful=True), lambda: L.LSTM(4, 3, stateful=True,
                                                                                      num_layers=2)],
                         ids=["GRU", "LSTM-stack"])
@pytest.mark.parametrize("book", [False, True], ids=["layer(x)", "layer.forward(x, train)"])
def test_a_stateful_recurrent_layer_called_twice_is_refused_naming_it(make, book):
    """Its state flows from one call into the next, where backward cannot follow it."""
    class Loop(xn.Model):
        def __init__(self):
            super().__init__()
            self.rnn = make()

        def forward(self, x, train=True):
            call = (lambda x: self.rnn.forward(x, train)) if book else self.rnn
            return [call(x[:, t:t + 1]) for t in range(x.shape[1])][-1]

    cell = "GRUCell" if "GRU" in repr(make()) else "LSTMCell"
    with pytest.raises(RuntimeError, match=r"^Loop.forward calls the stateful layer 'rnn' \((GRU|LSTM)\) a second "
                                           r"time in training mode: its state flows from one call into the next, "
                                           rf"where its backward cannot follow it; .*xn\.layers\.{cell}"):
        Loop()(np.ones((2, 3, 4), np.float32))
    assert Loop().forward(np.ones((2, 3, 4), np.float32), train=False).shape == (2, 1, 3)  # no backward follows


def test_a_sequential_holding_one_layer_object_twice_equals_pytorchs():
    """PyTorch's nn.Sequential(*[nn.Linear(4, 4), nn.Tanh()] * 2): one Linear and one Tanh at two places each,
    the Linear's weights shared (listed once, their gradient the sum of both uses); through xn.train too."""
    torch = _torch()
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(*[torch.nn.Linear(4, 4), torch.nn.Tanh()] * 2, torch.nn.Linear(4, 3)).double()
    shared, tanh = L.Linear(4, 4, dtype=F64), L.Tanh()
    ours = xn.Sequential(shared, tanh, shared, tanh, L.Linear(4, 3, dtype=F64))
    shared.params["W"][...] = theirs[0].weight.detach().numpy().T
    shared.params["b"][...] = theirs[0].bias.detach().numpy()
    ours[4].params["W"][...] = theirs[4].weight.detach().numpy().T
    ours[4].params["b"][...] = theirs[4].bias.detach().numpy()
    assert list(ours.named_params()) == ["0.W", "0.b", "4.W", "4.b"]
    rng = np.random.default_rng(7)
    x, t = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    xt = torch.tensor(x, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(theirs(xt), torch.tensor(t))
    loss.backward()
    criterion = xn.losses.SoftmaxCrossEntropy()
    np.testing.assert_allclose(criterion(ours(x), t), loss.item(), rtol=1e-12)
    np.testing.assert_allclose(ours.backward(criterion.backward()), xt.grad.numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(shared.grads["W"], theirs[0].weight.grad.numpy().T, rtol=1e-11, atol=1e-13)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.1)
    for _ in range(2):
        topt.zero_grad()
        torch.nn.functional.cross_entropy(theirs(torch.tensor(x)), torch.tensor(t)).backward()
        topt.step()
    ours_before = copy.deepcopy(ours)
    xn.train(ours, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(lr=0.1), epochs=2, batch_size=6,
             progress=False, device="cpu")
    np.testing.assert_allclose(shared.params["W"], theirs[0].weight.detach().numpy().T, rtol=1e-11, atol=1e-13)
    assert not np.allclose(shared.params["W"], ours_before[0].params["W"])


@pytest.mark.parametrize("graph", ["residual", "concat"])
def test_one_layer_inside_a_residual_and_its_shortcut_or_two_branches_equals_pytorch(graph):
    """Residual and Concat call their parts as ``layer(x)`` and take them back last first: one Linear in the body
    and the shortcut (two Concat branches) is two uses, dx and its weights' gradient the sum of both, as autograd."""
    torch = _torch()
    torch.manual_seed(0)
    lin_t, mid_t = torch.nn.Linear(4, 4).double(), torch.nn.Linear(4, 4).double()
    lin, mid = L.Linear(4, 4, dtype=F64), L.Linear(4, 4, dtype=F64)
    for ours, theirs in ((lin, lin_t), (mid, mid_t)):
        xn.load_torch_state_dict(ours, theirs.state_dict())
    body = xn.Sequential(lin, L.Tanh(), mid, lin)  # lin twice in the body too
    model = L.Residual(body, lin) if graph == "residual" else L.Concat(lin, body, L.Tanh(), axis=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    xt = torch.tensor(x, requires_grad=True)
    y_body = lin_t(mid_t(torch.tanh(lin_t(xt))))
    yt = y_body + lin_t(xt) if graph == "residual" else torch.cat([lin_t(xt), y_body, torch.tanh(xt)], dim=1)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    y = model(x)
    dx = model.backward(dy)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(lin.grads["W"], lin_t.weight.grad.numpy().T, rtol=1e-12)
    np.testing.assert_allclose(lin.grads["b"], lin_t.bias.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(mid.grads["W"], mid_t.weight.grad.numpy().T, rtol=1e-12)


def test_two_separate_forwards_then_their_backwards_are_refused_at_the_second():
    """``y1 = lin(x1); y2 = lin(x2)``, then ``backward(dy2)`` and ``backward(dy1)``, as autograd would take them
    (the classic char-RNN's ``rnn(line[i], hidden)`` at each character, a GAN's D on real then fake): one call's
    caches are kept, so the second backward would silently repeat the last call's gradient ([[0, 0], [2, 2]]
    where PyTorch's is [[1, 1], [1, 1]]). The first backward serves the last forward; the second is refused."""
    lin = L.Linear(2, 2, dtype=F64)
    lin.zero_grad()
    lin(np.array([[1.0, 0.0]]))
    lin(np.array([[0.0, 1.0]]))
    lin.backward(np.ones((1, 2)))
    np.testing.assert_array_equal(lin.grads["W"], [[0.0, 0.0], [1.0, 1.0]])  # the last forward's, right
    with pytest.raises(RuntimeError, match=r"^Linear\.backward: the layer ran 2 training forwards before its "
                                           r"backward calls.*join the inputs into one batch"):
        lin.backward(np.ones((1, 2)))
    np.testing.assert_array_equal(lin.grads["W"], [[0.0, 0.0], [1.0, 1.0]])  # nothing added

    class Step(xn.Model):  # one step of a recurrence, called by the user's loop outside any forward
        def __init__(self):
            super().__init__()
            self.lin, self.act = L.Linear(3, 3, dtype=F64), L.Tanh()

        def forward(self, x, train=True):
            return self.act(self.lin(x))

        def backward(self, dy):
            return self.lin.backward(self.act.backward(dy))

    step, h = Step(), np.ones((2, 3))
    for _ in range(3):
        h = step(h)
    with pytest.raises(RuntimeError, match=r"^Step\.backward after a loop of `h = step\(h\)`: each call takes"):
        step.backward(np.ones((2, 3)))  # the loop's calls feed each other: even the first backward is short
    for x in (h, 2 * h, 3 * h):
        y = step(x)
    dh = step.backward(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match=r"^Step\.backward: the model ran 3 training forwards"):
        step.backward(dh)
    step(y)  # a new forward: its backward is served again
    step.backward(np.ones((2, 3)))


def test_evaluation_forwards_after_unserved_training_forwards_each_take_their_backward():
    """Targets made in training mode (style transfer's ``model(content_img)`` on a Sequential left in training
    mode), then ``eval()`` and a backward per evaluation forward (its closure, a saliency map): the second backward
    was refused as if the training forwards' caches were lost, though each serves the evaluation forward before
    it; each now gives that forward's gradient, for a model and a lone layer."""
    model = xn.Sequential(L.Linear(3, 4, dtype=F64), L.Tanh(), L.Linear(4, 2, dtype=F64))
    lone = L.Linear(3, 2, dtype=F64)
    rng = np.random.default_rng(4)
    for net in (model, lone):
        net(rng.standard_normal((5, 3)))
        net(rng.standard_normal((5, 3)))  # two training forwards, no backward
        net.eval()
        for _ in range(3):
            x = rng.standard_normal((5, 3))
            y = net(x)
            dx = net.backward(np.ones_like(y))
            eps = 1e-6 * rng.standard_normal(x.shape)  # dx is this forward's: d(sum y) along a small step
            assert np.sum(net(x + eps)) - np.sum(y) == pytest.approx(np.sum(dx * eps), rel=1e-4)


def test_several_backward_calls_after_one_forward_add_up_as_pytorchs_retained_graph():
    """One forward, then backward(dy_a) and backward(dy_b) after zero_grad(): PyTorch's
    ``y.backward(dy_a, retain_graph=True); y.backward(dy_b)``; an evaluation-mode call in between is no forward
    of training and changes nothing."""
    torch = _torch()
    torch.manual_seed(0)
    theirs = torch.nn.Linear(3, 2).double()
    ours = xn.Sequential(L.Linear(3, 2, dtype=F64), L.Tanh())
    xn.load_torch_state_dict(ours, {"0." + k: v for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(0)
    x, dy_a, dy_b = rng.standard_normal((4, 3)), rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    ours.zero_grad()
    ours(x)
    ours.backward(dy_a)
    ours.predict(x)
    ours.backward(dy_b)
    yt = torch.tanh(theirs(torch.tensor(x)))
    yt.backward(torch.tensor(dy_a), retain_graph=True)
    yt.backward(torch.tensor(dy_b))
    np.testing.assert_allclose(ours[0].grads["W"], theirs.weight.grad.numpy().T, rtol=1e-12)
    np.testing.assert_allclose(ours[0].grads["b"], theirs.bias.grad.numpy(), rtol=1e-12)


def test_a_lone_layer_takes_zero_grad_and_adds_its_backward_calls():
    """``cell.zero_grad()`` as PyTorch's module method on any layer (a lone RNNCell raised AttributeError):
    forward-backward twice then adds both calls' gradients, as autograd's accumulation."""
    torch = _torch()
    cell, cell_t = L.RNNCell(3, 4, dtype=F64), torch.nn.RNNCell(3, 4).double()
    xn.load_torch_state_dict(cell, cell_t.state_dict())
    rng = np.random.default_rng(1)
    xs, dys = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 4))
    cell.zero_grad()
    for x, dy in zip(xs, dys):
        cell(x)
        cell.backward(dy)
        cell_t(torch.tensor(x)).backward(torch.tensor(dy))
    grads = xn.torch_state_dict(_holding_grads(cell))  # one bias here: its gradient is bias_ih's (= bias_hh's)
    for name in ("weight_ih", "weight_hh", "bias_ih"):
        np.testing.assert_allclose(grads[name], getattr(cell_t, name).grad.numpy(), rtol=1e-12, err_msg=name)


def _holding_grads(layer):
    """A copy of ``layer`` whose parameters are its gradients (for torch_state_dict's names and layouts)."""
    holder = copy.deepcopy(layer)
    for name, g in layer.named_grads().items():
        holder.set_param(name, g)
    return holder


def test_a_layer_of_ones_own_calling_its_part_twice_as_layer_x_passes_gradcheck():
    """A layer that is not a container, calling one held Tanh twice as ``self.act(x)``: two uses, taken back
    last first by its backward (its ``self.act.forward`` calls would be its own business, as Conv1d's)."""
    class Twice(L.Layer):
        def __init__(self):
            super().__init__()
            self.act = L.Tanh()

        def forward(self, x, train=True):
            return self.act(self.act(x) * 2.0)

        def backward(self, dy):
            return self.act.backward(self.act.backward(dy) * 2.0)

    model = xn.Sequential(L.Linear(3, 3, dtype=F64), Twice())
    assert xn.gradcheck(model, np.random.default_rng(0).standard_normal((2, 3))).ok



def _small_sequential():
    return xn.Sequential(L.Linear(3, 4, dtype=F64), L.ReLU(), L.Linear(4, 2, dtype=F64))


@pytest.mark.parametrize("net", [CifarNet, _small_sequential], ids=["own", "sequential"])
def test_predict_between_a_forward_and_its_backward_leaves_the_backward_to_the_forward(net):
    """PyTorch's loss on model(x), a prediction on other data (a target, a log line), then the backward: the
    gradient is x's (predict's batch took its place, silently); a backward after predict alone is predict's (a
    saliency map)."""
    rng = np.random.default_rng(5)
    model = net()
    shape = (2, 3, 32, 32) if isinstance(model, CifarNet) else (2, 3)
    x, x2 = rng.standard_normal(shape), rng.standard_normal(shape)
    dy = rng.standard_normal((2, 10 if isinstance(model, CifarNet) else 2))
    model(x)
    expected = model.backward(dy)
    grads = {k: v.copy() for k, v in model.named_grads().items()}
    model(x)
    model.predict(x2)
    np.testing.assert_array_equal(model.backward(dy), expected)
    for k, g in model.named_grads().items():
        np.testing.assert_array_equal(g, grads[k], err_msg=k)
    model.eval()
    model(x2)
    saliency = model.backward(dy)
    model.train()
    model.predict(x2)
    np.testing.assert_array_equal(model.backward(dy), saliency)


def test_evaluate_between_a_forward_and_its_backward_leaves_the_backward_to_the_forward():
    """xn.evaluate (a validation line between a step's loss and its backward, with the step's loss object, of which
    PyTorch's criterion keeps nothing) leaves the model, as predict does, and the loss as they were: the backward
    is x's (the evaluated batch, of x's shape, took its place in both, silently)."""
    rng = np.random.default_rng(5)
    model, loss = _small_sequential(), xn.losses.SoftmaxCrossEntropy()
    x, x2, t, t2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), np.array([0, 1, 1, 0]), np.array([1] * 4)
    loss.forward(model(x), t)
    expected = model.backward(loss.backward())
    grads = {k: v.copy() for k, v in model.named_grads().items()}
    loss.forward(model(x), t)
    xn.evaluate(model, (x2, t2), loss=loss)
    np.testing.assert_array_equal(model.backward(loss.backward()), expected)
    for k, g in model.named_grads().items():
        np.testing.assert_array_equal(g, grads[k], err_msg=k)


def test_a_sequential_notes_each_layer_call_as_the_layer_would_note_it_itself():
    """Sequential's forward notes its layers' calls itself (one decision per layer, without their wrappers): each
    layer's backward after a forward under no_grad is refused, as the model's; after more training forwards (the
    no_grad one counts) a layer's second backward is refused (its caches are the last forward's); a layer placed
    twice still gets both uses back."""
    lin = L.Linear(3, 3, dtype=F64)
    seq = xn.Sequential(L.Linear(3, 4, dtype=F64), L.ReLU(), L.Linear(4, 2, dtype=F64))
    x = np.random.default_rng(0).standard_normal((2, 3))
    with xn.no_grad():
        seq(x)
    for part, width in ((seq, 2), (seq[0], 4), (seq[1], 4), (seq[2], 2)):
        with pytest.raises(RuntimeError, match=rf"{part.name}.backward: the (model|layer)'s last forward ran under "
                                               r"xn.no_grad\(\)"):
            part.backward(np.ones((2, width)))
    seq(x)
    seq(x)
    seq[2].backward(np.ones((2, 2)))
    with pytest.raises(RuntimeError, match=r"Linear.backward: the layer ran 3 training forwards"):
        seq[2].backward(np.ones((2, 2)))
    twice = xn.Sequential(lin, L.Tanh(), lin)
    dx = twice.backward(np.ones((2, 3)) + 0 * twice(x))
    one, two = copy.deepcopy(lin), copy.deepcopy(lin)
    h = np.tanh(one.forward(x))
    two.forward(h)
    expected = one.backward((1 - h ** 2) * two.backward(np.ones((2, 3))))
    np.testing.assert_allclose(dx, expected, rtol=1e-12)
    np.testing.assert_allclose(lin.grads["W"], one.grads["W"] + two.grads["W"], rtol=1e-12)
