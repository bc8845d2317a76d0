"""pytorch/tutorials' blitz neural_networks_tutorial (LeNet), the Mario DDQN tutorial's learning part, pytorch/examples'
legacy SNLI model and the introyt training tutorial's validation loop, ported to xpnet as a PyTorch user writes them
first, each run next to the same program in torch, float64, the same initial weights, a few steps; and what the ports
showed a porter has to be told. No MNIST, gym or SNLI here: tiny random data and a synthetic replay buffer."""

import copy
import random
from collections import deque

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _close(ours, theirs, name=""):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def _params_equal(model, theirs):
    """Every parameter of ``theirs`` (torch) equal to the one ``xn.load_torch_state_dict`` would load it into."""
    probe = copy.deepcopy(model)
    xn.load_torch_state_dict(probe, theirs.state_dict())
    for name, expected in probe.named_params().items():
        np.testing.assert_allclose(model.named_params()[name], expected, rtol=1e-10, atol=1e-12, err_msg=name)


# --- beginner_source/blitz/neural_networks_tutorial.py: LeNet ---------------------------------------------------------

class _LeNet(xn.Model):
    """The tutorial's Net: F.relu and F.max_pool2d as one ReLU and one MaxPool2d layer, each called several times, their
    backward last call first; ``x.view(-1, n)`` is a reshape, undone in backward. x (N, 1, 32, 32) -> (N, 10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.relu, self.pool = nn.ReLU(), nn.MaxPool2d(2)

    def forward(self, x, train=True):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        self.shape = x.shape
        x = x.reshape(-1, self.num_flat_features(x))
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)

    def backward(self, dy):
        dy = self.fc1.backward(self.relu.backward(self.fc2.backward(self.relu.backward(self.fc3.backward(dy)))))
        dy = self.conv2.backward(self.relu.backward(self.pool.backward(dy.reshape(self.shape))))
        return self.conv1.backward(self.relu.backward(self.pool.backward(dy)))

    def num_flat_features(self, x):
        n = 1
        for s in x.shape[1:]:
            n *= s
        return n


def _torch_lenet(torch):
    """The tutorial's Net as it is there (num_flat_features folded into the view)."""
    F = torch.nn.functional

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 6, 5)
            self.conv2 = torch.nn.Conv2d(6, 16, 5)
            self.fc1 = torch.nn.Linear(16 * 5 * 5, 120)
            self.fc2 = torch.nn.Linear(120, 84)
            self.fc3 = torch.nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = x.view(-1, x.size()[1:].numel())
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)

    return Net()


def test_lenet_tutorial_backward_manual_update_and_sgd_equal_pytorchs():
    """The tutorial top to bottom: parameters() (conv1's weight first, PyTorch's shape), out.backward(g) as
    net.backward(g), the manual ``weight -= lr * grad`` update, MSELoss against ``arange(1, 11).view(1, -1)``, and three
    SGD steps: outputs, gradients, weights and losses equal torch's in float64."""
    torch = _torch()
    torch.manual_seed(0)
    theirs = _torch_lenet(torch).double()
    net = _LeNet().to(dtype="float64")
    xn.load_torch_state_dict(net, theirs.state_dict())
    params = list(net.parameters())
    assert len(params) == 10 and params[0].shape == tuple(next(theirs.parameters()).size())
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((1, 1, 32, 32)), rng.standard_normal((1, 10))
    out, tout = net(x), theirs(torch.from_numpy(x))
    _close(out, tout, "out")
    net.zero_grad()
    theirs.zero_grad()
    net.backward(g)                                                    # out.backward(torch.randn(1, 10))
    tout.backward(torch.from_numpy(g))
    grads = net.named_grads()
    _close(grads["conv1.W"], theirs.conv1.weight.grad, "conv1.weight.grad")
    _close(grads["fc1.W"].T, theirs.fc1.weight.grad, "fc1.weight.grad")              # W is (in, out): weight.T
    learning_rate = 0.01
    for name, f in net.named_params().items():                        # f.data.sub_(f.grad.data * learning_rate)
        f -= grads[name] * learning_rate
    with torch.no_grad():
        for f in theirs.parameters():
            f.sub_(f.grad * learning_rate)
    _params_equal(net, theirs)

    target = np.arange(1, 11).reshape(1, -1)                           # torch.arange(1, 11).view(1, -1)
    criterion, tcriterion = xn.losses.MeanSquaredError(), torch.nn.MSELoss()
    optimizer = xn.optim.SGD(net.parameters(), lr=0.01)
    toptimizer = torch.optim.SGD(theirs.parameters(), lr=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        loss = criterion(net(x), target)
        net.backward(criterion.backward())                             # loss.backward()
        optimizer.step()
        toptimizer.zero_grad()
        tloss = tcriterion(theirs(torch.from_numpy(x)), torch.arange(1, 11).view(1, -1))
        tloss.backward()
        toptimizer.step()
        assert abs(loss.item() - tloss.item()) <= 1e-10 * tloss.item()
    _params_equal(net, theirs)


def test_an_unbatched_image_into_conv2d_says_to_add_the_batch_axis():
    """``net(input)`` with one (1, 32, 32) image, which PyTorch's Conv2d takes unbatched: refused, saying x[None]."""
    with pytest.raises(ValueError, match=r"^Conv2d: expected a 4-d input \(N, C, H, W\), got shape \(1, 32, 32\); "
                                         r"one unbatched \(C, H, W\) image, which PyTorch takes, is x\[None\] here$"):
        _LeNet()(np.zeros((1, 32, 32), np.float32))
