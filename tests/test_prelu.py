"""PReLU (PyTorch's nn.PReLU, a learned slope) against PyTorch in float64 on every device: y, dx and the
weight's gradient, at x = 0 too; gradcheck; arguments, files. Its state dict from PyTorch:
tests/test_torch_weights.py."""

import numpy as np
import pytest

import xpnet as xn

L = xn.layers


def _theirs(num_parameters, weight, x, dy):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    layer = torch.nn.PReLU(num_parameters).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt)
    y.backward(torch.from_numpy(dy))
    return y.detach().numpy(), xt.grad.numpy(), layer.weight.grad.numpy()


@pytest.mark.parametrize("num_parameters, shape", [(1, (4, 3, 5)), (3, (4, 3, 2, 2)), (3, (5, 3))])
def test_equals_pytorch_in_float64(dev, rng, num_parameters, shape):
    if dev.xp.__name__.startswith("jax") and len(shape) != 4:
        pytest.skip("one case on JAX (it compiles per shape)")
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    x.reshape(-1)[:4] = [0.0, -0.0, 1e-300, -1e-300]
    weight = rng.standard_normal(num_parameters)
    ours = L.PReLU(num_parameters, dtype="float64")
    ours.params["weight"] = weight
    ours.to(dev)
    y, dx = ours.forward(xn.to_device(x, dev)), ours.backward(xn.to_device(dy, dev))
    for got, expected in zip((y, dx, ours.grads["weight"]), _theirs(num_parameters, weight, x, dy)):
        xn.testing.assert_placed(got, dev, "float64")
        np.testing.assert_allclose(xn.to_numpy(got), expected, rtol=1e-12, atol=1e-12)


def test_gradcheck_passes_the_weight_and_the_input(rng):
    xn.init.seed(0)
    model = xn.Sequential(L.Conv2d(2, 3, 3, padding=1, dtype="float64"), L.PReLU(3, init=-0.5, dtype="float64"),
                          L.Flatten(), L.Linear(3 * 16, 4, dtype="float64"), L.PReLU(dtype="float64"))
    report = xn.gradcheck(model, rng.standard_normal((2, 2, 4, 4)))
    assert report.ok, str(report)
    assert report["1.weight"].ok and report["4.weight"].ok and report["input"].ok


def test_pytorchs_arguments_defaults_and_parameter():
    layer = L.PReLU()
    assert layer.params["weight"].shape == (1,) and layer.params["weight"].dtype == np.float32
    np.testing.assert_array_equal(layer.params["weight"], [0.25])
    assert list(L.PReLU(3, 0.1).params["weight"]) == pytest.approx([0.1] * 3)
    assert repr(L.PReLU()) == "PReLU()" and repr(L.PReLU(3, init=0.1)) == "PReLU(num_parameters=3, init=0.1)"


@pytest.mark.parametrize("make, message", [
    (lambda: L.PReLU(0), r"^PReLU: num_parameters must be a positive int, got 0$"),
    (lambda: L.PReLU(init="a"), r"^PReLU: init must be a finite number, got 'a'$"),
    (lambda: L.PReLU(device="cuda"), r"^PReLU: device='cuda' is not supported: make the layer, then move it"),
    (lambda: L.PReLU(3).forward(np.zeros((2, 4), np.float32)),
     r"^PReLU: num_parameters=3 slopes for axis 1 \(the channels\), got an input of shape \(2, 4\); PReLU\(\) has "
     r"one slope for any shape$"),
])
def test_bad_arguments_and_inputs_say_what_to_write(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_saved_and_loaded_with_its_weight(tmp_path, rng):
    model = xn.Sequential(L.Linear(5, 3), L.PReLU(3, init=0.1))
    model[1].params["weight"] = rng.standard_normal(3).astype(np.float32)
    model.save(tmp_path / "prelu.npz")
    loaded = xn.load(tmp_path / "prelu.npz")
    assert repr(loaded) == repr(model)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
