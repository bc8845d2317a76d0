"""Checks that every rank holds the same inputs: what a rank describes locally, and how the
descriptions gathered from all ranks are compared (each differing value named with its ranks)."""

from __future__ import annotations

import contextlib
import hashlib
import numbers
from typing import Any

import numpy as np

from ..backend import to_numpy

_CHUNK_BYTES = 1 << 24  # data are hashed this much at a time: no copy of the whole set
_MOST_NAMED = 3  # differences named in one message, the rest counted (a layer inserted shifts every later one)


def describe_data(pair: Any) -> dict[str, Any] | None:
    """Samples, shapes, dtypes and a digest of every byte of x and of y, for ``pair = (x, y)``; a
    data object with a ``rank_record()`` (a TokenStream: its ids and the batches it cuts) by that record,
    each array in it digested; None for None. Never raises: what cannot be read is described as such
    (``train`` then says why)."""
    if pair is None:
        return None
    if callable(getattr(pair, "rank_record", None)):
        return describe_record(pair)
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        return {"type": type(pair).__name__}
    if isinstance(pair[0], tuple):  # a model with several inputs: each described with y
        info = {}
        for i, x in enumerate(pair[0]):
            for k, v in (describe_data((x, pair[1])) or {}).items():
                info[k.replace("x ", f"x[{i}] ", 1) if k.startswith("x ") else k if k.startswith(("samples", "y "))
                     else f"{k} of x[{i}]"] = v
        return info
    try:
        x, y = (a if hasattr(a, "shape") else np.asarray(a) for a in pair)
        shapes = tuple(int(d) for d in x.shape), tuple(int(d) for d in y.shape)
        n, n_y = (shape[0] if shape else None for shape in shapes)
        info = {"samples": n if n == n_y else f"{n} (y: {n_y})", "x row shape": shapes[0][1:],
                "y row shape": shapes[1][1:], "x dtype": str(x.dtype), "y dtype": str(y.dtype)}
        info["x content"], info["y content"] = digest(x), digest(y)
    except Exception as exc:  # noqa: BLE001 - a description, not a check: train names the problem
        return {"unreadable": type(exc).__name__}
    return info


def describe_record(data: Any) -> dict[str, Any]:
    """``data.rank_record()`` with each array in it replaced by its digest (a TokenStream: what defines
    its batches, ``xpnet.datasets.TokenStream.rank_record``)."""
    try:
        return {k: digest(v) if hasattr(v, "shape") else v for k, v in data.rank_record().items()}
    except Exception as exc:  # noqa: BLE001 - a description, not a check
        return {"type": type(data).__name__, "unreadable": type(exc).__name__}


def digest(a: Any) -> str:
    """A SHA-256 of every byte of ``a`` in C order (12 hex digits), read on the host a chunk of rows at
    a time (no copy of the whole array)."""
    h = hashlib.sha256()
    if a.ndim == 0:
        h.update(np.ascontiguousarray(to_numpy(a)).tobytes())
        return h.hexdigest()[:12]
    n = int(a.shape[0])
    row_bytes = int(getattr(a.dtype, "itemsize", 8))
    for d in a.shape[1:]:
        row_bytes *= int(d)
    step = max(1, _CHUNK_BYTES // max(row_bytes, 1))
    for start in range(0, n, step):
        chunk = np.ascontiguousarray(to_numpy(a[start:min(start + step, n), ...]))
        h.update(chunk.reshape(-1).view(np.uint8))
    return h.hexdigest()[:12]


def describe_settings(obj: Any) -> dict[str, Any]:
    """The type and settings of an optimizer or loss (``hyperparams()``, else its public plain
    attributes), or of a model (:func:`describe_model`), comparable across ranks; the string a rank
    passed stays a string. An optimizer: also the count of its param groups and each later group's
    hyperparameters (``param_groups[1] lr``; the first group's are the optimizer's own)."""
    if isinstance(obj, str):
        return {"passed as": repr(obj)}
    if callable(getattr(obj, "named_modules", None)):
        return describe_model(obj)
    hyperparams = getattr(obj, "hyperparams", None)
    settings = hyperparams() if callable(hyperparams) else _plain_settings(obj)
    info = {"type": type(obj).__name__, **{k: plain(v) for k, v in settings.items()}}
    groups = getattr(obj, "param_groups", None)  # an xpnet optimizer's (optim sits above this unit: no import)
    if isinstance(groups, list) and all(callable(getattr(g, "hyperparams", None)) for g in groups):
        info["param groups"] = len(groups)
        for i, group in enumerate(groups[1:], 1):
            info.update({f"param_groups[{i}] {k}": plain(v) for k, v in group.hyperparams().items()})
    return info


def describe_model(model: Any) -> dict[str, Any]:
    """Every node of the model tree by dotted name (``layer 1``, ``layer stage1.0.conv1``): a leaf as
    ``repr`` shows it (type and constructor arguments), a layer made of layers (``xn.Model``,
    ``Sequential``, ``Residual``) by its type and public plain attributes; the model's own
    attributes under ``settings``. Sequential and composite models, nested either way, alike."""
    info: dict[str, Any] = {"type": type(model).__name__}
    for name, node in model.named_modules().items():
        if name:
            info[f"layer {name}"] = _describe_node(node)
        elif _plain_settings(node):
            info["settings"] = _describe_node(node)
    return info


def _describe_node(node: Any) -> str:
    """A leaf as ``repr`` shows it; a layer made of layers (or a leaf whose ``config()`` fails) by its
    type and public plain attributes."""
    if not node.named_children():
        with contextlib.suppress(Exception):
            return repr(node)
    settings = ", ".join(f"{k}={plain(v)!r}" for k, v in _plain_settings(node).items())
    return f"{type(node).__name__}({settings})"


def _plain_settings(obj: Any) -> dict[str, Any]:
    """The public attributes of ``obj`` that are numbers, strings, bools or None (or lists of them)."""
    return {k: v for k, v in sorted(vars(obj).items())
            if not k.startswith("_") and k != "training" and _is_setting(v)}


def describe_weights(model: Any) -> dict[str, str] | None:
    """``{"parameter '0.W'": digest, "buffer '1.running_mean'": digest, ...}``: a SHA-256 of every byte
    of each parameter and buffer (read on the host), None where the model cannot be read."""
    try:
        return {**{f"parameter {k!r}": digest(v) for k, v in model.named_params().items()},
                **{f"buffer {k!r}": digest(v) for k, v in model.named_buffers().items()}}
    except Exception:  # noqa: BLE001 - a description, not a check: the call itself names the problem
        return None


def first_weight_difference(per_rank: list[dict[str, str] | None]) -> str | None:
    """``"parameter '0.W' differs (rank 0: 1a2b.., rank 1: 3c4d..)"``, the first parameter or buffer
    (in rank 0's order) whose digest is not the same on every rank, and how many more differ; None
    when all agree (or some rank's weights could not be read: the call then fails on its own)."""
    if any(d is None for d in per_rank) or all(d == per_rank[0] for d in per_rank):
        return None
    names = list(dict.fromkeys(k for d in per_rank for k in d))
    differ = [k for k in names if any(d.get(k) != per_rank[0].get(k) for d in per_rank)]
    if not differ:
        return None
    more = f", and {len(differ) - 1} more" if len(differ) > 1 else ""
    return f"{differ[0]} differs ({by_rank([d.get(differ[0], '(none)') for d in per_rank])}){more}"


def _is_setting(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_is_setting(v) for v in value)
    return value is None or isinstance(value, (str, bool, numbers.Number))


def plain(value: Any) -> Any:
    """A scalar argument as a Python value that compares equal across ranks (np.int64(3) -> 3)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return repr(value)


def differences(subject: str, per_rank: list[Any]) -> list[str]:
    """``["<subject> across ranks: <key> rank 0: a, rank 1: b; ..."]`` naming each key whose value is
    not the same on every rank (``per_rank``: one dict, or None, per rank; ``subject``: "train data
    differs"), or ``[]`` when all agree."""
    if all(d == per_rank[0] for d in per_rank):
        return []
    dicts = [d if isinstance(d, dict) else {"given": "yes" if d is not None else "no"} for d in per_rank]
    types = [d.get("type") for d in dicts]
    if all(t is not None for t in types) and any(t != types[0] for t in types):  # the rest follows
        return [f"{subject} across ranks: type {by_rank(types)}"]
    keys = list(dicts[0])
    if any(d.keys() != dicts[0].keys() for d in dicts):
        if all(t is not None for t in types):  # one kind with other parts (a model with more layers)
            keys += [k for d in dicts[1:] for k in d if k not in keys]
            keys = list(dict.fromkeys(keys))
            dicts = [{k: d.get(k, "(none)") for k in keys} for d in dicts]
        else:  # not passed, or not readable, on some rank
            keys = sorted({k for d in dicts for k in d})
            dicts = [{"passed as": ", ".join(f"{k}={d[k]}" for k in keys if k in d)} for d in dicts]
            keys = ["passed as"]
    parts = []
    for key in keys:
        values = [d[key] for d in dicts]
        if key.endswith("content") and parts:
            continue  # follows from the differences already named
        if any(v != values[0] for v in values):
            parts.append(f"{key} {by_rank(values)}")
    if len(parts) > _MOST_NAMED:
        parts = parts[:_MOST_NAMED] + [f"and {len(parts) - _MOST_NAMED} more"]
    return [f"{subject} across ranks: " + "; ".join(parts)]


def by_rank(values: list[Any]) -> str:
    """``"rank 0: 1000, rank 1: 995"``; equal values grouped (``"ranks 0-2, 4: 1000, rank 3: 995"``)."""
    groups: dict[str, list[int]] = {}
    for rank, v in enumerate(values):
        groups.setdefault(str(v), []).append(rank)
    if len(groups) == len(values):
        return ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
    return ", ".join(f"{'ranks' if len(rs) > 1 else 'rank'} {_ranges(rs)}: {v}" for v, rs in groups.items())


def _ranges(ranks: list[int]) -> str:
    spans: list[list[int]] = []
    for r in ranks:
        if spans and spans[-1][1] == r - 1:
            spans[-1][1] = r
        else:
            spans.append([r, r])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def agree(comm: Any, problem: str | None) -> str | None:
    """The first rank's problem (None where no rank has one), the same on every rank (collective).

    For a check that can fail on some ranks only (rank 0 checking an output folder): every rank
    learns the outcome and can stop together instead of waiting for a rank that left.
    """
    for rank, p in enumerate(comm.allgather_object(problem)):
        if p is not None:
            return p if rank == comm.rank or comm.size == 1 else f"rank {rank}: {p}"
    return None
