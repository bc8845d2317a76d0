"""Embedded toy datasets: made from a seed, no files needed."""

from __future__ import annotations


import numpy as np


def spiral(n: int = 100, classes: int = 3, seed: int = 0, noise: float = 0.2,
           dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """``classes`` interleaved spiral arms of ``n`` points each (CS231n's toy problem).

    Returns x: (n*classes, 2) of ``dtype`` and t: (n*classes,) int64 labels, on the host.
    """
    if n < 1 or classes < 2:
        raise ValueError(f"spiral: need n >= 1 and classes >= 2, got n={n}, classes={classes}")
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
