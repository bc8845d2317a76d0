"""Reading pickles that may hold only arrays: the book's ``params.pkl`` files, never plain ``pickle.load``.

The unpickler knows only NumPy arrays, dtypes, scalars, dicts, lists, tuples, numbers and strings;
any other class or function named in the file (``os.system``, a custom class) is refused before it is
called, and every failure is a ValueError naming the file.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from typing import Any

import numpy as np

__all__ = ["read_arrays_pickle"]


def _reduce_function(obj: Any) -> Any:
    return obj.__reduce__()[0]


# What pickle names to rebuild NumPy arrays and scalars (NumPy 1 wrote numpy.core, NumPy 2 numpy._core).
_RECONSTRUCT, _SCALAR = _reduce_function(np.empty(0)), _reduce_function(np.float64(0.0))
_ALLOWED = {
    **{(module, "_reconstruct"): _RECONSTRUCT for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): _SCALAR for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
}


class _Refused(pickle.UnpicklingError):
    pass


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(
                f"refused to load {module}.{name}: a params file may hold only NumPy arrays, dicts, lists, "
                "numbers and strings") from None


def read_arrays_pickle(path: str | os.PathLike, who: str) -> Any:
    """What the pickle at ``path`` holds, read with the restricted unpickler; ``who`` names the caller
    in errors (``"read_book_params"``)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return _ArraysOnly(f).load()
    except _Refused as e:
        raise ValueError(f"{who}: {path!r}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise ValueError(f"{who}: {path!r} is not a readable params pickle ({type(e).__name__}: {e})") from None
