"""A seeded 2-layer net learns the spiral toy problem with a hand-written loop (the seeds' style)."""

import numpy as np
import pytest

import xpnet as xn


def test_two_layer_net_learns_spiral(dev):
    if dev.name.startswith(("torch:", "jax:")):
        pytest.skip("thousands of tiny steps, slow on PyTorch/JAX dispatch; tests/test_cross_backend.py trains there")
    x_host, t_host = xn.datasets.spiral(100, 3, seed=0)
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(2, 100), xn.layers.ReLU(), xn.layers.Linear(100, 3)).to(dev)
    loss, opt = xn.losses.SoftmaxCrossEntropy(), xn.optim.Adam(0.01)
    x, t = xn.to_device(x_host, dev), xn.to_device(t_host, dev)
    xp, n, rng = dev.xp, x.shape[0], np.random.default_rng(0)
    for _ in range(150):
        order = xn.to_device(rng.permutation(n), dev)
        for i in range(0, n, 30):
            idx = order[i:min(i + 30, n)]
            loss.forward(model.forward(xp.take(x, idx, axis=0)), xp.take(t, idx, axis=0), check=False)
            model.backward(loss.backward())
            opt.step(model)
    accuracy = float(xn.to_numpy(xp.mean(xp.astype(xp.argmax(model.predict(x), axis=1) == t, xp.float32))))
    assert accuracy >= 0.95
