"""Meeting the user: a warning at the line of their code that caused it, an install command that works
from their setup (a source checkout or an installed package), what counts as a number, a flag or a
seed they pass, and the missing name or keyword that says what to write instead."""

from __future__ import annotations

import difflib
import functools
import inspect
import numbers
import os
import sys
import warnings
from typing import Any, Callable

import numpy as np

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str | Warning, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside xpnet (Python 3.12's skip_file_prefixes)."""
    level, frame = 2, sys._getframe(1)  # stacklevel 1 is this function, 2 its caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)


def a_or_an(name: str) -> str:
    """``name`` with its article as read aloud: "an Adam", "an SGD", "an RMSprop", "a Momentum", "a Nesterov" (a
    vowel, or an initialism's letter that sounds like one: F, H, L, M, N, R, S, X)."""
    initialism = name[:2].isupper() and name[:1] in "FHLMNRSX"
    return f"{'an' if name[:1].upper() in 'AEIOU' or initialism else 'a'} {name}"


def install_hint(extra: str) -> str:
    """The pip command that adds ``extra`` (e.g. ``"plot"``), quoted for zsh.

    In a source checkout (xpnet imported from a folder with xpnet's pyproject.toml) it is
    ``pip install -e '.[plot]'`` from the checkout's root, else the root's path in place of ``.``;
    an installed xpnet gets ``pip install 'xpnet[plot]'``."""
    root = os.path.dirname(os.path.dirname(_PACKAGE))
    try:
        with open(os.path.join(root, "pyproject.toml"), encoding="utf-8") as f:
            checkout = 'name = "xpnet"' in f.read()
    except OSError:
        checkout = False
    if not checkout:
        return f"pip install 'xpnet[{extra}]'"
    where = "." if os.path.abspath(os.getcwd()) == root else root
    return f"pip install -e '{where}[{extra}]'"


def is_real(value: Any) -> bool:
    """A real number as a user passes it: a Python int/float or a NumPy scalar such as
    ``np.float32(0.1)``; never a bool (NumPy's bool is not a ``numbers.Real`` either)."""
    kind = type(value)
    if kind is float or kind is int:  # the common case, without the ABC's check (a loss's backward asks each step)
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    """A whole number as a user passes it: a Python int or a NumPy integer, never a bool or a float."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_bool(value: Any) -> bool:
    """True or False as a user passes them: a Python or NumPy bool."""
    return isinstance(value, (bool, np.bool_))


def flag(value: Any, who: str, arg: str) -> bool:
    """``value`` as a bool; anything but True or False (``"no"``, ``"False"``, 0, None) raises a
    TypeError naming ``who`` and ``arg``: a string flag used to be taken as True."""
    if is_bool(value):
        return bool(value)
    raise TypeError(f"{who}: {arg} must be True or False, got {value!r}")


def did_you_mean(value: Any, names: Any, meaning: Any = None) -> str:
    """``"; did you mean 'x'?"`` for a string ``value`` close to one of ``names`` (a misspelt name), else ``""``;
    ``meaning`` (a dict) gives what to suggest for a name (another library's name -> ours)."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value.lower(), [str(n) for n in names], n=1, cutoff=0.6)
    return f"; did you mean {(meaning or {}).get(close[0], close[0])!r}?" if close else ""


def seed(value: Any, who: str, arg: str = "seed", optional: bool = False) -> int | None:
    """``value`` as an int >= 0 (NumPy's generators take no other seed); None where ``optional``.
    Raises a ValueError naming ``who`` and ``arg``."""
    if value is None and optional:
        return None
    if not is_int(value) or value < 0:
        raise ValueError(f"{who}: {arg} must be an int >= 0{' or None' if optional else ''}, got {value!r}")
    return int(value)


def not_here(owner: str, name: str, hints: dict[str, str], kind: str = "module") -> AttributeError | ImportError:
    """The AttributeError for ``owner.name`` (``kind``: "module" or "object"), Python's own message, with
    what to write in xpnet instead where ``name`` is one that a PyTorch user reaches for (``hints``).

    Called by a module's ``__getattr__`` for ``from owner import name``, a hint comes as an ImportError:
    Python replaces an AttributeError there by its own "cannot import name", which would lose the hint;
    ``hasattr`` and ``getattr(..., default)`` still get the AttributeError they expect."""
    hint = hints.get(name)
    if hint and kind == "module" and _importing_from(sys._getframe(2)):
        return ImportError(f"cannot import name {name!r} from {owner!r}: {hint}", name=owner)
    where = f"module {owner!r}" if kind == "module" else f"{owner!r} object"
    return AttributeError(f"{where} has no attribute {name!r}" + (f": {hint}" if hint else ""))


def keyword_hints(who: str, hints: dict[str, str]) -> Callable[[Callable], Callable]:
    """Wrap a function so that a keyword it does not take, where ``hints`` knows it (Keras' ``verbose``,
    PyTorch Lightning's ``max_epochs``), raises Python's TypeError with what to write instead; any other
    call goes to the function as it is (``help()`` still shows its own signature)."""
    def wrap(fn: Callable) -> Callable:
        taken = set(inspect.signature(fn).parameters)

        @functools.wraps(fn)
        def hinted(*args: Any, **kwargs: Any) -> Any:
            for name in kwargs:
                if name not in taken and name in hints:
                    raise TypeError(f"{who}() got an unexpected keyword argument {name!r}: {hints[name]}")
            return fn(*args, **kwargs)

        return hinted

    return wrap


def _importing_from(frame: Any) -> bool:
    """Whether ``frame`` is running a ``from ... import`` (its current instruction is IMPORT_FROM; CPython)."""
    try:
        import dis  # noqa: PLC0415 - only for the rare missing name

        return dis.opname[frame.f_code.co_code[frame.f_lasti]] == "IMPORT_FROM"
    except (AttributeError, IndexError, TypeError):
        return False
