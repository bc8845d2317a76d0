"""A dataset of samples, PyTorch's ``Dataset`` (``len(dataset)`` and ``dataset[i]`` giving one sample), read whole
into the two arrays that ``xn.train`` and ``xn.evaluate`` take: xpnet cuts (and shuffles) the batches from whole
arrays on the device, where PyTorch's ``DataLoader`` asks the dataset for each sample and stacks them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..backend import to_numpy

__all__ = ["stack_samples"]


def stack_samples(dataset: Any, keys: tuple[Any, Any] | None = None) -> tuple[Any, np.ndarray]:
    """``(x, y)``: the samples ``dataset[0]``, ..., ``dataset[len(dataset) - 1]``, in that order (a DataLoader's
    without ``shuffle``), stacked as its default ``collate_fn`` stacks a batch: x (N, ...), y (N, ...) host NumPy
    arrays (tensors of any backend converted, Python numbers as NumPy makes them). A sample is ``(x, y)``, or
    ``((x1, x2, ...), y)`` for a model of several inputs (x then a tuple of arrays); a dict sample (the data-loading
    tutorial's ``{'image': ..., 'landmarks': ...}``) is read through ``keys=(x_key, y_key)``. ``__getitem__`` runs
    once per sample, here: a random transform in it (a crop) is drawn once, not per epoch; give
    ``xn.train(..., transform=...)`` the augmentation instead, which draws it per training batch."""
    who = "xn.datasets.stack_samples"
    if not (hasattr(type(dataset), "__len__") and hasattr(type(dataset), "__getitem__")):
        raise TypeError(f"{who}: expected a dataset of samples (len(dataset) and dataset[i], PyTorch's Dataset), "
                        f"got {type(dataset).__name__}")
    n = len(dataset)
    if n < 1:
        raise ValueError(f"{who}: the dataset is empty (len(dataset) is 0)")
    xs: list[list[Any]] = []
    ys: list[Any] = []
    several = None
    for i in range(n):
        x, y = _pair(dataset[i], i, keys, who)
        if several is None:
            several = isinstance(x, (tuple, list))
            xs = [[] for _ in x] if several else [[]]
        parts = tuple(x) if several else (x,)
        if len(parts) != len(xs) or isinstance(x, (tuple, list)) != several:
            raise ValueError(f"{who}: sample {i}'s x is not of sample 0's kind (one array, or a tuple of "
                             f"{len(xs)}); every sample must have the same inputs")
        for column, part in zip(xs, parts):
            column.append(_host(part))
        ys.append(_host(y))
    stacked = tuple(_stack(column, f"x[{j}]" if several else "x", who) for j, column in enumerate(xs))
    return (stacked if several else stacked[0]), _stack(ys, "y", who)


def _pair(sample: Any, i: int, keys: Any, who: str) -> tuple[Any, Any]:
    """Sample ``i`` as ``(x, y)``."""
    if isinstance(sample, Mapping):
        if keys is None:
            raise ValueError(f"{who}: sample {i} is a dict of keys {list(sample)[:10]}; pass keys=(x_key, y_key), "
                             f"e.g. keys={tuple(list(sample)[:2])!r}, to say which is the input and which the target")
        missing = [k for k in keys if k not in sample]
        if missing:
            raise KeyError(f"{who}: sample {i} has no key {missing[0]!r} of keys={tuple(keys)!r}; it has "
                           f"{list(sample)[:10]}")
        return sample[keys[0]], sample[keys[1]]
    if not isinstance(sample, (tuple, list)) or len(sample) != 2:
        got = f"{len(sample)} items" if isinstance(sample, (tuple, list)) else type(sample).__name__
        raise ValueError(f"{who}: sample {i} is {got}; expected (x, y) from dataset[i] (((x1, x2), y) for a model "
                         "of several inputs), or a dict read with keys=(x_key, y_key)")
    return sample[0], sample[1]


def _host(a: Any) -> Any:
    return to_numpy(a) if hasattr(a, "shape") else np.asarray(a)


def _stack(column: list[Any], name: str, who: str) -> np.ndarray:
    """The arrays of one column stacked on a new first axis; another shape names the first sample that has it."""
    first = column[0].shape
    other = next((i for i, a in enumerate(column) if a.shape != first), None)
    if other is not None:
        raise ValueError(f"{who}: sample {other}'s {name} has shape {column[other].shape}, sample 0's {first}; "
                         "stacking needs one shape (resize or pad in __getitem__, as a DataLoader's default collate "
                         "needs too)")
    return np.stack(column)
