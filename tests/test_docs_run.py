"""Every python block of README.md and docs/*.md runs as a newcomer would paste it, in a fresh namespace with a
temporary folder as the working directory, and prints what its markers say (docs_blocks.py lists the markers).
CUDA looks absent, so a ``device="cuda"`` block takes the CPU fallback it documents."""

import functools
import re

import numpy as np
import pytest

import xpnet as xn
from docs_blocks import DOCS, ROOT, python_blocks
from xpnet.datasets import mnist

BLOCKS = python_blocks()


def _chains(blocks):
    """The blocks in runs: a block marked "continue" joins the run of the file's block before it (skip-marked
    ones aside, each a run of its own that the test skips), so that one test runs them in order in one
    namespace, whichever pytest-xdist worker takes it (blocks run as separate tests could land on different
    workers, and a continued block then ran in what another block left)."""
    chains, last = [], {}
    for block in blocks:
        if any(kind == "skip" for kind, _ in block.markers):
            chains.append([block])
        elif any(kind == "continue" for kind, _ in block.markers) and block.path in last:
            last[block.path].append(block)
        else:
            chains.append([block])
            last[block.path] = chains[-1]
    return chains


CHAINS = _chains(BLOCKS)
_read = functools.cache(mnist._read_verified)


def _read_once(*args, **options):
    """An IDX file read (and hashed) once per session; each call gets its own copy."""
    return np.copy(_read(*args, **options))


FINDERS = {"load_fashion_mnist": lambda: xn.datasets.find_files("fashion-mnist", download=False),
           "load_ptb": lambda: xn.datasets.find_ptb(download=False)}


def _needs_data(code):
    """Skips where a block reads Fashion-MNIST or Penn Treebank and the files are not on the machine."""
    for call, find in FINDERS.items():
        try:
            if call in code:
                find()
        except xn.datasets.DatasetNotFoundError:
            pytest.skip(f"the block calls {call}, whose files are not on this machine (set XPNET_DATA)")


def test_every_python_block_is_listed():
    """A guard against a fence the parser misses: as many blocks as the files have ```python lines."""
    count = sum(p.read_text(encoding="utf-8").count("```python\n") for p in DOCS)
    assert len(BLOCKS) == count > 10


@pytest.mark.parametrize("chain", CHAINS, ids=[c[0].where + (f"+{len(c) - 1}" if len(c) > 1 else "") for c in CHAINS])
def test_the_blocks_run(chain, tmp_path, monkeypatch, capsys, no_cuda):
    skip = [why for kind, why in chain[0].markers if kind == "skip"]
    if skip:
        pytest.skip(f"{chain[0].where}: {skip[0].strip('()')}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.setattr(mnist, "_read_verified", _read_once)
    monkeypatch.setattr(xn.init, "_generator", np.random.default_rng(0))  # a fresh process: as import leaves it
    namespace = {"__name__": "__main__"}
    for block in chain:
        _run(block, namespace, capsys)


def _run(block, namespace, capsys):
    markers = block.markers
    code = block.code
    for kind, args in markers:
        if kind == "replace":
            assert args[0] in code, f"{block.where}: the marker's {args[0]!r} is no longer in the block"
            code = code.replace(*args)
    before = "\n".join(args[0] for kind, args in markers if kind == "before")
    _needs_data(before + code)
    capsys.readouterr()
    exec(compile(before, f"{block.where} (before)", "exec"), namespace)
    exec(compile(code, block.where, "exec"), namespace)
    out = capsys.readouterr().out
    for kind, args in markers:
        if kind == "prints":
            assert args[0] in out, f"{block.where} printed:\n{out}\nwhere its marker says {args[0]!r}"
        if kind == "matches":
            assert re.search(args[0], out, re.MULTILINE), f"{block.where} printed:\n{out}\nno line matching {args[0]!r}"
        if kind == "output":
            assert out.strip() == block.next.code.strip(), f"{block.where} printed:\n{out}\nnot {block.next.where}"
