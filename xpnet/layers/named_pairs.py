"""``for name, layer in model.named_modules():``, PyTorch's loop over its generator of (name, module) pairs, refused
with what to write.

xpnet's ``named_modules()`` and ``named_children()`` are dicts by dotted name, so the loop unpacks each name: the
root's ``""`` failed with Python's "not enough values to unpack (expected 2, got 0)", a child named ``"conv1"`` with
"too many values to unpack", and one named with two letters (``self.fc``) gave ``name = "f"``, ``layer = "c"``,
silently. Iterating such a dict reads the loop's line (once per line, as :mod:`.parameter_flags` does): a ``for``
unpacking two names over ``X.named_modules()`` or ``X.named_children()`` (in a comprehension too) is refused, saying
``X.named_modules().items()``. Any other iteration (``list(d)``, ``for name in d``) and ``.items()``, ``.values()``,
``d[name]`` are a dict's, untouched.
"""

from __future__ import annotations

import linecache
import re
import sys
from typing import Iterator

__all__ = ["NamedDict"]

_PAIR_LOOP = re.compile(r"\bfor\s+\(?\s*(\w+)\s*,\s*(\w+)\s*\)?\s+in\s+(?:([\w.\[\]()]+?)\.)?"
                        r"(named_modules|named_children)\(\s*\)(?!\s*\.)")
_LINES: dict[tuple[str, int], str | None] = {}  # (file, line) -> the refusal, or None


class NamedDict(dict):
    """The dict of ``named_modules()`` and ``named_children()``: a dict, whose direct iteration in PyTorch's
    ``for name, layer in X.named_modules():`` is refused (see the module)."""

    __slots__ = ()

    def __iter__(self) -> Iterator[str]:
        frame = sys._getframe(1)
        key = (frame.f_code.co_filename, frame.f_lineno)
        refusal = _LINES.get(key, False)
        if refusal is False:
            refusal = _LINES[key] = _refusal(linecache.getline(*key))
        if refusal is not None:
            raise ValueError(refusal)
        return dict.__iter__(self)


def _refusal(line: str) -> str | None:
    found = _PAIR_LOOP.search(line)
    if found is None:
        return None
    name, layer, owner, method = found.groups()
    owner = owner or "model"
    return (f"for {name}, {layer} in {owner}.{method}(): xpnet's {method}() is a dict by dotted name, not PyTorch's "
            f"generator of (name, module) pairs, so this unpacks each name; write for {name}, {layer} in "
            f"{owner}.{method}().items()")
