"""A param group's keys of the user's own, PyTorch's ``{'params': enc.parameters(), 'name': 'encoder'}``.

PyTorch's optimizer keeps every key of a group dict that it does not know, and so does xpnet: such a key is
read and set in ``optimizer.param_groups[i]``, the step ignores it, ``state_dict()`` carries it and
``load_state_dict()`` restores it. A misspelt hyperparameter would then do nothing, silently, so two kinds of
keys are refused: a string close to one of this optimizer's keys (``'weight_decy'``, ``'LR'``,
``'learning_rate'``; a name made from one, as ``'weight_decay_mult'`` or ``'base_lr'``, is the user's own), and
a hyperparameter of another xpnet optimizer (``'betas'`` given to SGD, ``'momentum'`` to Adam), which surely
means a wrong guess of the optimizer's keys. A key must be a string (it names a column of the saved record).
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import Any

__all__ = ["check_own_key"]

# What other libraries call a hyperparameter that PyTorch names otherwise.
_ALIASES = {"learning_rate": "lr", "lr_rate": "lr", "epsilon": "eps"}


def check_own_key(optimizer: Any, key: Any, where: str) -> None:
    """Refuse ``key`` as a key of the user's own in a group of ``optimizer`` (one not among its keys) where it is
    not a string, is close to one of its keys, or is another xpnet optimizer's hyperparameter; ``where`` names
    the group (``"SGD: param group 1"``)."""
    name = type(optimizer).__name__
    if not isinstance(key, str):
        raise TypeError(f"{where} has the key {key!r} of type {type(key).__name__}; the keys of a group are strings")
    ours = [*optimizer.hyperparams(), *optimizer.PYTORCH_ONLY, "initial_lr"]
    meant = _close(key, ours)
    if meant is not None:
        raise KeyError(f"{where} has the key {key!r}, not one of {name}'s; did you mean {meant!r}? (keys of your "
                       "own, as PyTorch's 'name', are kept as given, unless as close to a hyperparameter as this one)")
    takers = [other for other, keys in _keys_of_each().items() if key in keys and other != name]
    if takers:
        listed = ", ".join(map(repr, optimizer.hyperparams()))
        raise KeyError(f"{where} has the key {key!r}, not one of {name}'s ({listed}); it is a hyperparameter of "
                       f"{', '.join(takers)}: build that optimizer to use it")


def _close(key: str, ours: list[str]) -> str | None:
    """The key of ``ours`` that ``key`` misspells, if any."""
    plain = key.lower().replace("-", "_")
    named = {**{a: k for a, k in _ALIASES.items() if k in ours}, **{k: k for k in ours}}
    if plain in named:
        return named[plain]
    # A name made from one, as 'weight_decay_mult' or 'base_lr', is the user's own unless nearly another's
    # ('inital_lr' ends with '_lr', and misspells 'initial_lr').
    made = any(len(plain) > len(n) + 1 and (plain.startswith(n + "_") or plain.endswith("_" + n)) for n in named)
    found = difflib.get_close_matches(plain, list(named), n=1, cutoff=0.9 if made else 0.8)
    return named[found[0]] if found else None


@cache
def _keys_of_each() -> dict[str, frozenset[str]]:
    """The keys of a group of each of xpnet's optimizers (its hyperparameters and PyTorch's keys it fixes)."""
    from . import LBFGS, OPTIMIZERS  # the optimizers are built on this package's base: known once it is imported
    return {cls.__name__: frozenset([*cls().hyperparams(), *cls.PYTORCH_ONLY])
            for cls in [*OPTIMIZERS.values(), LBFGS]}
