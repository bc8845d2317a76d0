"""What an optimizer's step says when a gradient is missing or of another dtype, or a parameter is no array: the
layer behind it (by dotted name and class), not only the parameter the check met first."""

from __future__ import annotations

from typing import Any

__all__ = ["missing_gradient", "other_dtype", "mixed_dtypes", "holder", "not_an_array"]


def holder(model: Any, name: str) -> str:
    """Who holds parameter ``name``: "layer 0 (Linear)", or "the model (Net)" for a model's own."""
    owner = name.rpartition(".")[0]
    nodes = model.named_modules() if hasattr(model, "named_modules") else {}
    kind = type(nodes[owner]).__name__ if owner in nodes else type(model).__name__
    return f"layer {owner} ({kind})" if owner else f"the model ({kind})"


def not_an_array(name: str, p: Any) -> str:
    """Why parameter ``name`` cannot be stepped: it is a Python or NumPy scalar (``np.random.randn()`` for
    PyTorch's ``torch.randn(())``), which no update can change in place."""
    key = name.rpartition(".")[2]
    return (f"parameter {name!r} is a {type(p).__name__} ({p!r}), not an array, so no step can update it in place; "
            f"make it a 0-d array in __init__, self.params[{key!r}] = np.asarray(value) (PyTorch's "
            f"nn.Parameter(torch.randn(())) is rng.standard_normal(()); np.random.randn() gives a float)")


def missing_gradient(model: Any, name: str, grads: dict[str, Any]) -> str:
    """Why parameter ``name`` has no gradient: no backward yet, or a backward that left this one out."""
    if not grads:
        return f"no gradient for {name!r}; call model.backward(...) before step"
    key = name.rpartition(".")[2]
    return (f"{holder(model, name)}'s backward left no gradient for {key!r} ({name!r}), although backward ran "
            f"(other gradients are there); a backward must fill self.grads[k] for every k in self.params")


def other_dtype(model: Any, name: str, g: Any, params: dict[str, Any]) -> str:
    """Why the gradient of ``name`` came back in another dtype: most often a later layer whose parameters
    are of that dtype passes its dy in it; those parameters are named, and the fix."""
    odd = [n for n, q in params.items() if q.dtype == g.dtype]
    head = (f"the gradient of {name!r} ({holder(model, name)}) came back {g.dtype}, its parameter is "
            f"{params[name].dtype}")
    if not odd:
        return f"{head}: a backward returned {g.dtype} arrays; cast them to the parameters' dtype"
    where = ", ".join(f"{n!r} ({holder(model, n)})" for n in odd[:4]) + (", ..." if len(odd) > 4 else "")
    return (f"{head}, because a later layer passes {g.dtype} dy back: the model mixes dtypes, {where} "
            f"{'is' if len(odd) == 1 else 'are'} {g.dtype}; cast the model to one, "
            f"model.to(dtype='{_dtype_name(params[name].dtype)}') (or build every layer in one dtype)")


def _dtype_name(dtype: Any) -> str:
    """'float32' for NumPy's, CuPy's and PyTorch's float32 alike."""
    return str(dtype).rpartition(".")[2]


def mixed_dtypes(model: Any, params: dict[str, Any]) -> str | None:
    """What ``xn.train`` says before any step when the parameters mix dtypes (None when they do not): the
    fewer, by name and layer, and the cast that fixes it."""
    by_dtype: dict[Any, list[str]] = {}
    for name, p in params.items():
        by_dtype.setdefault(p.dtype, []).append(name)
    if len(by_dtype) < 2:
        return None
    common = max(by_dtype, key=lambda d: len(by_dtype[d]))
    odd = "; ".join(f"{', '.join(map(repr, names[:4]))}{', ...' if len(names) > 4 else ''} "
                    f"({', '.join(sorted({holder(model, n) for n in names}))}) {'is' if len(names) == 1 else 'are'} "
                    f"{_dtype_name(d)}"
                    for d, names in by_dtype.items() if d != common)
    return (f"the parameters mix dtypes: {odd}, the others {_dtype_name(common)}; a layer passes dy in its own "
            f"dtype to the layers before it, so their gradients would not match them. Cast the model to one dtype "
            f"first: model.to(dtype='{_dtype_name(common)}') (or build every layer with one dtype=)")
