"""Writes docs/api.md: every public name of xpnet, module by module, from the modules themselves.

A module's public names are its ``__all__``; each gets one line: its signature (``inspect.signature``, without
annotations, shortened where long), the first sentence of its docstring, and PyTorch's name where that differs
(the ``PYTORCH`` table below). Run it after adding or renaming a public name or changing a docstring's first
sentence: ``python docs/make_api.py`` (``--check`` only says whether docs/api.md is current; tests/test_api_page.py
runs that check).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "api.md"
COMMAND = "python docs/make_api.py"

# The modules of the page, in its order: (module, what it holds).
MODULES = [
    ("xpnet", "the names most scripts need: devices, models, files, training, gradient checking"),
    ("xpnet.layers", "one object per operation, forward and backward side by side"),
    ("xpnet.losses", "loss layers: forward(y, t) gives a 0-d array, backward() the gradient of the output"),
    ("xpnet.optim", "optimizers and gradient clipping"),
    ("xpnet.optim.lr_scheduler", "PyTorch's learning-rate schedulers"),
    ("xpnet.optim.swa_utils", "PyTorch's weight averaging (SWA, EMA)"),
    ("xpnet.init", "the seeded generator layers draw their weights from, and PyTorch's torch.nn.init"),
    ("xpnet.callbacks", "what xn.train calls at the end of each epoch or step"),
    ("xpnet.training", "the training loop (its names are also at the top, and in xn.callbacks)"),
    ("xpnet.datasets", "data sets, batches and augmentation"),
    ("xpnet.models", "models and model files, and the torchvision architectures"),
    ("xpnet.book", "the networks of Deep Learning from Scratch, volumes 1 and 2, and their weight files"),
    ("xpnet.distributed", "many processes and GPUs (MPI, NCCL)"),
    ("xpnet.backend", "devices, array namespaces and fast paths: what layers of your own build on"),
    ("xpnet.testing", "helpers for tests, also for your own suites"),
]

# PyTorch's name where it differs from xpnet's, in name or place ("A or B" where there are two; "(...)": the
# arguments that make PyTorch's the same operation). tests/test_api_page.py checks that torch has each.
PYTORCH = {
    "xpnet.Model": "torch.nn.Module",
    "xpnet.load_torch_state_dict": "torch.nn.Module.load_state_dict",
    "xpnet.gradcheck": "torch.autograd.gradcheck",
    "xpnet.to_device": "torch.Tensor.to",
    "xpnet.to_numpy": "torch.Tensor.numpy",
    "xpnet.layers.Layer": "torch.nn.Module",
    "xpnet.layers.BatchNorm": "torch.nn.BatchNorm1d or torch.nn.BatchNorm2d",
    "xpnet.layers.GlobalAvgPool": "torch.nn.AdaptiveAvgPool2d(1)",
    "xpnet.layers.AffineGrid": "torch.nn.functional.affine_grid",
    "xpnet.layers.GridSample": "torch.nn.functional.grid_sample",
    "xpnet.layers.ScaledDotProductAttention": "torch.nn.functional.scaled_dot_product_attention",
    "xpnet.layers.pack_padded_sequence": "torch.nn.utils.rnn.pack_padded_sequence",
    "xpnet.layers.pad_packed_sequence": "torch.nn.utils.rnn.pad_packed_sequence",
    "xpnet.layers.PackedSequence": "torch.nn.utils.rnn.PackedSequence",
    "xpnet.layers.SpectralNorm": "torch.nn.utils.parametrizations.spectral_norm",
    "xpnet.layers.WeightNorm": "torch.nn.utils.parametrizations.weight_norm",
    "xpnet.losses.SoftmaxCrossEntropy": "torch.nn.CrossEntropyLoss",
    "xpnet.losses.SigmoidCrossEntropy": "torch.nn.BCEWithLogitsLoss",
    "xpnet.losses.MeanSquaredError": "torch.nn.MSELoss",
    "xpnet.losses.MeanAbsoluteError": "torch.nn.L1Loss",
    "xpnet.optim.Momentum": "torch.optim.SGD(momentum=0.9)",
    "xpnet.optim.Nesterov": "torch.optim.SGD(momentum=0.9, nesterov=True)",
    "xpnet.optim.AdaGrad": "torch.optim.Adagrad",
    "xpnet.optim.clip_grad_norm": "torch.nn.utils.clip_grad_norm_",
    "xpnet.optim.clip_grad_value": "torch.nn.utils.clip_grad_value_",
    "xpnet.init.seed": "torch.manual_seed",
    "xpnet.callbacks.step": "torch.optim.lr_scheduler.StepLR",
    "xpnet.callbacks.cosine": "torch.optim.lr_scheduler.CosineAnnealingLR",
    "xpnet.datasets.BatchIterator": "torch.utils.data.DataLoader",
    "xpnet.datasets.load_image_folder": "torchvision.datasets.ImageFolder",
    "xpnet.datasets.load_mnist": "torchvision.datasets.MNIST",
    "xpnet.datasets.load_fashion_mnist": "torchvision.datasets.FashionMNIST",
    "xpnet.distributed.init": "torch.distributed.init_process_group",
    "xpnet.cuda_available": "torch.cuda.is_available",
    "xpnet.backend.cuda_device_count": "torch.cuda.device_count",
}

WIDTH = 100  # a signature longer than this loses keyword arguments from its end, "..." in their place
_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|exc|obj):`~?([^`]+)`")


def public_names(module: types.ModuleType) -> list[str]:
    """The module's ``__all__``, in its own order."""
    if not hasattr(module, "__all__"):
        raise SystemExit(f"{module.__name__} has no __all__: say there which of its names are public")
    return list(module.__all__)


def _default(value: object) -> str:
    """A default as the page shows it: no memory address, a function or class by its name."""
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        return value.__qualname__
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def _parameter(p: inspect.Parameter) -> str:
    star = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
    return f"{star}{p.name}" + ("" if p.default is p.empty else f"={_default(p.default)}")


def _class_parameters(cls: type) -> list[inspect.Parameter]:
    """What calling ``cls`` takes, the same on every Python (whose ``inspect`` picks between ``__new__`` and
    ``__init__`` differently): its ``__signature__``, else the Python ``__init__`` or ``__new__`` nearest in its MRO,
    ``__init__`` where that ``__new__`` takes only ``*args, **kwargs`` (xn.layers.Layer's), nothing where it has
    neither; an exception without them is shown without arguments (ValueError)."""
    if isinstance(getattr(cls, "__signature__", None), inspect.Signature):
        return list(cls.__signature__.parameters.values())
    found = {}  # method -> (its place in the MRO, its parameters after cls or self)
    for place, base in enumerate(cls.__mro__):
        for method in ("__new__", "__init__"):
            function = getattr(vars(base).get(method), "__func__", vars(base).get(method))
            if method not in found and isinstance(function, types.FunctionType):
                found[method] = place, list(inspect.signature(function).parameters.values())[1:]
    if not found and issubclass(cls, BaseException):
        raise ValueError(f"{cls.__name__} takes what its exception base takes")
    new, init = found.get("__new__", (len(cls.__mro__), None)), found.get("__init__", (len(cls.__mro__), []))
    only_var = new[1] is not None and all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in new[1])
    return new[1] if new[0] < init[0] and not (only_var and "__init__" in found) else init[1]


def signature(name: str, obj: object) -> str:
    """``name(arguments)``; keyword arguments dropped from the end (``...``) past ``WIDTH`` characters."""
    try:
        params = _class_parameters(obj) if isinstance(obj, type) else list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return name
    params = [p for p in params if not p.name.startswith("_")]
    parts, kinds = [_parameter(p) for p in params], [p.kind for p in params]
    for i, kind in enumerate(kinds):  # the bare "*" and "/" markers, as inspect writes them
        if kind == inspect.Parameter.KEYWORD_ONLY and inspect.Parameter.VAR_POSITIONAL not in kinds[:i]:
            parts.insert(i, "*")
            break
    text = f"{name}({', '.join(parts)})"
    while len(text) > WIDTH and len(parts) > 1 and ("=" in parts[-1] or parts[-1].startswith("*")):
        parts.pop()
        text = f"{name}({', '.join(parts + ['...'])})"
    return text


def own_doc(obj: object) -> str:
    """The docstring written for ``obj`` itself (a class's, not one it inherits), or ''."""
    if isinstance(obj, type):
        return obj.__dict__.get("__doc__") or ""
    if callable(obj) or isinstance(obj, types.ModuleType):
        return getattr(obj, "__doc__", None) or ""
    return ""


def first_sentence(doc: str) -> str:
    """The docstring's first sentence, in Markdown: its first paragraph up to the first full stop that ends a
    sentence (one followed by a space and a capital, or the paragraph's end)."""
    paragraph = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    match = re.search(r"(?<!e\.g)(?<!i\.e)(?<!etc)(?<!vs)[.!?](?=\s+[A-Z`(])", paragraph)
    sentence = paragraph[:match.end()] if match else paragraph
    sentence = re.sub(r"::$", ":", sentence)  # reStructuredText's "a literal block follows"
    sentence = _ROLE.sub(lambda m: f"``{m.group(1).split('.')[-1]}``", sentence).replace("``", "`")
    # Outside code spans, Markdown would read * as emphasis, < as HTML and [..](..) as a link.
    pieces = sentence.split("`")
    pieces[::2] = [re.sub(r"([*<\[\]])", r"\\\1", piece) for piece in pieces[::2]]
    return "`".join(pieces)


def says_nothing_in(name: str, sentence: str) -> str | None:
    """Why ``sentence``, the first of ``name``'s docstring, does not say what ``name`` is, or None: there is no
    docstring, it only points elsewhere ("See X."), repeats the signature, or gives shapes alone."""
    if not sentence:
        return "no docstring"
    if len(re.findall(r"\w+", sentence)) < 3:
        return f"its first sentence is too short to say what it is: {sentence!r}"
    if re.fullmatch(r"(See|As|Same as) \S+\.?", sentence):
        return f"its first sentence only points elsewhere: {sentence!r}"
    if re.fullmatch(rf"`?{re.escape(name)}\([^`]*\)`?\.?", sentence):
        return f"its first sentence only repeats the signature: {sentence!r}"
    if re.fullmatch(r"\w+:\s*->\s*\w+:\s*\.?", re.sub(r"\s*\((?:[^()]|\([^()]*\))*\)", "", sentence)):
        return f"its first sentence gives shapes alone: {sentence!r}"
    return None


def _seen_under(obj: object, where: dict[int, str]) -> str | None:
    """The first place on the page that listed ``obj``, for a name that is the same object again."""
    return where.get(id(obj)) if isinstance(obj, (type, types.FunctionType, types.ModuleType)) else None


def entry(module: str, name: str, obj: object, where: dict[int, str]) -> tuple[str, str | None]:
    """One line of the page, and the finding where the name has no docstring worth its first line."""
    short = "xn" + module[len("xpnet"):]
    if isinstance(obj, types.ModuleType):
        shown = f"`{obj.__name__.replace('xpnet', 'xn', 1)}`"
        listed = obj.__name__ in dict(MODULES)
        return f"- `{name}`: the module " + (f"[{shown}](#{_anchor(obj.__name__)})" if listed else shown), None
    earlier = _seen_under(obj, where)
    if earlier is not None:
        return f"- `{name}`: the same as `{earlier}`", None
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) or callable(obj):
        where[id(obj)] = f"{short}.{name}"
        head = ("class " if isinstance(obj, type) else "") + signature(name, obj)
        doc = own_doc(obj)
        sentence = first_sentence(doc) if doc.strip() else ""
        says_nothing = says_nothing_in(name, sentence)
        finding = f"{module}.{name}: {says_nothing}" if says_nothing else None
        torch = PYTORCH.get(f"{module}.{name}")
        tail = f" PyTorch: `{torch}`." if torch else ""
        return f"- `{head}`: {sentence or '(no docstring)'}{tail}", finding
    text = _default(obj)
    kind = type(obj).__name__
    value = text if len(text) <= 60 else f"a {kind} of {len(obj)}" if hasattr(obj, "__len__") else f"a {kind}"
    return f"- `{name}` = `{value}`", None


def _anchor(module: str) -> str:
    return module.replace("xpnet", "xn", 1).replace(".", "")


def page() -> tuple[str, list[str]]:
    """The page's text, and its findings (names without a docstring that says what they are)."""
    lines = [
        "# Every public name",
        "",
        "xpnet's public names, module by module: what each module's `__all__` exports, one line each, its signature",
        "(a long one ends in `...`: `help()` shows the rest) and the first sentence of its docstring; PyTorch's name",
        "where it differs. A name listed twice is one object, reachable from both modules. xpnet has no `xn.nn` and no",
        "`xn.functional`: importing either says where PyTorch's names are ([coming from PyTorch](from-pytorch.md)).",
        "",
        f"Written by `{COMMAND}` from the modules themselves; do not edit it by hand.",
        "",
    ]
    lines += [" · ".join(f"[`{m.replace('xpnet', 'xn', 1)}`](#{_anchor(m)})" for m, _ in MODULES), ""]
    where: dict[int, str] = {}
    findings, listed = [], set()
    for module_name, about in MODULES:
        module = importlib.import_module(module_name)
        lines += [f"## {module_name.replace('xpnet', 'xn', 1)}", "", about[0].upper() + about[1:] + ".", ""]
        for name in public_names(module):
            listed.add(f"{module_name}.{name}")
            line, finding = entry(module_name, name, getattr(module, name), where)
            lines.append(line)
            if finding:
                findings.append(finding)
        lines.append("")
    findings += [f"PYTORCH names {name}, which is no public name" for name in PYTORCH if name not in listed]
    return "\n".join(lines), findings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only say whether docs/api.md is current (exit 1 if not)")
    args = ap.parse_args(argv)
    text, findings = page()
    for finding in findings:
        print(f"finding: {finding}", file=sys.stderr)
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"docs/api.md is stale: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}: {text.count(chr(10) + '- ')} names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
