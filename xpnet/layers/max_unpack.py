"""``outputs = net(images)``, then ``_, predicted = np.max(outputs, 1)``: PyTorch's ``torch.max(outputs, 1)``,
spelt with NumPy's max, refused at the model's call.

``torch.max(x, dim)`` gives ``(values, indices)``; NumPy's ``np.max(x, 1)`` and ``x.max(1)`` give the maxima
alone, shape (N,). Unpacked into two names, they fail with Python's "too many values to unpack (expected 2)",
which names neither max nor argmax, and on a batch of two they unpack silently: ``predicted`` becomes the
second sample's maximum, a float, and the accuracy counted from it is wrong (the CIFAR-10 tutorial's test
loop, the transfer-learning tutorial's ``_, preds = torch.max(outputs, 1)``). Nothing in the array can tell,
so the code calling the model is read, once per call line (a dict look-up after that): a line of the same
function, after the call, that unpacks a NumPy max of the name the call's result is assigned to is refused, saying to write
``argmax``.
"""

from __future__ import annotations

import linecache
import re
from typing import Any

__all__ = ["refuse_max_unpack"]

_TARGET = re.compile(r"^\s*(\w+)\s*=[^=]")
_AXIS = r"(?:axis\s*=\s*|dim\s*=\s*)?-?\d+"
_UNPACKED_MAX = re.compile(
    r"^\s*\(?\s*(\w+)\s*,\s*(\w+)\s*\)?\s*=\s*(?:"
    rf"(?:np|numpy|xp|cp|cupy)\.a?max\(\s*(?P<a>[\w.]+?)(?:\.data)?\s*,\s*(?P<ax>{_AXIS})\s*\)"
    rf"|(?P<b>[\w.]+?)(?:\.data)?\.max\(\s*(?P<bx>{_AXIS})\s*\))\s*(?:#.*)?$")
# (code object, call line) -> the message for that call, or None
_CALLS: dict[tuple[Any, int], str | None] = {}


def refuse_max_unpack(model: Any, frame: Any) -> None:
    """Raise where the function calling ``model`` at ``frame`` unpacks a NumPy max of the call's result."""
    key = (frame.f_code, frame.f_lineno)
    try:
        message = _CALLS[key]
    except KeyError:  # the line's first call
        message = _CALLS[key] = _read(frame.f_code, frame.f_lineno)
    if message is not None:
        raise ValueError(f"{model.name}(...) on line {key[1]}: {message}")


def _read(code: Any, lineno: int) -> str | None:
    """What is wrong with the unpacking of the result of the call on ``lineno`` of ``code``, or None."""
    target = _TARGET.match(linecache.getline(code.co_filename, lineno))
    if target is None:
        return None
    name = target.group(1)
    last = max((line for _, _, line in code.co_lines() if line is not None), default=lineno)
    for n in range(lineno + 1, last + 1):
        line = linecache.getline(code.co_filename, n)
        found = _UNPACKED_MAX.match(line)
        if found is None or (found.group("a") or found.group("b")) != name:
            continue
        axis = found.group("ax") or found.group("bx")
        axis = axis.split("=")[-1].strip()
        indices = found.group(2)
        return (f"line {n}, `{line.strip()}`, unpacks NumPy's max of {name} into two names, as torch.max({name}, "
                f"{axis}) gives (values, indices); NumPy's max is the maxima alone, one per row, so the unpacking "
                f"fails, and on a batch of 2 silently gives {indices} the second sample's maximum. Write "
                f"{indices} = {name}.argmax({axis}) (and {name}.max({axis}) for the values)")
    return None
