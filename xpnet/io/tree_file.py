"""A tree of values in one ``.npz``: what ``xn.save(model.state_dict(), path)`` and PyTorch's checkpoint dict
(``{"epoch": 5, "model_state_dict": ..., "optimizer_state_dict": ..., "loss": loss}``) write, without pickle.

How a tree is written (:func:`save_tree`: :func:`tree_record`, then :func:`.streams.save_npz`, to a path atomically
or into a binary file object):

1. It is walked once before anything is written. It may hold dicts with str keys, lists, tuples, arrays (any
   backend's: the caller's ``host_array`` gives a NumPy array on the host, or None for what is no array), Python's
   None, bool, int, float, complex and str (a subclass, such as xpnet's ``LossValue``, a namedtuple or NumPy's
   ``str_``, as its base type) and NumPy scalars of a bool, int, float or complex dtype. Anything else (an object,
   a function, a key that is not a str, a dict holding itself, an int of more digits than Python reads from JSON)
   is refused, naming its place in the tree (``obj['optimizer']['state']``) and its type.
2. The record (a JSON string, member ``__xpnet_tree__``) is the tree with each array replaced by a reference to its
   member (``arrays/0``, with its shape and dtype). JSON's own values stand for themselves (a list, None, a bool,
   an int, a float, a str); the rest are objects tagged by ``"type"``: ``{"type": "dict", "items": {...}}`` (the
   keys in their order), ``"tuple"`` (``"items"``: a list), ``"array"`` (``"name"``, ``"shape"``, ``"dtype"``),
   ``"numpy"`` (``"dtype"``, ``"value"``) and ``"complex"`` (``"value"``: ``[real, imag]``). One array object
   found twice is stored once and read back as one array in both places, as ``torch.save`` keeps shared tensors.

How it is read (:func:`read_tree`, from an :class:`.npz.NpzReader`): the record is walked twice, the first time
checking every node and every array's header against its reference (shape, dtype) and that the archive holds
no other array, the second building the tree from the arrays' data. A node of another form is an
:class:`XpnetFileError` naming its place.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable

import numpy as np

from .npz import MAX_RECORD_DEPTH, NpzReader
from .streams import save_npz

__all__ = ["TREE_KEY", "TREE_FORMAT", "TREE_WHAT", "save_tree", "tree_record", "read_tree"]

TREE_KEY = "__xpnet_tree__"
TREE_FORMAT = 1
TREE_WHAT = "a file of saved values (written by xn.save(obj, path) of a dict, list or array)"
_ARRAY_KINDS = "biufcUS"  # bool, numbers, and NumPy's str and bytes arrays; never objects
_ARRAY_DTYPE = r"[biufcUS][0-9]+"  # how the record names them: NumPy's dtype.str without the byte order
_SCALAR_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                  "float32", "float64", "complex64", "complex128")
_INT_DIGITS = 4300  # sys.get_int_max_str_digits()'s default: json.loads reads no longer int
_INT_LIMIT = 10 ** _INT_DIGITS
_HOLDS = ("dicts (str keys), lists, tuples, arrays, None, bool, int, float, complex, str and NumPy scalars of "
          "those kinds")


def save_tree(path: Any, tree: Any, host_array: Callable[[Any], np.ndarray | None], who: str = "xn.save") -> None:
    """Write ``tree`` to ``path`` (.npz) atomically, or into a binary file object at its position, after checking
    all of it (:func:`tree_record`)."""
    record, arrays = tree_record(tree, host_array, who)
    save_npz(path, {**arrays, TREE_KEY: np.asarray(json.dumps(record))}, who)


def tree_record(tree: Any, host_array: Callable[[Any], np.ndarray | None],
                who: str = "xn.save") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(record, arrays)`` for ``tree``: the JSON record and the host arrays by member name. Raises TypeError
    (ValueError for nesting past what a reader reads) naming the place of the first value a file cannot hold."""
    arrays: dict[str, np.ndarray] = {}
    names: dict[int, str] = {}  # id of an array in the tree -> its member

    def walk(value: Any, where: str, level: int) -> Any:
        if type(value) is int and abs(value) >= _INT_LIMIT:
            raise ValueError(f"{who}: {where} is an int of more than {_INT_DIGITS} digits, which a file cannot hold "
                             "(its record is JSON, and Python reads no longer int from JSON): save it as a str")
        if value is None or type(value) in (bool, int, float, str):
            return value
        if isinstance(value, np.str_):  # a str (np.unique of str labels gives them), saved as one
            return str(value)
        if level + (not isinstance(value, list)) > MAX_RECORD_DEPTH:  # a tagged node's list or object: one more
            raise ValueError(f"{who}: {where} nests dicts, lists and tuples deeper than a file holds "
                             f"({MAX_RECORD_DEPTH} levels of its record); a dict or list that holds itself?")
        if isinstance(value, np.generic):
            return _numpy_scalar(value, where, who)
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    raise TypeError(f"{who}: {where} has the key {key!r}, {_a(key)}; a file holds "
                                    "dicts with str keys only")
            return {"type": "dict", "items": {k: walk(v, f"{where}[{k!r}]", level + 2) for k, v in value.items()}}
        if isinstance(value, list):
            return [walk(v, f"{where}[{i}]", level + 1) for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return {"type": "tuple", "items": [walk(v, f"{where}[{i}]", level + 2) for i, v in enumerate(value)]}
        for base in (int, float, str):  # a subclass (an IntEnum, xpnet's LossValue) as its base type
            if isinstance(value, base):
                return base.__str__(value) if base is str else base(value)
        if isinstance(value, complex):
            return {"type": "complex", "value": [value.real, value.imag]}
        if id(value) in names:
            host = arrays[names[id(value)]]
        else:
            host = host_array(value)
            if host is None:
                raise TypeError(f"{who}: {where} is {_a(value)}, which a file cannot hold; it holds "
                                f"{_HOLDS}{_hint(value)}")
            if host.dtype.kind not in _ARRAY_KINDS:
                raise TypeError(f"{who}: {where} is an array of dtype {host.dtype}, which a file cannot hold; "
                                "arrays of bool, numbers, str and bytes only (xpnet never pickles objects)")
            names[id(value)] = f"arrays/{len(arrays)}"
            arrays[names[id(value)]] = host
        return {"type": "array", "name": names[id(value)], "shape": list(host.shape), "dtype": host.dtype.str[1:]}

    return {"format": TREE_FORMAT, "tree": walk(tree, "obj", 2)}, arrays


def _numpy_scalar(value: np.generic, where: str, who: str) -> dict[str, Any]:
    dtype = value.dtype.name
    if dtype not in _SCALAR_DTYPES:
        raise TypeError(f"{who}: {where} is a NumPy scalar of dtype {dtype}, which a file cannot hold; NumPy "
                        f"scalars of {', '.join(_SCALAR_DTYPES)} only")
    item = value.item()
    return {"type": "numpy", "dtype": dtype, "value": [item.real, item.imag] if isinstance(item, complex) else item}


def _a(value: Any) -> str:
    """``value``'s type with its article: "a function", "an object", "a Sequential"."""
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _hint(value: Any) -> str:
    if hasattr(value, "state_dict"):
        whole = " (xn.save(model, path) alone saves a whole model, its architecture too)" if hasattr(
            value, "params") else ""
        return f"; save its state_dict() instead{whole}"
    if callable(value):
        return "; a function is code, which torch.save pickles and xpnet never does: save the values it uses"
    return ""


def read_tree(reader: NpzReader, record: dict[str, Any], send: Callable[[np.ndarray], Any] = lambda a: a) -> Any:
    """The tree ``record`` (checked as :func:`tree_record` writes it) describes, each array read from ``reader``
    after every header was checked, then given to ``send`` (moving it to a device) once per array."""
    if "tree" not in record:
        raise reader.error("its record has no field 'tree'")
    refs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    _build(record["tree"], "obj", reader, refs, None)
    unnamed = sorted(set(reader.names) - {TREE_KEY} - set(refs))
    if unnamed:
        raise reader.error(f"it holds arrays its record does not name: {unnamed}")
    data = {name: reader.array(name, shape, dtype, "its record") for name, (shape, dtype) in refs.items()}
    return _build(record["tree"], "obj", reader, refs, {name: send(a) for name, a in data.items()})


def _build(node: Any, where: str, reader: NpzReader, refs: dict[str, Any], data: dict[str, Any] | None) -> Any:
    """The value ``node`` stands for; with ``data`` None, only checked, each array's header against ``refs``."""
    if node is None or type(node) in (bool, int, float, str):
        return node
    if isinstance(node, list):
        return [_build(v, f"{where}[{i}]", reader, refs, data) for i, v in enumerate(node)]
    kind = node.get("type") if isinstance(node, dict) else None
    items = node.get("items") if isinstance(node, dict) else None
    if kind == "dict" and isinstance(items, dict):
        return {k: _build(v, f"{where}[{k!r}]", reader, refs, data) for k, v in items.items()}
    if kind == "tuple" and isinstance(items, list):
        return tuple(_build(v, f"{where}[{i}]", reader, refs, data) for i, v in enumerate(items))
    if kind == "array":
        return _array(node, where, reader, refs, data)
    if kind == "numpy" and node.get("dtype") in _SCALAR_DTYPES:
        return _scalar(node, where, reader)
    if kind == "complex" and _pair(node.get("value")):
        return complex(*node["value"])
    raise reader.error(f"{where} in its record is {node!r:.120}, expected a value xn.save writes")


def _array(node: dict[str, Any], where: str, reader: NpzReader, refs: dict[str, Any],
           data: dict[str, Any] | None) -> Any:
    name, shape, dtype = node.get("name"), node.get("shape"), node.get("dtype")
    if not isinstance(name, str) or not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise reader.error(f"{where} in its record is {node!r:.120}, expected an array's name, shape and dtype")
    try:
        found = np.dtype(dtype) if isinstance(dtype, str) and re.fullmatch(_ARRAY_DTYPE, dtype) else None
    except (TypeError, ValueError, OverflowError):  # a size NumPy cannot make
        found = None
    if found is None:
        raise reader.error(f"{where} in its record has dtype {dtype!r}, expected an array dtype of bool, a "
                           "number, str or bytes")
    ref = (tuple(shape), found)
    if data is not None:
        return data[name]
    if refs.setdefault(name, ref) != ref:
        raise reader.error(f"{where} in its record names array {name!r} with shape {ref[0]} and dtype {found}, "
                           f"another place with shape {refs[name][0]} and dtype {refs[name][1]}")
    reader.expect(name, *ref, needed_by=f"{where} in its record")
    return None


def _scalar(node: dict[str, Any], where: str, reader: NpzReader) -> Any:
    dtype, value = np.dtype(node["dtype"]), node.get("value")
    kind = dtype.kind
    fits = (type(value) is bool if kind == "b" else type(value) is int if kind in "iu" else
            type(value) in (int, float) if kind == "f" else _pair(value))
    if fits and kind in "iu":
        fits = np.iinfo(dtype).min <= value <= np.iinfo(dtype).max
    if fits and kind in "fc":  # what a save wrote fits its dtype; more would overflow to inf
        limit = float(np.finfo(dtype).max)
        fits = all(not math.isfinite(v) or abs(v) <= limit for v in (value if kind == "c" else [value]))
    if not fits:
        raise reader.error(f"{where} in its record is {node!r:.120}, expected a {dtype} value")
    return dtype.type(complex(*value) if kind == "c" else value)


def _pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(type(v) in (int, float) for v in value)
