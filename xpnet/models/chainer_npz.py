"""Chainer's ``serializers.save_npz`` files into xpnet models: ``xn.load_chainer_npz``.

What Chainer writes (chainer/serializers/npz.py, chainer/link.py): ``numpy.savez_compressed`` of one flat
dict; a link's keys are its path from the saved object joined with "/" (a Chain's children by attribute
name, a ChainList's by index among its links, ``L.Classifier``'s model under ``predictor/``), then the
parameter's name; a parameter never initialised (``L.Linear(None, 100)`` saved before a forward) is
``numpy.asarray(None)``, a pickled object. How a load goes:

1. The file is opened with xpnet's :class:`~xpnet.io.npz.NpzReader` (no pickle is ever read); only the
   ``.npy`` headers are read until everything has been checked.
2. Each node of the xpnet model has its Chainer path: an ``xn.Model``'s attribute names, and for an
   ``xn.Sequential`` (or a list of layers) the index among the layers that hold arrays, since Chainer's
   functions (``F.relu``) are no links and take no index. :data:`CHAINER_NAMES` says, per xpnet layer
   type, which Chainer array each parameter and buffer is and in what layout; a layer of your own keeps
   its names, a layer of xpnet's that is not listed is refused.
3. Every problem is gathered (a key missing, one left over with ``strict=True``, a misshapen array, a None,
   an array of no numbers), naming the xpnet layer and Chainer's key; one ValueError lists them all
   before anything changes.
4. The arrays are read, converted and given to ``model.load_state_dict``, which casts and moves them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io.npz import NpzReader
from ..layers import LSTM, BatchNorm, Conv2d, ConvTranspose2d, Embedding, Linear
from ..layers.tree import IncompatibleKeys
from .torch_names import node_described

__all__ = ["CHAINER_GATES", "CHAINER_NAMES", "load_chainer_npz", "lstm_from_chainer"]

# xpnet layer type -> {xpnet parameter or buffer: (Chainer's key under the link, how)}: how "" the same
# array, "T" transposed, "lstm" / "lstm.T" Chainer's gate interleaving (transposed) made xpnet's blocks.
CHAINER_NAMES: dict[type, dict[str, tuple[str, str]]] = {
    Linear: {"W": ("W", "T"), "b": ("b", "")},  # L.Linear's W is (out, in)
    Conv2d: {"W": ("W", ""), "b": ("b", "")},  # L.Convolution2D's W (out, in // groups, kh, kw)
    ConvTranspose2d: {"W": ("W", ""), "b": ("b", "")},  # L.Deconvolution2D's W (in, out // groups, kh, kw)
    # avg_var is the unbiased variance (F.batch_normalization's adjust = m / (m - 1)), as running_var;
    # N counts the batches of finetune=True, the cumulative average of momentum=None's num_batches_tracked.
    BatchNorm: {"gamma": ("gamma", ""), "beta": ("beta", ""), "running_mean": ("avg_mean", ""),
                "running_var": ("avg_var", ""), "num_batches_tracked": ("N", "")},
    Embedding: {"W": ("W", "")},  # L.EmbedID's W (in_size, out_size)
    # L.LSTM: upward = Linear(in, 4H), lateral = Linear(H, 4H, nobias=True)
    LSTM: {"Wx": ("upward/W", "lstm.T"), "Wh": ("lateral/W", "lstm.T"), "b": ("upward/b", "lstm")},
}

# F.lstm's _extract_gates reads its (N, 4H) input as (N, H, 4): unit j's gates a, i, f, o side by side
# (a the tanh input, PyTorch's g). xpnet's block k (i, f, g, o) is Chainer's gate CHAINER_GATES[k].
CHAINER_GATES = (1, 2, 0, 3)


def lstm_from_chainer(a: np.ndarray) -> np.ndarray:
    """An array whose last axis (4H) is in Chainer's per-unit order (a, i, f, o of unit 0, then unit 1...)
    with that axis in xpnet's gate blocks (i, f, g, o), each H wide."""
    units = a.reshape(*a.shape[:-1], a.shape[-1] // 4, 4)[..., list(CHAINER_GATES)]
    return np.ascontiguousarray(np.swapaxes(units, -1, -2).reshape(a.shape))


def _names(node: Any) -> dict[str, tuple[str, str]]:
    table = next((CHAINER_NAMES[cls] for cls in type(node).__mro__ if cls in CHAINER_NAMES), {})
    return {name: table.get(name, (name, "")) for name in (*node.params, *node.buffers)}


def _refusal(node: Any) -> str | None:
    """Why no Chainer link fits this node, or None."""
    if isinstance(node, BatchNorm) and node.convention == "book":
        return ("Chainer's avg_var is the unbiased variance, as the PyTorch convention's running_var (the book's "
                "takes the biased one): build BatchNorm(C, eps=2e-5) (Chainer's eps; momentum=1 - decay)")
    if isinstance(node, LSTM) and getattr(node, "convention", "book") == "pytorch":
        return ("Chainer's L.LSTM holds one bias (upward/b; lateral has none): build LSTM(..., convention='book') "
                "(the default), whose b it is")
    ours = type(node).__module__.startswith("xpnet.")
    if ours and (node.params or node.buffers) and not any(c in CHAINER_NAMES for c in type(node).__mro__):
        return (f"xn.load_chainer_npz maps no Chainer link onto xpnet's {type(node).__name__} (it reads Linear, "
                "Conv2d, ConvTranspose2d, BatchNorm, Embedding, LSTM)")
    return None


def _chainer_paths(modules: dict[str, Any], prefix: str) -> dict[str, str]:
    """Each node's Chainer path (ending in "/"), from its dotted name: Sequential indices count only the
    layers that hold arrays (Chainer's links)."""
    paths = {"": prefix}
    for dotted, node in modules.items():
        children = node.named_children()
        numbered = bool(children) and all(name.isdigit() for name in children)
        links = 0
        for name, child in children.items():
            key = name
            if numbered:
                key = str(links)
                links += bool(child.named_params() or child.named_buffers())
            paths.setdefault(f"{dotted}.{name}" if dotted else name, f"{paths[dotted]}{key}/")
    return paths


def load_chainer_npz(file: Any, model: Any, path: str = "", strict: bool = True) -> IncompatibleKeys:
    """Load a file of Chainer's ``serializers.save_npz(file, link)`` into the xpnet ``model`` whose attributes
    bear the Chain's names (``serializers.load_npz(file, model, path=..., strict=...)``, Chainer's arguments).
    ``path`` is the key prefix: ``"predictor/"`` for a model saved inside ``L.Classifier``; keys outside it are
    not read (as Chainer's).

    Layouts are converted per layer type (:data:`CHAINER_NAMES`): Linear's ``W = W.T``, BatchNorm's
    ``running_var = avg_var`` (both unbiased), LSTM's ``Wx = upward/W.T`` with Chainer's interleaved gates
    put in xpnet's blocks. Everything is checked before anything changes: a ValueError names each layer and
    key. ``strict=False`` allows missing keys and keys left over (returned, by Chainer's names); a misshapen
    array never is. Chainer's eps is not in the file: build ``BatchNorm(C, eps=2e-5)`` for its default. ``file``
    may be a binary file object that reads and seeks (``io.BytesIO``), as Chainer's, read from its position.
    Example::

        model = MLP(784, 100, 10)    # an xn.Model with attributes l1, l2, l3 as Chainer's
        xn.load_chainer_npz("result/model.npz", model, path="predictor/")
    """
    prefix = path.strip("/") + "/" if path.strip("/") else ""
    with NpzReader(file, "an npz file (written by chainer.serializers.save_npz)", "xn.load_chainer_npz",
                   file_objects=True) as reader:
        headers = {k: reader.header(k, objects=True) for k in reader.names if k.startswith(prefix)}
        plan, missing, problems = _plan(model, headers, prefix, strict)
        unexpected = [k for k in headers if k not in {key for key, _, _ in plan.values()}]
        if strict:
            problems = _hints(reader.names, headers, prefix, model) + problems + _unexpected(unexpected, model, prefix)
        if any("has shape" in p for p in problems):
            problems += _sequential_hint(model)
        if problems:
            raise ValueError(f"xn.load_chainer_npz: {reader.source} does not fit the xpnet {model.name}:\n  "
                             + "\n  ".join(problems))
        converted = {name: _convert(_read(reader, key, headers[key]), how)
                     for name, (key, how, keep) in plan.items() if keep}
    model.load_state_dict(converted, strict=strict)
    return IncompatibleKeys(missing, [] if strict else unexpected)


def _plan(model: Any, headers: dict[str, tuple], prefix: str,
          strict: bool) -> tuple[dict[str, tuple[str, str, bool]], list[str], list[str]]:
    """{xpnet dotted name: (Chainer's key, how, whether it is loaded)}, the missing keys and the problems."""
    modules = model.named_modules()
    paths = _chainer_paths(modules, prefix)
    plan: dict[str, tuple[str, str, bool]] = {}
    missing: list[str] = []
    problems: list[str] = []
    for dotted, node in modules.items():
        dot, where = f"{dotted}." if dotted else "", node_described(dotted, node)
        refusal = _refusal(node)
        if refusal is not None:
            problems.append(f"{where}: {refusal}")
            continue
        own = {**node.params, **node.buffers}
        for name, (chainer, how) in _names(node).items():
            key = paths[dotted] + chainer
            if key not in headers:
                missing.append(key)
                if strict:
                    problems.append(f"{where}: Chainer's {key!r} is not in the file (for its {name})")
                continue
            shape, dtype = headers[key]
            want = tuple(int(d) for d in own[name].shape)
            want = want[::-1] if how.endswith("T") else want
            if dtype.hasobject:
                problems.append(f"{where}: Chainer's {key!r} is None, a parameter never initialised (a link built "
                                "with a size of None and saved before its first forward): there is nothing to load; "
                                "in Chainer, run one forward (or give the size) before save_npz")
            elif dtype.kind not in ("iu" if chainer == "N" else "") + "f":
                problems.append(f"{where}: Chainer's {key!r} is an array of {dtype}, expected floats (for its {name})")
            elif shape != want:
                problems.append(f"{where}: Chainer's {key!r} has shape {shape}, expected {want} (for its {name} "
                                f"{tuple(own[name].shape)}{' transposed' if how.endswith('T') else ''})")
            else:
                plan[dot + name] = (key, how, True)
        if isinstance(node, BatchNorm) and "num_batches_tracked" not in own and paths[dotted] + "N" in headers:
            plan[dot + "N"] = (paths[dotted] + "N", "", False)  # Chainer's finetune count, unused here
    return plan, missing, problems


def _read(reader: NpzReader, key: str, header: tuple) -> np.ndarray:
    shape, dtype = header
    return reader.array(key, shape, dtype.newbyteorder("="), needed_by="the xpnet model")


def _convert(a: np.ndarray, how: str) -> np.ndarray:
    a = a.T if how.endswith("T") else a
    # np.asarray, as np.ascontiguousarray would make BatchNormalization's 0-d N 1-d
    return lstm_from_chainer(a) if how.startswith("lstm") else np.asarray(a, order="C")


def _unexpected(keys: list[str], model: Any, prefix: str) -> list[str]:
    """Why each key left over has no place in the model, and what that place takes: one line per reason."""
    modules = model.named_modules()
    nodes = sorted(((path, dotted) for dotted, path in _chainer_paths(modules, prefix).items()),
                   key=lambda p: -len(p[0]))
    by_reason: dict[str, list[str]] = {}
    for key in keys:
        path, dotted = next((p, d) for p, d in nodes if key.startswith(p))
        names = _names(modules[dotted]).values()
        first = key[len(path):].partition("/")[0]
        if "/" in key[len(path):] and not any(chainer.startswith(first + "/") for chainer, _ in names):
            why = f"the xpnet model has no layer at Chainer's {path + first + '/'!r}"
        else:
            takes = [path + chainer for chainer, _ in names]
            why = f"{node_described(dotted, modules[dotted])} takes {', '.join(map(repr, takes)) or 'no arrays'}"
        by_reason.setdefault(why, []).append(key)
    return [f"Chainer's {', '.join(map(repr, group))} left over: {why}" for why, group in by_reason.items()]


def _sequential_hint(model: Any) -> list[str]:
    """chainer.Sequential numbers three or more links out of order: a misshapen array may be that."""
    lines = []
    for dotted, node in model.named_modules().items():
        children = node.named_children()
        links = [c for c in children.values() if c.named_params() or c.named_buffers()]
        if len(links) >= 3 and all(name.isdigit() for name in children):
            lines.append(f"if {node_described(dotted, node)} was a chainer.Sequential, its file numbers the links 0 "
                         "for the first, then from the last backwards (chainer/sequential.py's insert puts each "
                         "appended link second): rename its keys in order first (docs/from-chainer.md)")
    return lines


def _hints(names: list[str], headers: dict[str, tuple], prefix: str, model: Any) -> list[str]:
    """What a whole file that does not fit most likely is: the model saved under another path."""
    if not names:
        return []
    if not headers:
        return [f"no key starts with path={prefix!r} (the file's keys start {names[0]!r})"]
    firsts = {k[len(prefix):].partition("/")[0] for k in headers}
    if len(firsts) == 1 and all("/" in k[len(prefix):] for k in headers):
        first = firsts.pop()
        if first not in model.named_children():
            return [(f"every key starts with {prefix + first + '/'!r} (L.Classifier saves its model under "
                     f"'predictor/'): pass path={prefix + first + '/'!r}")]
    return []
