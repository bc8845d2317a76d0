"""README.md and docs/*.md as the docs tests read them: fenced blocks, the markers above them, command lines.

A marker is an HTML comment just above a block's opening fence (GitHub does not show it), one per line:

    <!-- docs-test: skip (why) -->            not run; the skip gives the reason
    <!-- docs-test: continue -->              runs in what the file's previous block left (skip-marked ones aside)
    <!-- docs-test: before "code" -->         runs first: what the prose around a fragment supplies
    <!-- docs-test: replace "old" "new" -->   fewer epochs or samples; "old" must be in the block
    <!-- docs-test: prints "text" -->         the block's output holds this text
    <!-- docs-test: matches "regex" -->       a line of the block's output matches this (re.search): for figures
                                              that depend on the running Python (its own text as data)
    <!-- docs-test: output -->                the block prints exactly the next fenced block (its output)

Quoted strings are Python string literals ("\\n" is a new line). Any other python block runs as it is.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
MARKER = re.compile(r"^\s*<!-- docs-test: (\w+)(.*?) -->\s*$")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
KINDS = {"skip", "continue", "before", "replace", "prints", "matches", "output"}


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    markers: list[tuple[str, str | list[str]]] = field(default_factory=list)
    next: Block | None = None  # the fenced block after this one

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _marker(line: str, where: str) -> tuple[str, str | list[str]] | None:
    found = MARKER.match(line)
    if found is None:
        return None
    kind, rest = found.groups()
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown docs-test marker {kind!r} (one of {sorted(KINDS)})")
    return kind, rest.strip() if kind == "skip" else [ast.literal_eval(s) for s in STRING.findall(rest)]


def blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``, with its markers in the order written."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, end = opening.group(1), i + 1
        while not re.match(r"^\s*```\s*$", lines[end]):
            end += 1
        block = Block(path, i + 1, opening.group(2), "\n".join(line[len(indent):] for line in lines[i + 1:end]))
        above = i - 1
        while above >= 0 and (marker := _marker(lines[above], f"{path.name}:{above + 1}")) is not None:
            block.markers.insert(0, marker)
            above -= 1
        if found:
            found[-1].next = block
        found.append(block)
        i = end + 1
    return found


def python_blocks() -> list[Block]:
    return [b for path in DOCS for b in blocks(path) if b.lang == "python"]


def prose(path: Path) -> str:
    """The text outside python blocks, shell and output blocks kept: where command lines are."""
    text = path.read_text(encoding="utf-8")
    return re.sub(r"```python\n.*?```", lambda m: "\n" * m.group().count("\n"), text, flags=re.DOTALL)


COMMAND = re.compile(r"(?:python3? (?:-m xpnet|(?:examples|benchmarks)/\w+\.py)"
                     r"|(?<![\w/.:-])xpnet (?=--|train --|gradcheck))"
                     r"[^`#\n;|&>\\]*(?:\\\n[^`#\n;|&>\\]*)*")


def commands(path: Path) -> list[tuple[int, str]]:
    """(line, command) of each ``python examples/x.py ...``, ``python benchmarks/x.py ...``, ``python -m xpnet
    ...`` or ``xpnet ...`` in ``path``: in shell and output blocks, and in inline code (which may wrap a line)."""
    text = prose(path)
    found = []
    for span in SPANS.finditer(text):
        code = span.group() if span.group().startswith("```") else span.group().replace("\n", " ")
        for command in COMMAND.finditer(code):
            line = text.count("\n", 0, span.start() + command.start()) + 1
            found.append((line, " ".join(command.group().replace("\\\n", " ").split())))
    return found


# lowercase: not "xpnet/NumPy"
PATH = re.compile(r"(?<![\w/.-])((?:examples|benchmarks|ci|docs|tests|xpnet)/[a-z_][\w./-]*\w)")
SPANS = re.compile(r"```\w*\n.*?```|`[^`]+`|\]\([^)]+\)", flags=re.DOTALL)
ELSEWHERE = re.compile(r"(Chainer|PyTorch|Keras|the book)'s $")  # a path in another project's repository


def paths(path: Path) -> list[tuple[int, str]]:
    """(line, path) of each repository file or folder named in the code and links of ``path`` (examples/...)."""
    text = prose(path)
    return [(text.count("\n", 0, span.start()) + 1, m.group(1)) for span in SPANS.finditer(text)
            if not ELSEWHERE.search(text[max(0, span.start() - 20):span.start()])
            for m in PATH.finditer(span.group())]


def names(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of each ``xn.name.name`` in ``path``, code and prose alike."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1))
            for m in re.finditer(r"(?<![\w.])xn\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)", text)]
