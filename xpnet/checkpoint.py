"""Training checkpoints: everything a resumed run needs, in one ``.npz`` written atomically.

A checkpoint holds the model's params and buffers (``model/<name>``), the optimizer's state
(``optimizer/<param>/<slot>``) and one JSON record (``__xpnet_checkpoint__``) with the format
version, the architecture, the completed epoch, the seed, the history and the Dropout generator
states. The shuffle order is derived from ``(seed, epoch)`` and needs nothing saved.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .backend import set_rng_state, to_numpy
from .fileio import atomic_savez
from .history import History
from .optim import Optimizer

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "apply_checkpoint", "rng_states",
           "set_rng_states"]

_CKPT_KEY = "__xpnet_checkpoint__"
CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | os.PathLike, model: Any, optimizer: Optimizer, *, epoch: int, seed: int,
                    history: History) -> None:
    """Write everything a resumed run needs to ``path`` (.npz, atomic): params and buffers,
    architecture, optimizer state, completed ``epoch``, ``seed``, the history and the Dropout
    layers' generator states. The shuffle order is derived from (seed, epoch) and needs nothing."""
    arrays = {f"model/{k}": to_numpy(v) for k, v in model.state().items()}
    sd = optimizer.state_dict()
    for name, slots in sd["state"].items():
        for key, v in slots.items():
            arrays[f"optimizer/{name}/{key}"] = to_numpy(v)
    meta = {"format": CHECKPOINT_FORMAT, "layers": model.config(), "epoch": int(epoch), "seed": int(seed),
            "optimizer": {"type": sd["type"], "hyperparams": sd["hyperparams"], "t": sd["t"]},
            "history": history.to_dict(), "rng": rng_states(model)}
    arrays[_CKPT_KEY] = np.asarray(json.dumps(meta))
    atomic_savez(path, arrays)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` into host arrays:
    ``{"meta": ..., "model": {name: array}, "optimizer": state_dict}``."""
    path = os.fspath(path)
    with np.load(path, allow_pickle=False) as data:
        if _CKPT_KEY not in data.files:
            raise ValueError(f"resume_from: {path!r} is not an xpnet training checkpoint (write one with "
                             "xn.callbacks.ModelCheckpoint(path, full=True))")
        meta = json.loads(str(data[_CKPT_KEY]))
        model = {k[len("model/"):]: data[k] for k in data.files if k.startswith("model/")}
        state: dict[str, dict[str, Any]] = {}
        for k in data.files:
            if k.startswith("optimizer/"):
                name, key = k[len("optimizer/"):].rsplit("/", 1)
                state.setdefault(name, {})[key] = data[k]
    opt = {"type": meta["optimizer"]["type"], "hyperparams": meta["optimizer"]["hyperparams"],
           "t": meta["optimizer"]["t"], "state": state}
    return {"meta": meta, "model": model, "optimizer": opt}


def _generators(model: Any) -> dict[str, np.random.Generator]:
    """The host generators of the model's layers (Dropout) by layer index."""
    return {str(i): layer.rng for i, layer in enumerate(model.layers)
            if isinstance(getattr(layer, "rng", None), np.random.Generator)}


def rng_states(model: Any) -> dict[str, Any]:
    return {i: rng.bit_generator.state for i, rng in _generators(model).items()}


def set_rng_states(model: Any, states: dict[str, Any] | None = None) -> None:
    """Rewind each Dropout generator to its saved state; ``None``: keep the host states and only drop
    the device generators derived from them (CuPy), so that the next epoch derives fresh ones from
    the host states a checkpoint holds, and a resumed run draws the same masks."""
    if states is None:
        states = dict.fromkeys(_generators(model))
    for i, state in states.items():
        set_rng_state(model.layers[int(i)].rng, state)


def apply_checkpoint(ckpt: dict[str, Any], model: Any, optimizer: Optimizer, seed: int, epochs: int) -> int:
    meta = ckpt["meta"]
    # Layer types and array shapes decide whether the weights fit; a Dropout seed may differ since
    # the generator state itself comes from the checkpoint.
    saved = [d["type"] for d in meta["layers"]]
    shapes = {k: tuple(v.shape) for k, v in ckpt["model"].items()}
    if saved != [d["type"] for d in model.config()] or shapes != {k: tuple(v.shape) for k, v in model.state().items()}:
        raise ValueError("resume_from: the checkpoint was written for another architecture; build the model "
                         f"as it was: {meta['layers']}")
    if meta["seed"] != seed:
        raise ValueError(f"resume_from: the checkpoint was trained with seed={meta['seed']}, got seed={seed}; "
                         f"pass seed={meta['seed']} to continue the same run")
    if meta["epoch"] > epochs:
        raise ValueError(f"resume_from: the checkpoint has already {meta['epoch']} epochs, more than "
                         f"epochs={epochs}")
    for name, v in ckpt["model"].items():
        model.set_param(name, v)
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_states(model, meta["rng"])
    return int(meta["epoch"])
