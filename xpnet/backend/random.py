"""Random numbers on a device, from the host generators that make every device draw alike.

Layers keep a ``numpy.random.Generator`` on the host (seeded, saved in checkpoints). On CuPy and on
PyTorch's GPUs the numbers are drawn on the device from a generator seeded once from it, so no mask
crosses from host to device each step; elsewhere they are drawn on the host and moved.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from .devices import dtype_name
from .libraries import cupy, library
from .namespaces import namespace

__all__ = ["uniform", "set_rng_state"]

_device_rngs: dict[int, tuple[np.random.Generator, Any]] = {}


def uniform(rng: np.random.Generator, shape: tuple[int, ...], like: Any) -> Any:
    """Uniform [0, 1) numbers of ``like``'s dtype on ``like``'s device.

    On CuPy and on PyTorch's GPUs they are drawn on the device from a generator seeded by ``rng``
    (no host-to-device copy of a mask each step); elsewhere on the host from ``rng`` and moved
    (PyTorch's CPU tensors share the host memory: the same numbers as NumPy).
    """
    if array_api_compat.is_cupy_array(like):
        state = _device_rngs.get(id(rng))
        if state is None or state[0] is not rng:
            gen = cupy().random.default_rng(int(rng.integers(2**63)))
            _device_rngs[id(rng)] = state = (rng, gen)
        return state[1].random(shape, dtype=like.dtype)
    if array_api_compat.is_torch_array(like) and like.device.type != "cpu":
        torch = library("torch")[0]
        state = _device_rngs.get(id(rng))
        if state is None or state[0] is not rng or state[1].device != like.device:
            gen = torch.Generator(device=like.device)
            gen.manual_seed(int(rng.integers(2**63)))
            _device_rngs[id(rng)] = state = (rng, gen)
        return torch.rand(shape, generator=state[1], dtype=like.dtype, device=like.device)
    host = rng.random(shape, dtype=np.float64 if dtype_name(like) == "float64" else np.float32)
    if isinstance(like, np.ndarray):
        return host
    xp = namespace(like)
    return xp.asarray(host, device=array_api_compat.device(like))


def set_rng_state(rng: np.random.Generator, state: dict[str, Any] | None = None) -> None:
    """Rewind ``rng`` to ``state`` (a ``rng.bit_generator.state``) so that :func:`uniform` draws the
    same numbers again, also on a GPU, whose device generator is derived from ``rng`` on first use.
    ``state=None`` only drops that device generator (it is rebuilt from ``rng`` when next needed)."""
    if state is not None:
        rng.bit_generator.state = state
    _device_rngs.pop(id(rng), None)
