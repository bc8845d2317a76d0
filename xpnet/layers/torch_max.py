"""``outputs = net(images)``, then ``_, predicted = np.max(outputs, 1)``, ``outputs.max(1)[1]`` or
``outputs.max(1)[0]``: PyTorch's ``torch.max(outputs, 1)`` spelt with NumPy's max, refused at the model's call.

``torch.max(x, dim)`` (and ``x.max(dim)``) gives ``(values, indices)``; NumPy's ``np.max(x, 1)`` and
``x.max(1)`` give the maxima alone, shape (N,). Unpacked into two names, they fail with Python's "too many
values to unpack (expected 2)", which names neither max nor argmax, and on a batch of two they unpack silently:
``predicted`` becomes the second sample's maximum, a float (the CIFAR-10 tutorial's test loop, the
transfer-learning tutorial's ``_, preds = torch.max(outputs, 1)``). Indexed, ``x.max(1)[1]`` (older PyTorch
code's indices, ``output.data.max(1)[1]``) is the second sample's maximum and ``x.max(1)[0]`` (the old DQN
tutorial's values, ``target_net(s).max(1)[0]``) the first's, a number that compares or broadcasts silently
against the N values meant; ``.indices`` and ``.values`` fail with NumPy's AttributeError alone. Nothing in the
array can tell, so the code calling the model is read, once per call line (a dict look-up after that): a line of
the same function, after the call, that takes the max of the name the call's result is assigned to in one of
those ways is refused, saying to write ``argmax`` or the max itself; the search ends where the name is bound again
(``outputs = torch_net(images)``: PyTorch's max of that is its own). On xpnet's PyTorch backend the output is a
tensor and its max PyTorch's (values, indices): left alone there.
"""

from __future__ import annotations

import linecache
import re
from typing import Any

__all__ = ["refuse_torch_max"]

_TARGET = re.compile(r"^\s*(\w+)\s*=[^=]")
_AXIS = r"(?:axis\s*=\s*|dim\s*=\s*)?(?P<{}>-?\d+)"
_NUMPY = r"(?:np|numpy|xp|cp|cupy)\.a?max"
# (code object, call line) -> the message for that call, or None
_CALLS: dict[tuple[Any, int], str | None] = {}


def refuse_torch_max(model: Any, frame: Any, xs: tuple[Any, ...]) -> None:
    """Raise where the function calling ``model`` at ``frame`` on inputs ``xs`` takes a NumPy max of the call's
    result as PyTorch's (values, indices) pair. On PyTorch's tensors (xpnet's torch backend) the output is a
    tensor, whose max is PyTorch's own: nothing to refuse there."""
    key = (frame.f_code, frame.f_lineno)
    try:
        message = _CALLS[key]
    except KeyError:  # the line's first call
        message = _CALLS[key] = _read(frame.f_code, frame.f_lineno)
    if message is not None and not (xs and type(xs[0]).__module__.startswith("torch")):
        raise ValueError(f"{model.name}(...) on line {key[1]}: {message}")


def _patterns(name: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(the unpacking statement, the indexed or attribute use) of a NumPy max of ``name``."""
    of = rf"{re.escape(name)}(?:\.data)?"
    maximum = (rf"(?:{_NUMPY}\(\s*{of}\s*,\s*{_AXIS.format('axis')}\s*\)"
               rf"|\b{of}\.max\(\s*{_AXIS.format('method_axis')}\s*\))")
    unpacked = re.compile(rf"^\s*\(?\s*\w+\s*,\s*(?P<second>\w+)\s*\)?\s*=\s*{maximum}\s*(?:#.*)?$")
    taken = re.compile(rf"{maximum}(?:\[\s*(?P<index>[01])\s*\]|\.(?P<field>values|indices)\b)")
    return unpacked, taken


_CHAINED = re.compile(rf"\)(?:\.data)?\.max\(\s*{_AXIS.format('method_axis')}\s*\)"
                      r"(?:\[\s*(?P<index>[01])\s*\]|\.(?P<field>values|indices)\b)")


def _read(code: Any, lineno: int) -> str | None:
    """What is wrong with the max of the result of the call on ``lineno`` of ``code``, or None."""
    line = linecache.getline(code.co_filename, lineno)
    found = _CHAINED.search(line)
    if found is not None:  # target_net(s).max(1)[0] on the call's own line
        return _taken(f"line {lineno}, `{line.strip()}`,", None, found)
    target = _TARGET.match(line)
    if target is None:
        return None
    name = target.group(1)
    unpacked, taken = _patterns(name)
    rebound = re.compile(rf"^\s*(?:for\s+)?\(?\s*(?:\w+\s*,\s*)*{re.escape(name)}\b\s*(?:,\s*\w+\s*)*\)?\s*"
                         r"(?:=[^=]|in\b)")
    last = max((line for _, _, line in code.co_lines() if line is not None), default=lineno)
    for n in range(lineno + 1, last + 1):
        line = linecache.getline(code.co_filename, n)
        if name not in line:
            continue
        if "max" in line:
            where = f"line {n}, `{line.strip()}`,"
            found = unpacked.match(line)
            if found is not None:
                axis, indices = found.group("axis") or found.group("method_axis"), found.group("second")
                return (f"{where} unpacks NumPy's max of {name} into two names, as torch.max({name}, {axis}) "
                        f"gives (values, indices); NumPy's max is the maxima alone, one per row, so the unpacking "
                        f"fails, and on a batch of 2 silently gives {indices} the second sample's maximum. Write "
                        f"{indices} = {name}.argmax({axis}) (and {name}.max({axis}) for the values)")
            found = taken.search(line)
            if found is not None:
                return _taken(where, name, found)
        if rebound.match(line):  # the name holds something else from here on (a torch model's output)
            return None
    return None


def _taken(where: str, name: str | None, found: re.Match[str]) -> str:
    """The message for ``[1]``/``.indices`` or ``[0]``/``.values`` taken of NumPy's max of ``name`` (None: of the
    call's output itself, on the call's line)."""
    axis = found.groupdict().get("axis") or found.group("method_axis")
    indices = found.group("index") == "1" or found.group("field") == "indices"
    part = (f"[{found.group('index')}]" if found.group("index") else f".{found.group('field')}")
    torch = f"torch.max({name}, {axis}){part}" if name else f"PyTorch's .max({axis}){part}"
    fix = "argmax" if indices else "max"
    write = f"{name}.{fix}({axis})" if name else f".{fix}({axis}) in place of .max({axis}){part}"
    if indices:
        return (f"{where} takes {part} of NumPy's max of {name or 'the output'}, as {torch} gives the indices; "
                f"NumPy's max is the maxima alone, one per row (its [1] the second sample's maximum, one number; "
                f".indices an AttributeError). Write {write}")
    return (f"{where} takes {part} of NumPy's max of {name or 'the output'}, as {torch} gives the values; NumPy's "
            f"max is the values already, one per row (its [0] the first sample's maximum, one number that "
            f"broadcasts silently; .values an AttributeError). Write {write}")
