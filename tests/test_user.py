"""xpnet._user: warnings attributed to the user's line, install hints that work from where the user is."""

import os
import warnings

import pytest

from xpnet import _user

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(_user.__file__)))


def test_install_hint_in_a_checkout_from_its_root_and_from_elsewhere(monkeypatch, tmp_path):
    if not os.path.exists(os.path.join(ROOT, "pyproject.toml")):
        pytest.skip("xpnet is installed, not imported from a checkout")
    monkeypatch.chdir(ROOT)
    assert _user.install_hint("plot") == "pip install -e '.[plot]'"
    monkeypatch.chdir(tmp_path)
    assert _user.install_hint("plot") == f"pip install -e '{ROOT}[plot]'"


def test_install_hint_for_an_installed_package(monkeypatch, tmp_path):
    package = tmp_path / "site-packages" / "xpnet"
    package.mkdir(parents=True)
    monkeypatch.setattr(_user, "_PACKAGE", str(package) + os.sep)
    assert _user.install_hint("mpi") == "pip install 'xpnet[mpi]'"


def test_warn_names_the_first_line_outside_xpnet():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _user.warn("from a test", RuntimeWarning)
    assert caught[0].filename == __file__ and caught[0].category is RuntimeWarning
