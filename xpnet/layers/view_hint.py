"""PyTorch's tensor methods in a model's forward, failing on NumPy's arrays: raised again saying what to write.

PyTorch's ``x.view(shape)``: NumPy's ``view`` takes a dtype, and fails with "Cannot interpret '1' as a data type" (or
"view() takes from 0 to 2 positional arguments", "Type must be a sub-type of ndarray type"). Raised by the forward's own
line holding ``.view(``, the error is raised again saying to reshape. PyTorch's ``x.transpose(0, 1)`` swaps two axes
where NumPy's takes them all ("axes don't match array" on a 3-d array, legacy SNLI's ``ht[-2:].transpose(0,
1).contiguous().view(batch_size, -1)``): raised on such a line, it says to write ``swapaxes`` or the whole permutation.
PyTorch's ``x.size()`` (NumPy's ``size`` is a number: "'int' object is not callable") and the methods NumPy's arrays
lack (``detach``, ``contiguous``, ``new_zeros``, ``permute``, ``unsqueeze``, ``numel``, ``clamp``...: an AttributeError)
say NumPy's spelling, on the forward's own line too, and so do PyTorch's reduction keywords (``x.var(unbiased=True,
dim=(0, 2, 3))``, ``keepdim=True``: NumPy's "unexpected keyword argument") and ``x.flatten(1)`` (NumPy's takes an order:
"order must be str, not int"), and PyTorch's functions written with NumPy's module name (``np.flatten(x, 1)`` for
``torch.flatten(x, 1)``, ``np.cat``, ``np.unsqueeze``: "module 'numpy' has no attribute"). The same line in a method of
the model that forward calls (the introyt LeNet's ``num_flat_features(x)``, reading ``x.size()[1:]``) is answered
alike, and so is a line of a leaf layer of one's own (not xpnet's) that the forward reached (its ``forward``,
``x.view(x.size(0), -1)``), or that its own call ran, outside any model (``layer(x)``, ``layer.forward(x)``:
:func:`hint_leaf`). A backward written out by the user (a model's or
a leaf layer's, ``dy.sum(dim=1, keepdim=True)``) is answered alike by :func:`hint_leaf`, called with the backward's
code (:mod:`.backward_calls`). Only the error path reads any of this.
"""

from __future__ import annotations

import linecache
import re
from typing import Any

# PyTorch's tensor methods that NumPy's arrays lack -> what to write
_METHODS = {
    "detach": "drop it: xpnet records no graph, so x.detach() is x; where it kept a layer's weights out of "
              "training (legacy SNLI's fix_emb), freeze that layer: layer.requires_grad_(False)",
    "contiguous": "drop it (NumPy's reshape copies where it must)",
    "new_zeros": "write xp.zeros(shape, dtype=x.dtype) with xp = xn.backend.namespace(x) (np.zeros on NumPy)",
    "new_ones": "write xp.ones(shape, dtype=x.dtype) with xp = xn.backend.namespace(x) (np.ones on NumPy)",
    "permute": "write x.transpose(axes) (NumPy's transpose takes every axis), or xp.permute_dims(x, axes) on any "
               "backend",
    "unsqueeze": "write x[:, None] (None where the new axis goes), or xp.expand_dims(x, axis=d) on any backend",
    "clone": "write x.copy()",
    "float": "write x.astype(np.float32)",
    "double": "write x.astype(np.float64)",
    "long": "write x.astype(np.int64)",
    "numel": "write x.size (NumPy's size is the number of elements; PyTorch's x.size() is x.shape)",
    "clamp": "write self.relu = xn.layers.ReLU() for x.clamp(min=0) (its backward in yours); np.clip(x, a, b) "
             "(xp.clip on any backend) clamps values, its gradient yours to write",
}
# PyTorch's functions written with NumPy's module name (torch.flatten(x, 1) as np.flatten(x, 1)) -> what to write
_FUNCTIONS = {
    "flatten": "write self.flatten = xn.layers.Flatten() for torch.flatten(x, 1) (its backward reshapes dy back), or "
               "x.reshape(x.shape[0], -1)",
    "cat": "write np.concatenate(arrays, axis=d) for torch.cat(arrays, dim=d)",
    "unsqueeze": "write np.expand_dims(x, d), or x[:, None] (None where the new axis goes)",
    "clamp": _METHODS["clamp"],
    "mm": "write x @ w (np.matmul)",
    "bmm": "write x @ w (np.matmul takes the leading axis as the batch's)",
    "permute": "write np.transpose(x, axes) (every axis), or xp.permute_dims(x, axes) on any backend",
}
# the same two in a backward written out, where a forward's advice (a ReLU or Flatten layer to call) reads amiss
_IN_BACKWARD = {
    "clamp": "write np.clip(x, a, b) (xp.clip on any backend), np.maximum(dy, 0) for dy.clamp(min=0); the gradient "
             "through a forward's x.clamp(min=0) is self.relu.backward(dy), self.relu = xn.layers.ReLU() called in "
             "the forward, or dy * (x > 0) with that forward's x",
    "flatten": "write x.reshape(x.shape[0], -1); dy's way back through a forward's torch.flatten(x, 1) is "
               "dy.reshape(x.shape) with that forward's x.shape, or self.flatten.backward(dy), self.flatten = "
               "xn.layers.Flatten() called in the forward",
}
_MISSING = re.compile(r"object has no attribute '(\w+)'")
_MODULE_MISSING = re.compile(r"^module '(numpy|cupy)' has no attribute '(\w+)'$")
_KEYWORD = re.compile(r"unexpected keyword argument '(dim|keepdim|unbiased)'")
_REDUCTIONS = ("NumPy's reductions take axis=, keepdims= and ddof=, PyTorch's dim=, keepdim= and unbiased=: write "
               "axis= for dim=, keepdims= for keepdim=, ddof=1 for unbiased=True; PyTorch's x.var(d) and x.std(d) are "
               "the unbiased ones, NumPy's x.var(axis=d) the biased: x.var(axis=d, ddof=1) for PyTorch's")


def view_hint(model: Any, code: Any, error: Exception, backward: bool = False) -> str | None:
    """The message for ``error``, raised by a PyTorch method on a line of forward's own frame (``code``) or of a
    method of ``model`` that forward called, or None; ``backward``: ``code`` is a backward written out, whose
    ``clamp`` and ``flatten`` get a backward's advice (``_IN_BACKWARD``)."""
    if not isinstance(error, (TypeError, ValueError, AttributeError)):
        return None
    tb, through_forward = error.__traceback__, False
    while tb is not None and tb.tb_next is not None and not _module_getattr(tb.tb_next):
        through_forward = through_forward or tb.tb_frame.f_code is code
        tb = tb.tb_next
    if tb is None:
        return None
    raised = tb.tb_frame.f_code
    owner = tb.tb_frame.f_locals.get("self")
    if raised is not code and not (through_forward and (owner is model or _own_leaf(owner))):
        return None  # neither forward's own line nor one of the model's (or a leaf of one's own's) that it reached
    if raised is not code and owner is not model:
        model = owner
    line = linecache.getline(raised.co_filename, tb.tb_lineno)
    where = f"{model.name}.{raised.co_name}: {error} (line {tb.tb_lineno}: {line.strip()})"
    if isinstance(error, AttributeError) and (function := _MODULE_MISSING.match(str(error))):
        module, name = function.groups()
        if name not in _FUNCTIONS or f".{name}(" not in line:
            return None
        advice = _IN_BACKWARD[name] if backward and name in _IN_BACKWARD else _FUNCTIONS[name]
        return f"{where}: {module} has no {name}(), PyTorch's torch.{name}; {advice}"
    if isinstance(error, AttributeError):
        missing = _MISSING.search(str(error))
        name = missing.group(1) if missing else ""
        if name not in _METHODS or f".{name}(" not in line or "ndarray" not in str(error):
            return None
        advice = _IN_BACKWARD[name] if backward and name in _IN_BACKWARD else _METHODS[name]
        return f"{where}: NumPy's arrays have no x.{name}(), PyTorch's; {advice}"
    if isinstance(error, TypeError) and "'int' object is not callable" in str(error) and ".size(" in line:
        return (f"{where}: NumPy's x.size is the number of elements, where PyTorch's x.size() is the shape; write "
                "x.shape for x.size(), x.shape[d] for x.size(d)")
    if isinstance(error, TypeError) and (keyword := _KEYWORD.search(str(error))) and f"{keyword.group(1)}=" in line:
        return f"{where}: {_REDUCTIONS}"
    if isinstance(error, TypeError) and "order must be str" in str(error) and ".flatten(" in line:
        advice = _IN_BACKWARD["flatten"] if backward else ("write self.flatten = xn.layers.Flatten() (its backward "
                                                           "reshapes dy back), or x.reshape(x.shape[0], -1)")
        return (f"{where}: NumPy's x.flatten(order) flattens every axis, where PyTorch's x.flatten(1) keeps the first; "
                f"{advice}")
    if ".transpose(" in line and "axes don't match array" in str(error):
        return (f"{where}: NumPy's x.transpose(...) takes every axis (a permutation), where PyTorch's "
                "x.transpose(0, 1) swaps two; write x.swapaxes(0, 1), or xp.permute_dims(x, (1, 0, 2)) for a 3-d x "
                "on any backend")
    if ".view(" not in line:
        return None
    return (f"{where}: NumPy's x.view(...) takes a dtype, where PyTorch's x.view(shape) reshapes; write "
            "x.reshape(shape), or xp.reshape(x, shape) on any backend")


def _module_getattr(tb: Any) -> bool:
    """Whether ``tb``'s frame is NumPy's (or CuPy's) module ``__getattr__``, raising for a name it lacks: the line
    to read is its caller's."""
    frame = tb.tb_frame
    return frame.f_code.co_name == "__getattr__" and frame.f_globals.get("__name__") in ("numpy", "cupy")


def _own_leaf(node: Any) -> bool:
    """Whether ``node`` is a layer of one's own, not one of xpnet's, whose lines a hint may read."""
    from .tree import Tree  # imported here: the layer base imports this module
    return isinstance(node, Tree) and not type(node).__module__.startswith("xpnet.")


def hint_leaf(layer: Any, code: Any, error: Exception, backward: bool = False) -> Exception | None:
    """The error to raise instead of ``error``, which ``layer``'s forward (of code ``code``) raised when called
    outside any model, or its backward written out raised (``backward``), of the same type; None where
    :func:`view_hint` has nothing to say or ``layer`` is xpnet's."""
    if not _own_leaf(layer):
        return None
    hint = view_hint(layer, code, error, backward)
    if hint is None:
        return None
    return next(k for k in (TypeError, AttributeError, ValueError) if isinstance(error, k))(hint)
