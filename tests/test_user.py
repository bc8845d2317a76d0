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


def _extra_requirements(extra):
    """The requirements of ``extra`` in the checkout's pyproject.toml (skips where xpnet is installed)."""
    path = os.path.join(ROOT, "pyproject.toml")
    if not os.path.exists(path):
        pytest.skip("xpnet is installed, not imported from a checkout")
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    requirements = pytest.importorskip("packaging.requirements")
    with open(path, "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    return [requirements.Requirement(r) for r in extras[extra]]


# platform_system and platform_machine as Python reports them (platform.system(), platform.machine()):
# 64-bit Windows calls its x86-64 machine "AMD64", Linux "x86_64".
PLATFORMS = {"linux-x86_64": ("Linux", "x86_64"), "windows-x86_64": ("Windows", "AMD64"),
             "macos-x86_64": ("Darwin", "x86_64"), "macos-arm64": ("Darwin", "arm64"),
             "linux-aarch64": ("Linux", "aarch64")}


@pytest.mark.parametrize("extra", ["mkl", "test"])
@pytest.mark.parametrize("platform,expected", [("linux-x86_64", True), ("windows-x86_64", True),
                                               ("macos-x86_64", False), ("macos-arm64", False),
                                               ("linux-aarch64", False)])
def test_the_mkl_extra_installs_mkl_on_x86_64_linux_and_windows(extra, platform, expected):
    """README, Quick start: "pip install -e '.[mkl]'  # + Intel MKL (x86-64 Linux, Windows)", and the test
    extra has it too. The marker compared platform_machine with "x86_64" only, which Windows never reports."""
    system, machine = PLATFORMS[platform]
    mkl = [r for r in _extra_requirements(extra) if r.name == "mkl"]
    assert len(mkl) == 1
    marker = mkl[0].marker
    assert (marker is None or marker.evaluate({"platform_system": system, "platform_machine": machine})) is expected


def test_warn_names_the_first_line_outside_xpnet():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _user.warn("from a test", RuntimeWarning)
    assert caught[0].filename == __file__ and caught[0].category is RuntimeWarning
