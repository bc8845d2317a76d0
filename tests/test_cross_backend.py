"""Cross-backend equality with xn.testing.assert_backends_agree: every layer's forward and backward,
a full training step, and 3 epochs of training agree between NumPy and array_api_strict "device1"
(always), PyTorch and JAX on the CPU (where installed), and CuPy (on a GPU)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import library_device, require_cuda

import xpnet as xn
from xpnet import layers as L
from xpnet.testing import assert_backends_agree


def _strict_device1():
    strict = pytest.importorskip("array_api_strict")
    return xn.Device(strict, strict.Device("device1"))


PAIRS = [
    pytest.param(lambda: ("cpu", _strict_device1()), id="numpy-vs-strict-device1"),
    pytest.param(lambda: ("cpu", library_device("torch:cpu")), id="numpy-vs-torch"),
    pytest.param(lambda: ("cpu", library_device("jax:cpu")), id="numpy-vs-jax"),
    pytest.param(lambda: ("cpu", require_cuda()), id="numpy-vs-cupy", marks=pytest.mark.gpu),
]
# NumPy, PyTorch and JAX on the CPU at once; assert_backends_agree skips a library that is absent.
LIBRARIES = ("cpu", "torch:cpu", "jax:cpu")
# The same against NumPy, or CuPy against NumPy (on a GPU).
SETS = [pytest.param(lambda: LIBRARIES, id="cpu-torch-jax"),
        pytest.param(lambda: ("cpu", require_cuda()), id="numpy-vs-cupy", marks=pytest.mark.gpu)]

# (factory, input shape): each layer built from a fixed seed so every device gets the same weights.
LAYERS = {
    "Linear": (lambda: L.Linear(12, 5), (4, 12)),
    "Linear-4d-input": (lambda: L.Linear(12, 5), (4, 3, 2, 2)),
    "ReLU": (L.ReLU, (4, 7)),
    "Sigmoid": (L.Sigmoid, (4, 7)),
    "Tanh": (L.Tanh, (4, 7)),
    "Flatten": (L.Flatten, (2, 3, 4)),
    "Conv2d": (lambda: L.Conv2d(2, 3, 3, stride=2, padding=1), (2, 2, 7, 7)),
    "MaxPool2d": (lambda: L.MaxPool2d(2), (2, 3, 6, 6)),
    "AvgPool2d": (lambda: L.AvgPool2d(3, stride=2, padding=1), (2, 3, 7, 7)),
    "GlobalAvgPool": (L.GlobalAvgPool, (2, 3, 5, 5)),
    "BatchNorm-1d": (lambda: L.BatchNorm(6), (8, 6)),
    "BatchNorm-2d": (lambda: L.BatchNorm(3), (4, 3, 5, 5)),
}


@pytest.fixture(params=PAIRS)
def devices(request):
    return request.param()


def _forward_and_backward_agree(make, shape, devices):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)

    def run(x, device):
        xn.init.seed(0)
        layer = make().to(device)
        y = layer.forward(x)
        dy = xn.to_device(np.random.default_rng(1).standard_normal(tuple(y.shape)).astype(np.float32), device)
        dx = layer.backward(dy)
        return {"y": y, "dx": dx, **{f"grad.{k}": v for k, v in layer.grads.items()}}

    assert_backends_agree(run, x, devices=devices, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_forward_and_backward_agree(devices, name):
    _forward_and_backward_agree(*LAYERS[name], devices)


@pytest.mark.parametrize("pair", [p for p in PAIRS if p.id != "numpy-vs-cupy"])
def test_dropout_agrees_where_its_mask_is_drawn_on_the_host(pair):
    """Not on CuPy, which draws the mask on the GPU from a generator of its own (its masks are checked
    in tests/test_layers.py)."""
    _forward_and_backward_agree(lambda: L.Dropout(0.4, seed=2), (6, 9), pair())


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


@pytest.fixture
def jax_x64():
    """float64 on JAX needs jax_enable_x64 (xpnet refuses it otherwise); harmless where JAX is absent."""
    try:
        import jax
    except ImportError:
        return
    jax.config.update("jax_enable_x64", True)


def _cnn(dtype, dropout=0.2):
    xn.init.seed(5)
    # No bias before BatchNorm: its gradient is zero up to rounding, which would be all it learns.
    return xn.Sequential(L.Conv2d(1, 4, 3, padding=1, bias=False, dtype=dtype), L.BatchNorm(4, dtype=dtype), L.ReLU(),
                         L.MaxPool2d(2), L.Conv2d(4, 4, 3, stride=2, dtype=dtype), L.AvgPool2d(1), L.Flatten(),
                         L.Dropout(dropout, seed=1), L.Linear(4, 3, dtype=dtype))


@pytest.mark.parametrize("libraries", SETS)
def test_same_seed_gives_the_same_initial_weights_everywhere(jax_x64, libraries):
    def weights(device):
        return {**_cnn("float64").to(device).state(), **_mlp().to(device).named_params()}

    assert_backends_agree(weights, devices=libraries(), rtol=0.0, atol=0.0)


@pytest.mark.parametrize("dtype,rtol,atol", [("float64", 1e-12, 1e-13), ("float32", 2e-4, 2e-5)])
@pytest.mark.parametrize("net", ["mlp", "cnn"])
@pytest.mark.parametrize("libraries", SETS)
def test_epochs_of_mlp_and_cnn_agree_with_numpy(jax_x64, libraries, net, dtype, rtol, atol):
    """float64: the libraries differ only in rounding; float32: within its tolerance after 3 epochs.
    CuPy draws Dropout's masks on the GPU from a generator of its own: its CNN has none."""
    devices = libraries()
    if dtype == "float32":  # JAX runs the float64 cases (it compiles every operation per shape, so runs fewer)
        devices = tuple(d for d in devices if not str(d).startswith("jax"))
    dropout = 0.0 if any(getattr(d, "is_cupy", False) for d in devices) else 0.2
    if net == "mlp":
        x, t = xn.datasets.spiral(40, 3, seed=0)
        make, optimizer = (lambda: _mlp().to("cpu", dtype=dtype)), (lambda: xn.optim.SGD(0.1))
    else:
        rng = np.random.default_rng(0)
        x, t = rng.standard_normal((48, 1, 6, 6)), rng.integers(0, 3, 48)
        make, optimizer = (lambda: _cnn(dtype, dropout)), (lambda: xn.optim.Momentum(0.05))

    def fit(x, t, device):
        model = make()
        history = xn.train(model, (x, t), loss="cross_entropy", optimizer=optimizer(), epochs=3, batch_size=16,
                           device=device, seed=0, progress=False)
        assert history.device == device.name
        return {"state": model.state(), "losses": [e["train_loss"] for e in history.epochs]}

    assert_backends_agree(fit, x, t, devices=devices, rtol=rtol, atol=atol)


def test_too_few_devices_skip_inside_pytest_and_raise_runtime_error_in_a_script(monkeypatch):
    monkeypatch.delenv("XPNET_DEVICE", raising=False)  # a device that is not there, not one the environment turns
    with pytest.warns(xn.XpnetDeviceWarning), pytest.raises(pytest.skip.Exception, match="needs two usable devices"):
        assert_backends_agree(lambda: 1.0, devices=("cpu", "cuda:99"))
    # A plain script, with pytest importable (it is here) but not running it:
    script = ("import warnings, xpnet as xn\nwarnings.simplefilter('ignore')\n"
              "try:\n    xn.testing.assert_backends_agree(lambda: 1.0, devices=('cpu', 'cuda:99'))\n"
              "except RuntimeError as exc:\n    print('RuntimeError:', exc)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("RuntimeError: assert_backends_agree needs two usable devices; skipped cuda:99: ")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_python_floats_are_compared_at_the_tolerance_of_the_inputs_dtype(dtype):
    dev = _strict_device1()
    x = np.linspace(1.0, 2.0, 8).astype(dtype)

    def total(x, device):  # float32 rounding differs between libraries: here by 1e-7 relative
        return {"sum": float(xn.to_numpy(x).sum()) * (1.0 + 1e-7 * (device != xn.device("cpu"))), "n": 8}

    if dtype == "float32":
        assert_backends_agree(total, x, devices=("cpu", dev))
        model = xn.Sequential(L.Linear(2, 3))  # a float32 model's parameters decide alike
        assert_backends_agree(lambda model, x, device: total(x, device), model, x.astype("float64"),
                              devices=("cpu", dev))
    else:
        with pytest.raises(AssertionError, match=r"\['sum'\]"):
            assert_backends_agree(total, x, devices=("cpu", dev))
