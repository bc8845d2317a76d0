"""What tripped while porting PyTorch's beginner tutorials (quickstart, build model, optimization, save and
load, data, CIFAR-10 classifier, "What is torch.nn really?") to xpnet, written as a PyTorch user would; and the
ports docs/from-pytorch.md gives of pytorch/examples' VAE and the classic char-RNN classifier, against PyTorch."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L


class _SharedReLU(xn.Model):
    """The CIFAR-10 tutorial's habit: one activation object applied after each layer."""

    def __init__(self, width=8):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = L.Linear(4, width), L.Linear(width, width), L.Linear(width, 3)
        self.relu = L.ReLU()

    def forward(self, x, train=True):
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))

    def backward(self, dy):
        return self.fc1.backward(self.relu.backward(self.fc2.backward(self.relu.backward(self.fc3.backward(dy)))))


def _xt():
    rng = np.random.default_rng(0)
    return rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 3, 5)


class _TwoReLUs(_SharedReLU):
    """The same network with one ReLU object per use."""

    def __init__(self, width=8):
        super().__init__(width)
        self.relu2 = L.ReLU()

    def forward(self, x, train=True):
        return self.fc3(self.relu2(self.fc2(self.relu(self.fc1(x)))))

    def backward(self, dy):
        return self.fc1.backward(self.relu.backward(self.fc2.backward(self.relu2.backward(self.fc3.backward(dy)))))


def test_one_relu_applied_after_each_layer_trains_as_one_relu_per_use():
    """The CIFAR-10 tutorial's self.relu after every layer was refused (the second use's mask would serve both
    backwards): it now trains, through xn.train too, as the network with a ReLU object per use
    (tests/test_reused_layers.py checks it against PyTorch)."""
    x, t = _xt()
    x, t = np.concatenate([x] * 4), np.concatenate([t] * 4)
    trained = []
    for make in (_SharedReLU, _TwoReLUs):
        xn.manual_seed(0)
        model = make()
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(lr=0.5, momentum=0.9), epochs=3,
                 batch_size=5, progress=False, device="cpu", seed=0)
        trained.append(model.named_params())
    assert trained[0].keys() == trained[1].keys()
    for k, v in trained[0].items():
        np.testing.assert_array_equal(v, trained[1][k], err_msg=k)
    xn.manual_seed(0)
    assert not np.array_equal(_SharedReLU().named_params()["fc1.W"], trained[0]["fc1.W"])  # it did train


def test_a_forward_without_train_says_to_add_it_wherever_it_is_called():
    """The tutorials' forward(self, x): model(x) said "forward(x, train=True) takes 1 input, got 1" and pointed
    to initial states; predict gave Python's bare "unexpected keyword argument 'train'"."""
    class NeuralNetwork(xn.Model):
        def __init__(self):
            super().__init__()
            self.flatten, self.linear = L.Flatten(), L.Linear(16, 3)

        def forward(self, x):
            return self.linear(self.flatten(x))

    model, x = NeuralNetwork(), np.zeros((2, 4, 4), np.float32)
    hint = (r"NeuralNetwork.forward must take train= \(write def forward\(self, x, train=True\) and pass train on to "
            r"the layers; and backward\(self, dy\), returning dx: xpnet has no autograd\)")
    with pytest.raises(TypeError, match="^" + hint):
        model(x)
    with pytest.raises(TypeError, match="^predict: " + hint):
        model.predict(x)
    with pytest.raises(TypeError, match="^train: " + hint):
        xn.train(model, (x, np.zeros(2, int)), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=2)

    class Sequence(NeuralNetwork):  # pytorch/examples' time_sequence_prediction: the line to copy keeps future=0
        def forward(self, input, future=0):
            return self.linear(self.flatten(input))

    with pytest.raises(TypeError, match=r"write def forward\(self, input, future=0, train=True\)"):
        Sequence()(x)


def test_saving_a_state_dict_the_quickstarts_way_works_and_a_model_file_says_what_to_write(tmp_path, monkeypatch):
    """torch.save(model.state_dict(), "model.pth") then model.load_state_dict(torch.load("model.pth")): xn.save said
    only "expected an xn.Model, got dict" (later: write numpy.savez), and load_state_dict given the model xn.load
    rebuilt "got Sequential"."""
    monkeypatch.chdir(tmp_path)
    xn.manual_seed(0)
    model, x = xn.Sequential(L.Linear(4, 3)), _xt()[0]
    xn.save(model.state_dict(), "model.pth")
    fresh = xn.Sequential(L.Linear(4, 3))
    fresh.load_state_dict(xn.load("model.pth"))
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))
    xn.save(model, "model.pth")
    fresh = xn.Sequential(L.Linear(4, 3))
    with pytest.raises(TypeError, match=r"got Sequential; xn.load\(path\) rebuilds the whole model, ready to use"):
        fresh.load_state_dict(xn.load("model.pth"))
    fresh.load_state_dict(xn.load("model.pth").state_dict())
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


def test_train_false_reaches_layers_called_the_pytorch_way():
    """model(x, train=False) and model.forward(x, train=False) (or the book's forward(x, False), by position) on a
    model in training mode ran self.drop(x) in training mode (it reads its own flag): units dropped where predict
    drops none."""
    class Net(xn.Model):
        def __init__(self):
            super().__init__()
            self.fc, self.drop, self.bn = L.Linear(4, 4), L.Dropout(0.5), L.BatchNorm(4)

        def forward(self, x, train=True):
            return self.bn(self.drop(self.fc(x)))

    x = _xt()[0]
    xn.manual_seed(0)
    model = Net()
    expected = model.predict(x)
    np.testing.assert_array_equal(model(x, train=False), expected)
    np.testing.assert_array_equal(model.forward(x, train=False), expected)
    np.testing.assert_array_equal(model.forward(x, False), expected)
    assert model.training and model.drop.training and model.bn.training  # the mode is the model's again after
    np.testing.assert_array_equal(model.bn.buffers["running_mean"], np.zeros(4, np.float32))
    assert not np.array_equal(model(x), expected)


class _Logistic(xn.Model):
    """nn_tutorial's Mnist_Logistic with nn.Parameter dropped: its arrays are plain attributes."""

    def __init__(self):
        super().__init__()
        self.weights = np.zeros((4, 3), np.float32)
        self.bias = np.zeros(3, np.float32)

    def forward(self, xb, train=True):
        return xb @ self.weights + self.bias


def test_a_model_whose_arrays_are_attributes_not_parameters_says_so_before_training():
    """Every optimizer and xn.train took it and trained nothing, silently: no parameters to update."""
    x, t = _xt()
    hint = (r"_Logistic has no parameters to train: weights, bias are array attributes, which an optimizer does not "
            r"see \(PyTorch's nn.Parameter\); put each in self.params \(self.params\['weights'\] = ...\)")
    for call in (lambda m: m.parameters(), lambda m: xn.optim.SGD(m.parameters(), lr=0.5),
                 lambda m: xn.optim.SGD(m, lr=0.5).step(), lambda m: xn.optim.Adam(1e-3).step(m),
                 lambda m: xn.train(m, (x, t), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=5)):
        with pytest.raises(TypeError, match=hint):
            call(_Logistic())
    assert _Logistic().predict(x).shape == (5, 3)  # it still runs; only training needs parameters
    assert xn.Sequential(L.ReLU()).parameters() == [] and xn.optim.SGD(xn.Sequential(L.ReLU()), lr=0.1).lr == 0.1


def test_an_unshuffled_batch_iterator_iterates_as_a_dataloader_without_shuffle():
    """The quickstart's test loop, for X, y in test_dataloader: refused before, also where no shuffle was asked."""
    x, t = _xt()
    loader = xn.datasets.BatchIterator(x, t, batch_size=2, shuffle=False)
    batches = [(xb, tb) for xb, tb in loader]
    assert [len(tb) for _, tb in batches] == [2, 2, 1] and len(batches) == len(loader)
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in batches]), x)
    assert [tb.tolist() for _, tb in batches] == [tb.tolist() for _, tb in loader.epoch(3)]
    with pytest.raises(TypeError, match=r"for xb, yb in batches.epoch\(epoch\): each epoch is its own seeded shuffle"):
        iter(xn.datasets.BatchIterator(x, t, batch_size=2))


class _VAE(xn.Model):
    """pytorch/examples' vae/main.py, small, as docs/from-pytorch.md ports it; eps given (torch.randn_like's draw)."""

    def __init__(self, d=12, h=8, z=3):
        super().__init__()
        self.fc1, self.relu1, self.fc21, self.fc22 = L.Linear(d, h), L.ReLU(), L.Linear(h, z), L.Linear(h, z)
        self.fc3, self.relu3, self.fc4, self.sigmoid = L.Linear(z, h), L.ReLU(), L.Linear(h, d), L.Sigmoid()

    def forward(self, x, train=True):
        h1 = self.relu1(self.fc1(x))
        mu, logvar = self.fc21(h1), self.fc22(h1)
        self.std = np.exp(0.5 * logvar)
        z = mu + self.eps * self.std
        return self.sigmoid(self.fc4(self.relu3(self.fc3(z)))), mu, logvar

    def backward(self, drecon, dmu, dlogvar):
        dz = self.fc3.backward(self.relu3.backward(self.fc4.backward(self.sigmoid.backward(drecon))))
        dmu, dlogvar = dmu + dz, dlogvar + dz * self.eps * 0.5 * self.std
        return self.fc1.backward(self.relu1.backward(self.fc21.backward(dmu) + self.fc22.backward(dlogvar)))


def test_a_vae_whose_kl_gradient_is_written_out_trains_as_pytorchs():
    """The VAE's loss of two parts, BCE(recon, x, reduction='sum') + KLD, and its one loss.backward(): in xpnet the
    BCE's backward for the reconstruction and the KL term's gradient written out for mu and logvar (the docs' port),
    three Adam steps equal to PyTorch's in float64."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    theirs = torch.nn.ModuleDict({name: torch.nn.Linear(i, o, dtype=torch.float64) for name, i, o in
                                  (("fc1", 12, 8), ("fc21", 8, 3), ("fc22", 8, 3), ("fc3", 3, 8), ("fc4", 8, 12))})
    ours = _VAE().to(dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    bce = xn.losses.BCELoss(reduction="sum")
    opt, topt = xn.optim.Adam(ours.parameters(), lr=1e-2), torch.optim.Adam(theirs.parameters(), lr=1e-2)
    for _ in range(3):
        x, eps = rng.random((5, 12)), rng.standard_normal((5, 3))
        opt.zero_grad()
        ours.eps = eps
        recon, mu, logvar = ours(x)
        loss = bce(recon, x) + -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar))
        ours.backward(bce.backward(), mu, 0.5 * (np.exp(logvar) - 1))
        opt.step()
        topt.zero_grad()
        h1 = F.relu(theirs.fc1(torch.from_numpy(x)))
        tmu, tlogvar = theirs.fc21(h1), theirs.fc22(h1)
        trecon = torch.sigmoid(theirs.fc4(F.relu(theirs.fc3(tmu + torch.from_numpy(eps) * torch.exp(0.5 * tlogvar)))))
        tloss = F.binary_cross_entropy(trecon, torch.from_numpy(x), reduction="sum") \
            - 0.5 * torch.sum(1 + tlogvar - tmu.pow(2) - tlogvar.exp())
        tloss.backward()
        topt.step()
        assert isinstance(loss, xn.losses.LossValue) and loss.item() == pytest.approx(tloss.item(), rel=1e-12)
    for name, value in xn.torch_state_dict(ours).items():
        np.testing.assert_allclose(value, theirs.state_dict()[name].numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


class _CharRNN(xn.Model):
    """The classic char-RNN tutorial's RNN (i2h, h2h, h2o, LogSoftmax), its per-character loop inside forward."""

    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.i2h, self.h2h = L.Linear(input_size, hidden_size), L.Linear(hidden_size, hidden_size)
        self.h2o, self.tanh, self.softmax = L.Linear(hidden_size, output_size), L.Tanh(), L.LogSoftmax(dim=1)

    def forward(self, line, train=True):
        hidden = np.zeros((line.shape[1], self.hidden_size), dtype=line.dtype)
        for i in range(line.shape[0]):
            hidden = self.tanh(self.i2h(line[i]) + self.h2h(hidden))
        self.steps = line.shape[0]
        return self.softmax(self.h2o(hidden))

    def backward(self, dy):
        dh = self.h2o.backward(self.softmax.backward(dy))
        for _ in range(self.steps):
            da = self.tanh.backward(dh)
            self.i2h.backward(da)
            dh = self.h2h.backward(da)


def test_the_classic_char_rnn_with_its_loop_inside_forward_trains_as_pytorchs():
    """Its manual SGD step, p.data.add_(p.grad.data, alpha=-lr), over names of several lengths, in float64."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    torch.manual_seed(0)
    theirs = torch.nn.ModuleDict({"i2h": torch.nn.Linear(6, 5), "h2h": torch.nn.Linear(5, 5),
                                  "h2o": torch.nn.Linear(5, 3)}).double()
    ours = _CharRNN(6, 5, 3).to(dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    criterion, rng, lr = xn.losses.NLLLoss(), np.random.default_rng(0), 0.1
    for length in (4, 1, 7):
        line, category = np.eye(6)[rng.integers(0, 6, length)][:, None, :], rng.integers(0, 3, 1)
        ours.zero_grad()
        criterion(ours(line), category)
        ours.backward(criterion.backward())
        grads = ours.named_grads()
        for name, p in ours.named_params().items():
            p -= lr * grads[name]
        theirs.zero_grad()
        hidden = torch.zeros(1, 5, dtype=torch.float64)
        for i in range(length):
            hidden = torch.tanh(theirs.i2h(torch.from_numpy(line[i])) + theirs.h2h(hidden))
        log_probs = torch.log_softmax(theirs.h2o(hidden), dim=1)
        torch.nn.functional.nll_loss(log_probs, torch.from_numpy(category)).backward()
        for p in theirs.parameters():
            p.data.add_(p.grad.data, alpha=-lr)
    for name, value in xn.torch_state_dict(ours).items():
        np.testing.assert_allclose(value, theirs.state_dict()[name].numpy(), rtol=1e-12, atol=1e-14, err_msg=name)
