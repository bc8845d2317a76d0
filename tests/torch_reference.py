"""PyTorch as the reference of the layer tests: its output and input gradients for float64 NumPy inputs."""

from __future__ import annotations

from typing import Any


def torch_run(torch: Any, module: Any, *xs: Any, rng: Any) -> tuple[Any, Any, list[Any]]:
    """``module(*xs)`` in PyTorch: its y, a dy of y's shape drawn from ``rng`` (after the inputs were made), and
    each input's gradient for that dy, all as NumPy arrays."""
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    yt = module(*ts)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(dy))
    return yt.detach().numpy(), dy, [t.grad.numpy() for t in ts]
