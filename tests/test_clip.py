"""Gradient clipping by value: ``xn.optim.clip_grad_value`` against PyTorch's ``clip_grad_value_``, and
``xn.train(..., clip_grad_value=)``. Clipping by norm is tested in tests/test_train_streams.py and test_freeze.py."""

import numpy as np
import pytest

import xpnet as xn
from conftest import DEVICE_MAKERS, DEVICES
from xpnet.testing import assert_placed

L = xn.layers


def _model_with_grads(dev, rng):
    """A small model after one backward on ``dev``, its first layer frozen, and its gradients on the host."""
    xn.init.seed(0)
    model = xn.Sequential(L.Linear(6, 8, dtype="float64"), L.Tanh(), L.Linear(8, 3, dtype="float64")).to(dev)
    loss = xn.losses.SoftmaxCrossEntropy()
    x, t = xn.to_device(rng.standard_normal((5, 6)), dev), xn.to_device(rng.integers(0, 3, 5), dev)
    loss.forward(model.forward(x), t)
    model.backward(10.0 * loss.backward())  # gradients of both signs past the clip value
    model[0].requires_grad_(False)
    return model, {k: xn.to_numpy(g) for k, g in model.named_grads().items()}


@pytest.mark.parametrize("where", [d for d in DEVICES if d.id != "jax"])  # not JAX: its first traces cost seconds
def test_clip_grad_value_equals_pytorch_and_leaves_frozen_gradients(where, rng):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    dev = DEVICE_MAKERS[where]()
    model, grads = _model_with_grads(dev, rng)
    clip = 0.05
    assert xn.optim.clip_grad_value(model.parameters(), clip) is None
    for name, g in model.named_grads().items():
        if name.startswith("0."):  # frozen: PyTorch's skips a .grad of None
            np.testing.assert_array_equal(xn.to_numpy(g), grads[name])
            continue
        p = torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
        p.grad = torch.from_numpy(grads[name].copy())
        torch.nn.utils.clip_grad_value_([p], clip)
        assert np.any(np.abs(grads[name]) > clip), name
        np.testing.assert_array_equal(xn.to_numpy(g), p.grad.numpy(), err_msg=name)
        assert_placed(g, dev, "float64")


def test_train_takes_clip_grad_value_and_refuses_it_with_clip_grad_norm(rng):
    x, t = rng.standard_normal((20, 6)), rng.integers(0, 3, 20)

    def run(**clip):
        xn.init.seed(0)
        model = xn.Sequential(L.Linear(6, 8, dtype="float64"), L.Tanh(), L.Linear(8, 3, dtype="float64"))
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(1.0), epochs=1, batch_size=20,
                 shuffle=False, progress=False, **clip)
        return model

    clipped, plain = run(clip_grad_value=1e-3), run()
    xn.init.seed(0)
    by_hand = xn.Sequential(L.Linear(6, 8, dtype="float64"), L.Tanh(), L.Linear(8, 3, dtype="float64"))
    loss = xn.losses.SoftmaxCrossEntropy()
    loss.forward(by_hand.forward(x), t)
    by_hand.backward(loss.backward())
    xn.optim.clip_grad_value(by_hand, 1e-3)
    xn.optim.SGD(1.0).step(by_hand)
    for k, w in by_hand.named_params().items():
        np.testing.assert_allclose(xn.to_numpy(clipped.named_params()[k]), xn.to_numpy(w), rtol=1e-12)
    assert not np.allclose(xn.to_numpy(clipped.named_params()["0.W"]), xn.to_numpy(plain.named_params()["0.W"]))
    with pytest.raises(ValueError, match=r"^train: clip_grad_norm=1.0 and clip_grad_value=0.5 were both given: "
                                         r"pass one \(the norm scales all gradients alike, the value clamps each "
                                         r"element\)$"):
        run(clip_grad_norm=1.0, clip_grad_value=0.5)
    with pytest.raises(ValueError, match=r"^train: clip_grad_value: clip_value must be a positive number, got 0$"):
        run(clip_grad_value=0)
    with pytest.raises(TypeError, match=r"^clip_grad_value: expected the model, clip_grad_value\(model, clip_value\), "
                                        r"or model.parameters\(\); got a list"):
        xn.optim.clip_grad_value([np.zeros(3)], 1.0)
