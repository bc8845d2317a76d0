"""The package's layout is its architecture: each unit imports only the units below it (the layout table of
docs/development.md), and importing xpnet loads no fast path, CuPy, PyTorch, JAX or Numba."""

import ast
import subprocess
import sys
from pathlib import Path

import xpnet

PACKAGE = Path(xpnet.__file__).parent

# unit -> the units it may import (a unit is a top-level module or subpackage of xpnet).
MAY_IMPORT = {
    "_user": set(),
    "_chainer": set(),
    "backend": {"_user"},
    "init": {"_user", "backend"},  # backend.float_dtype_name: one reading of dtype names for layers and model.to
    "grad_mode": set(),
    "nn": set(),
    "functional": set(),
    "io": {"_user"},
    "layers": {"_user", "_chainer", "backend", "grad_mode", "init"},  # no_grad_calls reads the grad mode
    "losses": {"_user", "_chainer", "backend"},
    "optim": {"_user", "_chainer", "backend", "layers", "models"},  # swa_utils: AveragedModel is a model
    "datasets": {"_user", "_chainer", "backend", "io"},  # downloads: a new file's mode, SIGTERM
    "distributed": {"_user", "backend"},
    "models": {"_user", "backend", "init", "io", "layers"},
    "gradcheck_locate": {"backend"},
    "gradcheck_report": set(),
    "gradcheck_plan": {"layers", "models"},  # the passes after the first: a Sequential's layers' own forwards
    "gradcheck": {"_user", "backend", "layers", "losses", "gradcheck_locate", "gradcheck_plan", "gradcheck_report"},
    "book": {"_user", "backend", "init", "io", "layers", "models"},
    "training": {"_user", "backend", "datasets", "distributed", "grad_mode", "io", "layers", "losses", "models",
                 "optim"},  # grad_mode: xn.train refuses to run within xn.no_grad()
    "testing": {"_user", "backend", "gradcheck", "layers"},
    "callbacks": {"training"},
}
# the faces and the command line may import anything
TOP = {"__init__", "__main__", "cli", "cli_ranks", "cli_checkpoint"}


def _unit(dotted):
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path):
    """The xpnet modules (dotted) that the file at ``path`` imports, lazily or not."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts) if rel.name == "__init__" else list(rel.parts[:-1])
    package = [p for p in package if p != "__init__"]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            yield from ([f"{base}.{a.name}" for a in node.names] if node.module is None else [base])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "xpnet":
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "xpnet")


def test_each_unit_imports_only_the_units_below_it():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        unit = _unit(".".join(p for p in rel.parts if p != "__init__") or "xpnet")
        if unit in TOP:
            continue
        assert unit in MAY_IMPORT, f"{path}: a new unit; add it to MAY_IMPORT (and to docs/development.md's map)"
        for target in _imports(path):
            other = _unit(target)
            if other != unit and other not in MAY_IMPORT[unit]:
                wrong.append(f"{rel}: imports {target}")
    assert not wrong, "\n".join(wrong)


def test_importing_xpnet_loads_no_fast_path_and_no_optional_library():
    code = ("import sys, xpnet; print(sorted(m for m in sys.modules if m.startswith('xpnet.backend.fast') "
            "or m.split('.')[0] in ('cupy', 'torch', 'jax', 'numba', 'tqdm')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
