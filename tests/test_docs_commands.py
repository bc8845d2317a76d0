"""The command lines, file paths and names of README.md and docs/*.md exist: each flag a documented command passes
is one its script's argparse accepts (read from the source, nothing run), each file named is in the repository,
and each ``xn.name`` is xpnet's or, where the docs name another library's spelling, refused with what to write."""

import ast
from functools import cache

import pytest

import xpnet as xn
from docs_blocks import DOCS, ROOT, commands, names, paths


@cache
def script_flags(script: str) -> frozenset[str]:
    """The ``--flags`` of every ``add_argument`` call in ``script``."""
    tree = ast.parse((ROOT / script).read_text(encoding="utf-8"))
    return frozenset(arg.value for call in ast.walk(tree)
                     if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "add_argument"
                     for arg in call.args
                     if isinstance(arg, ast.Constant) and str(arg.value).startswith("--")) | {"--help"}


@cache
def cli_flags(command: str) -> frozenset[str]:
    from xpnet.cli import parser

    ap = parser()
    if command not in ("train", "gradcheck"):
        return frozenset(ap._option_string_actions)
    return frozenset(ap._subparsers._group_actions[0].choices[command]._option_string_actions)


def problem(command: str) -> str | None:
    words = command.split()
    flags = [w.strip("[]").split("=")[0] for w in words if w.strip("[]").startswith("--")]
    if words[0] == "xpnet" or words[1] == "-m":
        rest = words[1:] if words[0] == "xpnet" else words[3:]
        sub = rest[0] if rest and not rest[0].startswith("-") else ""
        if sub not in ("", "train", "gradcheck"):
            return f"xpnet has no command {sub!r}"
        accepted, who = cli_flags(sub), f"xpnet {sub}".strip()
    else:
        script = words[1]
        if not (ROOT / script).is_file():
            return f"{script} does not exist"
        accepted, who = script_flags(script), script
    unknown = [f for f in flags if f not in accepted]
    return f"{who} takes no {', '.join(unknown)} (it takes {', '.join(sorted(accepted))})" if unknown else None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_documented_command_line_is_accepted(doc):
    found = commands(doc)
    assert found or doc.name != "README.md"
    wrong = [f"{doc.name}:{line}: {command}\n    {why}" for line, command in found if (why := problem(command))]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_file_the_docs_name_exists(doc):
    wrong = [f"{doc.name}:{line}: {name}" for line, name in paths(doc) if not (ROOT / name).exists()]
    assert not wrong, "no such file or folder:\n" + "\n".join(wrong)


def unresolved(dotted: str) -> str | None:
    """Why ``xn.<dotted>`` is not an xpnet name, or None; a refusal that says what to write counts as one."""
    obj = xn
    for part in dotted.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as e:
            hint = str(e).partition(f"has no attribute '{part}'")[2]
            return None if hint.strip(": ") else str(e)
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_xn_name_the_docs_use_exists_or_says_what_to_write(doc):
    found = names(doc)
    assert found or doc.name != "README.md"
    wrong = sorted({f"{doc.name}:{line}: xn.{name}: {why}" for line, name in found if (why := unresolved(name))})
    assert not wrong, "\n".join(wrong)
