"""Writes ``cupy/_names.py``, the fake CuPy's allow-list: the public names of ``cupy``, ``cupy.linalg``,
``cupy.fft``, ``cupy.random`` and ``cupy.lib.stride_tricks``, and the methods and attributes of
``cupy.ndarray``, read from CuPy's source, each function's parameters with it where its definition is
Python or Cython source this script can read (``None`` otherwise: a ufunc, a class, a constant).

    git -C <cupy clone> archive v14.2.0 cupy | tar -x -C /tmp/cupy && python make_names.py /tmp/cupy v14.2.0

Run once per CuPy version the fake stands in for; the output is committed.
"""

import ast
import pprint
import re
import sys
from pathlib import Path

ROOT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/cupy")
SOURCES = {}


def _source(module):
    """The .py (or .pyx, or package __init__.py) text of a dotted cupy module, or None."""
    if module not in SOURCES:
        base = ROOT.joinpath(*module.split("."))
        found = [p for p in (base.with_suffix(".py"), base.with_suffix(".pyx"), base / "__init__.py") if p.exists()]
        SOURCES[module] = (found[0].suffix, found[0].read_text()) if found else (None, None)
    return SOURCES[module]


def _params(text):
    """Cython or Python parameters -> Python ones, types dropped and every default ``...``."""
    out = []
    for part in re.sub(r"\s+", " ", text).split(","):
        part = part.strip()
        if not part or part == "self":
            continue
        if part.startswith("*"):
            out.append(part)
            continue
        name = part.split("=")[0].split(":")[0].split()[-1]
        out.append(name + ("=..." if "=" in part else ""))
    return ", ".join(out)


def _ast_params(node):
    """A Python def's parameters, annotations dropped and every default ``...``."""
    a = node.args
    positional = a.posonlyargs + a.args
    first_default = len(positional) - len(a.defaults)
    out = [p.arg + ("=..." if i >= first_default else "") for i, p in enumerate(positional)]
    if a.posonlyargs:
        out.insert(len(a.posonlyargs), "/")
    if a.vararg or a.kwonlyargs:
        out.append("*" + (a.vararg.arg if a.vararg else ""))
    out += [p.arg + ("" if d is None else "=...") for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg:
        out.append("**" + a.kwarg.arg)
    return ", ".join(p for p in out if p != "self")


def _last_def(body, name):
    """The last top-level def of ``name`` (the implementation, after any @overload stubs)."""
    defs = [n for n in body if isinstance(n, ast.FunctionDef) and n.name == name]
    return defs[-1] if defs else None


def _def_in_text(text, name, indent=""):
    """The parameters of ``def``/``cpdef name(`` at ``indent`` in Python or Cython text, or None."""
    m = re.search(rf"^{indent}(?:cp)?def\s+(?:[\w\[\]]+\s+)*{name}\s*\(", text, re.MULTILINE)
    if not m:
        return None
    depth, i = 1, m.end()
    while depth:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    return _params(text[m.end():i - 1])


def _resolve(module, name, depth=0):
    """The parameters of ``name`` as ``module`` defines it, following re-imports; None if not a def."""
    suffix, text = _source(module)
    if text is None or depth > 5:
        return None
    if suffix == ".pyx":
        return _def_in_text(text, name)
    body = ast.parse(text).body
    if _last_def(body, name):
        return _ast_params(_last_def(body, name))
    for node in body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cupy"):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _resolve(node.module, alias.name, depth + 1)
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            if isinstance(node.value, ast.Name):
                return _resolve(module, node.value.id, depth + 1)
            return None
    return None


def _bound(nodes):
    """Every (name, node) a module body binds at top level, in if/try branches too."""
    for node in nodes:
        if isinstance(node, (ast.If, ast.Try)):
            yield from _bound(node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", [])
                              + [s for h in getattr(node, "handlers", []) for s in h.body])
        elif isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                yield (alias.asname or alias.name).split(".")[0], node
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            yield node.name, node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Name):
                        yield t.id, node


def module_names(module):
    """Public name -> parameters (or None) of a cupy module."""
    text = _source(module)[1]
    names, body = {}, ast.parse(text).body
    for name, node in _bound(body):
        if name.startswith("_"):
            continue
        if isinstance(node, ast.FunctionDef):
            names[name] = _ast_params(_last_def(body, name) or node)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cupy"):
            alias = next(a for a in node.names if (a.asname or a.name) == name)
            names[name] = _resolve(node.module, alias.name)
        else:
            names.setdefault(name, None)
    for node in body:  # a module __getattr__ naming keys (``cupy.random.Generator``, imported lazily)
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            names.update({c.value: None for c in ast.walk(node) if isinstance(c, ast.Compare)
                          for c in c.comparators if isinstance(c, ast.Constant) and isinstance(c.value, str)})
    # Importing ``cupy.lib._x`` makes ``lib`` an attribute of the package ``cupy``.
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(module + "."):
            sub = node.module[len(module) + 1:].split(".")[0]
            if not sub.startswith("_"):
                names.setdefault(sub, None)
    return names


def ndarray_names():
    """Public methods and attributes of ``cupy.ndarray`` (``_core/core.pyx``, ``core.pxd``) -> parameters."""
    text = (ROOT / "cupy/_core/core.pyx").read_text()
    start = text.index("\nclass ndarray(")
    end = re.compile(r"^[^\s#@]", re.MULTILINE).search(text, text.index("\ncdef class _ndarray_base") + 2).start()
    text = text[start:end]
    names = {}
    for m in re.finditer(r"^    (?:(?:cp)?def\s+(?:[\w\[\]]+\s+)*(\w+)\s*\(|property\s+(\w+)\s*:)", text, re.MULTILINE):
        name = m.group(1) or m.group(2)
        if name.startswith("_") or name in names:
            continue
        decorated = text[:m.start()].rstrip().endswith("@property")
        names[name] = None if decorated or m.group(2) else _def_in_text(text, name, "    ")
    pxd = (ROOT / "cupy/_core/core.pxd").read_text()
    for name in re.findall(r"^\s+(?:readonly|public)\s+[\w.]+\s+(\w+)\s*$", pxd, re.MULTILINE):
        if not name.startswith("_"):
            names[name] = None
    names["view"] = _params("dtype=None, type=None")  # ndarray.view, the Python wrapper over the cpdef
    return names


def main():
    version = sys.argv[2] if len(sys.argv) > 2 else "v14.2.0"
    tables = {
        "CUPY": module_names("cupy"),
        "LINALG": module_names("cupy.linalg"),
        "FFT": module_names("cupy.fft"),
        "RANDOM": module_names("cupy.random"),
        "STRIDE_TRICKS": module_names("cupy.lib.stride_tricks"),
        "NDARRAY": ndarray_names(),
    }
    lines = [f'"""Generated by tests/fake_cupy/make_names.py from CuPy {version} (github.com/cupy/cupy); do not edit.',
             "",
             "Public name -> its parameters as CuPy defines them (defaults shown as ...), or None where they are",
             'not read (a ufunc, a class, a constant, a module)."""', ""]
    for table, names in tables.items():
        lines.append(f"{table} = " + pprint.pformat(dict(sorted(names.items())), width=118, sort_dicts=False))
        lines.append("")
    out = Path(__file__).parent / "cupy" / "_names.py"
    out.write_text("\n".join(lines))
    print(f"wrote {out}: " + ", ".join(f"{t} {len(n)}" for t, n in tables.items()))


if __name__ == "__main__":
    main()
