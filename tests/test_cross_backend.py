"""Cross-backend equality with xn.testing.assert_backends_agree: every layer's forward and backward,
a full training step, and 3 epochs of training agree between NumPy and array_api_strict "device1"
(always) and between NumPy and CuPy (on a GPU)."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L
from xpnet.testing import assert_backends_agree


def _strict_device1():
    strict = pytest.importorskip("array_api_strict")
    return xn.Device(strict, strict.Device("device1"))


PAIRS = [
    pytest.param(lambda: ("cpu", _strict_device1()), id="numpy-vs-strict-device1"),
    pytest.param(lambda: ("cpu", "cuda"), id="numpy-vs-cupy", marks=pytest.mark.gpu),
]

# (factory, input shape): each layer built from a fixed seed so every device gets the same weights.
LAYERS = {
    "Linear": (lambda: L.Linear(12, 5), (4, 12)),
    "Linear-4d-input": (lambda: L.Linear(12, 5), (4, 3, 2, 2)),
    "ReLU": (L.ReLU, (4, 7)),
    "Sigmoid": (L.Sigmoid, (4, 7)),
    "Tanh": (L.Tanh, (4, 7)),
    "Flatten": (L.Flatten, (2, 3, 4)),
    "Dropout": (lambda: L.Dropout(0.4, seed=2), (6, 9)),
    "Conv2d": (lambda: L.Conv2d(2, 3, 3, stride=2, padding=1), (2, 2, 7, 7)),
    "MaxPool2d": (lambda: L.MaxPool2d(2), (2, 3, 6, 6)),
    "AvgPool2d": (lambda: L.AvgPool2d(3, stride=2, padding=1), (2, 3, 7, 7)),
    "GlobalAvgPool": (L.GlobalAvgPool, (2, 3, 5, 5)),
    "BatchNorm-1d": (lambda: L.BatchNorm(6), (8, 6)),
    "BatchNorm-2d": (lambda: L.BatchNorm(3), (4, 3, 5, 5)),
}


@pytest.fixture(params=PAIRS)
def devices(request):
    pair = request.param()
    if "cuda" in pair and not xn.cuda_available():
        pytest.skip(f"no GPU: {xn.backend.cuda_unavailable_reason()}")
    return pair


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_forward_and_backward_agree(devices, name):
    make, shape = LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)

    def run(x, device):
        xn.init.seed(0)
        layer = make().to(device)
        y = layer.forward(x)
        dy = xn.to_device(np.random.default_rng(1).standard_normal(tuple(y.shape)).astype(np.float32), device)
        dx = layer.backward(dy)
        return {"y": y, "dx": dx, **{f"grad.{k}": v for k, v in layer.grads.items()}}

    if name == "Dropout" and "cuda" in devices:
        pytest.skip("Dropout draws its mask on the GPU from CuPy's generator: masks differ by design")
    assert_backends_agree(run, x, devices=devices, rtol=2e-5, atol=2e-6)


def _mlp():
    xn.init.seed(3)
    return xn.Sequential(L.Linear(2, 32), L.ReLU(), L.Linear(32, 32), L.Tanh(), L.Linear(32, 3))


def test_one_training_step_agrees(devices):
    x, t = xn.datasets.spiral(20, 3, seed=0)

    def step(x, t, device):
        model = _mlp().to(device)
        loss = xn.losses.SoftmaxCrossEntropy()
        value = loss.forward(model.forward(x), t)
        model.backward(loss.backward())
        xn.optim.Adam(0.01).step(model)
        return {"loss": value, **model.named_grads(), **model.named_params()}

    assert_backends_agree(step, x, t, devices=devices, rtol=2e-5, atol=2e-6)


def test_three_epochs_of_training_agree(devices):
    x, t = xn.datasets.spiral(50, 3, seed=0)

    def fit(x, t, device):
        model = _mlp()
        history = xn.train(model, (x, t), loss=xn.losses.SoftmaxCrossEntropy(), optimizer=xn.optim.Momentum(0.05),
                           epochs=3, batch_size=16, device=device, seed=0, progress=False)
        return {"params": model.named_params(), "losses": [e["train_loss"] for e in history.epochs]}

    assert_backends_agree(fit, x, t, devices=devices, rtol=1e-4, atol=1e-5)
