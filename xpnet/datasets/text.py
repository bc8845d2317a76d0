"""Text as ids: vocabularies in order of first appearance (the book's way), and a corpus every machine has.

``python_docs()`` is the text for a character-level language model on a fresh machine without the
internet: the English reference documentation that CPython ships in its standard library
(``pydoc_data.topics``, what ``help("assert")`` prints; about 460,000 characters in Python 3.11: the
language reference's chapters on statements, expressions, the data model...). It was chosen over a
Debian package such as ``fortunes`` because every Python that runs xpnet already has it (CPython,
Debian's ``libpython3.x-stdlib``, conda), with no root and no package manager, and it is prose, which a
character model learns better than source code. It differs a little between Python versions: note the
version beside a figure (``sys.version``).
"""

from __future__ import annotations

import importlib
from typing import Any, Hashable, Iterable

import numpy as np

from .mnist import DatasetNotFoundError

__all__ = ["vocabulary", "encode", "char_ids", "python_docs"]


def vocabulary(tokens: Iterable[Hashable]) -> tuple[dict, dict]:
    """``(token_to_id, id_to_token)`` with ids in order of first appearance (the book's
    ``_update_vocab`` and ``ptb.load_vocab``)."""
    token_to_id: dict = {}
    for token in _iterable(tokens, "vocabulary", "tokens"):
        if token not in token_to_id:
            token_to_id[token] = len(token_to_id)
    return token_to_id, {i: token for token, i in token_to_id.items()}


def encode(tokens: Iterable[Hashable], token_to_id: dict) -> np.ndarray:
    """The ids of ``tokens`` as an int64 array; a token outside the vocabulary is a KeyError naming it."""
    try:
        return np.array([token_to_id[token] for token in tokens], dtype=np.int64)
    except KeyError as e:
        raise KeyError(f"token {e.args[0]!r} is not in the vocabulary") from None


def char_ids(text: str) -> tuple[np.ndarray, dict[str, int], dict[int, str]]:
    """``(ids, char_to_id, id_to_char)``: each character of ``text`` as an int64 id, ids in order of first
    appearance. ``"".join(id_to_char[i] for i in ids) == text``."""
    char_to_id, id_to_char = vocabulary(_iterable(text, "char_ids", "text"))
    return encode(text, char_to_id), char_to_id, id_to_char


def _iterable(tokens: Any, who: str, arg: str) -> Any:
    """``tokens``, after checking it can be iterated (None failed with "'NoneType' object is not iterable")."""
    if not hasattr(tokens, "__iter__"):
        raise TypeError(f"{who}: {arg} must be a str or an iterable of tokens (a list of words), got "
                        f"{type(tokens).__name__}")
    return tokens


def python_docs() -> str:
    """The reference documentation of the running Python (``pydoc_data.topics``), topics in sorted
    order separated by blank lines; see the module docstring for why this text. Raises
    DatasetNotFoundError on a Python built without it."""
    try:
        topics = importlib.import_module("pydoc_data.topics").topics
    except ImportError as e:
        raise DatasetNotFoundError("python_docs: this Python has no pydoc_data (its reference documentation); "
                                "install the full standard library (Debian: libpython3-stdlib) or pass "
                                "your own text to xn.datasets.char_ids") from e
    return "\n\n".join(topics[name].strip("\n") for name in sorted(topics)) + "\n"
