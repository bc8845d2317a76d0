"""pytorch/tutorials' blitz CIFAR-10 classifier, the basics' build-model and optimization tutorials, ported to xpnet
as a PyTorch user writes them first, each run next to the same program in torch, float64, the same initial weights,
a few steps; and what the ports showed a porter has to be told. No datasets here: small random images."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn

from cifar_net import CifarNet


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _close(ours, theirs, name=""):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-9, atol=1e-11, err_msg=name)


# --- beginner_source/blitz/cifar10_tutorial.py ----------------------------------------------------------------------

CLASSES = ('plane', 'car', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')


_Net = CifarNet  # the tutorial's Net (tests/cifar_net.py)


def _torch_net(torch):
    """The tutorial's Net as it is there."""
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
            x = torch.flatten(x, 1)
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)

    return Net()


def _cifar10_run(net, new_net, criterion, optimizer, backward, trainloader, testloader, save, load, top):
    """The tutorial's training, save, reload and test loops, the framework's calls passed in; returns the losses,
    the overall correct count and the per-class dicts."""
    losses = []
    for epoch in range(2):
        running_loss = 0.0
        for i, data in enumerate(trainloader, 0):
            inputs, labels = data
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            backward(net, criterion, loss)
            optimizer.step()
            running_loss += loss.item()
        losses.append(running_loss)
    save(net.state_dict())
    net = new_net()
    net.load_state_dict(load())
    correct = total = 0
    correct_pred = {classname: 0 for classname in CLASSES}
    total_pred = {classname: 0 for classname in CLASSES}
    for images, labels in testloader:
        predictions = top(net(images))
        total += labels.shape[0]
        correct += (predictions == labels).sum().item()
        for label, prediction in zip(labels, predictions):
            if label == prediction:
                correct_pred[CLASSES[label]] += 1
            total_pred[CLASSES[label]] += 1
    return losses, correct, total, correct_pred, total_pred, net


def test_cifar10_tutorial_trains_saves_and_tests_as_pytorchs(tmp_path):
    """Two epochs of three batches of 4 random 32x32 images, SGD(lr=0.001, momentum=0.9) and cross-entropy, the
    state dict saved and loaded into a new Net, then the test loop: the running losses, the weights, the reloaded
    net's outputs, the accuracy and the per-class dicts equal torch's in float64. What differs from the tutorial:
    xn.save/xn.load, net.backward(criterion.backward()), outputs.argmax(1) for torch.max(outputs, 1)."""
    torch = _torch()
    torch.manual_seed(0)
    theirs = _torch_net(torch).double()
    ours = _Net().to(dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (20, 3, 32, 32)), rng.integers(0, 10, 20)
    train = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)]
    test = [(x[i:i + 4], y[i:i + 4]) for i in range(12, 20, 4)]

    def backward(net, criterion, loss):
        net.backward(criterion.backward())

    path = str(tmp_path / "cifar_net.pth")
    got = _cifar10_run(ours, lambda: _Net().to(dtype="float64"), xn.losses.SoftmaxCrossEntropy(),
                       xn.optim.SGD(ours.parameters(), lr=0.001, momentum=0.9), backward, train, test,
                       lambda state: xn.save(state, path), lambda: xn.load(path, weights_only=True),
                       lambda outputs: outputs.argmax(1))
    tpath = str(tmp_path / "torch_net.pth")
    want = _cifar10_run(theirs, lambda: _torch_net(torch).double(), torch.nn.CrossEntropyLoss(),
                        torch.optim.SGD(theirs.parameters(), lr=0.001, momentum=0.9),
                        lambda n, c, loss: loss.backward(),
                        [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in train],
                        [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in test],
                        lambda state: torch.save(state, tpath), lambda: torch.load(tpath, weights_only=True),
                        lambda outputs: torch.max(outputs, 1)[1])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    assert got[1:5] == want[1:5]
    for name, array in xn.torch_state_dict(got[5]).items():
        _close(array, want[5].state_dict()[name], name)
    _close(got[5](x[12:16]), want[5](torch.from_numpy(x[12:16])))


def _predicted_by_np_max(net, images):
    outputs = net(images)
    _, predicted = np.max(outputs, 1)
    return predicted


def _predicted_by_method(net, images):
    outputs = net(images)
    _, predicted = outputs.max(1)
    return predicted


def _predicted_by_data(net, images):
    with xn.no_grad():
        outputs = net(images)
        _, predicted = np.max(outputs.data, 1)  # torch.max(outputs.data, 1)
    return predicted


def _predicted_by_index(net, images):
    outputs = net(images)
    predicted = outputs.max(1)[1]  # older PyTorch code's output.max(1)[1]
    return predicted


def _values_by_index(net, images):
    values = net(images).max(1)[0]  # the old DQN tutorial's target_net(s).max(1)[0]
    return values


def _maxima(net, images):
    outputs = net(images)
    values = outputs.max(1)  # the DQN tutorial's .max(1).values: NumPy's max is the values
    return values, np.argmax(outputs, axis=1)


@pytest.mark.parametrize("spelling", [_predicted_by_np_max, _predicted_by_method, _predicted_by_data])
def test_torch_max_unpacked_from_a_numpy_max_is_refused_saying_argmax(spelling):
    """``_, predicted = np.max(outputs, 1)`` (or ``outputs.max(1)``) after ``outputs = net(images)``: NumPy's
    max has no indices, so the batch of 2 gave ``predicted`` the second row's maximum, silently, and the tutorial's
    batch of 4 Python's "too many values to unpack"; refused at the call, naming the line and argmax."""
    net = xn.Sequential(nn.Linear(3, 10))
    for batch in (2, 4):
        with pytest.raises(ValueError, match=r"predicted = outputs\.argmax\(1\)") as info:
            spelling(net, np.ones((batch, 3), dtype=np.float32))
        assert "_, predicted = " in str(info.value) and "Sequential(...)" in str(info.value)


@pytest.mark.parametrize("spelling, says", [(_predicted_by_index, r"Write outputs\.argmax\(1\)"),
                                            (_values_by_index, r"Write \.max\(1\) in place of \.max\(1\)\[0\]")])
def test_torch_max_indexed_on_a_numpy_max_is_refused(spelling, says):
    """``outputs.max(1)[1]`` (PyTorch's indices) is NumPy's second sample's maximum and ``net(x).max(1)[0]``
    (PyTorch's values) the first sample's, one number each, which compared with the labels or put into N places
    gave no error: refused at the call, saying argmax or the max itself."""
    with pytest.raises(ValueError, match=says):
        spelling(xn.Sequential(nn.Linear(3, 10)), np.ones((4, 3), dtype=np.float32))


def test_torch_max_on_xpnets_pytorch_backend_is_pytorchs_own():
    """On xpnet's PyTorch backend the output is a tensor, whose ``.max(1)`` is PyTorch's (values, indices): the
    tutorial's line runs there, giving the indices."""
    torch = _torch()
    net = xn.Sequential(nn.Linear(3, 10)).to("torch:cpu")
    images = torch.from_numpy(np.random.default_rng(0).random((4, 3), dtype=np.float32))
    assert _predicted_by_method(net, images).tolist() == net(images).argmax(1).tolist()


def _side_by_side(net, torch_net, images):
    outputs = net(images)
    mine = outputs.argmax(1)
    outputs = torch_net(_torch().from_numpy(images))  # the same name for PyTorch's own model
    _, predicted = outputs.max(1)
    return mine, predicted


def test_torch_max_of_a_name_bound_again_to_a_torch_output_runs():
    """``outputs`` bound again to a PyTorch model's output before ``_, predicted = outputs.max(1)`` (a script
    comparing the two libraries): that max is PyTorch's own, so xpnet's call before it is not refused."""
    torch = _torch()
    net, torch_net = xn.Sequential(nn.Linear(3, 10)), torch.nn.Linear(3, 10)
    torch_net.weight.data, torch_net.bias.data = (torch.from_numpy(np.array(a)) for a in
                                                  (net.layers[0].params["W"].T, net.layers[0].params["b"]))
    images = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    mine, predicted = _side_by_side(net, torch_net, images)
    assert mine.tolist() == predicted.tolist()


def test_a_numpy_max_neither_unpacked_nor_indexed_runs():
    """``values = outputs.max(1)`` (the DQN tutorial's ``.max(1).values``) is NumPy's max as it is: not refused."""
    values, indices = _maxima(xn.Sequential(nn.Linear(3, 10)), np.ones((2, 3), dtype=np.float32))
    assert values.shape == (2,) and indices.shape == (2,)


# --- beginner_source/basics/buildmodel_tutorial.py and optimization_tutorial.py --------------------------------------

class _NeuralNetwork(xn.Model):
    """The tutorials' NeuralNetwork: Flatten, then a Sequential of Linear/ReLU 784-512-512-10. x (N, 28, 28) ->
    (N, 10) logits."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = xn.Sequential(nn.Linear(28 * 28, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                                               nn.Linear(512, 10))

    def forward(self, x, train=True):
        x = self.flatten(x)
        return self.linear_relu_stack(x)

    def backward(self, dy):
        return self.flatten.backward(self.linear_relu_stack.backward(dy))


def _torch_neural_network(torch):
    tnn = torch.nn

    class NeuralNetwork(tnn.Module):
        def __init__(self):
            super().__init__()
            self.flatten = tnn.Flatten()
            self.linear_relu_stack = tnn.Sequential(tnn.Linear(28 * 28, 512), tnn.ReLU(), tnn.Linear(512, 512),
                                                    tnn.ReLU(), tnn.Linear(512, 10))

        def forward(self, x):
            x = self.flatten(x)
            return self.linear_relu_stack(x)

    return NeuralNetwork()


def test_buildmodel_prediction_and_named_parameters_print_as_pytorchs():
    """``nn.Softmax(dim=1)(logits)``, ``pred_probab.argmax(1)`` as there; the tutorial's
    ``for name, param in model.named_parameters(): print(name, param.size(), param[:2])`` is, with PyTorch's names,
    layouts and rows, ``xn.torch_state_dict(model).items()`` (``param.shape``): equal to torch's, where
    ``named_params()`` holds Linear's W as (in, out), whose ``[:2]`` are other numbers."""
    torch = _torch()
    torch.manual_seed(0)
    theirs = _torch_neural_network(torch).double()
    model = _NeuralNetwork().to(dtype="float64")
    xn.load_torch_state_dict(model, theirs.state_dict())
    X = np.random.default_rng(0).random((1, 28, 28))
    logits = model(X)
    pred_probab = nn.Softmax(dim=1)(logits)
    tlogits = theirs(torch.from_numpy(X))
    _close(pred_probab, torch.nn.Softmax(dim=1)(tlogits))
    assert pred_probab.argmax(1).tolist() == torch.nn.Softmax(dim=1)(tlogits).argmax(1).tolist()
    printed = {name: (tuple(param.shape), param[:2]) for name, param in xn.torch_state_dict(model).items()}
    wanted = {name: (tuple(param.size()), param[:2]) for name, param in theirs.named_parameters()}
    assert list(printed) == list(wanted)
    for name, (shape, rows) in printed.items():
        assert shape == wanted[name][0], name
        _close(rows, wanted[name][1], name)
    assert model.named_params()["linear_relu_stack.0.W"].shape == (784, 512)  # xpnet's layout: (in, out)


def _optimization_epochs(model, loss_fn, optimizer, train_batches, test_batches, size, backward, to_float):
    """The tutorial's train_loop and test_loop, two epochs; returns the batch losses and (test_loss, correct)."""
    losses, tests = [], []
    for _ in range(2):
        model.train()
        for batch, (X, y) in enumerate(train_batches):
            pred = model(X)
            loss = loss_fn(pred, y)
            optimizer.zero_grad()
            backward(model, loss_fn, loss)
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        num_batches = len(test_batches)
        test_loss, correct = 0, 0
        with (xn.no_grad() if isinstance(model, xn.Model) else _torch().no_grad()):
            for X, y in test_batches:
                pred = model(X)
                test_loss += loss_fn(pred, y).item()
                correct += to_float(pred.argmax(1) == y).sum().item()
        tests.append((test_loss / num_batches, correct / size))
    return losses, tests


def test_optimization_tutorial_train_and_test_loops_as_pytorchs():
    """train_loop and test_loop over unshuffled batches (``DataLoader(data, batch_size=4)`` is
    ``xn.datasets.BatchIterator(x, y, batch_size=4, shuffle=False)``; ``len(dataloader.dataset)`` its ``.n``,
    ``len(dataloader)`` the batches), SGD(lr=1e-3), ``(pred.argmax(1) == y).astype(np.float64)`` for
    ``.type(torch.float)``: the losses, test losses, accuracies and weights equal torch's in float64."""
    torch = _torch()
    torch.manual_seed(1)
    theirs = _torch_neural_network(torch).double()
    model = _NeuralNetwork().to(dtype="float64")
    xn.load_torch_state_dict(model, theirs.state_dict())
    rng = np.random.default_rng(1)
    x, y = rng.random((12, 28, 28)), rng.integers(0, 10, 12)
    train_dataloader = xn.datasets.BatchIterator(x[:8], y[:8], batch_size=4, shuffle=False)
    test_dataloader = xn.datasets.BatchIterator(x[8:], y[8:], batch_size=4, shuffle=False)
    assert (train_dataloader.n, len(train_dataloader)) == (8, 2)
    with pytest.raises(AttributeError, match=r"loader\.n is the number of samples"):
        len(test_dataloader.dataset)
    got = _optimization_epochs(model, xn.losses.SoftmaxCrossEntropy(), xn.optim.SGD(model.parameters(), lr=1e-3),
                               train_dataloader, test_dataloader, test_dataloader.n,
                               lambda m, c, loss: m.backward(c.backward()), lambda a: a.astype(np.float64))
    tensors = [(torch.from_numpy(x[i:i + 4]), torch.from_numpy(y[i:i + 4])) for i in range(0, 12, 4)]
    want = _optimization_epochs(theirs, torch.nn.CrossEntropyLoss(), torch.optim.SGD(theirs.parameters(), lr=1e-3),
                                tensors[:2], tensors[2:], 4, lambda m, c, loss: loss.backward(),
                                lambda a: a.type(torch.float))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
    for name, array in xn.torch_state_dict(model).items():
        _close(array, theirs.state_dict()[name], name)


# --- beginner_source/basics/autogradqs_tutorial.py --------------------------------------------------------------------

def test_autograd_tutorial_one_layer_gradients_and_accumulation_as_pytorchs():
    """``z = torch.matmul(x, w) + b`` with ``binary_cross_entropy_with_logits``: a ``Linear(5, 3)`` whose W is the
    tutorial's ``w`` as it is ((in, out), the tutorial's own layout), on ``x[None]`` (one sample is a batch of one),
    ``xn.losses.SigmoidCrossEntropy()``; ``w.grad``, ``b.grad`` are ``layer.grads['W']``, ``['b']``. Backward calls
    add up after ``zero_grad()`` as PyTorch's ``retain_graph=True`` calls do (without it each overwrites: the
    book's rule); under ``xn.no_grad()`` no backward follows."""
    torch = _torch()
    torch.manual_seed(0)
    x, y = torch.ones(5, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    z = torch.matmul(x, w) + b
    loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
    layer = nn.Linear(5, 3).to(dtype="float64")
    layer.params["W"][...] = w.detach().numpy()
    layer.params["b"][...] = b.detach().numpy()
    criterion = xn.losses.SigmoidCrossEntropy()
    layer.zero_grad()
    ours = criterion(layer(x.numpy()[None]), y.numpy()[None])
    assert ours.item() == pytest.approx(loss.item(), rel=1e-14)
    for _ in range(2):  # the tutorial's two backward calls (retain_graph=True): the gradients add up
        loss.backward(retain_graph=True)
        layer.backward(criterion.backward())
        _close(layer.grads["W"], w.grad)
        _close(layer.grads["b"], b.grad)
    with xn.no_grad():
        layer(x.numpy()[None])
    with pytest.raises(RuntimeError, match="no_grad"):
        layer.backward(criterion.backward())


# --- beginner_source/introyt/modelsyt_tutorial.py ---------------------------------------------------------------------

class _LeNet(xn.Model):
    """The introyt LeNet: ``F.max_pool2d(F.relu(...), (2, 2))`` as one ``MaxPool2d((2, 2))`` and one ReLU used twice
    each, ``x.view(-1, self.num_flat_features(x))`` as ``x.reshape`` (its backward reshapes dy back).
    x (N, 1, 32, 32) -> (N, 10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.fc1 = nn.Linear(16 * 6 * 6, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.pool, self.relu = nn.MaxPool2d((2, 2)), nn.ReLU()

    def forward(self, x, train=True):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        self.pooled_shape = x.shape
        x = x.reshape(-1, self.num_flat_features(x))
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)

    def num_flat_features(self, x):
        size = x.shape[1:]
        num_features = 1
        for s in size:
            num_features *= s
        return num_features

    def backward(self, dy):
        dy = self.relu.backward(self.fc2.backward(self.relu.backward(self.fc3.backward(dy))))
        dy = self.fc1.backward(dy).reshape(self.pooled_shape)
        dy = self.conv2.backward(self.relu.backward(self.pool.backward(dy)))
        return self.conv1.backward(self.relu.backward(self.pool.backward(dy)))


class _LeNetAsWritten(_LeNet):
    def num_flat_features(self, x):
        size = x.size()[1:]  # the tutorial's line, PyTorch's x.size()
        num_features = 1
        for s in size:
            num_features *= s
        return num_features


def test_introyt_lenet_steps_as_pytorchs_and_its_size_call_says_shape():
    """Two SGD steps of the LeNet on (2, 1, 32, 32) images: losses and weights equal torch's in float64. The
    tutorial's ``x.size()[1:]`` in ``num_flat_features``, a method forward calls, said NumPy's "'int' object is not
    callable" alone; now it says ``x.shape``, as on forward's own line."""
    torch = _torch()
    F = torch.nn.functional

    class LeNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 6, 5)
            self.conv2 = torch.nn.Conv2d(6, 16, 3)
            self.fc1 = torch.nn.Linear(16 * 6 * 6, 120)
            self.fc2 = torch.nn.Linear(120, 84)
            self.fc3 = torch.nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = x.view(-1, self.num_flat_features(x))
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)

        def num_flat_features(self, x):
            size = x.size()[1:]
            num_features = 1
            for s in size:
                num_features *= s
            return num_features

    torch.manual_seed(0)
    theirs = LeNet().double()
    model = _LeNet().to(dtype="float64")
    xn.load_torch_state_dict(model, theirs.state_dict())
    rng = np.random.default_rng(0)
    x, y = rng.random((2, 1, 32, 32)), rng.integers(0, 10, 2)
    criterion, optimizer = xn.losses.SoftmaxCrossEntropy(), xn.optim.SGD(model.parameters(), lr=0.1)
    tcriterion, toptimizer = torch.nn.CrossEntropyLoss(), torch.optim.SGD(theirs.parameters(), lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        model.backward(criterion.backward())
        optimizer.step()
        toptimizer.zero_grad()
        tloss = tcriterion(theirs(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        toptimizer.step()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-12)
    for name, array in xn.torch_state_dict(model).items():
        _close(array, theirs.state_dict()[name], name)
    with pytest.raises(TypeError, match=r"_LeNetAsWritten\.num_flat_features: .*write x\.shape for x\.size\(\)"):
        _LeNetAsWritten()(x.astype(np.float32))


def test_introyt_tinymodel_and_layer_examples_as_pytorchs():
    """TinyModel's ``torch.nn.Softmax()`` (dim=None: PyTorch picks dim 1 for its 2-d output, with a warning) is
    refused, saying dim; with ``dim=1`` its outputs equal torch's, and its ``parameters()`` printed in PyTorch's
    layout are ``xn.torch_state_dict(model).values()``. ``MaxPool2d(3)`` on the unbatched (1, 6, 6) tensor is refused
    saying ``x[None]``, which gives torch's values; ``BatchNorm(4)`` on (1, 4, 4) is ``BatchNorm1d(4)``'s;
    Dropout(p=0.4) keeps values scaled by 1 / 0.6, as torch's."""
    torch = _torch()

    class TinyModel(xn.Model):
        def __init__(self, dim=1):
            super().__init__()
            self.linear1 = nn.Linear(100, 200)
            self.activation = nn.ReLU()
            self.linear2 = nn.Linear(200, 10)
            self.softmax = nn.Softmax(dim=dim)

        def forward(self, x, train=True):
            return self.softmax(self.linear2(self.activation(self.linear1(x))))

    with pytest.raises(ValueError, match="Softmax: dim is required"):
        TinyModel(dim=None)
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(100, 200), torch.nn.ReLU(), torch.nn.Linear(200, 10),
                                 torch.nn.Softmax()).double()
    tinymodel = TinyModel().to(dtype="float64")
    xn.load_torch_state_dict(tinymodel, {k.replace("0.", "linear1.").replace("2.", "linear2."): v
                                         for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).random((2, 100))
    with pytest.warns(UserWarning, match="dim"):
        _close(tinymodel(x), theirs(torch.from_numpy(x)))
    for ours, param in zip(xn.torch_state_dict(tinymodel).values(), theirs.parameters()):
        _close(ours, param)
    my_tensor = torch.rand(1, 6, 6, dtype=torch.float64)
    maxpool_layer = nn.MaxPool2d(3)
    with pytest.raises(ValueError, match=r"x\[None\]"):
        maxpool_layer(my_tensor.numpy())
    _close(maxpool_layer(my_tensor.numpy()[None])[0], torch.nn.MaxPool2d(3)(my_tensor))
    my_tensor = torch.rand(1, 4, 4, dtype=torch.float64) * 20 + 5
    _close(nn.BatchNorm(4).to(dtype="float64")(my_tensor.numpy()), torch.nn.BatchNorm1d(4).double()(my_tensor))
    kept = nn.Dropout(p=0.4)(np.ones((1, 4, 4)))
    theirs_kept = torch.nn.Dropout(p=0.4)(torch.ones(64, dtype=torch.float64))
    assert set(np.unique(kept).tolist()) <= {0.0, 1 / 0.6} and set(torch.unique(theirs_kept).tolist()) <= {0.0, 1 / 0.6}


# --- beginner_source/introyt/autogradyt_tutorial.py -------------------------------------------------------------------

def test_introyt_autograd_in_training_accumulates_after_zero_grad_as_pytorchs():
    """"Autograd in Training": TinyModel (1000-100-10), SGD(lr=0.001), the loss ``(ideal_output - prediction)
    .pow(2).sum()`` written by hand, its gradient ``2 * (prediction - ideal_output)`` given to ``model.backward``;
    ``model.layer2.weight[0][0:10]`` is PyTorch's layout as it is, ``weight.grad`` is ``grads['W'].T``. The five
    backward calls without zero_grad add up as PyTorch's where the model was given ``optimizer.zero_grad()`` once
    before (PyTorch's gradients start empty); never given it, each backward overwrites (the book's rule)."""
    torch = _torch()

    class TinyModel(xn.Model):
        def __init__(self):
            super().__init__()
            self.layer1 = nn.Linear(1000, 100)
            self.relu = nn.ReLU()
            self.layer2 = nn.Linear(100, 10)

        def forward(self, x, train=True):
            return self.layer2(self.relu(self.layer1(x)))

        def backward(self, dy):
            return self.layer1.backward(self.relu.backward(self.layer2.backward(dy)))

    torch.manual_seed(0)
    theirs = torch.nn.Sequential()
    theirs.layer1, theirs.relu, theirs.layer2 = torch.nn.Linear(1000, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10)
    theirs = theirs.double()
    rng = np.random.default_rng(0)
    some_input, ideal_output = rng.standard_normal((16, 1000)), rng.standard_normal((16, 10))
    tin, tout = torch.from_numpy(some_input), torch.from_numpy(ideal_output)
    toptimizer = torch.optim.SGD(theirs.parameters(), lr=0.001)
    for zeroed in (True, False):
        model = TinyModel().to(dtype="float64")
        xn.load_torch_state_dict(model, theirs.state_dict())
        optimizer = xn.optim.SGD(model.parameters(), lr=0.001)
        if zeroed:
            optimizer.zero_grad()
        prediction = model(some_input)
        model.backward(2 * (prediction - ideal_output))
        optimizer.step()
        for i in range(0, 5):
            prediction = model(some_input)
            model.backward(2 * (prediction - ideal_output))
        if zeroed:
            grads = model.layer2.grads["W"].T[0][0:10]
        else:
            single = 2 * (prediction - ideal_output)
            overwritten = model.layer2.grads["W"].T[0][0:10]
    prediction = theirs(tin)
    ((tout - prediction).pow(2).sum()).backward()
    toptimizer.step()
    _close(model.layer2.weight[0][0:10], theirs.layer2.weight[0][0:10])
    for i in range(0, 5):
        prediction = theirs(tin)
        ((tout - prediction).pow(2).sum()).backward()
    _close(grads, theirs.layer2.weight.grad[0][0:10])
    relu_out = np.maximum(model.layer1(some_input), 0)
    np.testing.assert_allclose(overwritten, (relu_out.T @ single).T[0][0:10], rtol=1e-12)
