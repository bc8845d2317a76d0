"""Training checkpoints: everything a resumed run needs, in one ``.npz`` written atomically.

A checkpoint holds the model's params and buffers (``model/<name>``), the optimizer's state
(``optimizer/<param>/<slot>``), the callbacks' arrays (``callbacks/<i>/<key>/<name>``, e.g.
EarlyStopping's best weights) and one JSON record (``__xpnet_checkpoint__``) with the format
version, the architecture, the completed epoch, the seed, how the data was cut into batches
(``batch_size``, ``shuffle``, ``drop_last``), the optimizer's type, hyperparameters (each param group's, with
its keys of the user's own) and step count, the history, the Dropout generator states, the callbacks' state,
whether a callback stopped training, and the frozen layers (``requires_grad_(False)``; a resumed run freezes those,
with a warning where the model passed differs). The shuffle order is derived from ``(seed, epoch)`` and needs nothing.

Reading validates everything before anything is used (as ``Optimizer.step`` does): every field's
type, every array's header against the saved architecture (before its data), the optimizer's
hyperparameters through its own constructor. A problem gives an :class:`XpnetFileError` naming
the file and the field. Resuming (:mod:`xpnet.training.resume`) then checks the checkpoint against the
model, optimizer and seed the user passed: another architecture, optimizer type or seed is refused.

The saved optimizer hyperparameters replace those of the optimizer passed to ``xn.train``, as
PyTorch's ``optimizer.load_state_dict`` does (the run continues exactly as it would have); a
warning names each value that changes. Another ``batch_size``, ``shuffle`` or ``drop_last`` than the
checkpoint's is taken, with a warning naming each (the saved value and the new one): the run goes on,
but from its next epoch its batches are not those of the run checkpointed. Checkpoints written before
these were recorded resume without the check.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

import numpy as np

from .._user import a_or_an
from ..backend import set_rng_state, to_numpy
from ..io.atomic import atomic_savez
from ..io.npz import NpzReader
from ..layers.tree import frozen_nodes
from ..models.files import (CHECKPOINT_KEY as _CKPT_KEY, CHECKPOINT_WHAT as _WHAT, FORMATS, architecture,
                            check_format, model_from_architecture, stored_dtype)
from ..optim import Optimizer
from .callbacks import MONITORS
from .history import History

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "layer_types", "rng_states", "set_rng_states"]

CHECKPOINT_FORMAT = FORMATS  # the architecture's: 1 for a Sequential's list of layers, 2 for any model


def save_checkpoint(path: str | os.PathLike, model: Any, optimizer: Optimizer, *, epoch: int, seed: int,
                    history: History, callbacks: Iterable[Any] = (), batches: dict[str, Any] | None = None,
                    epoch_offset: int = 0) -> None:
    """Write everything a resumed run needs to ``path`` (.npz, atomic): params and buffers,
    architecture, optimizer state, completed ``epoch``, ``seed``, the history, the Dropout
    layers' generator states, each callback's ``state_dict()`` and ``batches``, the settings that cut
    the data into batches (``{"batch_size": 32, "shuffle": True, "drop_last": False}``), and ``epoch_offset``,
    the epochs earlier calls had trained the model for (the run's shuffles count on from it)."""
    arrays = {f"model/{k}": to_numpy(v) for k, v in model.state().items()}
    sd = optimizer.state_dict()
    for name, slots in sd["state"].items():
        for key, v in slots.items():
            arrays[f"optimizer/{name}/{key}"] = to_numpy(v)
    callbacks = list(callbacks)
    saved_callbacks = []
    for i, cb in enumerate(callbacks):
        state, stored = {}, []
        for key, value in cb.state_dict().items():
            if isinstance(value, dict) and value and all(hasattr(v, "shape") for v in value.values()):
                arrays.update({f"callbacks/{i}/{key}/{n}": to_numpy(v) for n, v in value.items()})
                stored.append(key)
            else:
                state[key] = value
        saved_callbacks.append({"type": type(cb).__name__, "state": state, "arrays": stored})
    meta = {**architecture(model), "epoch": int(epoch), "seed": int(seed), "epoch_offset": int(epoch_offset),
            "optimizer": {"type": sd["type"], "hyperparams": sd["hyperparams"], "t": sd["t"],
                          "skipped": sd.get("skipped", {}), "scalars": sd.get("scalars", {}),
                          **({"param_groups": sd["param_groups"]} if "param_groups" in sd else {})},
            "history": history.to_dict(), "rng": rng_states(model), "callbacks": saved_callbacks,
            "stopped": any(cb.stop_training for cb in callbacks)}
    if batches is not None:
        meta["batches"] = dict(batches)
    arrays[_CKPT_KEY] = np.asarray(json.dumps(_jsonable(meta, "")))
    atomic_savez(path, arrays)


def _jsonable(value: Any, where: str) -> Any:
    """``value`` with NumPy (or any backend's) scalars and 0-d arrays as Python numbers, as callbacks of the
    user's may put them in the logs or their state, or the user in a param group's own keys; anything else JSON
    cannot hold is a TypeError naming ``where`` it is (e.g. ``history.epochs[0].confusion``,
    ``optimizer.param_groups[1].tag``). A tuple comes back as a list, as JSON has no tuples."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {k: _jsonable(v, f"{where}.{k}" if isinstance(k, str) and k.isidentifier() else f"{where}[{k!r}]")
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        return _jsonable(value.item(), where)
    shape = f" of shape {tuple(value.shape)}" if hasattr(value, "shape") else ""
    raise TypeError(f"ModelCheckpoint(full=True): {where.lstrip('.')} is a {type(value).__name__}{shape}; a full "
                    "checkpoint keeps the history's logs, the callbacks' state_dict() and the keys of your own in "
                    "the optimizer's param groups as JSON: numbers (NumPy scalars too), strings, bools, None, lists "
                    "and dicts, and a state_dict's arrays as one entry {name: array}")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`save_checkpoint` into host arrays:
    ``{"path", "meta", "model": {name: array}, "optimizer": state_dict, "callbacks": [...]}``,
    each of ``callbacks`` ``{"type", "state"}`` with its arrays put back into ``state``."""
    with NpzReader(path, _WHAT, "resume_from") as reader:
        meta = reader.record(_CKPT_KEY)
        if meta is None:
            raise reader.error("it has no checkpoint record (a model saved with model.save or "
                               "ModelCheckpoint(full=False) loads with xn.load, it cannot be resumed)")
        check_format(reader, meta, "format", CHECKPOINT_FORMAT)
        field = _Fields(reader, meta)
        saved = model_from_architecture(reader, meta)
        epoch, seed = field.int("epoch"), field.int("seed")
        opt_type = field.get("optimizer.type", str)
        hyperparams = field.get("optimizer.hyperparams", dict)
        t = field.int("optimizer.t")
        skipped = field.get("optimizer.skipped", dict, default={})
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= t for v in skipped.values()):
            raise reader.error(f"field 'optimizer.skipped' is {skipped!r}, expected step counts from 0 to {t}")
        scalars = field.get("optimizer.scalars", dict, default={})  # none in checkpoints written before them
        groups = field.get("optimizer.param_groups", list, default=None)  # an optimizer of several groups
        if groups is not None and not all(isinstance(g, dict) for g in groups):
            raise reader.error(f"field 'optimizer.param_groups' is {groups!r:.80}, expected a list of objects")
        if not all(isinstance(s, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in s.values()) for s in scalars.values()):
            raise reader.error(f"field 'optimizer.scalars' is {scalars!r}, expected {{parameter: {{name: number}}}}")
        field.int("epoch_offset", default=0)  # none in checkpoints written before it
        epochs = field.get("history.epochs", list)
        for i, e in enumerate(epochs):
            if not isinstance(e, dict):
                raise reader.error(f"field 'history.epochs[{i}]' is {e!r}, expected a JSON object")
            for key in (*MONITORS, "lr", "seconds"):  # what the callbacks take up again, and xn.train's figures
                if not (e.get(key) is None or isinstance(e[key], (int, float)) and not isinstance(e[key], bool)):
                    raise reader.error(f"field 'history.epochs[{i}].{key}' is {e[key]!r}, expected a number or null")
        rng = field.get("rng", dict)
        for i, state in rng.items():
            _check_rng(reader, saved, i, state)
        saved_callbacks = field.get("callbacks", list, default=[])
        field.get("stopped", bool, default=False)
        _check_batches(reader, field.get("batches", dict, default={}))

        params, state = saved.named_params(), saved.state()
        names = set(reader.names) - {_CKPT_KEY}
        model_names = {f"model/{k}" for k in state}
        missing = model_names - names
        if missing:
            raise reader.error(f"arrays {sorted(missing)} of its architecture are missing")
        slots: dict[str, tuple[str, str]] = {}
        for n in names - model_names:
            kind, _, rest = n.partition("/")
            param, _, key = rest.rpartition("/")
            if kind == "optimizer" and param in params:
                slots[n] = (param, key)
            elif kind != "callbacks":
                raise reader.error(f"array {n!r} belongs to no parameter of its architecture")
        dtype = stored_dtype(reader, sorted(model_names))
        for n in model_names:  # every header before any data
            reader.expect(n, tuple(state[n[6:]].shape), dtype)
        for n, (param, _) in slots.items():
            reader.expect(n, tuple(params[param].shape), dtype, f"parameter {param!r}")
        callbacks = [_read_callback(reader, i, d, state, names, dtype) for i, d in enumerate(saved_callbacks)]

        model = {n[6:]: reader.array(n, tuple(state[n[6:]].shape), dtype) for n in model_names}
        opt_state: dict[str, dict[str, Any]] = {}
        for n, (param, key) in slots.items():
            opt_state.setdefault(param, {})[key] = reader.array(n, tuple(params[param].shape), dtype,
                                                                f"parameter {param!r}")
        for cb in callbacks:
            for key in cb.pop("arrays"):
                cb["state"][key] = {name: reader.array(f"callbacks/{cb['index']}/{key}/{name}",
                                                       tuple(state[name].shape), dtype)
                                    for name in cb["state"][key]}
    meta["epoch"], meta["seed"] = epoch, seed
    opt = {"type": opt_type, "hyperparams": hyperparams, "t": t, "skipped": skipped, "scalars": scalars,
           "state": opt_state, **({} if groups is None else {"param_groups": groups})}
    return {"path": os.fspath(path), "meta": meta, "model": model, "optimizer": opt, "callbacks": callbacks,
            "types": layer_types(saved), "frozen": frozen_nodes(saved)}


class _Fields:
    """Typed access to the checkpoint record by dotted field name; errors name the file and field."""

    def __init__(self, reader: NpzReader, meta: dict[str, Any]):
        self.reader, self.meta = reader, meta

    def get(self, name: str, kind: type, default: Any = ...) -> Any:
        value: Any = self.meta
        for part in name.split("."):
            if not isinstance(value, dict) or part not in value:
                if default is not ...:
                    return default
                raise self.reader.error(f"field {name!r} is missing")
            value = value[part]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.reader.error(f"field {name!r} is {value!r}, expected {a_or_an(kind.__name__)}")
        return value

    def int(self, name: str, default: Any = ...) -> int:
        value = self.get(name, int, default)
        if value < 0:
            raise self.reader.error(f"field {name!r} is {value}, expected an int >= 0")
        return value


_BATCH_SETTINGS = {"batch_size": int, "shuffle": bool, "drop_last": bool, "accumulate_grad_batches": int}


def _check_batches(reader: NpzReader, batches: dict[str, Any]) -> None:
    for key, value in batches.items():
        kind = _BATCH_SETTINGS.get(key)
        if kind is None:
            raise reader.error(f"field 'batches.{key}' is not one of {sorted(_BATCH_SETTINGS)}")
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 1)):
            expected = "an int >= 1" if kind is int else "true or false"
            raise reader.error(f"field 'batches.{key}' is {value!r}, expected {expected}")


def _check_rng(reader: NpzReader, saved: Any, index: str, state: Any) -> None:
    layer = saved.named_modules().get(index)
    if not isinstance(getattr(layer, "rng", None), np.random.Generator):
        raise reader.error(f"field 'rng.{index}' names no layer with a generator (Dropout) in its architecture")
    try:
        np.random.default_rng().bit_generator.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise reader.error(f"field 'rng.{index}' is not a generator state ({exc!r})") from None


def _read_callback(reader: NpzReader, i: int, d: Any, state: dict[str, Any], names: set[str],
                   dtype: Any) -> dict[str, Any]:
    """Callback ``i``'s record checked, with the names of its arrays (model states) in ``state``."""
    if not (isinstance(d, dict) and isinstance(d.get("type"), str) and isinstance(d.get("state"), dict)
            and isinstance(d.get("arrays"), list)):
        raise reader.error(f"field 'callbacks[{i}]' is {d!r}, expected {{'type', 'state', 'arrays'}}")
    cb_state = dict(d["state"])
    for key in d["arrays"]:
        prefix = f"callbacks/{i}/{key}/"
        found = {n[len(prefix):] for n in names if n.startswith(prefix)}
        if found != set(state):
            raise reader.error(f"arrays {prefix}* do not match the model: missing {sorted(set(state) - found)}, "
                               f"unexpected {sorted(found - set(state))}")
        for name in found:
            reader.expect(prefix + name, tuple(state[name].shape), dtype)
        cb_state[key] = sorted(found)
    return {"index": i, "type": d["type"], "state": cb_state, "arrays": list(d["arrays"])}


def _generators(model: Any) -> dict[str, np.random.Generator]:
    """The host generators of the model's layers (Dropout) by the layer's dotted name."""
    return {name: layer.rng for name, layer in model.named_modules().items()
            if isinstance(getattr(layer, "rng", None), np.random.Generator)}


def layer_types(model: Any) -> dict[str, str]:
    """Each layer's class name by dotted name: what decides, with the array shapes, whether weights fit."""
    return {name: type(layer).__name__ for name, layer in model.named_modules().items()}


def rng_states(model: Any) -> dict[str, Any]:
    return {i: rng.bit_generator.state for i, rng in _generators(model).items()}


def set_rng_states(model: Any, states: dict[str, Any] | None = None) -> None:
    """Rewind each Dropout generator to its saved state; ``None``: keep the host states and only have
    the device generators derived from them (CuPy, PyTorch's GPUs) seeded again from them at their next
    draw, so that each epoch draws from the host states a checkpoint holds, and a resumed run draws the
    same masks."""
    if states is None:
        states = dict.fromkeys(_generators(model))
    for i, state in states.items():
        set_rng_state(model.named_modules()[i].rng, state)
