"""pytorch/tutorials' checkpoint recipes (what_is_state_dict, saving and loading for inference, a general
checkpoint, several models in one file, warmstarting, across devices; beginner_source/saving_loading_models.py),
ported to xpnet as a PyTorch user writes them first, each run next to the same program in torch, float64, the same
initial weights; and what the ports showed a porter has to be told. No datasets here: small random images."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn
import xpnet.optim as optim

from cifar_net import CifarNet


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _close(ours, theirs, name=""):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


# --- recipes_source/recipes: the recipes' Net ------------------------------------------------------------------------

_Net = CifarNet  # the recipes' Net (tests/cifar_net.py)


def _torch_net(torch):
    """The recipes' Net as it is there."""
    F, tnn = torch.nn.functional, torch.nn

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 6, 5)
            self.pool = tnn.MaxPool2d(2, 2)
            self.conv2 = tnn.Conv2d(6, 16, 5)
            self.fc1 = tnn.Linear(16 * 5 * 5, 120)
            self.fc2 = tnn.Linear(120, 84)
            self.fc3 = tnn.Linear(84, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = x.flatten(start_dim=1)
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)

    return Net().double()


def _pair(torch, seed):
    """A torch Net and an xpnet Net holding the same float64 weights."""
    torch.manual_seed(seed)
    theirs = _torch_net(torch)
    ours = _Net().to(dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    return ours, theirs


def _batches(n=4):
    rng = np.random.default_rng(0)
    return [(rng.uniform(-1, 1, (2, 3, 32, 32)), rng.integers(0, 10, 2)) for _ in range(n)]


def _xpnet_steps(model, optimizer, batches):
    criterion, losses = xn.losses.SoftmaxCrossEntropy(), []
    for x, y in batches:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        model.backward(criterion.backward())
        optimizer.step()
        losses.append(loss.item())
    return losses


def _torch_steps(torch, model, optimizer, batches):
    criterion, losses = torch.nn.CrossEntropyLoss(), []
    for x, y in batches:
        optimizer.zero_grad()
        loss = criterion(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _same_weights(ours, theirs):
    for name, array in xn.torch_state_dict(ours).items():
        _close(array, theirs.state_dict()[name], name)


# --- saving_and_loading_a_general_checkpoint.py, beginner_source/saving_loading_models.py ----------------------------

def test_a_general_checkpoint_resumes_sgd_with_momentum_as_pytorchs(tmp_path):
    """Two SGD(momentum=0.9) steps, ``torch.save({'epoch', 'model_state_dict', 'optimizer_state_dict', 'loss'})``
    as ``xn.save``, then the recipe's load into a new Net and a new optimizer (``checkpoint = xn.load(PATH)``, the
    two ``load_state_dict``s, ``model.train()``) and two more steps: the losses, the epoch and loss read back, and
    the weights (the momentum carried over) equal torch's in float64."""
    torch = _torch()
    ours, theirs = _pair(torch, 0)
    batches = _batches()
    optimizer = optim.SGD(ours.parameters(), lr=0.01, momentum=0.9)
    got = _xpnet_steps(ours, optimizer, batches[:2])
    topt = torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9)
    want = _torch_steps(torch, theirs, topt, batches[:2])
    PATH = str(tmp_path / "model.pt")
    xn.save({'epoch': 5, 'model_state_dict': ours.state_dict(), 'optimizer_state_dict': optimizer.state_dict(),
             'loss': got[-1]}, PATH)
    model = _Net().to(dtype="float64")
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    checkpoint = xn.load(PATH, weights_only=True)
    model.load_state_dict(checkpoint['model_state_dict'])
    optimizer.load_state_dict(checkpoint['optimizer_state_dict'])
    epoch, loss = checkpoint['epoch'], checkpoint['loss']
    model.train()
    assert (epoch, loss) == (5, got[-1]) and isinstance(epoch, int)
    got += _xpnet_steps(model, optimizer, batches[2:])
    tpath = str(tmp_path / "torch_model.pt")
    torch.save({'epoch': 5, 'model_state_dict': theirs.state_dict(), 'optimizer_state_dict': topt.state_dict(),
                'loss': want[-1]}, tpath)
    tmodel = _torch_net(torch)
    toptimizer = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
    tcheckpoint = torch.load(tpath, weights_only=True)
    tmodel.load_state_dict(tcheckpoint['model_state_dict'])
    toptimizer.load_state_dict(tcheckpoint['optimizer_state_dict'])
    tmodel.train()
    want += _torch_steps(torch, tmodel, toptimizer, batches[2:])
    np.testing.assert_allclose(got, want, rtol=1e-10)
    _same_weights(model, tmodel)


# --- saving_multiple_models_in_one_file.py ----------------------------------------------------------------------------

def test_two_models_and_their_optimizers_in_one_file_resume_as_pytorchs(tmp_path):
    """netA with SGD(momentum=0.9), netB with Adam, a step each; the recipe's one dict of four state dicts, loaded
    into new models and optimizers, ``eval()`` outputs, then ``train()`` and a step each: equal to torch's, so the
    momentum buffer and Adam's moments and step count came back."""
    torch = _torch()
    (netA, tnetA), (netB, tnetB) = _pair(torch, 1), _pair(torch, 2)
    batches = _batches(3)
    optimizerA, optimizerB = optim.SGD(netA.parameters(), lr=0.01, momentum=0.9), optim.Adam(netB.parameters(), 1e-3)
    toptA = torch.optim.SGD(tnetA.parameters(), lr=0.01, momentum=0.9)
    toptB = torch.optim.Adam(tnetB.parameters(), 1e-3)
    got = _xpnet_steps(netA, optimizerA, batches[:1]) + _xpnet_steps(netB, optimizerB, batches[:2])
    want = _torch_steps(torch, tnetA, toptA, batches[:1]) + _torch_steps(torch, tnetB, toptB, batches[:2])
    PATH = str(tmp_path / "model.pt")
    xn.save({'modelA_state_dict': netA.state_dict(), 'modelB_state_dict': netB.state_dict(),
             'optimizerA_state_dict': optimizerA.state_dict(), 'optimizerB_state_dict': optimizerB.state_dict()},
            PATH)
    modelA, modelB = _Net().to(dtype="float64"), _Net().to(dtype="float64")
    optimModelA = optim.SGD(modelA.parameters(), lr=0.01, momentum=0.9)
    optimModelB = optim.Adam(modelB.parameters(), 1e-3)
    checkpoint = xn.load(PATH)
    modelA.load_state_dict(checkpoint['modelA_state_dict'])
    modelB.load_state_dict(checkpoint['modelB_state_dict'])
    optimModelA.load_state_dict(checkpoint['optimizerA_state_dict'])
    optimModelB.load_state_dict(checkpoint['optimizerB_state_dict'])
    modelA.eval()
    modelB.eval()
    x = batches[2][0]
    _close(modelA(x), tnetA.eval()(torch.from_numpy(x)))
    _close(modelB(x), tnetB.eval()(torch.from_numpy(x)))
    modelA.train()
    modelB.train()
    got += _xpnet_steps(modelA, optimModelA, batches[2:]) + _xpnet_steps(modelB, optimModelB, batches[2:])
    tnetA.train()
    tnetB.train()
    want += _torch_steps(torch, tnetA, toptA, batches[2:]) + _torch_steps(torch, tnetB, toptB, batches[2:])
    np.testing.assert_allclose(got, want, rtol=1e-10)
    _same_weights(modelA, tnetA)
    _same_weights(modelB, tnetB)


def test_an_optimizer_state_of_another_model_is_refused_naming_its_parameters():
    """The state of a Sequential(Linear, ReLU, Linear)'s SGD loaded into that of a Sequential(Linear, Linear) (the
    saved ``optimizerB_state_dict`` given to optimizerA, or a checkpoint of an older model): PyTorch pairs the
    parameters by position; xpnet, pairing them by name, kept the state of '2.W' unused and started '1.W' without
    momentum, silently. Refused, naming both."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3)), rng.integers(0, 2, 4)
    saved = xn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).to(dtype="float64")
    opt = optim.SGD(saved.parameters(), lr=0.1, momentum=0.9)
    _xpnet_steps(saved, opt, [(x, y)])
    other = xn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).to(dtype="float64")
    with pytest.raises(ValueError, match=r"^SGD\.load_state_dict: the state is of another model: it holds state for "
                                         r"\['2\.W', '2\.b'\], which this model has no parameter of \(its "
                                         r"\['1\.W', '1\.b'\] have none\)"):
        optim.SGD(other.parameters(), lr=0.1, momentum=0.9).load_state_dict(opt.state_dict())
    edited = opt.state_dict()
    edited["param_groups"][0]["lr"] = 0.5  # PyTorch's way to change a saved lr: the groups are what loads
    with pytest.raises(ValueError, match=r"'hyperparams' and 'param_groups'\[0\] differ in \['lr'\]"):
        optim.SGD(saved.parameters(), lr=0.1, momentum=0.9).load_state_dict(edited)
    edited["hyperparams"]["lr"] = 0.5
    again = optim.SGD(saved.parameters(), lr=0.1, momentum=0.9)
    again.load_state_dict(edited)
    assert again.param_groups[0]["lr"] == 0.5
    fresh = optim.SGD(other.parameters(), lr=0.1, momentum=0.9)  # a state of fewer parameters (one frozen) loads
    fresh.load_state_dict({**opt.state_dict(), "state": {"0.W": opt.state_dict()["state"]["0.W"]}})
    assert list(fresh.state) == ["0.W"]


def test_torch_optimizers_state_dict_is_refused_saying_what_loads(tmp_path):
    """A checkpoint that torch wrote, read by ``xn.read_torch_file``: its model state dict loads through
    ``xn.load_torch_state_dict``; its optimizer state dict (state by parameter index, PyTorch's layouts) was refused
    as a dict of other keys; now the error says what it is and what to write."""
    torch = _torch()
    tnet = torch.nn.Sequential(torch.nn.Linear(3, 2)).double()
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1, momentum=0.9)
    tnet(torch.ones(2, 3, dtype=torch.float64)).sum().backward()
    topt.step()
    PATH = str(tmp_path / "model.pt")
    torch.save({'model_state_dict': tnet.state_dict(), 'optimizer_state_dict': topt.state_dict()}, PATH)
    checkpoint = xn.read_torch_file(PATH)
    model = xn.Sequential(nn.Linear(3, 2)).to(dtype="float64")
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"^SGD\.load_state_dict: this is torch\.optim's state_dict .* "
                                         r"xn\.load_torch_state_dict\(model, checkpoint\['model_state_dict'\]\)"):
        optimizer.load_state_dict(checkpoint['optimizer_state_dict'])
    with pytest.raises(ValueError, match=r"xn\.load_torch_state_dict"):
        model.load_state_dict(checkpoint['model_state_dict'])
    xn.load_torch_state_dict(model, checkpoint['model_state_dict'])
    _same_weights(model, tnet)



def test_an_entire_model_saved_in_evaluation_mode_loads_in_it_as_torchs(tmp_path):
    """``torch.save(net, PATH)`` after ``net.eval()``: ``torch.load`` gives the model back in evaluation mode (its
    ``training`` flags are pickled), so ``model(x)`` without another ``eval()`` drops nothing; ``xn.load`` built it
    in training mode, Dropout dropping, silently. The file now names the nodes saved in evaluation mode (a layer
    left in it inside a training model too), and the outputs equal torch's."""
    torch = _torch()
    torch.manual_seed(7)
    tnet = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3)).double()
    net = xn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3)).to(dtype="float64")
    xn.load_torch_state_dict(net, tnet.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 4))
    PATH, tpath = str(tmp_path / "entire_model.pt"), str(tmp_path / "torch_model.pt")
    net.eval()
    tnet.eval()
    xn.save(net, PATH)
    torch.save(tnet, tpath)
    model, tmodel = xn.load(PATH), torch.load(tpath, weights_only=False)
    assert [m.training for m in model.named_modules().values()] == [m.training for m in tmodel.modules()]
    _close(model(x), tmodel(torch.from_numpy(x)))
    net.train()
    net[1].eval()
    xn.save(net, PATH)
    assert [m.training for m in xn.load(PATH).named_modules().values()] == [True, True, False, True]


# --- warmstarting_model_using_parameters_from_a_different_model.py ---------------------------------------------------

class _NetB(_Net):
    """A warmstarted model of the recipe's kind: the Net with another head, ``self.out`` (84, 5) for ``fc3``."""

    def __init__(self):
        super().__init__()
        del self.fc3
        self.out = nn.Linear(84, 5)

    def forward(self, x, train=True):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        return self.out(self.relu(self.fc2(self.relu(self.fc1(self.flatten(x))))))


def test_warmstarting_with_strict_false_reports_and_loads_as_pytorch(tmp_path):
    """``netB.load_state_dict(torch.load(PATH), strict=False)``: the recipe's NetB of the same layers gets every
    key, and a NetB with another head (``out`` for ``fc3``) gets the rest, its head as it was; the missing and
    unexpected keys are torch's (xpnet's names, ``W`` for ``weight``). A head of another shape under the same name
    is refused, as torch's ``size mismatch``."""
    torch = _torch()
    netA, tnetA = _pair(torch, 3)
    PATH, tpath = str(tmp_path / "model.pt"), str(tmp_path / "torch_model.pt")
    xn.save(netA.state_dict(), PATH)
    torch.save(tnetA.state_dict(), tpath)
    netB = _Net().to(dtype="float64")
    assert tuple(netB.load_state_dict(xn.load(PATH), strict=False)) == ([], [])
    assert tuple(_torch_net(torch).load_state_dict(torch.load(tpath), strict=False)) == ([], [])
    _same_weights(netB, tnetA)

    class TNetB(type(_torch_net(torch))):
        def __init__(self):
            super().__init__()
            del self.fc3
            self.out = torch.nn.Linear(84, 5)

    netB, tnetB = _NetB().to(dtype="float64"), TNetB().double()
    head = netB.out.params["W"].copy()
    got = netB.load_state_dict(xn.load(PATH), strict=False)
    want = tnetB.load_state_dict(torch.load(tpath), strict=False)
    as_torchs = [[k.replace(".W", ".weight").replace(".b", ".bias") for k in keys] for keys in got]
    assert as_torchs == [want.missing_keys, want.unexpected_keys] == [["out.weight", "out.bias"],
                                                                       ["fc3.weight", "fc3.bias"]]
    np.testing.assert_array_equal(netB.out.params["W"], head)
    _close(netB.fc2.params["W"].T, tnetA.fc2.weight)

    class NetC(_Net):
        def __init__(self):
            super().__init__()
            self.fc3 = nn.Linear(84, 5)

    with pytest.raises(ValueError, match=r"'fc3\.W' has shape \(84, 10\) in the dict but \(84, 5\) in the model"):
        NetC().load_state_dict(xn.load(PATH), strict=False)
    with pytest.raises(RuntimeError, match="size mismatch for fc3.weight"):
        tnetC = _torch_net(torch)
        tnetC.fc3 = torch.nn.Linear(84, 5)
        tnetC.load_state_dict(torch.load(tpath), strict=False)


def test_a_pytorch_state_dict_given_with_strict_false_is_refused_not_left_out():
    """A PyTorch state dict (``weight``, ``bias``) into an xpnet model with ``strict=False`` (the warmstart recipe's
    line, with a checkpoint torch wrote): every key unexpected, every parameter missing, and the call returned them
    having loaded nothing, silently, where torch's load fills the layers. Refused, saying
    ``xn.load_torch_state_dict(model, d, strict=False)``, which loads it."""
    torch = _torch()
    ours, theirs = _pair(torch, 4)
    fresh = _Net().to(dtype="float64")
    with pytest.raises(ValueError, match=r"strict=False would leave out \['conv1\.weight', .*\n.*"
                                         r"xn\.load_torch_state_dict\(model, d, strict=False\)"):
        fresh.load_state_dict(theirs.state_dict(), strict=False)
    assert tuple(xn.load_torch_state_dict(fresh, theirs.state_dict(), strict=False)) == ([], [])
    _same_weights(fresh, theirs)


# --- what_is_state_dict.py, saving_and_loading_models_for_inference.py, save_load_across_devices.py -------------------

def test_inference_recipes_state_dict_and_entire_model_across_devices_as_pytorchs(tmp_path):
    """The state dict saved and loaded into a new Net (``map_location=torch.device('cpu')``, as the across-devices
    recipe's, taken as its name), then ``model.eval()``; the entire model saved and rebuilt by ``xn.load``: the
    outputs equal torch's. What what_is_state_dict prints: ``xn.torch_state_dict(net)`` has torch's names and
    ``.shape`` its sizes (``net.state_dict()`` is xpnet's own, ``fc1.W`` (400, 120)); the optimizer's group holds
    torch's hyperparameters."""
    torch = _torch()
    net, tnet = _pair(torch, 5)
    assert {k: v.shape for k, v in xn.torch_state_dict(net).items()} == \
        {k: tuple(v.size()) for k, v in tnet.state_dict().items()}
    assert net.state_dict()["fc1.W"].shape == (400, 120)
    optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    group = torch.optim.SGD(tnet.parameters(), lr=0.001, momentum=0.9).state_dict()["param_groups"][0]
    assert {k: v for k, v in optimizer.param_groups[0].items() if k in group and k != "params"} == \
        {k: v for k, v in group.items() if k != "params"}
    saved = optimizer.state_dict()["param_groups"][0]  # a KeyError before: one group was saved as 'hyperparams'
    assert {k: v for k, v in saved.items() if k in group} == {k: v for k, v in group.items() if k in saved}
    assert {"lr", "momentum", "dampening", "weight_decay", "nesterov"} <= set(saved)
    x = _batches(1)[0][0]
    want = tnet.eval()(torch.from_numpy(x))
    PATH = str(tmp_path / "state_dict_model.pt")
    xn.save(net.state_dict(), PATH)
    model = _Net().to(dtype="float64")
    model.load_state_dict(xn.load(PATH, map_location=torch.device('cpu')))
    model.eval()
    _close(model(x), want)
    PATH = str(tmp_path / "entire_model.pt")
    xn.save(net, PATH)
    model = xn.load(PATH)
    model.eval()
    assert type(model) is _Net and not model.training
    _close(model(x), want)


# --- beginner_source/nn_tutorial.py: fit(), get_data(), loss_batch(), the CNNs, WrappedDataLoader ---------------------

def _loss_batch(model, loss_func, xb, yb, opt=None):
    """The tutorial's loss_batch; ``model.backward(loss_func.backward())`` for ``loss.backward()``."""
    loss = loss_func(model(xb), yb)
    if opt is not None:
        model.backward(loss_func.backward())
        opt.step()
        opt.zero_grad()
    return loss.item(), len(xb)


def _fit(epochs, model, loss_func, opt, train_dl, valid_dl):
    """The tutorial's fit, its validation losses returned; ``train_dl.epoch(epoch)``, each epoch's shuffle, for
    the DataLoader's ``train_dl``, and ``xn.no_grad()``."""
    val_losses = []
    for epoch in range(epochs):
        model.train()
        for xb, yb in train_dl.epoch(epoch):
            _loss_batch(model, loss_func, xb, yb, opt)
        model.eval()
        with xn.no_grad():
            losses, nums = zip(*[_loss_batch(model, loss_func, xb, yb) for xb, yb in valid_dl])
        val_loss = np.sum(np.multiply(losses, nums)) / np.sum(nums)
        val_losses.append(val_loss)
    return val_losses


def _get_data(train_ds, valid_ds, bs):
    """The tutorial's get_data: ``xn.datasets.BatchIterator`` for DataLoader (its ``shuffle`` by name: xpnet's
    default is True, the DataLoader's False)."""
    return (xn.datasets.BatchIterator(*train_ds, batch_size=bs, shuffle=True),
            xn.datasets.BatchIterator(*valid_ds, batch_size=bs * 2, shuffle=False))


class _WrappedDataLoader:
    """The tutorial's WrappedDataLoader, with ``epoch`` for a shuffled loader's epochs."""

    def __init__(self, dl, func):
        self.dl = dl
        self.func = func

    def __len__(self):
        return len(self.dl)

    def __iter__(self):
        for b in self.dl:
            yield self.func(*b)

    def epoch(self, epoch):
        for b in self.dl.epoch(epoch):
            yield self.func(*b)


class _Mnist_CNN(xn.Model):
    """The tutorial's Mnist_CNN: ``xb.view(-1, 1, 28, 28)`` as ``xb.reshape``, ``F.avg_pool2d(xb, 4)`` as
    ``nn.AvgPool2d(4)``, ``xb.view(-1, xb.size(1))`` as ``xb.reshape(-1, xb.shape[1])``. xb (N, 784) -> (N, 10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 16, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(16, 10, kernel_size=3, stride=2, padding=1)
        self.relu, self.pool = nn.ReLU(), nn.AvgPool2d(4)

    def forward(self, xb, train=True):
        self.n = xb.shape[0]
        xb = xb.reshape(-1, 1, 28, 28)
        xb = self.relu(self.conv1(xb))
        xb = self.relu(self.conv2(xb))
        xb = self.relu(self.conv3(xb))
        xb = self.pool(xb)
        return xb.reshape(-1, xb.shape[1])

    def backward(self, dy):
        dy = self.pool.backward(dy.reshape(-1, 10, 1, 1))
        dy = self.conv2.backward(self.relu.backward(self.conv3.backward(self.relu.backward(dy))))
        return self.conv1.backward(self.relu.backward(dy)).reshape(self.n, 784)


def _torch_fit(torch, epochs, model, opt, train_batches, valid_dl):
    """The tutorial's fit and loss_batch as they are there (``F.cross_entropy``), each epoch's batches given."""
    F = torch.nn.functional

    def loss_batch(model, loss_func, xb, yb, opt=None):
        loss = loss_func(model(xb), yb)
        if opt is not None:
            loss.backward()
            opt.step()
            opt.zero_grad()
        return loss.item(), len(xb)

    val_losses = []
    for epoch in range(epochs):
        model.train()
        for xb, yb in train_batches[epoch]:
            loss_batch(model, F.cross_entropy, xb, yb, opt)
        model.eval()
        with torch.no_grad():
            losses, nums = zip(*[loss_batch(model, F.cross_entropy, xb, yb) for xb, yb in valid_dl])
        val_losses.append(np.sum(np.multiply(losses, nums)) / np.sum(nums))
    return val_losses


def _torch_cnns(torch):
    """The tutorial's three CNNs as they are there: Mnist_CNN, the Sequential with ``Lambda(preprocess)`` and
    ``nn.AvgPool2d(4)``, the one with ``nn.AdaptiveAvgPool2d(1)``."""
    tnn, F = torch.nn, torch.nn.functional

    class Mnist_CNN(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1)
            self.conv2 = tnn.Conv2d(16, 16, kernel_size=3, stride=2, padding=1)
            self.conv3 = tnn.Conv2d(16, 10, kernel_size=3, stride=2, padding=1)

        def forward(self, xb):
            xb = xb.view(-1, 1, 28, 28)
            xb = F.relu(self.conv1(xb))
            xb = F.relu(self.conv2(xb))
            xb = F.relu(self.conv3(xb))
            xb = F.avg_pool2d(xb, 4)
            return xb.view(-1, xb.size(1))

    class Lambda(tnn.Module):
        def __init__(self, func):
            super().__init__()
            self.func = func

        def forward(self, x):
            return self.func(x)

    def preprocess(x):
        return x.view(-1, 1, 28, 28)

    def convs():
        return [tnn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1), tnn.ReLU(),
                tnn.Conv2d(16, 16, kernel_size=3, stride=2, padding=1), tnn.ReLU(),
                tnn.Conv2d(16, 10, kernel_size=3, stride=2, padding=1), tnn.ReLU()]

    return [Mnist_CNN().double(),
            tnn.Sequential(Lambda(preprocess), *convs(), tnn.AvgPool2d(4),
                           Lambda(lambda x: x.view(x.size(0), -1))).double(),
            tnn.Sequential(*convs(), tnn.AdaptiveAvgPool2d(1), Lambda(lambda x: x.view(x.size(0), -1))).double()]


def _convs():
    return [nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 10, kernel_size=3, stride=2, padding=1), nn.ReLU()]


def test_nn_tutorials_fit_get_data_and_cnns_train_as_pytorchs():
    """Two epochs of fit() over get_data()'s loaders (a shuffled one, each epoch's batches replayed in torch), for
    the tutorial's three CNNs: Mnist_CNN (SGD momentum 0.9), the Sequential of ``Lambda(preprocess)``, convolutions,
    ``nn.AvgPool2d(4)`` and ``Lambda(lambda x: x.view(x.size(0), -1))`` (``nn.Unflatten(1, (1, 28, 28))`` and
    ``nn.Flatten()``: a Lambda needs a backward), and the one with ``nn.AdaptiveAvgPool2d(1)`` fed by
    ``WrappedDataLoader(dl, preprocess)``. The weighted validation losses, the ``sum(loss_func(...)) /
    len(valid_dl)`` of the validation section and the weights equal torch's in float64."""
    torch = _torch()
    rng = np.random.default_rng(0)
    x_train, y_train = rng.random((12, 784)), rng.integers(0, 10, 12)
    x_valid, y_valid = rng.random((10, 784)), rng.integers(0, 10, 10)
    bs, lr, epochs, loss_func = 4, 0.1, 2, xn.losses.SoftmaxCrossEntropy()

    def preprocess(x, y):
        return x.reshape(-1, 1, 28, 28), y

    torch.manual_seed(0)
    tmodels = _torch_cnns(torch)
    models = [_Mnist_CNN(), xn.Sequential(nn.Unflatten(1, (1, 28, 28)), *_convs(), nn.AvgPool2d(4), nn.Flatten()),
              xn.Sequential(*_convs(), nn.AdaptiveAvgPool2d(1), nn.Flatten())]
    for i, (model, tmodel) in enumerate(zip(models, tmodels)):
        xn.load_torch_state_dict(model.to(dtype="float64"), tmodel.state_dict())
        train_dl, valid_dl = _get_data((x_train, y_train), (x_valid, y_valid), bs)
        if i == 2:
            train_dl, valid_dl = _WrappedDataLoader(train_dl, preprocess), _WrappedDataLoader(valid_dl, preprocess)
        got = _fit(epochs, model, loss_func, optim.SGD(model.parameters(), lr=lr, momentum=0.9), train_dl, valid_dl)
        replay = [[(torch.from_numpy(xb), torch.from_numpy(yb)) for xb, yb in train_dl.epoch(e)]
                  for e in range(epochs)]
        tvalid = [(torch.from_numpy(xb), torch.from_numpy(yb)) for xb, yb in valid_dl]
        want = _torch_fit(torch, epochs, tmodel, torch.optim.SGD(tmodel.parameters(), lr=lr, momentum=0.9),
                          replay, tvalid)
        np.testing.assert_allclose(got, want, rtol=1e-10, err_msg=f"model {i}")
        _same_weights(model, tmodel)
    with xn.no_grad():
        valid_loss = sum(loss_func(model(xb), yb) for xb, yb in valid_dl)
    with torch.no_grad():
        twant = sum(torch.nn.functional.cross_entropy(tmodel(xb), yb) for xb, yb in tvalid)
    assert valid_loss / len(valid_dl) == pytest.approx((twant / len(tvalid)).item(), rel=1e-12)



def test_nn_tutorials_lambda_ported_as_a_model_or_layer_without_train_is_refused_in_a_sequential():
    """nn_tutorial's ``class Lambda(nn.Module)`` with ``forward(self, x)``, written as an ``xn.Model`` or a layer and
    put in ``xn.Sequential`` (as the tutorial's ``nn.Sequential(Lambda(preprocess), ...)``): the Sequential's call
    failed with Python's "forward() got an unexpected keyword argument 'train'"; now the Sequential refuses it when
    built, saying to take train= and to write the backward."""
    for base in (xn.Model, nn.Layer):
        class Lambda(base):
            def __init__(self, func):
                super().__init__()
                self.func = func

            def forward(self, x):
                return self.func(x)

        with pytest.raises(ValueError, match=r"^Sequential: item 0, .*Lambda\.forward must take train= \(write def "
                                             r"forward\(self, x, train=True\) .* and backward\(self, dy\)"):
            xn.Sequential(Lambda(lambda x: x.reshape(-1, 1, 28, 28)), nn.Conv2d(1, 16, kernel_size=3))

    class BookDropout(nn.Layer):  # the book's flag, train_flg: its own line
        def forward(self, x, train_flg=True):
            return x

    with pytest.raises(ValueError, match=r"BookDropout\.forward takes train_flg, .* rename it, def forward\(self, x, "
                                         r"train=True\)$"):
        xn.Sequential(nn.Linear(3, 2), BookDropout())


# --- defining_a_neural_network.py, zeroing_out_gradients.py -----------------------------------------------------------

class _MnistNet(xn.Model):
    """defining_a_neural_network's Net: ``F.relu`` as one ``self.relu``, ``F.max_pool2d(x, 2)`` as
    ``nn.MaxPool2d(2)``, ``x.flatten(start_dim=1)`` as ``nn.Flatten()``, ``F.log_softmax(x, dim=1)`` as
    ``nn.LogSoftmax(dim=1)``; ``dropout2``, the recipe's ``nn.Dropout2d(0.5)`` after a Linear, as given.
    x (N, 1, 28, 28) -> (N, 10) log-probabilities."""

    def __init__(self, dropout2=nn.Dropout):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout2d(0.25)
        self.dropout2 = dropout2(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)
        self.relu, self.pool, self.flatten, self.log_softmax = nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), \
            nn.LogSoftmax(dim=1)

    def forward(self, x, train=True):
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.dropout1(self.pool(x))
        x = self.relu(self.fc1(self.flatten(x)))
        return self.log_softmax(self.fc2(self.dropout2(x)))


@pytest.mark.filterwarnings("ignore:dropout2d. Received a 2-D input")
def test_defining_a_neural_network_runs_as_pytorchs_and_its_dropout2d_after_a_linear_says_dropout():
    """The recipe's ``nn.Dropout2d(0.5)`` on fc1's (N, 128) output: PyTorch drops single values there, as
    ``F.dropout``, with a deprecation warning; xpnet's Dropout2d refuses it, saying ``xn.layers.Dropout(p)``. So
    ported, the net's evaluation output on ``torch.rand((1, 1, 28, 28))``'s image equals torch's in float64."""
    torch = _torch()
    F, tnn = torch.nn.functional, torch.nn

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(1, 32, 3, 1)
            self.conv2 = tnn.Conv2d(32, 64, 3, 1)
            self.dropout1 = tnn.Dropout2d(0.25)
            self.dropout2 = tnn.Dropout2d(0.5)
            self.fc1 = tnn.Linear(9216, 128)
            self.fc2 = tnn.Linear(128, 10)

        def forward(self, x):
            x = F.relu(self.conv1(x))
            x = F.relu(self.conv2(x))
            x = self.dropout1(F.max_pool2d(x, 2))
            x = F.relu(self.fc1(x.flatten(start_dim=1)))
            return F.log_softmax(self.fc2(self.dropout2(x)), dim=1)

    torch.manual_seed(0)
    theirs = Net().double()
    random_data = torch.rand((1, 1, 28, 28), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^Dropout2d: expected \(N, C, H, W\), got shape \(1, 128\).*"
                                         r"use xn\.layers\.Dropout\(p\)"):
        _MnistNet(nn.Dropout2d).to(dtype="float64")(random_data.numpy())
    my_nn = _MnistNet().to(dtype="float64")
    xn.load_torch_state_dict(my_nn, theirs.state_dict())
    assert my_nn(random_data.numpy()).shape == (1, 10)
    _close(my_nn.eval()(random_data.numpy()), theirs.eval()(random_data))


def test_zeroing_out_gradients_with_the_optimizer_or_the_model_trains_as_pytorchs():
    """The recipe's loop (``optimizer.zero_grad()`` before each forward, SGD(lr=0.001, momentum=0.9)) and its
    ``model.zero_grad()`` in its place: both equal torch's losses and weights in float64."""
    torch = _torch()
    batches = _batches(2)
    for zero in ("optimizer", "model"):
        net, tnet = _pair(torch, 6)
        optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
        criterion, running = xn.losses.SoftmaxCrossEntropy(), []
        for epoch in range(2):
            running_loss = 0.0
            for i, data in enumerate(batches, 0):
                inputs, labels = data
                (optimizer if zero == "optimizer" else net).zero_grad()
                outputs = net(inputs)
                loss = criterion(outputs, labels)
                net.backward(criterion.backward())
                optimizer.step()
                running_loss += loss.item()
            running.append(running_loss)
        topt = torch.optim.SGD(tnet.parameters(), lr=0.001, momentum=0.9)
        want = [sum(_torch_steps(torch, tnet, topt, batches)) for _ in range(2)]
        np.testing.assert_allclose(running, want, rtol=1e-10, err_msg=zero)
        _same_weights(net, tnet)


# --- reasoning_about_shapes.py, module_load_state_dict_tips.py, changing_default_device.py ----------------------------

def test_reasoning_about_shapes_forward_hooks_say_summary_which_gives_torchs_shapes():
    """The recipe's ``layer.register_forward_hook(fw_hook)`` over ``net.named_modules()``, on the meta device: xpnet
    has no hooks, and the call said Python's "no attribute" alone; it now names ``model.summary(input_shape=...)``,
    whose output shapes are those torch's hooks print for each layer called once."""
    torch = _torch()
    net = _Net()
    for layer in (net, net.conv1):
        with pytest.raises(AttributeError, match=r"register_forward_hook': xpnet has no hooks: "
                                                 r"model\.summary\(input_shape=\(3, 32, 32\)\)"):
            layer.register_forward_hook(print)
    shapes = {}
    with torch.device("meta"):
        tnet = _torch_net(torch)
        inp = torch.randn((1024, 3, 32, 32), dtype=torch.float64)
    def fw_hook(module, input, output):
        shapes.setdefault(module, output.shape)

    for name, layer in tnet.named_modules():
        layer.register_forward_hook(fw_hook)
    tnet(inp)
    rows = {line.split()[0]: line for line in net.summary(input_shape=(3, 32, 32)).splitlines()}
    for name in ("conv1", "conv2", "fc1", "fc2", "fc3"):
        assert f"(N, {', '.join(map(str, shapes[getattr(tnet, name)][1:]))})" in rows[name], name


def test_pytorchs_pair_loop_over_named_modules_or_children_is_refused_saying_items():
    """``for name, layer in net.named_modules():`` (the shapes recipe's loop): xpnet's dict unpacked each name, the
    root's ``""`` failing with Python's "not enough values to unpack", and ``named_children()`` of a model whose
    first child is ``self.fc`` gave ``name = "f"``, ``layer = "c"``, silently. Refused, saying ``.items()``; the
    dict's own uses run as they did."""
    class Net(xn.Model):
        def __init__(self):
            super().__init__()
            self.fc, self.relu = nn.Linear(3, 2), nn.ReLU()

    net = Net()
    with pytest.raises(ValueError, match=r"^for name, layer in net\.named_modules\(\): xpnet's named_modules\(\) is "
                                         r"a dict by dotted name.* write for name, layer in net\.named_modules\(\)"
                                         r"\.items\(\)$"):
        for name, layer in net.named_modules():
            pass
    with pytest.raises(ValueError, match=r"write for name, child in net\.named_children\(\)\.items\(\)$"):
        names = [name for name, child in net.named_children()]
    names = [name for name, child in net.named_children().items()]
    assert names == list(net.named_children()) == ["fc", "relu"] and list(net.named_modules()) == ["", "fc", "relu"]


def test_load_state_dict_tips_mmap_is_taken_and_assign_is_refused(tmp_path):
    """``torch.load('checkpoint.pth', mmap=True)`` (the same arrays, memory-mapped): ``xn.load(..., mmap=True)``
    was Python's "unexpected keyword argument"; now taken, the same arrays. ``load_state_dict(state_dict,
    assign=True)`` (the module takes the dict's own tensors, their dtype: a float64 dict makes a float32 module
    float64) was Python's TypeError too; now refused saying xpnet copies into the model's dtype and how to get the
    dict's. ``with torch.device('meta'):`` has no xpnet meaning: ``with xn.device(...)`` says to build, then move."""
    torch = _torch()

    class SomeModule(xn.Model):
        def __init__(self):
            super().__init__()
            self.linears = [nn.Linear(1, 1) for i in range(10)]

    m = SomeModule()
    PATH = str(tmp_path / "checkpoint.pth")
    xn.save(m.state_dict(), PATH)
    state_dict = xn.load(PATH, mmap=True)
    new = SomeModule()
    new.load_state_dict(state_dict)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(new.state_dict()[k], v, err_msg=k)
    doubled = {k: v.astype(np.float64) for k, v in state_dict.items()}
    with pytest.raises(ValueError, match=r"assign=True .* xpnet copies each array into the model's dtype and device, "
                                         r"as PyTorch's assign=False; .*model\.to\(device, dtype=\.\.\.\)"):
        SomeModule().load_state_dict(doubled, assign=True)
    tm = torch.nn.Linear(1, 1)
    tm.load_state_dict({k: v.double() for k, v in tm.state_dict().items()}, assign=True)
    assert tm.weight.dtype == torch.float64  # what assign=True means in torch
    assert SomeModule().to(dtype="float64").load_state_dict(doubled, assign=False) == ([], [])
    with pytest.raises(TypeError, match=r"a device is no context manager .* build the model, then move it"):
        with xn.device("cpu"):
            SomeModule()


def test_changing_default_device_says_to_build_then_move():
    """The recipe's first part runs as it is (``mod.cuda()`` as ``mod.to('cuda')``: a layer's ``.cuda()`` said
    Python's "no attribute" alone); ``torch.set_default_device('cuda')`` and ``with torch.device('cuda'):`` have
    no xpnet meaning (layers are built on the host): each says to build the model, then move it."""
    torch = _torch()
    torch.manual_seed(0)
    tmod = torch.nn.Linear(20, 30).double()
    mod = nn.Linear(20, 30).to(dtype="float64")
    xn.load_torch_state_dict(mod, tmod.state_dict())
    with pytest.raises(AttributeError, match=r"'Linear' object has no attribute 'cuda': layer\.to\(device\) moves"):
        mod.cuda()
    inp = np.random.default_rng(0).standard_normal((128, 20))
    _close(mod.to(xn.device("cpu"))(inp), tmod(torch.from_numpy(inp)))
    with pytest.raises(AttributeError, match=r"set_default_device': xpnet has no default device: .*model\.to\("):
        xn.set_default_device("cuda")


def test_tuning_guides_grad_none_loop_says_zero_grad_whose_set_to_none_is_pytorchs():
    """The tuning guide's ``for param in model.parameters(): param.grad = None``: NumPy's "no attribute 'grad'" on
    NumPy, and on xpnet's PyTorch backend the tensors took the attribute and nothing was cleared; refused on both,
    saying ``zero_grad()``. Its ``zero_grad(set_to_none=True)`` (and False) steps as torch's, where a head left out
    of a backward is left out of the step only with None: SGD momentum, three steps over two heads, float64."""
    torch = _torch()

    class Two(xn.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 2)

        def forward(self, x, head="a", train=True):
            self.head = head
            return getattr(self, head)(x)

        def backward(self, dy):
            return getattr(self, self.head).backward(dy)

    for dev in ("cpu", "torch:cpu"):
        model = Two().to(dev)
        with pytest.raises(AttributeError, match=r"p\.grad = None: xpnet's arrays carry no \.grad .* Write "
                                                 r"model\.zero_grad\(\) or optimizer\.zero_grad\(\)"):
            for param in model.parameters():
                param.grad = None
    torch.manual_seed(0)
    theirs = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 2), "b": torch.nn.Linear(3, 2)}).double()
    rng = np.random.default_rng(0)
    x, y = rng.random((4, 3)), np.array([0, 1, 0, 1])
    for set_to_none in (True, False):
        model = Two().to(dtype="float64")
        xn.load_torch_state_dict(model, theirs.state_dict())
        tmodel = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 2), "b": torch.nn.Linear(3, 2)}).double()
        tmodel.load_state_dict(theirs.state_dict())
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
        criterion = xn.losses.SoftmaxCrossEntropy()
        for head in ("a", "b", "b"):
            opt.zero_grad(set_to_none=set_to_none)
            criterion(model(x, head), y)
            model.backward(criterion.backward())
            opt.step()
            topt.zero_grad(set_to_none=set_to_none)
            torch.nn.functional.cross_entropy(tmodel[head](torch.from_numpy(x)), torch.from_numpy(y)).backward()
            topt.step()
        _same_weights(model, tmodel)
