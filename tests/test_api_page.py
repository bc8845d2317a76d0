"""docs/api.md, the page of every public name, is what docs/make_api.py writes now, every name on it has a docstring
whose first sentence says what it is, and the PyTorch names it gives are PyTorch's."""

import importlib
import importlib.util
import re

import pytest

from docs_blocks import ROOT

TORCH_REASON = "torch is not installed (pip install -e '.[backends]')"


def _make_api():
    spec = importlib.util.spec_from_file_location("make_api", ROOT / "docs" / "make_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_api = _make_api()


def test_the_page_is_current_and_every_name_says_what_it_is():
    text, findings = make_api.page()
    assert not findings, "\n".join(findings)
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert page == text, f"docs/api.md is stale: run {make_api.COMMAND}"


def test_a_name_without_a_docstring_is_found():
    def undocumented(x):
        pass

    _, finding = make_api.entry("xpnet.layers", "Undocumented", undocumented, {})
    assert "no docstring" in finding
    assert "shapes alone" in make_api.says_nothing_in("Dropout", "x: (N, ...) -> y: (N, ...).")
    assert make_api.says_nothing_in("Linear", "Fully connected layer.") is None


def _resolve(dotted):
    """The object at ``dotted`` (``torch.nn.utils.rnn.PackedSequence``), importing modules on the way."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[:i]))
    return obj


def test_the_pytorch_names_are_pytorchs():
    pytest.importorskip("torch", reason=TORCH_REASON)
    names = [re.sub(r"\(.*\)$", "", name) for names in make_api.PYTORCH.values() for name in names.split(" or ")]
    missing = []
    for name in names:
        if name.startswith("torchvision.") and importlib.util.find_spec("torchvision") is None:
            continue
        try:
            _resolve(name)
        except (AttributeError, ImportError):
            missing.append(name)
    assert not missing, f"docs/make_api.py's PYTORCH names what PyTorch does not have: {missing}"
