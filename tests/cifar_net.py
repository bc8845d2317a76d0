"""The Net of pytorch/tutorials' CIFAR-10 blitz tutorial and of its recipes (the same layers), as a PyTorch user ports
it to xpnet: shared by the tests that port them (test_pytorch_ports_tutorials4 and 5), each of which writes torch's
own Net as its source has it."""

import xpnet as xn
from xpnet import layers as nn


class CifarNet(xn.Model):
    """The tutorials' Net: one ``self.pool`` and one ``self.relu`` called at each use (F.relu's four), Flatten for
    ``torch.flatten(x, 1)`` (the recipes' ``x.flatten(start_dim=1)``). x (N, 3, 32, 32) -> (N, 10) logits; the
    backward takes the uses back last first."""

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
