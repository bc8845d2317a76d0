"""Random numbers on a device, from the host generators that make every device draw alike.

Layers keep a ``numpy.random.Generator`` on the host (seeded, saved in checkpoints). On CuPy and on
PyTorch's GPUs the numbers are drawn on the device from a generator seeded once from it, so no mask
crosses from host to device each step; elsewhere they are drawn on the host and moved.

A device generator belongs to the object that asked for it (the layer, ``owner``): it sits on the
device of the array it drew for (made again when that changes), and is freed with its owner, or when
:func:`set_rng_state` rewinds the host generator it came from (each epoch, each gradcheck pass).
"""

from __future__ import annotations

import weakref
from typing import Any

import array_api_compat
import numpy as np

from .devices import dtype_name
from .libraries import cupy, library
from .namespaces import namespace

__all__ = ["uniform", "set_rng_state"]

# owner -> (host generator, device key, device generator). Weak in the owner: NumPy's generators
# cannot be weakly referenced, and a dropped layer must not keep its GPU state alive.
_device_rngs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# Threads per multiprocessor of the CuPy generator: one block of 256, a multiple of 256 as CuPy's
# kernels need (they read and write the state of every thread of each 256-thread block).
_THREADS_PER_SM = 256


def _cupy_generator(seed: int, device_id: int) -> Any:
    """A small counter-based generator on GPU ``device_id``: Philox with one state per thread of one
    256-thread block per multiprocessor (64 bytes each, about 2 MB on an H200), set up in one cheap pass.
    CuPy's ``default_rng`` makes XORWOW states for 8 blocks per multiprocessor (about 13 MB), each
    set up with a costly skip-ahead."""
    cp = cupy()
    with cp.cuda.Device(device_id):
        runtime = cp.cuda.runtime
        sms = int(runtime.deviceGetAttribute(runtime.cudaDevAttrMultiProcessorCount, device_id))
        return cp.random.default_rng(cp.random.Philox4x3210(seed, size=_THREADS_PER_SM * sms))


def _device_generator(rng: np.random.Generator, owner: Any, where: Any, make: Any) -> Any:
    """The device generator of ``owner`` for ``where`` (a device key), derived from ``rng`` by
    ``make(seed)`` when there is none yet, or it came from another host generator or device."""
    held = _device_rngs.get(owner)
    if held is None or held[0] is not rng or held[1] != where:
        held = _device_rngs[owner] = (rng, where, make(int(rng.integers(2**63))))
    return held[2]


def uniform(rng: np.random.Generator, shape: tuple[int, ...], like: Any, owner: Any) -> Any:
    """Uniform [0, 1) numbers of ``like``'s dtype on ``like``'s device.

    On CuPy and on PyTorch's GPUs they are drawn on the device from a generator seeded by ``rng``
    and kept for ``owner`` (the layer: weakly referenced), so no host-to-device copy of a mask each
    step; elsewhere on the host from ``rng`` and moved (PyTorch's CPU tensors share the host memory:
    the same numbers as NumPy).
    """
    if array_api_compat.is_cupy_array(like):
        device_id = int(like.device.id)
        gen = _device_generator(rng, owner, ("cuda", device_id), lambda seed: _cupy_generator(seed, device_id))
        with cupy().cuda.Device(device_id):  # CuPy draws on, and checks, the current device
            return gen.random(shape, dtype=like.dtype)
    if array_api_compat.is_torch_array(like) and like.device.type != "cpu":
        torch = library("torch")[0]

        def make(seed: int) -> Any:
            gen = torch.Generator(device=like.device)
            gen.manual_seed(seed)
            return gen

        gen = _device_generator(rng, owner, str(like.device), make)
        return torch.rand(shape, generator=gen, dtype=like.dtype, device=like.device)
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
    for owner, held in list(_device_rngs.items()):
        if held[0] is rng:
            _device_rngs.pop(owner, None)
