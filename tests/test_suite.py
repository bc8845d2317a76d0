"""The suite's own output: what the README's test command prints stays short."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A plugin that makes CuPy, PyTorch and JAX look uninstalled, as on a machine without the extras.
ABSENT = '''
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("cupy", "torch", "jax", "jaxlib"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _Absent())
'''


def test_skipped_tests_are_summed_by_reason(tmp_path):
    (tmp_path / "absent_backends.py").write_text(ABSENT)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path), env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "absent_backends", "-p", "no:cacheprovider",
                          "tests/test_optim.py", "tests/test_layers.py",  # the NumPy/strict cases of the
                          "-k", "(torch or jax or cupy) and not numpy and not strict"],  # *_pytorch tests run: left out
                         capture_output=True, text=True, env=env, cwd=ROOT).stdout
    lines = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    reasons = [line.split(": ", 1)[1] for line in lines]
    counts = [int(re.match(r"SKIPPED \[(\d+)\]", line).group(1)) for line in lines]
    assert len(reasons) == len(set(reasons)) == 3, out  # one line per reason: no GPU, no torch, no jax
    assert sum(counts) == int(re.search(r"(\d+) skipped", out).group(1)) > 50, out
    assert any("torch is not installed" in r for r in reasons) and any("jax is not installed" in r for r in reasons)


def test_every_torch_skip_gives_the_one_reason():
    """Without torch, the summary prints one line for every test that needs it (the test above): each
    importorskip of torch names the same reason, as a literal or a module constant holding it."""
    reason = "torch is not installed (pip install -e '.[backends]')"
    odd = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        text = path.read_text()
        constants = {m.group(1) for m in re.finditer(r"^(\w+) = (\"[^\"]*\")$", text, re.M)
                     if ast.literal_eval(m.group(2)) == reason}
        for m in re.finditer(r"importorskip\(\"torch\"(?:, reason=(\"[^\"]*\"|\w+))?\)", text):
            given = m.group(1) or ""
            if given not in constants and not (given.startswith('"') and ast.literal_eval(given) == reason):
                odd.append(f"{path.name}: {m.group(0)}")
    assert not odd, odd


def test_each_test_that_jax_runs_part_of_exists():
    """conftest.JAX_RUNS_PART names tests by file and function: a renamed one would silently run whole on JAX."""
    from conftest import JAX_RUNS_PART
    for name in JAX_RUNS_PART:
        file, function = name.split("::")
        assert f"def {function}(" in (ROOT / "tests" / file).read_text(), name
