"""Every python block of README.md and docs/*.md runs as a newcomer would paste it, in a fresh namespace with a
temporary folder as the working directory, and prints what its markers say (docs_blocks.py lists the markers).
CUDA looks absent, so a ``device="cuda"`` block takes the CPU fallback it documents."""

import functools

import numpy as np
import pytest

import xpnet as xn
from docs_blocks import DOCS, ROOT, python_blocks
from xpnet.datasets import mnist

BLOCKS = python_blocks()
_left: dict = {}  # (where, namespace) of the last block run of each file, for "continue"


def _runs_after() -> dict[str, str]:
    """The block each one follows in its file's run (blocks marked skip are not in it): under pytest-xdist that
    block may have run in another worker, where this worker's last block of the file is an earlier one."""
    after, last = {}, {}
    for b in BLOCKS:
        if b.path in last:
            after[b.where] = last[b.path]
        if not any(kind == "skip" for kind, _ in b.markers):
            last[b.path] = b.where
    return after


_AFTER = _runs_after()
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


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_the_block_runs(block, tmp_path, monkeypatch, capsys, no_cuda):
    markers = block.markers
    skip = [why for kind, why in markers if kind == "skip"]
    if skip:  # not part of the file's run: a block after it continues the one before
        pytest.skip(f"{block.where}: {skip[0].strip('()')}")
    left = _left.pop(block.path, None)
    code = block.code
    for kind, args in markers:
        if kind == "replace":
            assert args[0] in code, f"{block.where}: the marker's {args[0]!r} is no longer in the block"
            code = code.replace(*args)
    before = "\n".join(args[0] for kind, args in markers if kind == "before")
    _needs_data(before + code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.setattr(mnist, "_read_verified", _read_once)
    if any(kind == "continue" for kind, _ in markers):
        namespace = left[1] if left is not None and left[0] == _AFTER.get(block.where) else None
        if namespace is None:
            pytest.skip("the docs block continues one that did not run")
    else:  # a fresh process: the weights' generator as import leaves it
        namespace = {"__name__": "__main__"}
        monkeypatch.setattr(xn.init, "_generator", np.random.default_rng(0))
    exec(compile(before, f"{block.where} (before)", "exec"), namespace)
    exec(compile(code, block.where, "exec"), namespace)
    _left[block.path] = (block.where, namespace)
    out = capsys.readouterr().out
    for kind, args in markers:
        if kind == "prints":
            assert args[0] in out, f"{block.where} printed:\n{out}\nwhere its marker says {args[0]!r}"
        if kind == "output":
            assert out.strip() == block.next.code.strip(), f"{block.where} printed:\n{out}\nnot {block.next.where}"
