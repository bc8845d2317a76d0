"""The fake's generator API (``cupy/random/_bit_generator.pyx``, ``_generator_api.pyx``): the state is
``size`` per-thread cuRAND states allocated on the current device (default ``size``: 8 blocks of 256
threads per multiprocessor), and drawing under another current device raises. The numbers come from
NumPy, seeded alike.

Drawing from a Generator is a kernel on the generator's device state (no cuRAND host call), so a capture
records it and each launch draws the next numbers, as on the GPU. The legacy functions (``rand``,
``random_sample``, ``uniform``...) call cuRAND's host API and are refused on a capturing stream, as CuPy
refuses them (``curand.pyx``: ``setStream``)."""

import os

import numpy as _np

import cupy
from cupy._dispatch import _kernel, _wrap

_STATE_BYTES = {"XORWOW": 48, "MRG32k3a": 48, "Philox4x3210": 64}  # sizeof(curandState...) per thread


class _BitGenerator:
    def __init__(self, seed=None, *, size=-1):
        self._seed_seq = _np.random.SeedSequence(seed)
        self._current_device_id = cupy.cuda.get_device_id()
        if size < 0:
            size = 8 * 256 * int(os.environ.get("FAKE_CUPY_SMS", "132"))
        elif size % 256:  # CuPy's kernels touch the state of every thread of each 256-thread block
            raise AssertionError(f"size={size}: CuPy would read and write past the state (not a multiple of 256)")
        self._size = size
        self._state = cupy.zeros(_STATE_BYTES[type(self).__name__] * size, dtype=_np.int8)
        self._numpy = _np.random.default_rng(self._seed_seq)

    def _check_device(self):
        if cupy.cuda.get_device_id() != self._current_device_id:
            raise RuntimeError("This Generator state is allocated in a different device")


class XORWOW(_BitGenerator):
    pass


class MRG32k3a(_BitGenerator):
    pass


class Philox4x3210(_BitGenerator):
    pass


class Generator:
    def __init__(self, bit_generator):
        self.bit_generator = bit_generator

    def random(self, size=None, dtype=_np.float64, out=None):
        self.bit_generator._check_device()
        dtype = _np.float64 if _np.dtype(dtype) == _np.float64 else _np.float32
        numbers = self.bit_generator._numpy
        return _kernel("Generator.random", lambda: numbers.random(size, dtype=dtype))


def default_rng(seed=None):
    return Generator(seed if isinstance(seed, _BitGenerator) else XORWOW(seed))


def _legacy(name):
    def draw(*args, **kwargs):
        if cupy.cuda.stream.capturing() is not None:
            raise NotImplementedError("calling cuRAND API during stream capture is currently unsupported")
        return _wrap(getattr(_np.random, name)(*args, **kwargs))

    draw.__name__ = name
    return draw


rand, random_sample, uniform, normal, standard_normal, randint = (
    _legacy(n) for n in ("rand", "random_sample", "uniform", "normal", "standard_normal", "randint"))
