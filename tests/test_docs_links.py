"""Every relative link of README.md and docs/*.md resolves: the file it names exists, and its ``#anchor`` is a
heading of that file by GitHub's rule (lower case, punctuation dropped, spaces to '-', a repeat gets -1, -2...)."""

import re
from functools import cache
from pathlib import Path

import pytest

from docs_blocks import DOCS, ROOT

FENCED = re.compile(r"^\s*```.*?^\s*```", flags=re.DOTALL | re.MULTILINE)
CODE = re.compile(FENCED.pattern + r"|`[^`\n]+`", flags=re.DOTALL | re.MULTILINE)
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)")


def _without_code(text: str, code: re.Pattern = CODE) -> str:
    """The text with fenced blocks and inline code blanked, lines kept, so that ``x[i](y)`` is no link."""
    return code.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    found, seen = set(), {}
    for m in re.finditer(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", _without_code(path.read_text(encoding="utf-8"), FENCED),
                         re.MULTILINE):
        base = slug(m.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def test_slug_follows_github():
    assert slug("On a GPU: what has run and what has not") == "on-a-gpu-what-has-run-and-what-has-not"
    assert slug("`pytorch/examples`, ported") == "pytorchexamples-ported"
    assert slug("RNN, LSTM, GRU") == "rnn-lstm-gru"
    assert slug("Intel MKL (`xpnet[mkl]`)") == "intel-mkl-xpnetmkl"


def links(path: Path) -> list[tuple[int, str]]:
    text = _without_code(path.read_text(encoding="utf-8"))
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in LINK.finditer(text)]


def problem(doc: Path, target: str) -> str | None:
    if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not this repository's
        return None
    file, _, anchor = target.partition("#")
    where = (doc.parent / file).resolve() if file else doc
    if not where.exists():
        return f"no such file: {where.relative_to(ROOT) if where.is_relative_to(ROOT) else where}"
    if anchor and where.suffix == ".md" and anchor not in anchors(where):
        return f"no heading of {where.relative_to(ROOT)} has the anchor #{anchor}"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(doc):
    found = links(doc)
    assert found or doc.name != "README.md"
    wrong = [f"{doc.relative_to(ROOT)}:{line}: {target}: {why}"
             for line, target in found if (why := problem(doc, target))]
    assert not wrong, "\n".join(wrong)
