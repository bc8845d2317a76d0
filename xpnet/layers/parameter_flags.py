"""``for p in model.parameters(): p.requires_grad = False``, PyTorch's freezing, refused with what to write.

PyTorch freezes a parameter by its tensor's flag (the Mario tutorial's target network, the transfer-learning
tutorial's backbone). xpnet's arrays carry no such flag: freezing is per layer, ``layer.requires_grad_(False)``.
On NumPy the loop fails at its first array with ``'numpy.ndarray' object has no attribute 'requires_grad'``; on
xpnet's PyTorch backend the tensors take the attribute and nothing is frozen, silently. So iterating
``model.parameters()`` reads the loop's source (once per line): a ``for`` over ``X.parameters()`` whose body sets
``p.requires_grad`` (or calls ``p.requires_grad_``) is refused, saying ``X.requires_grad_(...)``. One that reads the
flag (the torchaudio tutorial's ``sum(p.numel() for p in model.parameters() if p.requires_grad)``, the finetuning
tutorial's ``if param.requires_grad == True: params_to_update.append(param)`` in a loop over ``parameters()``), in
a loop or a comprehension on one line, is refused too, saying ``X.trainable_params()``: on the PyTorch backend the
flag reads False for every array, and the count came out 0, the list empty. The tuning guide's ``for param in
model.parameters(): param.grad = None`` (PyTorch's zeroing without zero_grad) is refused alike, saying
``zero_grad()``: the gradients are the layers' own, so on the PyTorch backend the tensors took the attribute and
nothing was cleared.
"""

from __future__ import annotations

import linecache
import re
import sys
from typing import Any

__all__ = ["refuse_flag_loop"]

_FOR = re.compile(r"^(\s*)for\s+(\w+)\s+in\s+(?:(.*?)\.)?parameters\(\s*\)\s*:(.*)$")
_COMPREHENSION = re.compile(r"\bfor\s+(\w+)\s+in\s+(?:([\w.\[\]]+?)\.)?parameters\(\s*\)\s+if\b(.*)$")
# (file, line) -> (what parameters() is called on, the flag's value as written or None where it is read), or None
_LOOPS: dict[tuple[str, int], tuple[str, str | None] | None] = {}
_GRAD = "\0grad"  # the value of a loop setting p.grad (or zeroing it) instead of the flag


def _flag_set(line: str, var: str) -> str | None:
    """The value ``var.requires_grad`` is set to on ``line`` (``False``, ``True``...), else None."""
    found = re.search(rf"\b{var}\.requires_grad(?:\s*=(?!=)\s*(.+)|_\((.*)\))", line)
    if found is None:
        return None
    value = (found.group(1) if found.group(1) is not None else found.group(2)).strip().rstrip(";").strip()
    return value or "True"


def _flag_read(line: str, var: str) -> bool:
    """Whether ``line`` reads ``var.requires_grad`` (``if p.requires_grad``, ``p.requires_grad == True``)."""
    return re.search(rf"\b{var}\.requires_grad\b(?!_)(?!\s*=[^=])", line) is not None


def _loop(filename: str, lineno: int) -> tuple[str, str | None] | None:
    """(``X``, value) where line ``lineno`` opens ``for p in X.parameters():`` and its body sets p's flag; (``X``,
    None) where that body, or a comprehension's condition on the line, reads it."""
    lines = linecache.getlines(filename)
    line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    comprehension = _COMPREHENSION.search(line)
    if comprehension is not None and _flag_read(comprehension.group(3), comprehension.group(1)):
        return comprehension.group(2) or "model", None
    found = _FOR.match(line)
    if found is None:
        return None
    indent, var, owner, rest = found.groups()
    body = [rest] if rest.strip() else []
    for line in lines[lineno:]:
        if line.strip() and len(line) - len(line.lstrip()) <= len(indent):
            break
        body.append(line)
    for line in body:
        value = _flag_set(line, var)
        if value is not None:
            return owner or "model", value
        if re.search(rf"\b{var}\.grad(?:\s*=(?!=)|(?:\.data)?\.zero_\()", line):
            return owner or "model", _GRAD
    if any(_flag_read(line, var) for line in body):
        return owner or "model", None
    return None


def refuse_flag_loop() -> None:
    """Raise where the caller of ``Parameters.__iter__`` is a ``for`` loop setting each array's ``requires_grad``."""
    frame = sys._getframe(2)
    key = (frame.f_code.co_filename, frame.f_lineno)
    if key not in _LOOPS:
        _LOOPS[key] = _loop(*key)
    written = _LOOPS[key]
    if written is None:
        return
    owner, value = written
    if value is _GRAD:
        raise AttributeError(
            f"for p in {owner}.parameters(): p.grad = None: xpnet's arrays carry no .grad (a NumPy array takes no "
            "attribute; a PyTorch tensor would take it and nothing would be cleared): the gradients are the layers' "
            f"own ({owner}.named_grads()). Write {owner}.zero_grad() or optimizer.zero_grad() (set_to_none=True, the "
            "default: a parameter the next backward does not reach is left out of the step, as PyTorch's None)")
    if value is None:
        raise AttributeError(
            f"p.requires_grad over {owner}.parameters(): xpnet's arrays carry no requires_grad flag (a NumPy array "
            "has no such attribute; a PyTorch tensor's reads False for every one). Freezing is per layer: the "
            f"parameters that train are {owner}.trainable_params(), a dict by dotted name (count them with "
            f"sum(p.size for p in {owner}.trainable_params().values())); an optimizer given {owner} or "
            f"{owner}.parameters() steps those alone, leaving the frozen ones as they are")
    raise AttributeError(
        f"for p in {owner}.parameters(): p.requires_grad = {value}: xpnet's arrays carry no requires_grad flag "
        "(a NumPy array takes no attribute; a PyTorch tensor would take it and nothing would be frozen). Freezing is "
        f"per layer: write {owner}.requires_grad_({value}) (every parameter of it and of the layers inside; "
        "optimizers leave a frozen one as it is)")
