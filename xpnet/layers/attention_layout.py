"""PyTorch's time-first attention, ported onto xpnet's batch-first layers: refused where the model tells.

PyTorch's ``nn.MultiheadAttention(E, H)`` and its Transformer layers are time first, (L, N, E), unless built with
``batch_first=True``; xpnet's are batch first unless built with ``batch_first=False``.
A model ported without the switch reads the same arrays with L and N swapped: every sequence attends over the
batch, the shapes come out alike and the model trains. A mask made for (L, N, E) is refused by its shape (unless
S = T = N); without one the arrays cannot tell. Three things in the model can:

1. Its forward (read once per code object, as :mod:`.recurrent_layout` reads it) picking one position of the
   output by axis 0, or pooling over axis 0, PyTorch's ``output[0]`` (a class token), ``output[-1]``,
   ``output.mean(dim=0)`` or ``torch.mean(output, 0)`` of time-first output: on batch-first output that picks a
   sequence of the batch or pools over the batch. Refused, saying to build the layer time first or to take axis 1.
   NumPy's keyword, ``axis=0``, is taken as meant (xpnet's own way to pool over a batch), and so is
   ``output[0, :, :]``.
2. Its PositionalEncoding left batch first (the default) beside Transformer layers built time first, or the other
   way round (:func:`refuse_mixed_layouts`): the table would be added along the batch axis.
3. A positional table of its own in PyTorch's time-first shape, a buffer (max_len, 1, d_model) (the language-modelling
   and translation tutorials' ``pe`` and ``pos_embedding``, added to (L, N, E) input along axis 0), beside batch-first
   Transformer layers of that d_model, where no forward of the model swaps axes (:func:`refuse_time_first_tables`).
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

from . import uses
from .recurrent_layout import forward_source

__all__ = ["reads_axis_0", "refuse_time_first_attention", "refuse_mixed_layouts", "check_layouts", "check_tables",
           "refuse_time_first_tables"]

_CHECKED = "_layouts_checked_in"  # a PositionalEncoding's: id of the last model whose layers it was checked against
_TABLES_CHECKED = "_tables_checked_in"  # a batch-first Transformer layer's: id of the last model whose buffers it read

_REDUCTIONS = frozenset({"mean", "sum", "max", "min", "amax", "amin", "argmax", "argmin", "logsumexp", "prod"})
_NAMESPACES = frozenset({"torch", "np", "numpy", "xp", "jnp", "cp"})

# forward's code -> (attr, level, the expression's source): level 0 reads the call's result, level 1 its first
# element (MultiheadAttention's attn_output: ``self.mha(q, k, v)[0]`` or ``out, w = self.mha(q, k, v)``)
_FOUND: dict[Any, tuple[tuple[str, int, str], ...]] = {}


def _int(node: ast.expr) -> int | None:
    """The int literal ``node`` is (``-1`` too), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _int(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def _self_call(node: ast.expr) -> str | None:
    """``attr`` of a call ``self.attr(...)``, else None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            isinstance(node.func.value, ast.Name) and node.func.value.id == "self":
        return node.func.attr
    return None


class _Reader:
    """Walks forward's statements in order, keeping which names hold an attention call's output (``held``)."""

    def __init__(self, source: str):
        self.source, self.held, self.found = source, {}, []

    def origin(self, node: ast.expr) -> tuple[str, int] | None:
        """(attr, level) of what ``node`` holds: a call ``self.attr(...)``, its ``[0]``, or a name holding one."""
        if isinstance(node, ast.Name):
            return self.held.get(node.id)
        attr = _self_call(node)
        if attr is not None:
            return attr, 0
        if isinstance(node, ast.Subscript) and _int(node.slice) == 0:
            inner = self.origin(node.value)
            if inner is not None and inner[1] == 0:
                return inner[0], 1
        return None

    def note(self, node: ast.expr, target: ast.expr) -> None:
        where = self.origin(target)
        if where is not None:
            self.found.append((*where, ast.get_source_segment(self.source, node) or ""))

    def scan(self, tree: ast.AST) -> None:
        """Note each ``x[k]`` and each reduction over axis 0 (``x.mean(0)``, ``x.mean(dim=0)``,
        ``torch.mean(x, 0)``) of an attention call's output in the expression ``tree``."""
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and _int(node.slice) is not None:
                self.note(node, node.value)
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in _REDUCTIONS):
                continue
            args = list(node.args)
            if isinstance(node.func.value, ast.Name) and node.func.value.id in _NAMESPACES:
                if not args:
                    continue
                target, args = args[0], args[1:]
            else:
                target = node.func.value
            dims = [k.value for k in node.keywords if k.arg == "dim"]  # NumPy's axis=0 is taken as meant
            if (args and _int(args[0]) == 0) or (dims and _int(dims[0]) == 0):
                self.note(node, target)

    def statements(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.If, ast.For, ast.While, ast.With)):
                for part in (getattr(stmt, "test", None), getattr(stmt, "iter", None)):
                    if part is not None:
                        self.scan(part)
                self.statements(stmt.body)
                self.statements(getattr(stmt, "orelse", []))
                continue
            if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Expr, ast.Return)) and \
                    stmt.value is not None:
                self.scan(stmt.value)
            if isinstance(stmt, ast.Assign):
                self.assign(stmt.targets, stmt.value)
            elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
                self.assign([stmt.target], None)

    def assign(self, targets: list[ast.expr], value: ast.expr | None) -> None:
        where = None if value is None else self.origin(value)
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    self.held.pop(name.id, None)
            if where is None:
                continue
            if isinstance(target, ast.Name):
                self.held[target.id] = where
            elif isinstance(target, (ast.Tuple, ast.List)) and target.elts and isinstance(target.elts[0], ast.Name) \
                    and where[1] == 0:
                self.held[target.elts[0].id] = (where[0], 1)  # out, weights = self.mha(q, k, v)


def _axis0_reads(code: Any) -> tuple[tuple[str, int, str], ...]:
    """forward's reads of axis 0 of a ``self.attr(...)`` call's output: (attr, level, the expression's source)."""
    if code not in _FOUND:
        source, tree = forward_source(code)
        reader = _Reader(source)
        function = tree.body[0] if tree is not None and tree.body else None
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            reader.statements(function.body)
        _FOUND[code] = tuple(dict.fromkeys(reader.found))
    return _FOUND[code]


def reads_axis_0(code: Any) -> bool:
    """Whether forward (``code``) reads axis 0 of any ``self.attr(...)`` call's output (what
    :func:`refuse_time_first_attention` then checks at each call, against the layers ``attr`` name)."""
    return bool(_axis0_reads(code))


def _axis1(text: str) -> str:
    """The batch-first spelling of a time-first read: ``out[0]`` -> ``out[:, 0]``, ``.mean(dim=0)`` ->
    ``.mean(axis=1)``."""
    if text.endswith("]"):
        head, _, index = text[:-1].rpartition("[")
        return f"{head}[:, {index}]"
    for old in ("dim=0", "(0)", ", 0)"):
        if old in text:
            return text.replace(old, {"dim=0": "axis=1", "(0)": "(axis=1)", ", 0)": ", axis=1)"}[old], 1)
    return text


def refuse_time_first_attention(model: Any, code: Any) -> None:
    """Raise where ``model``'s forward (``code``) reads axis 0 of a batch-first attention layer's output the way
    PyTorch's time-first code reads its positions (see the module's docstring)."""
    reads = _axis0_reads(code)
    if not reads:  # the common case, every call of a model's forward
        return
    from .multihead_attention import MultiheadAttention  # imported here: they import the module that calls this
    from .transformer import TransformerBlock, TransformerEncoder
    from .transformer_decoder import Transformer, TransformerDecoder
    for attr, level, text in reads:
        layer = model.__dict__.get(attr)
        if isinstance(layer, MultiheadAttention) and level == 1 and layer.batch_first:
            instead = ("build it with batch_first=False for PyTorch's layout (L, N, E); or keep it batch first, give "
                       f"it (N, L, E) and take the positions' axis, {_axis1(text)}")
        elif isinstance(layer, (TransformerBlock, TransformerEncoder, TransformerDecoder, Transformer)) and \
                level == 0 and _batch_first(layer):
            instead = ("build it (a stack: the layer it copies) with batch_first=False for PyTorch's layout (L, N, E), "
                       "and a PositionalEncoding before it too; or keep it batch first, give it (N, L, E) and take "
                       f"the positions' axis, {_axis1(text)}")
        else:
            continue
        raise ValueError(
            f"{model.name}.forward takes {text} of self.{attr}'s output, PyTorch's way to read the positions of "
            f"time-first output (L, N, E) (nn.{layer.name}'s default, batch_first=False); but xpnet's "
            f"{layer.name} is batch first, (N, L, E): axis 0 is the batch, and time-first input would be read with "
            f"L and N swapped. {instead[0].upper()}{instead[1:]} (over the batch on purpose: axis=0 by keyword, or "
            f"[k, :, :])")


def _batch_first(layer: Any) -> bool:
    """A Transformer layer's (or stack's) layout; a stack reads its first layer's."""
    if hasattr(layer, "batch_first"):
        return layer.batch_first is True
    return all(getattr(inner, "batch_first", True) is True for inner in layer.layers[:1])


def check_layouts(encoding: Any) -> None:
    """:func:`refuse_mixed_layouts` for the PositionalEncoding ``encoding`` once per model whose forward calls it
    (the model running now, :mod:`.uses`' record); nothing outside a model's forward."""
    _once_per_model(encoding, _CHECKED, refuse_mixed_layouts)


def _once_per_model(layer: Any, key: str, refuse: Any) -> None:
    """``refuse(layer, model)`` for the model whose forward runs ``layer`` now, once per model (its id kept in the
    layer's ``__dict__`` under ``key``); nothing outside a model's forward."""
    local = uses._local  # the running model, as uses' wrappers read it
    model = local.calls is not None and local.model
    if model and layer.__dict__.get(key) != id(model):
        refuse(layer, model)
        layer.__dict__[key] = id(model)


def refuse_mixed_layouts(encoding: Any, model: Any) -> None:
    """Raise where ``model`` holds the PositionalEncoding ``encoding`` in one layout and its Transformer layers all
    in the other: the table would go along the batch. (Not beside MultiheadAttention alone: a model may permute
    before it, rightly.)"""
    from .transformer import TransformerBlock, TransformerEncoder
    from .transformer_decoder import Transformer, TransformerDecoder
    stacks = (TransformerBlock, TransformerEncoder, TransformerDecoder, Transformer)
    found = [(name, layer) for name, layer in model.named_modules().items() if isinstance(layer, stacks)]
    layouts = {_batch_first(layer) for _, layer in found}
    if layouts != {not encoding.batch_first}:
        return
    name = next((k for k, v in model.named_modules().items() if v is encoding), "") or encoding.name
    other, layer = found[0]
    layout = "batch first, (N, L, E)" if encoding.batch_first is False else "time first, (L, N, E) (batch_first=False)"
    own = "time first, (T, N, d_model) (batch_first=False)" if not encoding.batch_first else \
        "batch first, (N, T, d_model) (batch_first=True, its default)"
    raise ValueError(
        f"{model.name}: its PositionalEncoding '{name}' is {own}, but its {layer.name} '{other}' is {layout}: one of "
        f"the two reads the other's batch axis as the positions, and the table would be added along the batch. "
        f"Build the PositionalEncoding as the {layer.name}: xn.layers.PositionalEncoding({encoding.d_model}, "
        f"{encoding.dropout.p}, batch_first={not encoding.batch_first}) (PyTorch's tutorials are time first: "
        f"batch_first=False on both)")


_AXIS_SWAPS = frozenset({"transpose", "permute", "permute_dims", "swapaxes", "moveaxis", "rollaxis", "T", "mT"})
_PERMUTES: dict[Any, bool] = {}  # forward's code -> whether it swaps axes anywhere


def _permutes(forward: Any) -> bool:
    """Whether ``forward`` (a function) calls or reads any axis swap (``x.transpose(1, 0, 2)``, ``.permute``,
    ``xp.permute_dims``, ``.T``...), read from its source once per code object; False where it cannot be read."""
    code = getattr(inspect.unwrap(forward), "__code__", None)
    if code is None:
        return False
    if code not in _PERMUTES:
        tree = forward_source(code)[1]
        _PERMUTES[code] = tree is not None and any(
            isinstance(node, ast.Attribute) and node.attr in _AXIS_SWAPS for node in ast.walk(tree))
    return _PERMUTES[code]


def check_tables(layer: Any) -> None:
    """:func:`refuse_time_first_tables` for the batch-first Transformer layer ``layer`` once per model whose forward
    runs it (the model running now, :mod:`.uses`' record); nothing outside a model's forward."""
    _once_per_model(layer, _TABLES_CHECKED, refuse_time_first_tables)


def refuse_time_first_tables(layer: Any, model: Any) -> None:
    """Raise where ``model`` holds a buffer of shape (max_len, 1, d_model), max_len > 1 (a positional table in
    PyTorch's time-first layout, added along axis 0 of (L, N, E) input), beside the batch-first Transformer layer
    ``layer`` of that d_model: the layer would read that input's positions as its batch. Not where any forward of
    the user's classes in the model swaps axes (it may permute the time-first input for the layer, rightly)."""
    modules = model.named_modules().items()
    if any(_permutes(type(node).forward) for _, node in modules
           if not type(node).__module__.startswith("xpnet.") and hasattr(node, "forward")):
        return  # a forward of the user's that swaps axes may give the layer (N, L, E) rightly: nothing tells
    for owner, node in modules:
        for key, table in getattr(node, "buffers", {}).items():
            shape = tuple(getattr(table, "shape", ()))
            if len(shape) != 3 or shape[0] < 2 or shape[1:] != (1, layer.d_model):
                continue
            where = f"{owner}.buffers['{key}']" if owner else f"buffers['{key}']"
            name = next((k for k, v in modules if v is layer), "") or layer.name
            raise ValueError(
                f"{model.name}: its {where} of shape {shape} is a positional table in PyTorch's time-first layout, "
                f"(max_len, 1, d_model), added along axis 0 of (L, N, E) input (the tutorials' PositionalEncoding, "
                f"for nn.{layer.name}'s default, batch_first=False); but its {layer.name} '{name}' is batch first, "
                f"(N, L, E) (xpnet's default): it would read the positions as the batch and attend across the "
                f"sequences of each batch. Build it with batch_first=False for PyTorch's layout "
                f"(xn.layers.{layer.name}(..., batch_first=False); a stack copies its layer's), or keep it batch "
                f"first, give it (N, L, E) and make the table (1, max_len, d_model)")
