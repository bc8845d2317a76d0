"""Counts that README.md states about the test suite, read from the suite: they drift as layers are added (README
said 91 public layer classes with a case in tests/test_every_layer_everywhere.py, and six on JAX, when there were
99 and 7)."""

import re

import test_every_layer_everywhere as every
from docs_blocks import ROOT


def test_readme_counts_the_cases_of_test_every_layer_everywhere():
    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    stated = re.search(r"one case for each of the (\d+) public layer classes.*?\(JAX: (\d+) of them", text)
    assert stated, "README.md no longer states the counts of tests/test_every_layer_everywhere.py (update this test)"
    assert (int(stated[1]), int(stated[2])) == (len(every.CASES), len(every.JAX_CASES)), (
        f"README.md says {stated[1]} layer cases, {stated[2]} on JAX; the test has {len(every.CASES)} and "
        f"{len(every.JAX_CASES)}")
