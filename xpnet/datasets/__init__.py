"""Datasets: toy sets embedded in code, MNIST/Fashion-MNIST loaders, and minibatch helpers.

All return host NumPy arrays; move them with ``xn.to_device`` (``xn.train`` does it per batch).
"""

from .augment import RandomShiftFlip, shift_flip_params
from .batches import BatchIterator, StaticBatches, batch_bounds, epoch_permutation
from .idx import IDXFormatError, read_idx
from .mnist import (
    DatasetChecksumError,
    DatasetNotFoundError,
    cache_dir,
    find_files,
    load_fashion_mnist,
    load_mnist,
    search_dirs,
)
from .toy import blobs, spiral, xor

__all__ = [
    "BatchIterator",
    "RandomShiftFlip",
    "StaticBatches",
    "DatasetChecksumError",
    "DatasetNotFoundError",
    "IDXFormatError",
    "batch_bounds",
    "blobs",
    "cache_dir",
    "epoch_permutation",
    "find_files",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
    "search_dirs",
    "shift_flip_params",
    "spiral",
    "xor",
]
