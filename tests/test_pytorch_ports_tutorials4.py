"""pytorch/tutorials' blitz CIFAR-10 classifier, the basics' build-model and optimization tutorials, ported to xpnet
as a PyTorch user writes them first, each run next to the same program in torch, float64, the same initial weights,
a few steps; and what the ports showed a porter has to be told. No datasets here: small random images."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _close(ours, theirs, name=""):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-9, atol=1e-11, err_msg=name)


# --- beginner_source/blitz/cifar10_tutorial.py ----------------------------------------------------------------------

CLASSES = ('plane', 'car', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')


class _Net(xn.Model):
    """The tutorial's Net: one ``self.pool`` and one ``self.relu`` called at each use (F.relu's four), Flatten for
    ``torch.flatten(x, 1)``. x (N, 3, 32, 32) -> (N, 10) logits; the backward takes the uses back last first."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.relu, self.flatten = nn.ReLU(), nn.Flatten()

    def forward(self, x, train=True):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)

    def backward(self, dy):
        dy = self.relu.backward(self.fc2.backward(self.relu.backward(self.fc3.backward(dy))))
        dy = self.flatten.backward(self.fc1.backward(dy))
        dy = self.conv2.backward(self.relu.backward(self.pool.backward(dy)))
        return self.conv1.backward(self.relu.backward(self.pool.backward(dy)))


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
                        torch.optim.SGD(theirs.parameters(), lr=0.001, momentum=0.9), lambda n, c, loss: loss.backward(),
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
    values, indices = _maxima(net, np.ones((2, 3), dtype=np.float32))  # not unpacked: NumPy's meaning, kept
    assert values.shape == (2,) and indices.shape == (2,)
