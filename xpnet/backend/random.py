"""Random numbers on a device, from the host generators that make every device draw alike.

Layers keep a ``numpy.random.Generator`` on the host (seeded, saved in checkpoints). On CuPy and on
PyTorch's GPUs the numbers are drawn on the device from a generator seeded once from it, so no mask
crosses from host to device each step; elsewhere they are drawn on the host and moved.

A device generator belongs to the object that asked for it (the layer, ``owner``): it sits on the
device of the array it drew for (made again when that changes), and is freed with its owner. When
:func:`set_rng_state` rewinds the host generator it came from (each epoch, each gradcheck pass), its
next draw seeds it again from that host generator.

On CuPy the device generator is Philox4x32-10 in xpnet's own kernels (``cupy_kernels``): 16 bytes on the
device, ``{key, draw count}``, from which every draw is a pure function; seeding again writes those 16
bytes in place. So a CUDA graph that captured a draw keeps reading the current key and count and draws
new numbers at each launch (:func:`prepare_device_draws` seeds before the launches what a draw would have
seeded). On PyTorch's GPUs it is a ``torch.Generator``, made again after a rewind.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterable

import array_api_compat
import numpy as np

from .devices import dtype_name, from_host
from .libraries import cupy, library
from .namespaces import namespace

__all__ = ["uniform", "keep_scale", "set_rng_state", "release_device_rngs", "cupy_draw_state", "prepare_device_draws"]


class _Held:
    """The device generator of one owner: the host generator it came from, the device it is on, the
    generator itself, and whether a rewind of the host generator asks for it to be seeded again."""

    __slots__ = ("rng", "where", "generator", "stale")

    def __init__(self, rng: np.random.Generator, where: Any, generator: Any):
        self.rng, self.where, self.generator, self.stale = rng, where, generator, False


# owner -> _Held. Weak in the owner: NumPy's generators cannot be weakly referenced, and a dropped layer
# must not keep its GPU state alive.
_device_rngs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**63))


def _device_generator(rng: np.random.Generator, owner: Any, where: Any, make: Any, reseed: Any = None) -> Any:
    """The device generator of ``owner`` for ``where`` (a device key), derived from ``rng`` by
    ``make(seed)`` when there is none yet, or it came from another host generator or device; one that
    a rewind left stale is seeded again by ``reseed(generator, seed)`` where given, else made again."""
    held = _device_rngs.get(owner)
    if held is None or held.rng is not rng or held.where != where or (held.stale and reseed is None):
        held = _device_rngs[owner] = _Held(rng, where, make(_seed(rng)))
    return _seeded(held, reseed)


def _seeded(held: _Held, reseed: Any) -> Any:
    """``held``'s generator, first seeded again from its host generator by ``reseed`` where a rewind left
    it stale."""
    if held.stale:
        reseed(held.generator, _seed(held.rng))
        held.stale = False
    return held.generator


def _cupy_state(seed: int, device_id: int) -> Any:
    cp = cupy()
    with cp.cuda.Device(device_id):
        state = cp.empty(2, dtype=cp.uint64)
    _cupy_reseed(state, seed)
    return state


def _cupy_reseed(state: Any, seed: int) -> None:
    """Seed in place (a captured graph reads these 16 bytes) by a kernel: a copy from the host could wait
    for the steps still queued, and an epoch's steps never wait for the GPU."""
    from . import cupy_layers  # noqa: PLC0415 - imports CuPy

    with cupy().cuda.Device(int(state.device.id)):
        cupy_layers.philox_seed(state, seed)


def cupy_draw_state(rng: np.random.Generator, like: Any, owner: Any) -> Any:
    """``owner``'s Philox state ``{key, draw count}`` (uint64 (2,)) on the GPU of the CuPy array ``like``,
    seeded from ``rng`` on first use and after a rewind (see the module's docstring)."""
    device_id = int(like.device.id)
    return _device_generator(rng, owner, ("cuda", device_id), lambda seed: _cupy_state(seed, device_id),
                             _cupy_reseed)


def prepare_device_draws(owners: Iterable[Any]) -> list[Any]:
    """Seed now each CuPy draw state of ``owners`` that a rewind left stale (what their next draw would
    do), and return the states: a CUDA graph launched afterwards reads them without running Python."""
    states = []
    for owner in owners:
        held = _device_rngs.get(owner)
        if held is not None and isinstance(held.where, tuple):  # a CuPy draw state: ("cuda", device id)
            states.append(_seeded(held, _cupy_reseed))
    return states


def uniform(rng: np.random.Generator, shape: tuple[int, ...], like: Any, owner: Any) -> Any:
    """Uniform [0, 1) numbers of ``like``'s dtype on ``like``'s device.

    On CuPy and on PyTorch's GPUs they are drawn on the device from a generator seeded by ``rng``
    and kept for ``owner`` (the layer: weakly referenced), so no host-to-device copy of a mask each
    step; elsewhere on the host from ``rng`` and moved (PyTorch's CPU tensors share the host memory:
    the same numbers as NumPy).
    """
    if array_api_compat.is_cupy_array(like):
        from . import cupy_layers  # noqa: PLC0415 - imports CuPy
        dtype = "float64" if dtype_name(like) == "float64" else "float32"  # as the host's draw: float16 too
        with cupy().cuda.Device(int(like.device.id)):  # CuPy launches on, and checks, the current device
            return cupy_layers.philox_uniform(cupy_draw_state(rng, like, owner), shape, dtype)
    if array_api_compat.is_torch_array(like) and like.device.type != "cpu":
        torch = library("torch")[0]

        def make(seed: int) -> Any:
            gen = torch.Generator(device=like.device)
            gen.manual_seed(seed)
            return gen

        gen = _device_generator(rng, owner, str(like.device), make)
        return torch.rand(shape, generator=gen, dtype=like.dtype, device=like.device)
    host = _host_draw(rng, shape, like)
    if isinstance(like, np.ndarray):
        return host
    return from_host(namespace(like), host, array_api_compat.device(like), owned=True)


def keep_scale(rng: np.random.Generator, shape: tuple[int, ...], like: Any, owner: Any, p: float,
               kept: float) -> Any:
    """Dropout's scale ``(u >= p) * kept`` of ``shape`` in ``like``'s dtype on its device, u the numbers
    :func:`uniform` draws. Where those are drawn on the host, the scale is made there (NumPy's operations, as
    the NumPy case runs them) and moved once: JAX dispatches each operation on its own, four of them."""
    name = dtype_name(like)
    if _drawn_on_device(like) or not hasattr(np, name):  # NumPy has no bfloat16
        xp = namespace(like)
        return xp.astype(uniform(rng, shape, like, owner) >= p, like.dtype) * kept
    scale = (_host_draw(rng, shape, like) >= p).astype(name) * kept
    if isinstance(like, np.ndarray):
        return scale
    return from_host(namespace(like), scale, array_api_compat.device(like), owned=True)


def _host_draw(rng: np.random.Generator, shape: tuple[int, ...], like: Any) -> np.ndarray:
    return rng.random(shape, dtype=np.float64 if dtype_name(like) == "float64" else np.float32)


def _drawn_on_device(like: Any) -> bool:
    """Whether :func:`uniform` draws for ``like`` on its device: CuPy, PyTorch's GPUs."""
    return array_api_compat.is_cupy_array(like) or (array_api_compat.is_torch_array(like)
                                                     and like.device.type != "cpu")


def set_rng_state(rng: np.random.Generator, state: dict[str, Any] | None = None) -> None:
    """Rewind ``rng`` to ``state`` (a ``rng.bit_generator.state``) so that :func:`uniform` draws the
    same numbers again, also on a GPU, whose device generator is derived from ``rng`` on first use.
    ``state=None`` keeps ``rng`` and only has the device generators derived from it seeded again from it
    at their next draw."""
    if state is not None:
        rng.bit_generator.state = state
    for held in list(_device_rngs.values()):
        if held.rng is rng:
            held.stale = True


def release_device_rngs(rng: np.random.Generator) -> None:
    """Forget the device generators derived from ``rng`` (their memory goes when nothing else holds it):
    for a host generator whose owners are done drawing, such as those of gradcheck's float64 copy."""
    for owner, held in list(_device_rngs.items()):
        if held.rng is rng:
            _device_rngs.pop(owner, None)
