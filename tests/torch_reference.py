"""PyTorch as the reference of the layer tests: its output and input gradients for float64 NumPy inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

import xpnet as xn


def torch_run(torch: Any, module: Any, *xs: Any, rng: Any) -> tuple[Any, Any, list[Any]]:
    """``module(*xs)`` in PyTorch: its y, a dy of y's shape drawn from ``rng`` (after the inputs were made), and
    each input's gradient for that dy, all as NumPy arrays."""
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    yt = module(*ts)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(dy))
    return yt.detach().numpy(), dy, [t.grad.numpy() for t in ts]


def assert_rearranging_layers_equal_torch(torch: Any, layers: Any, dev: Any, rng: Any) -> None:
    """For each ``(make, (torch.nn name, *args), input shape)`` of ``layers``: the xpnet layer's y and dx on ``dev``
    equal torch.nn's exactly, in float64 (layers that move data and compute nothing), and stay on ``dev``."""
    for make, (name, *args), shape in layers:
        x = rng.standard_normal(shape)
        y_t, dy, (dx_t,) = torch_run(torch, getattr(torch.nn, name)(*args), x, rng=rng)
        layer = make()
        y, dx = layer.forward(xn.to_device(x, dev)), layer.backward(xn.to_device(dy, dev))
        for got, expected in ((y, y_t), (dx, dx_t)):
            xn.testing.assert_placed(got, dev, "float64")
            np.testing.assert_array_equal(xn.to_numpy(got), expected, err_msg=repr(layer))
