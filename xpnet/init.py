"""Weight initialisers, drawn on the host from a seeded generator.

Weights are drawn with ``numpy.random.Generator`` on the host and moved to the device afterwards,
so one seed gives bit-identical initial weights on every backend and device.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_generator = np.random.default_rng(0)


def seed(s: int) -> None:
    """Reseed the generator that layers draw their initial weights from."""
    global _generator
    _generator = np.random.default_rng(s)


def generator() -> np.random.Generator:
    """The global host generator (``xn.init.seed`` resets it)."""
    return _generator


def make_rng(seed: int | None = None) -> np.random.Generator:
    """A new host generator: from ``seed``, else drawn from the global one (so ``xn.init.seed`` fixes it)."""
    return np.random.default_rng(seed if seed is not None else int(_generator.integers(2**63)))


def _std(init: Any, fan_in: int, fan_out: int) -> float:
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        if init <= 0:
            raise ValueError(f"init: a standard deviation must be > 0, got {init}")
        return float(init)
    if init in ("he", "relu"):
        return math.sqrt(2.0 / fan_in)
    if init in ("xavier", "glorot"):
        return math.sqrt(2.0 / (fan_in + fan_out))
    if init == "sigmoid":
        return math.sqrt(1.0 / fan_in)
    if init == "normal":
        return 0.01
    raise ValueError(f"init: expected 'he' (or 'relu'), 'xavier'/'glorot', 'sigmoid', 'normal', a standard "
                     f"deviation or a callable, got {init!r}")


def weights(shape: tuple[int, ...], fan_in: int, fan_out: int, init: Any = "he", dtype: str = "float32",
            rng: np.random.Generator | None = None) -> np.ndarray:
    """A host array of ``shape`` drawn from N(0, std**2) with std chosen by ``init``.

    ``init``: ``"he"`` or the book's ``"relu"`` (sqrt(2/fan_in)), ``"xavier"``/``"glorot"``
    (sqrt(2/(fan_in+fan_out)), Glorot's and PyTorch's), ``"sigmoid"`` (sqrt(1/fan_in): what the book
    calls Xavier, ``weight_init_std="sigmoid"`` or ``"xavier"`` there), ``"normal"`` (0.01, the
    book's default ``weight_init_std``), a float std, or a callable ``f(shape, rng) -> array``.
    """
    rng = _generator if rng is None else rng
    if callable(init):
        w = np.asarray(init(shape, rng))
        if w.shape != tuple(shape):
            raise ValueError(f"init: the callable returned shape {w.shape}, expected {tuple(shape)}")
        return w.astype(dtype)
    return (rng.standard_normal(shape) * _std(init, fan_in, fan_out)).astype(dtype)


def zeros(shape: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
    """A host array of zeros (biases), moved to the device with the layer."""
    return np.zeros(shape, dtype=dtype)


def ones(shape: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
    """A host array of ones (scales)."""
    return np.ones(shape, dtype=dtype)
