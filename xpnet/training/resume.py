"""Resuming from a checkpoint read by :func:`xpnet.training.checkpoint.load_checkpoint`: how it goes.

1. :func:`apply_checkpoint` checks the checkpoint against the model, optimizer, seed and epochs passed to
   ``xn.train`` (architecture, dtype, optimizer type, each param group through the optimizer's constructor),
   then puts it in: the optimizer first, then the frozen layers, the weights, the Dropout generator states.
2. ``xn.train`` moves the model to its device, prepares the data, calls each callback's ``on_train_begin``,
   then :func:`restore_callbacks` gives each callback its saved state (a callback's ``load_state_dict``
   needs what ``on_train_begin`` set, so it cannot be tried before step 1).
3. :class:`BeforeResume`, entered around steps 1 and 2, puts back what step 1 replaced, and what a callback's
   ``on_train_begin`` changed in objects of the user's (an AveragedWeights' average, moved to the training
   device), where anything raises before the first epoch: a run refused after the checkpoint was put in leaves
   the model, the optimizer and the callbacks' objects as they were passed.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .._user import a_or_an, warn
from ..io.npz import XpnetFileError
from ..layers.tree import frozen_nodes
from ..models.files import CHECKPOINT_WHAT as _WHAT
from ..optim import Optimizer
from ..optim.base import hyperparam_differs  # a saved value against one set: a tuple saved comes back a list
from .checkpoint import layer_types, rng_states, set_rng_states

__all__ = ["apply_checkpoint", "restore_callbacks", "BeforeResume"]


def _first_difference(saved: dict[str, tuple[int, ...]], own: dict[str, tuple[int, ...]]) -> str:
    """Where a checkpoint's arrays and the model's part first (a missing name, or a shape), for the message."""
    for name in dict.fromkeys([*own, *saved]):  # in the model's order
        if saved.get(name) != own.get(name):
            mine = own.get(name, "no such array")
            return f" ({name!r}: {saved.get(name, 'absent')} in the file, {mine} in the model)"
    return " (its layer types differ)"


def apply_checkpoint(ckpt: dict[str, Any], model: Any, optimizer: Optimizer, seed: int, epochs: int,
                     keep: Iterable[str] = (), batches: dict[str, Any] | None = None) -> int:
    """Put a checkpoint read by :func:`load_checkpoint` into ``model`` and ``optimizer`` after checking
    it fits them; returns the completed epoch. The saved hyperparameters replace the optimizer's,
    with a warning naming those that change (except the names in ``keep``, e.g. ``lr`` when a
    LearningRateSchedule sets it anyway). ``batches``, this run's batch settings as
    :func:`save_checkpoint` takes them, are compared with the saved ones: a warning names each that
    differs (this run keeps its own)."""
    meta, path = ckpt["meta"], ckpt["path"]
    # Layer types and array shapes decide whether the weights fit; a Dropout seed may differ since
    # the generator state itself comes from the checkpoint.
    shapes = {k: tuple(v.shape) for k, v in ckpt["model"].items()}
    own = {k: tuple(v.shape) for k, v in model.state().items()}
    if ckpt["types"] != layer_types(model) or shapes != own:
        raise ValueError(f"resume_from: {path!r} was written for another architecture{_first_difference(shapes, own)}; "
                         f"build the model as it was: {meta.get('layers', meta.get('model'))}")
    dtypes = {np.dtype(str(v.dtype).rsplit(".", 1)[-1]) for v in model.state().values()}
    saved_dtypes = {v.dtype for v in ckpt["model"].values()}
    if dtypes != saved_dtypes:
        raise ValueError(f"resume_from: {path!r} holds {sorted(d.name for d in saved_dtypes)} weights, the model "
                         f"{sorted(d.name for d in dtypes)}; cast the model first (model.to(dtype=...))")
    if meta["seed"] != seed:
        raise ValueError(f"resume_from: {path!r} was trained with seed={meta['seed']}, got seed={seed}; "
                         f"pass seed={meta['seed']} to continue the same run")
    if meta["epoch"] > epochs:
        raise ValueError(f"resume_from: {path!r} has already {meta['epoch']} epochs, more than epochs={epochs}")
    opt = ckpt["optimizer"]
    if opt["type"] != optimizer.name:
        raise ValueError(f"resume_from: {path!r} holds the state of {a_or_an(str(opt['type']))} optimizer, got "
                         f"{optimizer.name}; pass {a_or_an(str(opt['type']))} to continue the same run")
    try:
        checked = type(optimizer)(**opt["hyperparams"]).hyperparams()
    except (TypeError, ValueError) as exc:
        raise XpnetFileError(f"{path!r} is not {_WHAT}: field 'optimizer.hyperparams' is invalid: {exc}") from None
    for i, group in enumerate(opt.get("param_groups", [])):  # each as its optimizer would refuse it, but here first
        field = f"field 'optimizer.param_groups[{i}]'"
        try:
            type(optimizer)(**{k: v for k, v in group.items() if k in checked})
        except (TypeError, ValueError) as exc:
            raise XpnetFileError(f"{path!r} is not {_WHAT}: {field} is invalid: {exc}") from None
        apart = [k for k, v in opt["hyperparams"].items() if i == 0 and k in group and hyperparam_differs(v, group[k])]
        if apart:
            raise XpnetFileError(f"{path!r} is not {_WHAT}: {field} differs from 'optimizer.hyperparams' in {apart}, "
                                 "which a save writes alike")
    saved_groups = len(opt.get("param_groups", [None]))
    if saved_groups != len(optimizer.param_groups):
        raise ValueError(f"resume_from: {path!r} holds the state of an optimizer of {saved_groups} param group(s), "
                         f"the {optimizer.name} passed to train has {len(optimizer.param_groups)}; build it with the "
                         "groups of the run checkpointed")
    saved_batches = meta.get("batches", {})
    other = [(k, saved_batches[k], v) for k, v in (batches or {}).items() if k in saved_batches
             and saved_batches[k] != v]
    if other:
        saved = ", ".join(f"{k}={old!r}" for k, old, _ in other)
        now = ", ".join(f"{k}={new!r}" for k, _, new in other)
        warn(f"resume_from: {path!r} was trained with {saved}, this run has {now}; it goes on with {now}, but "
             f"from epoch {meta['epoch'] + 1} its batches are not those of the run checkpointed: pass {saved} to "
             "continue the same run")
    changed = {k: (v, checked[k]) for k, v in optimizer.hyperparams().items()
               if k in checked and k not in keep and hyperparam_differs(v, checked[k])}
    for i, (group, saved) in enumerate(zip(optimizer.param_groups[1:], opt.get("param_groups", [])[1:]), 1):
        changed.update({f"param_groups[{i}] {k}": (v, saved[k]) for k, v in group.hyperparams().items()
                        if k in saved and k not in keep and hyperparam_differs(v, saved[k])})
    if changed:
        what = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
        warn(f"resume_from: the optimizer hyperparameters saved in {path!r} replace those of the "
             f"{optimizer.name} passed to train ({what}), as PyTorch's optimizer.load_state_dict does; "
             "change the learning rate of a resumed run with a LearningRateSchedule")
    frozen = ckpt.get("frozen", [])
    if frozen != frozen_nodes(model):
        warn(f"resume_from: the layers frozen in {path!r} ({', '.join(map(repr, frozen)) or 'none'}) replace those "
             f"frozen in the model ({', '.join(map(repr, frozen_nodes(model))) or 'none'}), so that the run goes on "
             "as it was; to train another part, start a new run from xn.load(path)")
    optimizer.load_state_dict({**opt, "hyperparams": checked})  # first: where it refuses, the model is untouched
    for name, node in model.named_modules().items():
        node._frozen = name in frozen
    for name, v in ckpt["model"].items():
        model.set_param(name, v)
    set_rng_states(model, meta["rng"])
    return int(meta["epoch"])


class BeforeResume:
    """A context manager around the setup of a resumed run: :meth:`take` keeps what :func:`apply_checkpoint` is
    about to replace in the model and optimizer (their arrays themselves: it puts in the checkpoint's, never
    writing into these) with the keys of its param groups, the Dropout generator states and the frozen layers;
    where the setup raises before :meth:`started` (a callback state that does not fit, found only after
    ``on_train_begin``; data or a callback refused), they are put back, the model on its device, so that a run
    refused before its first epoch leaves them as they were passed. A callback whose ``on_train_begin`` changes
    an object of the user's has a ``_before_run()`` giving the function that puts it back (AveragedWeights: its
    average), called here, last callback first."""

    def __init__(self) -> None:
        self.model: Any = None

    def take(self, model: Any, optimizer: Optimizer, callbacks: Iterable[Any] = ()) -> None:
        self.model, self.optimizer = model, optimizer
        self.state, self.device = dict(model.state()), model.device
        self.saved, self.group_keys = optimizer.state_dict(), [set(group) for group in optimizer.param_groups]
        self.rng, self.frozen = rng_states(model), frozen_nodes(model)
        self.callbacks = [cb._before_run() for cb in callbacks if hasattr(cb, "_before_run")]

    def started(self) -> None:
        self.model = None

    def __enter__(self) -> "BeforeResume":
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        model = self.model
        if exc is None or model is None:
            return
        for name, v in self.state.items():
            model.set_param(name, v)
        if self.device is not None:  # what xn.train's model.to(dev) moved besides (a recurrent layer's state)
            model.to(self.device)
        self.optimizer.load_state_dict(self.saved)
        for group, keys in zip(self.optimizer.param_groups, self.group_keys):
            for key in set(group) - keys:  # one a callback's on_train_begin added (LearningRateSchedule's initial_lr)
                del group[key]
        set_rng_states(model, self.rng)
        for name, node in model.named_modules().items():
            node._frozen = name in self.frozen
        for put_back in reversed(self.callbacks):
            put_back()


def restore_callbacks(ckpt: dict[str, Any], callbacks: Iterable[Any]) -> None:
    """Give each callback the state its counterpart saved: the k-th callback of a type gets the state
    of the k-th saved callback of that type (none saved: it keeps what ``on_train_begin`` found). A state
    that does not fit is an XpnetFileError naming the field, after the callbacks loaded so far got back the
    state they had (an LRScheduler's scheduler, an AveragedWeights' model are the user's). A callback of the
    user's whose own ``state_dict()`` its ``load_state_dict`` refuses cannot get it back: the error says so
    too, naming it, chained from what its load raised, and the others get theirs back all the same."""
    saved: dict[str, list[dict[str, Any]]] = {}
    for d in ckpt["callbacks"]:
        saved.setdefault(d["type"], []).append(d)
    loaded: list[tuple[Any, dict[str, Any]]] = []
    for cb in callbacks:
        queue = saved.get(type(cb).__name__)
        if queue:
            d = queue.pop(0)
            loaded.append((cb, cb.state_dict()))
            try:
                cb.load_state_dict(d["state"])
            except (TypeError, ValueError) as exc:
                unloaded = _put_back(loaded)
                message = f"{ckpt['path']!r} is not {_WHAT}: field 'callbacks[{d['index']}].state' does not fit " \
                          f"{type(cb).__name__}: {exc}"
                if unloaded:
                    message += "; " + "; ".join(
                        f"the {type(done).__name__} callback could not be given back the state it had before: its "
                        f"load_state_dict refused what its state_dict() gave ({type(e).__name__}: {e}), and it "
                        "keeps the state it was left in" for done, e in unloaded)
                raise XpnetFileError(message) from (unloaded[0][1] if unloaded else None)


def _put_back(loaded: list[tuple[Any, dict[str, Any]]]) -> list[tuple[Any, Exception]]:
    """Give each callback of ``loaded`` the state it had, last first; the (callback, what it raised) of those
    whose ``load_state_dict`` refused it, in their order."""
    refused = []
    for done, state in reversed(loaded):
        try:
            done.load_state_dict(state)
        except Exception as e:  # noqa: BLE001 - a callback of the user's: any error, reported with the file's
            refused.append((done, e))
    return refused[::-1]
