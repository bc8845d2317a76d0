"""Embedded toy datasets: made from a seed, no files needed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._user import is_int, is_real, seed as _seed
from ..backend import float_dtype_name


def _check(who: str, seed: Any, dtype: Any, **spreads: Any) -> str:
    """Check ``seed`` and each spread (noise, std: finite, >= 0); returns the name of the float ``dtype``."""
    _seed(seed, who)
    for arg, value in spreads.items():
        if not is_real(value) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{who}: {arg} must be a finite number >= 0, got {value!r}")
    return float_dtype_name(dtype, who)


def spiral(n: int = 100, classes: int = 3, seed: int = 0, noise: float = 0.2,
           dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """``classes`` interleaved spiral arms of ``n`` points each (CS231n's toy problem).

    Returns x: (n*classes, 2) of ``dtype`` and t: (n*classes,) int64 labels, on the host.
    """
    if not (is_int(n) and is_int(classes)) or n < 1 or classes < 2:
        raise ValueError(f"spiral: need n >= 1 and classes >= 2 (ints), got n={n!r}, classes={classes!r}")
    dtype = _check("spiral", seed, dtype, noise=noise)
    rng = np.random.default_rng(seed)
    x = np.empty((n * classes, 2), dtype=np.float64)
    t = np.empty(n * classes, dtype=np.int64)
    for c in range(classes):
        r = np.linspace(0.0, 1.0, n)
        theta = np.linspace(c * 4.0, (c + 1) * 4.0, n) + rng.standard_normal(n) * noise
        rows = slice(c * n, (c + 1) * n)
        x[rows, 0] = r * np.sin(theta)
        x[rows, 1] = r * np.cos(theta)
        t[rows] = c
    return x.astype(dtype), t


def xor(n: int = 200, seed: int = 0, noise: float = 0.2,
        dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """The XOR problem: four Gaussian clusters of std ``noise`` at (+-1, +-1); label 1 where the signs differ.

    Not linearly separable, so it needs a hidden layer. Returns x: (n, 2) of ``dtype`` and t: (n,) int64
    labels, grouped by corner, on the host. The label is the corner's, whatever the noise.
    """
    if not is_int(n) or n < 4:
        raise ValueError(f"xor: need an int n >= 4, got n={n!r}")
    dtype = _check("xor", seed, dtype, noise=noise)
    rng = np.random.default_rng(seed)
    corners = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    which = np.arange(n) * 4 // n
    x = corners[which] + rng.standard_normal((n, 2)) * noise
    t = (corners[which, 0] != corners[which, 1]).astype(np.int64)
    return x.astype(dtype), t


def blobs(n: int = 300, centers: int | np.ndarray = 3, seed: int = 0, std: float = 1.0, dim: int = 2,
          box: float = 10.0, dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian blobs of std ``std``, one class each (like scikit-learn's ``make_blobs``).

    ``centers``: how many, placed uniformly in [-box, box]^dim, or a (classes, dim) array of them.
    Returns x: (n, dim) of ``dtype`` and t: (n,) int64 labels, grouped by class, the n points split as
    evenly as possible; on the host.
    """
    dtype = _check("blobs", seed, dtype, std=std, box=box)
    rng = np.random.default_rng(seed)
    if np.ndim(centers) == 0:
        if not (is_int(centers) and is_int(dim)) or centers < 1 or dim < 1:
            raise ValueError(f"blobs: need ints centers >= 1 and dim >= 1 (or a (classes, dim) array of centers), "
                             f"got centers={centers!r}, dim={dim!r}")
        means = rng.uniform(-box, box, size=(int(centers), dim))
    else:
        means = np.asarray(centers, dtype=np.float64)
        if means.ndim != 2 or len(means) < 1:
            raise ValueError(f"blobs: centers must be an int or a (classes, dim) array, got shape {means.shape}")
    if not is_int(n) or n < len(means):
        raise ValueError(f"blobs: need an int n >= number of centers ({len(means)}), got n={n!r}")
    t = np.arange(n) * len(means) // n
    x = means[t] + rng.standard_normal((n, means.shape[1])) * std
    return x.astype(dtype), t.astype(np.int64)
