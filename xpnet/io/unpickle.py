"""Reading pickles that may hold only arrays: the book's ``params.pkl`` files, never plain ``pickle.load``.

A pickle names every class or function it calls by module and name; :data:`ALLOWED` lists all that a
dict (or list, or OrderedDict) of NumPy arrays needs, as NumPy 1 (``numpy.core``) and NumPy 2
(``numpy._core``) write it with pickle protocols 0 to 5, and nothing else. Anything else named in
the file (``builtins.eval``, ``os.system``, a custom class) is refused before it is called. The
names on the list are not the functions themselves but guards around them:

- ``numpy.ndarray`` may only be the first argument of ``_reconstruct`` (protocols 0 to 4): called
  through REDUCE itself it would allocate any size uninitialised;
- ``_reconstruct`` and ``_frombuffer`` (protocol 5) refuse an array larger than the file, and
  ``dtype`` refuses Python-object dtypes (whose elements would be unpickled objects); so does the
  array that ``_reconstruct`` gives when the state it is then set from has such a dtype, checked before
  NumPy reads it. A dtype's own state is never given to NumPy's ``dtype.__setstate__`` (one could give a
  plain ``V8`` the flags of an object dtype, and NumPy 2.4 crashes the process on others): it must be the
  state NumPy writes for that dtype in some byte order, and the dtype is made in that order;
- ``_codecs.encode`` (how protocols 0 to 2 store bytes) only turns a str into latin-1 bytes.

Every failure is a ValueError naming the file.
"""

from __future__ import annotations

import codecs
import math
import os
import pickle
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np

from .paths import fspath, open_regular

__all__ = ["read_arrays_pickle", "ALLOWED"]


def _reduce_function(obj: Any) -> Any:
    return obj.__reduce__()[0]


_RECONSTRUCT = _reduce_function(np.empty(0))
_FROMBUFFER = np.empty(2).__reduce_ex__(5)[0]


class _Refused(pickle.UnpicklingError):
    pass


class _NdarrayName:
    """What the file gets for ``numpy.ndarray``: usable only as ``_reconstruct``'s class argument."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _Refused("refused to call numpy.ndarray directly: a params file may rebuild arrays only through "
                       "numpy's _reconstruct or _frombuffer, with the data they hold")


_NDARRAY = _NdarrayName()


def _dtype(*args: Any) -> _DtypeInFile:
    try:
        with warnings.catch_warnings():  # NumPy warns of arguments no pickle of its own gives (align=2): refused
            warnings.simplefilter("error")
            dtype = np.dtype(*args)
    except Exception as e:  # NumPy parses a typestring with commas as Python (a SyntaxError) and may raise anything
        raise _Refused(f"refused dtype{args!r}: NumPy says {type(e).__name__}: {e}") from None
    if dtype.hasobject:
        raise _Refused(f"refused dtype {dtype}: a params file may hold numeric arrays only, not Python objects")
    return _DtypeInFile(dtype)


class _DtypeInFile:
    """What the file gets for ``numpy.dtype(...)``: NumPy's ``dtype.__setstate__`` is never called. The state the
    file then gives (BUILD) must be the one NumPy writes for that dtype in some byte order, and the dtype is made
    in that order; any other state is refused (NumPy 2.4 crashes the process on some: a subarray that is an int).
    :meth:`made` is the dtype, where the file uses it (an array's state, ``_frombuffer``, the result)."""

    def __init__(self, dtype: np.dtype):
        self._made = dtype

    def __setstate__(self, state: Any) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "=") \
            else None
        if order is None or state != self._made.newbyteorder(order).__reduce__()[2]:
            raise _Refused(f"refused the state {state!r} for dtype {self._made}: not one NumPy writes for it")
        self._made = self._made.newbyteorder(order)

    def made(self) -> np.dtype:
        return self._made


def _made_dtype(dtype: Any) -> Any:
    """The dtype a :class:`_DtypeInFile` stands for; anything else as it is."""
    return dtype.made() if isinstance(dtype, _DtypeInFile) else dtype


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"refused _codecs.encode({type(text).__name__}, {encoding!r}): pickles of protocols 0 to 2 "
                       "use it only to store bytes as latin-1 text")
    return codecs.encode(text, "latin1")


_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")  # NumPy 1, NumPy 2
_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")

# (module, name) a file may name -> the guard of _ArraysOnly that it gets.
ALLOWED = {**{(m, "_reconstruct"): "_reconstruct" for m in _MULTIARRAY},
           **{(m, "_frombuffer"): "_frombuffer" for m in _NUMERIC},
           ("numpy", "ndarray"): "_ndarray",
           ("numpy", "dtype"): "_dtype",
           ("collections", "OrderedDict"): "_ordered_dict",
           ("_codecs", "encode"): "_encode"}


class _Checked(np.ndarray):
    """What ``_reconstruct`` gives: an array whose pickled state (BUILD) is checked before NumPy sets it;
    :func:`_plain` turns it into a plain ndarray once the file is read, and refuses one never ``given`` a state
    (it would hold whatever its memory held)."""

    given = False

    def __setstate__(self, state: Any) -> None:
        dtype = _made_dtype(state[-3]) if isinstance(state, tuple) and len(state) in (4, 5) else None
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise _Refused(f"refused dtype {dtype!r} in an array's state: a params file may hold numeric arrays "
                           "only, not Python objects")
        super().__setstate__((*state[:-3], dtype, *state[-2:]))
        self.given = True


def _plain(value: Any) -> Any:
    """``value`` with every :class:`_Checked` array in its dicts, lists and tuples a plain ndarray. What the
    pickle references twice (a shared tuple or array) comes back as one finished object at every place, and a
    cycle (a tuple within itself through a list or dict, and through other tuples there) closes on the finished
    objects. Without recursion: a pickle may nest lists as deep as its length."""
    found, seen, stack = [], set(), [value]  # every container and array once; found keeps their ids theirs
    while stack:
        v = stack.pop()
        if id(v) in seen or not isinstance(v, (_Checked, _DtypeInFile, tuple, list, dict)):
            continue
        seen.add(id(v))
        found.append(v)
        if not isinstance(v, (_Checked, _DtypeInFile)):
            stack.extend(v.values() if isinstance(v, dict) else v)
    arrays = [v for v in found if isinstance(v, _Checked)]
    for v in arrays:
        if not v.given:
            raise _Refused(f"refused an array of shape {v.shape} and dtype {v.dtype} whose data the file does not "
                           "hold (numpy's _reconstruct with no state after it)")
    finished = {id(v): v.view(np.ndarray) for v in arrays}  # id -> what it became
    finished.update((id(v), v.made()) for v in found if isinstance(v, _DtypeInFile))

    def made(item: Any) -> Any:
        return finished[id(item)] if isinstance(item, (_Checked, _DtypeInFile, tuple)) else item

    # a tuple is made after the tuples it holds: they form no cycle among themselves (a tuple's items exist
    # before it; a cycle passes through a list or dict, which keeps its identity and is mended below)
    for root in (v for v in found if isinstance(v, tuple)):
        stack = [root]
        while stack:
            t = stack[-1]
            if id(t) in finished:
                stack.pop()
                continue
            waiting = [item for item in t if isinstance(item, tuple) and id(item) not in finished]
            if waiting:
                stack.extend(waiting)
                continue
            items = tuple(made(item) for item in t)
            finished[id(t)] = items if any(a is not b for a, b in zip(items, t)) else t
            stack.pop()
    for v in found:
        if isinstance(v, (list, dict)):
            changed = [(key, made(item)) for key, item in (v.items() if isinstance(v, dict) else enumerate(v))
                       if isinstance(item, (_Checked, _DtypeInFile, tuple)) and made(item) is not item]
            for key, item in changed:
                v[key] = item
    return made(value)


class _ArraysOnly(pickle.Unpickler):
    """The restricted unpickler; ``limit`` is the file's size in bytes, which no array can exceed."""

    _ndarray = _NDARRAY
    _dtype = staticmethod(_dtype)
    _ordered_dict = OrderedDict
    _encode = staticmethod(_encode)

    def __init__(self, file: Any, limit: int):
        super().__init__(file)
        self.limit = limit

    def find_class(self, module: str, name: str) -> Any:
        guard = ALLOWED.get((module, name))
        if guard is None:
            raise _Refused(f"refused to load {module}.{name}: a params file may hold only NumPy arrays, dicts, "
                           "lists, numbers and strings")
        return getattr(self, guard)

    def _fits(self, shape: Any, dtype: np.dtype) -> tuple[int, ...]:
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise _Refused(f"refused array shape {shape!r}: expected a tuple of ints >= 0")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > self.limit:
            raise _Refused(f"refused an array of shape {shape} and dtype {dtype}: {nbytes} bytes, more than the "
                           f"whole file holds ({self.limit} bytes)")
        return shape

    def _reconstruct(self, cls: Any, shape: Any, typecode: Any) -> np.ndarray:
        if cls is not _NDARRAY:
            raise _Refused(f"refused numpy's _reconstruct of {cls!r}: only plain numpy.ndarray is allowed")
        return _RECONSTRUCT(_Checked, self._fits(shape, _dtype(typecode).made()), typecode)

    def _frombuffer(self, buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        dtype = _made_dtype(dtype)
        if not isinstance(dtype, np.dtype) or dtype.hasobject or order not in ("C", "F"):
            raise _Refused(f"refused numpy's _frombuffer with dtype {dtype!r} and order {order!r}")
        return _FROMBUFFER(buffer, dtype, self._fits(shape, dtype), order)


def read_arrays_pickle(path: str | os.PathLike, who: str) -> Any:
    """What the pickle at ``path`` holds, read with the restricted unpickler; ``who`` names the caller
    in errors (``"read_book_params"``). Only a regular file is opened (never a FIFO or a device)."""
    path = fspath(path, who)

    def refuse(why: str) -> ValueError:
        return ValueError(f"{who}: {path!r} is not a params pickle: {why}")

    try:
        with open_regular(path, refuse) as f:
            return _plain(_ArraysOnly(f, os.fstat(f.fileno()).st_size).load())
    except _Refused as e:
        raise ValueError(f"{who}: {path!r}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, SystemError) as e:  # SystemError: NumPy's C code failing without an exception
        if str(e).startswith(f"{who}: {path!r}"):
            raise
        raise ValueError(f"{who}: {path!r} is not a readable params pickle ({type(e).__name__}: {e})") from None
